//! Garbage collection of the embedded store against a model: random sequences of snapshots,
//! crashes before a snapshot is pinned, prunes (the oldest snapshot of a backup unpinned),
//! deletions (every snapshot of a backup unpinned) and collections, over two backups whose
//! trees share content. The model tracks which roots are pinned and which blocks each root
//! references (its DAG, walked when it was made). After every step, each block a pinned root
//! references is in the store; after every collection, what no pinned root references is at
//! most the share of the stored bytes the repack threshold allows (so nothing, once nothing is
//! pinned); at the end, every pinned snapshot restores to the files its backup held when it
//! was taken.

use backup_bot::pipeline::{self, BackupSecret};
use backup_bot::store::{ContentStore, LocalStore, REPACK_BELOW_LIVE_PERCENT};
use backup_bot::unixfs::{self, DAG_PB};
use cid::Cid;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "common/random.rs"]
mod random;
use random::random_bytes;

#[derive(Debug, Clone)]
enum Step {
    /// Write `content` into file `file` of backup `backup`, snapshot and pin it.
    Snapshot {
        backup: usize,
        file: usize,
        content: u8,
    },
    /// The same, but the bot stops after storing the blocks, before pinning.
    CrashBeforePin {
        backup: usize,
        file: usize,
        content: u8,
    },
    /// Retention drops the backup's oldest snapshot: unpinned.
    Prune { backup: usize },
    /// The owner deletes the backup: every snapshot unpinned.
    Delete { backup: usize },
    /// The store collects its garbage.
    Collect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, 0..4u8)
            .prop_map(|(backup, file, content)| Step::Snapshot { backup, file, content }),
        1 => (0..2usize, 0..3usize, 0..4u8)
            .prop_map(|(backup, file, content)| Step::CrashBeforePin { backup, file, content }),
        2 => (0..2usize).prop_map(|backup| Step::Prune { backup }),
        1 => (0..2usize).prop_map(|backup| Step::Delete { backup }),
        2 => Just(Step::Collect),
    ]
}

/// File content number `content`: a few KiB, equal across backups for equal numbers.
fn content(content: u8) -> Vec<u8> {
    random_bytes(3000 + usize::from(content) * 700, u64::from(content))
}

/// Every block reachable from `root`, walked through the store.
async fn referenced(store: &ContentStore, root: &Cid) -> BTreeSet<Cid> {
    let mut blocks = BTreeSet::new();
    let mut pending = vec![*root];
    while let Some(cid) = pending.pop() {
        if blocks.insert(cid) && cid.codec() == DAG_PB {
            let bytes = store.get_block(&cid).await.unwrap();
            pending.extend(
                unixfs::decode_node(&bytes)
                    .unwrap()
                    .links
                    .iter()
                    .map(|l| l.cid),
            );
        }
    }
    blocks
}

struct World {
    _dir: tempfile::TempDir,
    store: ContentStore,
    sources: Vec<PathBuf>,
    secrets: Vec<BackupSecret>,
    identity: age::x25519::Identity,
    /// Pinned roots per backup, oldest first, with the blocks each references and the files
    /// (name, content number) it holds.
    pinned: Vec<VecDeque<(Cid, BTreeSet<Cid>, Files)>>,
    /// The files each backup's folder holds now.
    files: Vec<Files>,
}

/// A backup folder's files: file number to content number.
type Files = BTreeMap<usize, u8>;

