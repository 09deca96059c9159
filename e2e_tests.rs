//! End-to-end scenarios: the contract compiled to wasm and deployed on a chain.
//!
//! Each scenario is written once and runs on two backends:
//! - `<scenario>::sandbox`: pallet-contracts in-process (`ink_e2e` feature `sandbox`), no node;
//! - `<scenario>::node`: a `substrate-contracts-node` that `ink_e2e` spawns from
//!   `$CONTRACTS_NODE` or `PATH` (`scripts/install-node.sh` installs it).
//!
//! Run with `cargo test --features e2e-tests -- e2e_tests` (add `--skip ::node` without a node).
//! ink_e2e 5.1's sandbox client reports no events, so events are checked on the node backend
//! and state is checked by queries on both.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
// Under clippy, `#[ink_e2e::test]` expands to nothing, leaving the helpers unused.
#![cfg_attr(clippy, allow(dead_code, unused_imports, unused_macros))]

use crate::backup_registry::*;
use crate::unit_tests::{cid, TEST_CONFIG as CONFIG};
use ink::env::DefaultEnvironment as Env;
use ink::primitives::AccountId;
use ink::scale::{Decode, Encode};
use ink_e2e::{AccountKeyring, ChainBackend, ContractsBackend};

type E2EResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const NODE: &str = "node-1";

fn account(keyring: AccountKeyring) -> AccountId {
    ink_e2e::account_id(keyring)
}

/// The contract events of one submitted call, where the backend reports them.
pub trait ContractEvents {
    /// The encoded events, or `None` when the backend does not report events.
    fn contract_events(&self) -> Option<Vec<Vec<u8>>>;
}

/// The sandbox client of ink_e2e 5.1 reports no events.
impl ContractEvents for () {
    fn contract_events(&self) -> Option<Vec<Vec<u8>>> {
        None
    }
}

impl ContractEvents for ink_e2e::subxt::blocks::ExtrinsicEvents<ink_e2e::PolkadotConfig> {
    fn contract_events(&self) -> Option<Vec<Vec<u8>>> {
        let emitted = self.iter().filter_map(|event| {
            event
                .expect("event decodes")
                .as_event::<ink_e2e::events::ContractEmitted<Env>>()
                .expect("ContractEmitted decodes")
                .map(|emitted| emitted.data)
        });
        Some(emitted.collect())
    }
}

/// Decodes the `index`th event of a call, when the backend reports events.
fn event<T: Decode>(events: &Option<Vec<Vec<u8>>>, index: usize) -> Option<T> {
    let events = events.as_ref()?;
    let data = events
        .get(index)
        .expect("the call emitted that many events");
    Some(T::decode(&mut &data[..]).expect("event of the expected type"))
}

/// Storage deposit of a dry run: positive when charged, negative when refunded.
fn deposit<V>(dry_run: &ink_e2e::CallDryRunResult<Env, V>) -> i128 {
    /// Mirror of pallet-contracts' `StorageDeposit`, decoded from its SCALE encoding.
    #[derive(Decode)]
    enum StorageDeposit {
        Refund(u128),
        Charge(u128),
    }
    let encoded = dry_run.exec_result.storage_deposit.encode();
    match StorageDeposit::decode(&mut &encoded[..]).expect("StorageDeposit decodes") {
        StorageDeposit::Refund(amount) => -i128::try_from(amount).expect("deposit fits i128"),
        StorageDeposit::Charge(amount) => i128::try_from(amount).expect("deposit fits i128"),
    }
}

/// Submits `$message` from `$caller` and returns its value and its events.
macro_rules! submit {
    ($client:expr, $caller:expr, $message:expr) => {{
        let result = $client
            .call($caller, &$message)
            .submit()
            .await
            .unwrap_or_else(|err| panic!("{} failed: {err:?}", stringify!($message)));
        let events = ContractEvents::contract_events(&result.events);
        (result.return_value(), events)
    }};
}

