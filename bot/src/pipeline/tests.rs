use super::manifest::MANIFEST_LINK;
use super::*;
use crate::bench::random_bytes;
use crate::invalid::Invalid;
use crate::store::ContentStore;
use crate::store::LocalStore;
use crate::tree;
use crate::unixfs::Block;
use crate::unixfs::{self, Child, Link, RAW};
use anyhow::Result;
use cid::Cid;
use std::collections::HashSet;
use std::fs;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::path::PathBuf;

/// A tree with a large random file, a small one, an executable and an empty folder.
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("data/empty")).unwrap();
    fs::write(root.join("data/large.bin"), random_bytes(8 << 20, 7)).unwrap();
    fs::write(root.join("small.txt"), b"small file\n").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    // Written an hour ago: files modified in the second before a scan are not cached.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for file in ["data/large.bin", "small.txt", "run.sh"] {
        let file = File::options().write(true).open(root.join(file)).unwrap();
        file.set_modified(past).unwrap();
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
    store: ContentStore,
    identity: age::x25519::Identity,
    secret: BackupSecret,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let source = root.join("source");
    sample_tree(&source);
    let identity = age::x25519::Identity::generate();
    let secret = BackupSecret::derive(&identity, "owner", "node");
    Fixture {
        store: ContentStore::Local(LocalStore::open(root.join("store")).unwrap()),
        _dir: dir,
        root,
        source,
        identity,
        secret,
    }
}

impl Fixture {
    fn local(&self) -> &LocalStore {
        match &self.store {
            ContentStore::Local(local) => local,
            ContentStore::Kubo(_) => unreachable!(),
        }
    }

    async fn scan(&self, previous: &FileCache) -> Scanned {
        scan(
            &self.store,
            &self.source,
            &self.secret,
            "owner",
            "node",
            previous,
        )
        .await
        .unwrap()
    }

    async fn snapshot(&self) -> (Cid, Scanned, SnapshotStats) {
        let scanned = self.scan(&FileCache::new()).await;
        let (root, stats) = seal(&self.store, &scanned, &[self.identity.to_public()])
            .await
            .unwrap();
        (root, scanned, stats)
    }

    async fn restore(&self, root: &Cid, target: &Path) -> Result<RestoreStats> {
        restore(&self.store, root, &self.identity, None, target).await
    }
}

/// The chunk CIDs of `scanned`'s file `path`.
fn chunks_of(scanned: &Scanned, path: &str) -> Vec<String> {
    let entry = scanned
        .manifest
        .entries
        .iter()
        .find(|entry| entry.path == path);
    entry
        .unwrap()
        .chunks
        .iter()
        .map(|chunk| chunk.cid.clone())
        .collect()
}

#[tokio::test]
async fn round_trip_restores_the_identical_tree() {
    let fixture = fixture();
    let (root, _, stats) = fixture.snapshot().await;
    assert_eq!((stats.files, stats.directories), (3, 2));
    assert!(stats.chunks >= 8, "{stats:?}");
    let target = fixture.root.join("restored");
    let restored = fixture.restore(&root, &target).await.unwrap();
    assert_eq!(restored.files, 3);
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
    let mode = fs::metadata(target.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the mode itself, not only its execute bit"
    );
}

#[tokio::test]
async fn equal_trees_share_every_chunk_and_an_edit_changes_only_its_neighbours() {
    let fixture = fixture();
    let (_, first, first_stats) = fixture.snapshot().await;
    let (_, second, second_stats) = fixture.snapshot().await;
    let chunk_blocks = |scanned: &Scanned| chunks_of(scanned, "data/large.bin");
    assert_eq!(chunk_blocks(&first), chunk_blocks(&second));
    assert_eq!(second_stats.bytes_read, first_stats.bytes_read);
    // Only the sealed manifest (new age file key), the chunk list's nodes already there.
    assert!(second_stats.new_blocks <= 2, "{second_stats:?}");

    let path = fixture.source.join("data/large.bin");
    let mut content = fs::read(&path).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0x55;
    fs::write(&path, &content).unwrap();
    let third = fixture.scan(&first.cache).await;
    let (before, after) = (chunk_blocks(&first), chunk_blocks(&third));
    assert_eq!(before.len(), after.len());
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        before.len() >= 8 && changed == 1,
        "{changed} of {} chunks changed",
        before.len()
    );
    assert_eq!(third.stats.new_blocks, 1);
    // Only the edited file was read again.
    assert_eq!(third.stats.bytes_read, content.len() as u64);
}

#[tokio::test]
async fn the_cache_skips_unchanged_files_and_a_new_mtime_reuses_chunks() {
    let fixture = fixture();
    let (_, first, _) = fixture.snapshot().await;
    let again = fixture.scan(&first.cache).await;
    assert_eq!(again.stats.bytes_read, 0);
    assert_eq!(
        again.manifest.digest().unwrap(),
        first.manifest.digest().unwrap()
    );

    let path = fixture.source.join("data/large.bin");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let touched = fixture.scan(&first.cache).await;
    assert_eq!(touched.stats.bytes_read, 8 << 20);
    assert_eq!(
        touched.stats.new_blocks, 0,
        "the same content gives the same blocks"
    );
    assert_eq!(
        chunks_of(&touched, "data/large.bin"),
        chunks_of(&first, "data/large.bin")
    );
    assert_ne!(
        touched.manifest.digest().unwrap(),
        first.manifest.digest().unwrap(),
        "the new modification time is part of the snapshot"
    );
}

