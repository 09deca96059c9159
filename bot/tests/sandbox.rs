//! The bot against the real contract on an in-process chain (pallet-contracts in
//! `ink_sandbox`): the demo, the restore paths that must end in a clear on-chain status, the
//! cache across restarts, and what the store keeps when the registry prunes or deletes.
//!
//! Needs the release bundle: `bash scripts/build.sh` (or set `BACKUP_REGISTRY_BUNDLE`).

mod common;
#[path = "common/random.rs"]
mod random;

use backup_bot::bot::{self, Bot};
use backup_bot::chain::{At, Call, Chain, Outcome, SandboxChain};
use backup_bot::config::ServedNode;
use backup_bot::demo::{self, DemoWorld, DEMO_NODE};
use backup_bot::error::Error;
use backup_bot::pipeline::{self, BackupSecret, PreviousFiles};
use backup_bot::registry::{self, Registry};
use backup_bot::state::{self, StateDir};
use backup_bot::store::{ContentStore, LocalStore};
use backup_bot::tree;
use backup_bot::unixfs::{Block, RAW};
use backup_registry::{Config, RestoreStatus};
use cid::Cid;
use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use subxt::utils::AccountId32;
use subxt_signer::sr25519::dev;

/// A world whose owner opted its node in (`create_backup`).
async fn opted_in_world(work_dir: &Path) -> DemoWorld {
    let mut world = DemoWorld::new(&common::bundle(), work_dir).unwrap();
    world.owner.create_backup(DEMO_NODE, "").await.unwrap();
    world
}

/// A world whose node has one recorded snapshot, and an open restore request for it.
async fn world_with_request(work_dir: &std::path::Path) -> (DemoWorld, u64, String) {
    let mut world = opted_in_world(work_dir).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let report = world.bot.pass().await.unwrap();
    let cid = report.snapshots[0].cid.clone();
    let request_id = request_latest(&mut world).await;
    (world, request_id, cid)
}

/// A world with an open restore request that a second authority claimed (the owner's
/// account, funded on this chain, serves as that authority); returns the world, the
/// request's id and that authority.
async fn claimed_by_another_authority(work_dir: &Path) -> (DemoWorld, u64, AccountId32) {
    let (mut world, request_id, _) = world_with_request(work_dir).await;
    let other = world.node.owner.clone();
    world.bot.registry().add_authority(&other).await.unwrap();
    let mut other_bot = Registry::new(world.owner.chain().as_account(other.clone()));
    other_bot.claim_restore_request(request_id).await.unwrap();
    (world, request_id, other)
}

/// Has the owner request a restore of the latest snapshot; returns the request's id.
async fn request_latest(world: &mut DemoWorld) -> u64 {
    let owner = world.node.owner.clone();
    world
        .owner
        .restore_latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap()
}

/// The world's embedded store.
fn local_store(world: &DemoWorld) -> LocalStore {
    LocalStore::open(&world.store_dir).unwrap()
}

/// A snapshot of the world's node sealed to `identity`, after `edit` changed its manifest;
/// stored and pinned (not recorded), and returns its root CID.
async fn crafted_snapshot(
    world: &DemoWorld,
    identity: &age::x25519::Identity,
    edit: impl FnOnce(&mut pipeline::Manifest),
) -> String {
    let owner = world.node.owner.to_string();
    let secret = BackupSecret::derive(identity, &owner, DEMO_NODE);
    let store = world.bot.store();
    let scanned = pipeline::scan(
        store,
        &world.node.source,
        &secret,
        &owner,
        DEMO_NODE,
        &mut PreviousFiles::none(),
        None,
    )
    .await
    .unwrap();
    let recipients = [identity.to_public()];
    let (scanned_root, _) = pipeline::seal(store, scanned, &recipients).await.unwrap();
    let mut manifest = pipeline::open_manifest(store, &scanned_root, identity)
        .await
        .unwrap();
    edit(&mut manifest);
    let (root, _) = pipeline::seal_manifest(store, &manifest, &recipients, Default::default())
        .await
        .unwrap();
    store.pin(&root).await.unwrap();
    root.to_string()
}

/// Records `cid` as a snapshot of the world's node (as the bot, once the owner allowed an
/// early one), and has the owner request a restore of it; returns the request's id.
async fn record_and_request(world: &mut DemoWorld, cid: &str) -> u64 {
    let owner = world.node.owner.clone();
    world.owner.request_snapshot(DEMO_NODE).await.unwrap();
    world
        .bot
        .registry()
        .add_snapshot(&owner, DEMO_NODE, cid, "", 1, 2048)
        .await
        .unwrap();
    request_latest(world).await
}

