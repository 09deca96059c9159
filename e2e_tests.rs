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
use crate::testing::support::{cid, cid_string, RECIPIENT, TEST_CONFIG as CONFIG};
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

/// The transaction fees a submitted call paid, where the backend charges any.
pub trait FeesPaid {
    /// The fee and tip of the call's transaction; 0 where the backend charges none.
    fn fees_paid(&self) -> u128;
}

/// The sandbox client of ink_e2e 5.1 reports no events.
impl ContractEvents for () {
    fn contract_events(&self) -> Option<Vec<Vec<u8>>> {
        None
    }
}

/// The sandbox client of ink_e2e 5.1 calls the pallet directly: no transaction, no fee.
impl FeesPaid for () {
    fn fees_paid(&self) -> u128 {
        0
    }
}

/// On the node, the `TransactionPayment::TransactionFeePaid { who, actual_fee, tip }` event.
impl FeesPaid for ink_e2e::subxt::blocks::ExtrinsicEvents<ink_e2e::PolkadotConfig> {
    fn fees_paid(&self) -> u128 {
        self.iter()
            .map(|event| event.expect("event decodes"))
            .filter(|event| {
                event.pallet_name() == "TransactionPayment"
                    && event.variant_name() == "TransactionFeePaid"
            })
            .map(|event| {
                let (_who, actual_fee, tip) =
                    <([u8; 32], u128, u128)>::decode(&mut event.field_bytes())
                        .expect("TransactionFeePaid decodes");
                actual_fee + tip
            })
            .sum()
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

/// `$owner` (a keypair) opts `NODE` in with `create_backup`.
macro_rules! opt_in {
    ($client:expr, $registry:expr, $owner:expr) => {
        submit!(
            $client,
            $owner,
            $registry.create_backup(NODE.into(), String::new())
        )
        .0
        .expect("create_backup")
    };
}

/// Dave opts `NODE` in and bob records `cid(1)` of it; returns dave's account.
macro_rules! dave_with_snapshot {
    ($client:expr, $registry:expr) => {{
        let dave = account(AccountKeyring::Dave);
        opt_in!($client, $registry, &ink_e2e::dave());
        submit!(
            $client,
            &ink_e2e::bob(),
            $registry.add_snapshot(NODE.into(), cid(1), String::new(), 1, dave, 1)
        )
        .0
        .unwrap();
        dave
    }};
}

/// Dave asks for an early snapshot of `NODE` (`request_snapshot`), so that the next
/// `add_snapshot` need not wait for his frequency: the sandbox's chain never moves on, so every
/// snapshot of a backup after its first needs one (and on the node, blocks come one per
/// transaction, far fewer than the owner's frequency).
macro_rules! allow_early {
    ($client:expr, $registry:expr) => {
        submit!(
            $client,
            &ink_e2e::dave(),
            $registry.request_snapshot(NODE.into())
        )
        .0
        .expect("request_snapshot")
    };
}

/// Dave opts `NODE` in, bob records `cid(1)` of it, dave requests its restore and bob claims
/// the request; returns the request's id.
macro_rules! claimed_by_bob {
    ($client:expr, $registry:expr) => {{
        dave_with_snapshot!($client, $registry);
        let request_id = submit!(
            $client,
            &ink_e2e::dave(),
            $registry.restore_from_snapshot(cid(1))
        )
        .0
        .unwrap();
        submit!(
            $client,
            &ink_e2e::bob(),
            $registry.claim_restore_request(request_id)
        )
        .0
        .unwrap();
        request_id
    }};
}

/// Alice uploads the code of the contract package `$name` (built by ink_e2e); returns its
/// hash.
macro_rules! upload {
    ($client:expr, $name:literal) => {
        ContractsBackend::<Env>::upload($client, $name, &ink_e2e::alice())
            .submit()
            .await
            .expect("upload failed")
            .code_hash
    };
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
    /// Two authorities; one adds snapshots to a backup its owner created; a stranger's
    /// `add_snapshot` is refused and changes nothing.
    authorities_add_snapshots(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        assert!(query!(client, registry.is_authority(account(AccountKeyring::Bob))));
        assert!(query!(client, registry.is_authority(account(AccountKeyring::Charlie))));
        assert_eq!(query!(client, registry.authority_count()), 2);

        let (result, events) =
            submit!(client, &ink_e2e::dave(), registry.create_backup(NODE.into(), String::new()));
        assert_eq!(result, Ok(()));
        if let Some(created) = event::<BackupCreated>(&events, 0) {
            assert_eq!((created.owner, created.node_id.as_str()), (dave, NODE));
        }
        let (result, events) = submit!(
            client,
            &ink_e2e::charlie(),
            registry.add_snapshot(NODE.into(), cid(1), "first".into(), 7, dave, 4_096)
        );
        assert_eq!(result, Ok(()));
        if let Some(added) = event::<SnapshotAdded>(&events, 0) {
            assert_eq!((added.owner, added.authority), (dave, account(AccountKeyring::Charlie)));
            assert_eq!((added.cid, added.request_id, added.size_bytes), (cid(1), 7, 4_096));
        }
        if let Some(updated) = event::<BackupUpdated>(&events, 1) {
            assert_eq!((updated.owner, updated.snapshot_count), (dave, 1));
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
        opt_in!(client, registry, &ink_e2e::dave());
        let cap = u64::from(CONFIG.max_snapshots_per_backup);
        for n in 1..=cap + 1 {
            allow_early!(client, registry);
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
            allow_early!(client, registry);
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
        assert_eq!(result, Ok(0), "none left");
        let after = client.free_balance(dave).await.expect("balance");
        assert!(after > before, "the refund ({refund}) reached the owner");
        if let Some(deleted) = event::<BackupDeleted>(&events, 0) {
            assert_eq!((deleted.owner, deleted.snapshot_count), (dave, 2));
        }
        if let Some(deleted) = event::<UserStorageDeleted>(&events, 1) {
            assert_eq!((deleted.account, deleted.backup_count, deleted.remaining), (dave, 1, 0));
        }
        assert_eq!(query!(client, registry.backup(dave, NODE.into())), None);
        assert!(query!(client, registry.backups_of(dave)).is_empty());
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(2))), None);
        assert!(query!(client, registry.grantees(dave, NODE.into())).is_empty());
        Ok(())
    }
}

/// Dry-runs `$message` from `$caller`, checks that it costs its caller no storage deposit and
/// refunds it none (its writes are settled with the backup's reserve), then submits it.
/// Returns its value and the transaction fees it paid.
macro_rules! submit_settled {
    ($client:expr, $caller:expr, $message:expr) => {{
        let message = $message;
        let dry_run = dry_run!($client, $caller, message);
        assert_eq!(
            deposit(&dry_run),
            0,
            "{} moved a deposit",
            stringify!($message)
        );
        let result = $client
            .call($caller, &message)
            .submit()
            .await
            .unwrap_or_else(|err| panic!("{} failed: {err:?}", stringify!($message)));
        let fees = FeesPaid::fees_paid(&result.events);
        (result.return_value().unwrap(), fees)
    }};
}

scenario! {
    /// Owners pay for what they keep: over a backup's whole cycle (snapshots past retention,
    /// a pin that leaves the window and is unpinned, grants, a recipient, a restore claimed
    /// and fulfilled) no authority's or owner's call but create and delete moves a storage
    /// deposit, and deletion gives the owner back what creating took. On the node the
    /// balances say the same: the authority and the grantee lose their fees and nothing more.
    owners_pay_for_their_storage(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (dave, eve) = (account(AccountKeyring::Dave), account(AccountKeyring::Eve));
        let bob = account(AccountKeyring::Bob);
        let bob_before = client.free_balance(bob).await.expect("balance");
        let eve_before = client.free_balance(eve).await.expect("balance");
        let (mut bob_fees, mut eve_fees) = (0, 0);
        let create = registry.create_backup(NODE.into(), "laptop".into());
        let charged = deposit(&dry_run!(client, &ink_e2e::dave(), create));
        assert!(charged > 0);
        submit!(client, &ink_e2e::dave(), create).0.unwrap();
        let reserve = query!(client, registry.backup_reserve(dave, NODE.into())).unwrap();
        for n in 1..=7 {
            allow_early!(client, registry);
            bob_fees += submit_settled!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), "nightly".into(), n, dave, n)
            )
            .1;
            if n == 1 {
                submit_settled!(client, &ink_e2e::dave(), registry.pin_snapshot(cid(1)));
            }
        }
        submit_settled!(client, &ink_e2e::dave(), registry.unpin_snapshot(cid(1)));
        submit_settled!(client, &ink_e2e::dave(), registry.grant_access(NODE.into(), eve));
        submit_settled!(
            client,
            &ink_e2e::dave(),
            registry.set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        );
        let (request_id, fees) =
            submit_settled!(client, &ink_e2e::eve(), registry.restore_from_snapshot(cid(7)));
        eve_fees += fees;
        bob_fees +=
            submit_settled!(client, &ink_e2e::bob(), registry.claim_restore_request(request_id)).1;
        bob_fees +=
            submit_settled!(client, &ink_e2e::bob(), registry.fulfil_restore_request(request_id)).1;
        submit_settled!(client, &ink_e2e::dave(), registry.revoke_access(NODE.into(), eve));
        let left = query!(client, registry.backup_reserve(dave, NODE.into())).unwrap();
        assert!(left.bytes < reserve.bytes && left.cells < reserve.cells);
        let fund = registry.fund_backup(NODE.into(), 1);
        let funded = deposit(&dry_run!(client, &ink_e2e::dave(), fund));
        assert!(funded > 0);
        submit!(client, &ink_e2e::dave(), fund).0.unwrap();

        let delete = registry.delete_backup(NODE.into());
        let refund = -deposit(&dry_run!(client, &ink_e2e::dave(), delete));
        // Everything create and fund took, to the pro rata rounding of pallet-contracts (one
        // unit for bytes, one for items).
        let paid = charged + funded;
        assert!(
            (paid - 2..=paid).contains(&refund),
            "the owner gets back what it paid: {refund} of {paid}"
        );
        submit!(client, &ink_e2e::dave(), delete).0.unwrap();
        assert_eq!(query!(client, registry.backup_reserve(dave, NODE.into())), None);
        let bob_after = client.free_balance(bob).await.expect("balance");
        let eve_after = client.free_balance(eve).await.expect("balance");
        assert_eq!(bob_before - bob_after, bob_fees, "the authority paid its fees only");
        assert_eq!(eve_before - eve_after, eve_fees, "the grantee paid its fees only");
        Ok(())
    }
}

