//! Model-based property tests: random sequences of every message, from random callers, with
//! valid and invalid arguments, run against the contract (off-chain engine) and against a plain
//! reference model. After every step the results must agree and the invariants must hold.
//!
//! `PROPTEST_CASES` sets the number of sequences (default below); failing sequences shrink to
//! a minimal one, printed as a list of `Op`s, and are kept in `proptest-regressions/`.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use super::support::{cid, TEST_CONFIG};
use crate::backup_registry::*;
use crate::{MAX_AUTHORITIES, MAX_GRANTS_PER_BACKUP, MAX_REASON_LEN};
use ink::env::test;
use ink::env::DefaultEnvironment as Env;
use ink::primitives::AccountId;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::result::Result;

/// The test limits, with the lowest frequency as the default: snapshots of a backup come
/// every few steps, so sequences reach deep states, while owners who set a higher frequency
/// meet `TooSoon`.
const CONFIG: Config = Config {
    default_frequency: TEST_CONFIG.min_frequency,
    ..TEST_CONFIG
};

/// Cases run when `PROPTEST_CASES` is not set: a few minutes on 2 cores.
const DEFAULT_CASES: u32 = 1024;
/// Longest generated sequence.
const MAX_STEPS: usize = 200;

/// Accounts: 0 is the instantiator (admin), 1 and 2 the first authorities.
const ACTORS: usize = 6;
/// Node ids: three valid, an empty one and an oversized one.
const NODES: [&str; 5] = [
    "n0",
    "n1",
    "n2",
    "",
    "an-oversized-node-id-an-oversized-node-id-an-oversized-node-id-xx",
];
/// CIDs: eight valid ones (`cid(0..8)`), a malformed one, an oversized one, two other
/// spellings of valid ones ([`ALIASES`]), a padded-varint spelling of `cid(2)` and `cid(3)`'s
/// digest cut to 20 bytes (well-formed, but no snapshot block).
const CIDS: usize = 14;

/// Other spellings of `cid(0)` and `cid(1)`, with the index of the CID each names (encoded
/// with Python's base64 and a base58 encoder): the dag-pb CIDv1 of `cid(0)`'s multihash and
/// the CIDv0 of `cid(1)`'s.
const ALIASES: [(&str, usize); 2] = [
    (
        "bafybeiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        0,
    ),
    ("QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh52", 1),
];

/// Recipients: two valid ones and a malformed one (index 2); `None` clears.
const RECIPIENTS: [&str; 3] = [
    "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    "age1fckj4428g9kcnc3rexmaa8hv7r6v00c32a4j6tp6m9l4m66lma5qd4n2jw",
    "age1-not-a-recipient",
];

fn actor(index: usize) -> AccountId {
    AccountId::from([index as u8 + 1; 32])
}

fn node(index: usize) -> String {
    NODES[index].to_string()
}

fn cid_at(index: usize) -> String {
    match index {
        8 => "Qm-not-a-cid".into(),
        9 => format!("b{}", "a".repeat(200)),
        10 | 11 => ALIASES[index - 10].0.into(),
        // `cid(2)` with its version written as the padded varint 0x81 0x00.
        12 => "bqeafkeraaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaba".into(),
        13 => {
            let digest = [[0u8; 12].as_slice(), &3u64.to_be_bytes()].concat();
            super::support::cid_string(&[&[0x01, 0x55, 0x12, 0x14][..], &digest].concat())
        }
        n => cid(n as u64),
    }
}