/// Claims request `request_id` as the bot's account, outside a pass (as a bot that stopped
/// right after its claim, or an older release, would have).
async fn claim_as_the_bot(world: &mut DemoWorld, request_id: u64) {
    world
        .bot
        .registry()
        .claim_restore_request(request_id)
        .await
        .unwrap();
}

/// Restores snapshot `cid` with `identity` alone into `target`, and checks it is the node's
/// folder as it is now.
async fn assert_restores_to_source(
    world: &DemoWorld,
    cid: &str,
    identity: &age::x25519::Identity,
    target: &Path,
) {
    let root = cid::Cid::try_from(cid).unwrap();
    pipeline::restore(world.bot.store(), &root, identity, None, target)
        .await
        .unwrap_or_else(|error| panic!("{cid} does not restore: {error:#}"));
    assert_eq!(
        tree::first_difference(&world.node.source, target).unwrap(),
        None
    );
}

async fn status_of(world: &mut DemoWorld, request_id: u64) -> RestoreStatus {
    world
        .owner
        .restore_request(request_id)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    demo::run(&common::bundle(), &dir.path().join("demo"))
        .await
        .unwrap();
}

/// A tampered block fails the request at its CID check, and the previous restore stays in
/// place untouched.
#[tokio::test]
async fn tampered_content_fails_the_request_and_keeps_the_previous_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, first_request, _) = world_with_request(dir.path()).await;
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [first_request], "{report:?}");
    let restored = world.node.restore_to.clone();
    assert_eq!(
        tree::first_difference(&world.node.source, &restored).unwrap(),
        None
    );

    let store = local_store(&world);
    for cid in store.block_cids().unwrap() {
        let at = store.locate(&cid).unwrap().unwrap();
        let pack = fs::File::options()
            .read(true)
            .write(true)
            .open(&at.pack)
            .unwrap();
        let middle = at.offset + at.len / 2;
        let mut byte = [0];
        pack.read_exact_at(&mut byte, middle).unwrap();
        pack.write_all_at(&[byte[0] ^ 0xff], middle).unwrap();
    }
    let request_id = request_latest(&mut world).await;
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].1.contains("does not match its CID"),
        "{report:?}"
    );
    match status_of(&mut world, request_id).await {
        RestoreStatus::Failed { reason, .. } => assert!(reason.contains("does not match its CID")),
        other => panic!("request should have failed: {other:?}"),
    }
    assert_eq!(
        tree::first_difference(&world.node.source, &restored).unwrap(),
        None
    );
}

#[tokio::test]
async fn a_snapshot_escaping_its_folder_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let identity = world.bot.keyring().create_identity(&world.node).unwrap();
    let cid = crafted_snapshot(&world, &identity, |manifest| {
        manifest.entries[0].path = "../escape".into();
    })
    .await;
    let request_id = record_and_request(&mut world, &cid).await;

    let report = world.bot.pass().await.unwrap();
    assert_eq!(
        report.failed,
        [(request_id, "unsafe path: ../escape".to_string())]
    );
    assert!(matches!(
        status_of(&mut world, request_id).await,
        RestoreStatus::Failed { .. }
    ));
    assert!(!world.node.restore_to.exists());
    assert!(!world
        .node
        .restore_to
        .parent()
        .unwrap()
        .join("escape")
        .exists());
}

#[tokio::test]
async fn request_claimed_before_a_crash_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, request_id, _) = world_with_request(dir.path()).await;
    // The bot claimed the request, then stopped before serving it.
    claim_as_the_bot(&mut world, request_id).await;
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [request_id]);
    assert!(matches!(
        status_of(&mut world, request_id).await,
        RestoreStatus::Fulfilled { .. }
    ));
    // A further pass finds nothing to do: the request is not served twice.
    let report = world.bot.pass().await.unwrap();
    assert!(report.fulfilled.is_empty() && report.failed.is_empty());
}