scenario! {
    /// Pins: retention never prunes a pinned snapshot, which stays restorable; unpinned, it
    /// is pruned at once when it is older than every kept snapshot.
    pins_outlive_retention(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        opt_in!(client, registry, &ink_e2e::dave());
        let cap = u64::from(CONFIG.max_snapshots_per_backup);
        submit!(
            client,
            &ink_e2e::bob(),
            registry.add_snapshot(NODE.into(), cid(1), String::new(), 1, dave, 1)
        )
        .0
        .unwrap();
        refused!(client, &ink_e2e::eve(), registry.pin_snapshot(cid(1)), Error::NotBackupOwner);
        let (result, events) = submit!(client, &ink_e2e::dave(), registry.pin_snapshot(cid(1)));
        assert_eq!(result, Ok(()));
        if let Some(pinned) = event::<SnapshotPinChanged>(&events, 0) {
            assert_eq!((pinned.owner, pinned.cid, pinned.pinned), (dave, cid(1), true));
        }
        for n in 2..=cap + 3 {
            allow_early!(client, registry);
            submit!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n)
            )
            .0
            .unwrap();
        }
        let kept: Vec<String> = query!(client, registry.snapshots(dave, NODE.into(), 0, 10))
            .unwrap()
            .into_iter()
            .map(|snapshot| snapshot.cid)
            .collect();
        let mut expected = vec![cid(1)];
        expected.extend((4..=cap + 3).map(cid));
        assert_eq!(kept, expected);
        assert_eq!(query!(client, registry.pinned_snapshots(dave, NODE.into())).len(), 1);
        let request = submit!(client, &ink_e2e::dave(), registry.restore_from_snapshot(cid(1)));
        submit!(client, &ink_e2e::dave(), registry.cancel_restore_request(request.0.unwrap()))
            .0
            .unwrap();
        let (result, events) = submit!(client, &ink_e2e::dave(), registry.unpin_snapshot(cid(1)));
        assert_eq!(result, Ok(()));
        if let Some(unpinned) = event::<SnapshotPinChanged>(&events, 0) {
            assert_eq!((unpinned.pinned, unpinned.pruned_cid), (false, Some(cid(1))));
        }
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        Ok(())
    }
}

