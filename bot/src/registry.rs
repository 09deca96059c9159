//! The registry's messages, typed (the bot's, and the owner's that its tests and demo send):
//! arguments are written as the text `contract-transcode` parses (as `cargo contract call
//! --args` takes them), and return values are decoded with the contract crate's own types.

use crate::chain::{At, Chain};
use anyhow::{anyhow, Result};
use backup_registry::{
    Backup, BackupId, Config, Error as ContractError, RequestId, RestoreRequest, Snapshot,
    SnapshotSeq,
};
use scale::Decode;
use subxt::utils::AccountId32;

/// The contract refused a call with one of its `Error`s; nothing was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub ContractError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the registry refused the call: {:?}", self.0)
    }
}

impl std::error::Error for Refused {}

/// The contract error behind `error`, if the registry refused the call.
pub fn refusal(error: &anyhow::Error) -> Option<ContractError> {
    error.downcast_ref::<Refused>().map(|refused| refused.0)
}

/// Page size of paged queries: the most the contract returns.
const PAGE_SIZE: u32 = backup_registry::MAX_PAGE_SIZE;

/// Pages read at most by one listing: bounds a pass however many requests are open.
const MAX_PAGES: u32 = 64;

/// Reads of a backup's snapshots tried before giving up, while the backup keeps changing.
const CONSISTENT_READ_ATTEMPTS: u32 = 3;

/// A kept snapshot with its place in its backup's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedSnapshot {
    /// Its sequence number in the backup (the backup's first snapshot is 0).
    pub seq: SnapshotSeq,
    /// Whether the owner pinned it.
    pub pinned: bool,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// A string argument, quoted and escaped as `contract-transcode` expects.
fn text(value: &str) -> String {
    serde_json::to_string(value).expect("a string always serializes")
}

/// An account argument, as SS58 text.
fn account(value: &AccountId32) -> String {
    value.to_string()
}

/// The arguments of `add_snapshot`, in the contract's order.
fn add_snapshot_args(
    owner: &AccountId32,
    node_id: &str,
    cid: &str,
    description: &str,
    run_id: u64,
    size_bytes: u64,
) -> [String; 6] {
    [
        text(node_id),
        text(cid),
        text(description),
        run_id.to_string(),
        account(owner),
        size_bytes.to_string(),
    ]
}

/// The contract's form of an account.
pub fn ink_account(value: &AccountId32) -> ink::primitives::AccountId {
    value.0.into()
}

/// The chain client's form of a contract's account.
pub fn chain_account(value: &ink::primitives::AccountId) -> AccountId32 {
    AccountId32(*value.as_ref())
}

/// Decodes a message's return value, `Result<T, ink::LangError>` on the wire.
fn decode<T: Decode>(message: &str, data: &[u8]) -> Result<T> {
    let value = <core::result::Result<T, ink::LangError>>::decode(&mut &data[..])
        .map_err(|error| anyhow!("decoding the return of {message}: {error}"))?;
    value.map_err(|error| anyhow!("{message} was not dispatched: {error:?}"))
}

/// The registry seen through one account.
pub struct Registry<C> {
    chain: C,
}

impl<C: Chain> Registry<C> {
    /// The registry reached through `chain`.
    pub fn new(chain: C) -> Self {
        Self { chain }
    }

    /// The chain handle.
    pub fn chain(&mut self) -> &mut C {
        &mut self.chain
    }

    /// The account this handle signs with.
    pub fn account(&self) -> AccountId32 {
        self.chain.account()
    }

    /// Runs a query on the best block and decodes its value.
    async fn query<T: Decode>(&mut self, message: &str, args: &[String]) -> Result<T> {
        self.query_at(message, args, At::Best).await
    }

    /// Runs a query on the state `at` and decodes its value.
    async fn query_at<T: Decode>(&mut self, message: &str, args: &[String], at: At) -> Result<T> {
        let outcome = self.chain.dry_run(message, args, at).await?;
        decode(message, &outcome.data)
    }

    /// Runs a message returning `Result<T, Error>`: dry run first, and submitted only if the
    /// contract accepts it. Returns the dry run's value.
    async fn call<T: Decode>(&mut self, message: &str, args: &[String]) -> Result<T> {
        let outcome = self.chain.dry_run(message, args, At::Best).await?;
        let result: core::result::Result<T, ContractError> = decode(message, &outcome.data)?;
        let value = result.map_err(Refused)?;
        if outcome.reverted {
            return Err(anyhow!("{message} reverted without an error value"));
        }
        self.chain.submit(message, args).await?;
        Ok(value)
    }

