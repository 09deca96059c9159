//! `#[ink::test]` unit tests: every message's success path with its events, each error it can
//! return with storage left as it was, the caller × privileged-message matrix, retention and
//! deletion.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use super::support::{cid, cid_string, RECIPIENT, TEST_CONFIG};
use crate::backup_registry::*;
use crate::{MAX_AUTHORITIES, MAX_GRANTS_PER_BACKUP, MAX_PAGE_SIZE};
use ink::env::test::{self, DefaultAccounts};
use ink::env::DefaultEnvironment as Env;
use ink::primitives::AccountId;
use ink::scale::Decode;

const NODE: &str = "node-1";
const OTHER_NODE: &str = "node-2";

/// The cast: alice admin, bob and charlie authorities, django owner, eve grantee, frank stranger.
fn accounts() -> DefaultAccounts<Env> {
    test::default_accounts::<Env>()
}

fn set_caller(account: AccountId) {
    test::set_caller::<Env>(account);
}

/// A registry instantiated by alice with bob and charlie as authorities.
fn registry() -> BackupRegistry {
    let a = accounts();
    set_caller(a.alice);
    BackupRegistry::new(vec![a.bob, a.charlie], TEST_CONFIG).expect("valid config")
}

/// `owner` opts `node` in with `create_backup`, as every snapshot of it needs.
fn opt_in(registry: &mut BackupRegistry, owner: AccountId, node: &str) {
    set_caller(owner);
    registry.create_backup(node.into(), String::new()).unwrap();
}

/// `add_snapshot` by bob of django's `NODE`, which django opts in first if it has not yet,
/// once django's frequency has passed.
fn add_snapshot(registry: &mut BackupRegistry, n: u64) -> Result<()> {
    let a = accounts();
    if registry.backup(a.django, NODE.into()).is_none() {
        opt_in(registry, a.django, NODE);
    }
    advance_blocks(registry.backup_frequency(a.django));
    set_caller(a.bob);
    registry.add_snapshot(
        NODE.into(),
        cid(n),
        "nightly".into(),
        n,
        a.django,
        1_000 + n,
    )
}

/// A registry where django's `NODE` has snapshots `cid(1)` and `cid(2)` and eve is a grantee.
fn registry_with_snapshots() -> BackupRegistry {
    let mut registry = registry();
    add_snapshot(&mut registry, 1).unwrap();
    add_snapshot(&mut registry, 2).unwrap();
    set_caller(accounts().django);
    registry.grant_access(NODE.into(), accounts().eve).unwrap();
    registry
}

fn events() -> Vec<test::EmittedEvent> {
    test::recorded_events().collect()
}

fn event_count() -> usize {
    test::recorded_events().count()
}

/// Decodes the event at `index` counted from the end (0 is the last one).
fn event_from_end<E: Decode>(index: usize) -> E {
    let all = events();
    let event = &all[all.len() - 1 - index];
    E::decode(&mut &event.data[..]).expect("event of the expected type")
}

fn last_event<E: Decode>() -> E {
    event_from_end(0)
}

/// Checks that the last event says request `request_id` moved to `status`, by `by`.
fn assert_last_request_update(request_id: RequestId, by: AccountId, status: RestoreStatus) {
    let event: RestoreRequestUpdated = last_event();
    assert_eq!(
        (event.request_id, event.by, event.status),
        (request_id, by, status)
    );
}

/// Lets `blocks` blocks go by.
fn advance_blocks(blocks: u32) {
    for _ in 0..blocks {
        test::advance_block::<Env>();
    }
}

fn used_cells() -> usize {
    test::count_used_storage_cells::<Env>(&test::callee::<Env>()).unwrap_or(0)
}

/// Runs `call`, expects `expected`, and checks that it wrote no storage cell, emitted no
/// event and left the root storage struct as it was.
fn assert_fails_unchanged<T: core::fmt::Debug>(
    registry: &mut BackupRegistry,
    expected: Error,
    call: impl FnOnce(&mut BackupRegistry) -> Result<T>,
) {
    let contract = test::callee::<Env>();
    let (_, writes_before) = test::get_contract_storage_rw::<Env>(&contract);
    let events_before = event_count();
    let mut root_before = Vec::new();
    ink::storage::traits::Storable::encode(registry, &mut root_before);
    let result = call(registry);
    assert_eq!(result.unwrap_err(), expected);
    let (_, writes_after) = test::get_contract_storage_rw::<Env>(&contract);
    assert_eq!(writes_after, writes_before, "a failing call wrote storage");
    assert_eq!(
        event_count(),
        events_before,
        "a failing call emitted an event"
    );
    let mut root_after = Vec::new();
    ink::storage::traits::Storable::encode(registry, &mut root_after);
    assert_eq!(
        root_after, root_before,
        "a failing call changed the root struct"
    );
}

#[test]
fn test_cids_are_canonical_and_distinct() {
    // The same digest as Python's `base64.b32encode` gives, in multibase `b` form.
    assert_eq!(
        cid(1),
        "bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaae"
    );
    for n in [0, 1, 2, u64::MAX] {
        assert!(crate::cid::multihash(&cid(n)).is_some(), "{}", cid(n));
    }
    assert_ne!(cid(1), cid(2));
}

// ----- Constructors -----

#[ink::test]
fn new_sets_admin_authorities_and_config() {
    let a = accounts();
    let registry = registry();
    assert_eq!(registry.admin(), a.alice);
    assert_eq!(registry.pending_admin(), None);
    assert!(!registry.is_paused());
    assert_eq!(registry.config(), TEST_CONFIG);
    assert_eq!(registry.authority_count(), 2);
    assert!(registry.is_authority(a.bob) && registry.is_authority(a.charlie));
    assert!(!registry.is_authority(a.alice));
    let events = events();
    let instantiated = Instantiated::decode(&mut &events[0].data[..]).unwrap();
    assert_eq!(
        (instantiated.admin, instantiated.config),
        (a.alice, TEST_CONFIG)
    );
    let added: Vec<AuthorityChanged> = events[1..]
        .iter()
        .map(|event| AuthorityChanged::decode(&mut &event.data[..]).unwrap())
        .collect();
    assert_eq!(added.len(), 2);
    assert_eq!((added[0].authority, added[0].added), (a.bob, true));
    assert_eq!((added[1].authority, added[1].added), (a.charlie, true));
}

#[ink::test]
fn default_config_is_valid_and_used() {
    set_caller(accounts().alice);
    let registry = BackupRegistry::with_default_config(vec![]).unwrap();
    assert_eq!(registry.config(), Config::default());
    assert_eq!(
        registry.backup_frequency(accounts().django),
        Config::default().default_frequency
    );
}

#[ink::test]
fn new_refuses_bad_config_and_authorities() {
    let a = accounts();
    let bad_configs = [
        Config {
            max_snapshots_per_backup: 0,
            ..TEST_CONFIG
        },
        Config {
            max_snapshots_per_backup: crate::MAX_RETENTION + 1,
            ..TEST_CONFIG
        },
        Config {
            max_backups_per_account: 0,
            ..TEST_CONFIG
        },
        Config {
            max_backups_per_account: crate::MAX_BACKUPS_PER_ACCOUNT + 1,
            ..TEST_CONFIG
        },
        Config {
            min_frequency: 0,
            ..TEST_CONFIG
        },
        Config {
            default_frequency: 5,
            ..TEST_CONFIG
        },
        Config {
            default_frequency: 2_000,
            ..TEST_CONFIG
        },
        Config {
            max_frequency: crate::MAX_FREQUENCY_LIMIT + 1,
            ..TEST_CONFIG
        },
        Config {
            claim_timeout: 0,
            ..TEST_CONFIG
        },
        Config {
            claim_timeout: crate::MAX_CLAIM_TIMEOUT + 1,
            ..TEST_CONFIG
        },
        Config {
            upgrade_delay: crate::MAX_UPGRADE_DELAY + 1,
            ..TEST_CONFIG
        },
    ];
    for config in bad_configs {
        assert_eq!(
            BackupRegistry::new(vec![a.bob], config).err(),
            Some(Error::InvalidConfig),
            "{config:?}"
        );
    }
    assert_eq!(
        BackupRegistry::new(vec![a.bob, a.bob], TEST_CONFIG).err(),
        Some(Error::AuthorityAlreadyExists)
    );
    let too_many: Vec<AccountId> = (0..=MAX_AUTHORITIES as u8)
        .map(|n| AccountId::from([0x80 + n; 32]))
        .collect();
    assert_eq!(
        BackupRegistry::new(too_many, TEST_CONFIG).err(),
        Some(Error::TooManyAuthorities)
    );
}

// ----- create_backup -----

#[ink::test]
fn create_backup_records_it_and_emits_backup_created() {
    let a = accounts();
    let mut registry = registry();
    test::set_block_number::<Env>(7);
    set_caller(a.django);
    registry.create_backup(NODE.into(), "home".into()).unwrap();
    let event: BackupCreated = last_event();
    assert_eq!(
        (event.owner, event.node_id.as_str(), event.backup_id),
        (a.django, NODE, 0)
    );
    let backup = registry.backup(a.django, NODE.into()).unwrap();
    assert_eq!(backup.owner, a.django);
    assert_eq!(backup.node_id, NODE);
    assert_eq!(backup.description, "home");
    assert_eq!(backup.created_at, 7);
    assert_eq!(backup.snapshot_count(), 0);
    assert_eq!(registry.backup_by_id(0), Some(backup.clone()));
    assert_eq!(registry.backups_of(a.django), vec![backup]);
    assert!(registry.grantees(a.django, NODE.into()).is_empty());
}

