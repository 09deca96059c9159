//! # Backup registry
//!
//! The Hippius "Backup pallet" as an ink! 5 contract for pallet-contracts: an on-chain registry
//! of the snapshots (IPFS CIDs) that trusted off-chain bots take of each user's storage nodes.
//!
//! - **Admin** (the instantiator): manages the authority set, hands admin over in two steps,
//!   pauses authorities and new commitments (owners may still leave), upgrades the code in two
//!   steps `upgrade_delay` blocks apart (`propose_upgrade`, then `apply_upgrade`), so owners
//!   who object have time to leave.
//! - **Authorities** (the off-chain bots): add snapshots and drive restore requests through
//!   `Pending → InProgress → Fulfilled | Failed`.
//! - **Owners**: opt their nodes in with `create_backup`, set how often they are snapshotted,
//!   request restores, grant restore rights to other accounts, and delete their backups.
//!
//! Storage stays bounded: snapshots live in their own `Mapping` entries (the newest
//! `max_snapshots_per_backup` of each backup are kept), accounts own at most
//! `max_backups_per_account` backups, each backup has at most [`MAX_GRANTS_PER_BACKUP`]
//! grantees and one open restore request, and no message iterates over users or backups
//! beyond those caps. A CID index finds a snapshot in O(1) for a restore.
//!
//! Every storage key has a fixed size whatever the input: ids, account ids, or the 32-byte
//! BLAKE2 digest of a variable-length value (an owner and node id, a CID's multihash). So no
//! input, however long, can reach pallet-contracts' 128-byte key limit: a message answers
//! with its own `Err` (a query with `None` or an empty list) instead of a trap.
//!
//! Owners are in control: authorities record snapshots only into backups their owners
//! created, and a deleted backup stays deleted until its owner creates it again.
//!
//! Upgrades keep the storage: the packed fields of [`BackupRegistry`] (the root, decoded whole
//! by every message) are frozen. A later version keeps them as they are, puts new state in
//! new `Lazy` or `Mapping` fields (their keys derive from their names, so no field moves),
//! and migrates what it changes once, raising `storage_version`.
#![cfg_attr(not(feature = "std"), no_std, no_main)]
// The lints cargo-contract denies when it builds the contract, checked by plain clippy too.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod cid;
mod recipient;

pub use self::backup_registry::{
    Backup, BackupId, BackupRegistry, Config, Error, PendingUpgrade, RequestId, RestoreRequest,
    RestoreStatus, Snapshot, SnapshotRef, SnapshotSeq, StorageReserve,
};

/// Most authorities the registry holds.
pub const MAX_AUTHORITIES: u32 = 16;
/// Highest `max_snapshots_per_backup` a deployment may configure.
pub const MAX_RETENTION: u32 = 64;
/// Highest `max_backups_per_account` a deployment may configure.
pub const MAX_BACKUPS_PER_ACCOUNT: u32 = 32;
/// Most accounts one backup may be shared with.
pub const MAX_GRANTS_PER_BACKUP: u32 = 8;
/// Most snapshots of one backup its owner may pin (kept beyond the retention limit).
pub const MAX_PINS_PER_BACKUP: u32 = 4;
/// Most backups one `delete_user_storage` call deletes, so that a call at the hard bounds stays
/// far below a block's weight (the benchmark measures it).
pub const MAX_BACKUPS_DELETED_PER_CALL: u32 = 3;
/// Longest node id, in bytes of UTF-8.
pub const MAX_NODE_ID_LEN: usize = 64;
/// Longest backup or snapshot description, in bytes of UTF-8.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Longest CID string, in bytes.
pub const MAX_CID_LEN: usize = 128;
/// Longest failure reason of a restore request, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 128;
/// Most entries one paged query returns.
pub const MAX_PAGE_SIZE: u32 = 32;
/// Highest backup frequency a deployment may allow, in blocks (about ten years of 6 s blocks).
pub const MAX_FREQUENCY_LIMIT: u32 = 52_560_000;
/// Longest `claim_timeout` a deployment may configure, in blocks (two weeks of 6 s blocks).
pub const MAX_CLAIM_TIMEOUT: u32 = 201_600;
/// Longest `upgrade_delay` a deployment may configure, in blocks (a year of 6 s blocks).
pub const MAX_UPGRADE_DELAY: u32 = 5_256_000;
/// Bytes of storage a backup's reserve holds per snapshot slot: a snapshot record with a
/// CIDv1 of 59 characters (what IPFS and the bot make) and a description of up to 90 bytes,
/// with its CID index entry. Longer descriptions use more: the owner adds with `fund_backup`.
pub const RESERVED_BYTES_PER_SNAPSHOT: u32 = 192;
/// Storage cells a backup's reserve holds per snapshot slot: the record and its index entry.
pub const RESERVED_CELLS_PER_SNAPSHOT: u32 = 2;
/// Bytes of storage a backup's reserve holds besides its snapshots: the backup record's pins,
/// held snapshot and latest request at their largest, a full list of grantees, a recipient,
/// and a restore request at its largest with its entry in the open list.
pub const RESERVED_BYTES_PER_BACKUP: u32 = 720;
/// Storage cells a backup's reserve holds besides its snapshots: grantees, recipient, restore
/// request and its entry in the open list.
pub const RESERVED_CELLS_PER_BACKUP: u32 = 4;
/// Most bytes a backup's reserve may hold unused (one storage cell holds them).
pub const MAX_RESERVE_BYTES: u32 = 16_000;
/// Most spare cells a backup's reserve may hold unused.
pub const MAX_RESERVE_CELLS: u32 = 160;
/// Layout version of the storage this code writes (see the crate's notes on upgrades).
#[cfg(not(registry_v2))]
pub const STORAGE_VERSION: u32 = 1;
/// Layout version of the storage the second version writes (the upgrade test's, built by
/// `testing/v2` with `cfg(registry_v2)`): version 1 and the block it was migrated in.
#[cfg(registry_v2)]
pub const STORAGE_VERSION: u32 = 2;

#[ink::contract]
mod backup_registry {
    use crate::{
        MAX_AUTHORITIES, MAX_BACKUPS_DELETED_PER_CALL, MAX_BACKUPS_PER_ACCOUNT, MAX_CID_LEN,
        MAX_CLAIM_TIMEOUT, MAX_DESCRIPTION_LEN, MAX_FREQUENCY_LIMIT, MAX_GRANTS_PER_BACKUP,
        MAX_NODE_ID_LEN, MAX_PAGE_SIZE, MAX_PINS_PER_BACKUP, MAX_REASON_LEN, MAX_RESERVE_BYTES,
        MAX_RESERVE_CELLS, MAX_RETENTION, MAX_UPGRADE_DELAY, RESERVED_BYTES_PER_BACKUP,
        RESERVED_BYTES_PER_SNAPSHOT, RESERVED_CELLS_PER_BACKUP, RESERVED_CELLS_PER_SNAPSHOT,
        STORAGE_VERSION,
    };
    use ink::prelude::{string::String, vec::Vec};
    use ink::storage::{Lazy, Mapping};

    /// Identifier of a backup, assigned from a counter when it is created.
    pub type BackupId = u64;
    /// Identifier of a restore request, assigned from a counter: never reused.
    pub type RequestId = u64;
    /// Position of a snapshot in its backup's history (the first snapshot is 0).
    pub type SnapshotSeq = u32;
    /// A fixed-size storage key: the BLAKE2-256 digest of a variable-length value.
    pub type KeyDigest = [u8; 32];

