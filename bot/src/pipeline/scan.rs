//! Scanning a folder: its tree listed without following links, each changed file chunked,
//! encrypted and stored, unchanged ones taken from the file cache.

use super::chunker::Chunker;
use super::crypto::ChunkSealer;
use super::file_cache::{CachedFile, NextFiles, PreviousFiles};
use super::{
    BackupSecret, ChunkRef, ManifestEntry, ManifestHeader, ManifestSealer, MANIFEST_FORMAT,
};
use crate::store::ContentStore;
use crate::tree::{EntryKind, FileStamp, Skipped, TreeEntry, TreeRoot, TreeWalk, Walked};
use crate::unixfs::Block;
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Smallest chunk FastCDC cuts (but for the end of a file).
pub const MIN_CHUNK: u32 = 64 * 1024;

/// Average chunk size FastCDC aims at.
pub const AVG_CHUNK: u32 = 256 * 1024;

/// Largest chunk: with its nonce and tag, a block under 1 MiB, the largest block every IPFS
/// implementation accepts and exchanges, with room for the multipart framing of `block/put`
/// (js-ipfs limits a whole request to 1 MiB).
pub const MAX_CHUNK: u32 = 1024 * 1024 - 4096;

/// Counts of a scan and a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SnapshotStats {
    /// Regular files in the tree.
    pub files: u64,
    /// Directories in the tree (the root excluded).
    pub directories: u64,
    /// Symbolic links in the tree.
    pub symlinks: u64,
    /// Second and later names of files in the tree (hard links), kept as links.
    pub hard_links: u64,
    /// Entries left out (see [`Scanned::skipped`]).
    pub skipped: u64,
    /// Bytes of file content in the tree.
    pub content_bytes: u64,
    /// Bytes read from files (those whose cache entry did not match).
    pub bytes_read: u64,
    /// Distinct chunks in the snapshot.
    pub chunks: u64,
    /// Blocks new to the store.
    pub new_blocks: u64,
    /// Bytes new to the store.
    pub new_bytes: u64,
    /// Bytes of every block of the snapshot (what `pin add ROOT` keeps).
    pub snapshot_bytes: u64,
}

/// A scanned tree: its manifest, pushed to a sealer (its pages and chunk list stored as they
/// filled).
pub struct Scanned {
    /// The manifest, to seal or to drop.
    pub manifest: ManifestSealer,
    /// Counts so far.
    pub stats: SnapshotStats,
    /// The entries left out: special files, and files that changed while they were read.
    pub skipped: Vec<Skipped>,
}

/// Stores `block`, counting it.
pub(super) async fn put_counted(
    store: &ContentStore,
    block: &Block,
    stats: &mut SnapshotStats,
) -> Result<()> {
    if store.put_block(block).await? {
        stats.new_blocks += 1;
        stats.new_bytes += block.data.len() as u64;
    }
    Ok(())
}