scenario! {
    /// Request storage is bounded by the backups: each new request of a backup removes its
    /// closed one, so restores leave one request each and the backup's reserve is the same
    /// after every cycle.
    requests_do_not_pile_up(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = dave_with_snapshot!(client, registry);
        let mut previous: Option<RequestId> = None;
        let mut reserve_after_first = None;
        for _ in 0..3 {
            let restore = registry.restore_from_snapshot(cid(1));
            let (id, _) = submit_settled!(client, &ink_e2e::dave(), restore);
            if let Some(previous) = previous {
                assert_eq!(query!(client, registry.restore_request(previous)), None);
            }
            submit!(client, &ink_e2e::bob(), registry.claim_restore_request(id)).0.unwrap();
            submit!(client, &ink_e2e::bob(), registry.fulfil_restore_request(id)).0.unwrap();
            let backup = query!(client, registry.backup(dave, NODE.into())).unwrap();
            assert_eq!(backup.latest_request, Some(id));
            let reserve = query!(client, registry.backup_reserve(dave, NODE.into())).unwrap();
            let first = *reserve_after_first.get_or_insert(reserve);
            assert_eq!(reserve, first, "the closed request's cell is reused");
            previous = Some(id);
        }
        Ok(())
    }
}

scenario! {
    /// Upgrade: the admin proposes freshly uploaded code and applies it (here with no delay:
    /// the sandbox's chain does not move on); every backup stays readable and writable. Only
    /// the admin may propose, cancel or apply, and only uploaded code is applied.
    upgrade_keeps_backups(client) {
        let contract = deploy!(client, Config { upgrade_delay: 0, ..CONFIG });
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = account(AccountKeyring::Dave);
        let alice = account(AccountKeyring::Alice);
        opt_in!(client, registry, &ink_e2e::dave());
        for n in 1..=2 {
            allow_early!(client, registry);
            submit!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n)
            )
            .0
            .unwrap();
        }
        let backup_before = query!(client, registry.backup(dave, NODE.into())).unwrap();
        let code_hash = upload!(client, "backup_registry");
        for stranger in [ink_e2e::bob(), ink_e2e::dave()] {
            refused!(client, &stranger, registry.propose_upgrade(code_hash), Error::NotAdmin);
        }
        refused!(client, &ink_e2e::alice(), registry.apply_upgrade(), Error::NoUpgradeProposed);

        // Code never uploaded: proposed, then refused by the pallet, then withdrawn.
        submit!(client, &ink_e2e::alice(), registry.propose_upgrade([0xab; 32].into())).0.unwrap();
        refused!(client, &ink_e2e::alice(), registry.apply_upgrade(), Error::CodeUpgradeFailed);
        refused!(client, &ink_e2e::bob(), registry.cancel_upgrade(), Error::NotAdmin);
        let (result, events) = submit!(client, &ink_e2e::alice(), registry.cancel_upgrade());
        assert_eq!(result, Ok(()));
        if let Some(cancelled) = event::<UpgradeCancelled>(&events, 0) {
            assert_eq!((cancelled.admin, cancelled.code_hash), (alice, [0xab; 32].into()));
        }

        let (result, events) = submit!(client, &ink_e2e::alice(), registry.propose_upgrade(code_hash));
        assert_eq!(result, Ok(()));
        let pending = query!(client, registry.pending_upgrade()).unwrap();
        if let Some(proposed) = event::<UpgradeProposed>(&events, 0) {
            assert_eq!((proposed.code_hash, proposed.applies_at), (code_hash, pending.applies_at));
        }
        refused!(client, &ink_e2e::bob(), registry.apply_upgrade(), Error::NotAdmin);
        let (result, events) = submit!(client, &ink_e2e::alice(), registry.apply_upgrade());
        assert_eq!(result, Ok(()));
        if let Some(upgraded) = event::<CodeUpgraded>(&events, 0) {
            assert_eq!((upgraded.admin, upgraded.code_hash), (alice, code_hash));
        }
        assert_eq!(query!(client, registry.pending_upgrade()), None);
        assert_eq!(query!(client, registry.storage_version()), crate::STORAGE_VERSION);
        assert_eq!(query!(client, registry.backup(dave, NODE.into())), Some(backup_before));
        assert_eq!(
            query!(client, registry.latest_snapshot(dave, NODE.into())).unwrap().cid,
            cid(2)
        );
        assert_eq!(query!(client, registry.admin()), alice);
        allow_early!(client, registry);
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

/// A message of the second version (`testing/v2`), which version 1's call builder lacks:
/// `$label`'s selector, no arguments, returning `$returns`.
macro_rules! v2_message {
    ($contract:expr, $label:literal, $returns:ty) => {
        ink::env::call::build_call::<Env>()
            .call($contract.account_id)
            .exec_input(ink::env::call::ExecutionInput::new(
                ink::env::call::Selector::new(ink::selector_bytes!($label)),
            ))
            .returns::<$returns>()
    };
}

