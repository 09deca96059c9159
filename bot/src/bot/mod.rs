//! The bot's work: one pass snapshots every served node that is due, unpins the snapshots
//! the registry no longer keeps, and serves every open restore request of a served node.
//!
//! A pass never panics on bad data: a node that cannot be read is logged and skipped, a
//! request whose content fails its checks is marked failed with a short reason, and errors
//! that may pass (an unreachable chain or content store) leave the request claimed by this
//! bot, which resumes it on its next pass, even after a restart.

use crate::chain::Chain;
use crate::config::ServedNode;
use crate::keys::Keyring;
use crate::pipeline::SnapshotStats;
use crate::registry::Registry;
use crate::state::{node_key, Pins, StateDir, Submitted, Unserved};
use crate::store::{ContentStore, GarbageReport};
use crate::tree::Skipped;
use anyhow::Result;
use backup_registry::RequestId;
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tracing::{info, warn};

mod restore;
mod snapshot;
mod unpin;

pub use self::snapshot::{snapshot_if_changed, Snapshot, SnapshotSource};

/// Blocks a submitted snapshot stays pinned while the registry does not show it (an hour of
/// 6-second blocks): its transaction may still land after the bot gave up on it, and the
/// registry would then name a snapshot whose blocks were collected.
pub const SUBMITTED_GRACE_BLOCKS: u32 = 600;

/// Blocks the pins of a node taken out of the configuration are held (a week of 6-second
/// blocks), by default: long enough to notice and undo a configuration mistake, after which
/// the operator's choice to stop serving the node frees its storage.
pub const RELEASE_UNSERVED_AFTER_BLOCKS: u32 = 100_800;

/// Whether a node whose last snapshot (or last unchanged check) was at block `last` is due
/// for a snapshot at block `now`, with a frequency of `frequency` blocks.
pub fn snapshot_due(now: u32, last: Option<u32>, frequency: u32) -> bool {
    match last {
        None => true,
        Some(last) => now.saturating_sub(last) >= frequency,
    }
}

/// A snapshot a pass recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedSnapshot {
    /// The node's id.
    pub node_id: String,
    /// The snapshot root's CID, as recorded.
    pub cid: String,
    /// What it holds and what it added to the store.
    pub stats: SnapshotStats,
    /// Entries of the node's folder left out: special files, and files that changed while
    /// they were read (taken next time).
    pub skipped: Vec<Skipped>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Snapshots recorded.
    pub snapshots: Vec<RecordedSnapshot>,
    /// Nodes whose content was already recorded (unchanged since a kept snapshot).
    pub unchanged: Vec<String>,
    /// Nodes not due yet.
    pub not_due: Vec<String>,
    /// Nodes skipped because their owner has no backup of them on chain (never created, or
    /// deleted): the registry takes snapshots only into backups their owners created.
    pub no_backup: Vec<String>,
    /// Nodes skipped because their backup's storage reserve cannot hold another snapshot
    /// (`InsufficientFunds`): their owner adds to it with `fund_backup`.
    pub unfunded: Vec<String>,
    /// Restore requests fulfilled.
    pub fulfilled: Vec<RequestId>,
    /// Restore requests marked failed, with the reason.
    pub failed: Vec<(RequestId, String)>,
    /// Snapshot roots unpinned because the registry no longer keeps them (pruned by
    /// retention, or their backup deleted), or because their node left the configuration
    /// more than the release period ago.
    pub unpinned: Vec<String>,
    /// What the embedded store's garbage collection removed, when it ran.
    pub garbage: Option<GarbageReport>,
    /// Errors that left work for the next pass.
    pub errors: Vec<String>,
}

/// A one-line summary, as logged after each pass.
impl std::fmt::Display for PassReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} snapshots, {} unchanged, {} not due, {} without a backup, {} unfunded, \
             {} restored, {} failed, {} unpinned, {} errors",
            self.snapshots.len(),
            self.unchanged.len(),
            self.not_due.len(),
            self.no_backup.len(),
            self.unfunded.len(),
            self.fulfilled.len(),
            self.failed.len(),
            self.unpinned.len(),
            self.errors.len()
        )
    }
}