#[tokio::test]
async fn missing_content_leaves_the_request_claimed_for_a_later_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    // More than a pack holds: the first chunks lie in a pack without the manifest.
    let big = random::random_bytes(20 << 20, 5);
    fs::write(world.node.source.join("big.bin"), big).unwrap();
    let cid = world.bot.pass().await.unwrap().snapshots[0].cid.clone();
    let request_id = request_latest(&mut world).await;
    let store = local_store(&world);
    // The pack holding a chunk of a file, not the manifest, is gone: the manifest opens,
    // the restore cannot finish.
    let identity = world.bot.keyring().identity(&world.node).unwrap().unwrap();
    let root = cid::Cid::try_from(cid.as_str()).unwrap();
    let root_pack = store.locate(&root).unwrap().unwrap().pack;
    let stored = chunk_cids(world.bot.store(), &cid, &identity)
        .await
        .iter()
        .map(|chunk| cid::Cid::try_from(chunk.as_str()).unwrap())
        .map(|chunk| store.locate(&chunk).unwrap().unwrap().pack)
        .find(|pack| *pack != root_pack)
        .expect("a chunk in another pack than the root's");
    let kept = dir.path().join("kept");
    fs::rename(&stored, &kept).unwrap();
    // A running bot reads on from the pack it has open; one started now finds it missing.
    world.restart_bot().unwrap();

    let report = world.bot.pass().await.unwrap();
    assert!(
        report.errors[0].ends_with("is not in the store"),
        "{report:?}"
    );
    assert!(matches!(
        status_of(&mut world, request_id).await,
        RestoreStatus::InProgress { .. }
    ));

    fs::rename(&kept, &stored).unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [request_id]);
}

/// A snapshot sealed to another key (another authority's): this bot does not claim the
/// request, which stays pending for the authority that can open it, instead of failing it as
/// "decrypt failed"; one it holds already (claimed before) fails with that reason.
#[tokio::test]
async fn a_snapshot_sealed_to_another_key_is_left_to_its_authority() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    world.bot.keyring().create_identity(&world.node).unwrap();
    // A well-formed snapshot under its own CID, but sealed to someone else.
    let stranger = age::x25519::Identity::generate();
    let cid = crafted_snapshot(&world, &stranger, |_| {}).await;
    let request_id = record_and_request(&mut world, &cid).await;

    let report = world.bot.pass().await.unwrap();
    assert!(
        report.failed.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        status_of(&mut world, request_id).await,
        RestoreStatus::Pending
    );

    claim_as_the_bot(&mut world, request_id).await;
    let report = world.bot.pass().await.unwrap();
    let reason = Error::NotARecipient.to_string();
    assert!(report.failed.contains(&(request_id, reason)), "{report:?}");
    assert!(!world.node.restore_to.exists());
}

#[tokio::test]
async fn stored_blocks_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    // Every file of the store: the packs, their indexes, the pins.
    let mut pending = vec![world.store_dir.clone()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            files += 1;
            let stored = fs::read(&path).unwrap();
            for plaintext in [
                &b"README"[..],
                b"deep.txt",
                b"blob.bin",
                b"node data",
                b"data/",
            ] {
                assert!(
                    !stored
                        .windows(plaintext.len())
                        .any(|window| window == plaintext),
                    "{} found in {}",
                    String::from_utf8_lossy(plaintext),
                    path.display()
                );
            }
        }
    }
    assert!(files >= 2, "a pack and a pin");
}

#[tokio::test]
async fn a_restarted_bot_does_not_record_unchanged_data_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let first = world.bot.pass().await.unwrap();
    assert_eq!(first.snapshots.len(), 1, "{first:?}");
    let remembered = StateDir::open(&world.bot_data_dir)
        .unwrap()
        .cache_file(&world.node)
        .path()
        .to_path_buf();
    let mode = fs::metadata(&remembered).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the bot reads what it remembers");

    world.restart_bot().unwrap();
    world.advance_blocks(10);
    let after_restart = world.bot.pass().await.unwrap();
    assert_eq!(after_restart.unchanged, [DEMO_NODE], "{after_restart:?}");
    assert!(after_restart.snapshots.is_empty());

    // A damaged cache only costs one snapshot, which stores no chunk again: it is replaced,
    // not fatal.
    fs::write(&remembered, b"{not json").unwrap();
    world.restart_bot().unwrap();
    world.advance_blocks(10);
    let damaged = world.bot.pass().await.unwrap();
    assert_eq!(damaged.snapshots.len(), 1, "{damaged:?}");
    let stats = damaged.snapshots[0].stats;
    assert_eq!(
        stats.new_blocks, 2,
        "only the new manifest and root: {stats:?}"
    );
    world.restart_bot().unwrap();
    world.advance_blocks(10);
    let repaired = world.bot.pass().await.unwrap();
    assert_eq!(repaired.unchanged, [DEMO_NODE], "{repaired:?}");
}

