//! The bot against the real contract on an in-process chain (pallet-contracts in
//! `ink_sandbox`): the demo, and the restore paths that must end in a clear on-chain status.
//!
//! Needs the release bundle: `bash scripts/build.sh` (or set `BACKUP_REGISTRY_BUNDLE`).

mod common;

use backup_bot::demo::{self, DemoWorld, DEMO_NODE};
use backup_bot::store::{self, LocalStore};
use backup_registry::RestoreStatus;
use std::fs;

/// A world whose node has one recorded snapshot, and an open restore request for it.
async fn world_with_request(work_dir: &std::path::Path) -> (DemoWorld, u64, String) {
    let mut world = DemoWorld::new(&common::bundle(), work_dir).unwrap();
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
    let mut world = DemoWorld::new(&common::bundle(), dir.path()).unwrap();
    // An archive with an entry `../escape`, written below the tar crate's own path checks.
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..9].copy_from_slice(b"../escape");
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"evil"[..]).unwrap();
    let archive = dir.path().join("evil.tar");
    fs::write(&archive, builder.into_inner().unwrap()).unwrap();
    let cid = store::cid_of_file(&archive).unwrap();
    fs::copy(
        &archive,
        LocalStore::open(&world.store_dir).unwrap().path_of(&cid),
    )
    .unwrap();
    let owner = world.node.owner.clone();
    world
        .bot
        .registry()
        .add_snapshot(&owner, DEMO_NODE, &cid.to_string(), "", 1, 2048)
        .await
        .unwrap();
    let request_id = world
        .owner
        .restore_latest_snapshot(&owner, DEMO_NODE)
        .await
        .unwrap();

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