    /// Reads the paged query `message` (its leading `args`, then offset and limit), at most
    /// `MAX_PAGES` pages: `items` turns each page's value into its items, or `None` when there
    /// are none at all.
    async fn paged<P: Decode, T>(
        &mut self,
        message: &str,
        args: &[String],
        items: impl Fn(P) -> Result<Option<Vec<T>>>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let mut page_args = args.to_vec();
            page_args.extend([(page * PAGE_SIZE).to_string(), PAGE_SIZE.to_string()]);
            let Some(batch) = items(self.query(message, &page_args).await?)? else {
                break;
            };
            let full = batch.len() == PAGE_SIZE as usize;
            all.extend(batch);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    /// The latest block number.
    pub async fn block_number(&mut self) -> Result<u32> {
        self.chain.block_number().await
    }

    /// Whether `who` is an authority.
    pub async fn is_authority(&mut self, who: &AccountId32) -> Result<bool> {
        self.query("is_authority", &[account(who)]).await
    }

    /// `owner`'s backup of `node_id`, if any.
    pub async fn backup(&mut self, owner: &AccountId32, node_id: &str) -> Result<Option<Backup>> {
        self.query("backup", &[account(owner), text(node_id)]).await
    }

    /// The limits the registry was instantiated with.
    pub async fn config(&mut self) -> Result<Config> {
        self.query("config", &[]).await
    }

    /// The backup with id `backup_id`, if any.
    pub async fn backup_by_id(&mut self, backup_id: BackupId) -> Result<Option<Backup>> {
        self.query("backup_by_id", &[backup_id.to_string()]).await
    }

    /// The newest snapshot of `owner`'s backup of `node_id`, if any.
    pub async fn latest_snapshot(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<Option<Snapshot>> {
        self.query("latest_snapshot", &[account(owner), text(node_id)])
            .await
    }

    /// Every snapshot the registry keeps of `owner`'s backup of `node_id`, oldest first,
    /// pinned ones included (read in pages; none when there is no such backup).
    pub async fn snapshots(&mut self, owner: &AccountId32, node_id: &str) -> Result<Vec<Snapshot>> {
        let args = [account(owner), text(node_id)];
        self.paged(
            "snapshots",
            &args,
            |page: core::result::Result<Vec<Snapshot>, ContractError>| match page {
                Ok(snapshots) => Ok(Some(snapshots)),
                Err(ContractError::BackupNotFound) => Ok(None),
                Err(error) => Err(Refused(error).into()),
            },
        )
        .await
    }

    /// Every snapshot the registry keeps of `owner`'s backup of `node_id`, oldest first, with
    /// its sequence number and whether it is pinned (none when there is no such backup).
    /// The pages are read between two reads of the backup, again while a snapshot, pin,
    /// prune or request changed it in between, so numbers and snapshots always match.
    pub async fn numbered_snapshots(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<Vec<NumberedSnapshot>> {
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let Some(before) = self.backup(owner, node_id).await? else {
                return Ok(Vec::new());
            };
            let snapshots = self.snapshots(owner, node_id).await?;
            let unchanged = self.backup(owner, node_id).await?.as_ref() == Some(&before);
            if unchanged && before.kept_seqs().count() == snapshots.len() {
                return Ok(before
                    .kept_seqs()
                    .zip(snapshots)
                    .map(|(seq, snapshot)| NumberedSnapshot {
                        seq,
                        pinned: before.pins.contains(&seq),
                        snapshot,
                    })
                    .collect());
            }
        }
        Err(anyhow!(
            "{owner}'s backup of {node_id:?} changed during each of {CONSISTENT_READ_ATTEMPTS} reads"
        ))
    }

    /// Whether the registry keeps a snapshot with CID `cid` (any spelling) at the latest
    /// finalized block: a snapshot gone there is gone for good, whatever fork the best
    /// block is on.
    pub async fn keeps_finalized(&mut self, cid: &str) -> Result<bool> {
        let kept: Option<(Backup, Snapshot)> = self
            .query_at("snapshot_by_cid", &[text(cid)], At::Finalized)
            .await?;
        Ok(kept.is_some())
    }

    /// Every backup of `owner`.
    pub async fn backups_of(&mut self, owner: &AccountId32) -> Result<Vec<Backup>> {
        self.query("backups_of", &[account(owner)]).await
    }

    /// The age recipient `owner` registered for the backup of `node_id`, if any.
    pub async fn backup_recipient(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<Option<String>> {
        self.query("backup_recipient", &[account(owner), text(node_id)])
            .await
    }

    /// The backup frequency of `owner`, in blocks.
    pub async fn backup_frequency(&mut self, owner: &AccountId32) -> Result<u32> {
        self.query("backup_frequency", &[account(owner)]).await
    }

    /// The restore request `request_id`, if any.
    pub async fn restore_request(
        &mut self,
        request_id: RequestId,
    ) -> Result<Option<RestoreRequest>> {
        self.query("restore_request", &[request_id.to_string()])
            .await
    }

    /// Every pending or in-progress restore request (read in pages, at most
    /// `PAGE_SIZE * MAX_PAGES`).
    pub async fn open_restore_requests(&mut self) -> Result<Vec<(RequestId, RestoreRequest)>> {
        self.paged(
            "pending_restore_requests",
            &[],
            |page: Vec<(RequestId, RestoreRequest)>| Ok(Some(page)),
        )
        .await
    }

    /// Records a snapshot of `owner`'s node `node_id` (authorities only).
    pub async fn add_snapshot(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
        cid: &str,
        description: &str,
        run_id: u64,
        size_bytes: u64,
    ) -> Result<()> {
        let args = add_snapshot_args(owner, node_id, cid, description, run_id, size_bytes);
        self.call("add_snapshot", &args).await
    }

    /// The error the registry would refuse [`Registry::add_snapshot`] with, or `None` if it
    /// would record the snapshot: a dry run, nothing is submitted.
    pub async fn add_snapshot_refusal(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
        cid: &str,
        description: &str,
        run_id: u64,
        size_bytes: u64,
    ) -> Result<Option<ContractError>> {
        let args = add_snapshot_args(owner, node_id, cid, description, run_id, size_bytes);
        let outcome = self.chain.dry_run("add_snapshot", &args, At::Best).await?;
        let result: core::result::Result<(), ContractError> =
            decode("add_snapshot", &outcome.data)?;
        Ok(result.err())
    }

    /// Claims a pending restore request (authorities only).
    pub async fn claim_restore_request(&mut self, request_id: RequestId) -> Result<()> {
        self.call("claim_restore_request", &[request_id.to_string()])
            .await
    }

    /// Marks a claimed restore request fulfilled.
    pub async fn fulfil_restore_request(&mut self, request_id: RequestId) -> Result<()> {
        self.call("fulfil_restore_request", &[request_id.to_string()])
            .await
    }

    /// Marks a claimed restore request failed, for `reason`.
    pub async fn fail_restore_request(
        &mut self,
        request_id: RequestId,
        reason: &str,
    ) -> Result<()> {
        self.call(
            "fail_restore_request",
            &[request_id.to_string(), text(reason)],
        )
        .await
    }

    /// Sets the caller's backup frequency, in blocks.
    pub async fn set_backup_frequency(&mut self, frequency: u32) -> Result<()> {
        self.call(
            "set_backup_offchain_worker_frequency",
            &[frequency.to_string()],
        )
        .await
    }

    /// Adds `authority` to the registry's authority set (the admin only).
    pub async fn add_authority(&mut self, authority: &AccountId32) -> Result<()> {
        self.call("add_authority", &[account(authority)]).await
    }

    /// Removes `authority` from the registry's authority set (the admin only).
    pub async fn remove_authority(&mut self, authority: &AccountId32) -> Result<()> {
        self.call("remove_authority", &[account(authority)]).await
    }

    /// Asks for one snapshot of the caller's backup of `node_id` before its frequency has
    /// passed.
    pub async fn request_snapshot(&mut self, node_id: &str) -> Result<()> {
        self.call("request_snapshot", &[text(node_id)]).await
    }

    /// Opts the caller's node `node_id` in for backups.
    pub async fn create_backup(&mut self, node_id: &str, description: &str) -> Result<()> {
        self.call("create_backup", &[text(node_id), text(description)])
            .await
    }

    /// Adds room for `snapshots` more snapshot slots to the storage reserve of the caller's
    /// backup of `node_id`, paying their deposit.
    pub async fn fund_backup(&mut self, node_id: &str, snapshots: u32) -> Result<()> {
        self.call("fund_backup", &[text(node_id), snapshots.to_string()])
            .await
    }

    /// Deletes the caller's backup of `node_id` with all its snapshots.
    pub async fn delete_backup(&mut self, node_id: &str) -> Result<()> {
        self.call("delete_backup", &[text(node_id)]).await
    }

    /// Pins the caller's snapshot `cid`: retention keeps it until unpinned.
    pub async fn pin_snapshot(&mut self, cid: &str) -> Result<()> {
        self.call("pin_snapshot", &[text(cid)]).await
    }

    /// Unpins the caller's snapshot `cid`: retention may prune it again.
    pub async fn unpin_snapshot(&mut self, cid: &str) -> Result<()> {
        self.call("unpin_snapshot", &[text(cid)]).await
    }

    /// Registers (or clears) the caller's age recipient for its backup of `node_id`.
    pub async fn set_backup_recipient(
        &mut self,
        node_id: &str,
        recipient: Option<&str>,
    ) -> Result<()> {
        let recipient =
            recipient.map_or_else(|| "None".to_string(), |r| format!("Some({})", text(r)));
        self.call("set_backup_recipient", &[text(node_id), recipient])
            .await
    }

    /// Requests a restore of the newest snapshot of `owner`'s backup of `node_id`.
    pub async fn restore_latest_snapshot(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<RequestId> {
        self.call("restore_latest_snapshot", &[account(owner), text(node_id)])
            .await
    }
}
