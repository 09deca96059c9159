//! Block stores: where snapshots go, one IPFS block per CID, kept alive by pinned roots.
//!
//! The embedded [`LocalStore`] needs nothing installed: blocks appended to pack files of about
//! 16 MiB, each closed by its index, and a directory of pins; [`LocalStore::collect_garbage`]
//! removes every block no pinned root reaches once its pack is older than a grace period,
//! repacking packs that are mostly garbage. [`KuboStore`] talks to an IPFS node's HTTP
//! RPC API (Kubo's, or any implementation of it, js-ipfs among them): `block/put`,
//! `block/get`, `pin/add`, `pin/rm`, `pin/ls`; that node's own garbage collector reclaims what
//! is unpinned. Both name blocks by the same CIDv1 (sha2-256), so blocks moved between them,
//! or to any IPFS node, keep their CIDs.

mod kubo;
mod local;

pub use self::kubo::{KuboStore, RpcError};
pub use self::local::{LocalStore, PACK_TARGET_BYTES, REPACK_BELOW_LIVE_PERCENT};

use crate::unixfs::Block;
use anyhow::Result;
use cid::Cid;
use std::path::PathBuf;
use std::time::Duration;

/// How long the embedded store keeps a block no pinned root reaches, counted from when its
/// pack was written. A pass interrupted before its pin leaves blocks no pin reaches; kept for an
/// hour, the next pass finds them whole and does not write them again. (kopia likewise
/// keeps unreferenced blobs for a while; restic keeps unreferenced packs until `prune`.)
pub const GC_GRACE: Duration = Duration::from_secs(60 * 60);

/// A place to put blocks, fetch them back by CID and pin the roots of snapshots.
pub enum ContentStore {
    /// The embedded store: a local directory.
    Local(LocalStore),
    /// An IPFS node's HTTP RPC API.
    Kubo(KuboStore),
}

impl ContentStore {
    /// Stores `block`; returns whether its bytes were new to the store (always `true` for an
    /// IPFS node, which does not say).
    pub async fn put_block(&self, block: &Block) -> Result<bool> {
        match self {
            Self::Local(store) => store.put_block(block),
            Self::Kubo(store) => store.put_block(block).await.map(|()| true),
        }
    }

    /// The bytes stored under `cid`, unverified (see [`Block::verified`]).
    pub async fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        match self {
            Self::Local(store) => store.get_block(cid),
            Self::Kubo(store) => store.get_block(cid).await,
        }
    }

    /// Whether the store holds the block `cid` (unverified).
    pub async fn has_block(&self, cid: &Cid) -> Result<bool> {
        match self {
            Self::Local(store) => Ok(store.holds(cid)),
            Self::Kubo(store) => store.has_block(cid).await,
        }
    }

    /// Whether a block of a pinned snapshot, `cid` of `size` bytes, is still whole, before a
    /// file cache reuses it. The embedded store checks that its index holds the block with
    /// that size (a pack is indexed only once synced whole); an IPFS node keeps every block
    /// a recursive pin reaches, so it is not asked.
    pub fn pinned_block_whole(&self, cid: &Cid, size: u64) -> Result<bool> {
        match self {
            Self::Local(store) => Ok(store.holds_whole(cid, size)),
            Self::Kubo(_) => Ok(true),
        }
    }

    /// Makes every block put so far durable (the embedded store's open pack finished and
    /// synced; an IPFS node syncs its own), before a root is pinned and recorded.
    pub fn sync(&self) -> Result<()> {
        match self {
            Self::Local(store) => store.sync(),
            Self::Kubo(_) => Ok(()),
        }
    }

    /// The same store, for the one process that puts blocks in it: an IPFS node then pins
    /// every block while it puts it, listing it in the file `journal`, until the root that
    /// reaches it is pinned (see [`KuboStore::pinning_while_putting`]). The embedded store's
    /// collection runs in that same process, after its pins, and needs none of it.
    pub fn pin_while_putting(self, journal: PathBuf) -> Self {
        match self {
            Self::Kubo(store) => Self::Kubo(store.pinning_while_putting(journal)),
            local => local,
        }
    }

    /// Pins `root` and, recursively, every block it links to; then releases the pins the
    /// blocks got while they were put.
    pub async fn pin(&self, root: &Cid) -> Result<()> {
        match self {
            Self::Local(store) => store.pin(root),
            Self::Kubo(store) => store.pin(root).await,
        }
    }

    /// Releases the pins that blocks got while they were put for a snapshot whose root was
    /// never pinned (a failed or killed attempt): its blocks are garbage, or will be put
    /// again. Nothing for the embedded store.
    pub async fn release_put_pins(&self) -> Result<()> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Kubo(store) => store.release_put_pins(None).await,
        }
    }

    /// Removes the pin of `root` (nothing happens if it has none).
    pub async fn unpin(&self, root: &Cid) -> Result<()> {
        match self {
            Self::Local(store) => store.unpin(root),
            Self::Kubo(store) => store.unpin(root).await,
        }
    }

    /// Whether `root` is pinned.
    pub async fn is_pinned(&self, root: &Cid) -> Result<bool> {
        match self {
            Self::Local(store) => Ok(store.is_pinned(root)),
            Self::Kubo(store) => store.is_pinned(root).await,
        }
    }

    /// Removes the blocks no pinned root reaches, in the embedded store; an IPFS node's own
    /// garbage collector does that for it (`None`).
    pub fn collect_garbage(&self) -> Result<Option<GarbageReport>> {
        match self {
            Self::Local(store) => store.collect_garbage().map(Some),
            Self::Kubo(_) => Ok(None),
        }
    }
}

/// What a garbage collection removed and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct GarbageReport {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Blocks kept (reached from a pinned root).
    pub kept_blocks: u64,
    /// Blocks no pinned root reaches, kept because their pack was written within the grace
    /// period.
    pub young_blocks: u64,
    /// Blocks no pinned root reaches, kept in packs whose reached blocks are still most of
    /// their bytes (see [`LocalStore::collect_garbage`]).
    pub garbage_kept_blocks: u64,
    /// Reached blocks copied out of packs that were mostly garbage (counted as kept too).
    pub repacked_blocks: u64,
}
