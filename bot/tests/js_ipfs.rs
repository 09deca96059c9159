//! The IPFS store (`--kubo-api`) against a real IPFS daemon: js-ipfs 0.66.1 (npm `ipfs`,
//! locked in `bot/ipfs-daemon`), which serves Kubo's RPC API. It is another implementation of
//! that API, not Kubo. The test starts the daemon with a fresh repository on a free loopback
//! port and stops it: blocks of both codecs put, fetched and found; a whole snapshot sealed,
//! pinned, checked, restored with the owner's identity alone (also by `backup-bot restore
//! --kubo-api`) and unpinned; a missing CID; a block whose CID the daemon computes
//! differently; the daemon stopped in the middle of a restore.
//!
//! Needs Node.js and `npm ci` in `bot/ipfs-daemon` (`scripts/test.sh` does it when npm is
//! installed, and runs it with `--ignored`; it skips it with a NOTE when npm is not).

#[path = "common/sealed.rs"]
mod sealed;

use backup_bot::pipeline;
use backup_bot::store::{ContentStore, KuboStore};
use backup_bot::unixfs::{self, Block, Link, RAW};
use backup_bot::{keys, tree};
use cid::Cid;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "common/random.rs"]
mod random;
use random::random_bytes;

/// A js-ipfs daemon, stopped when dropped.
struct Daemon {
    process: Child,
    api: String,
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ipfs-daemon/daemon.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut process = Command::new("bash")
            .arg(&script)
            .arg(dir.join("repo"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .expect("starting the js-ipfs daemon");
        let stdout = process.stdout.take().unwrap();
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Daemon is ready") {
                    let _ = ready.send(());
                }
            }
        });
        let daemon = Self {
            process,
            api: format!("http://127.0.0.1:{port}"),
        };
        if wait.recv_timeout(Duration::from_secs(180)).is_err() {
            panic!(
                "the js-ipfs daemon did not start: {}",
                fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
        }
        daemon
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tree of `files` random files of `size` bytes each under `root`.
fn random_tree(root: &Path, files: usize, size: usize) {
    fs::create_dir_all(root.join("empty")).unwrap();
    for index in 0..files {
        let folder = root.join(format!("folder-{}", index % 3));
        fs::create_dir_all(&folder).unwrap();
        fs::write(
            folder.join(format!("file-{index}")),
            random_bytes(size, index as u64 + 1),
        )
        .unwrap();
    }
}

/// Seals a snapshot of `source` into `store` for `identity` and pins it.
async fn snapshot(
    store: &ContentStore,
    source: &Path,
    identity: &age::x25519::Identity,
) -> cid::Cid {
    let (root, _) = sealed::sealed_to(store, source, identity).await;
    store.pin(&root).await.unwrap();
    root
}

/// The roots the daemon at `api` pins recursively, as CIDv1.
async fn recursive_pins(api: &str) -> std::collections::BTreeSet<Cid> {
    let pins: serde_json::Value = reqwest::Client::new()
        .post(format!("{api}/api/v0/pin/ls?type=recursive"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    pins["Keys"]
        .as_object()
        .unwrap()
        .keys()
        .map(|key| Cid::try_from(key.as_str()).unwrap())
        .map(|cid| Cid::new_v1(cid.codec(), *cid.hash()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and `npm ci` in bot/ipfs-daemon"]
async fn the_ipfs_store_works_against_a_js_ipfs_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let pinned_at_start = recursive_pins(&daemon.api).await;
    // As the bot's `run` makes it: blocks pinned while they are put, until their root is.
    let journal = dir.path().join("kubo-put-pins");
    let store =
        ContentStore::Kubo(KuboStore::new(&daemon.api).with_fetch_timeout(Duration::from_secs(2)))
            .pin_while_putting(journal.clone());

    // Blocks of both codecs: the daemon computes the same CIDs, and gives the bytes back.
    let raw = Block::new(RAW, b"a raw block".to_vec()).unwrap();
    let node = unixfs::directory_node(vec![Link {
        cid: raw.cid,
        name: "leaf".into(),
        tsize: raw.data.len() as u64,
    }])
    .unwrap();
    for block in [&raw, &node] {
        store.put_block(block).await.unwrap();
        assert!(
            store.is_pinned(&block.cid).await.unwrap(),
            "pinned as it is put"
        );
        assert_eq!(store.get_block(&block.cid).await.unwrap(), block.data);
        assert!(store.has_block(&block.cid).await.unwrap());
    }

    // A missing CID: not found, and an error once the node gave up looking for it.
    let missing = Block::new(RAW, b"never stored".to_vec()).unwrap().cid;
    assert!(!store.has_block(&missing).await.unwrap());
    let error = format!("{:#}", store.get_block(&missing).await.unwrap_err());
    assert!(error.contains("IPFS RPC error"), "{error}");

    // A block whose CID the daemon computes differently is refused.
    let forged = Block {
        cid: missing,
        data: b"other bytes".to_vec(),
    };
    let error = store.put_block(&forged).await.unwrap_err().to_string();
    assert!(
        error.starts_with("the IPFS node stored the block as ")
            && error.ends_with(&format!("expected {missing}")),
        "{error}"
    );

    // A whole snapshot: pinned, checked block by block, restored with the identity alone.
    let source = dir.path().join("source");
    random_tree(&source, 12, 300 * 1024);
    let identity = age::x25519::Identity::generate();
    let root = snapshot(&store, &source, &identity).await;
    assert!(store.is_pinned(&root).await.unwrap());
    // Pinning the root released every pin taken while putting, the earlier blocks' too, and
    // the forged block's listing (never pinned) is no error.
    assert!(!journal.exists());
    let pinned_now = recursive_pins(&daemon.api).await;
    let added: Vec<&Cid> = pinned_now.difference(&pinned_at_start).collect();
    assert_eq!(
        added,
        [&root],
        "of what the bot put, only the root keeps a pin"
    );
    let checked = pipeline::check(&store, &root, Some(&identity))
        .await
        .unwrap();
    assert!(checked.chunks_opened >= 12, "{checked:?}");
    let target = dir.path().join("restored");
    pipeline::restore(&store, &root, &identity, None, &target)
        .await
        .unwrap();
    assert_eq!(tree::first_difference(&source, &target).unwrap(), None);

    // The same restore from the command line, as an owner runs it: identity file, CID, API.
    let identity_file = dir.path().join("owner.age-identity");
    keys::write_identity(&identity_file, &identity, "the owner's key").unwrap();
    let by_cli = dir.path().join("restored-by-cli");
    let output = Command::new(env!("CARGO_BIN_EXE_backup-bot"))
        .args(["restore", "--cid", &root.to_string(), "--owner-identity"])
        .arg(&identity_file)
        .args(["--kubo-api", &daemon.api, "--target"])
        .arg(&by_cli)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(tree::first_difference(&source, &by_cli).unwrap(), None);
    store.unpin(&root).await.unwrap();
    assert!(!store.is_pinned(&root).await.unwrap());
    store.unpin(&root).await.unwrap();

    // The daemon stops in the middle of a restore: an error, and no target.
    let big = dir.path().join("big");
    random_tree(&big, 24, 2 * 1024 * 1024);
    let root = snapshot(&store, &big, &identity).await;
    let interrupted = dir.path().join("interrupted");
    let restoring = {
        let (api, target, identity) = (daemon.api.clone(), interrupted.clone(), identity.clone());
        tokio::spawn(async move {
            let store = ContentStore::Kubo(KuboStore::new(&api));
            pipeline::restore(&store, &root, &identity, None, &target).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.stop();
    let outcome = restoring.await.unwrap();
    let error = format!(
        "{:#}",
        outcome.expect_err("the restore outlived the daemon")
    );
    assert!(
        error.contains("unreachable") || error.contains("error"),
        "{error}"
    );
    assert!(!interrupted.exists());
    let staging = dir.path().join(".interrupted.restoring");
    assert!(!staging.exists());
}