scenario! {
    /// The upgrade a later release makes: to a second version of the contract (`testing/v2`,
    /// lib.rs with a new storage field and a migration), applied with every kind of state in
    /// place. Backups, snapshots, pins, grants, recipients, frequencies and an open request
    /// read the same after it; only the admin migrates, which raises `storage_version` and
    /// fills the new field; every kind of write keeps working on the migrated storage.
    upgrade_to_a_second_version_migrates(client) {
        let contract = deploy!(client, Config { upgrade_delay: 0, ..CONFIG });
        let mut registry = contract.call_builder::<BackupRegistry>();
        let request_id = claimed_by_bob!(client, registry);
        let (dave, eve) = (account(AccountKeyring::Dave), account(AccountKeyring::Eve));
        allow_early!(client, registry);
        submit!(
            client,
            &ink_e2e::bob(),
            registry.add_snapshot(NODE.into(), cid(2), "second".into(), 2, dave, 2)
        )
        .0
        .unwrap();
        let dave_kp = ink_e2e::dave();
        submit!(client, &dave_kp, registry.pin_snapshot(cid(2))).0.unwrap();
        submit!(client, &dave_kp, registry.grant_access(NODE.into(), eve)).0.unwrap();
        submit!(
            client,
            &dave_kp,
            registry.set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        )
        .0
        .unwrap();
        submit!(client, &dave_kp, registry.set_backup_offchain_worker_frequency(500)).0.unwrap();
        macro_rules! state {
            () => {
                (
                    query!(client, registry.backup(dave, NODE.into())),
                    query!(client, registry.snapshots(dave, NODE.into(), 0, 32)),
                    query!(client, registry.pinned_snapshots(dave, NODE.into())),
                    query!(client, registry.grantees(dave, NODE.into())),
                    query!(client, registry.backup_recipient(dave, NODE.into())),
                    query!(client, registry.backup_frequency(dave)),
                    query!(client, registry.restore_request(request_id)),
                    query!(client, registry.pending_restore_requests(0, 32)),
                    (query!(client, registry.config()), query!(client, registry.authority_count())),
                )
            };
        }
        let before = state!();

        let v2_code = upload!(client, "backup_registry_v2");
        submit!(client, &ink_e2e::alice(), registry.propose_upgrade(v2_code)).0.unwrap();
        submit!(client, &ink_e2e::alice(), registry.apply_upgrade()).0.unwrap();
        assert_eq!(state!(), before, "version 1's storage reads the same on the second version");
        assert_eq!(query!(client, registry.storage_version()), 1, "not migrated yet");
        assert_eq!(query!(client, v2_message!(contract, "migrated_at", Option<u32>)), None);
        refused!(client, &ink_e2e::bob(), v2_message!(contract, "migrate", Result<()>), Error::NotAdmin);
        submit!(client, &ink_e2e::alice(), v2_message!(contract, "migrate", Result<()>)).0.unwrap();
        assert_eq!(query!(client, registry.storage_version()), 2);
        let migrated_at = query!(client, v2_message!(contract, "migrated_at", Option<u32>));
        assert!(migrated_at.is_some(), "the new field is written");
        submit!(client, &ink_e2e::alice(), v2_message!(contract, "migrate", Result<()>)).0.unwrap();
        assert_eq!(
            query!(client, v2_message!(contract, "migrated_at", Option<u32>)),
            migrated_at,
            "a second migration changes nothing"
        );
        assert_eq!(state!(), before);

        // Every kind of write, on the migrated storage.
        submit!(client, &ink_e2e::bob(), registry.fulfil_restore_request(request_id)).0.unwrap();
        allow_early!(client, registry);
        submit!(
            client,
            &ink_e2e::charlie(),
            registry.add_snapshot(NODE.into(), cid(3), String::new(), 3, dave, 3)
        )
        .0
        .unwrap();
        submit!(client, &dave_kp, registry.unpin_snapshot(cid(2))).0.unwrap();
        submit!(client, &dave_kp, registry.revoke_access(NODE.into(), eve)).0.unwrap();
        let id = submit!(client, &ink_e2e::eve(), registry.create_backup(NODE.into(), String::new()));
        assert_eq!(id.0, Ok(()));
        submit!(client, &ink_e2e::alice(), registry.add_authority(eve)).0.unwrap();
        assert_eq!(
            query!(client, registry.latest_snapshot(dave, NODE.into())).unwrap().cid,
            cid(3)
        );
        submit!(client, &dave_kp, registry.delete_backup(NODE.into())).0.unwrap();
        assert_eq!(query!(client, registry.backup(dave, NODE.into())), None);
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        Ok(())
    }
}

scenario! {
    /// An open restore request holds its snapshot: retention prunes the next oldest instead,
    /// and the requested snapshot goes only when the request closes (the event says so).
    requested_snapshot_is_held(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = dave_with_snapshot!(client, registry);
        let request_id =
            submit!(client, &ink_e2e::dave(), registry.restore_from_snapshot(cid(1))).0.unwrap();
        let cap = u64::from(CONFIG.max_snapshots_per_backup);
        for n in 2..=cap + 2 {
            allow_early!(client, registry);
            let (result, events) = submit!(
                client,
                &ink_e2e::bob(),
                registry.add_snapshot(NODE.into(), cid(n), String::new(), n, dave, n)
            );
            assert_eq!(result, Ok(()));
            if let Some(added) = event::<SnapshotAdded>(&events, 0) {
                let pruned = (n == cap + 2).then(|| cid(2));
                assert_eq!(added.pruned_cid, pruned, "cid(1) is held, so cid(2) goes first");
            }
        }
        let kept = |snapshots: Vec<Snapshot>| -> Vec<String> {
            snapshots.into_iter().map(|snapshot| snapshot.cid).collect()
        };
        let expected: Vec<String> = [1].into_iter().chain(3..=cap + 2).map(cid).collect();
        assert_eq!(kept(query!(client, registry.snapshots(dave, NODE.into(), 0, 10)).unwrap()), expected);
        submit!(client, &ink_e2e::bob(), registry.claim_restore_request(request_id)).0.unwrap();
        let (result, events) =
            submit!(client, &ink_e2e::bob(), registry.fulfil_restore_request(request_id));
        assert_eq!(result, Ok(()));
        if let Some(closed) = event::<RestoreRequestUpdated>(&events, 0) {
            assert_eq!(closed.pruned_cid, Some(cid(1)));
        }
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        let expected: Vec<String> = (3..=cap + 2).map(cid).collect();
        assert_eq!(kept(query!(client, registry.snapshots(dave, NODE.into(), 0, 10)).unwrap()), expected);
        Ok(())
    }
}