#[tokio::test]
async fn nodes_without_a_backup_are_skipped_and_deletion_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = DemoWorld::new(&common::bundle(), dir.path()).unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let owner = world.node.owner.clone();
    // The owner never opted in: the bot records nothing and opens no backup.
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.no_backup, [DEMO_NODE], "{report:?}");
    assert!(report.snapshots.is_empty() && report.errors.is_empty());
    assert_eq!(world.owner.backup(&owner, DEMO_NODE).await.unwrap(), None);

    world.owner.create_backup(DEMO_NODE, "").await.unwrap();
    world.owner.set_backup_frequency(10).await.unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");

    let recorded = report.snapshots[0].cid.clone();

    // After the owner deletes the backup, changed data is not recorded again, and the
    // deleted snapshot leaves the store.
    world.owner.delete_backup(DEMO_NODE).await.unwrap();
    fs::write(world.node.source.join("later.txt"), b"after deletion").unwrap();
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.no_backup, [DEMO_NODE], "{report:?}");
    assert!(report.snapshots.is_empty() && report.errors.is_empty());
    assert_eq!(report.unpinned, [recorded], "{report:?}");
    assert_eq!(world.owner.backup(&owner, DEMO_NODE).await.unwrap(), None);
    let store = local_store(&world);
    assert!(store.pinned().unwrap().is_empty());
    assert!(
        store.block_cids().unwrap().is_empty(),
        "every block was collected"
    );
}

/// The listing numbers each kept snapshot by its place in the backup's history: a pinned
/// snapshot kept beyond retention keeps its number, and a pruned one leaves a gap.
#[tokio::test]
async fn numbered_snapshots_keep_their_sequence_numbers_across_pins_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    let owner = world.node.owner.clone();
    demo::write_sample_tree(&world.node.source).unwrap();
    let mut recorded = Vec::new();
    for pass in 0..4 {
        fs::write(world.node.source.join("pass.txt"), format!("pass {pass}")).unwrap();
        world.advance_blocks(10);
        let report = world.bot.pass().await.unwrap();
        assert_eq!(report.snapshots.len(), 1, "{report:?}");
        recorded.push(report.snapshots[0].cid.clone());
        if pass == 0 {
            world.owner.pin_snapshot(&recorded[0]).await.unwrap();
        }
    }

    // Retention is 2 in this world: of seqs 0 to 3, 1 was pruned and 0 is kept pinned.
    let listed = world
        .owner
        .numbered_snapshots(&owner, DEMO_NODE)
        .await
        .unwrap();
    let seen: Vec<(u32, bool, &str)> = listed
        .iter()
        .map(|numbered| {
            (
                numbered.seq,
                numbered.pinned,
                numbered.snapshot.cid.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, true, recorded[0].as_str()),
            (2, false, recorded[2].as_str()),
            (3, false, recorded[3].as_str()),
        ]
    );
    assert!(world
        .owner
        .numbered_snapshots(&owner, "no-such-node")
        .await
        .unwrap()
        .is_empty());
}

/// A recovery key named in the configuration opens every snapshot taken since, alone.
#[tokio::test]
async fn an_extra_recipient_restores_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    let recovery = age::x25519::Identity::generate();
    world.bot.set_extra_recipients(vec![recovery.to_public()]);
    demo::write_sample_tree(&world.node.source).unwrap();
    let report = world.bot.pass().await.unwrap();
    let target = dir.path().join("recovered");
    assert_restores_to_source(&world, &report.snapshots[0].cid, &recovery, &target).await;
}

/// A request whose claimant stopped serving it: the bot leaves it alone while the claim holds,
/// takes it over and serves it once the claim lapsed (`claim_timeout`).
#[tokio::test]
async fn a_lapsed_claim_of_another_authority_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, request_id, other) = claimed_by_another_authority(dir.path()).await;
    let timeout = world.owner.config().await.unwrap().claim_timeout;

    world.advance_blocks(timeout - 1);
    let report = world.bot.pass().await.unwrap();
    assert!(report.fulfilled.is_empty(), "{report:?}");
    assert_eq!(
        status_of(&mut world, request_id).await,
        RestoreStatus::InProgress {
            authority: other.0.into()
        }
    );

    world.advance_blocks(1);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [request_id], "{report:?}");
}

/// The owner's `request_snapshot` is honoured on the bot's next pass, before the frequency
/// has passed and even with the content unchanged; then snapshots wait for the frequency again.
#[tokio::test]
async fn a_requested_snapshot_is_taken_on_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.not_due, [DEMO_NODE], "{report:?}");

    world.owner.request_snapshot(DEMO_NODE).await.unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    let owner = world.node.owner.clone();
    let backup = world
        .owner
        .backup(&owner, DEMO_NODE)
        .await
        .unwrap()
        .unwrap();
    assert!(!backup.snapshot_requested);
    assert_eq!(backup.snapshot_count(), 2);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.not_due, [DEMO_NODE], "{report:?}");
}

/// A request claimed by an account that is no longer an authority: the bot takes it over at
/// once, without waiting for the claim to lapse.
#[tokio::test]
async fn a_claim_of_a_removed_authority_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, request_id, other) = claimed_by_another_authority(dir.path()).await;
    let report = world.bot.pass().await.unwrap();
    assert!(report.fulfilled.is_empty(), "{report:?}");
    world.bot.registry().remove_authority(&other).await.unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [request_id], "{report:?}");
}

