//! The bot against the real contract on an in-process chain (pallet-contracts in
//! `ink_sandbox`): the demo, and the restore paths that must end in a clear on-chain status.
//!
//! Needs the release bundle: `bash scripts/build.sh` (or set `BACKUP_REGISTRY_BUNDLE`).

mod common;

use backup_bot::bot;
use backup_bot::demo::{self, DemoWorld, DEMO_NODE};
use backup_bot::keys;
use backup_bot::registry::Registry;
use backup_bot::store::{self, LocalStore};
use backup_registry::RestoreStatus;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
    let cid = report.snapshots[0].1.clone();
    let owner = world.node.owner.clone();
    let request_id = world
        .owner
        .restore_latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap();
    (world, request_id, cid)
}

/// Encrypts `plaintext` to `identity`, puts it in the world's store, and returns its CID.
fn store_encrypted(
    world: &DemoWorld,
    identity: &age::x25519::Identity,
    plaintext: &[u8],
    scratch: &Path,
) -> String {
    let path = scratch.join("snapshot.age");
    let mut writer =
        keys::encrypt_to(&[identity.to_public()], fs::File::create(&path).unwrap()).unwrap();
    writer.write_all(plaintext).unwrap();
    writer.finish().unwrap();
    let cid = store::cid_of_file(&path).unwrap();
    fs::copy(
        &path,
        LocalStore::open(&world.store_dir).unwrap().path_of(&cid),
    )
    .unwrap();
    cid.to_string()
}

/// Records `cid` as a snapshot of the world's node (as the bot), and has the owner request a
/// restore of it; returns the request's id.
async fn record_and_request(world: &mut DemoWorld, cid: &str) -> u64 {
    let owner = world.node.owner.clone();
    world
        .bot
        .registry()
        .add_snapshot(&owner, DEMO_NODE, cid, "", 1, 2048)
        .await
        .unwrap();
    world
        .owner
        .restore_latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap()
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

#[tokio::test]
async fn tampered_content_fails_the_request_at_the_cid_check() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, request_id, cid) = world_with_request(dir.path()).await;
    let stored = world.store_dir.join(&cid);
    let mut bytes = fs::read(&stored).unwrap();
    bytes[600] ^= 0xff;
    fs::write(&stored, bytes).unwrap();

    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.starts_with("cid mismatch"), "{report:?}");
    match status_of(&mut world, request_id).await {
        RestoreStatus::Failed { reason, .. } => assert!(reason.starts_with("cid mismatch")),
        other => panic!("request should have failed: {other:?}"),
    }
    assert!(!world.node.restore_dir(request_id).exists());
}

#[tokio::test]
async fn archive_escaping_its_folder_fails_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    // An archive with an entry `../escape`, written below the tar crate's own path checks.
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..9].copy_from_slice(b"../escape");
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"evil"[..]).unwrap();
    let identity = world.bot.keyring().identity(&world.node).unwrap();
    let cid = store_encrypted(
        &world,
        &identity,
        &builder.into_inner().unwrap(),
        dir.path(),
    );
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
    assert!(!world.node.restore_to.join("escape").exists());
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
    world
        .bot
        .registry()
        .claim_restore_request(request_id)
        .await
        .unwrap();
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
    let (mut world, request_id, cid) = world_with_request(dir.path()).await;
    let stored = world.store_dir.join(&cid);
    let kept = dir.path().join("kept");
    fs::rename(&stored, &kept).unwrap();

    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(matches!(
        status_of(&mut world, request_id).await,
        RestoreStatus::InProgress { .. }
    ));

    fs::rename(&kept, &stored).unwrap();
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.fulfilled, [request_id]);
}

#[tokio::test]
async fn snapshot_for_another_identity_fails_at_decryption() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let mut archive = Vec::new();
    backup_bot::archive::pack(&world.node.source, &mut archive).unwrap();
    // A well-formed snapshot under its own CID, but encrypted to someone else.
    let stranger = age::x25519::Identity::generate();
    let cid = store_encrypted(&world, &stranger, &archive, dir.path());
    let request_id = record_and_request(&mut world, &cid).await;

    let report = world.bot.pass().await.unwrap();
    assert!(
        report
            .failed
            .contains(&(request_id, "decrypt failed".to_string())),
        "{report:?}"
    );
    assert!(!world.node.restore_dir(request_id).exists());
}

#[tokio::test]
async fn stored_snapshots_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    demo::write_sample_tree(&world.node.source).unwrap();
    let report = world.bot.pass().await.unwrap();
    let stored = fs::read(world.store_dir.join(&report.snapshots[0].1)).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    for plaintext in [
        &b"README"[..],
        b"deep.txt",
        b"blob.bin",
        b"node data",
        b"ustar",
    ] {
        assert!(
            !stored
                .windows(plaintext.len())
                .any(|window| window == plaintext),
            "{} found in the stored snapshot",
            String::from_utf8_lossy(plaintext)
        );
    }
}

#[tokio::test]
async fn a_restarted_bot_does_not_record_unchanged_data_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut world = opted_in_world(dir.path()).await;
    world.owner.set_backup_frequency(10).await.unwrap();
    demo::write_sample_tree(&world.node.source).unwrap();
    let first = world.bot.pass().await.unwrap();
    assert_eq!(first.snapshots.len(), 1, "{first:?}");
    let remembered = world.bot_data_dir.join(bot::LAST_SNAPSHOTS_FILE);
    let mode = fs::metadata(&remembered).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the bot reads what it remembers");

    world.restart_bot().unwrap();
    world.advance_blocks(10);
    let after_restart = world.bot.pass().await.unwrap();
    assert_eq!(after_restart.unchanged, [DEMO_NODE], "{after_restart:?}");
    assert!(after_restart.snapshots.is_empty());

    // A damaged memory only costs one snapshot: it is replaced, not fatal.
    fs::write(&remembered, b"{not json").unwrap();
    world.restart_bot().unwrap();
    world.advance_blocks(10);
    let damaged = world.bot.pass().await.unwrap();
    assert_eq!(damaged.snapshots.len(), 1, "{damaged:?}");
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

    // After the owner deletes the backup, changed data is not recorded again.
    world.owner.delete_backup(DEMO_NODE).await.unwrap();
    fs::write(world.node.source.join("later.txt"), b"after deletion").unwrap();
    world.advance_blocks(10);
    let report = world.bot.pass().await.unwrap();
    assert_eq!(report.no_backup, [DEMO_NODE], "{report:?}");
    assert!(report.snapshots.is_empty() && report.errors.is_empty());
    assert_eq!(world.owner.backup(&owner, DEMO_NODE).await.unwrap(), None);
}

/// A request whose claimant stopped serving it: the bot leaves it alone while the claim holds,
/// takes it over and serves it once the claim lapsed (`claim_timeout`).
#[tokio::test]
async fn a_lapsed_claim_of_another_authority_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut world, request_id, _) = world_with_request(dir.path()).await;
    // The owner's account (funded on this chain) serves as the second authority.
    let other = world.node.owner.clone();
    world.bot.registry().add_authority(&other).await.unwrap();
    let mut other_bot = Registry::new(world.owner.chain().as_account(other.clone()));
    other_bot.claim_restore_request(request_id).await.unwrap();
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
