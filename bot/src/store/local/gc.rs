//! Garbage collection of the embedded store: what pinned roots reach, packs removed or
//! repacked, partial packs left by a crash.

use super::pack::{cid_of, key_of, Key};
use super::{LocalStore, Location};
use crate::store::GarbageReport;
use crate::unixfs::{self, Block, DAG_PB};
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::time::SystemTime;

/// A pack older than the grace period whose reached blocks hold less than this share of
/// its block bytes, in percent, is repacked: those blocks are copied to a new pack and it
/// is removed. Kept packs are therefore at most a quarter garbage.
pub const REPACK_BELOW_LIVE_PERCENT: u64 = 75;

impl LocalStore {
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
        for (key, at) in packs.index.iter() {
            if reachable.contains(key) {
                live.entry(at.slot()).or_default().push((*key, *at));
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
}
