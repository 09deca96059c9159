//! The embedded store: blocks appended to pack files of about 16 MiB, each closed by the
//! index of its blocks, and a directory of pins; a garbage collection that never deletes
//! what a pinned root reaches, and copies the live blocks out of packs that are mostly
//! garbage (as restic's `prune` repacks).
//!
//! A pack (`packs/NAME.pack`) is the magic `bbpack1\n`, then one record per block (its key,
//! the CID's 36 bytes; its length, `u32` little-endian; its bytes), then its index: one entry
//! per block (key, offset of its bytes, length), the sha2-256 of the entries, their count
//! and the magic `bbindex1`. A pack is written as `NAME.partial`, synced, and renamed: a
//! finished pack is whole, and a crash leaves at most a `.partial` file, which no index
//! names and the collection removes once older than the grace period.

use super::{GarbageReport, GC_GRACE};
use crate::unixfs::{self, Block, DAG_PB};
use anyhow::{anyhow, bail, ensure, Context, Result};
use cid::Cid;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// A pack is closed once it holds this many bytes (restic's default pack size).
pub const PACK_TARGET_BYTES: u64 = 16 << 20;
/// A pack older than the grace period whose reached blocks hold less than this share of
/// its block bytes, in percent, is repacked: those blocks are copied to a new pack and it
/// is removed. Kept packs are therefore at most a quarter garbage.
pub const REPACK_BELOW_LIVE_PERCENT: u64 = 75;

const PACK_MAGIC: [u8; 8] = *b"bbpack1\n";
const INDEX_MAGIC: [u8; 8] = *b"bbindex1";
/// A block's key: its CIDv1 in bytes (version, one-byte codec, sha2-256 multihash).
const KEY_BYTES: usize = 36;
type Key = [u8; KEY_BYTES];
/// A record's header: the key and the block's length (`u32`).
const RECORD_HEADER_BYTES: usize = KEY_BYTES + 4;
/// An index entry: the key, the offset of the block's bytes and their length (`u32`s).
const ENTRY_BYTES: usize = KEY_BYTES + 8;
/// The end of a pack: the entries' sha2-256, their count and the index magic.
const TAIL_BYTES: usize = 32 + 4 + INDEX_MAGIC.len();
/// Read handles kept open on finished packs; all are closed when more are needed.
const MAX_OPEN_READERS: usize = 256;

/// The key of `cid`, or `None` for a CID the store cannot hold (not a CIDv1 with a one-byte
/// codec and a sha2-256 digest, as every [`Block`] is).
fn key_of(cid: &Cid) -> Option<Key> {
    cid.to_bytes().try_into().ok()
}

fn cid_of(key: &Key) -> Result<Cid> {
    Cid::try_from(&key[..]).map_err(|error| anyhow!("an index entry is not a CID: {error}"))
}

/// A block as a pack's index lists it: its key, the offset of its bytes, how many.
struct IndexEntry {
    key: Key,
    offset: u32,
    len: u32,
}

/// Where a block's bytes are: which pack, at which offset, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    pack: usize,
    offset: u32,
    len: u32,
}

/// Where a block lies on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLocation {
    /// Its pack file.
    pub pack: PathBuf,
    /// The offset of its bytes in the pack.
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// A finished pack.
struct Pack {
    name: String,
    /// Blocks in its index, and the bytes of those blocks.
    blocks: u64,
    block_bytes: u64,
    /// When it was finished (its modification time).
    modified: SystemTime,
}

/// The pack being written, as `NAME.partial`.
struct OpenPack {
    slot: usize,
    name: String,
    out: BufWriter<File>,
    len: u64,
    entries: Vec<u8>,
    blocks: u64,
    block_bytes: u64,
}

/// What the store knows, behind one lock.
#[derive(Default)]
struct Packs {
    /// Packs by slot; `None` once removed.
    packs: Vec<Option<Pack>>,
    /// Where each block is (one copy, when an interrupted repack left two).
    index: HashMap<Key, Location>,
    open: Option<OpenPack>,
    readers: HashMap<usize, File>,
    /// Finished packs whose index could not be read, with why.
    unreadable: Vec<(String, String)>,
}

