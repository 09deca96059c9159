//! The `backup-bot` binary against a real `substrate-contracts-node`: starts a dev node on
//! loopback, deploys the registry, runs `backup-bot run --once` over two node folders, checks
//! that each CID recorded on chain restores (with `backup-bot restore` and the node's identity
//! alone) into the node's tree, requests a restore as the owner, runs the bot again and checks
//! the restored tree and the request's status; then deletes one backup and checks the bot
//! unpins its snapshot. A second test times passes with nothing due over 50 served nodes.
//!
//! Needs the node (`$CONTRACTS_NODE` or `substrate-contracts-node` on `PATH`, see
//! `scripts/install-node.sh`) and the release bundle (`scripts/build.sh`). `scripts/test.sh`
//! runs it when the node is installed and says so when it skips it.

mod common;
#[path = "common/node.rs"]
mod node;

use backup_bot::chain::NodeChain;
use backup_bot::config::ServedNode;
use backup_bot::keys::Keyring;
use backup_bot::registry::Registry;
use backup_bot::store::LocalStore;
use backup_bot::tree;
use backup_registry::RestoreStatus;
use node::{bot_command, deploy, restore_with_cli, DevNode};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use subxt_signer::sr25519::dev;

/// Runs `backup-bot run --once` with the configuration file `config`, as Alice, expecting
/// success; returns its log.
fn run_bot_once(config: &Path) -> String {
    let (code, _, log) = bot_command(&["run", "--once"], config);
    assert_eq!(code, Some(0), "backup-bot failed:\n{log}");
    log
}

/// Checks that snapshot `cid` restores into the tree at `root` with `backup-bot restore`,
/// the node's identity file and the bot's store alone.
fn assert_snapshot_of(cid: &str, root: &Path, data_dir: &Path, node: &ServedNode) {
    let identity = Keyring::open(data_dir.join("keys")).unwrap().path_of(node);
    let target = data_dir.join(format!("check-{}", node.node_id));
    restore_with_cli(cid, &identity, &data_dir.join("store"), &target);
    assert_eq!(tree::first_difference(root, &target).unwrap(), None);
}

