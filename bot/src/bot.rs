//! The bot's work: one pass snapshots every served node that is due, unpins the snapshots
//! the registry no longer keeps, and serves every open restore request of a served node.
//!
//! A pass never panics on bad data: a node that cannot be read is logged and skipped, a
//! request whose content fails its checks is marked failed with a short reason, and errors
//! that may pass (an unreachable chain or content store) leave the request claimed by this
//! bot, which resumes it on its next pass, even after a restart.

use crate::chain::Chain;
use crate::config::ServedNode;
use crate::invalid::Invalid;
use crate::keys::{self, Keyring};
use crate::pipeline::{self, BackupSecret, Expected, SnapshotStats};
use crate::registry::{self, chain_account, ink_account, refusal, Registry};
use crate::state::{node_key, NodeCache, Pins, StateDir, Submitted, Unserved};
use crate::store::{ContentStore, GarbageReport};
use crate::tree::Skipped;
use crate::unixfs;
use anyhow::Result;
use backup_registry::{
    Error as ContractError, RequestId, RestoreRequest, RestoreStatus, MAX_REASON_LEN,
};
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tracing::{info, warn};

/// The description recorded with every snapshot: nothing of the tree (file counts, sizes),
/// which anyone can read on chain.
const SNAPSHOT_DESCRIPTION: &str = "backup-bot snapshot";

/// The bytes whose CID stands in for a snapshot's root when asking the registry whether a
/// backup's reserve holds one more record.
const RESERVE_PROBE: &[u8] = b"backup-bot reserve probe";

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

/// Which of a node's pins [`Bot::unpin_unkept`] lets go.
#[derive(Clone, Copy)]
enum Letting<'a> {
    /// Those the registry no longer keeps; the set holds the backup's snapshots as listed.
    Unkept(&'a HashSet<Cid>),
    /// All of them: the node left the configuration at block `unserved_since`, longer ago than
    /// the release period.
    Released { unserved_since: u32 },
}

/// How a restore attempt ended.
enum RestoreOutcome {
    /// Restored: mark the request fulfilled.
    Restored,
    /// The content is bad: mark the request failed with this reason.
    Refused(String),
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

