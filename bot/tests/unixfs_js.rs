//! The bot's UnixFS CIDs and snapshot DAGs against implementations no one here wrote: IPFS's
//! JavaScript importer (npm `ipfs-unixfs-importer`, run by `unixfs-check/cid.mjs` with the
//! options that match Kubo's `ipfs add --cid-version=1`), on files of 0 B, 1 B, one chunk, one
//! chunk and one byte, 5 MiB, and 174 chunks and one byte (the first size that needs a second
//! level of nodes); and a snapshot's whole DAG checked block by block by `unixfs-check/dag.mjs`
//! (`@ipld/dag-pb`, `ipfs-unixfs`, `multiformats` and the importer).
//!
//! Needs Node.js and `npm ci` in `bot/unixfs-check` (`scripts/test.sh` does it when npm is
//! installed, and says so when it is not).

#[path = "common/sealed.rs"]
mod sealed;

use backup_bot::store::{ContentStore, LocalStore};
use backup_bot::unixfs::{self, CHUNK_SIZE, MAX_LINKS};
use std::path::PathBuf;
use std::process::Command;

/// Runs `unixfs-check/SCRIPT` with `args` under Node.js; returns its standard output.
fn node(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("unixfs-check")
        .join(script);
    let output = Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .expect("running node: is Node.js installed?");
    assert!(
        output.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[ignore = "needs Node.js and `npm ci` in bot/unixfs-check"]
fn javascript_importer_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        5 * 1024 * 1024,
        MAX_LINKS * CHUNK_SIZE + 1,
    ];
    let mut files = Vec::new();
    for size in sizes {
        // Content that differs from chunk to chunk, so that no two leaves are equal.
        let content: Vec<u8> = (0..size)
            .map(|i| ((i / 7) ^ (i >> 18)).to_le_bytes()[0])
            .collect();
        let path = dir.path().join(format!("{size}.bin"));
        std::fs::write(&path, &content).unwrap();
        files.push((path, unixfs::cid_of(&content[..]).unwrap().to_string()));
    }

    let paths: Vec<&std::ffi::OsStr> = files.iter().map(|(path, _)| path.as_os_str()).collect();
    let javascript = node("cid.mjs", &paths);
    let lines: Vec<&str> = javascript.lines().collect();
    assert_eq!(lines.len(), files.len(), "{javascript}");
    for ((path, ours), line) in files.iter().zip(lines) {
        assert_eq!(
            line,
            format!("{ours} {}", path.display()),
            "size {:?}",
            path.file_name()
        );
    }
}

/// A snapshot of 3,000 small files: a chunk list of their 3,000 chunks and the manifest's
/// pages, under three levels of file nodes.
#[tokio::test]
#[ignore = "needs Node.js and `npm ci` in bot/unixfs-check"]
async fn a_snapshot_dag_checks_out_with_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    for index in 0..3000 {
        let folder = source.join(format!("folder-{}", index % 10));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("file-{index:04}")),
            format!("content {index}"),
        )
        .unwrap();
    }
    let store_dir = dir.path().join("store");
    let store = ContentStore::Local(LocalStore::open(&store_dir).unwrap());
    let identity = age::x25519::Identity::generate();
    let (root, stats) = sealed::sealed_to(&store, &source, &identity).await;
    store.sync().unwrap();
    // 3,000 file chunks, and the pages of a manifest of 3,000 entries.
    assert!(stats.chunks > 3000, "{stats:?}");
    let root = root.to_string();
    let summary = node("dag.mjs", &[store_dir.as_os_str(), root.as_ref()]);
    // Every chunk and page, and the sealed manifest's one leaf; the root and the chunk list's
    // nodes (about one per 16 leaves, and the levels above).
    let counts: Vec<u64> = summary
        .trim()
        .strip_prefix(&format!("ok {root} "))
        .unwrap_or_else(|| panic!("{summary}"))
        .split(' ')
        .map(|count| count.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(counts[0], stats.chunks + 1, "{summary}");
    assert!(
        counts[1] > stats.chunks / 32 && counts[1] < stats.chunks / 8,
        "{summary}"
    );
}
