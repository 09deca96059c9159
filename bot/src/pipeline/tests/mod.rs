use super::manifest::MANIFEST_LINK;
use super::*;
use crate::error::{self, Error};
use crate::random::random_bytes;
use crate::store::ContentStore;
use crate::store::LocalStore;
use crate::tree;
use crate::unixfs::Block;
use crate::unixfs::{self, Child, Link, RAW};
use cid::Cid;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::path::PathBuf;

mod hostile;

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

/// A scan, sealed, and its manifest read back from the store.
struct Scan {
    root: Cid,
    manifest: Manifest,
    /// What the scan's sealer made of the manifest ([`ManifestSealer::manifest_sha256`]).
    digest: [u8; 32],
    /// The cache file the scan wrote.
    cache: PathBuf,
    /// The scan's counts.
    stats: SnapshotStats,
    /// The counts once sealed.
    sealed: SnapshotStats,
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
    store: ContentStore,
    identity: age::x25519::Identity,
    secret: BackupSecret,
    /// Cache files written so far.
    caches: std::cell::Cell<u32>,
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
        caches: std::cell::Cell::new(0),
    }
}

impl Fixture {
    fn local(&self) -> &LocalStore {
        match &self.store {
            ContentStore::Local(local) => local,
            ContentStore::Kubo(_) => unreachable!(),
        }
    }

    /// Scans the fixture's tree with the cache file `previous` (if any), writing the next
    /// one; seals it and reads its manifest back.
    async fn scan(&self, previous: Option<&Path>) -> Scan {
        let mut previous = match previous {
            Some(path) => PreviousFiles::open(path).unwrap(),
            None => PreviousFiles::none(),
        };
        self.caches.set(self.caches.get() + 1);
        let cache = self.root.join(format!("cache-{}", self.caches.get()));
        let mut next = NextFiles::create(&cache).unwrap();
        let scanned = scan(
            &self.store,
            &self.source,
            &self.secret,
            "owner",
            "node",
            &mut previous,
            Some(&mut next),
        )
        .await
        .unwrap();
        next.finish().unwrap();
        self.seal_and_open(scanned, cache).await
    }

    /// Seals `scanned` (whose cache file is `cache`) to the fixture's identity and reads its
    /// manifest back.
    async fn seal_and_open(&self, scanned: Scanned, cache: PathBuf) -> Scan {
        let digest = scanned.manifest.manifest_sha256();
        let stats = scanned.stats;
        let (root, sealed) = seal(&self.store, scanned, &[self.identity.to_public()])
            .await
            .unwrap();
        let manifest = open_manifest(&self.store, &root, &self.identity)
            .await
            .unwrap();
        Scan {
            root,
            manifest,
            digest,
            cache,
            stats,
            sealed,
        }
    }

    /// Seals `manifest` (edited) to the fixture's identity; its root.
    async fn reseal(&self, manifest: &Manifest) -> Cid {
        let recipients = [self.identity.to_public()];
        seal_manifest(&self.store, manifest, &recipients, SnapshotStats::default())
            .await
            .unwrap()
            .0
    }

    async fn snapshot(&self) -> (Cid, Scan, SnapshotStats) {
        let scan = self.scan(None).await;
        let (root, sealed) = (scan.root, scan.sealed);
        (root, scan, sealed)
    }

    async fn restore(&self, root: &Cid, target: &Path) -> error::Result<RestoreStats> {
        restore(&self.store, root, &self.identity, None, target).await
    }
}

/// The chunk CIDs of `scanned`'s file `path`.
fn chunks_of(scanned: &Scan, path: &str) -> Vec<String> {
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
    let chunk_blocks = |scanned: &Scan| chunks_of(scanned, "data/large.bin");
    assert_eq!(chunk_blocks(&first), chunk_blocks(&second));
    assert_eq!(second_stats.bytes_read, first_stats.bytes_read);
    // Only the sealed manifest (new age file key), the chunk list's nodes already there.
    assert!(second_stats.new_blocks <= 2, "{second_stats:?}");

    let path = fixture.source.join("data/large.bin");
    let mut content = fs::read(&path).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0x55;
    fs::write(&path, &content).unwrap();
    let third = fixture.scan(Some(&first.cache)).await;
    let (before, after) = (chunk_blocks(&first), chunk_blocks(&third));
    assert_eq!(before.len(), after.len());
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        before.len() >= 8 && changed == 1,
        "{changed} of {} chunks changed",
        before.len()
    );
    // The edited chunk, and the one or two chunk-list nodes around it (two when its hash
    // moves a node boundary) when the scan closed them (the last is closed by the seal).
    assert!(
        (1..=3).contains(&third.stats.new_blocks),
        "{:?}",
        third.stats
    );
    // Only the edited file was read again.
    assert_eq!(third.stats.bytes_read, content.len() as u64);
}