#[ink::test]
fn create_backup_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), String::new()).unwrap();
    assert_fails_unchanged(&mut registry, Error::BackupAlreadyExists, |r| {
        r.create_backup(NODE.into(), String::new())
    });
    assert_fails_unchanged(&mut registry, Error::InvalidNodeId, |r| {
        r.create_backup(String::new(), String::new())
    });
    assert_fails_unchanged(&mut registry, Error::InvalidNodeId, |r| {
        r.create_backup("n".repeat(crate::MAX_NODE_ID_LEN + 1), String::new())
    });
    assert_fails_unchanged(&mut registry, Error::DescriptionTooLong, |r| {
        r.create_backup(
            OTHER_NODE.into(),
            "d".repeat(crate::MAX_DESCRIPTION_LEN + 1),
        )
    });
    registry
        .create_backup(OTHER_NODE.into(), String::new())
        .unwrap();
    assert_fails_unchanged(&mut registry, Error::TooManyBackups, |r| {
        r.create_backup("node-3".into(), String::new())
    });
    // The longest allowed inputs pass.
    set_caller(a.eve);
    registry
        .create_backup(
            "n".repeat(crate::MAX_NODE_ID_LEN),
            "d".repeat(crate::MAX_DESCRIPTION_LEN),
        )
        .unwrap();
}

// ----- add_snapshot -----

#[ink::test]
fn add_snapshot_records_into_the_owners_backup() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), "mine".into()).unwrap();
    test::set_block_number::<Env>(5);
    test::set_block_timestamp::<Env>(1_700_000_000_000);
    for n in 1..=2 {
        let events_before = event_count();
        add_snapshot(&mut registry, n).unwrap();
        assert_eq!(
            event_count(),
            events_before + 2,
            "SnapshotAdded and BackupUpdated only"
        );
        let added: SnapshotAdded = event_from_end(1);
        assert_eq!(
            (added.owner, added.node_id.as_str(), added.authority),
            (a.django, NODE, a.bob)
        );
        assert_eq!(
            (added.cid, added.seq, added.request_id, added.size_bytes),
            (cid(n), n as u32 - 1, n, 1_000 + n)
        );
        assert_eq!(added.pruned_cid, None);
        let updated: BackupUpdated = last_event();
        assert_eq!(
            (
                updated.owner,
                updated.node_id.as_str(),
                updated.snapshot_count
            ),
            (a.django, NODE, n as u32)
        );
    }
    let snapshot = registry.latest_snapshot(a.django, NODE.into()).unwrap();
    assert_eq!(
        snapshot,
        Snapshot {
            cid: cid(2),
            description: "nightly".into(),
            size_bytes: 1_002,
            request_id: 2,
            block_number: ink::env::block_number::<Env>(),
            timestamp: ink::env::block_timestamp::<Env>(),
        }
    );
    assert!(snapshot.block_number > 5 && snapshot.timestamp > 1_700_000_000_000);
    let (backup, by_cid) = registry.snapshot_by_cid(cid(2)).unwrap();
    assert_eq!((backup.owner, backup.node_id.as_str()), (a.django, NODE));
    assert_eq!(backup.description, "mine");
    assert_eq!(by_cid.cid, cid(2));
    assert_eq!(registry.backups_of(a.django).len(), 1);
}

/// An authority records a backup's snapshots no sooner than its owner's frequency, or once
/// earlier when the owner asks (`request_snapshot`); a backup's first snapshot is never early.
#[ink::test]
fn snapshots_come_no_sooner_than_the_owners_frequency() {
    let a = accounts();
    let mut registry = registry();
    add_snapshot(&mut registry, 1).unwrap();
    set_caller(a.django);
    registry.set_backup_offchain_worker_frequency(20).unwrap();
    fn call(n: u64, owner: AccountId) -> impl FnOnce(&mut BackupRegistry) -> Result<()> {
        move |r| r.add_snapshot(NODE.into(), cid(n), String::new(), n, owner, 1)
    }
    set_caller(a.bob);
    advance_blocks(19);
    assert_fails_unchanged(&mut registry, Error::TooSoon, call(2, a.django));
    advance_blocks(1);
    call(2, a.django)(&mut registry).unwrap();
    assert_fails_unchanged(&mut registry, Error::TooSoon, call(3, a.django));

    // The owner allows one early snapshot.
    set_caller(a.django);
    registry.request_snapshot(NODE.into()).unwrap();
    let requested: SnapshotRequested = last_event();
    assert_eq!(
        (requested.owner, requested.node_id.as_str()),
        (a.django, NODE)
    );
    assert!(
        registry
            .backup(a.django, NODE.into())
            .unwrap()
            .snapshot_requested
    );
    set_caller(a.bob);
    call(3, a.django)(&mut registry).unwrap();
    assert!(
        !registry
            .backup(a.django, NODE.into())
            .unwrap()
            .snapshot_requested
    );
    assert_fails_unchanged(&mut registry, Error::TooSoon, call(4, a.django));

    // Only the owner asks, for a backup that exists, and not while paused.
    for other in [a.eve, a.bob, a.frank] {
        set_caller(other);
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.request_snapshot(NODE.into())
        });
    }
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.request_snapshot(NODE.into())
    });
    set_caller(a.alice);
    registry.set_paused(false).unwrap();

    // Another backup's first snapshot comes at once.
    opt_in(&mut registry, a.eve, OTHER_NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(OTHER_NODE.into(), cid(9), String::new(), 9, a.eve, 1)
        .unwrap();
}

#[ink::test]
fn add_snapshot_needs_the_owners_consent() {
    let a = accounts();
    let mut registry = registry();
    let cells_before = used_cells();
    // No authority can open a backup for an account that never created one.
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.add_snapshot(NODE.into(), cid(1), String::new(), 1, a.django, 1)
    });
    assert_eq!(used_cells(), cells_before);
    assert!(registry.backups_of(a.django).is_empty());
    // After the owner deletes its backup, the bot's next snapshot is refused too.
    add_snapshot(&mut registry, 1).unwrap();
    set_caller(a.django);
    registry.delete_backup(NODE.into()).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.add_snapshot(NODE.into(), cid(2), String::new(), 2, a.django, 1)
    });
    assert_eq!(registry.backup(a.django, NODE.into()), None);
    assert_eq!(used_cells(), cells_before, "deletion is final");
    // Opting in again starts an empty backup.
    opt_in(&mut registry, a.django, NODE);
    add_snapshot(&mut registry, 2).unwrap();
    let kept = registry.snapshots(a.django, NODE.into(), 0, 10).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].cid, cid(2));
}

#[ink::test]
fn add_snapshot_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry();
    add_snapshot(&mut registry, 1).unwrap();
    opt_in(&mut registry, a.eve, OTHER_NODE);
    for stranger in [a.alice, a.django, a.eve, a.frank] {
        set_caller(stranger);
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.add_snapshot(NODE.into(), cid(9), String::new(), 9, a.django, 1)
        });
    }
    set_caller(a.charlie);
    fn call(
        node: &'static str,
        cid: String,
        description: String,
        owner: AccountId,
    ) -> impl FnOnce(&mut BackupRegistry) -> Result<()> {
        move |r| r.add_snapshot(node.into(), cid, description, 0, owner, 1)
    }
    for bad_cid in ["", "not-a-cid", "Qm123", &"b".repeat(200)] {
        assert_fails_unchanged(
            &mut registry,
            Error::InvalidCid,
            call(NODE, bad_cid.into(), String::new(), a.django),
        );
    }
    // `cid(1)`'s digest cut to 20 bytes, under the identity hash, and with the dag-cbor codec:
    // well-formed CIDs, but no block a bot makes, and each would be `cid(1)` again.
    let digest = [[0u8; 24].as_slice(), &1u64.to_be_bytes()].concat();
    for prefix in [
        [0x01, 0x55, 0x12, 0x14],
        [0x01, 0x55, 0x00, 0x20],
        [0x01, 0x71, 0x12, 0x20],
    ] {
        let length = usize::from(prefix[3]);
        let binary = [&prefix[..], &digest[..length]].concat();
        assert_fails_unchanged(
            &mut registry,
            Error::InvalidCid,
            call(NODE, cid_string(&binary), String::new(), a.django),
        );
    }
    // The same CID, in the same backup or another one.
    assert_fails_unchanged(
        &mut registry,
        Error::CidAlreadyRecorded,
        call(NODE, cid(1), String::new(), a.django),
    );
    assert_fails_unchanged(
        &mut registry,
        Error::CidAlreadyRecorded,
        call(OTHER_NODE, cid(1), String::new(), a.eve),
    );
    for no_backup in ["", "node-3"] {
        assert_fails_unchanged(
            &mut registry,
            Error::BackupNotFound,
            call(no_backup, cid(9), String::new(), a.django),
        );
    }
    assert_fails_unchanged(
        &mut registry,
        Error::DescriptionTooLong,
        call(
            NODE,
            cid(9),
            "d".repeat(crate::MAX_DESCRIPTION_LEN + 1),
            a.django,
        ),
    );
}

/// A CIDv0 and its CIDv1 form, and a raw and a dag-pb CIDv1 of one multihash, are one
/// snapshot; a padded varint is refused.
#[ink::test]
fn every_spelling_of_a_cid_is_one_snapshot() {
    const V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    const V1: &str = "bafybeie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34";
    const RAW: &str = "bafkreie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34";
    // `RAW` with its version written as the padded varint 0x81 0x00.
    const PADDED: &str = "bqeafkeratvwcxzipobuvgr42xhpszy7nzkilnactyaftabfx6cwmxypi53pq";
    let a = accounts();
    let mut registry = registry();
    opt_in(&mut registry, a.django, NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(NODE.into(), V0.into(), String::new(), 1, a.django, 1)
        .unwrap();
    for alias in [V1, RAW] {
        assert_fails_unchanged(&mut registry, Error::CidAlreadyRecorded, |r| {
            r.add_snapshot(NODE.into(), alias.into(), String::new(), 2, a.django, 1)
        });
        let (_, snapshot) = registry.snapshot_by_cid(alias.into()).unwrap();
        assert_eq!(
            snapshot.cid, V0,
            "found under the spelling it was recorded with"
        );
    }
    assert_fails_unchanged(&mut registry, Error::InvalidCid, |r| {
        r.add_snapshot(NODE.into(), PADDED.into(), String::new(), 2, a.django, 1)
    });
    assert_eq!(registry.snapshot_by_cid(PADDED.into()), None);
    set_caller(a.django);
    let id = registry.restore_from_snapshot(V1.into()).unwrap();
    assert_eq!(registry.restore_request(id).unwrap().cid, V0);
}

/// Inputs of any length get the contract's own answer: on the real pallet a storage key may
/// not exceed 128 bytes, so no key may grow with an input.
#[ink::test]
fn inputs_of_any_length_get_an_answer() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    for len in [crate::MAX_NODE_ID_LEN + 1, 129, 300, 5_000] {
        let long = "é".repeat(len / 2 + 1);
        let long_cid = format!("b{}", "a".repeat(len));
        set_caller(a.django);
        assert_fails_unchanged(&mut registry, Error::InvalidNodeId, |r| {
            r.create_backup(long.clone(), String::new())
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.grant_access(long.clone(), a.frank)
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.revoke_access(long.clone(), a.eve)
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.set_backup_recipient(long.clone(), None)
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.restore_latest_snapshot(a.django, long.clone())
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.delete_backup(long.clone())
        });
        assert_fails_unchanged(&mut registry, Error::InvalidCid, |r| {
            r.restore_from_snapshot(long_cid.clone())
        });
        set_caller(a.bob);
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.add_snapshot(long.clone(), cid(9), String::new(), 9, a.django, 1)
        });
        assert_fails_unchanged(&mut registry, Error::InvalidCid, |r| {
            r.add_snapshot(NODE.into(), long_cid.clone(), String::new(), 9, a.django, 1)
        });
        assert_eq!(registry.backup(a.django, long.clone()), None);
        assert_eq!(registry.snapshot_by_cid(long_cid.clone()), None);
        assert!(registry.grantees(a.django, long.clone()).is_empty());
        assert_eq!(registry.backup_recipient(a.django, long.clone()), None);
        assert_eq!(registry.latest_snapshot(a.django, long.clone()), None);
        assert_eq!(
            registry.snapshots(a.django, long.clone(), 0, 1),
            Err(Error::BackupNotFound)
        );
    }
}