/// A `keys/` folder that went away (unmounted, moved) between two passes: the bot creates no
/// new identity in its place while the registry keeps snapshots sealed with the old one. The
/// pass records nothing and says why, and a restarted bot refuses to start.
#[tokio::test]
async fn a_lost_keys_folder_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    let owner = world.node.owner.clone();
    demo::write_sample_tree(&world.node.source).unwrap();
    let first = world.bot.pass().await.unwrap();
    assert_eq!(first.snapshots.len(), 1, "{first:?}");
    let keys = world.bot_data_dir.join("keys");
    let moved = dir.path().join("keys-elsewhere");
    fs::rename(&keys, &moved).unwrap();

    fs::write(world.node.source.join("later.txt"), b"changed").unwrap();
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert!(report.snapshots.is_empty(), "{report:?}");
    assert!(
        report.errors.len() == 1 && report.errors[0].contains("identity of node"),
        "{report:?}"
    );
    assert!(!keys.exists(), "no keys folder made again");
    let latest = world
        .owner
        .latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap();
    assert_eq!(latest.unwrap().cid, first.snapshots[0].cid);

    let error = world.restart_bot().unwrap_err().to_string();
    assert!(error.contains("is missing"), "{error}");

    fs::rename(&moved, &keys).unwrap();
    world.restart_bot().unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
}

/// The chunk CIDs the manifest of snapshot `root` names, opened with `identity`.
async fn chunk_cids(
    store: &backup_bot::store::ContentStore,
    root: &str,
    identity: &age::x25519::Identity,
) -> std::collections::HashSet<String> {
    let root = cid::Cid::try_from(root).unwrap();
    let manifest = pipeline::open_manifest(store, &root, identity)
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    manifest
        .entries
        .iter()
        .flat_map(|entry| entry.chunks.iter().map(|chunk| chunk.cid.clone()))
        .collect()
}

/// The owner replaces its registered recipient: the next snapshot is under a new secret (it
/// shares no block with the previous one, though the files are the same), the removed
/// recipient cannot open it, the new one can, and the older snapshot stays readable.
#[tokio::test]
async fn a_new_recipient_starts_a_new_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let (removed, added) = (
        age::x25519::Identity::generate(),
        age::x25519::Identity::generate(),
    );
    let removed_name = removed.to_public().to_string();
    world
        .owner
        .set_backup_recipient(DEMO_NODE, Some(&removed_name))
        .await
        .unwrap();
    let first = world.bot.pass().await.unwrap().snapshots[0].cid.clone();
    let added_name = added.to_public().to_string();
    world
        .owner
        .set_backup_recipient(DEMO_NODE, Some(&added_name))
        .await
        .unwrap();
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    let second = report.snapshots[0].cid.clone();

    let store = world.bot.store();
    let (before, after) = (
        chunk_cids(store, &first, &removed).await,
        chunk_cids(store, &second, &added).await,
    );
    assert!(!before.is_empty() && before.is_disjoint(&after));
    let second_root = cid::Cid::try_from(second.as_str()).unwrap();
    let error = pipeline::open_manifest(store, &second_root, &removed)
        .await
        .err()
        .expect("the removed recipient cannot open the later snapshot");
    assert!(error.to_string().starts_with("decrypt failed"), "{error}");
    for (root, identity) in [(&first, &removed), (&second, &added)] {
        let target = dir.path().join(format!("restored-{root}"));
        assert_restores_to_source(&world, root, identity, &target).await;
    }
}

/// Pins of a node taken out of the configuration: a snapshot the registry still keeps stays
/// pinned (nothing is lost to a configuration mistake), one it does not keep is unpinned and
/// collected, and the rest goes once the registry drops it.
#[tokio::test]
async fn pins_of_a_node_no_longer_served_go_only_when_the_registry_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let kept = world.bot.pass().await.unwrap().snapshots[0].cid.clone();
    let identity = world.bot.keyring().identity(&world.node).unwrap().unwrap();
    fs::write(world.node.source.join("unrecorded.txt"), b"never on chain").unwrap();
    let unrecorded = crafted_snapshot(&world, &identity, |_| {}).await;
    let state = StateDir::open(&world.bot_data_dir).unwrap();
    let mut pins = state.load_pins();
    let gone = format!("{}/a node no longer served", world.node.owner);
    pins.insert(gone.clone(), vec![kept.clone(), unrecorded.clone()]);
    state.save_pins(&pins).unwrap();
    world.restart_bot().unwrap();

    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.unpinned, [unrecorded.clone()], "{report:?}");
    assert_eq!(state.load_pins()[&gone], [kept.clone()]);
    let store = local_store(&world);
    let unrecorded_root = cid::Cid::try_from(unrecorded.as_str()).unwrap();
    assert_eq!(store.locate(&unrecorded_root).unwrap(), None, "collected");

    world.owner.delete_backup(DEMO_NODE).await.unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.unpinned, [kept.clone(), kept], "{report:?}");
    assert!(!state.load_pins().contains_key(&gone));
    assert!(store.pinned().unwrap().is_empty());
}

