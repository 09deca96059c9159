//! What the integration tests share.

use std::path::PathBuf;

/// The contract bundle made by `scripts/build.sh` (or `$BACKUP_REGISTRY_BUNDLE`).
pub fn bundle() -> PathBuf {
    let path = std::env::var_os("BACKUP_REGISTRY_BUNDLE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ink/backup_registry.contract"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/build.sh` first",
        path.display()
    );
    path
}
