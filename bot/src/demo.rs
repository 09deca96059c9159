//! `backup-bot demo`: the whole flow on an in-process chain, with nothing installed.
//!
//! Deploys the registry (pallet-contracts in `ink_sandbox`) with Alice as admin and
//! authority and a retention of [`DEMO_RETENTION`] snapshots, lets Bob own a node whose data
//! is a sample tree, runs the bot's passes as blocks go by (a first snapshot, an unchanged
//! tree, a second snapshot storing only what changed, a third that prunes the first and
//! unpins it), has Bob request a restore, and checks the restored tree is identical, then
//! restores it again with Bob's own key alone.

use crate::bot::{Bot, RecordedSnapshot};
use crate::chain::SandboxChain;
use crate::config::ServedNode;
use crate::registry::{self, Registry};
use crate::store::{ContentStore, LocalStore};
use crate::{keys, pipeline, tree};
use anyhow::{bail, ensure, Result};
use backup_registry::{Config, RestoreStatus};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use subxt::utils::AccountId32;
use subxt_signer::sr25519::dev;

/// Node id of the demo's node.
pub const DEMO_NODE: &str = "demo-node";

/// Snapshots the demo's registry keeps per backup.
pub const DEMO_RETENTION: u32 = 2;

/// The demo registry's configuration: the defaults but for the retention.
fn demo_config() -> Config {
    Config {
        max_snapshots_per_backup: DEMO_RETENTION,
        ..Config::default()
    }
}

/// The bot's account: Alice, the registry's admin and only authority.
fn bot_account() -> AccountId32 {
    dev::alice().public_key().to_account_id()
}

/// Writes a small tree with nesting, an empty directory, a private executable, binary
/// content and a symbolic link, its files last modified an hour ago (a scan does not cache
/// files modified in the second before it).
pub fn write_sample_tree(root: &Path) -> Result<()> {
    fs::create_dir_all(root.join("data/nested"))?;
    fs::create_dir_all(root.join("empty"))?;
    fs::write(root.join("README"), b"node data\n")?;
    fs::write(root.join("data/blob.bin"), (0..=255u8).collect::<Vec<_>>())?;
    fs::write(root.join("data/nested/deep.txt"), b"deep")?;
    fs::write(root.join("run.sh"), b"#!/bin/sh\n")?;
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::symlink("data/nested/deep.txt", root.join("latest"))?;
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for file in ["README", "data/blob.bin", "data/nested/deep.txt", "run.sh"] {
        fs::File::options()
            .write(true)
            .open(root.join(file))?
            .set_modified(an_hour_ago)?;
    }
    Ok(())
}

/// The demo's setting: an in-process registry, the bot (Alice) and the owner (Bob).
pub struct DemoWorld {
    /// The bot, signing as Alice.
    pub bot: Bot<SandboxChain>,
    /// The owner's handle, signing as Bob.
    pub owner: Registry<SandboxChain>,
    /// The served node.
    pub node: ServedNode,
    /// The embedded content store's folder.
    pub store_dir: PathBuf,
    /// The bot's data directory.
    pub bot_data_dir: PathBuf,
}

impl DemoWorld {
    /// Deploys the bundle at `bundle` in-process and sets up the bot, Bob's node (data in
    /// `work_dir/source`, restores in `work_dir/restored`) and the store in `work_dir/store`.
    pub fn new(bundle: &Path, work_dir: &Path) -> Result<Self> {
        let alice = bot_account();
        let bob = dev::bob().public_key().to_account_id();
        let admin = SandboxChain::deploy(
            bundle,
            alice.clone(),
            &[bob.clone()],
            &registry::instantiate(&[alice.clone()], &demo_config()),
        )?;
        let owner = Registry::new(admin.as_account(bob.clone()));
        let node = ServedNode {
            node_id: DEMO_NODE.to_string(),
            owner: bob,
            source: work_dir.join("source"),
            restore_to: work_dir.join("restored"),
        };
        let store_dir = work_dir.join("store");
        let bot_data_dir = work_dir.join("bot");
        let bot = Self::start_bot(admin, &store_dir, &[node.clone()], &bot_data_dir)?;
        Ok(Self {
            bot,
            owner,
            node,
            store_dir,
            bot_data_dir,
        })
    }

