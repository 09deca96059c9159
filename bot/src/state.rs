//! What the bot keeps in its data directory between passes, each file replaced atomically
//! (written aside, synced, renamed) so that a crash leaves the old or the new version:
//!
//! - `cache/OWNER-NODEHEX.json`: per node, the last snapshot it recorded ([`NodeCache`], the
//!   first JSON line), then the stamp and chunks of every file it read, a line each in the
//!   walk's order ([`CacheFile`]). Only saves work: a missing or damaged one is reported and
//!   replaced;
//! - `pins.json`: per node, the snapshot roots it pinned and has not unpinned yet ([`Pins`]);
//! - `submitted.json`: the roots submitted with `add_snapshot` and not yet seen recorded,
//!   with the block of their submission ([`Submitted`]);
//! - `unserved.json`: the nodes taken out of the configuration whose pins the bot still
//!   holds, with the block at which it first found each unserved ([`Unserved`]);
//! - `lock`: held (`flock`) by the one process serving from this folder ([`DataDirLock`]),
//!   holding its pid.

use crate::config::ServedNode;
use crate::pipeline::{NextFiles, PreviousFiles};
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tracing::warn;

/// The key of a served node in the bot's files: owner and node id.
pub fn node_key(node: &ServedNode) -> String {
    format!("{}/{}", node.owner, node.node_id)
}

/// The cache format this code writes (2: the files as lines after this header; 1, one JSON
/// object holding every file, is not read: its node gets one snapshot with every file read).
const CACHE_FORMAT: u32 = 2;

/// What the bot remembers of the last snapshot it recorded of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeCache {
    /// [`CACHE_FORMAT`] when written.
    pub format: u32,
    /// CID of the snapshot's root.
    pub root: String,
    /// [`BackupSecret::fingerprint`](crate::pipeline::BackupSecret::fingerprint) of the
    /// secret its chunks are encrypted under: a cache made under another key is not used.
    #[serde(default)]
    pub secret_fingerprint: String,
    /// sha2-256 of its manifest, hex.
    pub manifest_sha256: String,
    /// The recipients its manifest was sealed to.
    pub recipients: Vec<String>,
}

impl NodeCache {
    /// The cache of snapshot `root`, of a manifest of digest `manifest_sha256` (hex) sealed to
    /// `recipients`, its chunks encrypted under the secret of fingerprint
    /// `secret_fingerprint`.
    pub fn new(
        root: String,
        secret_fingerprint: String,
        manifest_sha256: String,
        recipients: Vec<String>,
    ) -> Self {
        Self {
            format: CACHE_FORMAT,
            root,
            secret_fingerprint,
            manifest_sha256,
            recipients,
        }
    }

    /// Whether this is the cache of a snapshot of the same tree (manifest digest, hex)
    /// sealed to the same recipients: then a new snapshot would hold nothing new.
    pub fn describes(&self, manifest_sha256: &str, recipients: &[String]) -> bool {
        !self.root.is_empty()
            && self.manifest_sha256 == manifest_sha256
            && self.recipients == recipients
    }
}

/// The snapshot roots the bot pinned, by [`node_key`].
pub type Pins = BTreeMap<String, Vec<String>>;

/// The snapshot roots submitted with `add_snapshot` whose recording the bot has not seen
/// yet (it was stopped, or the call failed after it was sent), by CID: the block at which
/// each was submitted. A transaction may still land after the bot gave up on it.
pub type Submitted = BTreeMap<String, u32>;

/// The nodes no longer in the configuration whose pins the bot still holds, by
/// [`node_key`]: the block at which a pass first found each unserved.
pub type Unserved = BTreeMap<String, u32>;

/// The bot's files in its data directory.
pub struct StateDir {
    cache_dir: PathBuf,
    pins_path: PathBuf,
    submitted_path: PathBuf,
    unserved_path: PathBuf,
}

impl StateDir {
    /// The state kept in `data_dir` (folders created if missing).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let cache_dir = data_dir.join("cache");
        fs::create_dir_all(&cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        Ok(Self {
            cache_dir,
            pins_path: data_dir.join("pins.json"),
            submitted_path: data_dir.join("submitted.json"),
            unserved_path: data_dir.join("unserved.json"),
        })
    }