/// What the reader thread sends of each file it reads, in the order of the files given.
enum FileRead {
    /// The file's next chunk, sealed: its block and plaintext length.
    Chunk(Block, usize),
    /// The file's end: bytes read, and whether the file was still as listed.
    End { read: u64, unchanged: bool },
    /// The file is left out, for this reason (not opened).
    Skipped(&'static str),
}

/// Sealed chunks in flight between the reader thread and the store: 8 MiB at the average
/// chunk size, 32 MiB at most.
const CHUNKS_IN_FLIGHT: usize = 32;

/// Entries walked and planned ahead of the one being stored: the reader thread reads the
/// files among them while the store writes the blocks before. What the scan holds of the
/// tree is these, not the tree.
const ENTRIES_AHEAD: usize = 1024;

/// Starts a thread that opens, reads, chunks and seals the files `files` sends, beneath
/// `root`, in order (restic's archiver reads files while it saves blobs in the same way), so
/// that reading and sealing the next chunks goes on while the store writes the last ones. It
/// stops at the first error it sends, when `files` ends, or when the receiver is dropped.
fn spawn_reader(
    root: Arc<TreeRoot>,
    secret: &BackupSecret,
    files: std::sync::mpsc::Receiver<TreeEntry>,
) -> Result<mpsc::Receiver<Result<FileRead>>> {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut chunker = secret.chunker(MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
    let mut sealer = secret.sealer()?;
    std::thread::Builder::new()
        .name("snapshot reader".to_string())
        .spawn(move || {
            for entry in files {
                match read_file(&root, &mut chunker, &mut sealer, &entry, &sender) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                }
            }
        })
        .context("starting the snapshot reader thread")?;
    Ok(receiver)
}

/// Reads, chunks and seals the file `entry`, sending each [`FileRead`]; `Ok(false)` once the
/// receiver is gone.
fn read_file(
    root: &TreeRoot,
    chunker: &mut Chunker,
    sealer: &mut ChunkSealer,
    entry: &TreeEntry,
    sender: &mpsc::Sender<Result<FileRead>>,
) -> Result<bool> {
    let send = |read| sender.blocking_send(Ok(read)).is_ok();
    let file = match root.open_file(entry)? {
        Ok(file) => file,
        Err(reason) => return Ok(send(FileRead::Skipped(reason))),
    };
    let expected_len = entry.size();
    let mut read = 0u64;
    let receiver_there = chunker
        .each_chunk((&file).take(expected_len), |chunk| {
            read += chunk.len() as u64;
            let block = sealer.seal(chunk)?;
            Ok(send(FileRead::Chunk(block, chunk.len())))
        })
        .with_context(|| format!("reading {}", entry.display()))?;
    if !receiver_there {
        return Ok(false);
    }
    let now = FileStamp::of_file(&file)?;
    let unchanged =
        read == expected_len && now.size == expected_len && now.mtime_ns == entry.stamp.mtime_ns;
    Ok(send(FileRead::End { read, unchanged }))
}

/// Stores the next file `reader` sends: its chunks, or why it is left out (it was not the
/// file listed, or changed while it was read).
async fn store_file(
    store: &ContentStore,
    reader: &mut mpsc::Receiver<Result<FileRead>>,
    stats: &mut SnapshotStats,
) -> Result<Result<Vec<ChunkRef>, &'static str>> {
    let mut chunks = Vec::new();
    loop {
        let Some(read) = reader.recv().await else {
            bail!("the snapshot reader thread stopped");
        };
        match read? {
            FileRead::Chunk(block, len) => {
                put_counted(store, &block, stats).await?;
                chunks.push(ChunkRef::sealed(&block, len)?);
            }
            FileRead::End { read, unchanged } => {
                stats.bytes_read += read;
                return Ok(if unchanged {
                    Ok(chunks)
                } else {
                    Err(TreeRoot::CHANGED_WHILE_READ)
                });
            }
            FileRead::Skipped(reason) => return Ok(Err(reason)),
        }
    }
}