    /// A bot signing with `chain`'s caller, serving `nodes`, with its data in `data_dir`. Its
    /// store has no grace period: the demo's chain moves in seconds, so what a collection
    /// removes shows at once.
    fn start_bot(
        chain: SandboxChain,
        store_dir: &Path,
        nodes: &[ServedNode],
        data_dir: &Path,
    ) -> Result<Bot<SandboxChain>> {
        let store = ContentStore::Local(LocalStore::open(store_dir)?.with_grace(Duration::ZERO));
        Bot::new(Registry::new(chain), store, nodes.to_vec(), data_dir)
    }

    /// A new bot on the same chain, store and data directory serving `nodes` instead (none:
    /// as after the node was taken out of the configuration), as a restart of the process
    /// with another configuration would be.
    pub fn bot_serving(&mut self, nodes: &[ServedNode]) -> Result<Bot<SandboxChain>> {
        let chain = self.owner.chain().as_account(bot_account());
        Self::start_bot(chain, &self.store_dir, nodes, &self.bot_data_dir)
    }

    /// Replaces the bot with a new one on the same chain, store and data directory, as a
    /// restart of the process would.
    pub fn restart_bot(&mut self) -> Result<()> {
        self.bot = self.bot_serving(&[self.node.clone()])?;
        Ok(())
    }

    /// Moves the chain on by `blocks` blocks.
    pub fn advance_blocks(&mut self, blocks: u32) {
        self.owner.chain().advance_blocks(blocks);
    }
}