    /// The cache of `node`.
    pub fn cache_file(&self, node: &ServedNode) -> CacheFile {
        CacheFile::at(self.cache_dir.join(format!("{}.json", node.file_stem())))
    }

    /// The pinned roots; none when the file is missing or damaged (with a warning: the roots
    /// it named stay pinned until removed by hand).
    pub fn load_pins(&self) -> Pins {
        read_or_default(&self.pins_path)
    }

    /// Replaces the pinned roots.
    pub fn save_pins(&self, pins: &Pins) -> Result<()> {
        write_json_atomically(&self.pins_path, pins)
    }

    /// The submitted roots not seen recorded; none when the file is missing or damaged (with
    /// a warning).
    pub fn load_submitted(&self) -> Submitted {
        read_or_default(&self.submitted_path)
    }

    /// Replaces the submitted roots.
    pub fn save_submitted(&self, submitted: &Submitted) -> Result<()> {
        write_json_atomically(&self.submitted_path, submitted)
    }

    /// The nodes found unserved; none when the file is missing or damaged (with a warning:
    /// their grace periods start again).
    pub fn load_unserved(&self) -> Unserved {
        read_or_default(&self.unserved_path)
    }

    /// Replaces the nodes found unserved.
    pub fn save_unserved(&self, unserved: &Unserved) -> Result<()> {
        write_json_atomically(&self.unserved_path, unserved)
    }
}

/// A node's cache file: its [`NodeCache`] as the first JSON line, then the lines of its files
/// ([`NextFiles`]).
pub struct CacheFile {
    path: PathBuf,
}

impl CacheFile {
    /// The cache file at `path`.
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache, with its files to be read as a scan walks the tree; `None` when missing or
    /// damaged (with a warning), or of another format.
    pub fn load(&self) -> Option<(NodeCache, PreviousFiles)> {
        let loaded = fs::File::open(&self.path)
            .map_err(anyhow::Error::from)
            .and_then(|file| {
                let mut lines = std::io::BufReader::new(file);
                let mut header = String::new();
                lines.read_line(&mut header)?;
                let cache: NodeCache = serde_json::from_str(&header)?;
                anyhow::ensure!(
                    cache.format == CACHE_FORMAT,
                    "cache format {} is not {CACHE_FORMAT}",
                    cache.format
                );
                Ok((cache, PreviousFiles::reading(Box::new(lines))))
            });
        match loaded {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                if self.path.exists() {
                    warn!("ignoring {}: {error:#}", self.path.display());
                }
                None
            }
        }
    }

    /// A writer of the next cache's files, beside this one.
    pub fn next_files(&self) -> Result<NextFiles> {
        NextFiles::create(&with_suffix(&self.path, ".next"))
    }

    /// Replaces the cache with `cache` and the files `files` wrote: written aside, synced,
    /// then renamed over it.
    pub fn save(&self, cache: &NodeCache, files: NextFiles) -> Result<()> {
        let files = files.finish()?;
        let mut header = serde_json::to_vec(cache)?;
        header.push(b'\n');
        let mut lines = fs::File::open(&files)?;
        write_atomically(&self.path, |out| {
            out.write_all(&header)?;
            std::io::copy(&mut lines, out)?;
            Ok(())
        })?;
        fs::remove_file(&files).with_context(|| format!("removing {}", files.display()))
    }
}

/// The exclusive hold of one process on a data folder: a second bot on the same folder would
/// collect blocks the first has stored but not pinned yet, and both would rewrite the pins.
/// Released when dropped, or when the process ends however it ends (`flock`).
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created if missing), or fails at once naming the pid of
    /// the process that holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if let Err(error) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if error != rustix::io::Errno::WOULDBLOCK {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
            let mut holder = String::new();
            file.read_to_string(&mut holder)?;
            anyhow::bail!(
                "{} is in use by another backup-bot (pid {}): one process per data folder",
                data_dir.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(Self { _file: file })
    }
}