    /// Limits chosen at instantiation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct Config {
        /// Snapshots kept per backup; adding one more prunes the oldest (1 to `MAX_RETENTION`).
        pub max_snapshots_per_backup: u32,
        /// Backups one account may own (1 to `MAX_BACKUPS_PER_ACCOUNT`).
        pub max_backups_per_account: u32,
        /// Lowest backup frequency an account may set, in blocks (at least 1).
        pub min_frequency: BlockNumber,
        /// Highest backup frequency an account may set, in blocks.
        pub max_frequency: BlockNumber,
        /// Frequency of accounts that never set one, in blocks (between min and max).
        pub default_frequency: BlockNumber,
        /// Blocks a claim on a restore request holds (1 to `MAX_CLAIM_TIMEOUT`) unless its
        /// claimant renews it: after that, any other authority may claim the request (the
        /// lapsed claimant only after one more `claim_timeout`), and its requester or the
        /// backup's owner may cancel it, so that a bot that stopped cannot hold a restore.
        pub claim_timeout: BlockNumber,
        /// Blocks from an upgrade's proposal to the first block it may be applied in (at most
        /// `MAX_UPGRADE_DELAY`): owners who object to the new code have that long to leave.
        pub upgrade_delay: BlockNumber,
    }

    impl Default for Config {
        /// 32 snapshots per backup, 16 backups per account, frequencies from 10 blocks to a
        /// year, one day by default, claims that lapse after an hour, upgrades a week after
        /// their proposal (6 s blocks).
        fn default() -> Self {
            Self {
                max_snapshots_per_backup: 32,
                max_backups_per_account: 16,
                min_frequency: 10,
                max_frequency: 5_256_000,
                default_frequency: 14_400,
                claim_timeout: 600,
                upgrade_delay: 100_800,
            }
        }
    }

    /// An upgrade the admin proposed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct PendingUpgrade {
        /// Hash of the code proposed (uploaded, or to be uploaded before it is applied).
        pub code_hash: Hash,
        /// First block in which `apply_upgrade` may switch to it.
        pub applies_at: BlockNumber,
    }

    /// A backup: one storage node of one owner, opted in for snapshots.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct Backup {
        /// The account whose data this is.
        pub owner: AccountId,
        /// The storage node backed up.
        pub node_id: String,
        /// Free text set when the backup was created (may be empty).
        pub description: String,
        /// Block in which the backup was created.
        pub created_at: BlockNumber,
        /// Start of the retention window: every snapshot from `first_seq` to `next_seq` is
        /// kept, at most `max_snapshots_per_backup` of them unpinned.
        pub first_seq: SnapshotSeq,
        /// Sequence number the next snapshot will get.
        pub next_seq: SnapshotSeq,
        /// Sequence numbers of the snapshots the owner pinned, ascending (at most
        /// `MAX_PINS_PER_BACKUP`): retention never prunes them and they do not count against
        /// it; those older than `first_seq` are kept only because they are pinned (or held).
        pub pins: Vec<SnapshotSeq>,
        /// Sequence number of the snapshot the backup's open restore request names: held like
        /// a pin (retention never prunes it, and it does not count against retention) until
        /// the request closes.
        pub held: Option<SnapshotSeq>,
        /// Whether the owner asked for a snapshot before its frequency has passed
        /// (`request_snapshot`): the next `add_snapshot` may come early, and clears it.
        pub snapshot_requested: bool,
        /// The backup's latest restore request, open or closed. Opening the next one removes
        /// it once closed, so a backup keeps at most one request (the events keep the history).
        pub latest_request: Option<RequestId>,
    }

    impl Backup {
        /// Number of snapshots currently kept.
        pub fn snapshot_count(&self) -> u32 {
            self.window_len()
                .saturating_add(count(self.protected().filter(|seq| *seq < self.first_seq)))
        }

        /// The sequence numbers of the snapshots kept, oldest first: the pinned or held ones
        /// older than the retention window, then the window.
        pub fn kept_seqs(&self) -> impl Iterator<Item = SnapshotSeq> + '_ {
            self.protected()
                .filter(|seq| *seq < self.first_seq)
                .chain(self.first_seq..self.next_seq)
        }

        /// Whether retention must keep snapshot `seq` whatever its age: pinned, or held.
        pub fn is_protected(&self, seq: SnapshotSeq) -> bool {
            self.held == Some(seq) || self.pins.binary_search(&seq).is_ok()
        }

        /// The pinned and held sequence numbers, ascending, each once.
        fn protected(&self) -> impl Iterator<Item = SnapshotSeq> {
            let mut protected = self.pins.clone();
            if let Some(seq) = self.held {
                if let Err(position) = protected.binary_search(&seq) {
                    protected.insert(position, seq);
                }
            }
            protected.into_iter()
        }

        /// Number of snapshots in the retention window.
        fn window_len(&self) -> u32 {
            self.next_seq.saturating_sub(self.first_seq)
        }

        /// Number of snapshots in the retention window that are neither pinned nor held.
        fn unprotected_in_window(&self) -> u32 {
            self.window_len()
                .saturating_sub(count(self.protected().filter(|seq| *seq >= self.first_seq)))
        }
    }

    /// The number of items of `items`, saturating at `u32::MAX`.
    fn count<T>(items: impl Iterator<Item = T>) -> u32 {
        items.fold(0, |n, _| n.saturating_add(1))
    }

    /// One snapshot of a backup.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct Snapshot {
        /// IPFS CID of the snapshot's root block (for the bot: its sealed manifest, which
        /// names every other block).
        pub cid: String,
        /// Free text from the authority (may be empty).
        pub description: String,
        /// Size of the snapshot in bytes (for the bot: all its blocks), as reported by the
        /// authority.
        pub size_bytes: u64,
        /// The authority's own identifier of the backup run that produced it.
        pub request_id: u64,
        /// Block in which it was recorded.
        pub block_number: BlockNumber,
        /// Timestamp of that block.
        pub timestamp: Timestamp,
    }

    /// Where a snapshot lives: the value of the CID index.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct SnapshotRef {
        /// The backup holding it.
        pub backup_id: BackupId,
        /// Its sequence number in that backup.
        pub seq: SnapshotSeq,
    }

    /// Storage a backup's owner paid for that no record of the backup uses yet: every message
    /// but `create_backup`, `fund_backup` and the deletions takes the storage its writes add
    /// from here and puts back what they free, so that its caller pays no storage deposit and
    /// gets none back (authorities end every cycle where they started).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct StorageReserve {
        /// Bytes of storage held (at most `MAX_RESERVE_BYTES`).
        pub bytes: u32,
        /// Storage cells held (at most `MAX_RESERVE_CELLS`).
        pub cells: u32,
    }

    impl StorageReserve {
        /// Room for `snapshots` snapshot slots (`RESERVED_BYTES_PER_SNAPSHOT` bytes and
        /// `RESERVED_CELLS_PER_SNAPSHOT` cells each); `None` when it overflows.
        fn for_snapshots(snapshots: u32) -> Option<Self> {
            Some(Self {
                bytes: snapshots.checked_mul(RESERVED_BYTES_PER_SNAPSHOT)?,
                cells: snapshots.checked_mul(RESERVED_CELLS_PER_SNAPSHOT)?,
            })
        }
    }

    /// How a backup's reserve is stored: `cells` spare cells (empty values under
    /// `(backup_id, 0..cells)`) and `pad`, this cell's filler of `PAD_FLOOR` bytes plus the
    /// reserved bytes. Its length stays between 64 and 16,383, so its SCALE length prefix is
    /// always two bytes and the cell grows and shrinks byte for byte with the reserve.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct ReserveCell {
        /// Spare cells held.
        cells: u32,
        /// `PAD_FLOOR` bytes, then one byte per reserved byte.
        pad: Vec<u8>,
    }

    /// Length of an empty reserve's pad: the shortest whose SCALE length prefix is two bytes.
    const PAD_FLOOR: u32 = 64;

    impl ReserveCell {
        /// A reserve holding `bytes` bytes and `cells` cells (its spare cells are the caller's
        /// to write).
        fn holding(bytes: u32, cells: u32) -> Self {
            Self {
                cells,
                pad: ink::prelude::vec![0; PAD_FLOOR.saturating_add(bytes) as usize],
            }
        }

        /// What it holds.
        fn balance(&self) -> StorageReserve {
            StorageReserve {
                bytes: u32::try_from(self.pad.len())
                    .unwrap_or(u32::MAX)
                    .saturating_sub(PAD_FLOOR),
                cells: self.cells,
            }
        }
    }

    /// Storage one message's writes added (positive) or freed (negative), as pallet-contracts
    /// counts it: bytes of values, and cells.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    struct StorageDelta {
        bytes: i64,
        cells: i64,
    }

    impl StorageDelta {
        /// Counts a value of `new_len` bytes written over one of `old_len` bytes (`None`: a new
        /// cell).
        fn wrote(&mut self, old_len: Option<u32>, new_len: usize) {
            let new_len = i64::try_from(new_len).unwrap_or(i64::MAX);
            self.bytes = self
                .bytes
                .saturating_add(new_len)
                .saturating_sub(old_len.map_or(0, i64::from));
            if old_len.is_none() {
                self.cells = self.cells.saturating_add(1);
            }
        }

        /// Counts a cell of `old_len` bytes removed (`None`: there was none).
        fn removed(&mut self, old_len: Option<u32>) {
            if let Some(old_len) = old_len {
                self.bytes = self.bytes.saturating_sub(i64::from(old_len));
                self.cells = self.cells.saturating_sub(1);
            }
        }
    }

    /// Where a restore request stands.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub enum RestoreStatus {
        /// Waiting for an authority to claim it; the requester may still cancel it.
        Pending,
        /// Claimed by `authority`, who alone may complete it; the claim lapses
        /// `claim_timeout` blocks after the request's `updated_at`, when another authority
        /// may claim it again.
        InProgress {
            /// The authority serving the request.
            authority: AccountId,
        },
        /// Restored by `authority`.
        Fulfilled {
            /// The authority that served the request.
            authority: AccountId,
        },
        /// Given up by `authority`, for `reason`.
        Failed {
            /// The authority that tried to serve the request.
            authority: AccountId,
            /// Short explanation from the authority.
            reason: String,
        },
        /// Withdrawn by the requester, or closed because its backup was deleted.
        Cancelled,
    }

    impl RestoreStatus {
        /// Whether the request is still pending or in progress.
        pub fn is_open(&self) -> bool {
            matches!(self, Self::Pending | Self::InProgress { .. })
        }
    }

    /// A request to restore one snapshot onto its node.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    #[cfg_attr(feature = "std", derive(ink::storage::traits::StorageLayout))]
    pub struct RestoreRequest {
        /// The backup the snapshot belongs to.
        pub backup_id: BackupId,
        /// CID of the snapshot to restore.
        pub cid: String,
        /// The owner or grantee who asked for it.
        pub requester: AccountId,
        /// Where the request stands.
        pub status: RestoreStatus,
        /// Block in which it was requested.
        pub requested_at: BlockNumber,
        /// Block of its latest status change or claim renewal.
        pub updated_at: BlockNumber,
        /// Block in which its current claimant claimed it (renewals keep it); the block it
        /// was requested in until it is claimed.
        pub claimed_at: BlockNumber,
        /// Position in the list of open requests while pending or in progress.
        pub open_slot: u32,
    }

    /// Everything that can go wrong; every fallible message returns one of these.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[ink::scale_derive(Encode, Decode, TypeInfo)]
    pub enum Error {
        /// The caller already has a backup of this node.
        BackupAlreadyExists,
        /// No backup of this node exists for that account.
        BackupNotFound,
        /// Only an authority may do this.
        NotAuthorized,
        /// The account already has restore rights on this backup.
        AccessAlreadyGranted,
        /// The account has no restore rights on this backup to revoke.
        AccessNotFound,
        /// Only the backup's owner or an account granted access may restore it.
        NotBackupOwner,
        /// No restore request has this id.
        RestoreRequestNotFound,
        /// Only the admin may do this.
        NotAdmin,
        /// Only the proposed admin may accept the admin role; or no admin is proposed, so
        /// there is no proposal to cancel.
        NotPendingAdmin,
        /// The admin paused the authorities and new commitments (`set_paused`).
        Paused,
        /// The account is already an authority.
        AuthorityAlreadyExists,
        /// The account is not an authority.
        AuthorityNotFound,
        /// The authority set is full (`MAX_AUTHORITIES`).
        TooManyAuthorities,
        /// The instantiation limits are out of range or inconsistent.
        InvalidConfig,
        /// The node id is empty or longer than `MAX_NODE_ID_LEN` bytes.
        InvalidNodeId,
        /// The description is longer than `MAX_DESCRIPTION_LEN` bytes.
        DescriptionTooLong,
        /// The failure reason is longer than `MAX_REASON_LEN` bytes.
        ReasonTooLong,
        /// The string is not a CID of a snapshot block: CIDv0 (base58btc `Qm…`) or CIDv1
        /// (base32 `b…`, minimal varints, raw or dag-pb codec), with a 32-byte sha2-256
        /// multihash.
        InvalidCid,
        /// A CID with this multihash is already recorded (in this or another spelling): one
        /// content is one snapshot.
        CidAlreadyRecorded,
        /// No snapshot with this CID is kept, or the backup has no snapshot yet.
        SnapshotNotFound,
        /// The account owns `max_backups_per_account` backups already.
        TooManyBackups,
        /// The backup is shared with `MAX_GRANTS_PER_BACKUP` accounts already.
        TooManyGrants,
        /// The frequency is outside the configured bounds.
        InvalidFrequency,
        /// The backup already has a pending or in-progress restore request.
        RestoreAlreadyOpen,
        /// The request was already claimed by an authority.
        RestoreRequestAlreadyClaimed,
        /// The request must be claimed before it is completed.
        RestoreRequestNotClaimed,
        /// The request is already fulfilled, failed or cancelled.
        RestoreRequestAlreadyClosed,
        /// Only the authority that claimed the request may complete it.
        NotClaimant,
        /// Only the requester or the backup's owner may cancel the request.
        NotRequester,
        /// A counter would overflow.
        Overflow,
        /// pallet-contracts refused the new code hash (no code uploaded under it).
        CodeUpgradeFailed,
        /// The string is not an age X25519 recipient (`age1…`, 62 characters, valid checksum).
        InvalidRecipient,
        /// The snapshot is pinned already.
        SnapshotAlreadyPinned,
        /// The snapshot is not pinned.
        SnapshotNotPinned,
        /// The backup has `MAX_PINS_PER_BACKUP` pinned snapshots already.
        TooManyPins,
        /// The claim lapsed already, or renewing it would hold the request more than
        /// `MAX_CLAIM_TIMEOUT` blocks from when it was claimed.
        ClaimNotRenewable,
        /// The owner's backup frequency has not passed since the backup's latest snapshot, and
        /// the owner asked for no early one (`request_snapshot`).
        TooSoon,
        /// No upgrade is proposed.
        NoUpgradeProposed,
        /// The proposed upgrade's `applies_at` block has not come yet.
        UpgradeNotDue,
        /// The backup's storage reserve cannot hold what this call would store: its owner
        /// adds to it with `fund_backup`.
        InsufficientFunds,
        /// Funding would take the backup's reserve over `MAX_RESERVE_BYTES` or
        /// `MAX_RESERVE_CELLS`.
        ReserveFull,
    }

    /// Result of the registry's messages.
    pub type Result<T> = core::result::Result<T, Error>;

    /// An owner opted a node in for backups.
    #[ink(event)]
    pub struct BackupCreated {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// Id assigned to the backup.
        pub backup_id: BackupId,
    }

    /// A snapshot was recorded.
    #[ink(event)]
    pub struct SnapshotAdded {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// The authority that recorded it.
        #[ink(topic)]
        pub authority: AccountId,
        /// CID of the snapshot.
        pub cid: String,
        /// Its sequence number in the backup.
        pub seq: SnapshotSeq,
        /// The authority's identifier of the backup run.
        pub request_id: u64,
        /// Size of the snapshot in bytes, as reported by the authority.
        pub size_bytes: u64,
        /// CID of the oldest snapshot, pruned to keep the retention limit (no longer
        /// restorable), if one was.
        pub pruned_cid: Option<String>,
    }

    /// An owner asked for a snapshot of a backup before its frequency has passed.
    #[ink(event)]
    pub struct SnapshotRequested {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
    }

    /// An existing backup received a new snapshot.
    #[ink(event)]
    pub struct BackupUpdated {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// Snapshots now kept.
        pub snapshot_count: u32,
    }

    /// A backup and all its snapshots and grants were deleted by its owner (with
    /// `delete_backup`, or one of the backups `delete_user_storage` deleted).
    #[ink(event)]
    pub struct BackupDeleted {
        /// Former owner.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node that was backed up.
        #[ink(topic)]
        pub node_id: String,
        /// Snapshots removed with it.
        pub snapshot_count: u32,
    }

    /// An owner added to a backup's storage reserve (`fund_backup`).
    #[ink(event)]
    pub struct BackupFunded {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// The reserve after the funding.
        pub reserve: StorageReserve,
    }

    /// An account deleted its backups (at most `MAX_BACKUPS_DELETED_PER_CALL` per call).
    #[ink(event)]
    pub struct UserStorageDeleted {
        /// The account.
        #[ink(topic)]
        pub account: AccountId,
        /// Backups removed by this call.
        pub backup_count: u32,
        /// Backups of the account left for the next call (0 when all are gone).
        pub remaining: u32,
    }

    /// An account set how often its backups are snapshotted.
    #[ink(event)]
    pub struct BackupOffchainWorkerFrequencyUpdated {
        /// The account.
        #[ink(topic)]
        pub account: AccountId,
        /// The new frequency, in blocks.
        pub frequency: BlockNumber,
    }

    /// A restore of a snapshot was requested.
    #[ink(event)]
    pub struct SnapshotRestoreRequested {
        /// Id of the new request.
        #[ink(topic)]
        pub request_id: RequestId,
        /// The owner or grantee who asked.
        #[ink(topic)]
        pub requester: AccountId,
        /// The node to restore.
        #[ink(topic)]
        pub node_id: String,
        /// Owner of the backup.
        pub owner: AccountId,
        /// CID of the snapshot to restore.
        pub cid: String,
    }

    /// A restore request changed status (claimed, fulfilled, failed or cancelled) or its claim
    /// was renewed.
    #[ink(event)]
    pub struct RestoreRequestUpdated {
        /// The request.
        #[ink(topic)]
        pub request_id: RequestId,
        /// The account that changed it.
        #[ink(topic)]
        pub by: AccountId,
        /// Its new status.
        pub status: RestoreStatus,
        /// CID of the snapshot retention pruned because the request, closing, no longer holds
        /// it (the requested one itself when it was older than the retention window), if one
        /// was.
        pub pruned_cid: Option<String>,
    }

    /// An owner gave an account restore rights on a backup, or took them back.
    #[ink(event)]
    pub struct AccessChanged {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// The account whose access changed.
        #[ink(topic)]
        pub grantee: AccountId,
        /// `true` when granted, `false` when revoked.
        pub granted: bool,
    }

    /// An owner registered or cleared the age recipient its backup's snapshots are also
    /// encrypted to.
    #[ink(event)]
    pub struct BackupRecipientChanged {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// The new recipient, or `None` when cleared.
        pub recipient: Option<String>,
    }

    /// An owner pinned a snapshot (kept beyond retention) or unpinned it.
    #[ink(event)]
    pub struct SnapshotPinChanged {
        /// Owner of the backup.
        #[ink(topic)]
        pub owner: AccountId,
        /// The node backed up.
        #[ink(topic)]
        pub node_id: String,
        /// CID of the snapshot, as it was recorded.
        pub cid: String,
        /// `true` when pinned, `false` when unpinned.
        pub pinned: bool,
        /// CID of the snapshot retention pruned because of the unpinning (the unpinned one
        /// itself when it was older than the retention window), if one was.
        pub pruned_cid: Option<String>,
    }

    /// An account joined or left the authority set.
    #[ink(event)]
    pub struct AuthorityChanged {
        /// The account.
        #[ink(topic)]
        pub authority: AccountId,
        /// `true` when added, `false` when removed.
        pub added: bool,
    }

    /// The admin proposed a successor, who must accept.
    #[ink(event)]
    pub struct AdminTransferProposed {
        /// Current admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// Proposed admin.
        #[ink(topic)]
        pub proposed: AccountId,
    }

    /// The proposed admin accepted the role.
    #[ink(event)]
    pub struct AdminChanged {
        /// Former admin.
        #[ink(topic)]
        pub previous: AccountId,
        /// New admin.
        #[ink(topic)]
        pub admin: AccountId,
    }

    /// The admin withdrew the proposed successor before it accepted.
    #[ink(event)]
    pub struct AdminProposalCancelled {
        /// The admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// The account that was proposed.
        #[ink(topic)]
        pub proposed: AccountId,
    }

    /// The admin paused or unpaused authorities and new commitments.
    #[ink(event)]
    pub struct PauseChanged {
        /// The admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// Whether they are now paused.
        pub paused: bool,
    }

    /// The admin proposed new code: it may be applied from block `applies_at` on.
    #[ink(event)]
    pub struct UpgradeProposed {
        /// The admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// Hash of the code proposed.
        #[ink(topic)]
        pub code_hash: Hash,
        /// First block in which it may be applied.
        pub applies_at: BlockNumber,
    }

    /// The admin withdrew the proposed upgrade.
    #[ink(event)]
    pub struct UpgradeCancelled {
        /// The admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// Hash of the code that was proposed.
        #[ink(topic)]
        pub code_hash: Hash,
    }

    /// The admin applied the proposed upgrade: the contract runs the new code; storage is
    /// kept.
    #[ink(event)]
    pub struct CodeUpgraded {
        /// The admin.
        #[ink(topic)]
        pub admin: AccountId,
        /// Hash of the new code.
        #[ink(topic)]
        pub code_hash: Hash,
    }

    /// The registry was instantiated (its authorities follow as `AuthorityChanged` events).
    #[ink(event)]
    pub struct Instantiated {
        /// The admin: the instantiator.
        #[ink(topic)]
        pub admin: AccountId,
        /// The limits chosen.
        pub config: Config,
    }

    /// The registry's storage.
    #[ink(storage)]
    pub struct BackupRegistry {
        /// Manages authorities, pausing and upgrades.
        admin: AccountId,
        /// Successor proposed by the admin, until accepted.
        pending_admin: Option<AccountId>,
        /// Whether authorities and new commitments are refused (owners may still leave).
        paused: bool,
        /// Limits chosen at instantiation.
        config: Config,
        /// Layout version of this storage (`STORAGE_VERSION` of the code that last migrated it).
        storage_version: u32,
        /// The upgrade the admin proposed, until applied or cancelled.
        pending_upgrade: Option<PendingUpgrade>,
        /// The authority set.
        authorities: Mapping<AccountId, ()>,
        /// Size of the authority set.
        authority_count: u32,
        /// Id the next backup gets.
        next_backup_id: BackupId,
        /// Backups by id.
        backups: Mapping<BackupId, Backup>,
        /// Backup id by the digest of owner and node id ([`Self::backup_key`]).
        backup_ids: Mapping<KeyDigest, BackupId>,
        /// The backups of each account that has any (at most `max_backups_per_account`).
        owner_backups: Mapping<AccountId, Vec<BackupId>>,
        /// Snapshots by backup and sequence number.
        snapshots: Mapping<(BackupId, SnapshotSeq), Snapshot>,
        /// CID index: where the snapshot lives, by the digest of its CID's multihash
        /// ([`Self::cid_key`]), so that every spelling of one CID finds it.
        snapshot_by_cid: Mapping<KeyDigest, SnapshotRef>,
        /// Accounts granted restore rights on each backup that has any (at most
        /// `MAX_GRANTS_PER_BACKUP`).
        grantees: Mapping<BackupId, Vec<AccountId>>,
        /// Age recipient registered by the owner of each backup that has one.
        recipients: Mapping<BackupId, String>,
        /// Backup frequency of accounts that set one, in blocks.
        frequencies: Mapping<AccountId, BlockNumber>,
        /// Id the next restore request gets.
        next_request_id: RequestId,
        /// Restore requests by id.
        restore_requests: Mapping<RequestId, RestoreRequest>,
        /// Number of pending or in-progress requests.
        open_request_count: u32,
        /// Pending or in-progress request ids, by slot `0..open_request_count`.
        open_requests: Mapping<u32, RequestId>,
        /// Each backup's storage reserve.
        reserves: Mapping<BackupId, ReserveCell>,
        /// The spare cells of each backup's reserve, `(backup_id, 0..cells)`.
        spare_cells: Mapping<(BackupId, u32), ()>,
        /// The second version's new state (the upgrade test's only): the block its migration
        /// ran in. A new field in its own cell, so version 1's root still decodes.
        #[cfg(registry_v2)]
        migrated_at: Lazy<BlockNumber>,
    }

    impl BackupRegistry {
        /// Instantiates the registry with the caller as admin, the given authorities (at most
        /// `MAX_AUTHORITIES`, no repeats) and limits.
        #[ink(constructor)]
        pub fn new(authorities: Vec<AccountId>, config: Config) -> Result<Self> {
            let limits_ok = (1..=MAX_RETENTION).contains(&config.max_snapshots_per_backup)
                && (1..=MAX_BACKUPS_PER_ACCOUNT).contains(&config.max_backups_per_account)
                && config.min_frequency >= 1
                && config.min_frequency <= config.default_frequency
                && config.default_frequency <= config.max_frequency
                && config.max_frequency <= MAX_FREQUENCY_LIMIT
                && (1..=MAX_CLAIM_TIMEOUT).contains(&config.claim_timeout)
                && config.upgrade_delay <= MAX_UPGRADE_DELAY;
            if !limits_ok {
                return Err(Error::InvalidConfig);
            }
            let admin = Self::env().caller();
            Self::env().emit_event(Instantiated { admin, config });
            let mut registry = Self {
                admin,
                pending_admin: None,
                paused: false,
                config,
                storage_version: STORAGE_VERSION,
                pending_upgrade: None,
                authorities: Mapping::default(),
                authority_count: 0,
                next_backup_id: 0,
                backups: Mapping::default(),
                backup_ids: Mapping::default(),
                owner_backups: Mapping::default(),
                snapshots: Mapping::default(),
                snapshot_by_cid: Mapping::default(),
                grantees: Mapping::default(),
                recipients: Mapping::default(),
                frequencies: Mapping::default(),
                next_request_id: 0,
                restore_requests: Mapping::default(),
                open_request_count: 0,
                open_requests: Mapping::default(),
                reserves: Mapping::default(),
                spare_cells: Mapping::default(),
                #[cfg(registry_v2)]
                migrated_at: Lazy::default(),
            };
            for authority in authorities {
                registry.insert_authority(authority)?;
            }
            Ok(registry)
        }

        /// Instantiates the registry with the caller as admin, the given authorities and the
        /// default limits (32 snapshots per backup, 16 backups per account, frequencies from
        /// 10 blocks to a year, one day by default, claims that lapse after 600 blocks,
        /// upgrades 100,800 blocks after their proposal).
        #[ink(constructor)]
        pub fn with_default_config(authorities: Vec<AccountId>) -> Result<Self> {
            Self::new(authorities, Config::default())
        }

        // ----- Admin -----

        /// Adds an authority (admin only).
        #[ink(message)]
        pub fn add_authority(&mut self, authority: AccountId) -> Result<()> {
            self.ensure_admin()?;
            self.insert_authority(authority)
        }

        /// Removes an authority (admin only). It can no longer complete the requests it
        /// claimed; their requesters or the backups' owners may cancel them and ask again.
        #[ink(message)]
        pub fn remove_authority(&mut self, authority: AccountId) -> Result<()> {
            self.ensure_admin()?;
            if !self.authorities.contains(authority) {
                return Err(Error::AuthorityNotFound);
            }
            self.authorities.remove(authority);
            self.authority_count = self.authority_count.saturating_sub(1);
            self.env().emit_event(AuthorityChanged {
                authority,
                added: false,
            });
            Ok(())
        }

        /// Proposes a new admin (admin only); the role moves when that account accepts.
        #[ink(message)]
        pub fn propose_admin(&mut self, proposed: AccountId) -> Result<()> {
            let admin = self.ensure_admin()?;
            self.pending_admin = Some(proposed);
            self.env()
                .emit_event(AdminTransferProposed { admin, proposed });
            Ok(())
        }

        /// Withdraws the proposed successor before it accepts (admin only).
        #[ink(message)]
        pub fn cancel_admin_proposal(&mut self) -> Result<()> {
            let admin = self.ensure_admin()?;
            let proposed = self.pending_admin.take().ok_or(Error::NotPendingAdmin)?;
            self.env()
                .emit_event(AdminProposalCancelled { admin, proposed });
            Ok(())
        }

        /// Accepts the admin role (the proposed admin only).
        #[ink(message)]
        pub fn accept_admin(&mut self) -> Result<()> {
            let caller = self.env().caller();
            if self.pending_admin != Some(caller) {
                return Err(Error::NotPendingAdmin);
            }
            let previous = core::mem::replace(&mut self.admin, caller);
            self.pending_admin = None;
            self.env().emit_event(AdminChanged {
                previous,
                admin: caller,
            });
            Ok(())
        }

        /// Pauses (`true`) or resumes (`false`) the authorities and every new commitment:
        /// creating backups, setting frequencies, granting, registering a recipient, requesting
        /// restores or early snapshots, and pinning (admin only). Owners may still leave while paused: delete
        /// backups, revoke access, clear the recipient, cancel requests and unpin.
        #[ink(message)]
        pub fn set_paused(&mut self, paused: bool) -> Result<()> {
            let admin = self.ensure_admin()?;
            self.paused = paused;
            self.env().emit_event(PauseChanged { admin, paused });
            Ok(())
        }

        /// Proposes replacing the contract's code with the code under `code_hash` (admin only):
        /// `apply_upgrade` may switch to it `upgrade_delay` blocks from now. A new proposal
        /// replaces the previous one, and its delay starts again. The new code must keep this
        /// storage's packed fields (see the crate's notes on upgrades).
        #[ink(message)]
        pub fn propose_upgrade(&mut self, code_hash: Hash) -> Result<()> {
            let admin = self.ensure_admin()?;
            let applies_at = self
                .env()
                .block_number()
                .checked_add(self.config.upgrade_delay)
                .ok_or(Error::Overflow)?;
            self.pending_upgrade = Some(PendingUpgrade {
                code_hash,
                applies_at,
            });
            self.env().emit_event(UpgradeProposed {
                admin,
                code_hash,
                applies_at,
            });
            Ok(())
        }

        /// Withdraws the proposed upgrade (admin only).
        #[ink(message)]
        pub fn cancel_upgrade(&mut self) -> Result<()> {
            let admin = self.ensure_admin()?;
            let pending = self
                .pending_upgrade
                .take()
                .ok_or(Error::NoUpgradeProposed)?;
            self.env().emit_event(UpgradeCancelled {
                admin,
                code_hash: pending.code_hash,
            });
            Ok(())
        }

        /// Switches the contract to the proposed code once its `applies_at` block has come
        /// (admin only); the code must be uploaded by then. Storage is kept.
        #[ink(message)]
        pub fn apply_upgrade(&mut self) -> Result<()> {
            let admin = self.ensure_admin()?;
            let pending = self.pending_upgrade.ok_or(Error::NoUpgradeProposed)?;
            if self.env().block_number() < pending.applies_at {
                return Err(Error::UpgradeNotDue);
            }
            self.env()
                .set_code_hash(&pending.code_hash)
                .map_err(|_| Error::CodeUpgradeFailed)?;
            self.pending_upgrade = None;
            self.env().emit_event(CodeUpgraded {
                admin,
                code_hash: pending.code_hash,
            });
            Ok(())
        }

        // ----- Owners -----

        /// Opts the caller's node `node_id` in for backups; authorities snapshot the backups
        /// that exist. The caller pays the storage deposit of the backup and of its reserve
        /// ([`StorageReserve`]): room for a full backup (`max_snapshots_per_backup` plus
        /// `MAX_PINS_PER_BACKUP` plus one held snapshot slot of `RESERVED_BYTES_PER_SNAPSHOT`
        /// bytes and `RESERVED_CELLS_PER_SNAPSHOT` cells, and `RESERVED_BYTES_PER_BACKUP` bytes
        /// and `RESERVED_CELLS_PER_BACKUP` cells besides), which every later write to the
        /// backup uses and deleting it refunds.
        #[ink(message)]
        pub fn create_backup(&mut self, node_id: String, description: String) -> Result<()> {
            self.ensure_not_paused()?;
            validate_node_id(&node_id)?;
            validate_description(&description)?;
            let owner = self.env().caller();
            let key = self.backup_key(owner, &node_id);
            if self.backup_ids.contains(key) {
                return Err(Error::BackupAlreadyExists);
            }
            let mut owned = self.owner_backups.get(owner).unwrap_or_default();
            if owned.len() >= self.config.max_backups_per_account as usize {
                return Err(Error::TooManyBackups);
            }
            let backup_id = self.next_backup_id;
            self.next_backup_id = backup_id.checked_add(1).ok_or(Error::Overflow)?;
            owned.push(backup_id);
            self.owner_backups.insert(owner, &owned);
            self.backup_ids.insert(key, &backup_id);
            let backup = Backup {
                owner,
                node_id: node_id.clone(),
                description,
                created_at: self.env().block_number(),
                first_seq: 0,
                next_seq: 0,
                pins: Vec::new(),
                held: None,
                snapshot_requested: false,
                latest_request: None,
            };
            self.backups.insert(backup_id, &backup);
            let slots = self
                .config
                .max_snapshots_per_backup
                .saturating_add(MAX_PINS_PER_BACKUP)
                .saturating_add(1);
            let snapshot_room = StorageReserve::for_snapshots(slots).ok_or(Error::Overflow)?;
            self.fill_reserve(
                backup_id,
                ReserveCell::holding(0, 0),
                StorageReserve {
                    bytes: snapshot_room
                        .bytes
                        .saturating_add(RESERVED_BYTES_PER_BACKUP),
                    cells: snapshot_room
                        .cells
                        .saturating_add(RESERVED_CELLS_PER_BACKUP),
                },
            )?;
            self.env().emit_event(BackupCreated {
                owner,
                node_id,
                backup_id,
            });
            Ok(())
        }

        /// Adds room for `snapshots` more snapshot slots (`RESERVED_BYTES_PER_SNAPSHOT` bytes
        /// and `RESERVED_CELLS_PER_SNAPSHOT` cells each) to the reserve of the caller's backup
        /// of `node_id`, within `MAX_RESERVE_BYTES` and `MAX_RESERVE_CELLS` (`ReserveFull`).
        /// The caller pays its storage deposit; deleting the backup refunds what is unused.
        /// For a backup whose snapshots or requests outgrew its reserve (`InsufficientFunds`).
        #[ink(message)]
        pub fn fund_backup(&mut self, node_id: String, snapshots: u32) -> Result<()> {
            self.ensure_not_paused()?;
            let owner = self.env().caller();
            let (backup_id, _) = self.backup_of(owner, &node_id)?;
            let reserve = self.reserves.get(backup_id).ok_or(Error::BackupNotFound)?;
            let added = StorageReserve::for_snapshots(snapshots).ok_or(Error::ReserveFull)?;
            let reserve = self.fill_reserve(backup_id, reserve, added)?;
            self.env().emit_event(BackupFunded {
                owner,
                node_id,
                reserve,
            });
            Ok(())
        }

        /// Sets how often the caller's backups are snapshotted, in blocks, within the
        /// configured bounds.
        #[ink(message)]
        pub fn set_backup_offchain_worker_frequency(
            &mut self,
            new_frequency: BlockNumber,
        ) -> Result<()> {
            self.ensure_not_paused()?;
            if !(self.config.min_frequency..=self.config.max_frequency).contains(&new_frequency) {
                return Err(Error::InvalidFrequency);
            }
            let account = self.env().caller();
            self.frequencies.insert(account, &new_frequency);
            self.env().emit_event(BackupOffchainWorkerFrequencyUpdated {
                account,
                frequency: new_frequency,
            });
            Ok(())
        }

        /// Allows one snapshot of the caller's backup of `node_id` before its frequency has
        /// passed: the bots take it on their next pass.
        #[ink(message)]
        pub fn request_snapshot(&mut self, node_id: String) -> Result<()> {
            self.ensure_not_paused()?;
            let owner = self.env().caller();
            let (backup_id, mut backup) = self.backup_of(owner, &node_id)?;
            backup.snapshot_requested = true;
            let mut delta = StorageDelta::default();
            put(&mut self.backups, backup_id, &backup, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(SnapshotRequested { owner, node_id });
            Ok(())
        }

        /// Gives `grantee` the right to request restores of the caller's backup of `node_id`.
        #[ink(message)]
        pub fn grant_access(&mut self, node_id: String, grantee: AccountId) -> Result<()> {
            self.ensure_not_paused()?;
            let owner = self.env().caller();
            let (backup_id, _) = self.backup_of(owner, &node_id)?;
            let mut grantees = self.grantees.get(backup_id).unwrap_or_default();
            if grantee == owner || grantees.contains(&grantee) {
                return Err(Error::AccessAlreadyGranted);
            }
            if grantees.len() >= MAX_GRANTS_PER_BACKUP as usize {
                return Err(Error::TooManyGrants);
            }
            grantees.push(grantee);
            let mut delta = StorageDelta::default();
            put(&mut self.grantees, backup_id, &grantees, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(AccessChanged {
                owner,
                node_id,
                grantee,
                granted: true,
            });
            Ok(())
        }

        /// Takes back the restore rights of `grantee` on the caller's backup of `node_id`; a
        /// restore request `grantee` opened on it and still open is cancelled. Works while
        /// paused.
        #[ink(message)]
        pub fn revoke_access(&mut self, node_id: String, grantee: AccountId) -> Result<()> {
            let owner = self.env().caller();
            let (backup_id, backup) = self.backup_of(owner, &node_id)?;
            let mut grantees = self.grantees.get(backup_id).unwrap_or_default();
            let position = grantees
                .iter()
                .position(|granted| *granted == grantee)
                .ok_or(Error::AccessNotFound)?;
            grantees.swap_remove(position);
            let mut delta = StorageDelta::default();
            store_list(&mut self.grantees, backup_id, &grantees, &mut delta);
            self.env().emit_event(AccessChanged {
                owner,
                node_id,
                grantee,
                granted: false,
            });
            let grantees_request = self
                .latest_request(&backup)
                .filter(|(_, request)| request.status.is_open() && request.requester == grantee);
            if let Some((request_id, request)) = grantees_request {
                self.close_request(
                    request_id,
                    request,
                    RestoreStatus::Cancelled,
                    owner,
                    &mut delta,
                );
            }
            self.settle(backup_id, delta)
        }

        /// Registers (`Some`) or clears (`None`) the age X25519 recipient (`age1…`) to which
        /// the bots also encrypt the snapshots of the caller's backup of `node_id`, so that
        /// the owner can decrypt them without a bot. A public key only: no secret goes on
        /// chain. Clearing works while paused.
        #[ink(message)]
        pub fn set_backup_recipient(
            &mut self,
            node_id: String,
            recipient: Option<String>,
        ) -> Result<()> {
            if recipient.is_some() {
                self.ensure_not_paused()?;
            }
            if recipient
                .as_deref()
                .is_some_and(|recipient| !crate::recipient::is_well_formed(recipient))
            {
                return Err(Error::InvalidRecipient);
            }
            let owner = self.env().caller();
            let (backup_id, _) = self.backup_of(owner, &node_id)?;
            let mut delta = StorageDelta::default();
            match &recipient {
                Some(recipient) => put(&mut self.recipients, backup_id, recipient, &mut delta),
                None => remove_entry(&mut self.recipients, backup_id, &mut delta),
            }
            self.settle(backup_id, delta)?;
            self.env().emit_event(BackupRecipientChanged {
                owner,
                node_id,
                recipient,
            });
            Ok(())
        }

        /// Requests a restore of the snapshot with CID `cid`, in any of its spellings (its
        /// backup's owner or a grantee only); retention holds the snapshot while the request is
        /// open. Returns the new request's id.
        #[ink(message)]
        pub fn restore_from_snapshot(&mut self, cid: String) -> Result<RequestId> {
            self.ensure_not_paused()?;
            let (location, backup, snapshot) = self.snapshot_with_cid(&cid)?;
            self.ensure_may_restore(location.backup_id, &backup)?;
            self.open_restore_request(location.backup_id, backup, location.seq, snapshot.cid)
        }

        /// Requests a restore of the newest snapshot of `owner`'s backup of `node_id` (the
        /// owner or a grantee only); retention holds the snapshot while the request is open.
        /// Returns the new request's id.
        #[ink(message)]
        pub fn restore_latest_snapshot(
            &mut self,
            owner: AccountId,
            node_id: String,
        ) -> Result<RequestId> {
            self.ensure_not_paused()?;
            let (backup_id, backup) = self.backup_of(owner, &node_id)?;
            self.ensure_may_restore(backup_id, &backup)?;
            let seq = backup
                .next_seq
                .checked_sub(1)
                .ok_or(Error::SnapshotNotFound)?;
            let latest = self
                .snapshots
                .get((backup_id, seq))
                .ok_or(Error::SnapshotNotFound)?;
            self.open_restore_request(backup_id, backup, seq, latest.cid)
        }

        /// Withdraws a restore request that no authority is serving: one still pending, one
        /// whose claim lapsed (`claim_timeout`), or one claimed by an account that is no longer
        /// an authority. The requester may, and so may the backup's owner, whose node the
        /// restore would overwrite. Works while paused.
        #[ink(message)]
        pub fn cancel_restore_request(&mut self, request_id: RequestId) -> Result<()> {
            let caller = self.env().caller();
            let request = self.request_with_status(request_id, |request| match request.status {
                RestoreStatus::Pending => true,
                RestoreStatus::InProgress { authority } => {
                    !self.authorities.contains(authority) || self.claim_lapsed(request)
                }
                _ => false,
            })?;
            let is_owner = self
                .backups
                .get(request.backup_id)
                .is_some_and(|backup| backup.owner == caller);
            if request.requester != caller && !is_owner {
                return Err(Error::NotRequester);
            }
            let backup_id = request.backup_id;
            let mut delta = StorageDelta::default();
            self.close_request(
                request_id,
                request,
                RestoreStatus::Cancelled,
                caller,
                &mut delta,
            );
            self.settle(backup_id, delta)
        }

        /// Pins the snapshot with CID `cid` (any spelling) of one of the caller's backups:
        /// retention never prunes it, and it does not count against the retention limit (at
        /// most `MAX_PINS_PER_BACKUP` per backup).
        #[ink(message)]
        pub fn pin_snapshot(&mut self, cid: String) -> Result<()> {
            self.ensure_not_paused()?;
            let (backup_id, mut backup, seq, snapshot) = self.owned_snapshot(&cid)?;
            let position = match backup.pins.binary_search(&seq) {
                Ok(_) => return Err(Error::SnapshotAlreadyPinned),
                Err(position) => position,
            };
            if backup.pins.len() >= MAX_PINS_PER_BACKUP as usize {
                return Err(Error::TooManyPins);
            }
            backup.pins.insert(position, seq);
            let mut delta = StorageDelta::default();
            put(&mut self.backups, backup_id, &backup, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(SnapshotPinChanged {
                owner: backup.owner,
                node_id: backup.node_id,
                cid: snapshot.cid,
                pinned: true,
                pruned_cid: None,
            });
            Ok(())
        }

        /// Unpins the snapshot with CID `cid` (any spelling) of one of the caller's backups.
        /// Retention applies to it again at once (unless an open restore request holds it):
        /// if that puts the backup over its limit, the oldest unpinned snapshot (maybe this
        /// one) is pruned, as `pruned_cid` says. Works while paused.
        #[ink(message)]
        pub fn unpin_snapshot(&mut self, cid: String) -> Result<()> {
            let (backup_id, mut backup, seq, snapshot) = self.owned_snapshot(&cid)?;
            let position = backup
                .pins
                .binary_search(&seq)
                .map_err(|_| Error::SnapshotNotPinned)?;
            backup.pins.remove(position);
            let mut delta = StorageDelta::default();
            let pruned_cid = self.release(backup_id, &mut backup, seq, &mut delta);
            put(&mut self.backups, backup_id, &backup, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(SnapshotPinChanged {
                owner: backup.owner,
                node_id: backup.node_id,
                cid: snapshot.cid,
                pinned: false,
                pruned_cid,
            });
            Ok(())
        }

        /// Deletes the caller's backup of `node_id` with all its snapshots, CID index entries
        /// and grants; its open restore request, if any, is cancelled. With the caller's last
        /// backup goes its frequency setting. Works while paused.
        #[ink(message)]
        pub fn delete_backup(&mut self, node_id: String) -> Result<()> {
            let owner = self.env().caller();
            let (backup_id, backup) = self.backup_of(owner, &node_id)?;
            let mut owned = self.owner_backups.get(owner).unwrap_or_default();
            owned.retain(|id| *id != backup_id);
            self.store_owned(owner, &owned);
            self.remove_backup(backup_id, backup);
            Ok(())
        }

        /// Deletes the caller's backups, as `delete_backup` does for one, newest first and at
        /// most `MAX_BACKUPS_DELETED_PER_CALL` per call, so that its cost stays bounded. Returns
        /// how many remain: call again until it returns 0; the call that leaves none also
        /// removes the caller's frequency setting. Works while paused.
        #[ink(message)]
        pub fn delete_user_storage(&mut self) -> Result<u32> {
            let account = self.env().caller();
            let mut owned = self.owner_backups.get(account).unwrap_or_default();
            let deleted = owned.split_off(
                owned
                    .len()
                    .saturating_sub(MAX_BACKUPS_DELETED_PER_CALL as usize),
            );
            let backup_count = u32::try_from(deleted.len()).map_err(|_| Error::Overflow)?;
            let remaining = u32::try_from(owned.len()).map_err(|_| Error::Overflow)?;
            self.store_owned(account, &owned);
            for &backup_id in &deleted {
                if let Some(backup) = self.backups.get(backup_id) {
                    self.remove_backup(backup_id, backup);
                }
            }
            self.env().emit_event(UserStorageDeleted {
                account,
                backup_count,
                remaining,
            });
            Ok(remaining)
        }

        // ----- Authorities -----

        /// Records snapshot `snapshot_cid` of `account_id`'s node `node_id` (authorities
        /// only), into the backup its owner created with `create_backup` (`BackupNotFound`
        /// otherwise: no backup is ever opened without its owner), once the owner's frequency
        /// has passed since the backup's latest snapshot, or earlier once if the owner asked
        /// (`request_snapshot`; `TooSoon` otherwise). Prunes the oldest unpinned snapshot beyond
        /// the retention limit and stamps the snapshot with the current block and time.
        #[ink(message)]
        pub fn add_snapshot(
            &mut self,
            node_id: String,
            snapshot_cid: String,
            description: String,
            request_id: u64,
            account_id: AccountId,
            size_bytes: u64,
        ) -> Result<()> {
            self.ensure_not_paused()?;
            let authority = self.ensure_authority()?;
            let cid_key = self.cid_key(&snapshot_cid)?;
            validate_description(&description)?;
            if self.snapshot_by_cid.contains(cid_key) {
                return Err(Error::CidAlreadyRecorded);
            }
            let (backup_id, mut backup) = self.backup_of(account_id, &node_id)?;
            let now = self.env().block_number();
            let latest_at = backup
                .next_seq
                .checked_sub(1)
                .and_then(|latest| self.snapshots.get((backup_id, latest)))
                .map(|latest| latest.block_number);
            let too_soon = latest_at.is_some_and(|latest_at| {
                now.saturating_sub(latest_at) < self.backup_frequency(account_id)
            });
            if too_soon && !backup.snapshot_requested {
                return Err(Error::TooSoon);
            }
            backup.snapshot_requested = false;
            let seq = backup.next_seq;
            backup.next_seq = seq.checked_add(1).ok_or(Error::Overflow)?;
            let mut delta = StorageDelta::default();
            let pruned = self.enforce_retention(backup_id, &mut backup, &mut delta);
            let snapshot = Snapshot {
                cid: snapshot_cid.clone(),
                description,
                size_bytes,
                request_id,
                block_number: now,
                timestamp: self.env().block_timestamp(),
            };
            put(&mut self.snapshots, (backup_id, seq), &snapshot, &mut delta);
            put(
                &mut self.snapshot_by_cid,
                cid_key,
                &SnapshotRef { backup_id, seq },
                &mut delta,
            );
            put(&mut self.backups, backup_id, &backup, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(SnapshotAdded {
                owner: account_id,
                node_id: node_id.clone(),
                authority,
                cid: snapshot_cid,
                seq,
                request_id,
                size_bytes,
                pruned_cid: pruned,
            });
            self.env().emit_event(BackupUpdated {
                owner: account_id,
                node_id,
                snapshot_count: backup.snapshot_count(),
            });
            Ok(())
        }

        /// Claims a pending restore request (authorities only): it moves to `InProgress` and
        /// only the caller may complete it, for `claim_timeout` blocks (longer if renewed) and
        /// after that until another authority claims it. A request may also be claimed when
        /// its claimant is no longer an authority, or when its claim lapsed; a lapsed claimant
        /// waits one more `claim_timeout` first, so another authority always gets its turn.
        #[ink(message)]
        pub fn claim_restore_request(&mut self, request_id: RequestId) -> Result<()> {
            self.ensure_not_paused()?;
            let authority = self.ensure_authority()?;
            let mut request =
                self.request_with_status(request_id, |request| match request.status {
                    RestoreStatus::Pending => true,
                    RestoreStatus::InProgress {
                        authority: claimant,
                    } => {
                        !self.authorities.contains(claimant)
                            || self.claim_lapsed(request)
                                && (claimant != authority
                                    || self.claim_age(request)
                                        >= self.config.claim_timeout.saturating_mul(2))
                    }
                    _ => false,
                })?;
            let now = self.env().block_number();
            request.status = RestoreStatus::InProgress { authority };
            request.updated_at = now;
            request.claimed_at = now;
            self.store_claim(request_id, &request, authority)
        }

        /// Renews the caller's claim on a restore request before it lapses (the claimant
        /// only): it holds `claim_timeout` blocks from now, and at most `MAX_CLAIM_TIMEOUT`
        /// blocks from when it was claimed in all (`ClaimNotRenewable` after that). For
        /// restores that take longer than one `claim_timeout`.
        #[ink(message)]
        pub fn renew_claim(&mut self, request_id: RequestId) -> Result<()> {
            let (authority, mut request) = self.claimed_request(request_id)?;
            let now = self.env().block_number();
            let held_until = now.saturating_add(self.config.claim_timeout);
            if self.claim_lapsed(&request)
                || held_until.saturating_sub(request.claimed_at) > MAX_CLAIM_TIMEOUT
            {
                return Err(Error::ClaimNotRenewable);
            }
            request.updated_at = now;
            self.store_claim(request_id, &request, authority)
        }

        /// Marks a restore request the caller claimed as fulfilled (authorities only).
        #[ink(message)]
        pub fn fulfil_restore_request(&mut self, request_id: RequestId) -> Result<()> {
            let (authority, request) = self.claimed_request(request_id)?;
            let backup_id = request.backup_id;
            let mut delta = StorageDelta::default();
            self.close_request(
                request_id,
                request,
                RestoreStatus::Fulfilled { authority },
                authority,
                &mut delta,
            );
            self.settle(backup_id, delta)
        }

        /// Marks a restore request the caller claimed as failed, with a short `reason`
        /// (authorities only).
        #[ink(message)]
        pub fn fail_restore_request(
            &mut self,
            request_id: RequestId,
            reason: String,
        ) -> Result<()> {
            if reason.len() > MAX_REASON_LEN {
                return Err(Error::ReasonTooLong);
            }
            let (authority, request) = self.claimed_request(request_id)?;
            let backup_id = request.backup_id;
            let mut delta = StorageDelta::default();
            self.close_request(
                request_id,
                request,
                RestoreStatus::Failed { authority, reason },
                authority,
                &mut delta,
            );
            self.settle(backup_id, delta)
        }

        // ----- Queries -----

        /// The admin.
        #[ink(message)]
        pub fn admin(&self) -> AccountId {
            self.admin
        }

        /// The account proposed as next admin, if any.
        #[ink(message)]
        pub fn pending_admin(&self) -> Option<AccountId> {
            self.pending_admin
        }

        /// Whether writes are paused.
        #[ink(message)]
        pub fn is_paused(&self) -> bool {
            self.paused
        }

        /// The limits chosen at instantiation.
        #[ink(message)]
        pub fn config(&self) -> Config {
            self.config
        }

        /// The upgrade the admin proposed, if any.
        #[ink(message)]
        pub fn pending_upgrade(&self) -> Option<PendingUpgrade> {
            self.pending_upgrade
        }

        /// Layout version of the registry's storage.
        #[ink(message)]
        pub fn storage_version(&self) -> u32 {
            self.storage_version
        }

        /// Migrates version 1's storage to the second version's (admin only; the upgrade
        /// test's second version only): records the block, and raises `storage_version`.
        /// Nothing happens on storage already migrated.
        #[cfg(registry_v2)]
        #[ink(message)]
        pub fn migrate(&mut self) -> Result<()> {
            self.ensure_admin()?;
            if self.storage_version < STORAGE_VERSION {
                self.migrated_at.set(&self.env().block_number());
                self.storage_version = STORAGE_VERSION;
            }
            Ok(())
        }

        /// The block the second version's migration ran in (the upgrade test's only).
        #[cfg(registry_v2)]
        #[ink(message)]
        pub fn migrated_at(&self) -> Option<BlockNumber> {
            self.migrated_at.get()
        }

        /// Whether `account` is an authority.
        #[ink(message)]
        pub fn is_authority(&self, account: AccountId) -> bool {
            self.authorities.contains(account)
        }

        /// Size of the authority set.
        #[ink(message)]
        pub fn authority_count(&self) -> u32 {
            self.authority_count
        }

        /// `owner`'s backup of `node_id`.
        #[ink(message)]
        pub fn backup(&self, owner: AccountId, node_id: String) -> Option<Backup> {
            self.backup_of(owner, &node_id)
                .ok()
                .map(|(_, backup)| backup)
        }

        /// The backup with id `backup_id` (restore requests refer to backups by id).
        #[ink(message)]
        pub fn backup_by_id(&self, backup_id: BackupId) -> Option<Backup> {
            self.backups.get(backup_id)
        }

        /// All backups of `owner` (at most `max_backups_per_account`).
        #[ink(message)]
        pub fn backups_of(&self, owner: AccountId) -> Vec<Backup> {
            self.owner_backups
                .get(owner)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|backup_id| self.backups.get(backup_id))
                .collect()
        }

        /// Snapshots of `owner`'s backup of `node_id`, oldest first (pinned ones included):
        /// `limit` (at most `MAX_PAGE_SIZE`) from position `offset` among those kept.
        #[ink(message)]
        pub fn snapshots(
            &self,
            owner: AccountId,
            node_id: String,
            offset: u32,
            limit: u32,
        ) -> Result<Vec<Snapshot>> {
            let (backup_id, backup) = self.backup_of(owner, &node_id)?;
            Ok(backup
                .kept_seqs()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit.min(MAX_PAGE_SIZE)).unwrap_or(0))
                .filter_map(|seq| self.snapshots.get((backup_id, seq)))
                .collect())
        }

        /// The snapshots of `owner`'s backup of `node_id` its owner pinned, oldest first (at
        /// most `MAX_PINS_PER_BACKUP`; empty when there is no such backup).
        #[ink(message)]
        pub fn pinned_snapshots(&self, owner: AccountId, node_id: String) -> Vec<Snapshot> {
            let Ok((backup_id, backup)) = self.backup_of(owner, &node_id) else {
                return Vec::new();
            };
            backup
                .pins
                .iter()
                .filter_map(|seq| self.snapshots.get((backup_id, *seq)))
                .collect()
        }

        /// The newest snapshot of `owner`'s backup of `node_id`.
        #[ink(message)]
        pub fn latest_snapshot(&self, owner: AccountId, node_id: String) -> Option<Snapshot> {
            let (backup_id, backup) = self.backup_of(owner, &node_id).ok()?;
            let seq = backup.next_seq.checked_sub(1)?;
            self.snapshots.get((backup_id, seq))
        }

        /// The snapshot with CID `cid` (in any of its spellings) and the backup holding it.
        #[ink(message)]
        pub fn snapshot_by_cid(&self, cid: String) -> Option<(Backup, Snapshot)> {
            let (_, backup, snapshot) = self.snapshot_with_cid(&cid).ok()?;
            Some((backup, snapshot))
        }

        /// The accounts besides the owner that may request restores of `owner`'s backup of
        /// `node_id` (at most `MAX_GRANTS_PER_BACKUP`; empty when there is no such backup).
        #[ink(message)]
        pub fn grantees(&self, owner: AccountId, node_id: String) -> Vec<AccountId> {
            self.backup_ids
                .get(self.backup_key(owner, &node_id))
                .and_then(|backup_id| self.grantees.get(backup_id))
                .unwrap_or_default()
        }

        /// The age recipient registered for `owner`'s backup of `node_id`, if any.
        #[ink(message)]
        pub fn backup_recipient(&self, owner: AccountId, node_id: String) -> Option<String> {
            let (backup_id, _) = self.backup_of(owner, &node_id).ok()?;
            self.recipients.get(backup_id)
        }

        /// How often `account`'s backups are snapshotted, in blocks (the default when it
        /// never set one).
        #[ink(message)]
        pub fn backup_frequency(&self, account: AccountId) -> BlockNumber {
            self.frequencies
                .get(account)
                .unwrap_or(self.config.default_frequency)
        }

        /// The restore request with id `request_id`: kept while open, and once closed until
        /// its backup's next request opens or the backup is deleted.
        #[ink(message)]
        pub fn restore_request(&self, request_id: RequestId) -> Option<RestoreRequest> {
            self.restore_requests.get(request_id)
        }

        /// The storage reserve of `owner`'s backup of `node_id`, if it exists.
        #[ink(message)]
        pub fn backup_reserve(&self, owner: AccountId, node_id: String) -> Option<StorageReserve> {
            let (backup_id, _) = self.backup_of(owner, &node_id).ok()?;
            Some(self.reserves.get(backup_id)?.balance())
        }

        /// Pending and in-progress restore requests with their ids: `limit` (at most
        /// `MAX_PAGE_SIZE`) from position `offset`. Their order changes as requests close.
        #[ink(message)]
        pub fn pending_restore_requests(
            &self,
            offset: u32,
            limit: u32,
        ) -> Vec<(RequestId, RestoreRequest)> {
            let end = offset
                .saturating_add(limit.min(MAX_PAGE_SIZE))
                .min(self.open_request_count);
            (offset..end)
                .filter_map(|slot| self.open_requests.get(slot))
                .filter_map(|id| self.restore_requests.get(id).map(|request| (id, request)))
                .collect()
        }

        /// Number of pending and in-progress restore requests.
        #[ink(message)]
        pub fn pending_restore_request_count(&self) -> u32 {
            self.open_request_count
        }

        // ----- Helpers -----

        /// The caller, if it is the admin.
        fn ensure_admin(&self) -> Result<AccountId> {
            let caller = self.env().caller();
            if caller != self.admin {
                return Err(Error::NotAdmin);
            }
            Ok(caller)
        }

        /// The caller, if it is an authority.
        fn ensure_authority(&self) -> Result<AccountId> {
            let caller = self.env().caller();
            if !self.authorities.contains(caller) {
                return Err(Error::NotAuthorized);
            }
            Ok(caller)
        }

        /// Refuses writes while paused.
        fn ensure_not_paused(&self) -> Result<()> {
            if self.paused {
                return Err(Error::Paused);
            }
            Ok(())
        }

        /// Adds `authority` to the set, within its cap.
        fn insert_authority(&mut self, authority: AccountId) -> Result<()> {
            if self.authorities.contains(authority) {
                return Err(Error::AuthorityAlreadyExists);
            }
            if self.authority_count >= MAX_AUTHORITIES {
                return Err(Error::TooManyAuthorities);
            }
            self.authority_count = self.authority_count.checked_add(1).ok_or(Error::Overflow)?;
            self.authorities.insert(authority, &());
            self.env().emit_event(AuthorityChanged {
                authority,
                added: true,
            });
            Ok(())
        }

        /// The key of `owner`'s backup of `node_id` in `backup_ids`: 32 bytes, whatever the
        /// node id's length.
        fn backup_key(&self, owner: AccountId, node_id: &str) -> KeyDigest {
            self.env()
                .hash_encoded::<ink::env::hash::Blake2x256, _>(&(owner, node_id))
        }

        /// The key of the snapshot with CID `cid` in `snapshot_by_cid`: the digest of the
        /// CID's multihash, so that every spelling of one CID has one key.
        fn cid_key(&self, cid: &str) -> Result<KeyDigest> {
            if cid.len() > MAX_CID_LEN {
                return Err(Error::InvalidCid);
            }
            let multihash = crate::cid::multihash(cid).ok_or(Error::InvalidCid)?;
            Ok(self
                .env()
                .hash_bytes::<ink::env::hash::Blake2x256>(&multihash))
        }

        /// The snapshot with CID `cid` (any spelling), where it lives and its backup: the CID
        /// index's one lookup.
        fn snapshot_with_cid(&self, cid: &str) -> Result<(SnapshotRef, Backup, Snapshot)> {
            let location = self
                .snapshot_by_cid
                .get(self.cid_key(cid)?)
                .ok_or(Error::SnapshotNotFound)?;
            let backup = self
                .backups
                .get(location.backup_id)
                .ok_or(Error::BackupNotFound)?;
            let snapshot = self
                .snapshots
                .get((location.backup_id, location.seq))
                .ok_or(Error::SnapshotNotFound)?;
            Ok((location, backup, snapshot))
        }

        /// The snapshot with CID `cid` with its backup and sequence number, if the caller owns
        /// that backup.
        fn owned_snapshot(&self, cid: &str) -> Result<(BackupId, Backup, SnapshotSeq, Snapshot)> {
            let (location, backup, snapshot) = self.snapshot_with_cid(cid)?;
            if backup.owner != self.env().caller() {
                return Err(Error::NotBackupOwner);
            }
            Ok((location.backup_id, backup, location.seq, snapshot))
        }

        /// Moves `backup`'s retention window past its oldest snapshots until at most
        /// `max_snapshots_per_backup` unprotected ones are in it: pinned and held ones stay
        /// (outside the window), the others leave storage and the CID index. Returns the CID
        /// pruned, if one was (one at most, as each call follows one added or released
        /// snapshot).
        fn enforce_retention(
            &mut self,
            backup_id: BackupId,
            backup: &mut Backup,
            delta: &mut StorageDelta,
        ) -> Option<String> {
            let mut pruned = None;
            while backup.unprotected_in_window() > self.config.max_snapshots_per_backup {
                let oldest = backup.first_seq;
                // `first_seq < next_seq` here, so this never saturates.
                backup.first_seq = oldest.saturating_add(1);
                if !backup.is_protected(oldest) {
                    pruned = self.remove_snapshot(backup_id, oldest, delta).or(pruned);
                }
            }
            pruned
        }

        /// Applies retention to snapshot `seq` of `backup` again, now that a pin or a request
        /// no longer protects it (unless the other still does): it goes at once when it is
        /// older than the window, else the window is enforced. Returns the CID pruned, if one
        /// was.
        fn release(
            &mut self,
            backup_id: BackupId,
            backup: &mut Backup,
            seq: SnapshotSeq,
            delta: &mut StorageDelta,
        ) -> Option<String> {
            if backup.is_protected(seq) {
                None
            } else if seq < backup.first_seq {
                self.remove_snapshot(backup_id, seq, delta)
            } else {
                self.enforce_retention(backup_id, backup, delta)
            }
        }

        /// Removes snapshot `seq` of backup `backup_id` and its CID index entry; returns its
        /// CID, if it was there.
        fn remove_snapshot(
            &mut self,
            backup_id: BackupId,
            seq: SnapshotSeq,
            delta: &mut StorageDelta,
        ) -> Option<String> {
            let snapshot = take_entry(&mut self.snapshots, (backup_id, seq), delta)?;
            if let Ok(key) = self.cid_key(&snapshot.cid) {
                remove_entry(&mut self.snapshot_by_cid, key, delta);
            }
            Some(snapshot.cid)
        }

        /// Adds `added` to backup `backup_id`'s `reserve`, within `MAX_RESERVE_BYTES` and
        /// `MAX_RESERVE_CELLS` (`ReserveFull`); the caller pays the deposit. Returns the new
        /// balance.
        fn fill_reserve(
            &mut self,
            backup_id: BackupId,
            reserve: ReserveCell,
            added: StorageReserve,
        ) -> Result<StorageReserve> {
            let balance = reserve.balance();
            let filled = StorageReserve {
                bytes: balance
                    .bytes
                    .checked_add(added.bytes)
                    .filter(|bytes| *bytes <= MAX_RESERVE_BYTES)
                    .ok_or(Error::ReserveFull)?,
                cells: balance
                    .cells
                    .checked_add(added.cells)
                    .filter(|cells| *cells <= MAX_RESERVE_CELLS)
                    .ok_or(Error::ReserveFull)?,
            };
            self.store_reserve(backup_id, reserve.cells, filled);
            Ok(filled)
        }

        /// Makes a call's writes to backup `backup_id` cost its caller no storage deposit and
        /// refund it none: the reserve gives up as many bytes and cells as `delta` added (or
        /// takes back as many as it freed), so that the call's net storage change, which
        /// pallet-contracts charges or refunds to the caller, is nothing.
        /// `InsufficientFunds` (and the call reverts) when the reserve holds too little.
        fn settle(&mut self, backup_id: BackupId, delta: StorageDelta) -> Result<()> {
            if delta == StorageDelta::default() {
                return Ok(());
            }
            let reserve = self.reserves.get(backup_id).ok_or(Error::BackupNotFound)?;
            let balance = reserve.balance();
            let left = |held: u32, used: i64| {
                i64::from(held)
                    .checked_sub(used)
                    .and_then(|left| u32::try_from(left).ok())
                    .ok_or(Error::InsufficientFunds)
            };
            let settled = StorageReserve {
                bytes: left(balance.bytes, delta.bytes)?,
                cells: left(balance.cells, delta.cells)?,
            };
            self.store_reserve(backup_id, reserve.cells, settled);
            Ok(())
        }

        /// Writes backup `backup_id`'s reserve to hold `balance`: spare cells added or removed
        /// from its `held_cells`, and its pad sized.
        fn store_reserve(&mut self, backup_id: BackupId, held_cells: u32, balance: StorageReserve) {
            for cell in balance.cells..held_cells {
                self.spare_cells.remove((backup_id, cell));
            }
            for cell in held_cells..balance.cells {
                self.spare_cells.insert((backup_id, cell), &());
            }
            self.reserves.insert(
                backup_id,
                &ReserveCell::holding(balance.bytes, balance.cells),
            );
        }

        /// `owner`'s backup of `node_id` with its id.
        fn backup_of(&self, owner: AccountId, node_id: &str) -> Result<(BackupId, Backup)> {
            let backup_id = self
                .backup_ids
                .get(self.backup_key(owner, node_id))
                .ok_or(Error::BackupNotFound)?;
            let backup = self.backups.get(backup_id).ok_or(Error::BackupNotFound)?;
            Ok((backup_id, backup))
        }

        /// Stores `owner`'s list of backups; when it is empty, removes it and the owner's
        /// frequency setting.
        fn store_owned(&mut self, owner: AccountId, owned: &Vec<BackupId>) {
            if owned.is_empty() {
                self.owner_backups.remove(owner);
                self.frequencies.remove(owner);
            } else {
                self.owner_backups.insert(owner, owned);
            }
        }

        /// Removes a backup's snapshots, CID index entries, grants, id entries, record and
        /// latest restore request, cancelling it if open, and emits `BackupDeleted`. Leaves
        /// the owner's backup list to the caller.
        fn remove_backup(&mut self, backup_id: BackupId, backup: Backup) {
            // Nothing here is settled with the reserve, which goes too: the pallet refunds
            // the owner, the caller.
            let mut refunded = StorageDelta::default();
            for seq in backup.kept_seqs() {
                self.remove_snapshot(backup_id, seq, &mut refunded);
            }
            self.grantees.remove(backup_id);
            if let Some(request_id) = backup.latest_request {
                let request = take_entry(&mut self.restore_requests, request_id, &mut refunded);
                if let Some(request) = request.filter(|request| request.status.is_open()) {
                    self.unlist_open_request(request.open_slot, &mut refunded);
                    self.env().emit_event(RestoreRequestUpdated {
                        request_id,
                        by: backup.owner,
                        status: RestoreStatus::Cancelled,
                        pruned_cid: None,
                    });
                }
            }
            self.recipients.remove(backup_id);
            self.backup_ids
                .remove(self.backup_key(backup.owner, &backup.node_id));
            self.backups.remove(backup_id);
            if let Some(reserve) = take_entry(&mut self.reserves, backup_id, &mut refunded) {
                for cell in 0..reserve.cells {
                    self.spare_cells.remove((backup_id, cell));
                }
            }
            self.env().emit_event(BackupDeleted {
                snapshot_count: backup.snapshot_count(),
                owner: backup.owner,
                node_id: backup.node_id,
            });
        }

        /// Whether `account` was granted restore rights on backup `backup_id`.
        fn is_grantee(&self, backup_id: BackupId, account: AccountId) -> bool {
            self.grantees
                .get(backup_id)
                .is_some_and(|grantees| grantees.contains(&account))
        }

        /// Refuses callers other than the backup's owner and grantees.
        fn ensure_may_restore(&self, backup_id: BackupId, backup: &Backup) -> Result<()> {
            let caller = self.env().caller();
            if caller != backup.owner && !self.is_grantee(backup_id, caller) {
                return Err(Error::NotBackupOwner);
            }
            Ok(())
        }

        /// Opens a restore request of snapshot `seq` (CID `cid`) of `backup` for the caller
        /// (checked by `ensure_may_restore`), holds that snapshot, and emits
        /// `SnapshotRestoreRequested`.
        fn open_restore_request(
            &mut self,
            backup_id: BackupId,
            mut backup: Backup,
            seq: SnapshotSeq,
            cid: String,
        ) -> Result<RequestId> {
            let mut delta = StorageDelta::default();
            let requester = self.env().caller();
            if let Some((previous, request)) = self.latest_request(&backup) {
                if request.status.is_open() {
                    return Err(Error::RestoreAlreadyOpen);
                }
                // The closed request gives way: one request per backup.
                remove_entry(&mut self.restore_requests, previous, &mut delta);
            }
            let request_id = self.next_request_id;
            self.next_request_id = request_id.checked_add(1).ok_or(Error::Overflow)?;
            let open_slot = self.open_request_count;
            self.open_request_count = open_slot.checked_add(1).ok_or(Error::Overflow)?;
            put(&mut self.open_requests, open_slot, &request_id, &mut delta);
            let now = self.env().block_number();
            put(
                &mut self.restore_requests,
                request_id,
                &RestoreRequest {
                    backup_id,
                    cid: cid.clone(),
                    requester,
                    status: RestoreStatus::Pending,
                    requested_at: now,
                    updated_at: now,
                    claimed_at: now,
                    open_slot,
                },
                &mut delta,
            );
            backup.latest_request = Some(request_id);
            backup.held = Some(seq);
            put(&mut self.backups, backup_id, &backup, &mut delta);
            self.settle(backup_id, delta)?;
            self.env().emit_event(SnapshotRestoreRequested {
                request_id,
                requester,
                node_id: backup.node_id,
                owner: backup.owner,
                cid,
            });
            Ok(request_id)
        }

        /// The latest restore request of `backup` with its id, if it has one.
        fn latest_request(&self, backup: &Backup) -> Option<(RequestId, RestoreRequest)> {
            let request_id = backup.latest_request?;
            Some((request_id, self.restore_requests.get(request_id)?))
        }

        /// Blocks since `request`'s latest change or claim renewal.
        fn claim_age(&self, request: &RestoreRequest) -> BlockNumber {
            self.env().block_number().saturating_sub(request.updated_at)
        }

        /// Whether `request` is in progress and its claim is `claim_timeout` blocks old.
        fn claim_lapsed(&self, request: &RestoreRequest) -> bool {
            matches!(request.status, RestoreStatus::InProgress { .. })
                && self.claim_age(request) >= self.config.claim_timeout
        }

        /// Stores a request just claimed, or whose claim was renewed, by `authority`, and emits
        /// `RestoreRequestUpdated`.
        fn store_claim(
            &mut self,
            request_id: RequestId,
            request: &RestoreRequest,
            authority: AccountId,
        ) -> Result<()> {
            let mut delta = StorageDelta::default();
            put(&mut self.restore_requests, request_id, request, &mut delta);
            self.settle(request.backup_id, delta)?;
            self.env().emit_event(RestoreRequestUpdated {
                request_id,
                by: authority,
                status: request.status.clone(),
                pruned_cid: None,
            });
            Ok(())
        }

        /// The request `request_id`, if it passes `expected`; otherwise the error that says
        /// where it stands.
        fn request_with_status(
            &self,
            request_id: RequestId,
            expected: impl FnOnce(&RestoreRequest) -> bool,
        ) -> Result<RestoreRequest> {
            let request = self
                .restore_requests
                .get(request_id)
                .ok_or(Error::RestoreRequestNotFound)?;
            if expected(&request) {
                return Ok(request);
            }
            Err(match request.status {
                RestoreStatus::Pending => Error::RestoreRequestNotClaimed,
                RestoreStatus::InProgress { .. } => Error::RestoreRequestAlreadyClaimed,
                _ => Error::RestoreRequestAlreadyClosed,
            })
        }

        /// The caller and request `request_id`, if the caller is the authority that claimed
        /// it and it is still in progress.
        fn claimed_request(&self, request_id: RequestId) -> Result<(AccountId, RestoreRequest)> {
            self.ensure_not_paused()?;
            let authority = self.ensure_authority()?;
            let request = self.request_with_status(request_id, |request| {
                matches!(request.status, RestoreStatus::InProgress { .. })
            })?;
            if request.status != (RestoreStatus::InProgress { authority }) {
                return Err(Error::NotClaimant);
            }
            Ok((authority, request))
        }

        /// Takes the open request in `open_slot` off the open list, moving the last one into
        /// its slot.
        fn unlist_open_request(&mut self, open_slot: u32, delta: &mut StorageDelta) {
            let last = self.open_request_count.saturating_sub(1);
            if let Some(moved_id) = take_entry(&mut self.open_requests, last, delta) {
                if open_slot != last {
                    put(&mut self.open_requests, open_slot, &moved_id, delta);
                    if let Some(mut moved) = self.restore_requests.get(moved_id) {
                        moved.open_slot = open_slot;
                        put(&mut self.restore_requests, moved_id, &moved, delta);
                    }
                }
            }
            self.open_request_count = last;
        }

        /// Gives an open request its final `status`, takes it off the open list, releases the
        /// snapshot it held to retention and emits `RestoreRequestUpdated`; the closed request
        /// stays readable until its backup's next request opens.
        fn close_request(
            &mut self,
            request_id: RequestId,
            mut request: RestoreRequest,
            status: RestoreStatus,
            by: AccountId,
            delta: &mut StorageDelta,
        ) {
            self.unlist_open_request(request.open_slot, delta);
            request.status = status.clone();
            request.updated_at = self.env().block_number();
            put(&mut self.restore_requests, request_id, &request, delta);
            let mut pruned_cid = None;
            if let Some(mut backup) = self.backups.get(request.backup_id) {
                if let Some(seq) = backup.held.take() {
                    pruned_cid = self.release(request.backup_id, &mut backup, seq, delta);
                }
                put(&mut self.backups, request.backup_id, &backup, delta);
            }
            self.env().emit_event(RestoreRequestUpdated {
                request_id,
                by,
                status,
                pruned_cid,
            });
        }
    }

    /// Removes and returns the value at `key`: `Mapping::take` as a read and a removal, because
    /// ink 5.1's off-chain test engine does not count the cells `take` frees, and the unit
    /// tests count cells to prove that deletion leaves nothing behind.
    fn take_entry<K, V, KeyType, Q>(
        mapping: &mut Mapping<K, V, KeyType>,
        key: Q,
        delta: &mut StorageDelta,
    ) -> Option<V>
    where
        K: ink::scale::Encode,
        V: ink::storage::traits::Packed,
        KeyType: ink::storage::traits::StorageKey,
        Q: ink::scale::EncodeLike<K> + Copy,
    {
        let value = mapping.get(key)?;
        mapping.remove(key);
        delta.removed(Some(encoded_len(&value)));
        Some(value)
    }

    /// Stores a bounded list at `key`, or removes the entry when the list is empty.
    fn store_list<K, T, KeyType>(
        mapping: &mut Mapping<K, Vec<T>, KeyType>,
        key: K,
        list: &Vec<T>,
        delta: &mut StorageDelta,
    ) where
        K: ink::scale::Encode + ink::scale::EncodeLike + Copy,
        Vec<T>: ink::storage::traits::Packed + ink::scale::EncodeLike,
        KeyType: ink::storage::traits::StorageKey,
    {
        if list.is_empty() {
            remove_entry(mapping, key, delta);
        } else {
            put(mapping, key, list, delta);
        }
    }

    /// Stores `value` at `key`, counting the storage it adds in `delta`.
    fn put<K, V, KeyType, Q>(
        mapping: &mut Mapping<K, V, KeyType>,
        key: Q,
        value: &V,
        delta: &mut StorageDelta,
    ) where
        K: ink::scale::Encode,
        V: ink::storage::traits::Packed + ink::scale::EncodeLike,
        KeyType: ink::storage::traits::StorageKey,
        Q: ink::scale::EncodeLike<K>,
    {
        let old_len = mapping.insert(key, value);
        delta.wrote(old_len, ink::scale::Encode::encoded_size(value));
    }

    /// Removes the value at `key`, counting the storage it frees in `delta`.
    fn remove_entry<K, V, KeyType, Q>(
        mapping: &mut Mapping<K, V, KeyType>,
        key: Q,
        delta: &mut StorageDelta,
    ) where
        K: ink::scale::Encode,
        V: ink::storage::traits::Packed,
        KeyType: ink::storage::traits::StorageKey,
        Q: ink::scale::EncodeLike<K> + Copy,
    {
        delta.removed(mapping.size(key));
        mapping.remove(key);
    }

    /// The length of `value`'s encoding, as storage counts it.
    fn encoded_len<V: ink::scale::Encode>(value: &V) -> u32 {
        u32::try_from(value.encoded_size()).unwrap_or(u32::MAX)
    }

    /// A node id is 1 to `MAX_NODE_ID_LEN` bytes.
    fn validate_node_id(node_id: &str) -> Result<()> {
        if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN {
            return Err(Error::InvalidNodeId);
        }
        Ok(())
    }

    /// A description is at most `MAX_DESCRIPTION_LEN` bytes.
    fn validate_description(description: &str) -> Result<()> {
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(Error::DescriptionTooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod testing;

#[cfg(all(test, feature = "e2e-tests"))]
mod e2e_tests;