/// Pins of a node taken out of the configuration are held for the release period from the
/// pass that first finds it unserved, then released though the registry still keeps the
/// snapshot; a node served again within the period loses nothing, and its period starts
/// afresh when it leaves again.
#[tokio::test]
async fn pins_of_a_node_no_longer_served_are_released_after_the_release_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10_000).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let kept = world.bot.pass().await.unwrap().snapshots[0].cid.clone();
    let state = StateDir::open(&world.bot_data_dir).unwrap();
    let key = state::node_key(&world.node);
    let store = local_store(&world);
    let root = cid::Cid::try_from(kept.as_str()).unwrap();

    let mut unserving = world.bot_serving(&[]).unwrap();
    unserving.set_release_unserved_after(20);
    let left_at = world.owner.block_number().await.unwrap();
    assert_eq!(
        unserving.pass().await.unwrap().unpinned,
        Vec::<String>::new()
    );
    assert_eq!(state.load_unserved()[&key], left_at);
    world.advance_blocks(19);
    assert_eq!(
        unserving.pass().await.unwrap().unpinned,
        Vec::<String>::new()
    );
    assert_eq!(store.pinned().unwrap(), [root]);

    // Served again in time: nothing lost, the count is over.
    world.restart_bot().unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.not_due, [DEMO_NODE], "{report:?}");
    assert!(state.load_unserved().is_empty());

    // Out again: the period starts afresh, and ends in a release.
    let mut unserving = world.bot_serving(&[]).unwrap();
    unserving.set_release_unserved_after(20);
    let left_again_at = world.owner.block_number().await.unwrap();
    unserving.pass().await.unwrap();
    assert_eq!(state.load_unserved()[&key], left_again_at);
    world.advance_blocks(19);
    assert_eq!(
        unserving.pass().await.unwrap().unpinned,
        Vec::<String>::new()
    );
    world.advance_blocks(1);
    let report = unserving.pass().await.unwrap();
    assert_eq!(report.unpinned, [kept.clone()], "{report:?}");
    let latest = world.owner.latest_snapshot(&world.node.owner, DEMO_NODE);
    assert_eq!(
        latest.await.unwrap().unwrap().cid,
        kept,
        "still kept on chain"
    );
    assert!(!state.load_pins().contains_key(&key));
    assert!(state.load_unserved().is_empty());
    assert!(store.pinned().unwrap().is_empty());
    assert_eq!(
        local_store(&world).locate(&root).unwrap(),
        None,
        "collected"
    );
}

/// A restore killed half-way leaves its staging folder, which may hold a tree in the clear:
/// the next start removes it.
#[tokio::test]
async fn a_staging_folder_left_by_a_kill_is_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    let target = world.node.restore_to.clone();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let leftover = target.with_file_name(format!(".{name}.restoring-killed"));
    fs::create_dir_all(leftover.join("half")).unwrap();
    fs::write(leftover.join("half/secret.txt"), b"restored in the clear").unwrap();
    fs::set_permissions(leftover.join("half"), fs::Permissions::from_mode(0o500)).unwrap();
    let unrelated = target.with_file_name("unrelated");
    fs::create_dir_all(&unrelated).unwrap();
    world.restart_bot().unwrap();
    assert!(!leftover.exists());
    assert!(unrelated.exists());
}