/// `path` with `suffix` added to its name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The JSON value in `path`, or the default when the file is missing or does not parse.
fn read_or_default<T: DeserializeOwned + Default>(path: &Path) -> T {
    let parsed = fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?));
    parsed.unwrap_or_else(|error| {
        if path.exists() {
            warn!("ignoring {}: {error:#}", path.display());
        }
        T::default()
    })
}

/// Writes `value` as JSON to `path` (see [`write_atomically`]).
fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec(value)?;
    write_atomically(path, |file| Ok(file.write_all(&json)?))
}

/// Writes the file `path` (mode 0600) with `write`: aside, synced, then renamed over it.
fn write_atomically(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let partial = with_suffix(path, ".partial");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    write(&mut file).with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all()?;
    fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{CachedFile, ChunkRef};
    use crate::tree::{EntryKind, FileStamp, TreeEntry};
    use std::os::unix::fs::PermissionsExt;
    use subxt_signer::sr25519::dev;

    #[test]
    fn one_lock_per_data_folder_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        let pid = format!("(pid {})", std::process::id());
        assert!(
            error.contains("in use by another backup-bot") && error.contains(&pid),
            "{error}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    /// A listed file at `path`, for the cache.
    fn listed(path: &str, inode: u64) -> TreeEntry {
        let stamp = FileStamp {
            size: 5,
            mtime_ns: 1,
            ctime_ns: 2,
            inode,
            device: 3,
        };
        TreeEntry {
            relative: path.as_bytes().to_vec(),
            kind: EntryKind::File { size: 5 },
            mode: 0o644,
            mtime_ns: 1,
            stamp,
            links: 1,
        }
    }

    #[test]
    fn a_cache_is_read_back_line_by_line_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let node = ServedNode {
            node_id: "n/../1".into(),
            owner: dev::bob().public_key().to_account_id(),
            source: PathBuf::from("/unused"),
            restore_to: PathBuf::from("/unused"),
        };
        let cache_file = state.cache_file(&node);
        assert_eq!(
            cache_file.path().parent().unwrap(),
            dir.path().join("cache")
        );
        assert!(cache_file.load().is_none(), "none yet");
        let cache = NodeCache::new("root".into(), "key".into(), "digest".into(), vec![]);
        let (first, second) = (listed("a/b", 10), listed("a.txt", 11));
        let remembered = |entry: &TreeEntry| CachedFile {
            stamp: entry.stamp,
            chunks: vec![ChunkRef {
                cid: format!("cid of {}", entry.display()),
                len: 5,
                block_len: Some(46),
            }],
        };
        let mut files = cache_file.next_files().unwrap();
        files.record(&first, remembered(&first)).unwrap();
        files.record(&second, remembered(&second)).unwrap();
        cache_file.save(&cache, files).unwrap();
        let (loaded, mut previous) = cache_file.load().unwrap();
        assert_eq!(loaded, cache);
        assert_eq!(previous.find(&listed("a", 9)), None, "not a file it read");
        assert_eq!(previous.find(&first), Some(remembered(&first)));
        assert_eq!(previous.find(&second), Some(remembered(&second)));
        let mode = fs::metadata(cache_file.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the bot reads what it remembers");

        // Cut in its second file: the first is still found, the rest is read again.
        let path = cache_file.path();
        let bytes = fs::read(path).unwrap();
        fs::write(path, &bytes[..bytes.len() - 20]).unwrap();
        let (_, mut previous) = cache_file.load().unwrap();
        assert_eq!(previous.find(&first), Some(remembered(&first)));
        assert_eq!(previous.find(&second), None);
        // Cut in its header, or of the format before (one object, files inside): ignored.
        fs::write(path, &bytes[..10]).unwrap();
        assert!(cache_file.load().is_none());
        fs::write(path, br#"{"root":"r","secret_fingerprint":"k","manifest_sha256":"d","recipients":[],"files":{}}"#).unwrap();
        assert!(cache_file.load().is_none());
    }
}