/// Dry-runs `$message` from `$caller`.
macro_rules! dry_run {
    ($client:expr, $caller:expr, $message:expr) => {
        $client
            .call($caller, &$message)
            .dry_run()
            .await
            .unwrap_or_else(|err| panic!("{} failed: {err:?}", stringify!($message)))
    };
}

/// Reads a query's value (a dry run as alice).
macro_rules! query {
    ($client:expr, $message:expr) => {
        dry_run!($client, &ink_e2e::alice(), $message).return_value()
    };
}

/// Checks that `$message` from `$caller` returns `Err($error)`, then submits it anyway: the
/// contract reverts (the node reports the transaction as failed, the sandbox as reverted) and
/// the caller's state checks that follow prove that nothing changed.
macro_rules! refused {
    ($client:expr, $caller:expr, $message:expr, $error:expr) => {{
        let message = $message;
        let dry_run = dry_run!($client, $caller, message);
        assert_eq!(
            dry_run.return_value(),
            Err($error),
            "{}",
            stringify!($message)
        );
        let reverted = $client.call($caller, &message).submit().await;
        if let Ok(result) = reverted {
            assert!(result.dry_run.exec_return_value().did_revert());
        }
    }};
}

/// Instantiates the registry as alice with bob and charlie as authorities.
macro_rules! deploy {
    ($client:expr, $config:expr) => {{
        let mut constructor = BackupRegistryRef::new(
            vec![
                account(AccountKeyring::Bob),
                account(AccountKeyring::Charlie),
            ],
            $config,
        );
        $client
            .instantiate("backup_registry", &ink_e2e::alice(), &mut constructor)
            .submit()
            .await
            .expect("instantiate failed")
    }};
}

/// Writes a scenario once and runs it on the sandbox and on the node.
macro_rules! scenario {
    ($(#[doc = $doc:literal])* $name:ident($client:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            #[ink_e2e::test(backend(runtime_only))]
            async fn sandbox<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
                let $client = &mut client;
                $body
            }

            #[ink_e2e::test]
            async fn node<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
                let $client = &mut client;
                $body
            }
        }
    };
}

scenario! {
    /// Two authorities; one adds snapshots for a user; a stranger's `add_snapshot` is refused
    /// and changes nothing.
    authorities_add_snapshots(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        assert!(query!(client, registry.is_authority(account(AccountKeyring::Bob))));
        assert!(query!(client, registry.is_authority(account(AccountKeyring::Charlie))));
        assert_eq!(query!(client, registry.authority_count()), 2);

        let (result, events) = submit!(
            client,
            &ink_e2e::charlie(),
            registry.add_snapshot(NODE.into(), cid(1), "first".into(), 7, dave, 4_096)
        );
        assert_eq!(result, Ok(()));
        if let Some(created) = event::<BackupCreated>(&events, 0) {
            assert_eq!((created.owner, created.node_id.as_str()), (dave, NODE));
        }
        if let Some(added) = event::<SnapshotAdded>(&events, 1) {
            assert_eq!((added.owner, added.authority), (dave, account(AccountKeyring::Charlie)));
            assert_eq!((added.cid, added.request_id, added.size_bytes), (cid(1), 7, 4_096));
        }
        let snapshot = query!(client, registry.latest_snapshot(dave, NODE.into())).unwrap();
        assert_eq!((snapshot.cid, snapshot.size_bytes, snapshot.request_id), (cid(1), 4_096, 7));
        assert!(snapshot.block_number > 0, "stamped with the chain's block");
        assert!(snapshot.timestamp > 0, "stamped with the chain's time");

        for stranger in [ink_e2e::ferdie(), ink_e2e::dave(), ink_e2e::alice()] {
            refused!(
                client,
                &stranger,
                registry.add_snapshot(NODE.into(), cid(2), String::new(), 8, dave, 1),
                Error::NotAuthorized
            );
        }
        let kept = query!(client, registry.snapshots(dave, NODE.into(), 0, 10)).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(2))), None);
        Ok(())
    }
}