/// A snapshot the bot submitted but never saw recorded (it was killed, or the call failed
/// after it was sent): kept pinned for `SUBMITTED_GRACE_BLOCKS`, since its transaction may
/// still land; it restores when it does; one that never lands is unpinned after that.
#[tokio::test]
async fn a_submitted_snapshot_stays_pinned_while_it_may_still_land() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    // No snapshot falls due during the test: only the crafted roots come and go.
    world.owner.set_backup_frequency(5_000).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    world.bot.pass().await.unwrap();
    let identity = world.bot.keyring().identity(&world.node).unwrap().unwrap();
    let now = world.bot.registry().block_number().await.unwrap();
    let state = StateDir::open(&world.bot_data_dir).unwrap();
    let (mut pins, mut submitted) = (state.load_pins(), state.load_submitted());
    let mut crafted = Vec::new();
    for name in ["lands-late.txt", "never-lands.txt"] {
        fs::write(world.node.source.join(name), name).unwrap();
        let root = crafted_snapshot(&world, &identity, |_| {}).await;
        pins.get_mut(&state::node_key(&world.node))
            .unwrap()
            .push(root.clone());
        submitted.insert(root.clone(), now);
        crafted.push(root);
    }
    state.save_pins(&pins).unwrap();
    state.save_submitted(&submitted).unwrap();
    world.restart_bot().unwrap();

    let report = world.bot.pass().await.unwrap();
    assert!(report.unpinned.is_empty(), "{report:?}");
    // The first one's transaction lands now (early, as the owner allows).
    let owner = world.node.owner.clone();
    world.owner.request_snapshot(DEMO_NODE).await.unwrap();
    world
        .bot
        .registry()
        .add_snapshot(&owner, DEMO_NODE, &crafted[0], "", 1, 2048)
        .await
        .unwrap();
    world.advance_blocks(bot::SUBMITTED_GRACE_BLOCKS);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.unpinned, [crafted[1].clone()], "{report:?}");
    assert!(state.load_submitted().is_empty());
    let target = dir.path().join("landed");
    let root = cid::Cid::try_from(crafted[0].as_str()).unwrap();
    pipeline::restore(world.bot.store(), &root, &identity, None, &target)
        .await
        .unwrap();
}

/// The in-process chain, on which the owner unpins a snapshot just before the bot reads the
/// second page of a backup's snapshots: the page shifts by one under the reader.
struct ShiftingChain {
    chain: SandboxChain,
    /// The owner's handle and the CID it unpins, until it has.
    unpin: Option<(Registry<SandboxChain>, String)>,
}

impl Chain for ShiftingChain {
    fn account(&self) -> AccountId32 {
        self.chain.account()
    }

    async fn block_number(&mut self) -> anyhow::Result<u32> {
        self.chain.block_number().await
    }

    async fn dry_run(&mut self, call: &Call, at: At) -> anyhow::Result<Outcome> {
        // `snapshots(owner, node_id, offset, limit)` from offset 32: the second page (its
        // call data ends with offset and limit, each a little-endian u32).
        let offset = call
            .data
            .len()
            .checked_sub(8)
            .map(|at| &call.data[at..at + 4]);
        if call.message == "snapshots" && offset == Some(&32u32.to_le_bytes()[..]) {
            if let Some((mut owner, cid)) = self.unpin.take() {
                owner.unpin_snapshot(&cid).await?;
            }
        }
        self.chain.dry_run(call, at).await
    }

    async fn submit(&mut self, call: &Call, dry_run: &Outcome) -> anyhow::Result<()> {
        self.chain.submit(call, dry_run).await
    }
}

/// Records a snapshot of content no bot stored, as another authority would, once the owner's
/// frequency has passed; returns its CID.
async fn add_foreign_snapshot(
    authority: &mut Registry<SandboxChain>,
    owner: &AccountId32,
    n: u32,
) -> String {
    authority.chain().advance_blocks(10);
    let cid = Block::new(RAW, format!("foreign {n}").into_bytes())
        .unwrap()
        .cid
        .to_string();
    authority
        .add_snapshot(owner, DEMO_NODE, &cid, "", u64::from(n), 1)
        .await
        .unwrap();
    cid
}