#[tokio::test]
#[ignore = "needs substrate-contracts-node ($CONTRACTS_NODE or PATH)"]
async fn live_node_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let contract = deploy(&node.url, None).await;
    let bob = dev::bob().public_key().to_account_id();

    for name in ["node-a", "node-b"] {
        let source = dir.path().join(name).join("data");
        backup_bot::demo::write_sample_tree(&source).unwrap();
        fs::write(source.join("name.txt"), name).unwrap();
    }
    let config = dir.path().join("bot.toml");
    fs::write(
        &config,
        format!(
            "url = \"{url}\"\ncontract = \"{contract}\"\nmetadata = \"{bundle}\"\n\
             data_dir = \"bot-data\"\n\n\
             [[nodes]]\nnode_id = \"node-a\"\nowner = \"{bob}\"\n\
             source = \"node-a/data\"\nrestore_to = \"node-a/restored\"\n\n\
             [[nodes]]\nnode_id = \"node-b\"\nowner = \"{bob}\"\n\
             source = \"node-b/data\"\nrestore_to = \"node-b/restored\"\n",
            url = node.url,
            bundle = common::bundle().display(),
        ),
    )
    .unwrap();

    // A bot whose metadata gives a message another selector than the bot's (a registry of
    // another version) refuses the call before sending it; Bob's backup is not created.
    let other_version = dir.path().join("other-version.json");
    let mut metadata: serde_json::Value =
        serde_json::from_slice(&fs::read(common::bundle()).unwrap()).unwrap();
    for message in metadata["spec"]["messages"].as_array_mut().unwrap() {
        if message["label"] == "create_backup" {
            message["selector"] = "0x00000000".into();
        }
    }
    fs::write(&other_version, serde_json::to_vec(&metadata).unwrap()).unwrap();
    let chain = NodeChain::connect(&node.url, contract.clone(), &other_version, dev::bob())
        .await
        .unwrap();
    let refused = Registry::new(chain).create_backup("node-a", "").await;
    let error = format!("{:#}", refused.unwrap_err());
    assert!(error.contains("different versions"), "{error}");

    let chain = NodeChain::connect(&node.url, contract, &common::bundle(), dev::bob())
        .await
        .unwrap();
    let mut owner = Registry::new(chain);

    // Bob has not opted in yet: the bot skips both nodes, says so once each, records nothing.
    let log = run_bot_once(&config);
    assert_eq!(
        log.matches("skipped: its owner has no backup of it on chain")
            .count(),
        2,
        "{log}"
    );
    for name in ["node-a", "node-b"] {
        assert_eq!(owner.backup(&bob, name).await.unwrap(), None);
        owner.create_backup(name, "").await.unwrap();
    }

    run_bot_once(&config);
    for name in ["node-a", "node-b"] {
        let snapshot = owner.latest_snapshot(&bob, name).await.unwrap();
        let snapshot = snapshot.unwrap_or_else(|| panic!("no snapshot of {name} on chain"));
        let node = ServedNode {
            node_id: name.to_string(),
            owner: bob.clone(),
            source: dir.path().join(name).join("data"),
            restore_to: dir.path().join(name).join("restored"),
        };
        assert_snapshot_of(
            &snapshot.cid,
            &node.source,
            &dir.path().join("bot-data"),
            &node,
        );
    }

    let request_id = owner.restore_latest_snapshot(&bob, "node-a").await.unwrap();
    run_bot_once(&config);

    let request = owner.restore_request(request_id).await.unwrap().unwrap();
    assert!(
        matches!(request.status, RestoreStatus::Fulfilled { .. }),
        "{:?}",
        request.status
    );
    let restored = dir.path().join("node-a/restored");
    assert_eq!(
        tree::first_difference(&dir.path().join("node-a/data"), &restored).unwrap(),
        None
    );

    // Bob deletes node-b's backup: the next pass unpins its snapshot; its blocks are kept for
    // the garbage collector's grace period, and a collection without grace removes them, while
    // node-a's stay.
    let deleted = owner
        .latest_snapshot(&bob, "node-b")
        .await
        .unwrap()
        .unwrap()
        .cid;
    owner.delete_backup("node-b").await.unwrap();
    node.wait_for_finality().await;
    let log = run_bot_once(&config);
    assert!(log.contains(&format!("cid={deleted}")), "{log}");
    assert!(
        log.contains("unpinned: the registry no longer keeps it"),
        "{log}"
    );
    let store = LocalStore::open(dir.path().join("bot-data/store")).unwrap();
    let young = store.collect_garbage().unwrap();
    assert!(
        young.young_blocks > 0 && young.removed_blocks == 0,
        "{young:?}"
    );
    let store = store.with_grace(Duration::ZERO);
    let collected = store.collect_garbage().unwrap();
    assert_eq!(
        collected.removed_blocks, young.young_blocks,
        "{collected:?}"
    );
    assert_eq!(collected.kept_blocks, young.kept_blocks, "{collected:?}");
    let pinned: Vec<String> = store
        .pinned()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let kept = owner
        .latest_snapshot(&bob, "node-a")
        .await
        .unwrap()
        .unwrap()
        .cid;
    assert_eq!(pinned, [kept.clone()]);

    // `snapshots` lists what the registry holds; `check` finds it in the store, reading
    // every block with --read-data; a damaged block makes it exit 3 and name the snapshot.
    let (code, listed, log) = bot_command(
        &["snapshots", "--json", "--owner", &bob.to_string()],
        &config,
    );
    assert_eq!(code, Some(0), "{log}");
    let listed = listed["snapshots"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["cid"], kept.as_str());
    assert_eq!(listed[0]["node_id"], "node-a");
    assert_eq!(listed[0]["pinned"], false);
    let backup = owner.backup(&bob, "node-a").await.unwrap().unwrap();
    assert_eq!(listed[0]["seq"], backup.next_seq - 1);
    for args in [
        &["check", "--json"][..],
        &["check", "--json", "--read-data"],
    ] {
        let (code, checked, log) = bot_command(args, &config);
        assert_eq!(code, Some(0), "{log}");
        assert_eq!(checked["ok"], true, "{checked}");
        assert_eq!(
            checked["snapshots"].as_array().unwrap().len(),
            1,
            "{checked}"
        );
    }
    let some_block = store
        .block_cids()
        .unwrap()
        .into_iter()
        .find(|cid| cid.codec() == 0x55)
        .unwrap();
    let at = store.locate(&some_block).unwrap().unwrap();
    let flip_first_byte = || {
        let file = fs::File::options()
            .read(true)
            .write(true)
            .open(&at.pack)
            .unwrap();
        let mut byte = [0];
        file.read_exact_at(&mut byte, at.offset).unwrap();
        file.write_all_at(&[byte[0] ^ 1], at.offset).unwrap();
    };
    flip_first_byte();
    let (code, checked, log) = bot_command(&["check", "--json", "--read-data"], &config);
    assert_eq!(code, Some(3), "{log}");
    assert_eq!(checked["ok"], false);
    let problem = checked["snapshots"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("does not match its CID"), "{problem}");
    flip_first_byte();

    // The owner's restore of the latest snapshot, found on chain by a query: no key needed.
    let identity = Keyring::open(dir.path().join("bot-data/keys"))
        .unwrap()
        .path_of(&ServedNode {
            node_id: "node-a".into(),
            owner: bob.clone(),
            source: PathBuf::new(),
            restore_to: PathBuf::new(),
        });
    let latest_target = dir.path().join("latest-by-owner");
    let (code, _, log) = bot_command(
        &[
            "restore",
            "--latest",
            "--owner",
            &bob.to_string(),
            "--node",
            "node-a",
            "--owner-identity",
            identity.to_str().unwrap(),
            "--store",
            dir.path().join("bot-data/store").to_str().unwrap(),
            "--target",
            latest_target.to_str().unwrap(),
        ],
        &config,
    );
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        tree::first_difference(&dir.path().join("node-a/data"), &latest_target).unwrap(),
        None
    );

    // One node failing in a pass while the others are fine: exit 3, and the JSON report
    // names it.
    owner.create_backup("node-c", "").await.unwrap();
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[nodes]]\nnode_id = \"node-c\"\nowner = \"{bob}\"\n\
         source = \"node-c/missing\"\nrestore_to = \"node-c/restored\"\n"
    ));
    fs::write(&config, text).unwrap();
    let (code, report, log) = bot_command(&["run", "--once", "--json"], &config);
    assert_eq!(code, Some(3), "{log}");
    assert_eq!(report["not_due"], serde_json::json!(["node-a"]), "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.len() == 1 && errors[0].as_str().unwrap().starts_with("node-c: "),
        "{report}"
    );
}

