//! The embedded store: blocks appended to pack files of about 16 MiB, each closed by the
//! index of its blocks, and a directory of pins; a garbage collection that never deletes
//! what a pinned root reaches, and copies the live blocks out of packs that are mostly
//! garbage (as restic's `prune` repacks).
//!
//! A pack (`packs/NAME.pack`, see [`pack`]) is written as `NAME.partial`, synced, and
//! renamed: a finished pack is whole, and a crash leaves at most a `.partial` file, which no
//! index names and the collection ([`gc`]) removes once older than the grace period.

mod gc;
mod pack;

pub use self::gc::REPACK_BELOW_LIVE_PERCENT;
pub use self::pack::PACK_TARGET_BYTES;

use self::pack::{cid_of, key_of, pack_path, partial_path, Key, OpenPack, Pack};
use super::GC_GRACE;
use crate::compact_map::CompactMap;
use crate::unixfs::Block;
use anyhow::{anyhow, bail, Context, Result};
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Read handles kept open on finished packs; all are closed when more are needed.
const MAX_OPEN_READERS: usize = 256;

/// Where a block's bytes are: which pack (its slot), at which offset, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    pack: u32,
    offset: u32,
    len: u32,
}

impl Location {
    /// The slot of the pack holding the block.
    fn slot(&self) -> usize {
        self.pack as usize
    }
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

/// What the store knows, behind one lock.
#[derive(Default)]
struct Packs {
    /// Packs by slot; `None` once removed.
    packs: Vec<Option<Pack>>,
    /// Where each block is (one copy, when an interrupted repack left two), in about 48
    /// bytes a block.
    index: CompactMap<Key, Location>,
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
        pack_path(&self.packs_dir, name)
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
            match pack::read_index(&self.packs_dir, &name) {
                Ok((pack, entries)) => {
                    let slot = packs.packs.len();
                    for entry in entries {
                        packs.index.insert(entry.key, entry.at(slot)?);
                    }
                    packs.packs.push(Some(pack));
                }
                Err(error) => packs.unreadable.push((name, format!("{error:#}"))),
            }
        }
        Ok(())
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
        self.lock()
            .index
            .iter()
            .map(|(key, _)| cid_of(key))
            .collect()
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
        key_of(cid).is_some_and(|key| self.lock().index.contains(&key))
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
        if packs.index.contains(&key) {
            return Ok(false);
        }
        self.append(&mut packs, key, &block.data)?;
        Ok(true)
    }

    /// Appends the block `key` to the open pack (opening one if needed) and indexes it
    /// there; finishes the pack once it reaches [`PACK_TARGET_BYTES`].
    fn append(&self, packs: &mut Packs, key: Key, data: &[u8]) -> Result<()> {
        if packs.open.is_none() {
            packs.open = Some(OpenPack::create(&self.packs_dir, packs.packs.len())?);
            packs.packs.push(None);
        }
        let open = packs.open.as_mut().expect("opened above");
        let entry = open.append(key, data)?;
        let (at, full) = (entry.at(open.slot)?, open.is_full());
        packs.index.insert(key, at);
        if full {
            self.finish_pack(packs)?;
        }
        Ok(())
    }

    /// Writes the open pack's index, syncs it and names it as finished (the directory entry
    /// is synced by [`LocalStore::sync`]).
    fn finish_pack(&self, packs: &mut Packs) -> Result<()> {
        let Some(open) = packs.open.take() else {
            return Ok(());
        };
        let slot = open.slot;
        let (mut pack, file) = open.close()?;
        let partial = partial_path(&self.packs_dir, &pack.name);
        self.timed_sync(&file)
            .with_context(|| format!("syncing {}", partial.display()))?;
        fs::rename(&partial, self.pack_path(&pack.name))
            .with_context(|| format!("naming {}", partial.display()))?;
        pack.modified = file.metadata()?.modified()?;
        packs.packs[slot] = Some(pack);
        packs.readers.insert(slot, file);
        Ok(())
    }

    /// The bytes at `at`, unverified.
    fn read(&self, packs: &mut Packs, at: Location) -> Result<Vec<u8>> {
        let mut bytes = vec![0; at.len as usize];
        if let Some(open) = packs.open.as_mut().filter(|open| open.slot == at.slot()) {
            open.read_at(&mut bytes, u64::from(at.offset))?;
            return Ok(bytes);
        }
        if !packs.readers.contains_key(&at.slot()) {
            let pack = packs.packs[at.slot()]
                .as_ref()
                .context("its pack was removed")?;
            let file = File::open(self.pack_path(&pack.name))?;
            if packs.readers.len() >= MAX_OPEN_READERS {
                packs.readers.clear();
            }
            packs.readers.insert(at.slot(), file);
        }
        packs.readers[&at.slot()].read_exact_at(&mut bytes, u64::from(at.offset))?;
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
            let found = packs.index.get(&key);
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

    /// Where the block `cid` lies, once the open pack is finished; `None` when the store does
    /// not hold it.
    pub fn locate(&self, cid: &Cid) -> Result<Option<BlockLocation>> {
        self.sync()?;
        let packs = self.lock();
        let Some(at) = key_of(cid).and_then(|key| packs.index.get(&key)) else {
            return Ok(None);
        };
        let pack = packs.packs[at.slot()]
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
        let at = packs.index.get(&key_of(other).unwrap()).unwrap();
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
        self.index.retain(|_, at| !slots.contains(&at.slot()));
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