scenario! {
    /// The owner sets a frequency and grants access; the grantee requests a restore; an
    /// authority claims and fulfils it.
    restore_flow(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (dave, eve, bob) = (
            account(AccountKeyring::Dave),
            account(AccountKeyring::Eve),
            account(AccountKeyring::Bob),
        );
        submit!(client, &ink_e2e::dave(), registry.create_backup(NODE.into(), "laptop".into()))
            .0
            .unwrap();
        let (result, events) =
            submit!(client, &ink_e2e::dave(), registry.set_backup_offchain_worker_frequency(600));
        assert_eq!(result, Ok(()));
        if let Some(updated) = event::<BackupOffchainWorkerFrequencyUpdated>(&events, 0) {
            assert_eq!((updated.account, updated.frequency), (dave, 600));
        }
        assert_eq!(query!(client, registry.backup_frequency(dave)), 600);
        assert_eq!(query!(client, registry.backup_frequency(eve)), CONFIG.default_frequency);

        let (result, events) =
            submit!(client, &ink_e2e::dave(), registry.grant_access(NODE.into(), eve));
        assert_eq!(result, Ok(()));
        if let Some(granted) = event::<AccessChanged>(&events, 0) {
            assert_eq!((granted.owner, granted.grantee, granted.granted), (dave, eve, true));
        }
        assert_eq!(query!(client, registry.grantees(dave, NODE.into())), vec![eve]);

        submit!(
            client,
            &ink_e2e::bob(),
            registry.add_snapshot(NODE.into(), cid(1), String::new(), 1, dave, 10)
        )
        .0
        .unwrap();
        refused!(
            client,
            &ink_e2e::ferdie(),
            registry.restore_from_snapshot(cid(1)),
            Error::NotBackupOwner
        );
        let (request_id, events) =
            submit!(client, &ink_e2e::eve(), registry.restore_from_snapshot(cid(1)));
        let request_id = request_id.unwrap();
        if let Some(requested) = event::<SnapshotRestoreRequested>(&events, 0) {
            assert_eq!(requested.request_id, request_id);
            assert_eq!((requested.requester, requested.owner), (eve, dave));
            assert_eq!((requested.node_id.as_str(), requested.cid), (NODE, cid(1)));
        }
        let pending = query!(client, registry.pending_restore_requests(0, 10));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, request_id);
        assert_eq!(pending[0].1.status, RestoreStatus::Pending);

        let (result, events) =
            submit!(client, &ink_e2e::bob(), registry.claim_restore_request(request_id));
        assert_eq!(result, Ok(()));
        let in_progress = RestoreStatus::InProgress { authority: bob };
        if let Some(updated) = event::<RestoreRequestUpdated>(&events, 0) {
            assert_eq!(updated.status, in_progress);
        }
        let request = query!(client, registry.restore_request(request_id)).unwrap();
        assert_eq!(request.status, in_progress);
        refused!(
            client,
            &ink_e2e::charlie(),
            registry.fulfil_restore_request(request_id),
            Error::NotClaimant
        );

        let (result, events) =
            submit!(client, &ink_e2e::bob(), registry.fulfil_restore_request(request_id));
        assert_eq!(result, Ok(()));
        let fulfilled = RestoreStatus::Fulfilled { authority: bob };
        if let Some(updated) = event::<RestoreRequestUpdated>(&events, 0) {
            assert_eq!((updated.request_id, updated.by), (request_id, bob));
            assert_eq!(updated.status, fulfilled);
        }
        let request = query!(client, registry.restore_request(request_id)).unwrap();
        assert_eq!(request.status, fulfilled);
        assert!(query!(client, registry.pending_restore_requests(0, 10)).is_empty());
        refused!(
            client,
            &ink_e2e::bob(),
            registry.fulfil_restore_request(request_id),
            Error::RestoreRequestAlreadyClosed
        );
        Ok(())
    }
}