#[ink::test]
fn retention_prunes_the_oldest_snapshot_and_its_cid() {
    let a = accounts();
    let mut registry = registry();
    let cap = TEST_CONFIG.max_snapshots_per_backup as u64;
    for n in 1..=cap {
        add_snapshot(&mut registry, n).unwrap();
    }
    let cells_at_cap = used_cells();
    add_snapshot(&mut registry, cap + 1).unwrap();
    let added: SnapshotAdded = event_from_end(1);
    assert_eq!(
        (added.owner, added.node_id.as_str(), added.cid),
        (a.django, NODE, cid(cap + 1))
    );
    assert_eq!(added.pruned_cid, Some(cid(1)));
    assert_eq!(
        used_cells(),
        cells_at_cap,
        "one snapshot and index entry in, one out"
    );
    let backup = registry.backup(a.django, NODE.into()).unwrap();
    assert_eq!(
        (backup.first_seq, backup.next_seq, backup.snapshot_count()),
        (1, 4, 3)
    );
    let kept: Vec<String> = registry
        .snapshots(a.django, NODE.into(), 0, 10)
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.cid)
        .collect();
    assert_eq!(kept, vec![cid(2), cid(3), cid(4)]);
    assert_eq!(registry.snapshot_by_cid(cid(1)), None);
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::SnapshotNotFound, |r| {
        r.restore_from_snapshot(cid(1))
    });
    // A pruned CID is free again.
    add_snapshot(&mut registry, 1).unwrap();
}

// ----- Pins -----

/// The CIDs `registry` keeps of django's `NODE`, oldest first.
fn kept_cids(registry: &BackupRegistry) -> Vec<String> {
    registry
        .snapshots(accounts().django, NODE.into(), 0, u32::MAX)
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.cid)
        .collect()
}

#[ink::test]
fn retention_never_prunes_a_pinned_snapshot() {
    let a = accounts();
    let mut registry = registry();
    add_snapshot(&mut registry, 1).unwrap();
    set_caller(a.django);
    registry.pin_snapshot(cid(1)).unwrap();
    let pinned: SnapshotPinChanged = last_event();
    assert_eq!(
        (pinned.owner, pinned.cid, pinned.pinned, pinned.pruned_cid),
        (a.django, cid(1), true, None)
    );
    // Three unpinned snapshots are kept beside the pinned one (the limit is 3).
    for n in 2..=6 {
        add_snapshot(&mut registry, n).unwrap();
        let added: SnapshotAdded = event_from_end(1);
        assert_eq!(added.pruned_cid, (n >= 5).then(|| cid(n - 3)));
    }
    assert_eq!(kept_cids(&registry), vec![cid(1), cid(4), cid(5), cid(6)]);
    let backup = registry.backup(a.django, NODE.into()).unwrap();
    assert_eq!((backup.snapshot_count(), backup.pins.clone()), (4, vec![0]));
    let pinned: Vec<String> = registry
        .pinned_snapshots(a.django, NODE.into())
        .into_iter()
        .map(|snapshot| snapshot.cid)
        .collect();
    assert_eq!(pinned, vec![cid(1)]);
    assert!(registry.snapshot_by_cid(cid(1)).is_some());
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    registry.cancel_restore_request(id).unwrap();
    // Unpinned, it is older than every kept snapshot: it goes at once.
    let cells = used_cells();
    let reserve = registry.backup_reserve(a.django, NODE.into()).unwrap();
    registry.unpin_snapshot(cid(1)).unwrap();
    let unpinned: SnapshotPinChanged = last_event();
    assert_eq!(
        (unpinned.cid, unpinned.pinned, unpinned.pruned_cid),
        (cid(1), false, Some(cid(1)))
    );
    assert_eq!(kept_cids(&registry), vec![cid(4), cid(5), cid(6)]);
    assert_eq!(registry.snapshot_by_cid(cid(1)), None);
    // Its record and index entry go back to the reserve as spare cells: the owner, who
    // paid for them, gets them back when the backup is deleted.
    assert_eq!(
        registry
            .backup_reserve(a.django, NODE.into())
            .unwrap()
            .cells,
        reserve.cells + 2,
        "the snapshot and its index entry"
    );
    assert_eq!(used_cells(), cells);
}

#[ink::test]
fn unpinning_inside_the_window_prunes_the_oldest_unpinned() {
    let a = accounts();
    let mut registry = registry();
    for n in 1..=3 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    registry.pin_snapshot(cid(2)).unwrap();
    add_snapshot(&mut registry, 4).unwrap();
    assert_eq!(kept_cids(&registry), vec![cid(1), cid(2), cid(3), cid(4)]);
    set_caller(a.django);
    registry.unpin_snapshot(cid(2)).unwrap();
    let unpinned: SnapshotPinChanged = last_event();
    assert_eq!(unpinned.pruned_cid, Some(cid(1)));
    assert_eq!(kept_cids(&registry), vec![cid(2), cid(3), cid(4)]);
    // Pinned ones never count against the limit: four pins and three unpinned are kept.
    for n in [2, 3, 4] {
        registry.pin_snapshot(cid(n)).unwrap();
    }
    for n in 5..=8 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    registry.pin_snapshot(cid(6)).unwrap();
    add_snapshot(&mut registry, 9).unwrap();
    add_snapshot(&mut registry, 10).unwrap();
    assert_eq!(
        kept_cids(&registry),
        [2, 3, 4, 6, 8, 9, 10].map(cid).to_vec()
    );
    // Deleting the backup deletes the pinned snapshots too.
    let cells_before = used_cells();
    set_caller(a.django);
    registry.delete_backup(NODE.into()).unwrap();
    assert!(used_cells() < cells_before);
    for n in [2, 3, 4, 6, 10] {
        assert_eq!(registry.snapshot_by_cid(cid(n)), None);
    }
}

#[ink::test]
fn pin_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    for n in 3..=5 {
        add_snapshot(&mut registry, n).unwrap();
    }
    for not_owner in [a.eve, a.bob, a.alice, a.frank] {
        set_caller(not_owner);
        assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
            r.pin_snapshot(cid(3))
        });
    }
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::SnapshotNotFound, |r| {
        r.pin_snapshot(cid(1))
    });
    assert_fails_unchanged(&mut registry, Error::InvalidCid, |r| {
        r.pin_snapshot("Qm-not-a-cid".into())
    });
    assert_fails_unchanged(&mut registry, Error::SnapshotNotPinned, |r| {
        r.unpin_snapshot(cid(3))
    });
    registry.pin_snapshot(cid(3)).unwrap();
    assert_fails_unchanged(&mut registry, Error::SnapshotAlreadyPinned, |r| {
        r.pin_snapshot(cid(3))
    });
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
        r.unpin_snapshot(cid(3))
    });
    for n in 6..=8 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    for n in [6, 7, 8] {
        registry.pin_snapshot(cid(n)).unwrap();
    }
    add_snapshot(&mut registry, 9).unwrap();
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::TooManyPins, |r| {
        r.pin_snapshot(cid(9))
    });
    // Paused: no new pin, but unpinning (an exit) still works.
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    set_caller(a.django);
    registry.unpin_snapshot(cid(8)).unwrap();
    assert_fails_unchanged(&mut registry, Error::Paused, |r| r.pin_snapshot(cid(9)));
}

/// An open restore request holds its snapshot like a pin: retention prunes the next oldest
/// instead, and the held snapshot goes only when the request closes and it is older than the
/// window.
#[ink::test]
fn an_open_request_holds_its_snapshot_until_it_closes() {
    let a = accounts();
    let mut registry = registry();
    for n in 1..=3 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    assert_eq!(
        registry.backup(a.django, NODE.into()).unwrap().held,
        Some(0)
    );
    add_snapshot(&mut registry, 4).unwrap();
    let added: SnapshotAdded = event_from_end(1);
    assert_eq!(added.pruned_cid, None, "the held snapshot does not count");
    add_snapshot(&mut registry, 5).unwrap();
    let added: SnapshotAdded = event_from_end(1);
    assert_eq!(added.pruned_cid, Some(cid(2)), "the oldest unheld one goes");
    assert_eq!(kept_cids(&registry), [cid(1), cid(3), cid(4), cid(5)]);
    assert_eq!(
        registry
            .backup(a.django, NODE.into())
            .unwrap()
            .snapshot_count(),
        4
    );
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    registry.fulfil_restore_request(id).unwrap();
    let closed: RestoreRequestUpdated = last_event();
    assert_eq!(
        closed.pruned_cid,
        Some(cid(1)),
        "released, it is older than the window"
    );
    assert_eq!(kept_cids(&registry), [cid(3), cid(4), cid(5)]);
    assert_eq!(registry.snapshot_by_cid(cid(1)), None);
    assert_eq!(registry.backup(a.django, NODE.into()).unwrap().held, None);
}

