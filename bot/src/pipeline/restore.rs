//! Restoring a snapshot: its manifest opened and checked, the tree written into a staging
//! folder that replaces the target only once complete.

use super::crypto::ChunkOpener;
use super::read::{fetch_listed_chunk, open_chunk_of};
use super::{open_snapshot, BackupSecret, ChunkRef, OpenedManifest};
use crate::error::{ensure_valid, Error, Result};
use crate::staging::{FilePlace, Staging};
use crate::store::ContentStore;
use crate::tree;
use anyhow::{anyhow, Context};
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// What a restore wrote, and whose snapshot it was.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RestoreStats {
    /// The backup's owner (SS58), as the snapshot's manifest says.
    pub owner: String,
    /// The backup's node id, as the snapshot's manifest says.
    pub node_id: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored (the root excluded).
    pub directories: u64,
    /// Symbolic links restored.
    pub symlinks: u64,
    /// Hard links restored (second and later names of a file).
    pub hard_links: u64,
    /// Bytes of file content restored.
    pub content_bytes: u64,
}

/// Who a restored snapshot must belong to.
pub struct Expected<'a> {
    /// The backup's owner (SS58).
    pub owner: &'a str,
    /// The backup's node id.
    pub node_id: &'a str,
}

/// Restores snapshot `root` into `target` with `identity`: the tree is written into a staging
/// folder beside `target` and replaces `target` (if any) only when complete and on disk, so an
/// interrupted or refused restore leaves `target` as it was; once this returns, the restored
/// tree is on disk. With `expected`, a snapshot of another backup is refused.
pub async fn restore(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
    expected: Option<Expected<'_>>,
    target: &Path,
) -> Result<RestoreStats> {
    let manifest = open_snapshot(store, root, identity).await?;
    if let Some(expected) = expected {
        ensure_valid!(
            manifest.header.owner == expected.owner && manifest.header.node_id == expected.node_id,
            "the snapshot belongs to node {:?} of {}",
            manifest.header.node_id,
            manifest.header.owner
        );
    }
    let sizes = check_sizes(store, &manifest, target).await?;
    let mut staging = Staging::create(target)?;
    let stats = write_tree(store, &manifest, &sizes, &mut staging).await?;
    staging.replace(target)?;
    Ok(stats)
}

/// What a first reading of a manifest found: the bytes its files hold, and the paths its hard
/// links name (only those files' sizes are kept as they are written).
struct Sizes {
    total: u64,
    linked: HashSet<Vec<u8>>,
}

/// Checks, before anything is written, that every file's chunks add up to its size and that
/// the whole tree fits the free space of `target`'s file system: a snapshot naming one chunk
/// again and again cannot fill the disk.
async fn check_sizes(
    store: &ContentStore,
    manifest: &OpenedManifest,
    target: &Path,
) -> Result<Sizes> {
    let mut total = 0u64;
    let mut linked = HashSet::new();
    let mut entries = manifest.entries();
    while let Some(entry) = entries.next(store).await? {
        // A name that is not hex is refused at its link.
        if let Some(first) = entry
            .hard_link_hex
            .as_deref()
            .and_then(|hex| hex::decode(hex).ok())
        {
            linked.insert(first);
        }
        let listed: u64 = entry.chunks.iter().map(|chunk| u64::from(chunk.len)).sum();
        // A hard link takes no space: its size is its first name's, checked when it is made.
        let size = if entry.hard_link_hex.is_some() {
            0
        } else {
            entry.size
        };
        ensure_valid!(listed == size, "{} has the wrong size", entry.path);
        total = total.saturating_add(listed);
    }
    let mut place = target;
    while !place.exists() {
        match place.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => place = parent,
            _ => {
                place = Path::new(".");
                break;
            }
        }
    }
    let space = rustix::fs::statvfs(place)?;
    let free = space.f_bavail.saturating_mul(space.f_frsize);
    ensure_valid!(
        total <= free,
        "the snapshot holds {total} bytes and the restore target's file system has {free} free"
    );
    Ok(Sizes { total, linked })
}