/// A directory holding pack files (`packs/`) and one empty file per pinned root
/// (`pins/CID`).
pub struct LocalStore {
    packs_dir: PathBuf,
    pins: PathBuf,
    /// Boxed: a store is moved around in a [`super::ContentStore`].
    state: Box<Mutex<Packs>>,
    /// How long a block no pinned root reaches is kept after its pack was written.
    grace: Duration,
    /// Nanoseconds spent syncing packs and the packs' folder (see [`LocalStore::time_syncing`]).
    syncing_ns: AtomicU64,
}

impl LocalStore {
    /// A store in `root` (created if missing), collecting with the [`GC_GRACE`] period. The
    /// blocks of a store of the earlier layout (one file per block in `blocks/`) are moved
    /// into packs.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let store = Self {
            packs_dir: root.join("packs"),
            pins: root.join("pins"),
            state: Box::default(),
            grace: GC_GRACE,
            syncing_ns: AtomicU64::new(0),
        };
        for dir in [&store.packs_dir, &store.pins] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        store.load_packs(&mut store.lock())?;
        store.import_block_files(&root.join("blocks"))?;
        Ok(store)
    }

    /// The same store, keeping blocks no pinned root reaches for `grace` instead (zero: the
    /// next collection removes them).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Packs> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pack_path(&self, name: &str) -> PathBuf {
        self.packs_dir.join(format!("{name}.pack"))
    }

    /// Reads the index of every finished pack not known yet, and forgets the packs that are
    /// gone (another process repacked them).
    fn load_packs(&self, packs: &mut Packs) -> Result<()> {
        let mut on_disk = HashSet::new();
        for entry in fs::read_dir(&self.packs_dir)
            .with_context(|| format!("reading {}", self.packs_dir.display()))?
        {
            let file_name = entry?.file_name();
            if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".pack")) {
                on_disk.insert(name.to_string());
            }
        }
        let gone: HashSet<usize> = (0..packs.packs.len())
            .filter(|slot| {
                packs.packs[*slot]
                    .as_ref()
                    .is_some_and(|pack| !on_disk.remove(&pack.name))
            })
            .collect();
        packs.forget(&gone);
        packs.unreadable.retain(|(name, _)| !on_disk.remove(name));
        let mut names: Vec<String> = on_disk.into_iter().collect();
        names.sort();
        for name in names {
            match self.read_index(&name) {
                Ok((pack, entries)) => {
                    let slot = packs.packs.len();
                    for IndexEntry { key, offset, len } in entries {
                        packs.index.insert(
                            key,
                            Location {
                                pack: slot,
                                offset,
                                len,
                            },
                        );
                    }
                    packs.packs.push(Some(pack));
                }
                Err(error) => packs.unreadable.push((name, format!("{error:#}"))),
            }
        }
        Ok(())
    }

    /// The pack `name`, and its index entries, checked against the pack's length.
    fn read_index(&self, name: &str) -> Result<(Pack, Vec<IndexEntry>)> {
        let path = self.pack_path(name);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file.metadata()?;
        let len = meta.len();
        let mut tail = [0; TAIL_BYTES];
        ensure!(
            len >= (PACK_MAGIC.len() + TAIL_BYTES) as u64,
            "{} is too short to be a pack",
            path.display()
        );
        file.read_exact_at(&mut tail, len - TAIL_BYTES as u64)?;
        ensure!(
            tail[36..] == INDEX_MAGIC,
            "{} does not end with an index",
            path.display()
        );
        let count = u32::from_le_bytes(tail[32..36].try_into()?);
        let entries_len = u64::from(count) * ENTRY_BYTES as u64;
        let records_end = len
            .checked_sub(TAIL_BYTES as u64 + entries_len)
            .filter(|end| *end >= PACK_MAGIC.len() as u64)
            .with_context(|| format!("{} names more blocks than it holds", path.display()))?;
        let mut entries = vec![0; usize::try_from(entries_len)?];
        file.read_exact_at(&mut entries, records_end)?;
        ensure!(
            Sha256::digest(&entries)[..] == tail[..32],
            "the index of {} does not match its checksum",
            path.display()
        );
        let mut blocks = Vec::with_capacity(count as usize);
        let mut block_bytes = 0;
        for entry in entries.chunks_exact(ENTRY_BYTES) {
            let key: Key = entry[..KEY_BYTES].try_into()?;
            let offset = u32::from_le_bytes(entry[KEY_BYTES..KEY_BYTES + 4].try_into()?);
            let block_len = u32::from_le_bytes(entry[KEY_BYTES + 4..].try_into()?);
            ensure!(
                u64::from(offset) + u64::from(block_len) <= records_end,
                "{} indexes a block beyond its records",
                path.display()
            );
            block_bytes += u64::from(block_len);
            blocks.push(IndexEntry {
                key,
                offset,
                len: block_len,
            });
        }
        let pack = Pack {
            name: name.to_string(),
            blocks: u64::from(count),
            block_bytes,
            modified: meta.modified()?,
        };
        Ok((pack, blocks))
    }

    /// Moves the blocks of the earlier layout (`blocks/CID`, one file each) into packs: each
    /// is verified against its CID, stored and synced before its file is removed. A file
    /// that does not verify stays where it is.
    fn import_block_files(&self, dir: &Path) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
        };
        let mut imported = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let cid = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| Cid::try_from(name).ok());
            let block = cid.and_then(|cid| {
                let bytes = fs::read(&path).ok()?;
                Block::verified(&cid, bytes).ok()
            });
            if let Some(block) = block {
                self.put_block(&block)?;
                imported.push(path);
            }
        }
        self.sync()?;
        for path in imported {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        // Left in place when a block did not verify (or a partial write is there).
        let _ = fs::remove_dir(dir);
        Ok(())
    }

    /// The blocks held, by CID.
    pub fn block_cids(&self) -> Result<Vec<Cid>> {
        self.lock().index.keys().map(cid_of).collect()
    }

    /// Bytes the packs take on disk, the one being written included.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.packs_dir)? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }

    /// Whether the store holds the block `cid`.
    pub(super) fn holds(&self, cid: &Cid) -> bool {
        key_of(cid).is_some_and(|key| self.lock().index.contains_key(&key))
    }

    /// Whether the block `cid` is there with `size` bytes. A finished pack was synced before
    /// it was named, and the open one holds what this process wrote: an indexed block is
    /// whole unless the disk or a hand garbled it, which reads catch (they verify every
    /// block against its CID).
    pub(super) fn holds_whole(&self, cid: &Cid, size: u64) -> bool {
        key_of(cid).is_some_and(|key| {
            self.lock()
                .index
                .get(&key)
                .is_some_and(|at| u64::from(at.len) == size)
        })
    }

    /// Stores `block` unless the store holds it; returns whether it wrote it. Durable only
    /// after [`LocalStore::sync`].
    pub(super) fn put_block(&self, block: &Block) -> Result<bool> {
        let key = key_of(&block.cid).with_context(|| {
            format!(
                "{}: the embedded store holds CIDv1 sha2-256 blocks only",
                block.cid
            )
        })?;
        let mut packs = self.lock();
        if packs.index.contains_key(&key) {
            return Ok(false);
        }
        self.append(&mut packs, key, &block.data)?;
        Ok(true)
    }

    /// Appends the block `key` to the open pack (opening one if needed) and indexes it
    /// there; finishes the pack once it reaches [`PACK_TARGET_BYTES`].
    fn append(&self, packs: &mut Packs, key: Key, data: &[u8]) -> Result<()> {
        if packs.open.is_none() {
            packs.open = Some(self.create_pack(packs.packs.len())?);
            packs.packs.push(None);
        }
        let open = packs.open.as_mut().expect("opened above");
        let len = u32::try_from(data.len()).context("a block of 4 GiB or more")?;
        let offset = u32::try_from(open.len + RECORD_HEADER_BYTES as u64)
            .context("a pack of 4 GiB or more")?;
        open.out.write_all(&key)?;
        open.out.write_all(&len.to_le_bytes())?;
        open.out.write_all(data)?;
        open.entries.extend_from_slice(&key);
        open.entries.extend_from_slice(&offset.to_le_bytes());
        open.entries.extend_from_slice(&len.to_le_bytes());
        open.len = u64::from(offset) + u64::from(len);
        open.blocks += 1;
        open.block_bytes += u64::from(len);
        let slot = open.slot;
        let full = open.len >= PACK_TARGET_BYTES;
        packs.index.insert(
            key,
            Location {
                pack: slot,
                offset,
                len,
            },
        );
        if full {
            self.finish_pack(packs)?;
        }
        Ok(())
    }

    /// A new, empty pack in slot `slot`, under a name no other pack has.
    fn create_pack(&self, slot: usize) -> Result<OpenPack> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for attempt in 0u32.. {
            let name = format!("{nanos:x}-{:x}-{attempt}", std::process::id());
            let path = self.packs_dir.join(format!("{name}.partial"));
            let file = match File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(error).with_context(|| format!("creating {}", path.display()))
                }
            };
            let mut out = BufWriter::with_capacity(1 << 18, file);
            out.write_all(&PACK_MAGIC)?;
            return Ok(OpenPack {
                slot,
                name,
                out,
                len: PACK_MAGIC.len() as u64,
                entries: Vec::new(),
                blocks: 0,
                block_bytes: 0,
            });
        }
        unreachable!("the attempts are unbounded")
    }

    /// Writes the open pack's index, syncs it and names it as finished (the directory entry
    /// is synced by [`LocalStore::sync`]).
    fn finish_pack(&self, packs: &mut Packs) -> Result<()> {
        let Some(mut open) = packs.open.take() else {
            return Ok(());
        };
        let count = u32::try_from(open.blocks)?;
        open.out.write_all(&open.entries)?;
        open.out.write_all(&Sha256::digest(&open.entries))?;
        open.out.write_all(&count.to_le_bytes())?;
        open.out.write_all(&INDEX_MAGIC)?;
        let file = open.out.into_inner().map_err(|error| error.into_error())?;
        let partial = self.packs_dir.join(format!("{}.partial", open.name));
        self.timed_sync(&file)
            .with_context(|| format!("syncing {}", partial.display()))?;
        fs::rename(&partial, self.pack_path(&open.name))
            .with_context(|| format!("naming {}", partial.display()))?;
        packs.packs[open.slot] = Some(Pack {
            name: open.name,
            blocks: open.blocks,
            block_bytes: open.block_bytes,
            modified: file.metadata()?.modified()?,
        });
        packs.readers.insert(open.slot, file);
        Ok(())
    }

    /// The bytes at `at`, unverified.
    fn read(&self, packs: &mut Packs, at: Location) -> Result<Vec<u8>> {
        let mut bytes = vec![0; at.len as usize];
        if let Some(open) = packs.open.as_mut().filter(|open| open.slot == at.pack) {
            open.out.flush()?;
            open.out
                .get_ref()
                .read_exact_at(&mut bytes, u64::from(at.offset))?;
            return Ok(bytes);
        }
        if !packs.readers.contains_key(&at.pack) {
            let pack = packs.packs[at.pack]
                .as_ref()
                .context("its pack was removed")?;
            let file = File::open(self.pack_path(&pack.name))?;
            if packs.readers.len() >= MAX_OPEN_READERS {
                packs.readers.clear();
            }
            packs.readers.insert(at.pack, file);
        }
        packs.readers[&at.pack].read_exact_at(&mut bytes, u64::from(at.offset))?;
        Ok(bytes)
    }

    /// The bytes stored under `cid`, unverified (see [`Block::verified`]). A block this store
    /// does not know, or whose pack is gone, is looked for again among the packs on disk
    /// (another process may have written or repacked it).
    pub(super) fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        let key = key_of(cid).with_context(|| format!("block {cid} is not in the store"))?;
        let mut packs = self.lock();
        let mut reloaded = false;
        loop {
            let found = packs.index.get(&key).copied();
            let error = match found {
                Some(at) => match self.read(&mut packs, at) {
                    Ok(bytes) => return Ok(bytes),
                    Err(error) => error.context(format!("reading block {cid}")),
                },
                None => anyhow!("block {cid} is not in the store"),
            };
            if reloaded {
                return Err(error);
            }
            reloaded = true;
            packs.readers.clear();
            self.load_packs(&mut packs)?;
        }
    }

    /// Makes every block put so far durable: finishes the open pack (synced) and syncs the
    /// directory naming the packs.
    pub(super) fn sync(&self) -> Result<()> {
        self.finish_pack(&mut self.lock())?;
        File::open(&self.packs_dir)
            .and_then(|dir| self.timed_sync(&dir))
            .with_context(|| format!("syncing {}", self.packs_dir.display()))
    }

    /// `fsync`s `file`, counting the time it takes.
    fn timed_sync(&self, file: &File) -> std::io::Result<()> {
        let start = Instant::now();
        let synced = file.sync_all();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.syncing_ns.fetch_add(nanos, Ordering::Relaxed);
        synced
    }

    /// How long this store has spent syncing packs and their folder since it was opened:
    /// what durability costs.
    pub fn time_syncing(&self) -> Duration {
        Duration::from_nanos(self.syncing_ns.load(Ordering::Relaxed))
    }

    /// Pins `root`, once every block put so far is durable.
    pub(super) fn pin(&self, root: &Cid) -> Result<()> {
        self.sync()?;
        let path = self.pins.join(root.to_string());
        File::create(&path)
            .and_then(|file| file.sync_all())
            .and_then(|()| File::open(&self.pins)?.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }

    pub(super) fn unpin(&self, root: &Cid) -> Result<()> {
        match fs::remove_file(self.pins.join(root.to_string())) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    pub(super) fn is_pinned(&self, root: &Cid) -> bool {
        self.pins.join(root.to_string()).exists()
    }

    /// The pinned roots.
    pub fn pinned(&self) -> Result<Vec<Cid>> {
        let mut roots = Vec::new();
        for entry in fs::read_dir(&self.pins)? {
            let name = entry?.file_name();
            match Cid::try_from(name.to_string_lossy().as_ref()) {
                Ok(cid) => roots.push(cid),
                Err(_) => bail!("{name:?} among the pins is not a CID"),
            }
        }
        Ok(roots)
    }

    /// Every block reached from a pinned root, reading every dag-pb block (raw leaves have no
    /// links and are not read). A pin that names no CID, or a dag-pb block that is missing,
    /// unreadable, does not match its CID or does not decode, is an error: what it would have
    /// reached is unknown.
    fn reachable(&self) -> Result<HashSet<Cid>> {
        let mut reached = HashSet::new();
        let mut pending = self.pinned()?;
        while let Some(cid) = pending.pop() {
            if !reached.insert(cid) || cid.codec() != DAG_PB {
                continue;
            }
            let node = self
                .get_block(&cid)
                .and_then(|bytes| Block::verified(&cid, bytes))
                .and_then(|block| unixfs::decode_node(&block.data))
                .with_context(|| format!("garbage collection cannot follow {cid}"))?;
            pending.extend(node.links.into_iter().map(|link| link.cid));
        }
        Ok(reached)
    }

    /// Removes the packs holding no block a pinned root reaches, repacks those whose reached
    /// blocks are less than [`REPACK_BELOW_LIVE_PERCENT`] of their bytes (each such block read,
    /// verified against its CID and copied to a new pack, synced before the old pack goes),
    /// and leaves every pack written within the grace period alone; removes the partial
    /// packs a crash left once they are as old. Never deletes on doubt: any pin, pack index or
    /// dag-pb block it cannot read and decode, and any block to copy that does not verify,
    /// fails the whole collection before anything is removed. Safe to interrupt: a block is
    /// removed only once no pin reaches it or its copy is synced, and pins are taken after the
    /// blocks they reach are synced.
    pub fn collect_garbage(&self) -> Result<GarbageReport> {
        self.sync()?;
        if let Some((name, why)) = self.lock().unreadable.first() {
            bail!(
                "the index of pack {name} cannot be read ({why}); move it out of {} \
                 to collect garbage again",
                self.packs_dir.display()
            );
        }
        let reachable: HashSet<Key> = self.reachable()?.iter().filter_map(key_of).collect();
        let started = SystemTime::now();
        let mut packs = self.lock();
        // The reached blocks of each pack, by where the index finds them.
        let mut live: HashMap<usize, Vec<(Key, Location)>> = HashMap::new();
        for (key, at) in &packs.index {
            if reachable.contains(key) {
                live.entry(at.pack).or_default().push((*key, *at));
            }
        }
        let mut report = GarbageReport::default();
        let mut removed = Vec::new();
        for (slot, pack) in packs.packs.iter().enumerate() {
            let Some(pack) = pack else { continue };
            let kept = live.remove(&slot).unwrap_or_default();
            let kept_bytes: u64 = kept.iter().map(|(_, at)| u64::from(at.len)).sum();
            let garbage_blocks = pack.blocks - kept.len() as u64;
            // A time in the future counts as young, as does an age within the grace.
            let young = started
                .duration_since(pack.modified)
                .map_or(true, |age| age < self.grace);
            if young || garbage_blocks == 0 {
                report.young_blocks += if young { garbage_blocks } else { 0 };
                report.kept_blocks += kept.len() as u64;
            } else if kept_bytes * 100 >= pack.block_bytes * REPACK_BELOW_LIVE_PERCENT {
                report.kept_blocks += kept.len() as u64;
                report.garbage_kept_blocks += garbage_blocks;
            } else {
                report.removed_blocks += garbage_blocks;
                report.removed_bytes += pack.block_bytes - kept_bytes;
                removed.push((slot, kept));
            }
        }
        for (key, at) in removed.iter().flat_map(|(_, kept)| kept) {
            let cid = cid_of(key)?;
            let bytes = self.read(&mut packs, *at)?;
            let block = Block::verified(&cid, bytes)
                .with_context(|| format!("repacking {cid}: nothing was removed"))?;
            self.append(&mut packs, *key, &block.data)?;
            report.repacked_blocks += 1;
            report.kept_blocks += 1;
        }
        self.finish_pack(&mut packs)?;
        self.timed_sync(&File::open(&self.packs_dir)?)?;
        let removed: HashSet<usize> = removed.into_iter().map(|(slot, _)| slot).collect();
        for slot in &removed {
            if let Some(pack) = &packs.packs[*slot] {
                fs::remove_file(self.pack_path(&pack.name))?;
            }
        }
        packs.forget(&removed);
        self.remove_old_partial_packs(started)?;
        Ok(report)
    }

    /// Removes the `.partial` packs older than the grace period: left by a process that was
    /// stopped while writing, never named as finished, never indexed.
    fn remove_old_partial_packs(&self, now: SystemTime) -> Result<()> {
        for entry in fs::read_dir(&self.packs_dir)? {
            let entry = entry?;
            if !entry.file_name().to_string_lossy().ends_with(".partial") {
                continue;
            }
            let old = now
                .duration_since(entry.metadata()?.modified()?)
                .is_ok_and(|age| age >= self.grace);
            if old {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Where the block `cid` lies, once the open pack is finished; `None` when the store does
    /// not hold it.
    pub fn locate(&self, cid: &Cid) -> Result<Option<BlockLocation>> {
        self.sync()?;
        let packs = self.lock();
        let Some(at) = key_of(cid).and_then(|key| packs.index.get(&key).copied()) else {
            return Ok(None);
        };
        let pack = packs.packs[at.pack]
            .as_ref()
            .context("its pack was removed")?;
        Ok(Some(BlockLocation {
            pack: self.pack_path(&pack.name),
            offset: u64::from(at.offset),
            len: u64::from(at.len),
        }))
    }

    /// Makes the index find the bytes of `other` under `cid`, as a garbled index would.
    #[cfg(test)]
    pub(crate) fn swap_in(&self, cid: &Cid, other: &Cid) {
        let mut packs = self.lock();
        let at = packs.index[&key_of(other).unwrap()];
        packs.index.insert(key_of(cid).unwrap(), at);
    }
}

impl Packs {
    /// Forgets the packs in `slots` and the blocks the index finds there.
    fn forget(&mut self, slots: &HashSet<usize>) {
        if slots.is_empty() {
            return;
        }
        for slot in slots {
            self.packs[*slot] = None;
            self.readers.remove(slot);
        }
        self.index.retain(|_, at| !slots.contains(&at.pack));
    }
}

impl Drop for LocalStore {
    /// Finishes the open pack, so that another store opened on the same folder in this
    /// process finds its blocks (durable only if [`LocalStore::sync`] ran).
    fn drop(&mut self) {
        let _ = self.finish_pack(&mut self.lock());
    }
}

#[cfg(test)]
mod tests;