/// A request closed while its snapshot is still in the window prunes nothing; a snapshot both
/// pinned and requested stays until both let go.
#[ink::test]
fn a_held_snapshot_that_is_also_pinned_stays_until_unpinned() {
    let a = accounts();
    let mut registry = registry();
    for n in 1..=3 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(3)).unwrap();
    registry.cancel_restore_request(id).unwrap();
    let closed: RestoreRequestUpdated = last_event();
    assert_eq!(closed.pruned_cid, None);
    assert_eq!(kept_cids(&registry), [cid(1), cid(2), cid(3)]);

    registry.pin_snapshot(cid(1)).unwrap();
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    for n in 4..=6 {
        add_snapshot(&mut registry, n).unwrap();
    }
    assert_eq!(kept_cids(&registry), [cid(1), cid(4), cid(5), cid(6)]);
    set_caller(a.django);
    registry.cancel_restore_request(id).unwrap();
    let closed: RestoreRequestUpdated = last_event();
    assert_eq!(closed.pruned_cid, None, "still pinned");
    registry.unpin_snapshot(cid(1)).unwrap();
    let unpinned: SnapshotPinChanged = last_event();
    assert_eq!(unpinned.pruned_cid, Some(cid(1)));
    assert_eq!(kept_cids(&registry), [cid(4), cid(5), cid(6)]);
}

/// A lapsed claim passes on: another authority may claim it at once, its claimant only after
/// one more `claim_timeout`, so that a bot that keeps failing cannot keep a request forever.
#[ink::test]
fn a_lapsed_claimant_waits_one_more_timeout() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    advance_blocks(TEST_CONFIG.claim_timeout);
    for _ in 0..TEST_CONFIG.claim_timeout {
        assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
            r.claim_restore_request(id)
        });
        advance_blocks(1);
    }
    registry.claim_restore_request(id).unwrap();
    assert_last_request_update(id, a.bob, RestoreStatus::InProgress { authority: a.bob });
    // Once lapsed, another authority's claim is never refused.
    advance_blocks(TEST_CONFIG.claim_timeout);
    set_caller(a.charlie);
    registry.claim_restore_request(id).unwrap();
    assert_last_request_update(
        id,
        a.charlie,
        RestoreStatus::InProgress {
            authority: a.charlie,
        },
    );
}

/// A claim held by an account that is no longer an authority may be claimed at once.
#[ink::test]
fn a_claim_of_a_removed_authority_is_claimed_at_once() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.charlie);
    registry.claim_restore_request(id).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.claim_restore_request(id)
    });
    set_caller(a.alice);
    registry.remove_authority(a.charlie).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    assert_last_request_update(id, a.bob, RestoreStatus::InProgress { authority: a.bob });
}

/// The claimant renews its claim before it lapses, for restores longer than `claim_timeout`;
/// nobody else may, and a lapsed claim cannot be renewed.
#[ink::test]
fn the_claimant_renews_its_claim_before_it_lapses() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestNotClaimed, |r| {
        r.renew_claim(id)
    });
    registry.claim_restore_request(id).unwrap();
    let claimed_at = registry.restore_request(id).unwrap().claimed_at;
    advance_blocks(TEST_CONFIG.claim_timeout - 1);
    for (caller, error) in [
        (a.charlie, Error::NotClaimant),
        (a.django, Error::NotAuthorized),
        (a.frank, Error::NotAuthorized),
    ] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, error, |r| r.renew_claim(id));
    }
    set_caller(a.bob);
    registry.renew_claim(id).unwrap();
    assert_last_request_update(id, a.bob, RestoreStatus::InProgress { authority: a.bob });
    let request = registry.restore_request(id).unwrap();
    assert_eq!(
        request.claimed_at, claimed_at,
        "a renewal keeps the claim's start"
    );
    assert_eq!(
        request.updated_at,
        claimed_at + TEST_CONFIG.claim_timeout - 1
    );
    // Renewed: one more full `claim_timeout` before anyone may take it over or cancel it.
    advance_blocks(TEST_CONFIG.claim_timeout - 1);
    set_caller(a.charlie);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.claim_restore_request(id)
    });
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.cancel_restore_request(id)
    });
    advance_blocks(1);
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::ClaimNotRenewable, |r| {
        r.renew_claim(id)
    });
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| r.renew_claim(id));
}

/// Renewals hold a claim at most `MAX_CLAIM_TIMEOUT` blocks from when it was made.
#[ink::test]
fn renewals_end_at_max_claim_timeout() {
    let a = accounts();
    set_caller(a.alice);
    let claim_timeout = crate::MAX_CLAIM_TIMEOUT / 2;
    let config = Config {
        claim_timeout,
        ..TEST_CONFIG
    };
    let mut registry = BackupRegistry::new(vec![a.bob], config).unwrap();
    add_snapshot(&mut registry, 1).unwrap();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    advance_blocks(claim_timeout - 1);
    registry.renew_claim(id).unwrap();
    // Held until exactly `MAX_CLAIM_TIMEOUT` blocks after the claim: the last renewal.
    advance_blocks(1);
    registry.renew_claim(id).unwrap();
    advance_blocks(1);
    assert_fails_unchanged(&mut registry, Error::ClaimNotRenewable, |r| {
        r.renew_claim(id)
    });
    registry.fulfil_restore_request(id).unwrap();
}

// ----- Frequency -----

#[ink::test]
fn frequency_defaults_then_follows_the_account() {
    let a = accounts();
    let mut registry = registry();
    assert_eq!(
        registry.backup_frequency(a.django),
        TEST_CONFIG.default_frequency
    );
    set_caller(a.django);
    for frequency in [TEST_CONFIG.min_frequency, TEST_CONFIG.max_frequency, 600] {
        registry
            .set_backup_offchain_worker_frequency(frequency)
            .unwrap();
        let event: BackupOffchainWorkerFrequencyUpdated = last_event();
        assert_eq!((event.account, event.frequency), (a.django, frequency));
        assert_eq!(registry.backup_frequency(a.django), frequency);
    }
    assert_eq!(
        registry.backup_frequency(a.eve),
        TEST_CONFIG.default_frequency
    );
    for bad in [
        0,
        TEST_CONFIG.min_frequency - 1,
        TEST_CONFIG.max_frequency + 1,
        u32::MAX,
    ] {
        assert_fails_unchanged(&mut registry, Error::InvalidFrequency, |r| {
            r.set_backup_offchain_worker_frequency(bad)
        });
    }
    assert_eq!(registry.backup_frequency(a.django), 600);
}

// ----- Grants -----

#[ink::test]
fn grant_and_revoke_access() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), String::new()).unwrap();
    for grantee in [a.eve, a.frank, a.bob] {
        registry.grant_access(NODE.into(), grantee).unwrap();
        let event: AccessChanged = last_event();
        assert_eq!(
            (
                event.owner,
                event.node_id.as_str(),
                event.grantee,
                event.granted
            ),
            (a.django, NODE, grantee, true)
        );
        assert!(registry.grantees(a.django, NODE.into()).contains(&grantee));
    }
    assert_eq!(
        registry.grantees(a.django, NODE.into()),
        vec![a.eve, a.frank, a.bob]
    );
    // Revoking the first moves the last into its place; the others keep access.
    registry.revoke_access(NODE.into(), a.eve).unwrap();
    let event: AccessChanged = last_event();
    assert_eq!(
        (
            event.owner,
            event.node_id.as_str(),
            event.grantee,
            event.granted
        ),
        (a.django, NODE, a.eve, false)
    );
    assert_eq!(
        registry.grantees(a.django, NODE.into()),
        vec![a.bob, a.frank]
    );
    let cells_with_two = used_cells();
    let reserve_with_two = registry.backup_reserve(a.django, NODE.into()).unwrap();
    registry.revoke_access(NODE.into(), a.bob).unwrap();
    registry.revoke_access(NODE.into(), a.frank).unwrap();
    assert!(registry.grantees(a.django, NODE.into()).is_empty());
    // The list's cell goes back to the reserve, and its bytes with it.
    assert_eq!(
        registry.backup_reserve(a.django, NODE.into()).unwrap(),
        StorageReserve {
            bytes: reserve_with_two.bytes + 1 + 2 * 32,
            cells: reserve_with_two.cells + 1,
        },
        "an empty grantee list leaves no cell"
    );
    assert_eq!(used_cells(), cells_with_two);
}

#[ink::test]
fn grant_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), String::new()).unwrap();
    registry.grant_access(NODE.into(), a.eve).unwrap();
    assert_fails_unchanged(&mut registry, Error::AccessAlreadyGranted, |r| {
        r.grant_access(NODE.into(), a.eve)
    });
    assert_fails_unchanged(&mut registry, Error::AccessAlreadyGranted, |r| {
        r.grant_access(NODE.into(), a.django)
    });
    assert_fails_unchanged(&mut registry, Error::AccessNotFound, |r| {
        r.revoke_access(NODE.into(), a.frank)
    });
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.grant_access(OTHER_NODE.into(), a.frank)
    });
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.revoke_access(OTHER_NODE.into(), a.eve)
    });
    for n in 1..MAX_GRANTS_PER_BACKUP {
        registry
            .grant_access(NODE.into(), AccountId::from([0x40 + n as u8; 32]))
            .unwrap();
    }
    assert_fails_unchanged(&mut registry, Error::TooManyGrants, |r| {
        r.grant_access(NODE.into(), a.frank)
    });
    // Only the owner manages grants: the grantee has no backup of its own named NODE.
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.grant_access(NODE.into(), a.frank)
    });
}