scenario! {
    /// While paused, authorities and new commitments are refused, and owners still leave:
    /// revoking a grantee (which cancels its request), cancelling, unpinning, clearing the
    /// recipient, deleting (one `BackupDeleted` per backup, and the frequency setting goes
    /// with the last one).
    owners_leave_while_paused(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (alice, dave, eve) = (
            account(AccountKeyring::Alice),
            account(AccountKeyring::Dave),
            account(AccountKeyring::Eve),
        );
        let dave_signer = ink_e2e::dave();
        dave_with_snapshot!(client, registry);
        submit!(client, &dave_signer, registry.create_backup("node-2".into(), String::new()))
            .0
            .unwrap();
        submit!(client, &dave_signer, registry.grant_access(NODE.into(), eve)).0.unwrap();
        submit!(client, &dave_signer, registry.pin_snapshot(cid(1))).0.unwrap();
        submit!(
            client,
            &dave_signer,
            registry.set_backup_recipient(NODE.into(), Some(RECIPIENT.into()))
        )
        .0
        .unwrap();
        submit!(client, &dave_signer, registry.set_backup_offchain_worker_frequency(600))
            .0
            .unwrap();
        let request_id =
            submit!(client, &ink_e2e::eve(), registry.restore_from_snapshot(cid(1))).0.unwrap();

        let (result, events) = submit!(client, &ink_e2e::alice(), registry.set_paused(true));
        assert_eq!(result, Ok(()));
        if let Some(paused) = event::<PauseChanged>(&events, 0) {
            assert_eq!((paused.admin, paused.paused), (alice, true));
        }
        refused!(
            client,
            &ink_e2e::bob(),
            registry.add_snapshot(NODE.into(), cid(2), String::new(), 2, dave, 2),
            Error::Paused
        );
        refused!(client, &ink_e2e::bob(), registry.claim_restore_request(request_id), Error::Paused);
        refused!(
            client,
            &dave_signer,
            registry.create_backup("node-3".into(), String::new()),
            Error::Paused
        );
        refused!(client, &dave_signer, registry.grant_access(NODE.into(), alice), Error::Paused);

        let (result, events) =
            submit!(client, &dave_signer, registry.revoke_access(NODE.into(), eve));
        assert_eq!(result, Ok(()));
        if let Some(cancelled) = event::<RestoreRequestUpdated>(&events, 1) {
            assert_eq!((cancelled.request_id, cancelled.by), (request_id, dave));
            assert_eq!(cancelled.status, RestoreStatus::Cancelled);
        }
        let request = query!(client, registry.restore_request(request_id)).unwrap();
        assert_eq!(request.status, RestoreStatus::Cancelled);
        submit!(client, &dave_signer, registry.unpin_snapshot(cid(1))).0.unwrap();
        submit!(client, &dave_signer, registry.set_backup_recipient(NODE.into(), None))
            .0
            .unwrap();
        assert_eq!(query!(client, registry.backup_recipient(dave, NODE.into())), None);
        let (result, events) = submit!(client, &dave_signer, registry.delete_user_storage());
        assert_eq!(result, Ok(0));
        if let Some(events) = &events {
            let deleted: Vec<String> = events[..2]
                .iter()
                .map(|data| BackupDeleted::decode(&mut &data[..]).unwrap().node_id)
                .collect();
            assert_eq!(deleted, [NODE, "node-2"]);
            let summary = UserStorageDeleted::decode(&mut &events[2][..]).unwrap();
            assert_eq!((summary.backup_count, summary.remaining), (2, 0));
        }
        assert!(query!(client, registry.backups_of(dave)).is_empty());
        assert_eq!(query!(client, registry.snapshot_by_cid(cid(1))), None);
        assert_eq!(query!(client, registry.backup_frequency(dave)), CONFIG.default_frequency);
        assert!(query!(client, registry.is_paused()));
        Ok(())
    }
}

