//! A snapshot made outside the bot's pass, for the tests that check its DAG or its store.

use backup_bot::pipeline::{self, BackupSecret, SnapshotStats};
use backup_bot::store::ContentStore;
use cid::Cid;
use std::path::Path;

/// A snapshot of `source` sealed to `identity` (node "node" of "owner"), stored in `store` and
/// not pinned: its root and counts.
pub async fn sealed_to(
    store: &ContentStore,
    source: &Path,
    identity: &age::x25519::Identity,
) -> (Cid, SnapshotStats) {
    let secret = BackupSecret::derive(identity, "owner", "node");
    let recipients = [identity.to_public()];
    pipeline::snapshot_folder(store, source, &secret, "owner", "node", &recipients)
        .await
        .unwrap()
}