#[ink::test]
fn owner_sets_and_clears_the_backup_recipient() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), String::new()).unwrap();
    assert_eq!(registry.backup_recipient(a.django, NODE.into()), None);
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    let event: BackupRecipientChanged = last_event();
    assert_eq!(
        (
            event.owner,
            event.node_id.as_str(),
            event.recipient.as_deref()
        ),
        (a.django, NODE, Some(RECIPIENT))
    );
    assert_eq!(
        registry.backup_recipient(a.django, NODE.into()).as_deref(),
        Some(RECIPIENT)
    );
    registry.set_backup_recipient(NODE.into(), None).unwrap();
    let event: BackupRecipientChanged = last_event();
    assert_eq!(event.recipient, None);
    assert_eq!(registry.backup_recipient(a.django, NODE.into()), None);
}

#[ink::test]
fn recipient_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.django);
    registry.create_backup(NODE.into(), String::new()).unwrap();
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    let secret = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
    for bad in ["", "age1", &RECIPIENT.replacen('q', "p", 1), secret] {
        assert_fails_unchanged(&mut registry, Error::InvalidRecipient, |r| {
            r.set_backup_recipient(NODE.into(), Some(bad.into()))
        });
    }
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.set_backup_recipient(OTHER_NODE.into(), None)
    });
    // Only the owner: a grantee or a stranger has no backup of its own named NODE.
    registry.grant_access(NODE.into(), a.eve).unwrap();
    for caller in [a.eve, a.frank, a.bob, a.alice] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.set_backup_recipient(NODE.into(), None)
        });
    }
    assert_eq!(
        registry.backup_recipient(a.django, NODE.into()).as_deref(),
        Some(RECIPIENT)
    );
    // Paused: no new recipient, but clearing it (an exit) still works.
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
    });
    registry.set_backup_recipient(NODE.into(), None).unwrap();
    assert_eq!(registry.backup_recipient(a.django, NODE.into()), None);
}

// ----- Restore requests -----

#[ink::test]
fn restore_from_snapshot_opens_a_pending_request() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    test::set_block_number::<Env>(11);
    set_caller(a.django);
    let request_id = registry.restore_from_snapshot(cid(1)).unwrap();
    assert_eq!(request_id, 0);
    let event: SnapshotRestoreRequested = last_event();
    assert_eq!(event.request_id, request_id);
    assert_eq!((event.requester, event.owner), (a.django, a.django));
    assert_eq!((event.node_id.as_str(), event.cid), (NODE, cid(1)));
    let request = registry.restore_request(request_id).unwrap();
    assert_eq!(request.status, RestoreStatus::Pending);
    assert_eq!((request.cid, request.requester), (cid(1), a.django));
    assert_eq!((request.requested_at, request.updated_at), (11, 11));
    let backup = registry.backup(a.django, NODE.into()).unwrap();
    assert_eq!(backup.latest_request, Some(request_id));
    assert_eq!(registry.backup_by_id(request.backup_id), Some(backup));
    let pending = registry.pending_restore_requests(0, 10);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, request_id);
    assert_eq!(registry.pending_restore_request_count(), 1);
}

#[ink::test]
fn restore_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    for stranger in [a.alice, a.bob, a.frank] {
        set_caller(stranger);
        assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
            r.restore_from_snapshot(cid(1))
        });
        assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
            r.restore_latest_snapshot(a.django, NODE.into())
        });
    }
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::InvalidCid, |r| {
        r.restore_from_snapshot("Qm-not-a-cid".into())
    });
    assert_fails_unchanged(&mut registry, Error::SnapshotNotFound, |r| {
        r.restore_from_snapshot(cid(77))
    });
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.restore_latest_snapshot(a.django, OTHER_NODE.into())
    });
    registry
        .create_backup(OTHER_NODE.into(), String::new())
        .unwrap();
    assert_fails_unchanged(&mut registry, Error::SnapshotNotFound, |r| {
        r.restore_latest_snapshot(a.django, OTHER_NODE.into())
    });
    registry.restore_from_snapshot(cid(2)).unwrap();
    // One open request per backup, whoever asks.
    assert_fails_unchanged(&mut registry, Error::RestoreAlreadyOpen, |r| {
        r.restore_from_snapshot(cid(1))
    });
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::RestoreAlreadyOpen, |r| {
        r.restore_latest_snapshot(a.django, NODE.into())
    });
}

#[ink::test]
fn grantee_restores_latest_and_ids_never_repeat() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    opt_in(&mut registry, a.eve, NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(NODE.into(), cid(50), String::new(), 50, a.eve, 1)
        .unwrap();
    set_caller(a.eve);
    let first = registry
        .restore_latest_snapshot(a.django, NODE.into())
        .unwrap();
    assert_eq!(registry.restore_request(first).unwrap().cid, cid(2));
    assert_eq!(registry.restore_request(first).unwrap().requester, a.eve);
    let second = registry.restore_from_snapshot(cid(50)).unwrap();
    set_caller(a.eve);
    registry.cancel_restore_request(first).unwrap();
    set_caller(a.django);
    let third = registry.restore_from_snapshot(cid(1)).unwrap();
    assert_eq!((first, second, third), (0, 1, 2));
}

#[ink::test]
fn restore_lifecycle_claim_then_fulfil() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestNotClaimed, |r| {
        r.fulfil_restore_request(id)
    });
    test::set_block_number::<Env>(20);
    registry.claim_restore_request(id).unwrap();
    let in_progress = RestoreStatus::InProgress { authority: a.bob };
    assert_last_request_update(id, a.bob, in_progress.clone());
    let request = registry.restore_request(id).unwrap();
    assert_eq!((request.status, request.updated_at), (in_progress, 20));
    assert_eq!(
        registry.pending_restore_request_count(),
        1,
        "in progress is still open"
    );
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.claim_restore_request(id)
    });
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.cancel_restore_request(id)
    });
    set_caller(a.charlie);
    assert_fails_unchanged(&mut registry, Error::NotClaimant, |r| {
        r.fulfil_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::NotClaimant, |r| {
        r.fail_restore_request(id, "no".into())
    });
    set_caller(a.bob);
    registry.fulfil_restore_request(id).unwrap();
    let fulfilled = RestoreStatus::Fulfilled { authority: a.bob };
    assert_last_request_update(id, a.bob, fulfilled.clone());
    assert_eq!(registry.restore_request(id).unwrap().status, fulfilled);
    assert_eq!(registry.pending_restore_request_count(), 0);
    assert_eq!(
        registry
            .backup(a.django, NODE.into())
            .unwrap()
            .latest_request,
        Some(id),
        "a closed request stays readable until the next one opens"
    );
    // A second fulfil, or anything else on a closed request, says it is closed.
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.fulfil_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.claim_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.fail_restore_request(id, String::new())
    });
    assert_fails_unchanged(&mut registry, Error::RestoreRequestNotFound, |r| {
        r.fulfil_restore_request(99)
    });
    assert_fails_unchanged(&mut registry, Error::RestoreRequestNotFound, |r| {
        r.claim_restore_request(99)
    });
    // The backup accepts a new request once the previous one closed.
    set_caller(a.django);
    assert_eq!(registry.restore_from_snapshot(cid(1)), Ok(id + 1));
}

#[ink::test]
fn restore_lifecycle_claim_then_fail() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(2)).unwrap();
    set_caller(a.charlie);
    registry.claim_restore_request(id).unwrap();
    assert_fails_unchanged(&mut registry, Error::ReasonTooLong, |r| {
        r.fail_restore_request(id, "r".repeat(crate::MAX_REASON_LEN + 1))
    });
    registry
        .fail_restore_request(id, "cid mismatch".into())
        .unwrap();
    let failed = RestoreStatus::Failed {
        authority: a.charlie,
        reason: "cid mismatch".into(),
    };
    assert_last_request_update(id, a.charlie, failed.clone());
    assert_eq!(registry.restore_request(id).unwrap().status, failed);
    assert!(registry.pending_restore_requests(0, 10).is_empty());
}

#[ink::test]
fn revoking_a_grantee_cancels_its_request_and_a_grantee_cannot_cancel_the_owners() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    set_caller(a.django);
    registry.revoke_access(NODE.into(), a.eve).unwrap();
    assert_last_request_update(id, a.django, RestoreStatus::Cancelled);
    let revoked: AccessChanged = event_from_end(1);
    assert_eq!((revoked.grantee, revoked.granted), (a.eve, false));
    assert_eq!(registry.pending_restore_request_count(), 0);
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.fulfil_restore_request(id)
    });
    // A grantee may not withdraw the owner's own request.
    set_caller(a.django);
    registry.grant_access(NODE.into(), a.eve).unwrap();
    let own = registry.restore_from_snapshot(cid(2)).unwrap();
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::NotRequester, |r| {
        r.cancel_restore_request(own)
    });
    // Revoking eve again leaves the owner's own request open.
    set_caller(a.django);
    registry.revoke_access(NODE.into(), a.eve).unwrap();
    assert_eq!(
        registry.restore_request(own).unwrap().status,
        RestoreStatus::Pending
    );
}

#[ink::test]
fn requester_cancels_a_claim_of_a_removed_authority() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    // While its claimant is an authority, the request is being served.
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.cancel_restore_request(id)
    });
    set_caller(a.alice);
    registry.remove_authority(a.bob).unwrap();
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
        r.fulfil_restore_request(id)
    });
    for other in [a.frank, a.charlie] {
        set_caller(other);
        assert_fails_unchanged(&mut registry, Error::NotRequester, |r| {
            r.cancel_restore_request(id)
        });
    }
    set_caller(a.eve);
    registry.cancel_restore_request(id).unwrap();
    assert_last_request_update(id, a.eve, RestoreStatus::Cancelled);
    assert_eq!(registry.pending_restore_request_count(), 0);
    // The backup is free for a new request, which the remaining authority serves.
    let again = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.charlie);
    registry.claim_restore_request(again).unwrap();
    registry.fulfil_restore_request(again).unwrap();
    assert_eq!(
        registry.restore_request(again).unwrap().status,
        RestoreStatus::Fulfilled {
            authority: a.charlie
        }
    );
}