#[tokio::test]
async fn the_same_file_in_two_backups_shares_no_block() {
    let fixture = fixture();
    let (_, first, _) = fixture.snapshot().await;
    let other_secret = BackupSecret::derive(&fixture.identity, "owner", "other node");
    let other = scan(
        &fixture.store,
        &fixture.source,
        &other_secret,
        "owner",
        "other node",
        &FileCache::new(),
    )
    .await
    .unwrap();
    let ours: HashSet<String> = chunks_of(&first, "data/large.bin").into_iter().collect();
    let theirs = chunks_of(&other, "data/large.bin");
    assert!(theirs.iter().all(|cid| !ours.contains(cid)));
    let theirs_distinct = theirs.iter().collect::<HashSet<_>>().len();
    assert_eq!(other.stats.new_blocks as usize, theirs_distinct + 2);
    // Boundaries, hence block sizes, depend on the backup's secret.
    let lengths = |scanned: &Scanned| -> Vec<u32> {
        let entry = scanned
            .manifest
            .entries
            .iter()
            .find(|entry| entry.path == "data/large.bin");
        entry
            .unwrap()
            .chunks
            .iter()
            .map(|chunk| chunk.len)
            .collect()
    };
    assert_ne!(lengths(&first), lengths(&other));
}

/// Restores `root` over a target holding a previous tree: refused as invalid, with the
/// target untouched.
async fn assert_refused(fixture: &Fixture, root: &Cid, expected: &str) {
    let target = fixture.root.join("target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("previous"), b"kept").unwrap();
    let error = fixture.restore(root, &target).await.unwrap_err();
    let invalid = error.downcast_ref::<Invalid>();
    assert!(
        invalid.is_some_and(|invalid| invalid.0.contains(expected)),
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

/// Names of one file in the tree come back as names of one file. Listed in byte order,
/// `data/small.2` is the first name of `small.txt`'s file. A file whose other name is
/// outside the tree comes back as a plain file.
#[tokio::test]
async fn hard_links_are_restored_as_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let fixture = fixture();
    let source = &fixture.source;
    fs::hard_link(source.join("small.txt"), source.join("data/small.2")).unwrap();
    fs::hard_link(source.join("small.txt"), source.join("small.3")).unwrap();
    fs::hard_link(source.join("run.sh"), fixture.root.join("outside")).unwrap();
    let (root, scanned, stats) = fixture.snapshot().await;
    assert_eq!((stats.files, stats.hard_links), (3, 2));
    assert!(
        chunks_of(&scanned, "small.txt").is_empty(),
        "not stored twice"
    );
    let target = fixture.root.join("restored");
    let restored = fixture.restore(&root, &target).await.unwrap();
    assert_eq!((restored.files, restored.hard_links), (3, 2));
    assert_eq!(tree::first_difference(source, &target).unwrap(), None);
    let inode = |path: &str| fs::metadata(target.join(path)).unwrap().ino();
    assert_eq!(inode("small.txt"), inode("data/small.2"));
    assert_eq!(inode("small.3"), inode("data/small.2"));
    assert_eq!(fs::metadata(target.join("run.sh")).unwrap().nlink(), 1);
}

/// A hard link must name a file written before it, of its size: not a later entry, not
/// a folder, not a path outside the snapshot.
#[tokio::test]
async fn a_hard_link_to_no_earlier_file_is_refused() {
    let fixture = fixture();
    let (_, scanned, _) = fixture.snapshot().await;
    for first in ["small.txt", "data", "../outside"] {
        let mut edited = fixture.scan(&scanned.cache).await;
        let entry = edited
            .manifest
            .entries
            .iter_mut()
            .find(|entry| entry.path == "run.sh")
            .unwrap();
        entry.hard_link_hex = Some(hex::encode(first));
        entry.chunks.clear();
        entry.size = 11;
        let (root, _) = seal(&fixture.store, &edited, &[fixture.identity.to_public()])
            .await
            .unwrap();
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
    let scanned = fixture.scan(&FileCache::new()).await;
    let recipients = [fixture.identity.to_public(), owner.to_public()];
    let (root, _) = seal(&fixture.store, &scanned, &recipients).await.unwrap();
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
    let mut scanned = fixture.scan(&FileCache::new()).await;
    scanned.manifest.entries[0].path = "../escape".into();
    let (root, _) = seal(&fixture.store, &scanned, &[fixture.identity.to_public()])
        .await
        .unwrap();
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
    let mut scanned = fixture.scan(&FileCache::new()).await;
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
    let (root, _) = seal(&fixture.store, &scanned, &[fixture.identity.to_public()])
        .await
        .unwrap();
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