#[tokio::test]
async fn the_cache_skips_unchanged_files_and_a_new_mtime_reuses_chunks() {
    let fixture = fixture();
    let (_, first, _) = fixture.snapshot().await;
    let again = fixture.scan(Some(&first.cache)).await;
    assert_eq!(again.stats.bytes_read, 0);
    assert_eq!(again.digest, first.digest);
    let whole: [u8; 32] = Sha256::digest(serde_json::to_vec(&first.manifest).unwrap()).into();
    assert_eq!(
        first.digest, whole,
        "the streamed digest is that of the whole manifest's JSON, as caches record it"
    );

    let path = fixture.source.join("data/large.bin");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let touched = fixture.scan(Some(&first.cache)).await;
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
        touched.digest, first.digest,
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
        &mut PreviousFiles::none(),
        None,
    )
    .await
    .unwrap();
    let other = fixture.seal_and_open(other, PathBuf::new()).await;
    let ours: HashSet<String> = chunks_of(&first, "data/large.bin").into_iter().collect();
    let theirs = chunks_of(&other, "data/large.bin");
    assert!(theirs.iter().all(|cid| !ours.contains(cid)));
    let theirs_distinct = theirs.iter().collect::<HashSet<_>>().len();
    // Every chunk is new (the two small files' too), and the chunk list's nodes the scan
    // closed.
    assert!(
        other.stats.new_blocks as usize >= theirs_distinct + 2,
        "{:?}",
        other.stats
    );
    // Boundaries, hence block sizes, depend on the backup's secret.
    let lengths = |scanned: &Scan| -> Vec<u32> {
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

/// The listed chunks of `scanned`'s file `path`.
fn chunk_refs<'a>(scanned: &'a Scan, path: &str) -> &'a [ChunkRef] {
    let entry = scanned
        .manifest
        .entries
        .iter()
        .find(|entry| entry.path == path);
    &entry.unwrap().chunks
}

/// Repetitive text is stored compressed, random bytes as they are, and both restore identical.
#[tokio::test]
async fn compressible_chunks_are_stored_smaller() {
    let fixture = fixture();
    let log: Vec<u8> = (0..100_000)
        .flat_map(|line| format!("{line:08} INFO request served in 12 ms\n").into_bytes())
        .collect();
    fs::write(fixture.source.join("app.log"), &log).unwrap();
    let (root, scanned, stats) = fixture.snapshot().await;
    let stored: u64 = chunk_refs(&scanned, "app.log")
        .iter()
        .map(ChunkRef::block_len)
        .sum();
    assert!(
        stored * 4 < log.len() as u64,
        "{} bytes of log stored in {stored}",
        log.len()
    );
    for chunk in chunk_refs(&scanned, "data/large.bin") {
        // Random bytes: the plaintext, its kind byte, nonce and tag.
        assert_eq!(
            chunk.block_len(),
            u64::from(chunk.len) + crypto::UNFRAMED_OVERHEAD + 1
        );
    }
    assert!(
        stats.new_bytes < (8 << 20) + stored + 64 * 1024,
        "{stats:?}"
    );
    let target = fixture.root.join("restored");
    fixture.restore(&root, &target).await.unwrap();
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
}

/// The file cache of the previous release lists chunks of manifest format 4 (no kind byte):
/// a file unchanged since keeps them, the new snapshot lists them as such, and it restores
/// identical and checks clean.
#[tokio::test]
async fn chunks_of_format_4_in_the_cache_are_kept_and_restore() {
    let fixture = fixture();
    let (_, first, _) = fixture.snapshot().await;
    let content = fs::read(fixture.source.join("data/large.bin")).unwrap();
    let mut legacy = Vec::new();
    let mut offset = 0;
    for chunk in chunk_refs(&first, "data/large.bin") {
        let plaintext = &content[offset..offset + chunk.len as usize];
        offset += chunk.len as usize;
        let block = fixture.secret.seal_unframed(plaintext);
        fixture.store.put_block(&block).await.unwrap();
        legacy.push(ChunkRef {
            cid: block.cid.to_string(),
            len: chunk.len,
            block_len: None,
        });
    }
    fixture.store.sync().unwrap();
    // The cache's line of the file, its chunks replaced.
    let mut lines = String::new();
    for line in fs::read_to_string(&first.cache).unwrap().lines() {
        let mut line: serde_json::Value = serde_json::from_str(line).unwrap();
        if line["path"] == "data/large.bin" {
            line["chunks"] = serde_json::to_value(&legacy).unwrap();
        }
        lines += &format!("{line}\n");
    }
    let cache = fixture.root.join("cache-of-format-4");
    fs::write(&cache, lines).unwrap();
    let scanned = fixture.scan(Some(&cache)).await;
    let root = scanned.root;
    assert_eq!(
        scanned.stats.bytes_read, 0,
        "every file taken from the cache"
    );
    assert_eq!(chunk_refs(&scanned, "data/large.bin"), &legacy[..]);
    let target = fixture.root.join("restored");
    fixture.restore(&root, &target).await.unwrap();
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
    let checked = check(&fixture.store, &root, Some(&fixture.identity))
        .await
        .unwrap();
    assert!(checked.chunks_opened >= 8, "{checked:?}");
}

/// A tree whose manifest spans many pages, lines cut across them: the scan seals it page by
/// page and the restore reads it back page by page, identical.
#[tokio::test]
async fn a_manifest_of_many_pages_is_sealed_and_restored_page_by_page() {
    let fixture = fixture();
    for folder in 0..20 {
        let dir = fixture.source.join(format!("many/folder-{folder:02}"));
        fs::create_dir_all(&dir).unwrap();
        for file in 0..100 {
            fs::write(
                dir.join(format!("file-{file:03}")),
                format!("{folder} {file}"),
            )
            .unwrap();
        }
    }
    let (root, scan, stats) = fixture.snapshot().await;
    assert_eq!(stats.files, 3 + 2000);
    let manifest_bytes: usize = scan
        .manifest
        .entries
        .iter()
        .map(|entry| serde_json::to_vec(entry).unwrap().len() + 1)
        .sum();
    assert!(
        manifest_bytes > 40 * 4096,
        "{manifest_bytes} bytes of entries"
    );
    let target = fixture.root.join("restored");
    fixture.restore(&root, &target).await.unwrap();
    assert_eq!(
        tree::first_difference(&fixture.source, &target).unwrap(),
        None
    );
}