/// One step of a sequence: a message with its caller and arguments, or time passing.
#[derive(Debug, Clone)]
enum Op {
    CreateBackup {
        caller: usize,
        node: usize,
        long_description: bool,
    },
    AddSnapshot {
        caller: usize,
        owner: usize,
        node: usize,
        cid: usize,
    },
    SetFrequency {
        caller: usize,
        frequency: u32,
    },
    RequestSnapshot {
        caller: usize,
        node: usize,
    },
    Grant {
        caller: usize,
        node: usize,
        grantee: usize,
    },
    Revoke {
        caller: usize,
        node: usize,
        grantee: usize,
    },
    SetRecipient {
        caller: usize,
        node: usize,
        recipient: Option<usize>,
    },
    RestoreFromSnapshot {
        caller: usize,
        cid: usize,
    },
    RestoreLatest {
        caller: usize,
        owner: usize,
        node: usize,
    },
    Cancel {
        caller: usize,
        request: u64,
    },
    Claim {
        caller: usize,
        request: u64,
    },
    Fulfil {
        caller: usize,
        request: u64,
    },
    RenewClaim {
        caller: usize,
        request: u64,
    },
    Fail {
        caller: usize,
        request: u64,
        long_reason: bool,
    },
    DeleteBackup {
        caller: usize,
        node: usize,
    },
    Pin {
        caller: usize,
        cid: usize,
    },
    Unpin {
        caller: usize,
        cid: usize,
    },
    DeleteUserStorage {
        caller: usize,
    },
    AddAuthority {
        caller: usize,
        account: usize,
    },
    RemoveAuthority {
        caller: usize,
        account: usize,
    },
    SetPaused {
        caller: usize,
        paused: bool,
    },
    ProposeAdmin {
        caller: usize,
        account: usize,
    },
    CancelAdminProposal {
        caller: usize,
    },
    ProposeUpgrade {
        caller: usize,
        code: u8,
    },
    CancelUpgrade {
        caller: usize,
    },
    AcceptAdmin {
        caller: usize,
    },
    AdvanceBlocks {
        blocks: u8,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Biased towards arguments that succeed, so that sequences reach deep states (restore
    // requests claimed, fulfilled, failed), with every kind of bad argument still drawn.
    let who = 0..ACTORS;
    let authority = prop_oneof![3 => 1..3usize, 1 => 0..ACTORS];
    let admin = prop_oneof![3 => Just(0usize), 1 => 0..ACTORS];
    let owner = prop_oneof![3 => 3..ACTORS, 1 => 0..ACTORS];
    let node = prop_oneof![6 => 0..3usize, 1 => 3..NODES.len()];
    let cid = prop_oneof![6 => 0..8usize, 1 => 8..CIDS, 1 => 10..12usize];
    let request = prop_oneof![6 => 0u64..4, 1 => 4u64..16, 1 => Just(u64::MAX)];
    // The lowest frequency most often, so that snapshots come without waiting for long.
    let frequency = prop_oneof![
        1 => Just(0u32),
        3 => Just(CONFIG.min_frequency),
        2 => 0u32..1_200,
        1 => Just(u32::MAX),
    ];
    prop_oneof![
        4 => (owner.clone(), node.clone(), any::<bool>()).prop_map(|(caller, node, long)| {
            Op::CreateBackup { caller, node, long_description: long && node == 0 }
        }),
        12 => (authority.clone(), owner.clone(), node.clone(), cid.clone())
            .prop_map(|(caller, owner, node, cid)| Op::AddSnapshot { caller, owner, node, cid }),
        2 => (who.clone(), frequency)
            .prop_map(|(caller, frequency)| Op::SetFrequency { caller, frequency }),
        10 => (owner.clone(), node.clone())
            .prop_map(|(caller, node)| Op::RequestSnapshot { caller, node }),
        3 => (owner.clone(), node.clone(), who.clone())
            .prop_map(|(caller, node, grantee)| Op::Grant { caller, node, grantee }),
        2 => (owner.clone(), node.clone(), who.clone())
            .prop_map(|(caller, node, grantee)| Op::Revoke { caller, node, grantee }),
        2 => (owner.clone(), node.clone(), prop::option::of(0..RECIPIENTS.len()))
            .prop_map(|(caller, node, recipient)| Op::SetRecipient { caller, node, recipient }),
        8 => (owner.clone(), cid.clone()).prop_map(|(caller, cid)| Op::RestoreFromSnapshot { caller, cid }),
        6 => (owner.clone(), owner.clone(), node.clone())
            .prop_map(|(caller, owner, node)| Op::RestoreLatest { caller, owner, node }),
        3 => (owner.clone(), request.clone())
            .prop_map(|(caller, request)| Op::Cancel { caller, request }),
        8 => (authority.clone(), request.clone())
            .prop_map(|(caller, request)| Op::Claim { caller, request }),
        5 => (authority.clone(), request.clone())
            .prop_map(|(caller, request)| Op::Fulfil { caller, request }),
        3 => (authority.clone(), request.clone())
            .prop_map(|(caller, request)| Op::RenewClaim { caller, request }),
        4 => (authority.clone(), request, any::<bool>())
            .prop_map(|(caller, request, long_reason)| Op::Fail { caller, request, long_reason }),
        1 => (owner.clone(), node).prop_map(|(caller, node)| Op::DeleteBackup { caller, node }),
        3 => (owner.clone(), cid.clone()).prop_map(|(caller, cid)| Op::Pin { caller, cid }),
        3 => (owner.clone(), cid).prop_map(|(caller, cid)| Op::Unpin { caller, cid }),
        1 => owner.prop_map(|caller| Op::DeleteUserStorage { caller }),
        3 => (admin.clone(), authority.clone())
            .prop_map(|(caller, account)| Op::AddAuthority { caller, account }),
        1 => (admin.clone(), authority.clone())
            .prop_map(|(caller, account)| Op::RemoveAuthority { caller, account }),
        1 => (who.clone(), prop_oneof![3 => Just(false), 1 => Just(true)])
            .prop_map(|(caller, paused)| Op::SetPaused { caller, paused }),
        1 => (who.clone(), who.clone())
            .prop_map(|(caller, account)| Op::ProposeAdmin { caller, account }),
        1 => admin.clone().prop_map(|caller| Op::CancelAdminProposal { caller }),
        1 => (admin.clone(), 0u8..2)
            .prop_map(|(caller, code)| Op::ProposeUpgrade { caller, code }),
        1 => admin.clone().prop_map(|caller| Op::CancelUpgrade { caller }),
        1 => who.prop_map(|caller| Op::AcceptAdmin { caller }),
        3 => (1u8..40).prop_map(|blocks| Op::AdvanceBlocks { blocks }),
    ]
}

// ----- The reference model -----

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Pending,
    InProgress(AccountId),
    Fulfilled(AccountId),
    Failed(AccountId),
    Cancelled,
}

impl Status {
    /// Position in the lifecycle: a request's rank never decreases.
    fn rank(&self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::InProgress(_) => 1,
            _ => 2,
        }
    }
}

impl From<&RestoreStatus> for Status {
    fn from(status: &RestoreStatus) -> Self {
        match status {
            RestoreStatus::Pending => Status::Pending,
            RestoreStatus::InProgress { authority } => Status::InProgress(*authority),
            RestoreStatus::Fulfilled { authority } => Status::Fulfilled(*authority),
            RestoreStatus::Failed { authority, .. } => Status::Failed(*authority),
            RestoreStatus::Cancelled => Status::Cancelled,
        }
    }
}

#[derive(Debug, Clone)]
struct ModelBackup {
    id: u64,
    /// CIDs kept, oldest first.
    cids: VecDeque<String>,
    /// The kept CIDs the owner pinned.
    pinned: BTreeSet<String>,
    /// The kept CID the open restore request names.
    held: Option<String>,
    /// Protected CIDs retention went past (older than a snapshot it pruned): once released,
    /// they go at once, whatever room retention has.
    behind: BTreeSet<String>,
    /// Block of the latest snapshot.
    latest_at: Option<u32>,
    /// Whether the owner asked for an early snapshot since.
    snapshot_requested: bool,
    grantees: BTreeSet<AccountId>,
    recipient: Option<String>,
    latest_request: Option<u64>,
}

#[derive(Debug, Clone)]
struct ModelRequest {
    owner: AccountId,
    node: String,
    cid: String,
    requester: AccountId,
    status: Status,
    /// Block of the latest claim or renewal.
    updated_at: u32,
    /// Block of the current claim (renewals keep it).
    claimed_at: u32,
    /// Removed from storage: its backup opened a newer request, or was deleted.
    forgotten: bool,
}

/// What the registry should hold, written plainly.
#[derive(Debug, Clone)]
struct Model {
    admin: AccountId,
    pending_admin: Option<AccountId>,
    paused: bool,
    pending_upgrade: Option<PendingUpgrade>,
    authorities: BTreeSet<AccountId>,
    backups: BTreeMap<(AccountId, String), ModelBackup>,
    next_backup_id: u64,
    frequencies: BTreeMap<AccountId, u32>,
    requests: Vec<ModelRequest>,
    /// The current block.
    now: u32,
}

/// The value a message returned, for comparing contract and model.
#[derive(Debug, PartialEq)]
enum Value {
    Unit,
    Request(u64),
    Count(u32),
}

type Outcome = Result<Value, Error>;

fn valid_node(node: &str) -> bool {
    !node.is_empty() && node.len() <= crate::MAX_NODE_ID_LEN
}

fn valid_cid(index: usize) -> bool {
    matches!(index, 0..8 | 10 | 11)
}

/// The content a valid CID string names: the canonical `cid(n)` of its multihash.
fn content(spelling: &str) -> String {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == spelling)
        .map_or_else(|| spelling.to_string(), |(_, n)| cid(*n as u64))
}

impl ModelBackup {
    /// Whether retention must keep `cid` whatever its age: pinned, or held by the open
    /// request.
    fn is_protected(&self, cid: &str) -> bool {
        self.pinned.contains(cid) || self.held.as_deref() == Some(cid)
    }

