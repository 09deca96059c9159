//! The robustness suite (after kopia's `tests/robustness` and restic's `check`): random
//! changes to a node's folder, snapshots, pins, unpins, deletions and garbage collections,
//! and after every round, every snapshot the registry keeps must restore byte for byte, with
//! its modes, modification times and symbolic links, to the tree it was taken of, and check
//! clean with every chunk decrypted.
//!
//! - `random_changes_keep_every_snapshot_restorable`: the bot in-process, on the real
//!   contract (`ink_sandbox`); a fixed set of seeds, `ROBUSTNESS_ROUNDS` rounds each
//!   (default 16).
//! - `kills_and_a_second_process_lose_nothing` (needs `substrate-contracts-node`): the
//!   `backup-bot` binary against a dev node, killed (SIGKILL) at random moments of its pass
//!   and restarted, with a second process started on the same data folder; then
//!   `check --read-data` and a restore of every kept snapshot with `backup-bot restore`.
//!
//! - `a_killed_restore_leaves_the_old_tree_or_the_new_one`: `backup-bot restore` killed
//!   (SIGKILL) at random moments while it replaces a tree with another snapshot's: the target
//!   is always one of the two trees, whole; the next restore removes what a kill left.
//!
//! Needs the release bundle (`scripts/build.sh`).

mod common;
#[path = "common/node.rs"]
mod node;
#[path = "common/sealed.rs"]
mod sealed;

use backup_bot::chain::NodeChain;
use backup_bot::config::ServedNode;
use backup_bot::demo::{DemoWorld, DEMO_NODE};
use backup_bot::keys::Keyring;
use backup_bot::pipeline::{self, Expected};
use backup_bot::registry::Registry;
use backup_bot::store::{ContentStore, LocalStore};
use backup_bot::{keys, tree};
use cid::Cid;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use subxt_signer::sr25519::dev;

/// A small deterministic generator (SplitMix64): the same seed gives the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (at least 1).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        // Runs of repeated bytes among random ones: some chunks repeat, most do not.
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next().to_le_bytes();
            if word[0] < 32 {
                out.extend(std::iter::repeat_n(word[1], 4096.min(len - out.len())));
            } else {
                out.extend_from_slice(&word[..8.min(len - out.len())]);
            }
        }
        out
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        Some(&items[self.below(items.len() as u64) as usize])
    }
}

/// Every path under `root` (folders and other entries), relative, not following links.
fn paths_under(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut dirs, mut others) = (vec![PathBuf::new()], Vec::new());
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for item in fs::read_dir(root.join(&relative)).unwrap() {
            let item = item.unwrap();
            let path = relative.join(item.file_name());
            if item.file_type().unwrap().is_dir() {
                dirs.push(path.clone());
                pending.push(path);
            } else {
                others.push(path);
            }
        }
    }
    (dirs, others)
}