    async fn snapshot_if_due(
        &mut self,
        node: &ServedNode,
        now: u32,
        report: &mut PassReport,
    ) -> Result<()> {
        let key = node_key(node);
        let Some(backup) = self.registry.backup(&node.owner, &node.node_id).await? else {
            if self.reported_without_backup.insert(key) {
                warn!(
                    node = %node.node_id,
                    owner = %node.owner,
                    "skipped: its owner has no backup of it on chain (the owner opts in with \
                     create_backup)"
                );
            }
            report.no_backup.push(node.node_id.clone());
            return Ok(());
        };
        if self.reported_without_backup.remove(&key) {
            info!(node = %node.node_id, "its owner opted in: snapshots resume");
        }
        let frequency = self.registry.backup_frequency(&node.owner).await?;
        let latest = self
            .registry
            .latest_snapshot(&node.owner, &node.node_id)
            .await?;
        let last_block = latest.as_ref().map(|snapshot| snapshot.block_number);
        let last = last_block.max(self.unchanged_at.get(&key).copied());
        // The owner may ask for one snapshot before its frequency has passed.
        let requested = backup.snapshot_requested;
        if !requested && !snapshot_due(now, last, frequency) {
            report.not_due.push(node.node_id.clone());
            return Ok(());
        }
        if requested {
            info!(node = %node.node_id, "the owner asked for a snapshot (request_snapshot)");
        }
        // Asked before any work: a backup whose reserve cannot hold the bot's record is not
        // scanned, sealed and pinned on every pass for nothing.
        if !self.reserve_holds_snapshot(node, now).await? {
            self.skip_unfunded(node, report);
            return Ok(());
        }
        if self.reported_unfunded.remove(&key) {
            info!(node = %node.node_id, "its owner funded the backup: snapshots resume");
        }
        let identity = self
            .identity_to_seal(node, true)?
            .expect("created when missing");
        let mut recipients = vec![identity.to_public()];
        if let Some(owner_recipient) = self
            .registry
            .backup_recipient(&node.owner, &node.node_id)
            .await?
        {
            recipients.push(keys::parse_recipient(&owner_recipient)?);
        }
        recipients.extend(self.extra_recipients.iter().cloned());
        let recipient_names: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        let owner = node.owner.to_string();
        // A new set of recipients starts a new secret: a recipient removed from the backup,
        // who could read the previous snapshots, cannot read the later ones' blocks.
        let secret =
            BackupSecret::derive(&identity, &owner, &node.node_id).for_recipients(&recipient_names);
        let cache = self
            .usable_cache(node, latest.map(|snapshot| snapshot.cid), &secret)
            .await?;
        let no_files = HashMap::new();
        let previous_files = cache.as_ref().map_or(&no_files, |cache| &cache.files);
        let scanned = pipeline::scan(
            &self.store,
            &node.source,
            &secret,
            &owner,
            &node.node_id,
            previous_files,
        )
        .await?;
        for skipped in &scanned.skipped {
            warn!(node = %node.node_id, path = %skipped.path, "left out: {}", skipped.reason);
        }
        let manifest_sha256 = hex::encode(scanned.manifest.digest()?);
        // Unchanged: same tree, same recipients as the latest snapshot on chain (unless the
        // owner asked for a snapshot: then it gets one, and its request is done).
        if !requested
            && cache.is_some_and(|cache| cache.describes(&manifest_sha256, &recipient_names))
        {
            info!(node = %node.node_id, "content unchanged since the last snapshot");
            self.unchanged_at.insert(key, now);
            report.unchanged.push(node.node_id.clone());
            return Ok(());
        }
        let (root, stats) = pipeline::seal(&self.store, &scanned, &recipients).await?;
        let cid = root.to_string();
        // Durable, then pinned (and the pin remembered), before it is recorded: the registry
        // never names a snapshot whose blocks a crash or the store's collection may lose.
        self.store.sync()?;
        let pinned = self.pins.entry(key).or_default();
        if !pinned.contains(&cid) {
            pinned.push(cid.clone());
        }
        self.state.save_pins(&self.pins)?;
        self.store.pin(&root).await?;
        self.submitted.insert(cid.clone(), now);
        self.state.save_submitted(&self.submitted)?;
        // Nothing of the tree's shape goes on chain, for every one to read.
        let recorded = self
            .registry
            .add_snapshot(
                &node.owner,
                &node.node_id,
                &cid,
                SNAPSHOT_DESCRIPTION,
                u64::from(now),
                stats.snapshot_bytes,
            )
            .await;
        if let Err(error) = recorded {
            // Refused by its dry run: never sent, so it cannot land later.
            let refused = refusal(&error);
            if refused.is_some() {
                self.submitted.remove(&cid);
                self.state.save_submitted(&self.submitted)?;
            }
            if refused == Some(ContractError::InsufficientFunds) {
                self.skip_unfunded(node, report);
                return Ok(());
            }
            return Err(error);
        }
        info!(
            node = %node.node_id,
            %cid,
            new_bytes = stats.new_bytes,
            snapshot_bytes = stats.snapshot_bytes,
            "snapshot recorded"
        );
        self.submitted.remove(&cid);
        self.state.save_submitted(&self.submitted)?;
        self.state.save_cache(
            node,
            &NodeCache {
                root: cid.clone(),
                secret_fingerprint: secret.fingerprint(),
                manifest_sha256,
                recipients: recipient_names,
                files: scanned.cache,
            },
        )?;
        report.snapshots.push(RecordedSnapshot {
            node_id: node.node_id.clone(),
            cid,
            stats,
            skipped: scanned.skipped,
        });
        Ok(())
    }

    /// Whether the storage reserve of `node`'s backup holds one more of the bot's records:
    /// the registry's dry run of `add_snapshot` with a stand-in root of a real root's length,
    /// so that the registry's own accounting (retention pruning included) decides. Only
    /// `InsufficientFunds` counts as no; any other refusal is left to the real call.
    async fn reserve_holds_snapshot(&mut self, node: &ServedNode, now: u32) -> Result<bool> {
        let stand_in = unixfs::Block::new(unixfs::RAW, RESERVE_PROBE.to_vec())?.cid;
        let recording = registry::add_snapshot_call(
            &node.owner,
            &node.node_id,
            &stand_in.to_string(),
            SNAPSHOT_DESCRIPTION,
            u64::from(now),
            0,
        );
        let refused = self.registry.dry_run_refusal(recording).await?;
        Ok(refused != Some(ContractError::InsufficientFunds))
    }