/// The bot: a registry handle, a content store, its keys, its state and the nodes it serves.
pub struct Bot<C> {
    registry: Registry<C>,
    store: ContentStore,
    keyring: Keyring,
    nodes: Vec<ServedNode>,
    state: StateDir,
    /// The snapshot roots this bot pinned, by node.
    pins: Pins,
    /// The roots submitted and not seen recorded yet.
    submitted: Submitted,
    /// The nodes out of the configuration whose pins are held, and since when.
    unserved: Unserved,
    /// Blocks after which an unserved node's pins are released.
    release_unserved_after: u32,
    /// Recipients every manifest is sealed to, beside the node's key and its owner's.
    extra_recipients: Vec<age::x25519::Recipient>,
    /// Whether the embedded store was collected since the bot started (a crash may have left
    /// blocks of a snapshot never recorded).
    collected_since_start: bool,
    /// Block at which each node's content was last found unchanged (by [`node_key`]).
    unchanged_at: HashMap<String, u32>,
    /// Nodes found without a backup on chain and logged as such (by [`node_key`]), so that
    /// the log says it once, not every pass.
    reported_without_backup: HashSet<String>,
    /// Nodes whose backup's storage reserve was found too small and logged as such (by
    /// [`node_key`]), so that the log says it once, not every pass.
    reported_unfunded: HashSet<String>,
}

impl<C: Chain> Bot<C> {
    /// A bot serving `nodes`, keeping its identities in `data_dir/keys` and its state (file
    /// cache, pins) in `data_dir` (see [`crate::state`]).
    pub fn new(
        registry: Registry<C>,
        store: ContentStore,
        nodes: Vec<ServedNode>,
        data_dir: &Path,
    ) -> Result<Self> {
        let state = StateDir::open(data_dir)?;
        let bot = Self {
            registry,
            store,
            keyring: Keyring::open(data_dir.join("keys"))?,
            nodes,
            pins: state.load_pins(),
            submitted: state.load_submitted(),
            unserved: state.load_unserved(),
            release_unserved_after: RELEASE_UNSERVED_AFTER_BLOCKS,
            state,
            extra_recipients: Vec::new(),
            collected_since_start: false,
            unchanged_at: HashMap::new(),
            reported_without_backup: HashSet::new(),
            reported_unfunded: HashSet::new(),
        };
        for node in &bot.nodes {
            bot.identity_to_seal(node, false)?;
            crate::staging::remove_leftovers_of(&node.restore_to)?;
        }
        Ok(bot)
    }

    /// The identity that seals `node`'s snapshots; when it has none yet, a new one if
    /// `may_create`. Never a new one while this bot keeps pins of snapshots of the node (the
    /// registry still holds snapshots sealed with the missing identity, say a `keys/` folder
    /// not mounted): a new key would leave them unreadable to the bot, and its file cache
    /// would mix in chunks encrypted under the old secret.
    fn identity_to_seal(
        &self,
        node: &ServedNode,
        may_create: bool,
    ) -> Result<Option<age::x25519::Identity>> {
        if let Some(identity) = self.keyring.identity(node)? {
            return Ok(Some(identity));
        }
        let sealed_before = self
            .pins
            .get(&node_key(node))
            .is_some_and(|roots| !roots.is_empty());
        anyhow::ensure!(
            !sealed_before,
            "the age identity of node {:?} is missing ({}) while the registry keeps snapshots \
             this bot sealed with it (see pins.json): put the keys folder back; a new identity \
             is not created in its place",
            node.node_id,
            self.keyring.path_of(node).display()
        );
        if may_create {
            return self.keyring.create_identity(node).map(Some);
        }
        Ok(None)
    }

    /// Seals every later manifest to `recipients` too (for example an offline recovery key).
    pub fn set_extra_recipients(&mut self, recipients: Vec<age::x25519::Recipient>) {
        self.extra_recipients = recipients;
    }

    /// Holds the pins of a node taken out of the configuration for `blocks` (from the pass
    /// that first finds it unserved) before releasing them.
    pub fn set_release_unserved_after(&mut self, blocks: u32) {
        self.release_unserved_after = blocks;
    }