/// The bot's snapshot sits at index 32 of a backup's 41 kept snapshots (40 in the window, one
/// pinned before it). While the bot reads the list, after its first page of 32 and before
/// the second, the owner unpins the pinned one, which leaves the window and is pruned: the
/// bot's snapshot moves to index 31 and is on neither page the bot read. The bot confirms by
/// CID before unpinning, and keeps it.
#[tokio::test]
async fn a_page_shifted_by_a_concurrent_unpin_unpins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = dev::alice().public_key().to_account_id();
    let bob = dev::bob().public_key().to_account_id();
    let config = Config {
        max_snapshots_per_backup: 40,
        max_backups_per_account: 16,
        min_frequency: 10,
        max_frequency: 5_256_000,
        default_frequency: 10,
        claim_timeout: 600,
        upgrade_delay: 100_800,
    };
    let admin = SandboxChain::deploy(
        &common::bundle(),
        alice.clone(),
        &[bob.clone()],
        &registry::instantiate(&[alice.clone()], &config),
    )
    .unwrap();
    let owner_handle = || Registry::new(admin.as_account(bob.clone()));
    let mut owner = owner_handle();
    owner.create_backup(DEMO_NODE, "").await.unwrap();
    let mut other_authority = Registry::new(admin.as_account(alice.clone()));
    let pinned = add_foreign_snapshot(&mut other_authority, &bob, 0).await;
    owner.pin_snapshot(&pinned).await.unwrap();
    for n in 1..32 {
        add_foreign_snapshot(&mut other_authority, &bob, n).await;
    }

    let node = ServedNode {
        node_id: DEMO_NODE.to_string(),
        owner: bob.clone(),
        source: dir.path().join("source"),
        restore_to: dir.path().join("restored"),
    };
    demo::write_sample_tree(&node.source).unwrap();
    let chain = ShiftingChain {
        chain: admin.as_account(alice.clone()),
        unpin: None,
    };
    let store = ContentStore::Local(LocalStore::open(dir.path().join("store")).unwrap());
    let mut bot = Bot::new(
        Registry::new(chain),
        store,
        vec![node],
        &dir.path().join("bot"),
    )
    .unwrap();
    admin.advance_blocks(10);
    let report = bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    let ours = report.snapshots[0].cid.clone();
    for n in 33..41 {
        add_foreign_snapshot(&mut other_authority, &bob, n).await;
    }
    let index_of_ours = |listed: &[backup_registry::Snapshot]| {
        listed.iter().position(|snapshot| snapshot.cid == ours)
    };
    let listed = owner.snapshots(&bob, DEMO_NODE).await.unwrap();
    assert_eq!((listed.len(), index_of_ours(&listed)), (41, Some(32)));

    bot.registry().chain().unpin = Some((owner_handle(), pinned.clone()));
    let report = bot.pass().await.unwrap();
    assert!(
        bot.registry().chain().unpin.is_none(),
        "the owner unpinned during the pass"
    );
    let listed = owner.snapshots(&bob, DEMO_NODE).await.unwrap();
    assert_eq!(
        (listed.len(), index_of_ours(&listed)),
        (40, Some(31)),
        "the page shifted: ours was on neither page the bot read"
    );
    assert!(
        report.unpinned.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
    let root = Cid::try_from(ours.as_str()).unwrap();
    assert!(bot.store().is_pinned(&root).await.unwrap());
}

/// A backup whose storage reserve was used up (another authority's snapshots with the longest
/// descriptions, pinned, and the owner's grants, recipient and a cancelled request): the bot
/// skips it with a warning, not an error, without scanning or sealing anything, until its owner
/// funds it, then records again.
#[tokio::test]
async fn an_unfunded_backup_is_skipped_until_its_owner_funds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let owner = world.node.owner.clone();
    let mut authority = Registry::new(
        world
            .owner
            .chain()
            .as_account(dev::alice().public_key().to_account_id()),
    );
    let long = "d".repeat(backup_registry::MAX_DESCRIPTION_LEN);
    for n in 0..backup_registry::MAX_PINS_PER_BACKUP {
        authority.chain().advance_blocks(10);
        let cid = Block::new(RAW, format!("long {n}").into_bytes())
            .unwrap()
            .cid
            .to_string();
        authority
            .add_snapshot(&owner, DEMO_NODE, &cid, &long, u64::from(n), 1)
            .await
            .unwrap();
        world.owner.pin_snapshot(&cid).await.unwrap();
    }
    for grantee in 0..backup_registry::MAX_GRANTS_PER_BACKUP {
        let grantee = AccountId32([grantee as u8 + 1; 32]);
        world.owner.grant_access(DEMO_NODE, &grantee).await.unwrap();
    }
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    world
        .owner
        .set_backup_recipient(DEMO_NODE, Some(&recipient))
        .await
        .unwrap();
    let request_id = world
        .owner
        .restore_latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap();
    world
        .owner
        .cancel_restore_request(request_id)
        .await
        .unwrap();

    let mut unfunded_at = None;
    for pass in 0..4 {
        fs::write(
            world.node.source.join("changing.txt"),
            format!("pass {pass}"),
        )
        .unwrap();
        world.advance_blocks(10);
        let report = world.bot.pass().await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        if report.unfunded == [DEMO_NODE] {
            assert!(report.snapshots.is_empty(), "{report:?}");
            // Refused before the scan: no root was sealed, pinned and then released.
            assert!(report.unpinned.is_empty(), "{report:?}");
            unfunded_at = Some(pass);
            break;
        }
        assert_eq!(report.snapshots.len(), 1, "{report:?}");
    }
    assert!(unfunded_at.is_some(), "the reserve never ran out");
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.unfunded, [DEMO_NODE], "{report:?}");
    world.owner.fund_backup(DEMO_NODE, 1).await.unwrap();
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    assert!(
        report.unfunded.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
}