scenario! {
    /// The admin's events: `Instantiated` with the config, then each authority; a proposed
    /// admin withdrawn (by the admin only) can no longer accept.
    admin_events_and_withdrawn_proposal(client) {
        let contract = deploy!(client, CONFIG);
        let alice = account(AccountKeyring::Alice);
        let eve = account(AccountKeyring::Eve);
        if let Some(events) = ContractEvents::contract_events(&contract.events) {
            let instantiated = Instantiated::decode(&mut &events[0][..]).unwrap();
            assert_eq!((instantiated.admin, instantiated.config), (alice, CONFIG));
            let added = AuthorityChanged::decode(&mut &events[1][..]).unwrap();
            assert_eq!(added.authority, account(AccountKeyring::Bob));
        }
        let mut registry = contract.call_builder::<BackupRegistry>();
        refused!(client, &ink_e2e::alice(), registry.cancel_admin_proposal(), Error::NotPendingAdmin);
        submit!(client, &ink_e2e::alice(), registry.propose_admin(eve)).0.unwrap();
        for stranger in [ink_e2e::eve(), ink_e2e::bob(), ink_e2e::ferdie()] {
            refused!(client, &stranger, registry.cancel_admin_proposal(), Error::NotAdmin);
        }
        let (result, events) = submit!(client, &ink_e2e::alice(), registry.cancel_admin_proposal());
        assert_eq!(result, Ok(()));
        if let Some(cancelled) = event::<AdminProposalCancelled>(&events, 0) {
            assert_eq!((cancelled.admin, cancelled.proposed), (alice, eve));
        }
        assert_eq!(query!(client, registry.pending_admin()), None);
        refused!(client, &ink_e2e::eve(), registry.accept_admin(), Error::NotPendingAdmin);
        assert_eq!(query!(client, registry.admin()), alice);
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
            registry.add_snapshot(NODE.into(), cid(1), String::new(), 1, dave, 1),
            Error::BackupNotFound
        );
        refused!(
            client,
            &bob,
            registry.add_snapshot(long_node.clone(), cid(1), String::new(), 1, dave, 1),
            Error::BackupNotFound
        );
        refused!(
            client,
            &bob,
            registry.add_snapshot(NODE.into(), cid(1), long_text.clone(), 1, dave, 1),
            Error::DescriptionTooLong
        );
        // Well-formed CIDs of no snapshot block: a sha2-256 digest cut to 20 bytes, an identity
        // multihash, a sha2-512 one.
        let digest = [7u8; 64];
        let unusual = [
            cid_string(&[&[0x01, 0x55, 0x12, 0x14][..], &digest[..20]].concat()),
            cid_string(&[&[0x01, 0x55, 0x00, 0x20][..], &digest[..32]].concat()),
            cid_string(&[&[0x01, 0x55, 0x13, 0x40][..], &digest[..]].concat()),
        ];
        for bad_cid in ["", "QmNotACid", "bafy!!", "f0155", &"b".repeat(1_000)]
            .into_iter()
            .chain(unusual.iter().map(String::as_str))
        {
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

/// `$blocks` blocks go by on the node, one transaction each.
macro_rules! let_blocks_pass {
    ($client:expr, $registry:expr, $blocks:expr) => {
        for _ in 0..$blocks {
            submit!(
                $client,
                &ink_e2e::eve(),
                $registry.set_backup_offchain_worker_frequency(600)
            )
            .0
            .unwrap();
        }
    };
}

/// An upgrade is applied no sooner than `upgrade_delay` blocks after its proposal, and owners
/// may leave in between. Node only, as it needs blocks to go by.
mod upgrades_wait_for_the_delay {
    use super::*;

    #[ink_e2e::test]
    async fn node<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
        let client = &mut client;
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        opt_in!(client, registry, &ink_e2e::dave());
        let code_hash = upload!(client, "backup_registry");
        submit!(
            client,
            &ink_e2e::alice(),
            registry.propose_upgrade(code_hash)
        )
        .0
        .unwrap();
        refused!(
            client,
            &ink_e2e::alice(),
            registry.apply_upgrade(),
            Error::UpgradeNotDue
        );
        // An owner who objects leaves before the new code runs.
        submit!(
            client,
            &ink_e2e::dave(),
            registry.delete_backup(NODE.into())
        )
        .0
        .unwrap();
        let_blocks_pass!(client, registry, CONFIG.upgrade_delay);
        let (result, events) = submit!(client, &ink_e2e::alice(), registry.apply_upgrade());
        assert_eq!(result, Ok(()));
        let upgraded = event::<CodeUpgraded>(&events, 0).expect("the node reports events");
        assert_eq!(upgraded.code_hash, code_hash);
        assert!(query!(client, registry.backups_of(account(AccountKeyring::Dave))).is_empty());
        Ok(())
    }
}

/// Snapshots of a backup come no sooner than its owner's frequency, or once earlier when the
/// owner asks (`request_snapshot`). Node only, as it needs blocks to go by.
mod snapshots_wait_for_the_frequency {
    use super::*;

    #[ink_e2e::test]
    async fn node<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
        let client = &mut client;
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let dave = dave_with_snapshot!(client, registry);
        macro_rules! add {
            ($n:expr) => {
                registry.add_snapshot(NODE.into(), cid($n), String::new(), $n, dave, $n)
            };
        }
        refused!(client, &ink_e2e::bob(), add!(2), Error::TooSoon);
        submit!(
            client,
            &ink_e2e::dave(),
            registry.set_backup_offchain_worker_frequency(CONFIG.min_frequency)
        )
        .0
        .unwrap();
        let (result, events) = submit!(
            client,
            &ink_e2e::dave(),
            registry.request_snapshot(NODE.into())
        );
        assert_eq!(result, Ok(()));
        let requested = event::<SnapshotRequested>(&events, 0).expect("the node reports events");
        assert_eq!((requested.owner, requested.node_id.as_str()), (dave, NODE));
        refused!(
            client,
            &ink_e2e::ferdie(),
            registry.request_snapshot(NODE.into()),
            Error::BackupNotFound
        );
        submit!(client, &ink_e2e::bob(), add!(2)).0.unwrap();
        // One early snapshot only.
        refused!(client, &ink_e2e::bob(), add!(3), Error::TooSoon);
        let_blocks_pass!(client, registry, CONFIG.min_frequency);
        submit!(client, &ink_e2e::bob(), add!(3)).0.unwrap();
        let kept = query!(client, registry.snapshots(dave, NODE.into(), 0, 10)).unwrap();
        assert_eq!(kept.len(), 3);
        assert!(kept[2].block_number - kept[1].block_number >= CONFIG.min_frequency);
        Ok(())
    }
}

/// Claims pass on (node only, as they need blocks to go by; every submitted call, refused or
/// not, is one block): the claimant renews before its claim lapses; once lapsed, the claimant
/// may neither renew nor claim again for one more `claim_timeout`, while another authority may
/// take it over; a removed authority's claim is claimed at once; renewals end
/// `MAX_CLAIM_TIMEOUT` blocks after the claim. Block counts keep a margin of a block on each
/// side, as a dry run sees the block before the one its transaction lands in.
mod claims_pass_on {
    use super::*;

