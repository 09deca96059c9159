//! The bot's UnixFS CIDs against an implementation no one here wrote: IPFS's JavaScript
//! importer (npm `ipfs-unixfs-importer`, run by `unixfs-check/cid.mjs` with the options that
//! match Kubo's `ipfs add --cid-version=1`), on files of 0 B, 1 B, one chunk, one chunk and
//! one byte, 5 MiB, and 174 chunks and one byte (the first size that needs a second level of
//! nodes).
//!
//! Needs Node.js and `npm ci` in `bot/unixfs-check` (`scripts/test.sh` does it when npm is
//! installed, and says so when it is not).

use backup_bot::unixfs::{self, CHUNK_SIZE, MAX_LINKS};
use std::path::PathBuf;
use std::process::Command;

#[test]
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

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("unixfs-check/cid.mjs");
    let output = Command::new("node")
        .arg(&script)
        .args(files.iter().map(|(path, _)| path))
        .output()
        .expect("running node: is Node.js installed?");
    assert!(
        output.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let javascript = String::from_utf8(output.stdout).unwrap();
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