    /// Retention as the owner understands it: while more than `max_snapshots_per_backup`
    /// unprotected snapshots are kept, the oldest unprotected one goes.
    fn apply_retention(&mut self) {
        let unprotected = |backup: &Self| {
            backup
                .cids
                .iter()
                .filter(|cid| !backup.is_protected(cid))
                .count()
        };
        while unprotected(self) > CONFIG.max_snapshots_per_backup as usize {
            let oldest = self
                .cids
                .iter()
                .position(|cid| !self.is_protected(cid))
                .unwrap();
            self.behind.extend(self.cids.range(..oldest).cloned());
            self.cids.remove(oldest);
        }
    }

    /// Applies retention to `cid` again after a pin or a request let go of it: unless still
    /// protected, it goes at once when retention went past it, else retention applies.
    fn release(&mut self, cid: &str) {
        if self.is_protected(cid) {
            return;
        }
        if self.behind.remove(cid) {
            self.cids.retain(|kept| kept != cid);
        } else {
            self.apply_retention();
        }
    }
}

impl Model {
    fn new() -> Self {
        Self {
            admin: actor(0),
            pending_admin: None,
            paused: false,
            pending_upgrade: None,
            authorities: [actor(1), actor(2)].into(),
            backups: BTreeMap::new(),
            next_backup_id: 0,
            frequencies: BTreeMap::new(),
            requests: Vec::new(),
            now: 0,
        }
    }

    /// The backup frequency of `account`'s backups.
    fn frequency(&self, account: AccountId) -> u32 {
        self.frequencies
            .get(&account)
            .copied()
            .unwrap_or(CONFIG.default_frequency)
    }

    fn owned_count(&self, owner: AccountId) -> u32 {
        self.backups.keys().filter(|(o, _)| *o == owner).count() as u32
    }

    /// The backup keeping a snapshot of the content `cid` names, and the CID it was recorded
    /// under.
    fn cid_location(&self, cid: &str) -> Option<((AccountId, String), String)> {
        self.backups.iter().find_map(|(key, backup)| {
            let kept = backup
                .cids
                .iter()
                .find(|kept| content(kept) == content(cid))?;
            Some((key.clone(), kept.clone()))
        })
    }

    fn may_restore(&self, key: &(AccountId, String), caller: AccountId) -> bool {
        caller == key.0 || self.backups[key].grantees.contains(&caller)
    }

    fn open_request(
        &mut self,
        key: (AccountId, String),
        cid: String,
        caller: AccountId,
    ) -> Outcome {
        if !self.may_restore(&key, caller) {
            return Err(Error::NotBackupOwner);
        }
        if let Some(previous) = self.backups[&key].latest_request {
            if self.requests[previous as usize].status.rank() < 2 {
                return Err(Error::RestoreAlreadyOpen);
            }
            self.requests[previous as usize].forgotten = true;
        }
        let id = self.requests.len() as u64;
        let backup = self.backups.get_mut(&key).unwrap();
        backup.latest_request = Some(id);
        backup.held = Some(cid.clone());
        self.requests.push(ModelRequest {
            owner: key.0,
            node: key.1,
            cid,
            requester: caller,
            status: Status::Pending,
            updated_at: self.now,
            claimed_at: self.now,
            forgotten: false,
        });
        Ok(Value::Request(id))
    }

    /// The request if its status passes `expected`, else the error the contract gives.
    fn request_in(&self, id: u64, expected: impl FnOnce(&Status) -> bool) -> Result<usize, Error> {
        let request = self
            .requests
            .get(id as usize)
            .filter(|request| !request.forgotten)
            .ok_or(Error::RestoreRequestNotFound)?;
        if expected(&request.status) {
            return Ok(id as usize);
        }
        Err(match request.status {
            Status::Pending => Error::RestoreRequestNotClaimed,
            Status::InProgress(_) => Error::RestoreRequestAlreadyClaimed,
            _ => Error::RestoreRequestAlreadyClosed,
        })
    }

    /// Closes request `index` with `status` and releases its snapshot to retention.
    fn close(&mut self, index: usize, status: Status) {
        let request = &mut self.requests[index];
        request.status = status;
        let key = (request.owner, request.node.clone());
        if let Some(backup) = self.backups.get_mut(&key) {
            if let Some(held) = backup.held.take() {
                backup.release(&held);
            }
        }
    }

    /// Removes a backup; with the owner's last backup goes its frequency setting.
    fn remove_backup(&mut self, key: &(AccountId, String)) {
        let backup = self.backups.remove(key).unwrap();
        if self.owned_count(key.0) == 0 {
            self.frequencies.remove(&key.0);
        }
        if let Some(id) = backup.latest_request {
            let request = &mut self.requests[id as usize];
            if request.status.rank() < 2 {
                request.status = Status::Cancelled;
            }
            request.forgotten = true;
        }
    }

    /// Whether request `index` is in progress and its claim is `claim_timeout` blocks old.
    fn claim_lapsed(&self, index: usize) -> bool {
        let request = &self.requests[index];
        matches!(request.status, Status::InProgress(_))
            && self.now - request.updated_at >= CONFIG.claim_timeout
    }

    fn claimed(&self, caller: AccountId, id: u64) -> Result<usize, Error> {
        if self.paused {
            return Err(Error::Paused);
        }
        if !self.authorities.contains(&caller) {
            return Err(Error::NotAuthorized);
        }
        let index = self.request_in(id, |s| matches!(s, Status::InProgress(_)))?;
        if self.requests[index].status != Status::InProgress(caller) {
            return Err(Error::NotClaimant);
        }
        Ok(index)
    }

