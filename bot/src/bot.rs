//! The bot's work: one pass snapshots every served node that is due and serves every open
//! restore request of a served node.
//!
//! A pass never panics on bad data: a node that cannot be packed is logged and skipped, a
//! request whose content fails its checks is marked failed with a short reason, and errors
//! that may pass (an unreachable chain or content store) leave the request claimed by this
//! bot, which resumes it on its next pass, even after a restart.

use crate::archive;
use crate::chain::Chain;
use crate::keys::{self, Keyring};
use crate::registry::{ink_account, refusal, Registry};
use crate::store::{self, ContentStore};
use anyhow::{Context, Result};
use backup_registry::{RequestId, RestoreRequest, RestoreStatus, MAX_REASON_LEN};
use cid::Cid;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use subxt::utils::AccountId32;
use tracing::{info, warn};

/// One node this bot backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedNode {
    /// The node's id in the registry.
    pub node_id: String,
    /// The account whose data it is.
    pub owner: AccountId32,
    /// The directory whose contents are the node's data.
    pub source: PathBuf,
    /// Where restores go: request `n` is unpacked into `restore_to/request-n`.
    pub restore_to: PathBuf,
}

impl ServedNode {
    /// The directory that restore request `request_id` is unpacked into.
    pub fn restore_dir(&self, request_id: RequestId) -> PathBuf {
        self.restore_to.join(format!("request-{request_id}"))
    }
}

/// Whether a node whose last snapshot (or last unchanged check) was at block `last` is due
/// for a snapshot at block `now`, with a frequency of `frequency` blocks.
pub fn snapshot_due(now: u32, last: Option<u32>, frequency: u32) -> bool {
    match last {
        None => true,
        Some(last) => now.saturating_sub(last) >= frequency,
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Snapshots recorded: node id and CID.
    pub snapshots: Vec<(String, String)>,
    /// Nodes whose content was already recorded (unchanged since a kept snapshot).
    pub unchanged: Vec<String>,
    /// Nodes not due yet.
    pub not_due: Vec<String>,
    /// Nodes skipped because their owner has no backup of them on chain (never created, or
    /// deleted): the registry takes snapshots only into backups their owners created.
    pub no_backup: Vec<String>,
    /// Restore requests fulfilled.
    pub fulfilled: Vec<RequestId>,
    /// Restore requests marked failed, with the reason.
    pub failed: Vec<(RequestId, String)>,
    /// Errors that left work for the next pass.
    pub errors: Vec<String>,
}

/// A one-line summary, as logged after each pass.
impl std::fmt::Display for PassReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} snapshots, {} unchanged, {} not due, {} without a backup, {} restored, {} failed, \
             {} errors",
            self.snapshots.len(),
            self.unchanged.len(),
            self.not_due.len(),
            self.no_backup.len(),
            self.fulfilled.len(),
            self.failed.len(),
            self.errors.len()
        )
    }
}

/// How a restore attempt ended.
enum RestoreOutcome {
    /// Restored: mark the request fulfilled.
    Restored,
    /// The content is bad: mark the request failed with this reason.
    Refused(String),
}

/// The file in the data directory where the bot remembers the last snapshot it recorded of
/// each node, so that after a restart unchanged data is not recorded again.
pub const LAST_SNAPSHOTS_FILE: &str = "last-snapshots.json";

/// What the bot remembers of the last snapshot it recorded of a node.
#[derive(serde::Serialize, serde::Deserialize)]
struct LastSnapshot {
    /// Its CID.
    cid: String,
    /// sha2-256 of its plaintext archive, in hex.
    plaintext_sha256: String,
    /// The recipients it was encrypted to.
    recipients: Vec<String>,
}

/// The key of a served node in the bot's memory: owner and node id.
fn node_key(node: &ServedNode) -> String {
    format!("{}/{}", node.owner, node.node_id)
}

/// Reads the last snapshots remembered in `path`; none when the file is missing or unreadable
/// (it only saves work, so a damaged one is reported and replaced).
fn load_last_snapshots(path: &Path) -> HashMap<String, LastSnapshot> {
    let parsed = fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?));
    match parsed {
        Ok(last_snapshots) => last_snapshots,
        Err(error) => {
            if path.exists() {
                warn!("ignoring {}: {error:#}", path.display());
            }
            HashMap::new()
        }
    }
}

