//! The registry's messages, typed (the bot's, and the owner's that its tests and demo send):
//! each call is the message's selector and its arguments SCALE-encoded as the contract's own
//! parameter types, and return values are decoded with the contract crate's own types.

use crate::chain::{At, Call, Chain};
use crate::error::{self, Error};
use anyhow::{anyhow, Result};
use backup_registry::{
    Backup, BackupId, Config, Error as ContractError, RequestId, RestoreRequest, Snapshot,
    SnapshotSeq,
};
use scale::Decode;
use subxt::utils::AccountId32;

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

/// The [`Call`] of the registry's message `$message` with the arguments that follow, in the
/// message's order (each encoding as the contract's parameter type: `&str` as `String`,
/// accounts as [`ink_account`]).
macro_rules! call {
    ($message:literal $(, $arg:expr)* $(,)?) => {
        Call::new($message, ink::selector_bytes!($message), ($($arg,)*))
    };
}

/// The constructor call that instantiates the registry with `authorities` and `config`.
pub fn instantiate(authorities: &[AccountId32], config: &Config) -> Call {
    let authorities: Vec<_> = authorities.iter().map(ink_account).collect();
    call!("new", authorities, config)
}

/// The call recording `owner`'s snapshot `cid` of node `node_id` (see
/// [`Registry::add_snapshot`]).
pub fn add_snapshot_call(
    owner: &AccountId32,
    node_id: &str,
    cid: &str,
    description: &str,
    run_id: u64,
    size_bytes: u64,
) -> Call {
    call!(
        "add_snapshot",
        node_id,
        cid,
        description,
        run_id,
        ink_account(owner),
        size_bytes
    )
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
    async fn query<T: Decode>(&mut self, call: Call) -> Result<T> {
        self.query_at(call, At::Best).await
    }

    /// Runs a query on the state `at` and decodes its value.
    async fn query_at<T: Decode>(&mut self, call: Call, at: At) -> Result<T> {
        let outcome = self.chain.dry_run(&call, at).await?;
        decode(call.message, &outcome.data)
    }

    /// Runs a message returning `Result<T, Error>`: dry run first, and submitted only if the
    /// contract accepts it. Returns the dry run's value; [`Error::Refused`] with the
    /// contract's error when the dry run says no.
    async fn call<T: Decode>(&mut self, call: Call) -> error::Result<T> {
        let outcome = self.chain.dry_run(&call, At::Best).await?;
        let result: core::result::Result<T, ContractError> = decode(call.message, &outcome.data)?;
        let value = result.map_err(Error::Refused)?;
        if outcome.reverted {
            return Err(anyhow!("{} reverted without an error value", call.message).into());
        }
        self.chain.submit(&call, &outcome).await?;
        Ok(value)
    }

    /// Reads a paged query, `page(offset, limit)` being its call for one page, at most
    /// `MAX_PAGES` pages: `items` turns each page's value into its items, or `None` when there
    /// are none at all.
    async fn paged<P: Decode, T>(
        &mut self,
        page: impl Fn(u32, u32) -> Call,
        items: impl Fn(P) -> Result<Option<Vec<T>>>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        for number in 0..MAX_PAGES {
            let Some(batch) = items(self.query(page(number * PAGE_SIZE, PAGE_SIZE)).await?)? else {
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
        self.query(call!("is_authority", ink_account(who))).await
    }

    /// `owner`'s backup of `node_id`, if any.
    pub async fn backup(&mut self, owner: &AccountId32, node_id: &str) -> Result<Option<Backup>> {
        self.query(call!("backup", ink_account(owner), node_id))
            .await
    }

    /// The limits the registry was instantiated with.
    pub async fn config(&mut self) -> Result<Config> {
        self.query(call!("config")).await
    }

    /// The backup with id `backup_id`, if any.
    pub async fn backup_by_id(&mut self, backup_id: BackupId) -> Result<Option<Backup>> {
        self.query(call!("backup_by_id", backup_id)).await
    }

    /// The newest snapshot of `owner`'s backup of `node_id`, if any.
    pub async fn latest_snapshot(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<Option<Snapshot>> {
        self.query(call!("latest_snapshot", ink_account(owner), node_id))
            .await
    }

    /// Every snapshot the registry keeps of `owner`'s backup of `node_id`, oldest first,
    /// pinned ones included (read in pages; none when there is no such backup).
    pub async fn snapshots(&mut self, owner: &AccountId32, node_id: &str) -> Result<Vec<Snapshot>> {
        let owner = ink_account(owner);
        self.paged(
            |offset, limit| call!("snapshots", owner, node_id, offset, limit),
            |page: core::result::Result<Vec<Snapshot>, ContractError>| match page {
                Ok(snapshots) => Ok(Some(snapshots)),
                Err(ContractError::BackupNotFound) => Ok(None),
                Err(error) => Err(Error::Refused(error).into()),
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
            .query_at(call!("snapshot_by_cid", cid), At::Finalized)
            .await?;
        Ok(kept.is_some())
    }

    /// Every backup of `owner`.
    pub async fn backups_of(&mut self, owner: &AccountId32) -> Result<Vec<Backup>> {
        self.query(call!("backups_of", ink_account(owner))).await
    }

    /// The age recipient `owner` registered for the backup of `node_id`, if any.
    pub async fn backup_recipient(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> Result<Option<String>> {
        self.query(call!("backup_recipient", ink_account(owner), node_id))
            .await
    }

    /// The backup frequency of `owner`, in blocks.
    pub async fn backup_frequency(&mut self, owner: &AccountId32) -> Result<u32> {
        self.query(call!("backup_frequency", ink_account(owner)))
            .await
    }

    /// The restore request `request_id`, if any.
    pub async fn restore_request(
        &mut self,
        request_id: RequestId,
    ) -> Result<Option<RestoreRequest>> {
        self.query(call!("restore_request", request_id)).await
    }

    /// Every pending or in-progress restore request (read in pages, at most
    /// `PAGE_SIZE * MAX_PAGES`).
    pub async fn open_restore_requests(&mut self) -> Result<Vec<(RequestId, RestoreRequest)>> {
        self.paged(
            |offset, limit| call!("pending_restore_requests", offset, limit),
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
    ) -> error::Result<()> {
        self.call(add_snapshot_call(
            owner,
            node_id,
            cid,
            description,
            run_id,
            size_bytes,
        ))
        .await
    }

    /// The error the registry would refuse `call` (a message returning `Result<(), Error>`)
    /// with, or `None` if it would accept it: a dry run, nothing is submitted.
    pub async fn dry_run_refusal(&mut self, call: Call) -> Result<Option<ContractError>> {
        let result: core::result::Result<(), ContractError> = self.query(call).await?;
        Ok(result.err())
    }

    /// Claims a pending restore request (authorities only).
    pub async fn claim_restore_request(&mut self, request_id: RequestId) -> error::Result<()> {
        self.call(call!("claim_restore_request", request_id)).await
    }

    /// Marks a claimed restore request fulfilled.
    pub async fn fulfil_restore_request(&mut self, request_id: RequestId) -> error::Result<()> {
        self.call(call!("fulfil_restore_request", request_id)).await
    }

    /// Marks a claimed restore request failed, for `reason`.
    pub async fn fail_restore_request(
        &mut self,
        request_id: RequestId,
        reason: &str,
    ) -> error::Result<()> {
        self.call(call!("fail_restore_request", request_id, reason))
            .await
    }

    /// Sets the caller's backup frequency, in blocks.
    pub async fn set_backup_frequency(&mut self, frequency: u32) -> error::Result<()> {
        self.call(call!("set_backup_offchain_worker_frequency", frequency))
            .await
    }

    /// Adds `authority` to the registry's authority set (the admin only).
    pub async fn add_authority(&mut self, authority: &AccountId32) -> error::Result<()> {
        self.call(call!("add_authority", ink_account(authority)))
            .await
    }

    /// Removes `authority` from the registry's authority set (the admin only).
    pub async fn remove_authority(&mut self, authority: &AccountId32) -> error::Result<()> {
        self.call(call!("remove_authority", ink_account(authority)))
            .await
    }

    /// Asks for one snapshot of the caller's backup of `node_id` before its frequency has
    /// passed.
    pub async fn request_snapshot(&mut self, node_id: &str) -> error::Result<()> {
        self.call(call!("request_snapshot", node_id)).await
    }

    /// Opts the caller's node `node_id` in for backups.
    pub async fn create_backup(&mut self, node_id: &str, description: &str) -> error::Result<()> {
        self.call(call!("create_backup", node_id, description))
            .await
    }

    /// Adds room for `snapshots` more snapshot slots to the storage reserve of the caller's
    /// backup of `node_id`, paying their deposit.
    pub async fn fund_backup(&mut self, node_id: &str, snapshots: u32) -> error::Result<()> {
        self.call(call!("fund_backup", node_id, snapshots)).await
    }

    /// Shares the caller's backup of `node_id` with `grantee`, who may then ask for its
    /// restores.
    pub async fn grant_access(
        &mut self,
        node_id: &str,
        grantee: &AccountId32,
    ) -> error::Result<()> {
        self.call(call!("grant_access", node_id, ink_account(grantee)))
            .await
    }

    /// Deletes the caller's backup of `node_id` with all its snapshots.
    pub async fn delete_backup(&mut self, node_id: &str) -> error::Result<()> {
        self.call(call!("delete_backup", node_id)).await
    }

    /// Pins the caller's snapshot `cid`: retention keeps it until unpinned.
    pub async fn pin_snapshot(&mut self, cid: &str) -> error::Result<()> {
        self.call(call!("pin_snapshot", cid)).await
    }

    /// Unpins the caller's snapshot `cid`: retention may prune it again.
    pub async fn unpin_snapshot(&mut self, cid: &str) -> error::Result<()> {
        self.call(call!("unpin_snapshot", cid)).await
    }

    /// Registers (or clears) the caller's age recipient for its backup of `node_id`.
    pub async fn set_backup_recipient(
        &mut self,
        node_id: &str,
        recipient: Option<&str>,
    ) -> error::Result<()> {
        self.call(call!("set_backup_recipient", node_id, recipient))
            .await
    }

    /// Requests a restore of the newest snapshot of `owner`'s backup of `node_id`.
    pub async fn restore_latest_snapshot(
        &mut self,
        owner: &AccountId32,
        node_id: &str,
    ) -> error::Result<RequestId> {
        self.call(call!(
            "restore_latest_snapshot",
            ink_account(owner),
            node_id
        ))
        .await
    }

    /// Cancels the open restore request `request_id` (its requester or the backup's owner).
    pub async fn cancel_restore_request(&mut self, request_id: RequestId) -> error::Result<()> {
        self.call(call!("cancel_restore_request", request_id)).await
    }
}