    /// Applies `op` as the contract should, returning its outcome.
    fn apply(&mut self, op: &Op) -> Outcome {
        let paused = self.paused;
        let not_paused = || if paused { Err(Error::Paused) } else { Ok(()) };
        match *op {
            Op::CreateBackup {
                caller,
                node: n,
                long_description,
            } => {
                not_paused()?;
                let (owner, node) = (actor(caller), node(n));
                if !valid_node(&node) {
                    return Err(Error::InvalidNodeId);
                }
                if long_description {
                    return Err(Error::DescriptionTooLong);
                }
                if self.backups.contains_key(&(owner, node.clone())) {
                    return Err(Error::BackupAlreadyExists);
                }
                self.insert_backup(owner, node)?;
                Ok(Value::Unit)
            }
            Op::AddSnapshot {
                caller,
                owner,
                node: n,
                cid: c,
            } => {
                not_paused()?;
                if !self.authorities.contains(&actor(caller)) {
                    return Err(Error::NotAuthorized);
                }
                let (key, cid) = ((actor(owner), node(n)), cid_at(c));
                if !valid_cid(c) {
                    return Err(Error::InvalidCid);
                }
                if self.cid_location(&cid).is_some() {
                    return Err(Error::CidAlreadyRecorded);
                }
                // Only into a backup its owner created: no backup without consent.
                let frequency = self.frequency(key.0);
                let now = self.now;
                let backup = self.backups.get_mut(&key).ok_or(Error::BackupNotFound)?;
                // No sooner than the owner's frequency, unless the owner asked for one.
                let too_soon = backup
                    .latest_at
                    .is_some_and(|latest_at| now - latest_at < frequency);
                if too_soon && !backup.snapshot_requested {
                    return Err(Error::TooSoon);
                }
                backup.snapshot_requested = false;
                backup.latest_at = Some(now);
                backup.cids.push_back(cid);
                backup.apply_retention();
                Ok(Value::Unit)
            }
            Op::RequestSnapshot { caller, node: n } => {
                not_paused()?;
                let key = (actor(caller), node(n));
                let backup = self.backups.get_mut(&key).ok_or(Error::BackupNotFound)?;
                backup.snapshot_requested = true;
                Ok(Value::Unit)
            }
            Op::SetFrequency { caller, frequency } => {
                not_paused()?;
                if !(CONFIG.min_frequency..=CONFIG.max_frequency).contains(&frequency) {
                    return Err(Error::InvalidFrequency);
                }
                self.frequencies.insert(actor(caller), frequency);
                Ok(Value::Unit)
            }
            Op::Grant {
                caller,
                node: n,
                grantee,
            } => {
                not_paused()?;
                let (key, grantee) = ((actor(caller), node(n)), actor(grantee));
                let backup = self.backups.get_mut(&key).ok_or(Error::BackupNotFound)?;
                if grantee == key.0 || backup.grantees.contains(&grantee) {
                    return Err(Error::AccessAlreadyGranted);
                }
                if backup.grantees.len() as u32 >= MAX_GRANTS_PER_BACKUP {
                    return Err(Error::TooManyGrants);
                }
                backup.grantees.insert(grantee);
                Ok(Value::Unit)
            }
            Op::Revoke {
                caller,
                node: n,
                grantee,
            } => {
                // An exit: allowed while paused.
                let key = (actor(caller), node(n));
                let backup = self.backups.get_mut(&key).ok_or(Error::BackupNotFound)?;
                if !backup.grantees.remove(&actor(grantee)) {
                    return Err(Error::AccessNotFound);
                }
                // The revoked grantee's open request goes with its rights.
                if let Some(id) = backup.latest_request {
                    let request = &self.requests[id as usize];
                    if request.status.rank() < 2 && request.requester == actor(grantee) {
                        self.close(id as usize, Status::Cancelled);
                    }
                }
                Ok(Value::Unit)
            }
            Op::SetRecipient {
                caller,
                node: n,
                recipient,
            } => {
                // Clearing is an exit: allowed while paused.
                if recipient.is_some() {
                    not_paused()?;
                }
                if recipient == Some(2) {
                    return Err(Error::InvalidRecipient);
                }
                let key = (actor(caller), node(n));
                let backup = self.backups.get_mut(&key).ok_or(Error::BackupNotFound)?;
                backup.recipient = recipient.map(|r| RECIPIENTS[r].to_string());
                Ok(Value::Unit)
            }
            Op::RestoreFromSnapshot { caller, cid: c } => {
                not_paused()?;
                if !valid_cid(c) {
                    return Err(Error::InvalidCid);
                }
                let (key, recorded) = self
                    .cid_location(&cid_at(c))
                    .ok_or(Error::SnapshotNotFound)?;
                self.open_request(key, recorded, actor(caller))
            }
            Op::RestoreLatest {
                caller,
                owner,
                node: n,
            } => {
                not_paused()?;
                let key = (actor(owner), node(n));
                if !self.backups.contains_key(&key) {
                    return Err(Error::BackupNotFound);
                }
                if !self.may_restore(&key, actor(caller)) {
                    return Err(Error::NotBackupOwner);
                }
                let latest = self.backups[&key].cids.back().cloned();
                let cid = latest.ok_or(Error::SnapshotNotFound)?;
                self.open_request(key, cid, actor(caller))
            }
            Op::Cancel { caller, request } => {
                let lapsed =
                    (request as usize) < self.requests.len() && self.claim_lapsed(request as usize);
                let index = self.request_in(request, |s| match s {
                    Status::Pending => true,
                    Status::InProgress(authority) => {
                        !self.authorities.contains(authority) || lapsed
                    }
                    _ => false,
                })?;
                let request = &self.requests[index];
                if request.requester != actor(caller) && request.owner != actor(caller) {
                    return Err(Error::NotRequester);
                }
                self.close(index, Status::Cancelled);
                Ok(Value::Unit)
            }
            Op::Claim { caller, request } => {
                not_paused()?;
                if !self.authorities.contains(&actor(caller)) {
                    return Err(Error::NotAuthorized);
                }
                let known = (request as usize) < self.requests.len();
                let lapsed = known && self.claim_lapsed(request as usize);
                let age = if known {
                    self.now - self.requests[request as usize].updated_at
                } else {
                    0
                };
                let index = self.request_in(request, |s| match s {
                    Status::Pending => true,
                    // Passes on: a removed claimant's at once, a lapsed one's to any other
                    // authority, and to the lapsed claimant itself one timeout later.
                    Status::InProgress(claimant) => {
                        !self.authorities.contains(claimant)
                            || lapsed
                                && (*claimant != actor(caller) || age >= 2 * CONFIG.claim_timeout)
                    }
                    _ => false,
                })?;
                let request = &mut self.requests[index];
                request.status = Status::InProgress(actor(caller));
                request.updated_at = self.now;
                request.claimed_at = self.now;
                Ok(Value::Unit)
            }
            Op::RenewClaim { caller, request } => {
                let index = self.claimed(actor(caller), request)?;
                let held_until = self.now + CONFIG.claim_timeout;
                if self.claim_lapsed(index)
                    || held_until - self.requests[index].claimed_at > crate::MAX_CLAIM_TIMEOUT
                {
                    return Err(Error::ClaimNotRenewable);
                }
                self.requests[index].updated_at = self.now;
                Ok(Value::Unit)
            }
            Op::Fulfil { caller, request } => {
                let index = self.claimed(actor(caller), request)?;
                self.close(index, Status::Fulfilled(actor(caller)));
                Ok(Value::Unit)
            }
            Op::Fail {
                caller,
                request,
                long_reason,
            } => {
                if long_reason {
                    return Err(Error::ReasonTooLong);
                }
                let index = self.claimed(actor(caller), request)?;
                self.close(index, Status::Failed(actor(caller)));
                Ok(Value::Unit)
            }
            Op::Pin { caller, cid: c } | Op::Unpin { caller, cid: c } => {
                // Unpinning is an exit: allowed while paused.
                if matches!(op, Op::Pin { .. }) {
                    not_paused()?;
                }
                if !valid_cid(c) {
                    return Err(Error::InvalidCid);
                }
                let (key, recorded) = self
                    .cid_location(&cid_at(c))
                    .ok_or(Error::SnapshotNotFound)?;
                if key.0 != actor(caller) {
                    return Err(Error::NotBackupOwner);
                }
                let backup = self.backups.get_mut(&key).unwrap();
                if matches!(op, Op::Pin { .. }) {
                    if backup.pinned.contains(&recorded) {
                        return Err(Error::SnapshotAlreadyPinned);
                    }
                    if backup.pinned.len() as u32 >= crate::MAX_PINS_PER_BACKUP {
                        return Err(Error::TooManyPins);
                    }
                    backup.pinned.insert(recorded);
                } else {
                    if !backup.pinned.remove(&recorded) {
                        return Err(Error::SnapshotNotPinned);
                    }
                    backup.release(&recorded);
                }
                Ok(Value::Unit)
            }
            Op::DeleteBackup { caller, node: n } => {
                let key = (actor(caller), node(n));
                if !self.backups.contains_key(&key) {
                    return Err(Error::BackupNotFound);
                }
                self.remove_backup(&key);
                Ok(Value::Unit)
            }
            Op::DeleteUserStorage { caller } => {
                let owner = actor(caller);
                // The newest `MAX_BACKUPS_DELETED_PER_CALL` go; the count left is returned.
                let mut keys: Vec<_> = self
                    .backups
                    .iter()
                    .filter(|((o, _), _)| *o == owner)
                    .map(|(key, backup)| (backup.id, key.clone()))
                    .collect();
                keys.sort();
                let keep = keys
                    .len()
                    .saturating_sub(crate::MAX_BACKUPS_DELETED_PER_CALL as usize);
                for (_, key) in &keys[keep..] {
                    self.remove_backup(key);
                }
                // All of the account's storage: its frequency goes too, backups or not.
                if keep == 0 {
                    self.frequencies.remove(&owner);
                }
                Ok(Value::Count(keep as u32))
            }
            Op::AddAuthority { caller, account } => {
                self.ensure_admin(caller)?;
                if self.authorities.contains(&actor(account)) {
                    return Err(Error::AuthorityAlreadyExists);
                }
                if self.authorities.len() as u32 >= MAX_AUTHORITIES {
                    return Err(Error::TooManyAuthorities);
                }
                self.authorities.insert(actor(account));
                Ok(Value::Unit)
            }
            Op::RemoveAuthority { caller, account } => {
                self.ensure_admin(caller)?;
                if !self.authorities.remove(&actor(account)) {
                    return Err(Error::AuthorityNotFound);
                }
                Ok(Value::Unit)
            }
            Op::SetPaused { caller, paused } => {
                self.ensure_admin(caller)?;
                self.paused = paused;
                Ok(Value::Unit)
            }
            Op::ProposeAdmin { caller, account } => {
                self.ensure_admin(caller)?;
                self.pending_admin = Some(actor(account));
                Ok(Value::Unit)
            }
            Op::CancelAdminProposal { caller } => {
                self.ensure_admin(caller)?;
                self.pending_admin.take().ok_or(Error::NotPendingAdmin)?;
                Ok(Value::Unit)
            }
            Op::ProposeUpgrade { caller, code } => {
                self.ensure_admin(caller)?;
                self.pending_upgrade = Some(PendingUpgrade {
                    code_hash: [code; 32].into(),
                    applies_at: self.now + CONFIG.upgrade_delay,
                });
                Ok(Value::Unit)
            }
            Op::CancelUpgrade { caller } => {
                self.ensure_admin(caller)?;
                self.pending_upgrade
                    .take()
                    .ok_or(Error::NoUpgradeProposed)?;
                Ok(Value::Unit)
            }
            Op::AcceptAdmin { caller } => {
                if self.pending_admin != Some(actor(caller)) {
                    return Err(Error::NotPendingAdmin);
                }
                self.admin = actor(caller);
                self.pending_admin = None;
                Ok(Value::Unit)
            }
            Op::AdvanceBlocks { blocks } => {
                self.now += u32::from(blocks);
                Ok(Value::Unit)
            }
        }
    }