/// A claim holds for `claim_timeout` blocks: until then no other authority may take the
/// request over and nobody may cancel it; after that another authority re-claims it (the
/// event says who), and the first claimant can no longer complete it.
#[ink::test]
fn a_lapsed_claim_is_taken_over() {
    let a = accounts();
    let timeout = TEST_CONFIG.claim_timeout;
    let mut registry = registry_with_snapshots();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    test::set_block_number::<Env>(10);
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    test::set_block_number::<Env>(10 + timeout - 1);
    set_caller(a.charlie);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.claim_restore_request(id)
    });
    for requester_or_owner in [a.eve, a.django] {
        set_caller(requester_or_owner);
        assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
            r.cancel_restore_request(id)
        });
    }
    test::set_block_number::<Env>(10 + timeout);
    for stranger in [a.frank, a.django] {
        set_caller(stranger);
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.claim_restore_request(id)
        });
    }
    set_caller(a.charlie);
    registry.claim_restore_request(id).unwrap();
    let taken_over = RestoreStatus::InProgress {
        authority: a.charlie,
    };
    assert_last_request_update(id, a.charlie, taken_over.clone());
    let request = registry.restore_request(id).unwrap();
    assert_eq!(
        (request.status, request.updated_at),
        (taken_over, 10 + timeout)
    );
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::NotClaimant, |r| {
        r.fulfil_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClaimed, |r| {
        r.claim_restore_request(id)
    });
    set_caller(a.charlie);
    registry.fulfil_restore_request(id).unwrap();
}

/// After its claim lapsed, the requester or the backup's owner may withdraw the request; an
/// unserved lapsed claim may still be completed by its claimant.
#[ink::test]
fn a_lapsed_claim_may_be_cancelled_or_still_completed() {
    let a = accounts();
    let timeout = TEST_CONFIG.claim_timeout;
    let mut registry = registry_with_snapshots();
    for canceller in [a.eve, a.django] {
        set_caller(a.eve);
        let id = registry.restore_from_snapshot(cid(1)).unwrap();
        set_caller(a.bob);
        registry.claim_restore_request(id).unwrap();
        test::set_block_number::<Env>(ink::env::block_number::<Env>() + timeout);
        set_caller(a.frank);
        assert_fails_unchanged(&mut registry, Error::NotRequester, |r| {
            r.cancel_restore_request(id)
        });
        set_caller(canceller);
        registry.cancel_restore_request(id).unwrap();
        assert_last_request_update(id, canceller, RestoreStatus::Cancelled);
    }
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    test::set_block_number::<Env>(ink::env::block_number::<Env>() + 10 * timeout);
    registry.fulfil_restore_request(id).unwrap();
    assert_last_request_update(id, a.bob, RestoreStatus::Fulfilled { authority: a.bob });
}

#[ink::test]
fn requester_cancels_a_pending_request() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    for other in [a.bob, a.frank] {
        set_caller(other);
        assert_fails_unchanged(&mut registry, Error::NotRequester, |r| {
            r.cancel_restore_request(id)
        });
    }
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestNotFound, |r| {
        r.cancel_restore_request(id + 1)
    });
    registry.cancel_restore_request(id).unwrap();
    assert_last_request_update(id, a.eve, RestoreStatus::Cancelled);
    assert_eq!(
        registry.restore_request(id).unwrap().status,
        RestoreStatus::Cancelled
    );
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.cancel_restore_request(id)
    });
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::RestoreRequestAlreadyClosed, |r| {
        r.claim_restore_request(id)
    });
}

/// Storage for restore requests is bounded by the backups: opening a request removes the
/// backup's closed one, so any number of restores leaves one request cell per backup; deleting
/// the backup removes it too.
#[ink::test]
fn each_backup_keeps_one_request() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let first = registry.restore_from_snapshot(cid(1)).unwrap();
    registry.cancel_restore_request(first).unwrap();
    let cells_with_one = used_cells();
    let mut previous = first;
    for n in 0..5 {
        set_caller(a.django);
        let id = registry.restore_from_snapshot(cid(1 + n % 2)).unwrap();
        assert_eq!(
            registry.restore_request(previous),
            None,
            "the closed one gave way"
        );
        set_caller(a.bob);
        registry.claim_restore_request(id).unwrap();
        registry.fulfil_restore_request(id).unwrap();
        assert_eq!(
            used_cells(),
            cells_with_one,
            "one request cell, whatever the history"
        );
        let backup = registry.backup(a.django, NODE.into()).unwrap();
        assert_eq!(backup.latest_request, Some(id));
        previous = id;
    }
    // A failed call leaves the closed request in place.
    set_caller(a.frank);
    assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
        r.restore_from_snapshot(cid(1))
    });
    assert!(registry.restore_request(previous).is_some());
    set_caller(a.django);
    registry.delete_backup(NODE.into()).unwrap();
    assert_eq!(registry.restore_request(previous), None);
}

#[ink::test]
fn open_requests_page_and_stay_consistent_as_they_close() {
    let a = accounts();
    let mut registry = registry();
    // Three owners, one backup and one open request each.
    let owners = [a.django, a.eve, a.frank];
    for (n, owner) in owners.iter().enumerate() {
        opt_in(&mut registry, *owner, NODE);
        set_caller(a.bob);
        registry
            .add_snapshot(NODE.into(), cid(n as u64), String::new(), 0, *owner, 1)
            .unwrap();
        set_caller(*owner);
        registry.restore_from_snapshot(cid(n as u64)).unwrap();
    }
    assert_eq!(registry.pending_restore_request_count(), 3);
    let ids =
        |page: Vec<(u64, RestoreRequest)>| page.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(registry.pending_restore_requests(0, 2)), vec![0, 1]);
    assert_eq!(ids(registry.pending_restore_requests(2, 2)), vec![2]);
    assert_eq!(
        ids(registry.pending_restore_requests(3, 2)),
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(registry.pending_restore_requests(u32::MAX, u32::MAX)),
        Vec::<u64>::new()
    );
    // Closing the first moves the last into its slot.
    set_caller(a.django);
    registry.cancel_restore_request(0).unwrap();
    assert_eq!(ids(registry.pending_restore_requests(0, 10)), vec![2, 1]);
    set_caller(a.frank);
    registry.cancel_restore_request(2).unwrap();
    assert_eq!(ids(registry.pending_restore_requests(0, 10)), vec![1]);
}

// ----- Deletion -----

#[ink::test]
fn delete_backup_leaves_no_trace() {
    let a = accounts();
    let mut registry = registry();
    let cells_before = used_cells();
    add_snapshot(&mut registry, 1).unwrap();
    add_snapshot(&mut registry, 2).unwrap();
    set_caller(a.django);
    registry.grant_access(NODE.into(), a.eve).unwrap();
    registry.grant_access(NODE.into(), a.frank).unwrap();
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    assert!(used_cells() > cells_before);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.delete_backup(OTHER_NODE.into())
    });
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.delete_backup(NODE.into())
    });
    set_caller(a.django);
    registry.delete_backup(NODE.into()).unwrap();
    let event: BackupDeleted = last_event();
    assert_eq!(
        (event.owner, event.node_id.as_str(), event.snapshot_count),
        (a.django, NODE, 2)
    );
    assert_eq!(
        used_cells(),
        cells_before,
        "every cell of the backup is gone"
    );
    assert_eq!(registry.backup(a.django, NODE.into()), None);
    assert_eq!(registry.backup_by_id(0), None);
    assert!(registry.backups_of(a.django).is_empty());
    assert_eq!(registry.snapshot_by_cid(cid(1)), None);
    assert_eq!(registry.snapshot_by_cid(cid(2)), None);
    assert!(registry.grantees(a.django, NODE.into()).is_empty());
    assert_eq!(registry.backup_recipient(a.django, NODE.into()), None);
    // The backup can be created again, from scratch.
    registry.create_backup(NODE.into(), String::new()).unwrap();
    assert!(registry.grantees(a.django, NODE.into()).is_empty());
    set_caller(a.eve);
    assert_eq!(
        registry.restore_latest_snapshot(a.django, NODE.into()),
        Err(Error::NotBackupOwner)
    );
}

#[ink::test]
fn delete_backup_keeps_the_owners_other_backup_and_cancels_its_request() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    opt_in(&mut registry, a.django, OTHER_NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(OTHER_NODE.into(), cid(3), String::new(), 3, a.django, 1)
        .unwrap();
    set_caller(a.eve);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.django);
    registry.delete_backup(NODE.into()).unwrap();
    let cancelled: RestoreRequestUpdated = event_from_end(1);
    assert_eq!(
        (cancelled.request_id, cancelled.by, cancelled.status),
        (id, a.django, RestoreStatus::Cancelled)
    );
    assert_eq!(
        registry.restore_request(id),
        None,
        "removed with its backup; the event is the record"
    );
    assert_eq!(registry.pending_restore_request_count(), 0);
    let remaining = registry.backups_of(a.django);
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].node_id, OTHER_NODE);
    assert_eq!(
        registry
            .latest_snapshot(a.django, OTHER_NODE.into())
            .unwrap()
            .cid,
        cid(3)
    );
    registry.delete_backup(OTHER_NODE.into()).unwrap();
    assert!(registry.backups_of(a.django).is_empty());
}

