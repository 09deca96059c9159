//! The bot's side of a benchmark run: its snapshot step and restore on an embedded store.

use crate::bot::{snapshot_if_changed, Snapshot, SnapshotSource};
use crate::pipeline::{self, BackupSecret, SnapshotStats};
use crate::state::CacheFile;
use crate::store::{ContentStore, LocalStore};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// One measured snapshot of ours.
pub(super) struct Ours {
    /// How long the step took, the pin included.
    pub(super) elapsed: Duration,
    /// Of `elapsed`, the time the store spent syncing packs (durable before pinned).
    pub(super) synced_in: Duration,
    /// What the scan read and the snapshot stored.
    pub(super) stats: SnapshotStats,
    /// Whether a snapshot was sealed (the tree had changed).
    pub(super) recorded: bool,
}

/// How long `store` has spent syncing (see [`LocalStore::time_syncing`]).
fn time_syncing(store: &ContentStore) -> Duration {
    match store {
        ContentStore::Local(local) => local.time_syncing(),
        ContentStore::Kubo(_) => Duration::ZERO,
    }
}

/// The bot's side of a run: an embedded store in the work folder, a node identity, the cache
/// file of the latest snapshot, and its root.
pub(super) struct OurBackup {
    store: ContentStore,
    identity: age::x25519::Identity,
    secret: BackupSecret,
    recipients: [age::x25519::Recipient; 1],
    cache: CacheFile,
    latest: Option<cid::Cid>,
}

impl OurBackup {
    /// A new backup stored in `work_dir/store`, its cache in `work_dir/store/cache.json`.
    pub(super) fn open(work_dir: &Path) -> Result<Self> {
        let identity = age::x25519::Identity::generate();
        let store_dir = work_dir.join("store");
        Ok(Self {
            store: ContentStore::Local(LocalStore::open(&store_dir)?),
            secret: BackupSecret::derive(&identity, "owner", "bench"),
            recipients: [identity.to_public()],
            identity,
            cache: CacheFile::at(store_dir.join("cache.json")),
            latest: None,
        })
    }

    /// The bot's snapshot step of `tree`, as a pass runs it ([`snapshot_if_changed`]), then
    /// the pin and the cache saved.
    pub(super) async fn snapshot(&mut self, tree: &Path) -> Result<Ours> {
        let source = SnapshotSource {
            folder: tree,
            owner: "owner",
            node_id: "bench",
            secret: &self.secret,
            recipients: &self.recipients,
        };
        let store = &self.store;
        let start = Instant::now();
        let synced_before = time_syncing(store);
        let previous = self.cache.load();
        let next = self.cache.next_files()?;
        let snapshot = snapshot_if_changed(store, &source, previous, next, false).await?;
        let (stats, recorded) = match snapshot {
            Snapshot::Unchanged { stats } => (stats, false),
            Snapshot::Sealed {
                root,
                stats,
                cache,
                files,
                ..
            } => {
                store.pin(&root).await?;
                self.cache.save(&cache, files)?;
                self.latest = Some(root);
                (stats, true)
            }
        };
        Ok(Ours {
            elapsed: start.elapsed(),
            synced_in: time_syncing(store) - synced_before,
            stats,
            recorded,
        })
    }

    /// Restores the latest snapshot into `target`; how long it took.
    pub(super) async fn restore_latest(&self, target: &Path) -> Result<Duration> {
        let Some(root) = self.latest else {
            bail!("no snapshot to restore");
        };
        let start = Instant::now();
        pipeline::restore(&self.store, &root, &self.identity, None, target).await?;
        Ok(start.elapsed())
    }

    /// Bytes the store holds.
    pub(super) fn store_bytes(&self) -> Result<u64> {
        match &self.store {
            ContentStore::Local(local) => local.size_bytes(),
            ContentStore::Kubo(_) => bail!("the bench stores locally"),
        }
    }
}