    fn ensure_admin(&self, caller: usize) -> Result<(), Error> {
        if actor(caller) != self.admin {
            return Err(Error::NotAdmin);
        }
        Ok(())
    }

    fn insert_backup(&mut self, owner: AccountId, node: String) -> Result<(), Error> {
        if self.owned_count(owner) >= CONFIG.max_backups_per_account {
            return Err(Error::TooManyBackups);
        }
        let id = self.next_backup_id;
        self.next_backup_id += 1;
        let backup = ModelBackup {
            id,
            cids: VecDeque::new(),
            pinned: BTreeSet::new(),
            held: None,
            behind: BTreeSet::new(),
            latest_at: None,
            snapshot_requested: false,
            grantees: BTreeSet::new(),
            recipient: None,
            latest_request: None,
        };
        self.backups.insert((owner, node), backup);
        Ok(())
    }
}

// ----- Running a step on the contract -----

fn run_on_contract(registry: &mut BackupRegistry, op: &Op) -> Outcome {
    let unit = |result: Result<(), Error>| result.map(|()| Value::Unit);
    let set_caller = |caller: usize| test::set_caller::<Env>(actor(caller));
    match *op {
        Op::CreateBackup {
            caller,
            node: n,
            long_description,
        } => {
            set_caller(caller);
            let description = if long_description {
                "d".repeat(257)
            } else {
                "d".into()
            };
            unit(registry.create_backup(node(n), description))
        }
        Op::AddSnapshot {
            caller,
            owner,
            node: n,
            cid,
        } => {
            set_caller(caller);
            unit(registry.add_snapshot(node(n), cid_at(cid), String::new(), 0, actor(owner), 1))
        }
        Op::SetFrequency { caller, frequency } => {
            set_caller(caller);
            unit(registry.set_backup_offchain_worker_frequency(frequency))
        }
        Op::RequestSnapshot { caller, node: n } => {
            set_caller(caller);
            unit(registry.request_snapshot(node(n)))
        }
        Op::Grant {
            caller,
            node: n,
            grantee,
        } => {
            set_caller(caller);
            unit(registry.grant_access(node(n), actor(grantee)))
        }
        Op::Revoke {
            caller,
            node: n,
            grantee,
        } => {
            set_caller(caller);
            unit(registry.revoke_access(node(n), actor(grantee)))
        }
        Op::SetRecipient {
            caller,
            node: n,
            recipient,
        } => {
            set_caller(caller);
            let recipient = recipient.map(|r| RECIPIENTS[r].to_string());
            unit(registry.set_backup_recipient(node(n), recipient))
        }
        Op::RestoreFromSnapshot { caller, cid } => {
            set_caller(caller);
            registry
                .restore_from_snapshot(cid_at(cid))
                .map(Value::Request)
        }
        Op::RestoreLatest {
            caller,
            owner,
            node: n,
        } => {
            set_caller(caller);
            registry
                .restore_latest_snapshot(actor(owner), node(n))
                .map(Value::Request)
        }
        Op::Cancel { caller, request } => {
            set_caller(caller);
            unit(registry.cancel_restore_request(request))
        }
        Op::Claim { caller, request } => {
            set_caller(caller);
            unit(registry.claim_restore_request(request))
        }
        Op::Fulfil { caller, request } => {
            set_caller(caller);
            unit(registry.fulfil_restore_request(request))
        }
        Op::RenewClaim { caller, request } => {
            set_caller(caller);
            unit(registry.renew_claim(request))
        }
        Op::Fail {
            caller,
            request,
            long_reason,
        } => {
            set_caller(caller);
            let reason = if long_reason {
                "r".repeat(MAX_REASON_LEN + 1)
            } else {
                "failed".into()
            };
            unit(registry.fail_restore_request(request, reason))
        }
        Op::DeleteBackup { caller, node: n } => {
            set_caller(caller);
            unit(registry.delete_backup(node(n)))
        }
        Op::Pin { caller, cid } => {
            set_caller(caller);
            unit(registry.pin_snapshot(cid_at(cid)))
        }
        Op::Unpin { caller, cid } => {
            set_caller(caller);
            unit(registry.unpin_snapshot(cid_at(cid)))
        }
        Op::DeleteUserStorage { caller } => {
            set_caller(caller);
            registry.delete_user_storage().map(Value::Count)
        }
        Op::AddAuthority { caller, account } => {
            set_caller(caller);
            unit(registry.add_authority(actor(account)))
        }
        Op::RemoveAuthority { caller, account } => {
            set_caller(caller);
            unit(registry.remove_authority(actor(account)))
        }
        Op::SetPaused { caller, paused } => {
            set_caller(caller);
            unit(registry.set_paused(paused))
        }
        Op::ProposeAdmin { caller, account } => {
            set_caller(caller);
            unit(registry.propose_admin(actor(account)))
        }
        Op::CancelAdminProposal { caller } => {
            set_caller(caller);
            unit(registry.cancel_admin_proposal())
        }
        Op::ProposeUpgrade { caller, code } => {
            set_caller(caller);
            unit(registry.propose_upgrade([code; 32].into()))
        }
        Op::CancelUpgrade { caller } => {
            set_caller(caller);
            unit(registry.cancel_upgrade())
        }
        Op::AcceptAdmin { caller } => {
            set_caller(caller);
            unit(registry.accept_admin())
        }
        Op::AdvanceBlocks { blocks } => {
            for _ in 0..blocks {
                test::advance_block::<Env>();
            }
            Ok(Value::Unit)
        }
    }
}