/// Writes `manifest`'s tree (of `sizes`) into `staging`, fetching, verifying and decrypting
/// each chunk.
async fn write_tree(
    store: &ContentStore,
    manifest: &OpenedManifest,
    sizes: &Sizes,
    staging: &mut Staging,
) -> Result<RestoreStats> {
    let secret = &manifest.header.secret;
    let progress = crate::progress::bar(sizes.total, "restore");
    let mut stats = RestoreStats {
        owner: manifest.header.owner.clone(),
        node_id: manifest.header.node_id.clone(),
        ..RestoreStats::default()
    };
    // The size of each file a hard link names written so far: only those are kept.
    let linked = &sizes.linked;
    let mut written: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut writer = FileWriters::start(secret);
    let mut entries = manifest.entries();
    while let Some(entry) = entries.next(store).await? {
        let path = entry.path_bytes()?;
        tree::safe_relative_path(&path).map_err(|error| Error::invalid(error.to_string()))?;
        let mode = entry.permissions();
        if let Some(first) = &entry.hard_link_hex {
            let first =
                hex::decode(first).map_err(|_| Error::invalid("hard link path is not hex"))?;
            ensure_valid!(
                written.get(&first) == Some(&entry.size),
                "{} names no file of its size written before it",
                entry.path
            );
            staging.create_hard_link(&path, &first)?;
            stats.hard_links += 1;
            continue;
        }
        if entry.dir {
            staging.create_dir(&path, mode, entry.mtime_ns)?;
            stats.directories += 1;
            continue;
        }
        if let Some(target) = &entry.link_hex {
            let target =
                hex::decode(target).map_err(|_| Error::invalid("link target is not hex"))?;
            ensure_valid!(
                !target.is_empty() && !target.contains(&0),
                "{} has an empty link target",
                entry.path
            );
            staging.create_symlink(&path, &target, entry.mtime_ns)?;
            stats.symlinks += 1;
            continue;
        }
        // A file a hard link names is made here, before the link; the others by the writers,
        // several at a time (making a file may wait on its folder's lock or on the file
        // system's inode allocation).
        let file = if linked.contains(&path) {
            NewFile::Made(staging.create_file(&path)?)
        } else {
            NewFile::ToMake(staging.file_place(&path)?)
        };
        writer.send(WriteStep::Open(file))?;
        for chunk in &entry.chunks {
            let block = fetch_listed_chunk(store, chunk).await?;
            progress.inc(u64::from(chunk.len));
            writer.send(WriteStep::Append(block, chunk.clone()))?;
        }
        writer.send(WriteStep::Finish {
            mode,
            mtime_ns: entry.mtime_ns,
        })?;
        if linked.contains(&path) {
            written.insert(path, entry.size);
        }
        stats.files += 1;
        stats.content_bytes += entry.size;
    }
    writer.finish()?;
    progress.finish_and_clear();
    Ok(stats)
}

/// What a writer thread does, in order: open a file (making it, unless made already), append a
/// chunk to it (its verified block, decrypted there), give it its mode and time.
enum WriteStep {
    Open(NewFile),
    Append(Vec<u8>, ChunkRef),
    Finish { mode: u32, mtime_ns: Option<i64> },
}

/// A file to write: made already, or to be made by the writer.
enum NewFile {
    Made(File),
    ToMake(FilePlace),
}

/// Steps in flight between the restore and all its writers (32 chunks: 8 MiB at the average
/// chunk size, 32 MiB at most).
const WRITES_IN_FLIGHT: usize = 32;

/// Writer threads: each file goes to the next one, whole. Four, so that decrypting,
/// decompressing and writing use every core, and a file whose making waits (on its folder's
/// lock, or on the file system's inode allocation) does not hold up the others; restic's
/// restorer writes files from several workers too.
const WRITERS: usize = 4;

/// The restore's writers: files handed out in turn, each file's steps to one writer in order.
struct FileWriters {
    writers: Vec<FileWriter>,
    /// The writer of the file opened last.
    current: usize,
}

impl FileWriters {
    fn start(secret: &BackupSecret) -> Self {
        Self {
            writers: (0..WRITERS)
                .map(|_| FileWriter::start(secret.opener()))
                .collect(),
            current: 0,
        }
    }

    /// Hands `step` to the writer of its file (the next writer for an [`WriteStep::Open`]).
    fn send(&mut self, step: WriteStep) -> Result<()> {
        if matches!(step, WriteStep::Open(_)) {
            self.current = (self.current + 1) % self.writers.len();
        }
        self.writers[self.current].send(step)
    }

    /// Waits until every writer has written every step; the first error any met.
    fn finish(&mut self) -> Result<()> {
        let mut first_error = None;
        for writer in &mut self.writers {
            if let Err(error) = writer.finish() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Decrypts, decompresses and writes restored files on a thread of its own, so that fetching
/// and verifying the next blocks goes on meanwhile (restic's restorer decrypts and writes
/// concurrently too). A hard link made before its file's last bytes are written is the same
/// file, so it needs no wait.
struct FileWriter {
    steps: Option<SyncSender<WriteStep>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl FileWriter {
    fn start(mut opener: ChunkOpener) -> Self {
        let (steps, received) = sync_channel(WRITES_IN_FLIGHT / WRITERS);
        let thread = std::thread::spawn(move || -> Result<()> {
            // The file being written, and the bytes written into it.
            let mut open: Option<(File, u64)> = None;
            for step in received {
                match step {
                    WriteStep::Open(NewFile::Made(file)) => open = Some((file, 0)),
                    WriteStep::Open(NewFile::ToMake(place)) => open = Some((place.create()?, 0)),
                    WriteStep::Append(block, chunk) => {
                        let plaintext = open_chunk_of(&mut opener, &block, &chunk)?;
                        let (file, written) = open.as_mut().context("no file open")?;
                        file.write_all(&plaintext)?;
                        *written += plaintext.len() as u64;
                    }
                    WriteStep::Finish { mode, mtime_ns } => {
                        let (file, written) = open.take().context("no file open")?;
                        Staging::finish_file(&file, written, mode, mtime_ns)?;
                    }
                }
            }
            Ok(())
        });
        Self {
            steps: Some(steps),
            thread: Some(thread),
        }
    }

    /// Hands `step` to the writer; its error if it stopped.
    fn send(&mut self, step: WriteStep) -> Result<()> {
        let steps = self.steps.as_ref().context("the writer is finished")?;
        if steps.send(step).is_err() {
            self.finish()?;
            return Err(anyhow!("the restore's writer stopped").into());
        }
        Ok(())
    }

    /// Waits until every step is written; the first error the writer met.
    fn finish(&mut self) -> Result<()> {
        drop(self.steps.take());
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow!("the restore's writer panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for FileWriter {
    /// A restore stopped early still waits for its writer, before its staging folder goes.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