    /// The content store.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// The bot's keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The registry handle.
    pub fn registry(&mut self) -> &mut Registry<C> {
        &mut self.registry
    }

    /// Checks that the bot's account is an authority of the registry.
    pub async fn check_authority(&mut self) -> Result<()> {
        let account = self.registry.account();
        if !self.registry.is_authority(&account).await? {
            anyhow::bail!(
                "{account} is not an authority of this registry: ask its admin to add it"
            );
        }
        Ok(())
    }

    /// One pass: restores first (a snapshot someone asked for is served before anything is
    /// pruned), then snapshots, then unpinning what the registry dropped, then the embedded
    /// store's garbage collection.
    pub async fn pass(&mut self) -> Result<PassReport> {
        let mut report = PassReport::default();
        if let Err(error) = self.serve_restores(&mut report).await {
            warn!("serving restores failed: {error:#}");
            report.errors.push(format!("restores: {error:#}"));
        }
        let now = self.registry.block_number().await?;
        // The pins an IPFS node gave the blocks of an attempt that failed or was killed.
        if let Err(error) = self.store.release_put_pins().await {
            warn!("releasing the pins of blocks put before failed: {error:#}");
            report.errors.push(format!("releasing pins: {error:#}"));
        }
        for node in self.nodes.clone() {
            if let Err(error) = self.snapshot_if_due(&node, now, &mut report).await {
                warn!(node = %node.node_id, "snapshot failed: {error:#}");
                report.errors.push(format!("{}: {error:#}", node.node_id));
            }
        }
        // As CIDv1, the spelling of the roots the bot pins (a request may name one in v0).
        let requested: HashSet<Cid> = match self.registry.open_restore_requests().await {
            Ok(requests) => requests
                .iter()
                .filter_map(|(_, request)| Cid::try_from(request.cid.as_str()).ok())
                .map(|cid| Cid::new_v1(cid.codec(), *cid.hash()))
                .collect(),
            Err(error) => {
                warn!("nothing unpinned: the open restore requests cannot be read: {error:#}");
                report.errors.push(format!("restore requests: {error:#}"));
                return Ok(report);
            }
        };
        for node in self.nodes.clone() {
            if let Err(error) = self
                .unpin_dropped(&node, now, &requested, &mut report)
                .await
            {
                warn!(node = %node.node_id, "unpinning failed: {error:#}");
                report.errors.push(format!("{}: {error:#}", node.node_id));
            }
        }
        if let Err(error) = self.unpin_unserved(now, &requested, &mut report).await {
            warn!("unpinning the snapshots of nodes no longer served failed: {error:#}");
            report
                .errors
                .push(format!("nodes no longer served: {error:#}"));
        }
        if !report.unpinned.is_empty() || !self.collected_since_start {
            match self.store.collect_garbage() {
                Ok(garbage) => {
                    self.collected_since_start = true;
                    report.garbage = garbage;
                }
                Err(error) => {
                    warn!("garbage collection stopped, nothing removed: {error:#}");
                    report.errors.push(format!("garbage collection: {error:#}"));
                }
            }
            if let Some(garbage) = &report.garbage {
                info!(
                    removed_blocks = garbage.removed_blocks,
                    removed_bytes = garbage.removed_bytes,
                    kept_blocks = garbage.kept_blocks,
                    young_blocks = garbage.young_blocks,
                    "embedded store collected"
                );
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_snapshot_is_always_due() {
        assert!(snapshot_due(0, None, 100));
        assert!(snapshot_due(5_000, None, u32::MAX));
    }

    #[test]
    fn due_once_frequency_has_elapsed() {
        assert!(!snapshot_due(109, Some(10), 100));
        assert!(snapshot_due(110, Some(10), 100));
        assert!(snapshot_due(500, Some(10), 100));
    }

    #[test]
    fn clock_behind_last_snapshot_is_not_due() {
        // A node reporting an older block than the last snapshot's (a reorg, a lagging RPC
        // node) must not underflow into "due".
        assert!(!snapshot_due(5, Some(10), 100));
    }
}