// ----- Observing the contract through its queries -----

/// Everything the queries show, in a comparable form.
#[derive(Debug, PartialEq)]
struct Observation {
    admin: AccountId,
    pending_admin: Option<AccountId>,
    paused: bool,
    pending_upgrade: Option<PendingUpgrade>,
    authorities: Vec<bool>,
    backups: Vec<Option<Backup>>,
    recipients: Vec<Option<String>>,
    snapshots: Vec<Vec<Snapshot>>,
    pinned: Vec<Vec<Snapshot>>,
    by_cid: Vec<Option<(Backup, Snapshot)>>,
    frequencies: Vec<u32>,
    requests: Vec<Option<RestoreRequest>>,
    open: BTreeSet<u64>,
}

fn observe(registry: &BackupRegistry, request_ids: u64) -> Observation {
    let pairs =
        (0..ACTORS).flat_map(|owner| (0..NODES.len()).map(move |n| (actor(owner), node(n))));
    let open_count = registry.pending_restore_request_count();
    let open = (0..open_count)
        .step_by(crate::MAX_PAGE_SIZE as usize)
        .flat_map(|offset| registry.pending_restore_requests(offset, crate::MAX_PAGE_SIZE))
        .map(|(id, _)| id)
        .collect();
    Observation {
        admin: registry.admin(),
        pending_admin: registry.pending_admin(),
        paused: registry.is_paused(),
        pending_upgrade: registry.pending_upgrade(),
        authorities: (0..ACTORS)
            .map(|a| registry.is_authority(actor(a)))
            .collect(),
        backups: pairs.clone().map(|(o, n)| registry.backup(o, n)).collect(),
        recipients: pairs
            .clone()
            .map(|(o, n)| registry.backup_recipient(o, n))
            .collect(),
        snapshots: pairs
            .clone()
            .map(|(o, n)| registry.snapshots(o, n, 0, u32::MAX).unwrap_or_default())
            .collect(),
        pinned: pairs
            .map(|(o, n)| registry.pinned_snapshots(o, n))
            .collect(),
        by_cid: (0..CIDS)
            .map(|c| registry.snapshot_by_cid(cid_at(c)))
            .collect(),
        frequencies: (0..ACTORS)
            .map(|a| registry.backup_frequency(actor(a)))
            .collect(),
        requests: (0..request_ids + 2)
            .map(|id| registry.restore_request(id))
            .collect(),
        open,
    }
}

