//! The embedded store: a directory of blocks named by CID and a directory of pins, with a
//! garbage collection that never deletes what a pinned root reaches.

use super::{GarbageReport, GC_GRACE};
use crate::unixfs::{self, Block, DAG_PB};
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How much older than the last sync a block must look to be trusted as synced: file times
/// come from the kernel's coarse clock, which may lag the clock the sync was timed with.
const SYNC_CLOCK_MARGIN_NS: u64 = 1_000_000_000;

/// A directory holding one file per block (`blocks/CID`), one empty file per pinned root
/// (`pins/CID`), and an empty file (`synced`) touched after each sync.
pub struct LocalStore {
    blocks: PathBuf,
    pins: PathBuf,
    synced: PathBuf,
    /// When the last sync ended (the mtime of `synced`), in nanoseconds since the epoch;
    /// zero before the first.
    synced_at: AtomicU64,
    /// How long a block no pinned root reaches is kept after it was written.
    grace: Duration,
}

/// Nanoseconds from the epoch to `time` (zero before it).
fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

impl LocalStore {
    /// A store in `root` (created if missing), collecting with the [`GC_GRACE`] period.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let synced = root.join("synced");
        let synced_at = match fs::metadata(&synced) {
            Ok(meta) => nanos_since_epoch(meta.modified()?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", synced.display()))
            }
        };
        let store = Self {
            blocks: root.join("blocks"),
            pins: root.join("pins"),
            synced,
            synced_at: AtomicU64::new(synced_at),
            grace: GC_GRACE,
        };
        for dir in [&store.blocks, &store.pins] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(store)
    }

    /// The same store, keeping blocks no pinned root reaches for `grace` instead (zero: the
    /// next collection removes them).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Where the block named `cid` lives.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.blocks.join(cid.to_string())
    }

    /// The blocks held, by CID.
    pub fn block_cids(&self) -> Result<Vec<Cid>> {
        let mut cids = Vec::new();
        for entry in fs::read_dir(&self.blocks)? {
            let name = entry?.file_name();
            if let Ok(cid) = Cid::try_from(name.to_string_lossy().as_ref()) {
                cids.push(cid);
            }
        }
        Ok(cids)
    }

    /// Bytes held in blocks.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.blocks)? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }

    /// Whether the block `cid` is there, whole, with `size` bytes. A block written since the
    /// last sync (or in the second before it) is in doubt (a power cut can leave a file its full size with other bytes
    /// in it): it is read and checked against its CID. A synced one is trusted by its size.
    pub(super) fn holds_whole(&self, cid: &Cid, size: u64) -> Result<bool> {
        let meta = match fs::symlink_metadata(self.path_of(cid)) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error).with_context(|| format!("reading block {cid}")),
        };
        if !meta.is_file() || meta.len() != size {
            return Ok(false);
        }
        let written_ns = nanos_since_epoch(meta.modified()?);
        let synced_ns = self.synced_at.load(Ordering::Relaxed);
        if written_ns.saturating_add(SYNC_CLOCK_MARGIN_NS) < synced_ns {
            return Ok(true);
        }
        Ok(self
            .get_block(cid)
            .and_then(|bytes| Block::verified(cid, bytes))
            .is_ok())
    }

    /// Stores `block` unless a whole copy is there (a block cut short or garbled by a power
    /// cut is written again); returns whether it wrote it. Durable only after
    /// [`LocalStore::sync`].
    pub(super) fn put_block(&self, block: &Block) -> Result<bool> {
        let target = self.path_of(&block.cid);
        if self.holds_whole(&block.cid, block.data.len() as u64)? {
            return Ok(false);
        }
        // Write under a temporary name, then rename: a crash never leaves a partial block
        // under a CID.
        let partial = self.blocks.join(format!(".{}.partial", block.cid));
        fs::write(&partial, &block.data)
            .with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, &target)?;
        Ok(true)
    }

    pub(super) fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        fs::read(self.path_of(cid)).with_context(|| format!("block {cid} is not in the store"))
    }

    /// Syncs the file system holding the blocks (`syncfs`: one call for every block written,
    /// with their directory entries), then touches `synced`: every block older than it is
    /// durable.
    pub(super) fn sync(&self) -> Result<()> {
        let blocks = fs::File::open(&self.blocks)?;
        rustix::fs::syncfs(&blocks)
            .with_context(|| format!("syncing {}", self.blocks.display()))?;
        let marker = fs::File::create(&self.synced)
            .with_context(|| format!("writing {}", self.synced.display()))?;
        let now = SystemTime::now();
        marker.set_modified(now)?;
        self.synced_at
            .store(nanos_since_epoch(now), Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn pin(&self, root: &Cid) -> Result<()> {
        let path = self.pins.join(root.to_string());
        fs::File::create(&path)
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::File::open(&self.pins)?.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }

    pub(super) fn unpin(&self, root: &Cid) -> Result<()> {
        match fs::remove_file(self.pins.join(root.to_string())) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
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

    /// Removes every block (and leftover partial write) that no pinned root reaches and
    /// that was written longer ago than the grace period. Never deletes on doubt: any pin or
    /// dag-pb block it cannot read and decode fails the whole collection before anything is
    /// removed, and so does a block whose age cannot be read. Safe to interrupt: it only
    /// ever removes unreachable blocks, and pins are taken before a snapshot is recorded,
    /// after its blocks are stored and synced.
    pub fn collect_garbage(&self) -> Result<GarbageReport> {
        let reachable = self.reachable()?;
        let started = SystemTime::now();
        let mut report = GarbageReport::default();
        for entry in fs::read_dir(&self.blocks)? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = Cid::try_from(name.to_string_lossy().as_ref())
                .is_ok_and(|cid| reachable.contains(&cid));
            if keep {
                report.kept_blocks += 1;
                continue;
            }
            let meta = entry.metadata()?;
            // A time in the future counts as young, as does an age within the grace.
            let young = started
                .duration_since(meta.modified()?)
                .map_or(true, |age| age < self.grace);
            if young {
                report.young_blocks += 1;
                continue;
            }
            fs::remove_file(entry.path())?;
            report.removed_blocks += 1;
            report.removed_bytes += meta.len();
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{directory_node, Link, RAW};

    fn raw(bytes: &[u8]) -> Block {
        Block::new(RAW, bytes.to_vec()).unwrap()
    }

    #[test]
    fn blocks_round_trip_and_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"block bytes");
        assert!(store.put_block(&block).unwrap());
        assert!(!store.put_block(&block).unwrap());
        let bytes = store.get_block(&block.cid).unwrap();
        assert_eq!(Block::verified(&block.cid, bytes).unwrap(), block);
        assert!(store.get_block(&raw(b"never stored").cid).is_err());
    }

    /// A power cut can leave a block written before it its full size, with zeros in it: until
    /// the store is synced, such a block is checked against its CID before it is trusted.
    #[test]
    fn a_garbled_block_written_since_the_last_sync_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"a block a power cut garbled");
        assert!(store.put_block(&block).unwrap());
        fs::write(store.path_of(&block.cid), vec![0; block.data.len()]).unwrap();
        assert!(store.put_block(&block).unwrap(), "rewritten");
        assert_eq!(store.get_block(&block.cid).unwrap(), block.data);
        store.sync().unwrap();
        assert!(!store.put_block(&block).unwrap(), "whole and synced");
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert!(reopened
            .holds_whole(&block.cid, block.data.len() as u64)
            .unwrap());
    }

    #[test]
    fn a_block_cut_short_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"a whole block");
        assert!(store.put_block(&block).unwrap());
        fs::write(store.path_of(&block.cid), b"").unwrap();
        assert!(!store.holds_whole(&block.cid, 13).unwrap());
        assert!(store.put_block(&block).unwrap(), "rewritten");
        assert_eq!(store.get_block(&block.cid).unwrap(), block.data);
        store.sync().unwrap();
    }

    /// A pinned root reaching a node that cannot be read: the collection stops and removes
    /// nothing, not even a block no pin reaches, since what the bad node links to is unknown.
    #[test]
    fn garbage_collection_with_an_unreadable_block_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path())
            .unwrap()
            .with_grace(Duration::ZERO);
        let (leaf, unreferenced) = (raw(b"leaf"), raw(b"unreferenced"));
        let link = |block: &Block| Link {
            cid: block.cid,
            name: "x".into(),
            tsize: block.data.len() as u64,
        };
        let middle = directory_node(vec![link(&leaf)]).unwrap();
        let root = directory_node(vec![link(&middle)]).unwrap();
        for block in [&leaf, &unreferenced, &middle, &root] {
            store.put_block(block).unwrap();
        }
        store.pin(&root.cid).unwrap();
        let damaged = |bytes: &[u8]| {
            let mut bytes = bytes.to_vec();
            bytes[0] ^= 0xff;
            bytes
        };
        let path = store.path_of(&middle.cid);
        fs::remove_file(&path).unwrap();
        for (what, content) in [
            ("unreadable", None),
            ("damaged", Some(damaged(&middle.data))),
        ] {
            match &content {
                // A directory where the block should be: reading it fails.
                None => fs::create_dir(&path).unwrap(),
                Some(bytes) => fs::write(&path, bytes).unwrap(),
            }
            let error = store.collect_garbage().unwrap_err();
            assert!(
                format!("{error:#}").contains("cannot follow"),
                "{what}: {error:#}"
            );
            assert_eq!(
                store.block_cids().unwrap().len(),
                4,
                "{what}: nothing removed"
            );
            match content {
                None => fs::remove_dir(&path).unwrap(),
                Some(_) => fs::remove_file(&path).unwrap(),
            }
        }
        store.put_block(&middle).unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!((report.removed_blocks, report.kept_blocks), (1, 3));
    }

    #[test]
    fn garbage_collection_keeps_what_pins_reach() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path())
            .unwrap()
            .with_grace(Duration::ZERO);
        let (kept, dropped) = (raw(b"kept"), raw(b"dropped"));
        let link = |block: &Block| Link {
            cid: block.cid,
            name: "x".into(),
            tsize: block.data.len() as u64,
        };
        let root = directory_node(vec![link(&kept)]).unwrap();
        let other_root = directory_node(vec![link(&dropped)]).unwrap();
        for block in [&kept, &dropped, &root, &other_root] {
            store.put_block(block).unwrap();
        }
        store.pin(&root.cid).unwrap();
        store.pin(&other_root.cid).unwrap();
        store.unpin(&other_root.cid).unwrap();
        store.unpin(&other_root.cid).unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!((report.removed_blocks, report.kept_blocks), (2, 2));
        let mut left = store.block_cids().unwrap();
        left.sort();
        let mut expected = vec![kept.cid, root.cid];
        expected.sort();
        assert_eq!(left, expected);
    }

    /// A block no pin reaches stays while it is younger than the grace period (a pass
    /// interrupted before its pin finds it again), and goes once older.
    #[test]
    fn unreferenced_blocks_stay_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let (recent, old) = (raw(b"written just now"), raw(b"written two hours ago"));
        for block in [&recent, &old] {
            store.put_block(block).unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
        fs::File::options()
            .write(true)
            .open(store.path_of(&old.cid))
            .and_then(|file| file.set_modified(two_hours_ago))
            .unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!(
            (
                report.removed_blocks,
                report.young_blocks,
                report.kept_blocks
            ),
            (1, 1, 0)
        );
        assert_eq!(report.removed_bytes, old.data.len() as u64);
        assert_eq!(store.block_cids().unwrap(), [recent.cid]);
    }
}
