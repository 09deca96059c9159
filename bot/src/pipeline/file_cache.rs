//! The file cache: what the bot remembers of the files it chunked, so that a file whose stamp
//! is unchanged is not read again. Kept as JSON lines in the order a walk lists the tree
//! ([`crate::tree::TreeWalk`]), so that a scan reads the previous cache and writes the next one
//! a line at a time, holding neither, however large the tree.

use super::ChunkRef;
use crate::tree::{FileStamp, TreeEntry};
use anyhow::{Context, Result};
use std::cmp::Ordering;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tracing::warn;

/// What the bot remembers of a file it chunked: if its stamp is unchanged, its chunks are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedFile {
    /// The file's stamp when it was read.
    pub stamp: FileStamp,
    /// Its chunks.
    pub chunks: Vec<ChunkRef>,
}

/// One line of a cache: a file's path and what is remembered of it.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheLine {
    /// The path, relative to the root; for a path that is not UTF-8, a NUL (which no name
    /// holds) and its bytes in hex.
    path: String,
    /// What [`CachedFile::stamp`] says (not flattened: serde's flattening has no `i128`).
    stamp: FileStamp,
    /// What [`CachedFile::chunks`] says.
    chunks: Vec<ChunkRef>,
}

/// The cache key of a path's bytes (see [`CacheLine::path`]).
fn path_key(relative: &[u8]) -> String {
    match std::str::from_utf8(relative) {
        Ok(path) => path.to_string(),
        Err(_) => format!("\0{}", hex::encode(relative)),
    }
}

/// The path bytes of a cache key, or `None` for a key that is not one.
fn key_path(key: &str) -> Option<Vec<u8>> {
    match key.strip_prefix('\0') {
        Some(hex_path) => hex::decode(hex_path).ok(),
        None => Some(key.as_bytes().to_vec()),
    }
}

/// The order of a walk: folder by folder, names in byte order, a folder before its content
/// (`a` < `a/b` < `a.txt`, since the name `a` sorts before `a.txt`).
fn walk_order(left: &[u8], right: &[u8]) -> Ordering {
    left.split(|byte| *byte == b'/')
        .cmp(right.split(|byte| *byte == b'/'))
}

/// The previous cache, read a line at a time as the walk goes: a file is looked up after
/// every file before it in the walk's order, so no line is needed twice. A line that does not
/// parse ends the cache there (with a warning): it only saves work, and a file it does not
/// name is read.
pub struct PreviousFiles {
    lines: Option<Box<dyn BufRead + Send>>,
    /// The line read and not passed yet, with its path.
    pending: Option<(Vec<u8>, CachedFile)>,
}

impl PreviousFiles {
    /// No file remembered.
    pub fn none() -> Self {
        Self {
            lines: None,
            pending: None,
        }
    }

    /// The cache whose lines `lines` holds.
    pub fn reading(lines: Box<dyn BufRead + Send>) -> Self {
        Self {
            lines: Some(lines),
            pending: None,
        }
    }

    /// The cache whose lines the file `path` holds (as [`NextFiles`] wrote them).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self::reading(Box::new(BufReader::new(file))))
    }

    /// What is remembered of the file `entry`, if anything; lines of paths before it are
    /// passed over.
    pub fn find(&mut self, entry: &TreeEntry) -> Option<CachedFile> {
        loop {
            if self.pending.is_none() {
                self.pending = self.next_line();
            }
            let (path, _) = self.pending.as_ref()?;
            match walk_order(path, &entry.relative) {
                Ordering::Less => self.pending = None,
                Ordering::Equal => return self.pending.take().map(|(_, file)| file),
                Ordering::Greater => return None,
            }
        }
    }

    /// The next line, or `None` at the end (or at a damaged line, which ends the cache).
    fn next_line(&mut self) -> Option<(Vec<u8>, CachedFile)> {
        let lines = self.lines.as_mut()?;
        let mut line = String::new();
        let parsed = match lines.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => serde_json::from_str::<CacheLine>(&line)
                .map_err(|error| warn!("the file cache ends at a damaged line: {error}"))
                .ok()
                .and_then(|line| {
                    let file = CachedFile {
                        stamp: line.stamp,
                        chunks: line.chunks,
                    };
                    Some((key_path(&line.path)?, file))
                }),
            Err(error) => {
                warn!("the file cache could not be read further: {error}");
                None
            }
        };
        if parsed.is_none() {
            self.lines = None;
        }
        parsed
    }
}

/// The next cache, written a line at a time in the walk's order to a file only the bot reads.
pub struct NextFiles {
    path: PathBuf,
    out: BufWriter<File>,
}

impl NextFiles {
    /// A cache written to `path` (mode 0600; replaced if it exists).
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Remembers `file` as the content of `entry`, after every entry written before it.
    pub fn record(&mut self, entry: &TreeEntry, file: CachedFile) -> Result<()> {
        let line = CacheLine {
            path: path_key(&entry.relative),
            stamp: file.stamp,
            chunks: file.chunks,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Writes out what is buffered; the file the lines are in.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(self.path)
    }

    /// Removes the lines written: the cache they were for is not kept.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_order_puts_a_folder_before_its_content_and_names_in_byte_order() {
        let walked: &[&[u8]] = &[b"a", b"a/b", b"a/b/c", b"a/z", b"a.txt", b"b", b"\xff"];
        for pair in walked.windows(2) {
            assert_eq!(walk_order(pair[0], pair[1]), Ordering::Less, "{pair:?}");
            assert_eq!(walk_order(pair[1], pair[0]), Ordering::Greater, "{pair:?}");
        }
        assert_eq!(walk_order(b"a/b", b"a/b"), Ordering::Equal);
    }

    #[test]
    fn keys_of_paths_that_are_not_utf8_round_trip() {
        for path in [&b"plain/name"[..], b"not\xffutf8"] {
            assert_eq!(key_path(&path_key(path)).unwrap(), path);
        }
    }
}