/// One random change to the tree under `root`: create, append, rewrite in the middle,
/// truncate, rename, delete, make or remove a folder, add a symbolic link or a hard link,
/// change a mode or a modification time.
fn mutate(root: &Path, rng: &mut Rng) {
    let (dirs, others) = paths_under(root);
    let files: Vec<&PathBuf> = others
        .iter()
        .filter(|path| fs::symlink_metadata(root.join(path)).unwrap().is_file())
        .collect();
    let dir = rng.pick(&dirs).unwrap().clone();
    let fresh = dir.join(format!("n{}", rng.below(1_000_000)));
    match rng.below(12) {
        0 | 1 => {
            let len = match rng.below(4) {
                0 => 0,
                1 => rng.below(4096) as usize,
                _ => rng.below(400_000) as usize,
            };
            fs::write(root.join(&fresh), rng.bytes(len)).unwrap();
        }
        2 => {
            if let Some(file) = rng.pick(&files) {
                let len = rng.below(200_000) as usize;
                let mut content = fs::read(root.join(file)).unwrap();
                content.extend(rng.bytes(len));
                fs::write(root.join(file), content).unwrap();
            }
        }
        3 => {
            if let Some(file) = rng.pick(&files) {
                let mut content = fs::read(root.join(file)).unwrap();
                if !content.is_empty() {
                    let at = rng.below(content.len() as u64) as usize;
                    let end = (at + 1 + rng.below(5000) as usize).min(content.len());
                    let patch = rng.bytes(end - at);
                    content[at..end].copy_from_slice(&patch);
                    fs::write(root.join(file), content).unwrap();
                }
            }
        }
        4 => {
            if let Some(file) = rng.pick(&files) {
                let file = fs::File::options()
                    .write(true)
                    .open(root.join(file))
                    .unwrap();
                let len = file.metadata().unwrap().len();
                file.set_len(rng.below(len + 1)).unwrap();
            }
        }
        5 => {
            let all: Vec<&PathBuf> = others.iter().chain(dirs.iter().skip(1)).collect();
            if let Some(from) = rng.pick(&all) {
                let to = rng
                    .pick(&dirs)
                    .unwrap()
                    .join(format!("r{}", rng.below(1_000_000)));
                // A folder cannot move into itself.
                if !to.starts_with(from) {
                    fs::rename(root.join(from), root.join(to)).unwrap();
                }
            }
        }
        6 => {
            if let Some(path) = rng.pick(&others) {
                fs::remove_file(root.join(path)).unwrap();
            }
        }
        7 => {
            if rng.below(4) == 0 && dirs.len() > 1 {
                fs::remove_dir_all(root.join(&dirs[1 + rng.below(dirs.len() as u64 - 1) as usize]))
                    .unwrap();
            } else {
                fs::create_dir(root.join(&fresh)).unwrap();
            }
        }
        8 => {
            let target = match rng.below(3) {
                0 => "/etc/passwd".to_string(),
                1 => "../outside/of/the/tree".to_string(),
                _ => files
                    .first()
                    .map_or("dangling".to_string(), |file| file.display().to_string()),
            };
            std::os::unix::fs::symlink(target, root.join(&fresh)).unwrap();
        }
        9 => {
            let all: Vec<&PathBuf> = files.iter().copied().chain(dirs.iter().skip(1)).collect();
            if let Some(path) = rng.pick(&all) {
                let modes = [0o600, 0o644, 0o755, 0o700, 0o640, 0o750];
                let mode = *rng.pick(&modes).unwrap();
                fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        10 => {
            if let Some(file) = rng.pick(&files) {
                fs::hard_link(root.join(file), root.join(&fresh)).unwrap();
            }
        }
        _ => {
            if let Some(file) = rng.pick(&files) {
                let back = std::time::Duration::from_secs(rng.below(10_000_000));
                fs::File::options()
                    .write(true)
                    .open(root.join(file))
                    .unwrap()
                    .set_modified(std::time::SystemTime::now() - back)
                    .unwrap();
            }
        }
    }
}

/// A copy of the tree at `source` in `copy`, links, modes and times kept (`cp -a`).
fn copy_tree(source: &Path, copy: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(source)
        .arg(copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
}

/// Rounds per seed: `ROBUSTNESS_ROUNDS`, else `default`.
fn rounds(default: u64) -> u64 {
    std::env::var("ROBUSTNESS_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(default)
}

/// Restores every snapshot the registry keeps of the world's node and compares it with the
/// tree it was taken of; checks each with every chunk decrypted.
async fn assert_every_kept_snapshot_restores(
    world: &mut DemoWorld,
    taken_of: &HashMap<String, PathBuf>,
    scratch: &Path,
    context: &str,
) -> usize {
    let owner = world.node.owner.clone();
    let kept = world.owner.snapshots(&owner, DEMO_NODE).await.unwrap();
    let identity = world
        .bot
        .keyring()
        .identity(&world.node)
        .unwrap()
        .expect("the bot has its identity");
    let owner_text = owner.to_string();
    for snapshot in &kept {
        let original = taken_of
            .get(&snapshot.cid)
            .unwrap_or_else(|| panic!("{context}: {} was never taken", snapshot.cid));
        let root = Cid::try_from(snapshot.cid.as_str()).unwrap();
        let target = scratch.join("restored");
        let expected = Expected {
            owner: &owner_text,
            node_id: DEMO_NODE,
        };
        pipeline::restore(world.bot.store(), &root, &identity, Some(expected), &target)
            .await
            .unwrap_or_else(|error| {
                panic!("{context}: {} does not restore: {error:#}", snapshot.cid)
            });
        assert_eq!(
            tree::first_difference(original, &target).unwrap(),
            None,
            "{context}: {} restores to another tree",
            snapshot.cid
        );
        pipeline::check(world.bot.store(), &root, Some(&identity))
            .await
            .unwrap_or_else(|error| {
                panic!("{context}: {} does not check: {error:#}", snapshot.cid)
            });
    }
    kept.len()
}

#[tokio::test]
async fn random_changes_keep_every_snapshot_restorable() {
    let rounds = rounds(16);
    let mut verified = 0;
    for seed in [1u64, 7, 42] {
        let dir = tempfile::tempdir().unwrap();
        let mut world = DemoWorld::new(&common::bundle(), dir.path()).unwrap();
        world.owner.create_backup(DEMO_NODE, "").await.unwrap();
        world.owner.set_backup_frequency(10).await.unwrap();
        let source = world.node.source.clone();
        backup_bot::demo::write_sample_tree(&source).unwrap();
        let copies = dir.path().join("taken");
        fs::create_dir_all(&copies).unwrap();
        let mut taken_of = HashMap::new();
        let mut rng = Rng(seed);
        for round in 0..rounds {
            let context = format!("seed {seed}, round {round}");
            for _ in 0..1 + rng.below(6) {
                mutate(&source, &mut rng);
            }
            let copy = copies.join(format!("round-{round}"));
            copy_tree(&source, &copy);
            world.advance_blocks(10);
            let report = world.bot.pass().await.unwrap();
            assert!(report.errors.is_empty(), "{context}: {report:?}");
            for recorded in &report.snapshots {
                taken_of.insert(recorded.cid.clone(), copy.clone());
            }
            let owner = world.node.owner.clone();
            match rng.below(10) {
                0 => {
                    let kept = world.owner.snapshots(&owner, DEMO_NODE).await.unwrap();
                    if let Some(snapshot) = rng.pick(&kept) {
                        // Refused beyond the pin limit: that is the registry's rule, not ours.
                        let _ = world.owner.pin_snapshot(&snapshot.cid).await;
                    }
                }
                1 => {
                    let kept = world.owner.snapshots(&owner, DEMO_NODE).await.unwrap();
                    if let Some(snapshot) = rng.pick(&kept) {
                        let _ = world.owner.unpin_snapshot(&snapshot.cid).await;
                    }
                }
                2 if round % 7 == 6 => {
                    world.owner.delete_backup(DEMO_NODE).await.unwrap();
                    let report = world.bot.pass().await.unwrap();
                    assert!(report.errors.is_empty(), "{context}: {report:?}");
                    world.owner.create_backup(DEMO_NODE, "").await.unwrap();
                }
                3 => world.restart_bot().unwrap(),
                _ => {}
            }
            let scratch = dir.path().join("scratch");
            verified +=
                assert_every_kept_snapshot_restores(&mut world, &taken_of, &scratch, &context)
                    .await;
        }
    }
    println!("{verified} restores of kept snapshots verified");
    assert!(verified > 0);
}

/// Starts `backup-bot run --once` as Alice with `config`.
fn spawn_pass(config: &Path, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_backup-bot"))
        .args(["run", "--once", "--config"])
        .arg(config)
        .env("BACKUP_BOT_SURI", "//Alice")
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs substrate-contracts-node ($CONTRACTS_NODE or PATH)"]
async fn kills_and_a_second_process_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chain_node = node::DevNode::start(dir.path());
    // Retention 2, and a frequency of one block: every round prunes, unpins and collects.
    let registry_config = "Config { max_snapshots_per_backup: 2, max_backups_per_account: 16, \
                           min_frequency: 1, max_frequency: 5256000, default_frequency: 1, \
                           claim_timeout: 600, upgrade_delay: 100800 }";
    let contract = node::deploy(&chain_node.url, Some(registry_config)).await;
    let bob = dev::bob().public_key().to_account_id();
    let chain = NodeChain::connect(
        &chain_node.url,
        contract.clone(),
        &common::bundle(),
        dev::bob(),
    )
    .await
    .unwrap();
    let mut owner = Registry::new(chain);
    owner.create_backup("node-k", "").await.unwrap();
    let source = dir.path().join("node-k");
    backup_bot::demo::write_sample_tree(&source).unwrap();
    let mut rng = Rng(2026);
    // Large enough that a pass takes a while and kills land in every step of it.
    for index in 0..6 {
        fs::write(source.join(format!("big-{index}.bin")), rng.bytes(3 << 20)).unwrap();
    }
    let data_dir = dir.path().join("bot-data");
    let config = dir.path().join("bot.toml");
    fs::write(
        &config,
        format!(
            "url = \"{url}\"\ncontract = \"{contract}\"\nmetadata = \"{bundle}\"\n\
             data_dir = \"{data}\"\n\n[[nodes]]\nnode_id = \"node-k\"\nowner = \"{bob}\"\n\
             source = \"{source}\"\nrestore_to = \"{restore}\"\n",
            url = chain_node.url,
            bundle = common::bundle().display(),
            data = data_dir.display(),
            source = source.display(),
            restore = dir.path().join("restored").display(),
        ),
    )
    .unwrap();
    let served = ServedNode {
        node_id: "node-k".into(),
        owner: bob.clone(),
        source: source.clone(),
        restore_to: PathBuf::new(),
    };
    let copies = dir.path().join("taken");
    fs::create_dir_all(&copies).unwrap();
    let mut taken_of: HashMap<String, PathBuf> = HashMap::new();
    let (mut kills, mut refused_second, mut restores) = (0, 0, 0);
    for round in 0..rounds(6) {
        for _ in 0..1 + rng.below(4) {
            mutate(&source, &mut rng);
        }
        let copy = copies.join(format!("round-{round}"));
        copy_tree(&source, &copy);
        // A transaction, so that the chain moves on a block and a snapshot is due.
        owner.set_backup_frequency(1).await.unwrap();

        // Killed at a random moment of its pass (start-up, scan, store, pin, add_snapshot,
        // unpin, collection), twice.
        for attempt in 0..2 {
            let log = dir.path().join(format!("killed-{round}-{attempt}.log"));
            let mut pass = spawn_pass(&config, &log);
            std::thread::sleep(Duration::from_millis(rng.below(2500)));
            if pass.try_wait().unwrap().is_none() {
                pass.kill().unwrap();
                kills += 1;
            }
            pass.wait().unwrap();
        }
        // Two processes at once on one data folder: one serves, the other stops at once.
        let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));
        let mut first = spawn_pass(&config, &first_log);
        let mut second = spawn_pass(&config, &second_log);
        let (first_status, second_status) = (first.wait().unwrap(), second.wait().unwrap());
        for (status, log) in [(first_status, &first_log), (second_status, &second_log)] {
            let text = fs::read_to_string(log).unwrap();
            if status.code() == Some(1) {
                assert!(
                    text.contains("in use by another backup-bot"),
                    "round {round}: {text}"
                );
                refused_second += 1;
            } else {
                assert_eq!(status.code(), Some(0), "round {round}: {text}");
            }
        }
        // A clean pass after all that, on a final chain (the bot unpins only what is gone
        // at the finalized block).
        chain_node.wait_for_finality().await;
        let (code, _, log) = node::bot_command(&["run", "--once"], &config);
        assert_eq!(code, Some(0), "round {round}: {log}");

        let kept = owner.snapshots(&bob, "node-k").await.unwrap();
        for snapshot in &kept {
            taken_of
                .entry(snapshot.cid.clone())
                .or_insert_with(|| copy.clone());
        }
        let (code, checked, log) = node::bot_command(&["check", "--json", "--read-data"], &config);
        assert_eq!(code, Some(0), "round {round}: {checked} {log}");
        let identity = Keyring::open(data_dir.join("keys"))
            .unwrap()
            .path_of(&served);
        for snapshot in &kept {
            let target = dir.path().join("check");
            node::restore_with_cli(&snapshot.cid, &identity, &data_dir.join("store"), &target);
            assert_eq!(
                tree::first_difference(&taken_of[&snapshot.cid], &target).unwrap(),
                None,
                "round {round}: {}",
                snapshot.cid
            );
            restores += 1;
        }
    }
    println!(
        "{kills} kills, {refused_second} second processes refused, {restores} restores verified"
    );
    assert!(kills > 0 && restores > 0);
}

/// Which of `trees` the tree at `target` is, if any.
fn which_tree(trees: &[PathBuf], target: &Path) -> Option<usize> {
    trees
        .iter()
        .position(|tree| tree::first_difference(tree, target).unwrap().is_none())
}

#[tokio::test]
async fn a_killed_restore_leaves_the_old_tree_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("owner.key");
    keys::write_identity(&identity_file, &identity, "the owner").unwrap();
    let mut rng = Rng(31);
    // Two trees, with modes, times, links and a few big files, so that a restore takes a
    // while and kills land in every step of it: writing, syncing, swapping, removing.
    let trees: Vec<PathBuf> = ["tree-a", "tree-b"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    let mut cids = Vec::new();
    {
        let store = ContentStore::Local(LocalStore::open(&store_dir).unwrap());
        for tree in &trees {
            backup_bot::demo::write_sample_tree(tree).unwrap();
            for index in 0..4 {
                fs::write(tree.join(format!("big-{index}.bin")), rng.bytes(3 << 20)).unwrap();
            }
            for _ in 0..20 {
                mutate(tree, &mut rng);
            }
            cids.push(sealed::sealed_to(&store, tree, &identity).await.0);
        }
    }
    let target = dir.path().join("restored");
    let started = Instant::now();
    node::restore_with_cli(&cids[0].to_string(), &identity_file, &store_dir, &target);
    let whole_restore = started.elapsed();
    assert_eq!(which_tree(&trees, &target), Some(0));

    let mut kills = 0;
    for round in 0..rounds(16) {
        let before = which_tree(&trees, &target).expect("the target is one of the trees");
        let wanted = 1 - before;
        let mut restore = node::restore_command(
            &cids[wanted].to_string(),
            &identity_file,
            &store_dir,
            &target,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let wait = rng.below(whole_restore.as_millis() as u64 * 3 / 2 + 1);
        std::thread::sleep(Duration::from_millis(wait));
        if restore.try_wait().unwrap().is_none() {
            restore.kill().unwrap();
            kills += 1;
        }
        let status = restore.wait().unwrap();
        let after = which_tree(&trees, &target);
        assert!(
            after.is_some(),
            "round {round}: killed after {wait} ms, the target is neither tree"
        );
        if status.success() {
            assert_eq!(
                after,
                Some(wanted),
                "round {round}: restored the wrong tree"
            );
        }
    }
    // A restore that runs to its end takes the place of whatever is there and leaves no
    // staging folder behind.
    let last = 1 - which_tree(&trees, &target).unwrap();
    node::restore_with_cli(&cids[last].to_string(), &identity_file, &store_dir, &target);
    assert_eq!(which_tree(&trees, &target), Some(last));
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".restored.restoring-"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    println!("{kills} restores killed, the target whole after each");
    assert!(kills > 0);
}