/// Whether every block of `chunks` is whole in `store` (see
/// [`ContentStore::pinned_block_whole`]): a cached file whose blocks were lost is read again.
fn all_whole(store: &ContentStore, chunks: &[ChunkRef]) -> Result<bool> {
    for chunk in chunks {
        let Ok(cid) = Cid::try_from(chunk.cid.as_str()) else {
            return Ok(false);
        };
        if !store.pinned_block_whole(&cid, chunk.block_len())? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How a listed file's chunks are found.
enum Plan {
    /// In the file cache: its stamp is unchanged and its blocks are whole in the store.
    Cached(Vec<ChunkRef>),
    /// Read by the reader thread.
    Read,
    /// Neither: another name of a file planned under an earlier name (a hard link), read
    /// only if that name is left out.
    Linked,
}

/// The plan of the listed `entry` (`None` for a folder or link), decided before any file
/// after it is read, so that the reader thread knows which to read. `planned` holds the
/// files with more than one name planned so far, by device and inode.
fn plan(
    store: &ContentStore,
    entry: &TreeEntry,
    previous: &mut PreviousFiles,
    planned: &mut HashMap<(u64, u64), FileStamp>,
) -> Result<Option<Plan>> {
    if !matches!(entry.kind, EntryKind::File { .. }) {
        return Ok(None);
    }
    let file = (entry.stamp.device, entry.stamp.inode);
    if planned.get(&file) == Some(&entry.stamp) {
        return Ok(Some(Plan::Linked));
    }
    if entry.links > 1 {
        planned.insert(file, entry.stamp);
    }
    let cached = previous
        .find(entry)
        .filter(|cached| cached.stamp == entry.stamp);
    Ok(Some(match cached {
        Some(cached) if all_whole(store, &cached.chunks)? => Plan::Cached(cached.chunks),
        _ => Plan::Read,
    }))
}

/// Files modified this close to the scan's start are read, but not cached: a write in the
/// same clock tick after the scan would leave their stamp unchanged.
const CACHE_SETTLE_NS: i128 = 1_000_000_000;

/// Reads the tree under `source` into a manifest, storing the chunks of every file whose stamp
/// is not in `previous` (the others are taken from it without reading), and writing what it
/// learns of the files to `next`. Special files, and files that change while they are read,
/// are left out and listed in [`Scanned::skipped`].
pub async fn scan(
    store: &ContentStore,
    source: &Path,
    secret: &BackupSecret,
    owner: &str,
    node_id: &str,
    previous: &mut PreviousFiles,
    mut next: Option<&mut NextFiles>,
) -> Result<Scanned> {
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let settled_before = i128::try_from(started_ns)? - CACHE_SETTLE_NS;
    let mut walk = TreeWalk::open(source)?;
    let root = Arc::new(walk.root()?);
    let (to_read, files) = std::sync::mpsc::sync_channel(ENTRIES_AHEAD);
    let mut reader = spawn_reader(root.clone(), secret, files)?;
    let progress = crate::progress::bytes_done("snapshot");
    let mut stats = SnapshotStats::default();
    let mut skipped = Vec::new();
    let mut manifest = ManifestSealer::new(ManifestHeader {
        format: MANIFEST_FORMAT,
        owner: owner.to_string(),
        node_id: node_id.to_string(),
        secret: secret.clone(),
    })?;
    // Files with more than one name, by device and inode: planned so far; and the first name
    // kept, with its stamp.
    let mut planned = HashMap::new();
    let mut first_names: HashMap<(u64, u64), (Vec<u8>, FileStamp)> = HashMap::new();
    let mut ahead = VecDeque::with_capacity(ENTRIES_AHEAD);
    let mut walked = false;
    loop {
        while !walked && ahead.len() < ENTRIES_AHEAD {
            match walk.next_item()? {
                None => walked = true,
                Some(Walked::Skipped(left_out)) => skipped.push(left_out),
                Some(Walked::Entry(entry)) => {
                    let plan = plan(store, &entry, previous, &mut planned)?;
                    if matches!(plan, Some(Plan::Read)) {
                        // Never waits: no more than ENTRIES_AHEAD are ahead. If the reader
                        // has stopped, its error comes with the files it was given.
                        let _ = to_read.send(entry.clone());
                    }
                    ahead.push_back((entry, plan));
                }
            }
        }
        let Some((entry, plan)) = ahead.pop_front() else {
            break;
        };
        let entry = &entry;
        progress.inc(entry.size());
        let chunks = match (&entry.kind, plan) {
            (EntryKind::Dir, _) => {
                stats.directories += 1;
                Vec::new()
            }
            (EntryKind::Symlink { .. }, _) => {
                stats.symlinks += 1;
                Vec::new()
            }
            (EntryKind::File { size }, plan) => {
                let file = (entry.stamp.device, entry.stamp.inode);
                let read = match plan {
                    Some(Plan::Cached(chunks)) => Ok(chunks),
                    Some(Plan::Read) => store_file(store, &mut reader, &mut stats).await?,
                    Some(Plan::Linked) | None => match first_names.get(&file) {
                        // The same file, unchanged since its first name was read: a link.
                        Some((first, stamp)) if *stamp == entry.stamp => {
                            stats.hard_links += 1;
                            let link = ManifestEntry::hard_link(entry, first);
                            manifest.push(store, &link, &mut stats).await?;
                            continue;
                        }
                        // Its first name was left out: this name is read on its own.
                        _ => {
                            let (to_read, files) = std::sync::mpsc::sync_channel(1);
                            to_read.send(entry.clone())?;
                            drop(to_read);
                            let mut alone = spawn_reader(root.clone(), secret, files)?;
                            store_file(store, &mut alone, &mut stats).await?
                        }
                    },
                };
                let chunks = match read {
                    Ok(chunks) => chunks,
                    Err(reason) => {
                        skipped.push(Skipped::of(entry, reason));
                        continue;
                    }
                };
                stats.files += 1;
                stats.content_bytes += size;
                if entry.links > 1 {
                    first_names.insert(file, (entry.relative.clone(), entry.stamp));
                }
                if let Some(next) = next
                    .as_mut()
                    .filter(|_| entry.stamp.mtime_ns < settled_before)
                {
                    let stamp = entry.stamp;
                    let chunks = chunks.clone();
                    next.record(entry, CachedFile { stamp, chunks })?;
                }
                chunks
            }
        };
        manifest
            .push(store, &ManifestEntry::of(entry, chunks), &mut stats)
            .await?;
    }
    progress.finish_and_clear();
    stats.skipped = skipped.len() as u64;
    Ok(Scanned {
        manifest,
        stats,
        skipped,
    })
}