    /// Reports `node` skipped because its backup's reserve is too small, logging it once.
    fn skip_unfunded(&mut self, node: &ServedNode, report: &mut PassReport) {
        if self.reported_unfunded.insert(node_key(node)) {
            warn!(
                node = %node.node_id,
                owner = %node.owner,
                "skipped: the backup's storage reserve cannot hold another snapshot (the owner \
                 adds to it with fund_backup)"
            );
        }
        report.unfunded.push(node.node_id.clone());
    }

    /// The node's cache, if it describes `latest` (the newest snapshot on chain), was made
    /// under `secret`, and that snapshot is still pinned in the store: only then are its
    /// chunks known to be there and readable with this backup's key.
    async fn usable_cache(
        &self,
        node: &ServedNode,
        latest: Option<String>,
        secret: &BackupSecret,
    ) -> Result<Option<NodeCache>> {
        let cache = self.state.load_cache(node);
        if cache.secret_fingerprint != secret.fingerprint() {
            return Ok(None);
        }
        let Some(latest) = latest.filter(|latest| *latest == cache.root) else {
            return Ok(None);
        };
        let root = Cid::try_from(latest.as_str())?;
        Ok(self.store.is_pinned(&root).await?.then_some(cache))
    }

    /// Unpins the roots this bot pinned for `node` that the registry no longer keeps (pruned
    /// by retention, or the backup deleted; see [`Bot::unpin_unkept`]).
    async fn unpin_dropped(
        &mut self,
        node: &ServedNode,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let key = node_key(node);
        if self.pins.get(&key).is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let listed: HashSet<Cid> = self
            .registry
            .snapshots(&node.owner, &node.node_id)
            .await?
            .iter()
            .filter_map(|snapshot| Cid::try_from(snapshot.cid.as_str()).ok())
            .collect();
        self.unpin_unkept(&key, Letting::Unkept(&listed), now, requested, report)
            .await
    }

    /// Unpins the roots pinned under `key` (see [`node_key`]) that `letting` lets go, never
    /// one an open restore request names. [`Letting::Unkept`]: those the registry no longer
    /// keeps. A root missing from `listed` (the backup's snapshots, read in pages that shift
    /// while an owner unpins or another authority adds) is unpinned only once the registry
    /// confirms, by its CID at the finalized block, that it keeps no such snapshot, and never
    /// while this pass recorded it or it was submitted less than [`SUBMITTED_GRACE_BLOCKS`]
    /// before block `now` and may still land.
    async fn unpin_unkept(
        &mut self,
        key: &str,
        letting: Letting<'_>,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let pinned = self.pins.get(key).cloned().unwrap_or_default();
        let recorded_now: HashSet<&str> = report
            .snapshots
            .iter()
            .map(|recorded| recorded.cid.as_str())
            .collect();
        let mut still_pinned = Vec::new();
        let mut unpinned = Vec::new();
        for root in pinned {
            let cid = Cid::try_from(root.as_str())?;
            if let Letting::Unkept(listed) = letting {
                if listed.contains(&cid)
                    || recorded_now.contains(root.as_str())
                    || self.registry.keeps_finalized(&root).await?
                {
                    // Recorded: no longer waiting to land.
                    if self.submitted.remove(&root).is_some() {
                        self.state.save_submitted(&self.submitted)?;
                    }
                    still_pinned.push(root);
                    continue;
                }
            }
            let landing = matches!(letting, Letting::Unkept(_))
                && self
                    .submitted
                    .get(&root)
                    .is_some_and(|since| now.saturating_sub(*since) < SUBMITTED_GRACE_BLOCKS);
            if requested.contains(&cid) || landing {
                still_pinned.push(root);
                continue;
            }
            self.store.unpin(&cid).await?;
            if self.submitted.remove(&root).is_some() {
                self.state.save_submitted(&self.submitted)?;
            }
            match letting {
                Letting::Unkept(_) => {
                    info!(node = %key, cid = %root, "unpinned: the registry no longer keeps it")
                }
                Letting::Released { unserved_since } => warn!(
                    node = %key,
                    cid = %root,
                    unserved_since,
                    "unpinned: its node left the configuration"
                ),
            }
            unpinned.push(root);
        }
        report.unpinned.extend(unpinned);
        self.pins.insert(key.to_string(), still_pinned);
        self.state.save_pins(&self.pins)
    }