    #[ink_e2e::test]
    async fn node<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
        let client = &mut client;
        let timeout = 10;
        let contract = deploy!(
            client,
            Config {
                claim_timeout: timeout,
                ..CONFIG
            }
        );
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (bob, charlie) = (
            account(AccountKeyring::Bob),
            account(AccountKeyring::Charlie),
        );
        // Claimed in block c.
        let request_id = claimed_by_bob!(client, registry);
        refused!(
            client,
            &ink_e2e::dave(),
            registry.cancel_restore_request(request_id),
            Error::RestoreRequestAlreadyClaimed
        );
        refused!(
            client,
            &ink_e2e::charlie(),
            registry.renew_claim(request_id),
            Error::NotClaimant
        );
        refused!(
            client,
            &ink_e2e::ferdie(),
            registry.renew_claim(request_id),
            Error::NotAuthorized
        );
        let_blocks_pass!(client, registry, 5);
        // Renewed in block c + 9.
        let (result, events) = submit!(client, &ink_e2e::bob(), registry.renew_claim(request_id));
        assert_eq!(result, Ok(()));
        if let Some(renewed) = event::<RestoreRequestUpdated>(&events, 0) {
            let in_progress = RestoreStatus::InProgress { authority: bob };
            assert_eq!((renewed.by, renewed.status), (bob, in_progress));
        }
        // Block c + 13: the first claim would have lapsed, the renewed one holds.
        let_blocks_pass!(client, registry, 3);
        refused!(
            client,
            &ink_e2e::charlie(),
            registry.claim_restore_request(request_id),
            Error::RestoreRequestAlreadyClaimed
        );
        // Blocks c + 24 and c + 25: lapsed, and bob may neither renew nor claim it again yet.
        let_blocks_pass!(client, registry, timeout);
        refused!(
            client,
            &ink_e2e::bob(),
            registry.renew_claim(request_id),
            Error::ClaimNotRenewable
        );
        refused!(
            client,
            &ink_e2e::bob(),
            registry.claim_restore_request(request_id),
            Error::RestoreRequestAlreadyClaimed
        );
        // Block c + 30: one more `claim_timeout` went by; bob's turn again.
        let_blocks_pass!(client, registry, 4);
        submit!(
            client,
            &ink_e2e::bob(),
            registry.claim_restore_request(request_id)
        )
        .0
        .unwrap();
        // Lapsed again: charlie takes it over at once.
        let_blocks_pass!(client, registry, timeout);
        let (result, events) = submit!(
            client,
            &ink_e2e::charlie(),
            registry.claim_restore_request(request_id)
        );
        assert_eq!(result, Ok(()));
        if let Some(taken) = event::<RestoreRequestUpdated>(&events, 0) {
            assert_eq!(
                taken.status,
                RestoreStatus::InProgress { authority: charlie }
            );
        }
        refused!(
            client,
            &ink_e2e::bob(),
            registry.fulfil_restore_request(request_id),
            Error::NotClaimant
        );
        // Charlie is removed: bob claims its fresh claim at once.
        submit!(
            client,
            &ink_e2e::alice(),
            registry.remove_authority(charlie)
        )
        .0
        .unwrap();
        submit!(
            client,
            &ink_e2e::bob(),
            registry.claim_restore_request(request_id)
        )
        .0
        .unwrap();
        submit!(
            client,
            &ink_e2e::bob(),
            registry.fulfil_restore_request(request_id)
        )
        .0
        .unwrap();

        // With `claim_timeout` at `MAX_CLAIM_TIMEOUT`, a renewal a block or more after the
        // claim would hold it past the bound.
        let longest = Config {
            claim_timeout: crate::MAX_CLAIM_TIMEOUT,
            ..CONFIG
        };
        let contract = deploy!(client, longest);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let request_id = claimed_by_bob!(client, registry);
        let_blocks_pass!(client, registry, 1);
        refused!(
            client,
            &ink_e2e::bob(),
            registry.renew_claim(request_id),
            Error::ClaimNotRenewable
        );
        let request = query!(client, registry.restore_request(request_id)).unwrap();
        assert_eq!(request.status, RestoreStatus::InProgress { authority: bob });
        assert_eq!(request.updated_at, request.claimed_at, "not renewed");
        Ok(())
    }
}

/// An input over the 16 KiB buffer ink! reads a call's input into never reaches the contract:
/// the call traps before any code of the registry runs, and nothing changes. Node only, as
/// the limit is the wasm runtime's (the README's limits section says so).
mod inputs_over_16_kib_trap {
    use super::*;

    #[ink_e2e::test]
    async fn node<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
        let client = &mut client;
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        let create = registry.create_backup("n".repeat(17_000), String::new());
        let dry_run = client.call(&ink_e2e::dave(), &create).dry_run().await;
        let trapped = dry_run.map_or(true, |dry_run| dry_run.is_err());
        assert!(trapped, "a 17,000-byte node id reached the contract");
        let submitted = client.call(&ink_e2e::dave(), &create).submit().await;
        assert!(submitted.is_err(), "the transaction failed");
        assert!(query!(client, registry.backups_of(account(AccountKeyring::Dave))).is_empty());
        // The same call with a node id the contract answers.
        refused!(
            client,
            &ink_e2e::dave(),
            registry.create_backup("n".repeat(5_000), String::new()),
            Error::InvalidNodeId
        );
        Ok(())
    }
}

/// Call arguments already SCALE-encoded, written as they are.
#[derive(Clone)]
struct EncodedArgs(Vec<u8>);

impl Encode for EncodedArgs {
    fn size_hint(&self) -> usize {
        self.0.len()
    }

    fn encode_to<O: ink::scale::Output + ?Sized>(&self, dest: &mut O) {
        dest.write(&self.0)
    }
}

/// An argument of a message, as the metadata types it.
#[derive(Debug, Clone)]
enum Arg {
    /// A `String`, with the argument's label.
    Text(String),
    /// An `Option<String>`, with the argument's label.
    OptionalText(String),
    /// Any other type, encoded as `encoded` (an account is dave).
    Fixed(Vec<u8>),
}

/// A message of the contract that takes text, read from the metadata.
#[derive(Debug)]
struct TextMessage {
    label: String,
    selector: [u8; 4],
    args: Vec<Arg>,
}