#[ink::test]
fn delete_user_storage_removes_every_backup() {
    let a = accounts();
    let mut registry = registry();
    let cells_before = used_cells();
    opt_in(&mut registry, a.eve, OTHER_NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(OTHER_NODE.into(), cid(10), String::new(), 0, a.eve, 1)
        .unwrap();
    let cells_with_eve = used_cells();
    for n in 1..=4 {
        add_snapshot(&mut registry, n).unwrap();
    }
    opt_in(&mut registry, a.django, OTHER_NODE);
    set_caller(a.bob);
    registry
        .add_snapshot(OTHER_NODE.into(), cid(20), String::new(), 0, a.django, 1)
        .unwrap();
    set_caller(a.django);
    registry.grant_access(NODE.into(), a.eve).unwrap();
    registry.grant_access(OTHER_NODE.into(), a.frank).unwrap();
    registry.set_backup_offchain_worker_frequency(50).unwrap();
    let events_before = event_count();
    assert_eq!(registry.delete_user_storage(), Ok(0));
    let event: UserStorageDeleted = last_event();
    assert_eq!(
        (event.account, event.backup_count, event.remaining),
        (a.django, 2, 0)
    );
    // One `BackupDeleted` per backup, then the summary.
    let deleted: Vec<(String, u32)> = events()[events_before..event_count() - 1]
        .iter()
        .map(|event| BackupDeleted::decode(&mut &event.data[..]).unwrap())
        .map(|deleted| {
            assert_eq!(deleted.owner, a.django);
            (deleted.node_id, deleted.snapshot_count)
        })
        .collect();
    assert_eq!(deleted, [(NODE.into(), 3), (OTHER_NODE.into(), 1)]);
    assert!(registry.backups_of(a.django).is_empty());
    for n in [2, 3, 4, 20] {
        assert_eq!(registry.snapshot_by_cid(cid(n)), None);
    }
    assert!(registry.grantees(a.django, NODE.into()).is_empty());
    assert!(registry.grantees(a.django, OTHER_NODE.into()).is_empty());
    // The frequency setting went with the last backup: nothing of django's remains.
    assert_eq!(
        registry.backup_frequency(a.django),
        TEST_CONFIG.default_frequency
    );
    assert_eq!(used_cells(), cells_with_eve);
    assert!(cells_with_eve > cells_before);
    assert_eq!(
        registry
            .latest_snapshot(a.eve, OTHER_NODE.into())
            .unwrap()
            .cid,
        cid(10)
    );
    // Deleting nothing is not an error.
    assert_eq!(registry.delete_user_storage(), Ok(0));
    let event: UserStorageDeleted = last_event();
    assert_eq!(event.backup_count, 0);
}

/// One call deletes at most `MAX_BACKUPS_DELETED_PER_CALL` backups, newest first, and says how
/// many remain; calls until 0 leave nothing.
#[ink::test]
fn delete_user_storage_goes_in_bounded_steps() {
    let a = accounts();
    set_caller(a.alice);
    let config = Config {
        max_backups_per_account: crate::MAX_BACKUPS_PER_ACCOUNT,
        ..TEST_CONFIG
    };
    let mut registry = BackupRegistry::new(vec![a.bob], config).unwrap();
    let cells_before = used_cells();
    let per_call = crate::MAX_BACKUPS_DELETED_PER_CALL;
    let total = 2 * per_call + 1;
    for n in 0..total {
        opt_in(&mut registry, a.django, &format!("node-{n}"));
    }
    set_caller(a.django);
    for remaining in [per_call + 1, 1, 0] {
        assert_eq!(registry.delete_user_storage(), Ok(remaining));
        let event: UserStorageDeleted = last_event();
        assert_eq!(event.remaining, remaining);
        let kept: Vec<String> = registry
            .backups_of(a.django)
            .into_iter()
            .map(|backup| backup.node_id)
            .collect();
        let oldest: Vec<String> = (0..remaining).map(|n| format!("node-{n}")).collect();
        assert_eq!(kept, oldest, "the newest went first");
    }
    assert_eq!(used_cells(), cells_before);
}

// ----- Admin -----

#[ink::test]
fn admin_manages_authorities() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.alice);
    registry.add_authority(a.frank).unwrap();
    let event: AuthorityChanged = last_event();
    assert_eq!((event.authority, event.added), (a.frank, true));
    assert!(registry.is_authority(a.frank));
    assert_fails_unchanged(&mut registry, Error::AuthorityAlreadyExists, |r| {
        r.add_authority(a.frank)
    });
    registry.remove_authority(a.frank).unwrap();
    let event: AuthorityChanged = last_event();
    assert_eq!((event.authority, event.added), (a.frank, false));
    assert!(!registry.is_authority(a.frank));
    assert_eq!(registry.authority_count(), 2);
    assert_fails_unchanged(&mut registry, Error::AuthorityNotFound, |r| {
        r.remove_authority(a.frank)
    });
    // A removed authority can no longer add snapshots.
    set_caller(a.frank);
    assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
        r.add_snapshot(NODE.into(), cid(1), String::new(), 0, a.django, 1)
    });
    set_caller(a.alice);
    for n in 2..MAX_AUTHORITIES as u8 {
        registry
            .add_authority(AccountId::from([0x80 + n; 32]))
            .unwrap();
    }
    assert_eq!(registry.authority_count(), MAX_AUTHORITIES);
    assert_fails_unchanged(&mut registry, Error::TooManyAuthorities, |r| {
        r.add_authority(a.frank)
    });
}

#[ink::test]
fn admin_transfer_takes_two_steps() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.alice);
    registry.propose_admin(a.eve).unwrap();
    let event: AdminTransferProposed = last_event();
    assert_eq!((event.admin, event.proposed), (a.alice, a.eve));
    assert_eq!(registry.pending_admin(), Some(a.eve));
    assert_eq!(registry.admin(), a.alice, "nothing moves before acceptance");
    for other in [a.alice, a.bob, a.frank] {
        set_caller(other);
        assert_fails_unchanged(&mut registry, Error::NotPendingAdmin, |r| r.accept_admin());
    }
    set_caller(a.eve);
    registry.accept_admin().unwrap();
    let event: AdminChanged = last_event();
    assert_eq!((event.previous, event.admin), (a.alice, a.eve));
    assert_eq!((registry.admin(), registry.pending_admin()), (a.eve, None));
    assert_fails_unchanged(&mut registry, Error::NotPendingAdmin, |r| r.accept_admin());
    set_caller(a.alice);
    assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| r.add_authority(a.frank));
    set_caller(a.eve);
    registry.add_authority(a.frank).unwrap();
}

#[ink::test]
fn admin_withdraws_a_proposal() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.alice);
    assert_fails_unchanged(&mut registry, Error::NotPendingAdmin, |r| {
        r.cancel_admin_proposal()
    });
    registry.propose_admin(a.eve).unwrap();
    for other in [a.eve, a.bob, a.frank] {
        set_caller(other);
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| {
            r.cancel_admin_proposal()
        });
    }
    set_caller(a.alice);
    registry.cancel_admin_proposal().unwrap();
    let event: AdminProposalCancelled = last_event();
    assert_eq!((event.admin, event.proposed), (a.alice, a.eve));
    assert_eq!(registry.pending_admin(), None);
    set_caller(a.eve);
    assert_fails_unchanged(&mut registry, Error::NotPendingAdmin, |r| r.accept_admin());
    assert_eq!(registry.admin(), a.alice);
}

/// An upgrade waits `upgrade_delay` blocks after its proposal; a new proposal starts the wait
/// again, and the admin may withdraw it. (Switching the code itself is proven by the e2e
/// tests: the off-chain engine cannot set a code hash.)
#[ink::test]
fn upgrades_wait_for_the_delay() {
    let a = accounts();
    let mut registry = registry();
    set_caller(a.alice);
    assert_eq!(registry.storage_version(), crate::STORAGE_VERSION);
    assert_fails_unchanged(&mut registry, Error::NoUpgradeProposed, |r| {
        r.apply_upgrade()
    });
    assert_fails_unchanged(&mut registry, Error::NoUpgradeProposed, |r| {
        r.cancel_upgrade()
    });
    let proposed_in = ink::env::block_number::<Env>();
    registry.propose_upgrade([1; 32].into()).unwrap();
    let applies_at = proposed_in + TEST_CONFIG.upgrade_delay;
    let event: UpgradeProposed = last_event();
    assert_eq!(
        (event.admin, event.code_hash, event.applies_at),
        (a.alice, [1; 32].into(), applies_at)
    );
    let pending = PendingUpgrade {
        code_hash: [1; 32].into(),
        applies_at,
    };
    assert_eq!(registry.pending_upgrade(), Some(pending));
    advance_blocks(TEST_CONFIG.upgrade_delay - 1);
    assert_fails_unchanged(&mut registry, Error::UpgradeNotDue, |r| r.apply_upgrade());

    // Proposing other code starts the delay again.
    registry.propose_upgrade([2; 32].into()).unwrap();
    advance_blocks(1);
    assert_fails_unchanged(&mut registry, Error::UpgradeNotDue, |r| r.apply_upgrade());
    assert_eq!(
        registry.pending_upgrade().map(|pending| pending.code_hash),
        Some([2; 32].into())
    );
    registry.cancel_upgrade().unwrap();
    let event: UpgradeCancelled = last_event();
    assert_eq!((event.admin, event.code_hash), (a.alice, [2; 32].into()));
    assert_eq!(registry.pending_upgrade(), None);
    advance_blocks(TEST_CONFIG.upgrade_delay);
    assert_fails_unchanged(&mut registry, Error::NoUpgradeProposed, |r| {
        r.apply_upgrade()
    });
}

#[ink::test]
fn pause_stops_authorities_and_new_commitments() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    let event: PauseChanged = last_event();
    assert_eq!((event.admin, event.paused), (a.alice, true));
    // Indexers find it by the admin's account, a topic of its own.
    let topics = events().pop().unwrap().topics;
    assert_eq!(topics.len(), 2, "the event's signature and the admin");
    assert_eq!(topics[1], AsRef::<[u8]>::as_ref(&a.alice).to_vec());
    assert!(registry.is_paused());
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.create_backup(OTHER_NODE.into(), String::new())
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.set_backup_offchain_worker_frequency(50)
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.grant_access(NODE.into(), a.frank)
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.restore_from_snapshot(cid(2))
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.restore_latest_snapshot(a.django, NODE.into())
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| r.pin_snapshot(cid(2)));
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
    });
    set_caller(a.bob);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.add_snapshot(NODE.into(), cid(5), String::new(), 5, a.django, 1)
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.claim_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.fulfil_restore_request(id)
    });
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.fail_restore_request(id, String::new())
    });
    set_caller(a.alice);
    registry.add_authority(a.frank).unwrap();
    registry.set_paused(false).unwrap();
    let event: PauseChanged = last_event();
    assert!(!event.paused && !registry.is_paused());
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
}

