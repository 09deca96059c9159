//! Measured cost of every message on the real pallet-contracts (the sandbox backend), on a
//! small registry and on a large one, and a check that no message's cost grows with the
//! registry: `cargo test --features e2e-tests bench -- --nocapture`. Writes the table to
//! `target/bench/gas.md` and `target/bench/gas.json`.
//!
//! Both registries hold the measured owner's state: dave owns `node-1` (1 snapshot, a pending
//! restore request, grantee eve), `node-2` (1 snapshot, a restore request claimed by bob) and
//! `node-3` (at the retention cap). The large one also holds 1,000 backups of 100 other
//! accounts, one snapshot each, recorded before dave's.

use super::*;
use ink_sandbox::frame_support::sp_runtime::traits::Dispatchable;
use ink_sandbox::frame_system::{self, pallet_prelude::BlockNumberFor};
use ink_sandbox::Sandbox;
use std::fmt::Write as _;

/// Accounts besides dave in the large registry, and backups each.
const OTHER_ACCOUNTS: u8 = 100;
const BACKUPS_EACH: u8 = 10;
/// Largest growth of ref_time or proof_size allowed from the small to the large registry.
const MAX_GROWTH: f64 = 1.05;
/// ink! 5.1.1's `erc20` example built the same way (`cargo contract build --release`,
/// cargo-contract 5.0.3, Rust 1.86): 6,520 bytes for 7 entry points, the yardstick of the
/// bytes per entry point printed beside ours.
const ERC20_BYTES_PER_ENTRY_POINT: u64 = 6_520 / 7;
/// Regression guard on the release wasm: bytes per entry point at most 5 % above the 1,098 of
/// 2026-12-02 (47,196 bytes for 43 entry points), so that new messages may bring their own
/// code but no feature bloats the others.
const MAX_BYTES_PER_ENTRY_POINT: u64 = 1_098 * 105 / 100;

/// ink_e2e's default sandbox, except that System's events are cleared before each execution.
/// The sandbox never ends a block, and pallet-contracts (asked by ink_sandbox to collect
/// events) decodes every event of the block on each call: building the large registries
/// cost time quadratic in their size, most of it copying old events. A call's own events,
/// and what it is charged, are unchanged.
#[derive(Default)]
pub struct BenchSandbox(ink_e2e::DefaultSandbox);

impl Sandbox for BenchSandbox {
    type Runtime = <ink_e2e::DefaultSandbox as Sandbox>::Runtime;

    fn execute_with<T>(&mut self, execute: impl FnOnce() -> T) -> T {
        self.0.execute_with(|| {
            frame_system::Pallet::<Self::Runtime>::reset_events();
            execute()
        })
    }

    fn dry_run<T>(&mut self, action: impl FnOnce(&mut Self) -> T) -> T {
        // The inner sandbox restores its state after `action`, which needs all of `self`:
        // lend it the state for the duration.
        let mut state = std::mem::take(&mut self.0);
        let result = state.dry_run(|state| {
            std::mem::swap(&mut self.0, state);
            let result = action(self);
            std::mem::swap(&mut self.0, state);
            result
        });
        self.0 = state;
        result
    }

    fn register_extension<E: std::any::Any + ink_sandbox::Extension>(&mut self, extension: E) {
        self.0.register_extension(extension);
    }

    fn initialize_block(
        height: BlockNumberFor<Self::Runtime>,
        parent_hash: <Self::Runtime as frame_system::Config>::Hash,
    ) {
        ink_e2e::DefaultSandbox::initialize_block(height, parent_hash);
    }

    fn finalize_block(
        height: BlockNumberFor<Self::Runtime>,
    ) -> <Self::Runtime as frame_system::Config>::Hash {
        ink_e2e::DefaultSandbox::finalize_block(height)
    }

    fn default_actor() -> ink_sandbox::AccountIdFor<Self::Runtime> {
        ink_e2e::DefaultSandbox::default_actor()
    }

    fn get_metadata() -> ink_sandbox::RuntimeMetadataPrefixed {
        ink_e2e::DefaultSandbox::get_metadata()
    }