/// Checks that the contract's observable state is the model's and that the invariants hold.
fn check_state(
    registry: &BackupRegistry,
    model: &Model,
    seen: &Observation,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(seen.admin, model.admin);
    prop_assert_eq!(seen.pending_admin, model.pending_admin);
    prop_assert_eq!(seen.paused, model.paused);
    prop_assert_eq!(seen.pending_upgrade, model.pending_upgrade);
    for a in 0..ACTORS {
        prop_assert_eq!(seen.authorities[a], model.authorities.contains(&actor(a)));
        let frequency = model.frequencies.get(&actor(a)).copied();
        prop_assert_eq!(
            seen.frequencies[a],
            frequency.unwrap_or(CONFIG.default_frequency)
        );
        // The owner's list holds exactly the model's backups, each once.
        let listed: BTreeSet<String> = registry
            .backups_of(actor(a))
            .into_iter()
            .map(|b| b.node_id)
            .collect();
        let expected: BTreeSet<String> = model
            .backups
            .keys()
            .filter(|(o, _)| *o == actor(a))
            .map(|(_, n)| n.clone())
            .collect();
        prop_assert_eq!(listed, expected);
    }
    let pairs =
        (0..ACTORS).flat_map(|owner| (0..NODES.len()).map(move |n| (actor(owner), node(n))));
    for (index, key) in pairs.enumerate() {
        let model_backup = model.backups.get(&key);
        let backup = &seen.backups[index];
        prop_assert_eq!(
            seen.recipients[index].as_ref(),
            model_backup.and_then(|b| b.recipient.as_ref()),
            "recipient of {:?}",
            key
        );
        prop_assert_eq!(backup.is_some(), model_backup.is_some(), "backup {:?}", key);
        let kept: Vec<String> = seen.snapshots[index]
            .iter()
            .map(|s| s.cid.clone())
            .collect();
        let Some(model_backup) = model_backup else {
            prop_assert!(kept.is_empty(), "snapshots without their backup");
            continue;
        };
        let backup = backup.as_ref().unwrap();
        prop_assert_eq!(registry.backup_by_id(model_backup.id), Some(backup.clone()));
        prop_assert_eq!(&kept, &Vec::from(model_backup.cids.clone()));
        let pinned: Vec<String> = seen.pinned[index].iter().map(|s| s.cid.clone()).collect();
        let model_pinned: Vec<String> = model_backup
            .cids
            .iter()
            .filter(|cid| model_backup.pinned.contains(*cid))
            .cloned()
            .collect();
        // Retention bounds the snapshots neither pinned nor held; pins add at most
        // `MAX_PINS_PER_BACKUP`, the open request's snapshot one more.
        let held_unpinned = backup
            .held
            .is_some_and(|seq| backup.pins.binary_search(&seq).is_err());
        let unprotected = kept.len() - pinned.len() - usize::from(held_unpinned);
        prop_assert!(unprotected as u32 <= CONFIG.max_snapshots_per_backup);
        let held_cid = backup
            .held
            .and_then(|seq| backup.kept_seqs().position(|kept| kept == seq))
            .map(|position| kept[position].clone());
        prop_assert_eq!(
            held_cid,
            model_backup.held.clone(),
            "held snapshot of {:?}",
            key
        );
        prop_assert!(pinned.len() as u32 <= crate::MAX_PINS_PER_BACKUP);
        prop_assert_eq!(pinned, model_pinned);
        prop_assert_eq!(backup.snapshot_count() as usize, kept.len());
        prop_assert_eq!(backup.latest_request, model_backup.latest_request);
        prop_assert_eq!(backup.snapshot_requested, model_backup.snapshot_requested);
        let grantees = registry.grantees(key.0, key.1.clone());
        prop_assert_eq!(grantees.len(), model_backup.grantees.len());
        prop_assert_eq!(
            grantees.into_iter().collect::<BTreeSet<_>>(),
            model_backup.grantees.clone()
        );
    }
    // The CID index points at an existing snapshot of the right backup, and back.
    for c in 0..CIDS {
        let cid = cid_at(c);
        match (&seen.by_cid[c], model.cid_location(&cid)) {
            (None, None) => {}
            (Some((backup, snapshot)), Some(((owner, node), recorded))) => {
                prop_assert_eq!((backup.owner, &backup.node_id), (owner, &node));
                prop_assert_eq!(&snapshot.cid, &recorded);
            }
            (found, expected) => prop_assert!(false, "cid {}: {:?} vs {:?}", cid, found, expected),
        }
    }
    // Requests: ids from a counter, statuses as the model says, the open list exact.
    // Request storage is bounded by the backups: one request each at most.
    let stored = seen.requests.iter().flatten().count();
    prop_assert!(stored <= model.backups.len(), "{} requests stored", stored);
    for (id, request) in seen.requests.iter().enumerate() {
        match (request, model.requests.get(id)) {
            (None, None) => {}
            (None, Some(expected)) if expected.forgotten => {}
            (Some(request), Some(expected)) => {
                prop_assert_eq!(&request.cid, &expected.cid);
                prop_assert_eq!(request.requester, expected.requester);
                prop_assert_eq!(Status::from(&request.status), expected.status.clone());
            }
            (found, expected) => {
                prop_assert!(false, "request {}: {:?} vs {:?}", id, found, expected)
            }
        }
    }
    let open: BTreeSet<u64> = model
        .requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status.rank() < 2)
        .map(|(id, _)| id as u64)
        .collect();
    prop_assert_eq!(&seen.open, &open);
    Ok(())
}

/// The rules an owner relies on, checked on what the contract shows before and after `op`:
/// - consent: a backup exists only if its owner opted it in and has not deleted it since
///   (so a deletion is final until the owner opts in again);
/// - nothing lost: a backup that lives through a step keeps its snapshots, except the one
///   retention prunes when `add_snapshot` records a new one, or when an unpinning or a closing
///   request lets one count again; a pinned snapshot is never pruned, nor the one an open
///   restore request names while it stays open.
fn check_owner_rules(
    op: &Op,
    opted_in: &BTreeSet<(AccountId, String)>,
    before: &Observation,
    after: &Observation,
) -> Result<(), TestCaseError> {
    let pairs =
        (0..ACTORS).flat_map(|owner| (0..NODES.len()).map(move |n| (actor(owner), node(n))));
    for (index, key) in pairs.enumerate() {
        if after.backups[index].is_some() {
            prop_assert!(opted_in.contains(&key), "{:?} exists without consent", key);
        }
        if before.backups[index].is_none() || after.backups[index].is_none() {
            continue;
        }
        let (kept_before, kept_after) = (&before.snapshots[index], &after.snapshots[index]);
        let lost: Vec<&Snapshot> = kept_before
            .iter()
            .filter(|snapshot| !kept_after.contains(snapshot))
            .collect();
        let prunes = matches!(
            op,
            Op::AddSnapshot { .. }
                | Op::Unpin { .. }
                | Op::Cancel { .. }
                | Op::Fulfil { .. }
                | Op::Fail { .. }
                | Op::Revoke { .. }
        );
        prop_assert!(
            lost.is_empty() || (prunes && lost.len() == 1),
            "{:?}: {} lost by {:?}",
            key,
            lost.len(),
            op
        );
        for snapshot in lost {
            // The snapshot an unpinning released is no longer pinned.
            let unpinned_now = matches!(*op, Op::Unpin { cid, .. } if content(&cid_at(cid)) == content(&snapshot.cid));
            prop_assert!(
                unpinned_now || !before.pinned[index].contains(snapshot),
                "{:?}: a pinned snapshot was pruned by {:?}",
                key,
                op
            );
            let held_by_open_request = after
                .requests
                .iter()
                .flatten()
                .any(|request| request.status.is_open() && request.cid == snapshot.cid);
            prop_assert!(
                !held_by_open_request,
                "{:?}: {:?} pruned the snapshot an open request names",
                key,
                op
            );
        }
    }
    Ok(())
}

/// Runs one sequence against a fresh contract and a fresh model.
fn run_sequence(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut outcome = Ok(());
    test::run_test::<Env, _>(|_| {
        outcome = run_sequence_in_env(ops);
        Ok(())
    })
    .expect("off-chain environment");
    outcome
}

/// Whether `op`, when it succeeds, pays its writes from a backup's reserve: every call on a
/// backup but its creation and deletion.
fn settles_with_reserve(op: &Op) -> bool {
    matches!(
        op,
        Op::AddSnapshot { .. }
            | Op::RequestSnapshot { .. }
            | Op::Grant { .. }
            | Op::Revoke { .. }
            | Op::SetRecipient { .. }
            | Op::RestoreFromSnapshot { .. }
            | Op::RestoreLatest { .. }
            | Op::Cancel { .. }
            | Op::Claim { .. }
            | Op::Fulfil { .. }
            | Op::RenewClaim { .. }
            | Op::Fail { .. }
            | Op::Pin { .. }
            | Op::Unpin { .. }
    )
}