/// While paused, owners still leave: revoke, cancel, unpin, clear the recipient, delete.
#[ink::test]
fn owners_exit_while_paused() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    opt_in(&mut registry, a.django, OTHER_NODE);
    set_caller(a.django);
    registry.pin_snapshot(cid(1)).unwrap();
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    registry.set_backup_offchain_worker_frequency(50).unwrap();
    let id = registry.restore_from_snapshot(cid(2)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(id).unwrap();
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    // The claim lapses while the authorities are paused: the owner may cancel it.
    advance_blocks(TEST_CONFIG.claim_timeout);
    set_caller(a.django);
    registry.cancel_restore_request(id).unwrap();
    registry.revoke_access(NODE.into(), a.eve).unwrap();
    registry.unpin_snapshot(cid(1)).unwrap();
    registry.set_backup_recipient(NODE.into(), None).unwrap();
    registry.delete_backup(OTHER_NODE.into()).unwrap();
    assert_eq!(registry.delete_user_storage(), Ok(0));
    assert!(registry.backups_of(a.django).is_empty());
    assert_eq!(registry.snapshot_by_cid(cid(2)), None);
    assert_eq!(
        registry.backup_frequency(a.django),
        TEST_CONFIG.default_frequency
    );
    assert!(registry.is_paused());
}

/// Every privileged message, called by each role that may not call it.
#[ink::test]
fn privileged_messages_refuse_every_other_role() {
    let a = accounts();
    let mut registry = registry_with_snapshots();
    set_caller(a.django);
    let id = registry.restore_from_snapshot(cid(1)).unwrap();
    let (admin, authority, owner, grantee, stranger) = (a.alice, a.bob, a.django, a.eve, a.frank);
    // An upgrade that is due, so that only the caller's role stops `apply_upgrade`.
    set_caller(admin);
    registry.propose_upgrade([7; 32].into()).unwrap();
    advance_blocks(TEST_CONFIG.upgrade_delay);
    for caller in [authority, owner, grantee, stranger] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| {
            r.add_authority(stranger)
        });
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| {
            r.remove_authority(a.charlie)
        });
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| r.propose_admin(caller));
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| {
            r.cancel_admin_proposal()
        });
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| r.set_paused(true));
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| {
            r.propose_upgrade([7; 32].into())
        });
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| r.cancel_upgrade());
        assert_fails_unchanged(&mut registry, Error::NotAdmin, |r| r.apply_upgrade());
    }
    for caller in [admin, owner, grantee, stranger] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.add_snapshot(NODE.into(), cid(9), String::new(), 9, owner, 1)
        });
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.claim_restore_request(id)
        });
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.fulfil_restore_request(id)
        });
        assert_fails_unchanged(&mut registry, Error::NotAuthorized, |r| {
            r.fail_restore_request(id, String::new())
        });
    }
    for caller in [admin, authority, stranger] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, Error::NotBackupOwner, |r| {
            r.restore_from_snapshot(cid(2))
        });
        assert_fails_unchanged(&mut registry, Error::NotRequester, |r| {
            r.cancel_restore_request(id)
        });
    }
    // Owner-only messages act on the caller's own backups: others find none.
    for caller in [admin, authority, grantee, stranger] {
        set_caller(caller);
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.grant_access(NODE.into(), stranger)
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.revoke_access(NODE.into(), grantee)
        });
        assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
            r.delete_backup(NODE.into())
        });
    }
    assert!(registry.backup(owner, NODE.into()).is_some());
}

// ----- Queries -----

#[ink::test]
fn snapshot_pages_are_capped() {
    let a = accounts();
    set_caller(a.alice);
    let config = Config {
        max_snapshots_per_backup: crate::MAX_RETENTION,
        ..TEST_CONFIG
    };
    let mut registry = BackupRegistry::new(vec![a.bob], config).unwrap();
    for n in 0..40 {
        add_snapshot(&mut registry, n).unwrap();
    }
    let page = |offset, limit| {
        registry
            .snapshots(a.django, NODE.into(), offset, limit)
            .unwrap()
            .into_iter()
            .map(|snapshot| snapshot.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(0, u32::MAX).len(), MAX_PAGE_SIZE as usize);
    assert_eq!(page(32, 100), (32..40).collect::<Vec<u64>>());
    assert_eq!(page(5, 2), vec![5, 6]);
    assert!(page(40, 10).is_empty());
    assert!(page(u32::MAX, u32::MAX).is_empty());
    assert_eq!(
        registry.snapshots(a.eve, NODE.into(), 0, 1),
        Err(Error::BackupNotFound)
    );
    assert_eq!(registry.latest_snapshot(a.eve, NODE.into()), None);
    assert_eq!(registry.snapshot_by_cid("garbage".into()), None);
    assert_eq!(registry.restore_request(0), None);
    assert!(registry.grantees(a.eve, NODE.into()).is_empty());
}

/// `bob` adds snapshot `cid(n)` of django's `NODE` with a description of the longest length.
fn add_long_snapshot(registry: &mut BackupRegistry, n: u64) -> Result<()> {
    let a = accounts();
    advance_blocks(registry.backup_frequency(a.django));
    set_caller(a.bob);
    registry.add_snapshot(
        NODE.into(),
        cid(n),
        "d".repeat(crate::MAX_DESCRIPTION_LEN),
        n,
        a.django,
        1_000 + n,
    )
}

#[ink::test]
fn settled_messages_leave_the_cell_count_to_the_reserve() {
    let a = accounts();
    let mut registry = registry();
    opt_in(&mut registry, a.django, NODE);
    let cells = used_cells();
    let reserve = registry.backup_reserve(a.django, NODE.into()).unwrap();
    // Every write below is paid from the reserve: the registry's cell count stays where
    // create_backup left it, and the reserve gives up the cells used.
    for n in 1..=5 {
        add_snapshot(&mut registry, n).unwrap();
    }
    set_caller(a.django);
    registry.pin_snapshot(cid(3)).unwrap();
    registry.grant_access(NODE.into(), a.eve).unwrap();
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    set_caller(a.eve);
    let request_id = registry.restore_from_snapshot(cid(3)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(request_id).unwrap();
    registry.fulfil_restore_request(request_id).unwrap();
    assert_eq!(used_cells(), cells);
    let left = registry.backup_reserve(a.django, NODE.into()).unwrap();
    // 3 snapshots (the window, the pinned one in it) with index entries, grantees, recipient
    // and the closed request.
    assert_eq!(left.cells, reserve.cells - 3 * 2 - 3);
    assert!(left.bytes < reserve.bytes);
}

#[ink::test]
fn a_backup_whose_reserve_is_spent_gets_insufficient_funds_until_funded() {
    let a = accounts();
    let mut registry = registry();
    opt_in(&mut registry, a.django, NODE);
    // Snapshots with the longest descriptions, each pinned while pins last: the reserve,
    // sized for descriptions of 90 bytes, runs out before the backup is full.
    let mut n = 0;
    let refused = loop {
        n += 1;
        assert!(n <= 8, "the reserve never ran out");
        match add_long_snapshot(&mut registry, n) {
            Ok(()) => {
                set_caller(a.django);
                if n <= u64::from(crate::MAX_PINS_PER_BACKUP) {
                    registry.pin_snapshot(cid(n)).unwrap();
                }
            }
            Err(error) => break error,
        }
    };
    assert_eq!(refused, Error::InsufficientFunds);
    // On chain the refused call reverts; here the off-chain engine keeps its writes, so the
    // retry takes a new CID.
    set_caller(a.django);
    registry.fund_backup(NODE.into(), 4).unwrap();
    let funded: BackupFunded = last_event();
    assert_eq!(
        (funded.owner, funded.node_id.as_str(), funded.reserve),
        (
            a.django,
            NODE,
            registry.backup_reserve(a.django, NODE.into()).unwrap()
        )
    );
    add_long_snapshot(&mut registry, 100).unwrap();
}

#[ink::test]
fn fund_backup_errors_leave_storage_unchanged() {
    let a = accounts();
    let mut registry = registry();
    opt_in(&mut registry, a.django, NODE);
    set_caller(a.frank);
    assert_fails_unchanged(&mut registry, Error::BackupNotFound, |r| {
        r.fund_backup(NODE.into(), 1)
    });
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::ReserveFull, |r| {
        r.fund_backup(NODE.into(), u32::MAX)
    });
    let held = registry.backup_reserve(a.django, NODE.into()).unwrap();
    let room = ((crate::MAX_RESERVE_BYTES - held.bytes) / crate::RESERVED_BYTES_PER_SNAPSHOT)
        .min((crate::MAX_RESERVE_CELLS - held.cells) / crate::RESERVED_CELLS_PER_SNAPSHOT);
    assert_fails_unchanged(&mut registry, Error::ReserveFull, |r| {
        r.fund_backup(NODE.into(), room + 1)
    });
    registry.fund_backup(NODE.into(), room).unwrap();
    set_caller(a.alice);
    registry.set_paused(true).unwrap();
    set_caller(a.django);
    assert_fails_unchanged(&mut registry, Error::Paused, |r| {
        r.fund_backup(NODE.into(), 0)
    });
}

#[ink::test]
fn the_reserve_covers_a_full_backup_at_its_largest_records() {
    let a = accounts();
    let mut registry = registry();
    opt_in(&mut registry, a.django, NODE);
    // A full backup: every pin and window slot taken, one held by an open request of a
    // grantee, every grantee, a recipient; descriptions of 90 bytes.
    for n in 1..=u64::from(crate::MAX_PINS_PER_BACKUP) + 3 {
        advance_blocks(registry.backup_frequency(a.django));
        set_caller(a.bob);
        registry
            .add_snapshot(
                NODE.into(),
                cid(n),
                "d".repeat(90),
                u64::MAX,
                a.django,
                u64::MAX,
            )
            .unwrap();
        set_caller(a.django);
        if n <= u64::from(crate::MAX_PINS_PER_BACKUP) {
            registry.pin_snapshot(cid(n)).unwrap();
        }
    }
    set_caller(a.django);
    registry
        .set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        .unwrap();
    registry.grant_access(NODE.into(), a.eve).unwrap();
    for n in 1..MAX_GRANTS_PER_BACKUP {
        registry
            .grant_access(NODE.into(), AccountId::from([100 + n as u8; 32]))
            .unwrap();
    }
    set_caller(a.eve);
    let request_id = registry.restore_from_snapshot(cid(5)).unwrap();
    set_caller(a.bob);
    registry.claim_restore_request(request_id).unwrap();
    registry
        .fail_restore_request(request_id, "r".repeat(crate::MAX_REASON_LEN))
        .unwrap();
    assert!(registry.backup_reserve(a.django, NODE.into()).is_some());
}