    fn convert_account_to_origin(
        account: ink_sandbox::AccountIdFor<Self::Runtime>,
    ) -> <<Self::Runtime as frame_system::Config>::RuntimeCall as Dispatchable>::RuntimeOrigin {
        ink_e2e::DefaultSandbox::convert_account_to_origin(account)
    }

    fn take_snapshot(&mut self) -> ink_sandbox::Snapshot {
        self.0.take_snapshot()
    }

    fn restore_snapshot(&mut self, snapshot: ink_sandbox::Snapshot) {
        self.0.restore_snapshot(snapshot);
    }
}

/// One measured dry run.
#[derive(Debug, Clone, Copy)]
struct Cost {
    ref_time: u64,
    proof_size: u64,
    deposit: i128,
}

fn cost<V: Decode>(dry_run: &ink_e2e::CallDryRunResult<Env, V>) -> Cost {
    assert!(
        !dry_run.is_err(),
        "a measured call failed: {:?}",
        dry_run.exec_result.result
    );
    assert!(
        !dry_run.exec_return_value().did_revert(),
        "a measured call reverted"
    );
    Cost {
        ref_time: dry_run.exec_result.gas_consumed.ref_time(),
        proof_size: dry_run.exec_result.gas_consumed.proof_size(),
        deposit: deposit(dry_run),
    }
}

/// A CID of the same length for every `(account, index)`.
fn bench_cid(account: u8, index: u32) -> String {
    cid((u64::from(account) << 32) | u64::from(index))
}

/// The message a row measures: its label without the `query ` prefix and the parenthesised
/// note.
fn message_of(label: &str) -> &str {
    let name = label.strip_prefix("query ").unwrap_or(label);
    name.split(' ').next().unwrap_or(name)
}

/// Submits `$message` from `$caller` without a dry run, with the gas in `$gas`: the first time
/// thrice what a dry run needs, then the same (a dry run before each call took most of the
/// benchmark's time). Panics if the chain refuses the call; callers check the state by queries.
macro_rules! bare_submit {
    ($client:expr, $caller:expr, $message:expr, $gas:expr) => {{
        let message = $message;
        if $gas.is_none() {
            $gas = Some(dry_run!($client, $caller, message).exec_result.gas_required * 3);
        }
        let gas = $gas.expect("estimated");
        if $client
            .bare_call($caller, &message, 0, gas, None)
            .await
            .is_err()
        {
            panic!("{} failed", stringify!($message));
        }
    }};
}

/// Gives `OTHER_ACCOUNTS` new accounts `BACKUPS_EACH` backups of one snapshot each (recorded by
/// bob), then checks them by queries.
async fn build_other_backups<Client>(
    client: &mut Client,
    registry: &mut <BackupRegistry as ink::codegen::ContractCallBuilder>::Type,
) where
    Client: ink_e2e::E2EBackend<Env> + ChainBackend<Balance = u128>,
    <Client as ContractsBackend<Env>>::Error: std::fmt::Debug,
{
    let bob = ink_e2e::bob();
    let (mut create_gas, mut add_gas) = (None, None);
    let mut owners = Vec::new();
    for owner in 1..=OTHER_ACCOUNTS {
        let owner_kp = client
            .create_and_fund_account(&ink_e2e::alice(), 1_000_000_000_000_000)
            .await;
        let owner_id = AccountId::from(owner_kp.public_key().0);
        owners.push(owner_id);
        for index in 0..BACKUPS_EACH {
            let node = format!("node-{index}");
            bare_submit!(
                client,
                &owner_kp,
                registry.create_backup(node.clone(), String::new()),
                create_gas
            );
            bare_submit!(
                client,
                &bob,
                registry.add_snapshot(
                    node,
                    bench_cid(owner, u32::from(index)),
                    String::new(),
                    0,
                    owner_id,
                    1,
                ),
                add_gas
            );
        }
    }
    for owner in owners {
        let listed = query!(client, registry.backups_of(owner));
        assert_eq!(listed.len(), usize::from(BACKUPS_EACH));
        assert!(listed.iter().all(|backup| backup.snapshot_count() == 1));
    }
}