    /// The pins of nodes no longer in the configuration: each kept while the registry keeps
    /// its snapshot and unpinned once it does not, like a served node's, for
    /// `release_unserved_after` blocks from the pass that first found the node unserved (a
    /// node taken out of the configuration by mistake loses nothing if put back in time);
    /// then all released. A node served again starts afresh.
    async fn unpin_unserved(
        &mut self,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let served: HashSet<String> = self.nodes.iter().map(node_key).collect();
        let unserved: Vec<String> = self
            .pins
            .keys()
            .filter(|key| !served.contains(*key))
            .cloned()
            .collect();
        let mut found = Unserved::new();
        for key in &unserved {
            found.insert(key.clone(), self.unserved.get(key).copied().unwrap_or(now));
        }
        if found != self.unserved {
            self.state.save_unserved(&found)?;
            self.unserved = found;
        }
        let nothing_listed = HashSet::new();
        for key in unserved {
            let since = self.unserved[&key];
            let release_at = since.saturating_add(self.release_unserved_after);
            let letting = if now >= release_at {
                Letting::Released {
                    unserved_since: since,
                }
            } else {
                Letting::Unkept(&nothing_listed)
            };
            self.unpin_unkept(&key, letting, now, requested, report)
                .await?;
            match self.pins.get(&key).map(Vec::len) {
                Some(0) => {
                    self.pins.remove(&key);
                    self.state.save_pins(&self.pins)?;
                    self.unserved.remove(&key);
                    self.state.save_unserved(&self.unserved)?;
                }
                Some(held) if now < release_at => warn!(
                    node = %key,
                    held,
                    release_at,
                    "this node is no longer in the configuration: its pins are released at \
                     block {release_at} unless it is served again"
                ),
                _ => {}
            }
        }
        Ok(())
    }

    /// Serves the open restore requests of served nodes: pending ones, its own claims (say,
    /// after a restart), and claims of other authorities that lapsed (`claim_timeout`) or
    /// whose claimant is no longer an authority.
    async fn serve_restores(&mut self, report: &mut PassReport) -> Result<()> {
        let me = ink_account(&self.registry.account());
        let now = self.registry.block_number().await?;
        let claim_timeout = self.registry.config().await?.claim_timeout;
        let requests = self.registry.open_restore_requests().await?;
        for (request_id, request) in requests {
            let resume = match &request.status {
                RestoreStatus::Pending => false,
                RestoreStatus::InProgress { authority } if *authority == me => true,
                RestoreStatus::InProgress { authority } => {
                    let lapsed = now.saturating_sub(request.updated_at) >= claim_timeout;
                    if !lapsed
                        && self
                            .registry
                            .is_authority(&chain_account(authority))
                            .await?
                    {
                        continue;
                    }
                    false
                }
                _ => continue,
            };
            let Some(node) = self.served_node_of(&request).await? else {
                continue;
            };
            if !resume && !self.can_open(&node, &request.cid, report).await {
                continue;
            }
            if !resume {
                match self.registry.claim_restore_request(request_id).await {
                    Ok(()) => info!(request_id, node = %node.node_id, "restore request claimed"),
                    // Another authority was faster.
                    Err(error) if refusal(&error).is_some() => continue,
                    Err(error) => return Err(error),
                }
            }
            match self.restore(&node, &request.cid).await {
                Ok(RestoreOutcome::Restored) => {
                    let fulfilled = self.registry.fulfil_restore_request(request_id).await;
                    if self.still_held(request_id, fulfilled)? {
                        info!(request_id, node = %node.node_id, "restore fulfilled");
                        report.fulfilled.push(request_id);
                    }
                }
                Ok(RestoreOutcome::Refused(reason)) => {
                    let reason = truncate(&reason, MAX_REASON_LEN);
                    let failed = self
                        .registry
                        .fail_restore_request(request_id, &reason)
                        .await;
                    if self.still_held(request_id, failed)? {
                        warn!(request_id, node = %node.node_id, %reason, "restore failed");
                        report.failed.push((request_id, reason));
                    }
                }
                Err(error) => {
                    warn!(
                        request_id,
                        "restore interrupted, retried next pass: {error:#}"
                    );
                    report
                        .errors
                        .push(format!("request {request_id}: {error:#}"));
                }
            }
        }
        Ok(())
    }