/// The bot: a registry handle, a content store, its keys and the nodes it serves.
pub struct Bot<C> {
    registry: Registry<C>,
    store: ContentStore,
    keyring: Keyring,
    nodes: Vec<ServedNode>,
    work_dir: PathBuf,
    /// Where `last_snapshots` is kept across restarts.
    last_snapshots_path: PathBuf,
    /// The last snapshot recorded of each node (by [`node_key`]).
    last_snapshots: HashMap<String, LastSnapshot>,
    /// Block at which each node's content was last found unchanged (by [`node_key`]).
    unchanged_at: HashMap<String, u32>,
    /// Nodes found without a backup on chain and logged as such (by [`node_key`]), so that
    /// the log says it once, not every pass.
    reported_without_backup: HashSet<String>,
}

impl<C: Chain> Bot<C> {
    /// A bot serving `nodes`, keeping its identities in `data_dir/keys`, temporary files in
    /// `data_dir/tmp` and what it last recorded of each node in `data_dir/last-snapshots.json`.
    pub fn new(
        registry: Registry<C>,
        store: ContentStore,
        nodes: Vec<ServedNode>,
        data_dir: &Path,
    ) -> Result<Self> {
        let work_dir = data_dir.join("tmp");
        fs::create_dir_all(&work_dir)
            .with_context(|| format!("creating {}", work_dir.display()))?;
        let last_snapshots_path = data_dir.join(LAST_SNAPSHOTS_FILE);
        Ok(Self {
            registry,
            store,
            keyring: Keyring::open(data_dir.join("keys"))?,
            nodes,
            work_dir,
            last_snapshots: load_last_snapshots(&last_snapshots_path),
            last_snapshots_path,
            unchanged_at: HashMap::new(),
            reported_without_backup: HashSet::new(),
        })
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

    /// One pass: snapshots, then restores.
    pub async fn pass(&mut self) -> Result<PassReport> {
        let mut report = PassReport::default();
        let now = self.registry.block_number().await?;
        for node in self.nodes.clone() {
            if let Err(error) = self.snapshot_if_due(&node, now, &mut report).await {
                warn!(node = %node.node_id, "snapshot failed: {error:#}");
                report.errors.push(format!("{}: {error:#}", node.node_id));
            }
        }
        self.serve_restores(&mut report).await?;
        Ok(report)
    }

    async fn snapshot_if_due(
        &mut self,
        node: &ServedNode,
        now: u32,
        report: &mut PassReport,
    ) -> Result<()> {
        let key = node_key(node);
        if self
            .registry
            .backup(&node.owner, &node.node_id)
            .await?
            .is_none()
        {
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
        }
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
        if !snapshot_due(now, last, frequency) {
            report.not_due.push(node.node_id.clone());
            return Ok(());
        }
        let latest_cid = latest.map(|snapshot| snapshot.cid);
        let mut recipients = vec![self.keyring.identity(node)?.to_public()];
        if let Some(owner_recipient) = self
            .registry
            .backup_recipient(&node.owner, &node.node_id)
            .await?
        {
            recipients.push(keys::parse_recipient(&owner_recipient)?);
        }
        let recipient_names: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        let archive_file = tempfile::NamedTempFile::new_in(&self.work_dir)?;
        let mut encrypted = keys::encrypt_to(&recipients, BufWriter::new(archive_file.as_file()))?;
        let mut hashing = HashingWriter::new(&mut encrypted);
        let stats = archive::pack(&node.source, &mut hashing)
            .with_context(|| format!("packing {}", node.source.display()))?;
        let plaintext_sha256 = hex::encode(hashing.digest());
        encrypted.finish()?.flush()?;
        // Unchanged: same plaintext, same recipients, and still the latest snapshot on chain.
        let unchanged = self.last_snapshots.get(&key).is_some_and(|last| {
            last.plaintext_sha256 == plaintext_sha256
                && last.recipients == recipient_names
                && Some(&last.cid) == latest_cid.as_ref()
        });
        if unchanged {
            info!(node = %node.node_id, "content unchanged since the last snapshot");
            self.unchanged_at.insert(key, now);
            report.unchanged.push(node.node_id.clone());
            return Ok(());
        }
        let size = archive_file.as_file().metadata()?.len();
        let cid = self.store.put(archive_file.path()).await?.to_string();
        let description = format!(
            "age-encrypted tar: {} files, {} bytes",
            stats.files, stats.content_bytes
        );
        self.registry
            .add_snapshot(
                &node.owner,
                &node.node_id,
                &cid,
                &description,
                u64::from(now),
                size,
            )
            .await?;
        info!(node = %node.node_id, %cid, size, "snapshot recorded");
        self.last_snapshots.insert(
            key,
            LastSnapshot {
                cid: cid.clone(),
                plaintext_sha256,
                recipients: recipient_names,
            },
        );
        self.save_last_snapshots()?;
        report.snapshots.push((node.node_id.clone(), cid));
        Ok(())
    }

    /// Writes `last_snapshots` to its file (mode 0600, replaced atomically).
    fn save_last_snapshots(&self) -> Result<()> {
        let path = &self.last_snapshots_path;
        let partial = path.with_extension("json.partial");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        serde_json::to_writer_pretty(&mut file, &self.last_snapshots)?;
        file.sync_all()?;
        fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Serves the open restore requests of served nodes: pending ones, its own claims (say,
    /// after a restart), and claims of other authorities that lapsed (`claim_timeout`).
    async fn serve_restores(&mut self, report: &mut PassReport) -> Result<()> {
        let me = ink_account(&self.registry.account());
        let now = self.registry.block_number().await?;
        let claim_timeout = self.registry.config().await?.claim_timeout;
        let requests = self.registry.open_restore_requests().await?;
        for (request_id, request) in requests {
            let resume = match &request.status {
                RestoreStatus::Pending => false,
                RestoreStatus::InProgress { authority } if *authority == me => true,
                RestoreStatus::InProgress { .. }
                    if now.saturating_sub(request.updated_at) >= claim_timeout =>
                {
                    false
                }
                _ => continue,
            };
            let Some(node) = self.served_node_of(&request).await? else {
                continue;
            };
            if !resume {
                match self.registry.claim_restore_request(request_id).await {
                    Ok(()) => info!(request_id, node = %node.node_id, "restore request claimed"),
                    // Another authority was faster.
                    Err(error) if refusal(&error).is_some() => continue,
                    Err(error) => return Err(error),
                }
            }
            match self.restore(&node, request_id, &request.cid).await {
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

    /// Fetches, verifies and unpacks snapshot `cid` for `node`. Errors are transient (retry);
    /// refusals are final.
    async fn restore(
        &self,
        node: &ServedNode,
        request_id: RequestId,
        cid: &str,
    ) -> Result<RestoreOutcome> {
        let Ok(cid) = Cid::try_from(cid) else {
            return Ok(RestoreOutcome::Refused(format!("invalid cid {cid}")));
        };
        let fetched = tempfile::NamedTempFile::new_in(&self.work_dir)?;
        self.store.fetch(&cid, fetched.path()).await?;
        if let Err(error) = store::verify(&cid, fetched.path()) {
            return Ok(RestoreOutcome::Refused(error.to_string()));
        }
        let identity = self.keyring.identity(node)?;
        let ciphertext = BufReader::new(File::open(fetched.path())?);
        let Ok(plaintext) = keys::decrypt_with(&identity, ciphertext) else {
            return Ok(RestoreOutcome::Refused("decrypt failed".to_string()));
        };
        let dest = node.restore_dir(request_id);
        // A previous attempt of this same request may have left a partial tree.
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        Ok(match archive::unpack(plaintext, &dest) {
            Ok(_) => RestoreOutcome::Restored,
            Err(error) => {
                let _ = fs::remove_dir_all(&dest);
                RestoreOutcome::Refused(error.to_string())
            }
        })
    }
}

/// A writer that hashes (sha2-256) what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn digest(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