/// Runs the demo in `work_dir` (see [`claim_work_dir`](crate::bench::claim_work_dir)) with the contract bundle at `bundle`.
pub async fn run(bundle: &Path, work_dir: &Path) -> Result<()> {
    crate::bench::claim_work_dir(work_dir)?;
    let mut world = DemoWorld::new(bundle, work_dir)?;
    println!(
        "1. Registry deployed in-process (retention {DEMO_RETENTION} snapshots per backup); \
         Alice is admin and the bot's authority."
    );
    world.bot.check_authority().await?;

    world.owner.create_backup(DEMO_NODE, "demo node").await?;
    world.owner.set_backup_frequency(10).await?;
    write_sample_tree(&world.node.source)?;
    let bob_identity = age::x25519::Identity::generate();
    let bob_identity_file = work_dir.join("bob.age-identity");
    keys::write_identity(&bob_identity_file, &bob_identity, "Bob's own key")?;
    let bob_recipient = bob_identity.to_public().to_string();
    world
        .owner
        .set_backup_recipient(DEMO_NODE, Some(&bob_recipient))
        .await?;
    println!(
        "2. Bob opts node {DEMO_NODE:?} in (data in {}), asks for a snapshot every 10 blocks,",
        world.node.source.display()
    );
    println!("   and registers his own age recipient {bob_recipient} on chain.");

    let report = world.bot.pass().await?;
    let first = single(&report.snapshots, "snapshot on the first pass")?.clone();
    println!("3. Bot pass: the folder is cut into chunks, each encrypted and stored as a block;");
    println!("   the manifest is sealed with age to the node's key and Bob's; the snapshot's root");
    println!("   {} is pinned and recorded on chain.", first.cid);
    print_stats(&first);

    world.advance_blocks(4);
    let report = world.bot.pass().await?;
    ensure!(
        report.not_due == [DEMO_NODE],
        "the node should not be due 4 blocks later"
    );
    println!("4. Four blocks later: not due, nothing read.");

    world.advance_blocks(10);
    let report = world.bot.pass().await?;
    ensure!(
        report.unchanged == [DEMO_NODE],
        "unchanged data should not be recorded again"
    );
    println!("5. Ten blocks later: due, but nothing changed (no file read again): no snapshot.");

    fs::write(world.node.source.join("data/new.txt"), b"written later")?;
    world.advance_blocks(10);
    let report = world.bot.pass().await?;
    let second = single(&report.snapshots, "snapshot of the changed data")?.clone();
    ensure!(
        second.stats.bytes_read == "written later".len() as u64,
        "only the new file should be read: {:?}",
        second.stats
    );
    println!(
        "6. Bob adds a file; ten blocks later snapshot {} reads only that file:",
        second.cid
    );
    print_stats(&second);

    fs::write(world.node.source.join("README"), b"node data, edited\n")?;
    world.advance_blocks(10);
    let report = world.bot.pass().await?;
    let third = single(&report.snapshots, "snapshot of the edited data")?.clone();
    ensure!(
        report.unpinned == [first.cid.clone()],
        "the pruned first snapshot should be unpinned: {report:?}"
    );
    let garbage = report.garbage.unwrap_or_default();
    println!(
        "7. Bob edits a file; snapshot {} is recorded, and the registry (keeping {DEMO_RETENTION})",
        third.cid
    );
    println!(
        "   prunes the first: the bot unpins it and the store removes the {} blocks ({} bytes)",
        garbage.removed_blocks, garbage.removed_bytes
    );
    println!("   no kept snapshot needs (the demo's store has no grace period; a bot's keeps them an hour).");

    let bob = world.node.owner.clone();
    let request_id = world.owner.restore_latest_snapshot(&bob, DEMO_NODE).await?;
    println!("8. Bob requests a restore of the latest snapshot: request {request_id}.");
    world.advance_blocks(1);

    let report = world.bot.pass().await?;
    ensure!(
        report.fulfilled == [request_id],
        "the bot should fulfil the request: {report:?}"
    );
    let status = world
        .owner
        .restore_request(request_id)
        .await?
        .map(|request| request.status);
    ensure!(
        matches!(status, Some(RestoreStatus::Fulfilled { .. })),
        "request status on chain: {status:?}"
    );
    println!("9. Bot pass: request claimed, every block checked against its CID, decrypted, and");
    println!(
        "   the tree written into {} once complete; marked Fulfilled on chain.",
        world.node.restore_to.display()
    );
    match tree::first_difference(&world.node.source, &world.node.restore_to)? {
        None => println!("   The restored tree is identical to the node's data."),
        Some(difference) => bail!("restored tree differs: {difference}"),
    }

    // The owner, without the bot: his own identity file and the store.
    let own_copy = work_dir.join("restored-by-bob");
    let identity = keys::read_identity(&bob_identity_file)?;
    let root = cid::Cid::try_from(third.cid.as_str())?;
    pipeline::restore(world.bot.store(), &root, &identity, None, &own_copy).await?;
    match tree::first_difference(&world.node.source, &own_copy)? {
        None => println!(
            "10. Bob restores snapshot {} with his own key alone, without the bot: identical.",
            third.cid
        ),
        Some(difference) => bail!("Bob's own restore differs: {difference}"),
    }
    println!(
        "Content store (encrypted blocks only): {}\nThe node's age identity: {}",
        world.store_dir.display(),
        world.bot.keyring().path_of(&world.node).display()
    );
    Ok(())
}

/// Prints what a snapshot holds and what it added to the store.
fn print_stats(snapshot: &RecordedSnapshot) {
    let stats = &snapshot.stats;
    println!(
        "   {} files, {} bytes of content, {} bytes read; {} distinct chunks; {} new blocks, \
         {} new bytes stored ({} bytes in the whole snapshot).",
        stats.files,
        stats.content_bytes,
        stats.bytes_read,
        stats.chunks,
        stats.new_blocks,
        stats.new_bytes,
        stats.snapshot_bytes
    );
}

/// The single element of `items`, or an error naming what was expected.
fn single<'a, T: std::fmt::Debug>(items: &'a [T], what: &str) -> Result<&'a T> {
    match items {
        [item] => Ok(item),
        other => bail!("expected one {what}, got {other:?}"),
    }
}