/// The name of file number `file` in a backup folder.
fn file_name(file: usize) -> String {
    format!("file-{file}")
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let sources: Vec<PathBuf> = (0..2)
            .map(|b| dir.path().join(format!("source-{b}")))
            .collect();
        for source in &sources {
            fs::create_dir_all(source).unwrap();
        }
        Self {
            store: ContentStore::Local(
                LocalStore::open(dir.path().join("store"))
                    .unwrap()
                    .with_grace(Duration::ZERO),
            ),
            secrets: (0..2)
                .map(|b| BackupSecret::derive(&identity, "owner", &format!("node-{b}")))
                .collect(),
            sources,
            identity,
            pinned: vec![VecDeque::new(), VecDeque::new()],
            files: vec![Files::new(), Files::new()],
            _dir: dir,
        }
    }

    fn local(&self) -> &LocalStore {
        match &self.store {
            ContentStore::Local(local) => local,
            ContentStore::Kubo(_) => unreachable!(),
        }
    }

    async fn snapshot(&mut self, backup: usize, file: usize, number: u8) -> Cid {
        let source: &Path = &self.sources[backup];
        fs::write(source.join(file_name(file)), content(number)).unwrap();
        self.files[backup].insert(file, number);
        let node = format!("node-{backup}");
        let secret = &self.secrets[backup];
        let recipients = [self.identity.to_public()];
        pipeline::snapshot_folder(&self.store, source, secret, "owner", &node, &recipients)
            .await
            .unwrap()
            .0
    }

    fn needed(&self) -> BTreeSet<Cid> {
        self.pinned
            .iter()
            .flatten()
            .flat_map(|(_, blocks, _)| blocks.iter().copied())
            .collect()
    }

    fn stored(&self) -> BTreeSet<Cid> {
        self.local().block_cids().unwrap().into_iter().collect()
    }

    async fn apply(&mut self, step: &Step) {
        match *step {
            Step::Snapshot {
                backup,
                file,
                content,
            } => {
                let root = self.snapshot(backup, file, content).await;
                self.store.pin(&root).await.unwrap();
                let blocks = referenced(&self.store, &root).await;
                let files = self.files[backup].clone();
                self.pinned[backup].push_back((root, blocks, files));
            }
            Step::CrashBeforePin {
                backup,
                file,
                content,
            } => {
                self.snapshot(backup, file, content).await;
            }
            Step::Prune { backup } => {
                if let Some((root, ..)) = self.pinned[backup].pop_front() {
                    self.unpin_if_unused(&root).await;
                }
            }
            Step::Delete { backup } => {
                for (root, ..) in std::mem::take(&mut self.pinned[backup]) {
                    self.unpin_if_unused(&root).await;
                }
            }
            Step::Collect => {
                self.local().collect_garbage().unwrap();
                let needed = self.needed();
                let (mut stored_bytes, mut garbage_bytes) = (0, 0);
                for cid in self.stored() {
                    let len = self.store.get_block(&cid).await.unwrap().len() as u64;
                    stored_bytes += len;
                    if !needed.contains(&cid) {
                        garbage_bytes += len;
                    }
                }
                assert!(
                    garbage_bytes * 100 <= stored_bytes * (100 - REPACK_BELOW_LIVE_PERCENT),
                    "after a collection, {garbage_bytes} of {stored_bytes} bytes are garbage"
                );
            }
        }
        let missing: Vec<_> = self.needed().difference(&self.stored()).copied().collect();
        assert!(
            missing.is_empty(),
            "needed blocks missing after {step:?}: {missing:?}"
        );
    }

    /// Unpins `root` unless another snapshot kept in the model has the same root (one pin
    /// per CID, as in IPFS).
    async fn unpin_if_unused(&self, root: &Cid) {
        if !self.pinned.iter().flatten().any(|(kept, ..)| kept == root) {
            self.store.unpin(root).await.unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn collection_keeps_exactly_what_pinned_snapshots_reference(
        steps in prop::collection::vec(step(), 1..16)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut world = World::new();
            for step in &steps {
                world.apply(step).await;
            }
            world.apply(&Step::Collect).await;
            for (index, (root, _, files)) in world.pinned.iter().flatten().enumerate() {
                let target = world._dir.path().join(format!("restored-{index}"));
                pipeline::restore(&world.store, root, &world.identity, None, &target)
                    .await
                    .unwrap();
                let restored: BTreeSet<String> = fs::read_dir(&target)
                    .unwrap()
                    .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                    .collect();
                let expected: BTreeSet<String> = files.keys().map(|file| file_name(*file)).collect();
                assert_eq!(restored, expected, "the files of {root}");
                for (file, number) in files {
                    let bytes = fs::read(target.join(file_name(*file))).unwrap();
                    assert!(bytes == content(*number), "{} of {root}", file_name(*file));
                }
            }
        });
    }
}