scenario! {
    /// Retention: N+1 snapshots keep the newest N; the pruned CID no longer restores.
    retention(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        let cap = u64::from(CONFIG.max_snapshots_per_backup);
        for n in 1..=cap + 1 {
            let (result, events) = submit!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n)
            );
            assert_eq!(result, Ok(()));
            if n == cap + 1 {
                if let Some(added) = event::<SnapshotAdded>(&events, 0) {
                    assert_eq!((added.cid, added.pruned_cid), (cid(n), Some(cid(1))));
                }
            }
        }
        let kept: Vec<String> = query!(client, registry.snapshots(dave, NODE.into(), 0, 10))
            .unwrap()
            .into_iter()
            .map(|snapshot| snapshot.cid)
            .collect();
        assert_eq!(kept, (2..=cap + 1).map(cid).collect::<Vec<_>>());
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        refused!(
            client,
            &ink_e2e::dave(),
            registry.restore_from_snapshot(cid(1)),
            Error::SnapshotNotFound
        );
        let (request_id, _) =
            submit!(client, &ink_e2e::dave(), registry.restore_from_snapshot(cid(cap + 1)));
        assert_eq!(request_id, Ok(0));
        Ok(())
    }
}

scenario! {
    /// Deleting all of a user's backups removes every entry and refunds the storage deposit
    /// that creating them charged (to the unit rounding of pallet-contracts).
    deletion_refunds_deposit(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (dave, eve) = (account(AccountKeyring::Dave), account(AccountKeyring::Eve));
        let mut charged: i128 = 0;
        let create = registry.create_backup(NODE.into(), "laptop".into());
        charged += deposit(&dry_run!(client, &ink_e2e::dave(), create));
        submit!(client, &ink_e2e::dave(), create).0.unwrap();
        for n in 1..=2 {
            let add = registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n);
            charged += deposit(&dry_run!(client, &ink_e2e::bob(), add));
            submit!(client, &ink_e2e::bob(), add).0.unwrap();
        }
        let grant = registry.grant_access(NODE.into(), eve);
        charged += deposit(&dry_run!(client, &ink_e2e::dave(), grant));
        submit!(client, &ink_e2e::dave(), grant).0.unwrap();
        assert!(charged > 0);

        let delete = registry.delete_user_storage();
        let refund = -deposit(&dry_run!(client, &ink_e2e::dave(), delete));
        // pallet-contracts refunds pro rata of the contract's deposit with `FixedU128`
        // ratios, rounding down once for bytes and once for items.
        assert!(
            (charged - 2..=charged).contains(&refund),
            "every byte and item the backup stored is refunded: {refund} of {charged}"
        );
        let before = client.free_balance(dave).await.expect("balance");
        let (result, events) = submit!(client, &ink_e2e::dave(), delete);
        assert_eq!(result, Ok(()));
        let after = client.free_balance(dave).await.expect("balance");
        assert!(after > before, "the refund ({refund}) reached the owner");
        if let Some(deleted) = event::<UserStorageDeleted>(&events, 0) {
            assert_eq!((deleted.account, deleted.backup_count), (dave, 1));
        }
        assert_eq!(query!(client, registry.backup(dave, NODE.into())), None);
        assert!(query!(client, registry.backups_of(dave)).is_empty());
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(2))), None);
        assert!(query!(client, registry.grantees(dave, NODE.into())).is_empty());
        Ok(())
    }
}

