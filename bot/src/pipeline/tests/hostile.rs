//! Snapshots made or altered by an attacker: each refused with a clear error before anything
//! is written, the target left as it was.

use super::*;

/// Restores `root` over a target holding a previous tree: refused as invalid, with the
/// target untouched.
async fn assert_refused(fixture: &Fixture, root: &Cid, expected: &str) {
    let target = fixture.root.join("target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("previous"), b"kept").unwrap();
    let error = fixture.restore(root, &target).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidSnapshot(message) if message.contains(expected)),
        "{error:#}"
    );
    let left: Vec<_> = fs::read_dir(&target).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(fs::read(target.join("previous")).unwrap(), b"kept");
    let staging_left = fs::read_dir(&fixture.root).unwrap().any(|item| {
        item.unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".restoring-")
    });
    assert!(!staging_left, "the staging folder is removed");
}

/// A hard link must name a file written before it, of its size: not a later entry, not
/// a folder, not a path outside the snapshot.
#[tokio::test]
async fn a_hard_link_to_no_earlier_file_is_refused() {
    let fixture = fixture();
    let (_, scanned, _) = fixture.snapshot().await;
    for first in ["small.txt", "data", "../outside"] {
        let mut edited = fixture.scan(Some(&scanned.cache)).await;
        let entry = edited
            .manifest
            .entries
            .iter_mut()
            .find(|entry| entry.path == "run.sh")
            .unwrap();
        entry.hard_link_hex = Some(hex::encode(first));
        entry.chunks.clear();
        entry.size = 11;
        let root = fixture.reseal(&edited.manifest).await;
        assert_refused(
            &fixture,
            &root,
            "names no file of its size written before it",
        )
        .await;
    }
}

#[tokio::test]
async fn a_flipped_byte_in_any_block_is_refused() {
    let fixture = fixture();
    let (root, _, _) = fixture.snapshot().await;
    for cid in fixture.local().block_cids().unwrap() {
        let at = fixture.local().locate(&cid).unwrap().unwrap();
        let pack = File::options()
            .read(true)
            .write(true)
            .open(&at.pack)
            .unwrap();
        let middle = at.offset + at.len / 2;
        let flip_middle_byte = || {
            let mut byte = [0];
            pack.read_exact_at(&mut byte, middle).unwrap();
            pack.write_all_at(&[byte[0] ^ 1], middle).unwrap();
        };
        flip_middle_byte();
        assert_refused(&fixture, &root, "does not match its CID").await;
        flip_middle_byte();
    }
    fixture
        .restore(&root, &fixture.root.join("fine"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_swapped_block_is_refused() {
    let fixture = fixture();
    let (root, scanned, _) = fixture.snapshot().await;
    let chunks = chunks_of(&scanned, "data/large.bin");
    let (first, second) = (
        Cid::try_from(chunks[0].as_str()).unwrap(),
        Cid::try_from(chunks[1].as_str()).unwrap(),
    );
    fixture.local().swap_in(&first, &second);
    assert_refused(&fixture, &root, "does not match its CID").await;
}

#[tokio::test]
async fn a_manifest_from_another_snapshot_is_refused() {
    let fixture = fixture();
    let (root, _, _) = fixture.snapshot().await;
    fs::write(fixture.source.join("small.txt"), b"changed").unwrap();
    let (other_root, _, _) = fixture.snapshot().await;
    let links = |bytes: Vec<u8>| unixfs::decode_node(&bytes).unwrap().links;
    // This snapshot's chunks under the other snapshot's manifest.
    let mut mixed = links(fixture.store.get_block(&root).await.unwrap());
    let other_manifest = links(fixture.store.get_block(&other_root).await.unwrap())
        .into_iter()
        .find(|link| link.name == MANIFEST_LINK)
        .unwrap();
    mixed.retain(|link| link.name != MANIFEST_LINK);
    mixed.push(other_manifest);
    let mixed_root = unixfs::directory_node(mixed).unwrap();
    fixture.store.put_block(&mixed_root).await.unwrap();
    assert_refused(&fixture, &mixed_root.cid, "manifest of another snapshot").await;
}

#[tokio::test]
async fn only_recipients_restore_and_a_restore_replaces_the_target() {
    let fixture = fixture();
    let owner = age::x25519::Identity::generate();
    let recipients = [fixture.identity.to_public(), owner.to_public()];
    let (root, _) = snapshot_folder(
        &fixture.store,
        &fixture.source,
        &fixture.secret,
        "owner",
        "node",
        &recipients,
    )
    .await
    .unwrap();
    let target = fixture.root.join("owner");
    fs::create_dir_all(target.join("old")).unwrap();
    restore(&fixture.store, &root, &owner, None, &target)
        .await
        .unwrap();
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );

    let stranger = age::x25519::Identity::generate();
    let error = restore(&fixture.store, &root, &stranger, None, &target)
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("decrypt failed"), "{error}");
    let expected = Expected {
        owner: "owner",
        node_id: "another node",
    };
    let error = restore(&fixture.store, &root, &owner, Some(expected), &target)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("belongs to node \"node\""),
        "{error}"
    );
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
}