fn run_sequence_in_env(ops: &[Op]) -> Result<(), TestCaseError> {
    test::set_caller::<Env>(actor(0));
    let mut registry = BackupRegistry::new(vec![actor(1), actor(2)], CONFIG).expect("valid config");
    let mut model = Model::new();
    let contract = test::callee::<Env>();
    let mut seen = observe(&registry, 0);
    // The owner-consent rule, kept apart from the model: the backups whose owner's latest
    // successful `create_backup` came after their latest deletion.
    let mut opted_in = BTreeSet::new();
    for (step, op) in ops.iter().enumerate() {
        let cells_before = test::count_used_storage_cells::<Env>(&contract).unwrap_or(0);
        let (_, writes_before) = test::get_contract_storage_rw::<Env>(&contract);
        let events_before = test::recorded_events().count();
        let expected = model.apply(op);
        let actual = run_on_contract(&mut registry, op);
        prop_assert_eq!(&actual, &expected, "step {}: {:?}", step, op);
        let now = observe(&registry, model.requests.len() as u64);
        if actual.is_err() {
            // A failed call changed nothing at all.
            let (_, writes_after) = test::get_contract_storage_rw::<Env>(&contract);
            prop_assert_eq!(
                writes_after,
                writes_before,
                "step {}: a failed call wrote",
                step
            );
            prop_assert_eq!(test::recorded_events().count(), events_before);
            prop_assert_eq!(&now, &seen, "step {}: a failed call changed state", step);
        }
        // A request's status only moves forward.
        for (before, after) in seen.requests.iter().zip(&now.requests) {
            if let (Some(before), Some(after)) = (before, after) {
                prop_assert!(
                    Status::from(&before.status).rank() <= Status::from(&after.status).rank()
                );
            }
        }
        check_state(&registry, &model, &now)?;
        if actual.is_ok() {
            match *op {
                Op::CreateBackup {
                    caller, node: n, ..
                } => {
                    opted_in.insert((actor(caller), node(n)));
                }
                Op::DeleteBackup { caller, node: n } => {
                    opted_in.remove(&(actor(caller), node(n)));
                }
                // Every backup goes: `CONFIG` allows fewer than one call deletes.
                Op::DeleteUserStorage { caller } => opted_in.retain(|(o, _)| *o != actor(caller)),
                _ => {}
            }
        }
        check_owner_rules(op, &opted_in, &seen, &now)?;
        // Owners pay for what they keep: a call on a backup settles its writes with the
        // backup's reserve, so the registry's cell count (and so its callers' deposits) does
        // not move.
        if actual.is_ok() && settles_with_reserve(op) {
            prop_assert_eq!(
                test::count_used_storage_cells::<Env>(&contract).unwrap_or(0),
                cells_before,
                "step {}: {:?} moved the cell count",
                step,
                op
            );
        }
        if let Op::DeleteUserStorage { caller } = *op {
            if actual.is_ok() {
                prop_assert!(registry.backups_of(actor(caller)).is_empty());
            }
        }
        seen = now;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

impl Op {
    /// The message's name, for counting outcomes.
    fn kind(&self) -> String {
        let debug = format!("{self:?}");
        debug
            .split([' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// Counted apart: a cancelled request that was claimed (by a removed authority, or lapsed).
const STALE_CLAIM_CANCELLED: &str = "Cancel (a claim no authority serves)";
/// Counted apart: a request claimed again after its claim lapsed.
const LAPSED_CLAIM_TAKEN: &str = "Claim (a lapsed claim taken over)";

/// The generator is worth something only if it reaches every message's success path: count,
/// over a fixed set of sequences, the kinds of step that succeed (by the model, which the
/// property keeps equal to the contract).
#[test]
fn generated_sequences_reach_every_success_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut succeeded = BTreeMap::<String, u32>::new();
    let mut kinds = BTreeSet::new();
    for _ in 0..256 {
        let ops = prop::collection::vec(op_strategy(), MAX_STEPS)
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let mut model = Model::new();
        for op in &ops {
            kinds.insert(op.kind());
            let in_progress = |request: u64| {
                model
                    .requests
                    .get(request as usize)
                    .is_some_and(|r| matches!(r.status, Status::InProgress(_)))
            };
            let special = match *op {
                Op::Cancel { request, .. } if in_progress(request) => Some(STALE_CLAIM_CANCELLED),
                Op::Claim { request, .. } if in_progress(request) => Some(LAPSED_CLAIM_TAKEN),
                _ => None,
            };
            if model.apply(op).is_ok() {
                *succeeded.entry(op.kind()).or_default() += 1;
                if let Some(special) = special {
                    *succeeded.entry(special.into()).or_default() += 1;
                }
            }
        }
    }
    println!("successful steps by message over 256 sequences: {succeeded:?}");
    let never: Vec<_> = kinds
        .iter()
        .filter(|kind| !succeeded.contains_key(*kind))
        .collect();
    assert!(never.is_empty(), "never succeeded: {never:?}");
    assert!(
        succeeded.contains_key(STALE_CLAIM_CANCELLED),
        "no stale claim was ever cancelled"
    );
    assert!(
        succeeded.contains_key(LAPSED_CLAIM_TAKEN),
        "no lapsed claim was ever taken over"
    );
    assert_eq!(kinds.len(), 27, "every kind of step is generated");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/props.txt"),
        )),
        ..ProptestConfig::default()
    })]

    /// Random message sequences keep the contract equal to the model and every invariant true.
    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op_strategy(), 1..MAX_STEPS)) {
        run_sequence(&ops)?;
    }
}

/// A pinned snapshot that retention's window passed, unpinned while the window has room
/// (another snapshot in it was pinned since): it is older than the window, so it goes.
#[test]
fn unpinning_behind_the_window_prunes_it_even_with_room() {
    let (owner, authority) = (3, 1);
    // Each snapshot once the owner's (default) frequency has passed.
    let add = |cid| {
        [
            Op::AdvanceBlocks {
                blocks: CONFIG.default_frequency as u8,
            },
            Op::AddSnapshot {
                caller: authority,
                owner,
                node: 0,
                cid,
            },
        ]
    };
    let pin = |cid| Op::Pin { caller: owner, cid };
    let create = Op::CreateBackup {
        caller: owner,
        node: 0,
        long_description: false,
    };
    let ops = [
        vec![create],
        [add(0), add(1), add(2)].concat(),
        vec![pin(0)],
        [add(3), add(4)].concat(),
        vec![
            pin(2),
            Op::Unpin {
                caller: owner,
                cid: 0,
            },
        ],
    ]
    .concat();
    let mut model = Model::new();
    for op in &ops {
        assert_eq!(model.apply(op), Ok(Value::Unit), "{op:?}");
    }
    let key = (actor(owner), node(0));
    let kept: Vec<String> = model.backups[&key].cids.iter().cloned().collect();
    assert_eq!(kept, [cid(2), cid(3), cid(4)]);
    run_sequence(&ops).unwrap();
}