/// Served nodes of [`idle_passes_over_fifty_nodes`].
const IDLE_NODES: usize = 50;

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// What a pass costs when nothing is due, over 50 served nodes of four owners (each with a
/// recorded snapshot): three in-process passes of one bot and three `run --once` processes
/// (start, connection, the start-up collection of the store, the pass), timed; their medians
/// are printed per node, and an idle pass must cost at most 0.2 s per node.
#[tokio::test]
#[ignore = "needs substrate-contracts-node ($CONTRACTS_NODE or PATH)"]
async fn idle_passes_over_fifty_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let contract = deploy(&node.url, None).await;
    let mut owners = Vec::new();
    for owner in [dev::bob(), dev::charlie(), dev::dave(), dev::eve()] {
        let chain = NodeChain::connect(&node.url, contract.clone(), &common::bundle(), owner)
            .await
            .unwrap();
        owners.push(Registry::new(chain));
    }
    let mut tables = String::new();
    for n in 0..IDLE_NODES {
        let owner_count = owners.len();
        let owner = &mut owners[n % owner_count];
        let node_id = format!("node-{n}");
        let source = dir.path().join(&node_id);
        fs::create_dir_all(&source).unwrap();
        fs::write(source.join("data.txt"), format!("node {n}")).unwrap();
        owner.create_backup(&node_id, "").await.unwrap();
        tables.push_str(&format!(
            "[[nodes]]\nnode_id = \"{node_id}\"\nowner = \"{}\"\nsource = \"{node_id}\"\n\
             restore_to = \"{node_id}-restored\"\n\n",
            owner.account()
        ));
    }
    let config = dir.path().join("bot.toml");
    fs::write(
        &config,
        format!(
            "url = \"{}\"\ncontract = \"{contract}\"\nmetadata = \"{}\"\n\
             data_dir = \"bot-data\"\n\n{tables}",
            node.url,
            common::bundle().display(),
        ),
    )
    .unwrap();
    let (_, report, log) = bot_command(&["run", "--once", "--json"], &config);
    assert_eq!(
        report["snapshots"].as_array().map(Vec::len),
        Some(IDLE_NODES),
        "{log}"
    );

    let mut processes = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (code, report, log) = bot_command(&["run", "--once", "--json"], &config);
        processes.push(started.elapsed());
        assert_eq!(code, Some(0), "{log}");
        assert_eq!(
            report["not_due"].as_array().map(Vec::len),
            Some(IDLE_NODES),
            "{log}"
        );
    }
    let file = backup_bot::config::FileConfig::load(&config).unwrap();
    let data_dir = dir.path().join("bot-data");
    let chain = NodeChain::connect(&node.url, contract, &common::bundle(), dev::alice())
        .await
        .unwrap();
    let store =
        backup_bot::store::ContentStore::Local(LocalStore::open(data_dir.join("store")).unwrap());
    let mut bot = backup_bot::bot::Bot::new(
        Registry::new(chain),
        store,
        file.served_nodes().unwrap(),
        &data_dir,
    )
    .unwrap();
    // The first pass of a bot collects the store; the later ones are what a running bot does.
    bot.pass().await.unwrap();
    let mut passes = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let report = bot.pass().await.unwrap();
        passes.push(started.elapsed());
        assert_eq!(report.not_due.len(), IDLE_NODES, "{report:?}");
    }
    let nodes = IDLE_NODES as u32;
    let (pass, process) = (median(passes), median(processes));
    println!(
        "idle pass over {IDLE_NODES} nodes (median of 3): in a running bot {:.0} ms ({:.1} ms per \
         node); `run --once` {:.0} ms ({:.1} ms per node)",
        pass.as_secs_f64() * 1e3,
        (pass / nodes).as_secs_f64() * 1e3,
        process.as_secs_f64() * 1e3,
        (process / nodes).as_secs_f64() * 1e3,
    );
    assert!(pass / nodes <= Duration::from_millis(200));
    assert!(process / nodes <= Duration::from_millis(200));
}