/// Builds dave's state (and, for the large registry, the other accounts' backups first), then
/// measures every message with a dry run. Returns `(label, cost)` rows in a fixed order.
macro_rules! measure_registry {
    ($client:expr, $large:expr) => {{
        // No upgrade delay: `apply_upgrade` is measured switching code, not refusing.
        let contract = deploy!(
            $client,
            Config {
                upgrade_delay: 0,
                ..Config::default()
            }
        );
        let mut registry = contract.call_builder::<BackupRegistry>();
        let (dave, eve, frank) = (
            account(AccountKeyring::Dave),
            account(AccountKeyring::Eve),
            account(AccountKeyring::Ferdie),
        );
        let bob = ink_e2e::bob();
        if $large {
            build_other_backups($client, &mut registry).await;
        }
        // Dave's state, identical in both registries, and frank's empty backup.
        let dave_kp = ink_e2e::dave();
        let retention = Config::default().max_snapshots_per_backup;
        submit!(
            $client,
            &ink_e2e::ferdie(),
            registry.create_backup("node-9".into(), String::new())
        )
        .0
        .unwrap();
        for (node, snapshots) in [("node-1", 1), ("node-2", 1), ("node-3", retention)] {
            submit!(
                $client,
                &dave_kp,
                registry.create_backup(node.into(), String::new())
            )
            .0
            .unwrap();
            for index in 0..snapshots {
                // The sandbox's chain never moves on: dave allows each snapshot early.
                submit!($client, &dave_kp, registry.request_snapshot(node.into()))
                    .0
                    .unwrap();
                let cid = bench_cid(0, index + 1_000 * u32::from(node.as_bytes()[5]));
                let message = registry.add_snapshot(node.into(), cid, String::new(), 0, dave, 1);
                submit!($client, &bob, message).0.unwrap();
            }
        }
        submit!(
            $client,
            &dave_kp,
            registry.grant_access("node-1".into(), eve)
        )
        .0
        .unwrap();
        let pending = submit!(
            $client,
            &dave_kp,
            registry.restore_latest_snapshot(dave, "node-1".into())
        )
        .0
        .unwrap();
        let claimed = submit!(
            $client,
            &dave_kp,
            registry.restore_latest_snapshot(dave, "node-2".into())
        )
        .0
        .unwrap();
        submit!($client, &bob, registry.claim_restore_request(claimed))
            .0
            .unwrap();
        let capped_cid = bench_cid(0, retention - 1 + 1_000 * u32::from(b'3'));
        let fresh_cid = bench_cid(0, 999_999);
        // Dave pinned node-2's snapshot.
        let pinned_cid = bench_cid(0, 1_000 * u32::from(b'2'));
        submit!($client, &dave_kp, registry.pin_snapshot(pinned_cid.clone()))
            .0
            .unwrap();
        // The snapshots measured below come early, as dave allows.
        for node in ["node-1", "node-3"] {
            submit!($client, &dave_kp, registry.request_snapshot(node.into()))
                .0
                .unwrap();
        }
        let alice = ink_e2e::alice();
        let node_1_id = query!($client, registry.restore_request(pending))
            .expect("dave's pending request")
            .backup_id;
        let code_hash = upload!($client, "backup_registry");

        let mut rows: Vec<(&str, Cost)> = Vec::new();
        macro_rules! row {
            ($label:expr, $caller:expr, $message:expr) => {
                rows.push(($label, cost(&dry_run!($client, $caller, $message))));
            };
        }
        row!(
            "create_backup",
            &dave_kp,
            registry.create_backup("node-4".into(), "laptop".into())
        );
        row!(
            "add_snapshot (first of a backup)",
            &bob,
            registry.add_snapshot(
                "node-9".into(),
                fresh_cid.clone(),
                String::new(),
                1,
                frank,
                1
            )
        );
        row!(
            "add_snapshot (existing backup)",
            &bob,
            registry.add_snapshot(
                "node-1".into(),
                fresh_cid.clone(),
                String::new(),
                1,
                dave,
                1
            )
        );
        row!(
            "add_snapshot (at cap: prunes)",
            &bob,
            registry.add_snapshot(
                "node-3".into(),
                fresh_cid.clone(),
                String::new(),
                1,
                dave,
                1
            )
        );
        row!(
            "request_snapshot",
            &dave_kp,
            registry.request_snapshot("node-2".into())
        );
        row!(
            "fund_backup",
            &dave_kp,
            registry.fund_backup("node-2".into(), 1)
        );
        row!(
            "set_backup_offchain_worker_frequency",
            &dave_kp,
            registry.set_backup_offchain_worker_frequency(600)
        );
        row!(
            "grant_access",
            &dave_kp,
            registry.grant_access("node-1".into(), frank)
        );
        row!(
            "revoke_access",
            &dave_kp,
            registry.revoke_access("node-1".into(), eve)
        );
        row!(
            "set_backup_recipient",
            &dave_kp,
            registry.set_backup_recipient(
                "node-1".into(),
                Some("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into())
            )
        );
        row!(
            "restore_from_snapshot",
            &dave_kp,
            registry.restore_from_snapshot(capped_cid.clone())
        );
        row!(
            "restore_latest_snapshot",
            &dave_kp,
            registry.restore_latest_snapshot(dave, "node-3".into())
        );
        row!(
            "cancel_restore_request",
            &dave_kp,
            registry.cancel_restore_request(pending)
        );
        row!(
            "claim_restore_request",
            &bob,
            registry.claim_restore_request(pending)
        );
        row!("renew_claim", &bob, registry.renew_claim(claimed));
        row!(
            "fulfil_restore_request",
            &bob,
            registry.fulfil_restore_request(claimed)
        );
        row!(
            "fail_restore_request",
            &bob,
            registry.fail_restore_request(claimed, "cid mismatch".into())
        );
        row!(
            "pin_snapshot",
            &dave_kp,
            registry.pin_snapshot(capped_cid.clone())
        );
        row!(
            "unpin_snapshot",
            &dave_kp,
            registry.unpin_snapshot(pinned_cid.clone())
        );
        row!(
            "query pinned_snapshots (1)",
            &alice,
            registry.pinned_snapshots(dave, "node-2".into())
        );
        row!(
            "delete_backup (retention cap)",
            &dave_kp,
            registry.delete_backup("node-3".into())
        );
        row!(
            "delete_user_storage (3 backups)",
            &dave_kp,
            registry.delete_user_storage()
        );
        row!("add_authority", &alice, registry.add_authority(frank));
        row!(
            "remove_authority",
            &alice,
            registry.remove_authority(account(AccountKeyring::Charlie))
        );
        row!("set_paused", &alice, registry.set_paused(true));
        row!("propose_admin", &alice, registry.propose_admin(frank));
        row!(
            "query backup",
            &alice,
            registry.backup(dave, "node-1".into())
        );
        row!(
            "query snapshots (32)",
            &alice,
            registry.snapshots(dave, "node-3".into(), 0, 32)
        );
        row!(
            "query snapshot_by_cid",
            &alice,
            registry.snapshot_by_cid(capped_cid.clone())
        );
        row!("query backups_of (3)", &alice, registry.backups_of(dave));
        row!(
            "query restore_request",
            &alice,
            registry.restore_request(claimed)
        );
        row!(
            "query pending_restore_requests",
            &alice,
            registry.pending_restore_requests(0, 32)
        );
        row!(
            "query backup_recipient",
            &alice,
            registry.backup_recipient(dave, "node-1".into())
        );
        row!(
            "query backup_reserve",
            &alice,
            registry.backup_reserve(dave, "node-1".into())
        );
        row!(
            "query backup_frequency",
            &alice,
            registry.backup_frequency(dave)
        );
        row!(
            "propose_upgrade",
            &alice,
            registry.propose_upgrade(code_hash)
        );
        row!("query admin", &alice, registry.admin());
        row!("query is_paused", &alice, registry.is_paused());
        row!("query config", &alice, registry.config());
        row!("query storage_version", &alice, registry.storage_version());
        row!(
            "query is_authority",
            &alice,
            registry.is_authority(account(AccountKeyring::Bob))
        );
        row!("query authority_count", &alice, registry.authority_count());
        row!(
            "query backup_by_id",
            &alice,
            registry.backup_by_id(node_1_id)
        );
        row!(
            "query latest_snapshot",
            &alice,
            registry.latest_snapshot(dave, "node-3".into())
        );
        row!(
            "query grantees (1)",
            &alice,
            registry.grantees(dave, "node-1".into())
        );
        row!(
            "query pending_restore_request_count",
            &alice,
            registry.pending_restore_request_count()
        );
        // Last, as they need a proposed admin, which the rows above measure without.
        submit!($client, &alice, registry.propose_admin(frank))
            .0
            .unwrap();
        row!("query pending_admin", &alice, registry.pending_admin());
        row!(
            "cancel_admin_proposal",
            &alice,
            registry.cancel_admin_proposal()
        );
        row!("accept_admin", &ink_e2e::ferdie(), registry.accept_admin());
        // Last, as they need a proposed upgrade.
        submit!($client, &alice, registry.propose_upgrade(code_hash))
            .0
            .unwrap();
        row!("query pending_upgrade", &alice, registry.pending_upgrade());
        row!(
            "apply_upgrade (to the code it runs)",
            &alice,
            registry.apply_upgrade()
        );
        row!("cancel_upgrade", &alice, registry.cancel_upgrade());
        rows
    }};
}

/// Builds the release bundle in its own target folder (so that it never races ink_e2e's debug
/// build in `target/ink`) and returns the folder holding its wasm and metadata.
fn build_release() -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all("target/bench/release-build")?;
    let target_dir = std::path::Path::new("target/bench/release-build").canonicalize()?;
    let status = std::process::Command::new("cargo")
        .args(["contract", "build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()?;
    assert!(status.success(), "cargo contract build --release failed");
    Ok(target_dir.join("ink"))
}

/// The labels of the messages, then of the constructors, the contract's metadata lists.
fn metadata_entry_points(
    metadata: &std::path::Path,
) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let metadata: serde_json::Value = serde_json::from_slice(&std::fs::read(metadata)?)?;
    let labels = |kind: &str| -> Vec<String> {
        metadata["spec"][kind]
            .as_array()
            .expect("metadata lists the entry points")
            .iter()
            .map(|entry| entry["label"].as_str().expect("a label").to_string())
            .collect()
    };
    Ok((labels("messages"), labels("constructors")))
}

fn ratio(small: u64, large: u64) -> f64 {
    large as f64 / small.max(1) as f64
}

#[ink_e2e::test(backend(runtime_only(sandbox = BenchSandbox)))]
async fn bench<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
    let client = &mut client;
    let small = measure_registry!(client, false);
    let large = measure_registry!(client, true);

    let mut built = ink_e2e::build_root_and_contract_dependencies();
    built.dedup();
    let wasm: Vec<(String, u64)> = built
        .into_iter()
        .map(|path| {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (path.display().to_string(), size)
        })
        .collect();
    let release = build_release()?;
    let release_wasm = std::fs::metadata(release.join("backup_registry.wasm"))?.len();
    let (messages, constructors) = metadata_entry_points(&release.join("backup_registry.json"))?;
    let entry_points = (messages.len() + constructors.len()) as u64;
    let bytes_per_entry_point = release_wasm / entry_points;
    let unmeasured: Vec<String> = messages
        .into_iter()
        .filter(|message| !small.iter().any(|(label, _)| message_of(label) == message))
        .collect();
    // A typical CIDv1 (base32, raw leaves, sha2-256).
    let typical_cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".to_string();
    let snapshot = Snapshot {
        cid: typical_cid.clone(),
        description: String::new(),
        size_bytes: 1,
        request_id: 0,
        block_number: 1,
        timestamp: 1,
    };
    // ink! 5 storage keys: the mapping's 4-byte root key followed by the encoded key (the
    // CID index's key is a 32-byte digest).
    let snapshot_key = 4 + (0u64, 0u32).encode().len();
    let index_key = 4 + [0u8; 32].encode().len();
    let index_value = SnapshotRef {
        backup_id: 0,
        seq: 0,
    }
    .encode()
    .len();

    let mut table = String::new();
    let _ = writeln!(
        table,
        "Measured with ink_e2e's sandbox (pallet-contracts in-process), contract built by \
         ink_e2e in cargo-contract's debug mode (wasm-opt applied): {}. The release build \
         (`cargo contract build --release`, wasm-opt applied) is {release_wasm} bytes for \
         {entry_points} entry points, {bytes_per_entry_point} bytes per entry point (ink!'s \
         erc20 built the same way: {ERC20_BYTES_PER_ENTRY_POINT}; regression ceiling: \
         {MAX_BYTES_PER_ENTRY_POINT}).\n\
         Small registry: 1 user (dave: 3 backups, 34 snapshots, 1 pinned). Large: the same plus {} \
         backups of {} other accounts.\n",
        wasm.iter()
            .map(|(path, size)| format!("{path} = {size} bytes"))
            .collect::<Vec<_>>()
            .join(", "),
        u32::from(OTHER_ACCOUNTS) * u32::from(BACKUPS_EACH),
        OTHER_ACCOUNTS
    );
    let _ = writeln!(
        table,
        "| message | ref_time small | ref_time large | ratio | proof_size small | proof_size large | ratio | deposit small | deposit large |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json_rows = Vec::new();
    let mut too_steep = Vec::new();
    for ((label, s), (_, l)) in small.iter().zip(&large) {
        let (time_ratio, proof_ratio) = (
            ratio(s.ref_time, l.ref_time),
            ratio(s.proof_size, l.proof_size),
        );
        let _ = writeln!(
            table,
            "| {label} | {} | {} | {time_ratio:.3} | {} | {} | {proof_ratio:.3} | {} | {} |",
            s.ref_time, l.ref_time, s.proof_size, l.proof_size, s.deposit, l.deposit
        );
        json_rows.push(format!(
            "{{\"message\":\"{label}\",\"small\":{{\"ref_time\":{},\"proof_size\":{},\"deposit\":{}}},\"large\":{{\"ref_time\":{},\"proof_size\":{},\"deposit\":{}}},\"ref_time_ratio\":{time_ratio:.4},\"proof_size_ratio\":{proof_ratio:.4}}}",
            s.ref_time, s.proof_size, s.deposit, l.ref_time, l.proof_size, l.deposit
        ));
        if time_ratio > MAX_GROWTH || proof_ratio > MAX_GROWTH {
            too_steep.push(*label);
        }
    }
    let _ = writeln!(
        table,
        "\nStored per snapshot with a {}-character CID and no description: value {} bytes + \
         key {} bytes; its CID index entry: value {} bytes + key {} bytes. Deposits are in the \
         sandbox runtime's units (negative: refunded); the benchmark's CIDs have {} characters.",
        typical_cid.len(),
        snapshot.encode().len(),
        snapshot_key,
        index_value,
        index_key,
        bench_cid(0, 0).len()
    );
    println!("{table}");
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/gas.md", &table)?;
    std::fs::write(
        "target/bench/gas.json",
        format!("{{\"rows\":[{}]}}\n", json_rows.join(",")),
    )?;
    assert!(
        too_steep.is_empty(),
        "cost grows by more than {MAX_GROWTH}x with the registry: {too_steep:?}"
    );
    assert!(
        unmeasured.is_empty(),
        "messages the benchmark does not measure: {unmeasured:?}"
    );
    assert!(
        bytes_per_entry_point <= MAX_BYTES_PER_ENTRY_POINT,
        "the release wasm grew to {bytes_per_entry_point} bytes per entry point, over the \
         ceiling of {MAX_BYTES_PER_ENTRY_POINT}"
    );
    Ok(())
}

/// Dave's registry at the hard bounds: `MAX_BACKUPS_PER_ACCOUNT` backups, each with
/// `MAX_PINS_PER_BACKUP` pinned snapshots older than `MAX_RETENTION` unpinned ones,
/// `MAX_GRANTS_PER_BACKUP` grantees, an age recipient and an open restore request.
async fn build_worst_case<Client>(
    client: &mut Client,
    registry: &mut <BackupRegistry as ink::codegen::ContractCallBuilder>::Type,
) where
    Client: ink_e2e::E2EBackend<Env>,
    <Client as ContractsBackend<Env>>::Error: std::fmt::Debug,
{
    let (dave_kp, bob) = (ink_e2e::dave(), ink_e2e::bob());
    let dave = account(AccountKeyring::Dave);
    let mut gas = [None; 7];
    let kept = crate::MAX_PINS_PER_BACKUP + crate::MAX_RETENTION;
    for backup in 0..crate::MAX_BACKUPS_PER_ACCOUNT {
        let node = format!("node-{backup}");
        let cid_of = |seq: u32| bench_cid(200, backup * 1_000 + seq);
        let create = registry.create_backup(node.clone(), String::new());
        bare_submit!(client, &dave_kp, create, gas[0]);
        for seq in 0..kept {
            // The sandbox's chain never moves on: dave allows each snapshot early.
            let early = registry.request_snapshot(node.clone());
            bare_submit!(client, &dave_kp, early, gas[6]);
            let add = registry.add_snapshot(node.clone(), cid_of(seq), String::new(), 0, dave, 1);
            bare_submit!(client, &bob, add, gas[1]);
            if seq < crate::MAX_PINS_PER_BACKUP {
                bare_submit!(client, &dave_kp, registry.pin_snapshot(cid_of(seq)), gas[2]);
            }
        }
        for grantee in 0..crate::MAX_GRANTS_PER_BACKUP {
            let grantee = AccountId::from([grantee as u8 + 1; 32]);
            bare_submit!(
                client,
                &dave_kp,
                registry.grant_access(node.clone(), grantee),
                gas[3]
            );
        }
        let recipient = Some(crate::testing::support::RECIPIENT.into());
        let set_recipient = registry.set_backup_recipient(node.clone(), recipient);
        bare_submit!(client, &dave_kp, set_recipient, gas[4]);
        let restore = registry.restore_latest_snapshot(dave, node);
        bare_submit!(client, &dave_kp, restore, gas[5]);
    }
    let backups = query!(client, registry.backups_of(dave));
    assert_eq!(backups.len(), crate::MAX_BACKUPS_PER_ACCOUNT as usize);
    for backup in backups {
        assert_eq!(backup.snapshot_count(), kept);
        assert_eq!(backup.pins.len(), crate::MAX_PINS_PER_BACKUP as usize);
        assert!(backup.latest_request.is_some());
        let grantees = query!(client, registry.grantees(dave, backup.node_id));
        assert_eq!(grantees.len(), crate::MAX_GRANTS_PER_BACKUP as usize);
    }
}

/// The costliest deletions, at the hard bounds (`build_worst_case`): measured here and written
/// to `target/bench/worst-case.json`, which the polkadot.js check (`client/check.mjs`) compares
/// with the live node's maximum extrinsic weight, read from its runtime.
#[ink_e2e::test(backend(runtime_only(sandbox = BenchSandbox)))]
async fn worst_case_deletion<Client: E2EBackend>(mut client: Client) -> E2EResult<()> {
    let client = &mut client;
    let config = Config {
        max_snapshots_per_backup: crate::MAX_RETENTION,
        max_backups_per_account: crate::MAX_BACKUPS_PER_ACCOUNT,
        ..Config::default()
    };
    let contract = deploy!(client, config);
    let mut registry = contract.call_builder::<BackupRegistry>();
    build_worst_case(client, &mut registry).await;
    let dave = ink_e2e::dave();
    let one = cost(&dry_run!(
        client,
        &dave,
        registry.delete_backup("node-0".into())
    ));
    let all = cost(&dry_run!(client, &dave, registry.delete_user_storage()));
    let json = format!(
        "{{\"delete_backup\":{{\"ref_time\":{},\"proof_size\":{}}},\
         \"delete_user_storage\":{{\"ref_time\":{},\"proof_size\":{}}}}}\n",
        one.ref_time, one.proof_size, all.ref_time, all.proof_size
    );
    println!("worst-case deletions at the hard bounds: {json}");
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/worst-case.json", json)?;
    Ok(())
}