    /// Whether this bot should claim a restore of snapshot `cid` of `node`: not when it holds
    /// no identity of the node or the snapshot is not sealed to it (another authority took
    /// it: the request is left for that one, not failed as "decrypt failed"), nor while the
    /// store cannot be read (an error, for the next pass). Content that is bad for any reader
    /// is claimed, and the restore fails the request with the reason.
    async fn can_open(&self, node: &ServedNode, cid: &str, report: &mut PassReport) -> bool {
        let (Ok(Some(identity)), Ok(root)) = (self.keyring.identity(node), Cid::try_from(cid))
        else {
            // A CID that does not parse is bad for any reader: claimed, then failed.
            return Cid::try_from(cid).is_err();
        };
        match pipeline::open_manifest(&self.store, &root, &identity).await {
            Ok(_) => true,
            Err(error) => match error.downcast_ref::<Invalid>() {
                Some(invalid) if invalid.0.starts_with(pipeline::NOT_A_RECIPIENT) => {
                    info!(node = %node.node_id, %cid, "restore left to another authority: \
                          the snapshot is not sealed to this bot's key");
                    false
                }
                Some(_) => true,
                None => {
                    warn!(node = %node.node_id, %cid, "restore not claimed this pass: {error:#}");
                    report.errors.push(format!("snapshot {cid}: {error:#}"));
                    false
                }
            },
        }
    }

    /// Whether completing request `request_id` went through: `false` when the registry
    /// refused it because the request is no longer this bot's (its claim lapsed and another
    /// authority took it over, or it was cancelled); other errors are returned.
    fn still_held(&self, request_id: RequestId, completed: Result<()>) -> Result<bool> {
        match completed {
            Ok(()) => Ok(true),
            Err(error) => match refusal(&error) {
                Some(refused) => {
                    warn!(
                        request_id,
                        ?refused,
                        "no longer this bot's request: left as it is"
                    );
                    Ok(false)
                }
                None => Err(error),
            },
        }
    }

    /// The served node a request is for, if this bot serves it.
    async fn served_node_of(&mut self, request: &RestoreRequest) -> Result<Option<ServedNode>> {
        let Some(backup) = self.registry.backup_by_id(request.backup_id).await? else {
            return Ok(None);
        };
        Ok(self
            .nodes
            .iter()
            .find(|node| node.node_id == backup.node_id && ink_account(&node.owner) == backup.owner)
            .cloned())
    }

    /// Restores snapshot `cid` into `node`'s restore folder. Errors are transient (retry);
    /// refusals are final.
    async fn restore(&self, node: &ServedNode, cid: &str) -> Result<RestoreOutcome> {
        let Ok(cid) = Cid::try_from(cid) else {
            return Ok(RestoreOutcome::Refused(format!("invalid cid {cid}")));
        };
        let identity = self.keyring.identity(node)?.ok_or_else(|| {
            anyhow::anyhow!(
                "node {:?} has no identity in {}",
                node.node_id,
                self.keyring.path_of(node).display()
            )
        })?;
        let owner = node.owner.to_string();
        let expected = Expected {
            owner: &owner,
            node_id: &node.node_id,
        };
        let target = &node.restore_to;
        match pipeline::restore(&self.store, &cid, &identity, Some(expected), target).await {
            Ok(_) => Ok(RestoreOutcome::Restored),
            Err(error) => match error.downcast::<Invalid>() {
                Ok(invalid) => Ok(RestoreOutcome::Refused(invalid.0)),
                Err(error) => Err(error),
            },
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
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

    #[test]
    fn reasons_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short", 128), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 128);
        assert_eq!(cut.len(), 128);
        assert_eq!(truncate("aé", 2), "a");
    }
}