/// Every message whose arguments include a `String` or an `Option<String>`, from the
/// metadata that ink_e2e built with the contract.
fn text_messages() -> Vec<TextMessage> {
    let wasm = ink_e2e::build_root_and_contract_dependencies().remove(0);
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wasm.with_extension("json")).expect("metadata"))
            .expect("metadata is JSON");
    let types = metadata["types"].as_array().expect("types");
    let type_of = |id: &serde_json::Value| &types[id.as_u64().expect("a type id") as usize]["type"];
    let is_str = |ty: &serde_json::Value| ty["def"]["primitive"] == "str";
    let dave = account(AccountKeyring::Dave);
    let mut found = Vec::new();
    for message in metadata["spec"]["messages"].as_array().expect("messages") {
        let args: Vec<Arg> = message["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| {
                let label = arg["label"].as_str().expect("label").to_string();
                let ty = type_of(&arg["type"]["type"]);
                let path = ty["path"].as_array().cloned().unwrap_or_default();
                let last = path.last().and_then(|p| p.as_str()).unwrap_or_default();
                match (ty["def"]["primitive"].as_str(), last) {
                    (Some("str"), _) => Arg::Text(label),
                    (Some("u32"), _) => Arg::Fixed(0u32.encode()),
                    (Some("u64"), _) => Arg::Fixed(0u64.encode()),
                    (Some("bool"), _) => Arg::Fixed(false.encode()),
                    (None, "AccountId") => Arg::Fixed(dave.encode()),
                    (None, "Hash") => Arg::Fixed([0u8; 32].encode()),
                    (None, "Option") if is_str(type_of(&ty["params"][0]["type"])) => {
                        Arg::OptionalText(label)
                    }
                    (None, "Vec") => Arg::Fixed(Vec::<u8>::new().encode()),
                    other => panic!("argument {label} of an unknown type {other:?}"),
                }
            })
            .collect();
        if !args
            .iter()
            .any(|arg| matches!(arg, Arg::Text(_) | Arg::OptionalText(_)))
        {
            continue;
        }
        let selector = message["selector"].as_str().expect("selector");
        let selector = u32::from_str_radix(selector.trim_start_matches("0x"), 16).expect("hex");
        found.push(TextMessage {
            label: message["label"].as_str().expect("label").to_string(),
            selector: selector.to_be_bytes(),
            args,
        });
    }
    found
}

/// The longest valid value of a text argument, by its label: every text argument of a message
/// must be named here, so that a new one cannot go untested.
fn longest_valid(label: &str) -> String {
    match label {
        "node_id" => "n".repeat(crate::MAX_NODE_ID_LEN),
        "description" => "d".repeat(crate::MAX_DESCRIPTION_LEN),
        "reason" => "r".repeat(crate::MAX_REASON_LEN),
        "recipient" => RECIPIENT.into(),
        // A CIDv1 (59 characters) is the longest the registry accepts.
        "cid" | "snapshot_cid" => cid(u64::MAX),
        other => panic!("text argument {other:?}: say what its longest valid value is"),
    }
}

/// Too-long values for an argument named `label`: 129, 300 and 5,000 bytes, ASCII and
/// multibyte UTF-8 (CIDs in base32 symbols, so that they reach the CID parser).
fn too_long(label: &str) -> Vec<String> {
    let base = if label.contains("cid") { "b" } else { "" };
    [129, 300, 5_000]
        .into_iter()
        .flat_map(|len| {
            [
                format!("{base}{}", "a".repeat(len)),
                format!("{base}{}", "é".repeat(len / 2 + 1)),
            ]
        })
        .collect()
}

/// The encoded arguments of `message` with text argument `long_at` (by position) set to
/// `long`, and every other text argument at its longest valid value.
fn encode_args(message: &TextMessage, long_at: usize, long: Option<&str>) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (position, arg) in message.args.iter().enumerate() {
        let text = |label: &str| match long {
            Some(long) if position == long_at => long.to_string(),
            _ => longest_valid(label),
        };
        match arg {
            Arg::Text(label) => text(label).encode_to(&mut encoded),
            Arg::OptionalText(label) => Some(text(label)).encode_to(&mut encoded),
            Arg::Fixed(bytes) => encoded.extend_from_slice(bytes),
        }
    }
    encoded
}

scenario! {
    /// Every message that takes text, found in the metadata, answers inputs of every length
    /// itself: the longest valid values reach the contract, and 129, 300 and 5,000-byte
    /// values (ASCII and multibyte) get the contract's `Err`, `None` or an empty list, never a
    /// pallet error (on the node, a storage key over 128 bytes is one).
    inputs_of_any_length_get_an_answer(client) {
        let contract = deploy!(client, CONFIG);
        let mut registry = contract.call_builder::<BackupRegistry>();
        dave_with_snapshot!(client, registry);
        let messages = text_messages();
        let labels: Vec<&str> = messages.iter().map(|m| m.label.as_str()).collect();
        for expected in ["add_snapshot", "restore_from_snapshot", "grant_access", "grantees"] {
            assert!(labels.contains(&expected), "{expected} missing from {labels:?}");
        }
        for message in &messages {
            let calls = message.args.iter().enumerate().flat_map(|(position, arg)| {
                let label = match arg {
                    Arg::Text(label) | Arg::OptionalText(label) => label.clone(),
                    Arg::Fixed(_) => return Vec::new(),
                };
                too_long(&label)
                    .into_iter()
                    .map(|long| (Some(long), position))
                    .collect()
            });
            for (long, position) in std::iter::once((None, 0)).chain(calls) {
                let args = encode_args(message, position, long.as_deref());
                let call = ink::env::call::build_call::<Env>()
                    .call(contract.account_id)
                    .exec_input(
                        ink::env::call::ExecutionInput::new(ink::env::call::Selector::new(
                            message.selector,
                        ))
                        .push_arg(EncodedArgs(args)),
                    )
                    .returns::<()>();
                let dry_run = dry_run!(client, &ink_e2e::dave(), call);
                let what = format!(
                    "{} with argument {position} of {} bytes",
                    message.label,
                    long.as_ref().map_or(0, String::len)
                );
                assert!(
                    !dry_run.is_err(),
                    "{what}: the pallet refused it: {:?}",
                    dry_run.exec_result.result
                );
                if long.is_none() {
                    continue;
                }
                let answer = dry_run.exec_return_value();
                assert_eq!(answer.data.first(), Some(&0), "{what}: no LangError");
                if answer.did_revert() {
                    assert_eq!(answer.data.get(1), Some(&1), "{what}: an Err");
                    Error::decode(&mut &answer.data[2..])
                        .unwrap_or_else(|_| panic!("{what}: the contract's own Error"));
                } else {
                    assert_eq!(&answer.data[1..], &[0], "{what}: None or an empty list");
                }
            }
        }
        Ok(())
    }
}

/// Gas, storage deposit and code size per message, small versus large registry.
#[path = "testing/bench.rs"]
mod bench;
