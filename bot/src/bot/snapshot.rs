//! Taking a node's snapshot when it is due: the reserve asked first, the scan, the seal, the
//! store made durable and the root pinned before the registry records it.

use super::{snapshot_due, Bot, PassReport, RecordedSnapshot};
use crate::chain::Chain;
use crate::config::ServedNode;
use crate::error::Error;
use crate::keys;
use crate::pipeline::{self, BackupSecret, NextFiles, PreviousFiles, SnapshotStats};
use crate::registry;
use crate::state::{node_key, NodeCache};
use crate::store::ContentStore;
use crate::tree::Skipped;
use crate::unixfs;
use anyhow::Result;
use backup_registry::Error as ContractError;
use cid::Cid;
use std::path::Path;
use tracing::{info, warn};

/// The description recorded with every snapshot: nothing of the tree (file counts, sizes),
/// which anyone can read on chain.
const SNAPSHOT_DESCRIPTION: &str = "backup-bot snapshot";

/// The bytes whose CID stands in for a snapshot's root when asking the registry whether a
/// backup's reserve holds one more record.
const RESERVE_PROBE: &[u8] = b"backup-bot reserve probe";

impl<C: Chain> Bot<C> {
    /// Snapshots `node` when it is due (its owner's frequency passed, or the owner asked) and
    /// its backup's reserve holds the record: unchanged content is noted, not recorded; a new
    /// snapshot is made durable and pinned, then recorded. What happened goes into `report`.
    pub(super) async fn snapshot_if_due(
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
        let owner = node.owner.to_string();
        // A new set of recipients starts a new secret: a recipient removed from the backup,
        // who could read the previous snapshots, cannot read the later ones' blocks.
        let secret = BackupSecret::derive(&identity, &owner, &node.node_id)
            .for_recipients(&recipient_names(&recipients));
        let cache = self
            .usable_cache(node, latest.map(|snapshot| snapshot.cid), &secret)
            .await?;
        let cache_file = self.state.cache_file(node);
        let next_files = cache_file.next_files()?;
        let source = SnapshotSource {
            folder: &node.source,
            owner: &owner,
            node_id: &node.node_id,
            secret: &secret,
            recipients: &recipients,
        };
        // Unchanged: same tree, same recipients as the latest snapshot on chain (unless the
        // owner asked for a snapshot: then it gets one, and its request is done).
        let snapshot = snapshot_if_changed(&self.store, &source, cache, next_files, requested);
        let (root, stats, node_cache, files, skipped) = match snapshot.await? {
            Snapshot::Unchanged { .. } => {
                info!(node = %node.node_id, "content unchanged since the last snapshot");
                self.unchanged_at.insert(key, now);
                report.unchanged.push(node.node_id.clone());
                return Ok(());
            }
            Snapshot::Sealed {
                root,
                stats,
                cache,
                files,
                skipped,
            } => (root, stats, cache, files, skipped),
        };
        let cid = root.to_string();
        // Durable (synced by `snapshot_if_changed`), then pinned (and the pin remembered),
        // before it is recorded: the registry never names a snapshot whose blocks a crash or
        // the store's collection may lose.
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
            if let Error::Refused(refused) = error {
                self.submitted.remove(&cid);
                self.state.save_submitted(&self.submitted)?;
                if refused == ContractError::InsufficientFunds {
                    self.skip_unfunded(node, report);
                    return Ok(());
                }
            }
            return Err(error.into());
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
        cache_file.save(&node_cache, files)?;
        report.snapshots.push(RecordedSnapshot {
            node_id: node.node_id.clone(),
            cid,
            stats,
            skipped,
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
    ) -> Result<Option<(NodeCache, PreviousFiles)>> {
        let Some((cache, files)) = self.state.cache_file(node).load() else {
            return Ok(None);
        };
        if cache.secret_fingerprint != secret.fingerprint() {
            return Ok(None);
        }
        let Some(latest) = latest.filter(|latest| *latest == cache.root) else {
            return Ok(None);
        };
        let root = Cid::try_from(latest.as_str())?;
        Ok(self.store.is_pinned(&root).await?.then_some((cache, files)))
    }
}

/// A folder to snapshot, and whose snapshot it is.
pub struct SnapshotSource<'a> {
    /// The folder whose tree is backed up.
    pub folder: &'a Path,
    /// The backup's owner (SS58).
    pub owner: &'a str,
    /// The backup's node id.
    pub node_id: &'a str,
    /// The secret the snapshot's chunks are encrypted under.
    pub secret: &'a BackupSecret,
    /// Whom the manifest is sealed to.
    pub recipients: &'a [age::x25519::Recipient],
}

/// What [`snapshot_if_changed`] did.
pub enum Snapshot {
    /// The tree and the recipients are those of the previous snapshot: nothing was sealed
    /// (the scan stored only chunks the store lacked).
    Unchanged {
        /// What the scan read and stored.
        stats: SnapshotStats,
    },
    /// A new snapshot, sealed and durable in the store; its root is not pinned yet.
    Sealed {
        /// The snapshot's root.
        root: Cid,
        /// What the snapshot holds and what it stored.
        stats: SnapshotStats,
        /// The cache describing it, for the next snapshot of the folder.
        cache: Box<NodeCache>,
        /// The files of that cache, written.
        files: NextFiles,
        /// The entries left out.
        skipped: Vec<Skipped>,
    },
}

/// The names of `recipients`, as a [`NodeCache`] lists them.
fn recipient_names(recipients: &[age::x25519::Recipient]) -> Vec<String> {
    recipients.iter().map(ToString::to_string).collect()
}

/// The snapshot step the bot's pass and the benchmark share: scans `source` with the cache
/// of `previous` (files unchanged since are not read again; `previous` must have been made
/// under `source.secret`), writing the next cache's files to `next`; when the tree and
/// recipients are those `previous` describes and `force` is off, that is all (and `next` is
/// discarded); otherwise seals the manifest and makes the store durable. Entries left out are
/// logged.
pub async fn snapshot_if_changed(
    store: &ContentStore,
    source: &SnapshotSource<'_>,
    previous: Option<(NodeCache, PreviousFiles)>,
    mut next: NextFiles,
    force: bool,
) -> Result<Snapshot> {
    let (previous, mut previous_files) = match previous {
        Some((cache, files)) => (Some(cache), files),
        None => (None, PreviousFiles::none()),
    };
    let scanned = pipeline::scan(
        store,
        source.folder,
        source.secret,
        source.owner,
        source.node_id,
        &mut previous_files,
        Some(&mut next),
    )
    .await?;
    for skipped in &scanned.skipped {
        warn!(node = %source.node_id, path = %skipped.path, "left out: {}", skipped.reason);
    }
    let manifest_sha256 = hex::encode(scanned.manifest.manifest_sha256());
    let recipients = recipient_names(source.recipients);
    if !force && previous.is_some_and(|cache| cache.describes(&manifest_sha256, &recipients)) {
        next.discard();
        return Ok(Snapshot::Unchanged {
            stats: scanned.stats,
        });
    }
    let (root, stats) = scanned
        .manifest
        .seal(store, source.recipients, scanned.stats)
        .await?;
    store.sync()?;
    let cache = NodeCache::new(
        root.to_string(),
        source.secret.fingerprint(),
        manifest_sha256,
        recipients,
    );
    Ok(Snapshot::Sealed {
        root,
        stats,
        cache: Box::new(cache),
        files: next,
        skipped: scanned.skipped,
    })
}