#[tokio::test]
async fn a_path_leaving_the_target_is_refused() {
    let fixture = fixture();
    let mut scanned = fixture.scan(None).await;
    scanned.manifest.entries[0].path = "../escape".into();
    let root = fixture.reseal(&scanned.manifest).await;
    assert_refused(&fixture, &root, "unsafe path: ../escape").await;
    assert!(!fixture.root.join("escape").exists());
}

/// A root whose manifest is a DAG of six levels, each node linking the one below 174
/// times (174^6 paths to one leaf): refused at the second visit, not walked.
#[tokio::test]
async fn a_dag_repeating_one_child_is_refused_at_once() {
    let fixture = fixture();
    let (root, _, _) = fixture.snapshot().await;
    let leaf = Block::new(RAW, b"one leaf".to_vec()).unwrap();
    fixture.store.put_block(&leaf).await.unwrap();
    let mut child = Child {
        cid: leaf.cid,
        tsize: 8,
        file_size: 8,
    };
    for _ in 0..6 {
        let (node, block) = unixfs::file_node_block(&vec![child; unixfs::MAX_LINKS]).unwrap();
        fixture.store.put_block(&block).await.unwrap();
        child = node;
    }
    let bytes = fixture.store.get_block(&root).await.unwrap();
    let mut links = unixfs::decode_node(&bytes).unwrap().links;
    links.retain(|link| link.name != MANIFEST_LINK);
    links.push(Link {
        cid: child.cid,
        name: MANIFEST_LINK.to_string(),
        tsize: child.tsize,
    });
    let hostile = unixfs::directory_node(links).unwrap();
    fixture.store.put_block(&hostile).await.unwrap();
    assert_refused(&fixture, &hostile.cid, "twice").await;
}

/// A manifest naming one chunk again and again, 1 TiB in all: refused before anything is
/// written, by the free space of the target's file system.
#[tokio::test]
async fn a_manifest_naming_a_terabyte_is_refused_before_writing() {
    let fixture = fixture();
    let mut scanned = fixture.scan(None).await;
    let entry = scanned
        .manifest
        .entries
        .iter_mut()
        .find(|entry| entry.path == "data/large.bin")
        .unwrap();
    let chunk = ChunkRef {
        len: u32::MAX,
        ..entry.chunks[0].clone()
    };
    entry.chunks = vec![chunk; 256];
    entry.size = 256 * u64::from(u32::MAX);
    let root = fixture.reseal(&scanned.manifest).await;
    assert_refused(&fixture, &root, "restore target's file system has").await;
}

/// A staging-like name planted beside the target as a link to another folder: removed as
/// a link, never followed; the folder it names keeps its files.
#[tokio::test]
async fn a_planted_staging_link_is_removed_not_followed() {
    let fixture = fixture();
    let (root, _, _) = fixture.snapshot().await;
    let victim = fixture.root.join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("precious"), b"keep me").unwrap();
    let planted = fixture.root.join(".target.restoring-planted");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let target = fixture.root.join("target");
    fixture.restore(&root, &target).await.unwrap();
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
    assert!(fs::symlink_metadata(&planted).is_err(), "the link is gone");
    assert_eq!(fs::read(victim.join("precious")).unwrap(), b"keep me");
}

/// A target that is a file, or a link to a folder, is refused before anything is written.
#[tokio::test]
async fn a_target_that_is_not_a_folder_is_refused() {
    let fixture = fixture();
    let (root, _, _) = fixture.snapshot().await;
    let file = fixture.root.join("a-file");
    fs::write(&file, b"not a folder").unwrap();
    let link = fixture.root.join("a-link");
    std::os::unix::fs::symlink(&fixture.source, &link).unwrap();
    for target in [&file, &link] {
        let error = fixture.restore(&root, target).await.unwrap_err();
        assert!(error.to_string().contains("is not a folder"), "{error}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a folder");
    assert_eq!(
        tree::first_difference(&fixture.source, &link).unwrap(),
        None
    );
}