scenario! {
    /// Upgrade: `set_code` to freshly uploaded code keeps every backup readable; only the
    /// admin may upgrade, and only to uploaded code.
    upgrade_keeps_backups(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        for n in 1..=2 {
            submit!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n)
            )
            .0
            .unwrap();
        }
        let backup_before = query!(client, registry.backup(dave, NODE.into())).unwrap();
        let code_hash = ContractsBackend::<Env>::upload(client, "backup_registry", &ink_e2e::alice())
            .submit()
            .await
            .expect("upload failed")
            .code_hash;
        refused!(client, &ink_e2e::bob(), registry.set_code(code_hash), Error::NotAdmin);
        refused!(
            client,
            &ink_e2e::alice(),
            registry.set_code([0xab; 32].into()),
            Error::CodeUpgradeFailed
        );
        let (result, events) = submit!(client, &ink_e2e::alice(), registry.set_code(code_hash));
        assert_eq!(result, Ok(()));
        if let Some(upgraded) = event::<CodeUpgraded>(&events, 0) {
            assert_eq!(upgraded.code_hash, code_hash);
        }
        assert_eq!(query!(client, registry.backup(dave, NODE.into())), Some(backup_before));
        assert_eq!(
            query!(client, registry.latest_snapshot(dave, NODE.into())).unwrap().cid,
            cid(2)
        );
        assert_eq!(query!(client, registry.admin()), account(AccountKeyring::Alice));
        submit!(
            client,
            &ink_e2e::bob(),
            registry.add_snapshot(NODE.into(), cid(3), String::new(), 3, dave, 3)
        )
        .0
        .unwrap();
        Ok(())
    }
}

scenario! {
    /// Bad input through the real encoding: oversized strings, malformed CIDs, unknown ids.
    bad_input(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        let bob = ink_e2e::bob();
        let long_node = "n".repeat(crate::MAX_NODE_ID_LEN + 1);
        let long_text = "d".repeat(crate::MAX_DESCRIPTION_LEN + 1);
        refused!(
            client,
            &bob,
            registry.add_snapshot(long_node.clone(), cid(1), String::new(), 1, dave, 1),
            Error::InvalidNodeId
        );
        refused!(
            client,
            &bob,
            registry.add_snapshot(NODE.into(), cid(1), long_text.clone(), 1, dave, 1),
            Error::DescriptionTooLong
        );
        for bad_cid in ["", "QmNotACid", "bafy!!", "f0155", &"b".repeat(1_000)] {
            refused!(
                client,
                &bob,
                registry.add_snapshot(NODE.into(), bad_cid.into(), String::new(), 1, dave, 1),
                Error::InvalidCid
            );
        }
        refused!(
            client,
            &ink_e2e::dave(),
            registry.create_backup(long_node, String::new()),
            Error::InvalidNodeId
        );
        refused!(
            client,
            &ink_e2e::dave(),
            registry.create_backup(NODE.into(), long_text),
            Error::DescriptionTooLong
        );
        refused!(
            client,
            &ink_e2e::dave(),
            registry.set_backup_offchain_worker_frequency(0),
            Error::InvalidFrequency
        );
        refused!(
            client,
            &ink_e2e::dave(),
            registry.restore_from_snapshot("zzz".into()),
            Error::InvalidCid
        );
        refused!(
            client,
            &ink_e2e::dave(),
            registry.restore_from_snapshot(cid(9)),
            Error::SnapshotNotFound
        );
        refused!(
            client,
            &ink_e2e::dave(),
            registry.cancel_restore_request(u64::MAX),
            Error::RestoreRequestNotFound
        );
        refused!(client, &bob, registry.claim_restore_request(42), Error::RestoreRequestNotFound);
        refused!(
            client,
            &bob,
            registry.fail_restore_request(0, "r".repeat(crate::MAX_REASON_LEN + 1)),
            Error::ReasonTooLong
        );
        assert!(query!(client, registry.backups_of(dave)).is_empty());
        assert_eq!(query!(client, registry.pending_restore_request_count()), 0);
        assert_eq!(query!(client, registry.backup_frequency(dave)), CONFIG.default_frequency);
        Ok(())
    }
}

/// Gas, storage deposit and code size per message, small versus large registry.
#[path = "bench.rs"]
mod bench;
