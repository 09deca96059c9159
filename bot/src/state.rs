//! What the bot keeps in its data directory between passes, each file replaced atomically
//! (written aside, synced, renamed) so that a crash leaves the old or the new version:
//!
//! - `cache/OWNER-NODEHEX.json`: per node, the last snapshot it recorded and the chunks of
//!   every file it read ([`NodeCache`]). Only saves work: a missing or damaged one is
//!   reported and replaced;
//! - `pins.json`: per node, the snapshot roots it pinned and has not unpinned yet ([`Pins`]);
//! - `submitted.json`: the roots submitted with `add_snapshot` and not yet seen recorded,
//!   with the block of their submission ([`Submitted`]);
//! - `unserved.json`: the nodes taken out of the configuration whose pins the bot still
//!   holds, with the block at which it first found each unserved ([`Unserved`]);
//! - `lock`: held (`flock`) by the one process serving from this folder ([`DataDirLock`]),
//!   holding its pid.

use crate::config::ServedNode;
use crate::pipeline::FileCache;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tracing::warn;

/// The key of a served node in the bot's files: owner and node id.
pub fn node_key(node: &ServedNode) -> String {
    format!("{}/{}", node.owner, node.node_id)
}

/// What the bot remembers of the last snapshot it recorded of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeCache {
    /// CID of the snapshot's root.
    pub root: String,
    /// [`BackupSecret::fingerprint`](crate::pipeline::BackupSecret::fingerprint) of the
    /// secret its chunks are encrypted under: a cache made under another key is not used.
    #[serde(default)]
    pub secret_fingerprint: String,
    /// sha2-256 of its manifest, hex.
    pub manifest_sha256: String,
    /// The recipients its manifest was sealed to.
    pub recipients: Vec<String>,
    /// Its files' stamps and chunks.
    pub files: FileCache,
}

impl NodeCache {
    /// Whether this is the cache of a snapshot of the same tree (manifest digest, hex)
    /// sealed to the same recipients: then a new snapshot would hold nothing new.
    pub fn describes(&self, manifest_sha256: &str, recipients: &[String]) -> bool {
        !self.root.is_empty()
            && self.manifest_sha256 == manifest_sha256
            && self.recipients == recipients
    }
}

/// The snapshot roots the bot pinned, by [`node_key`].
pub type Pins = BTreeMap<String, Vec<String>>;

/// The snapshot roots submitted with `add_snapshot` whose recording the bot has not seen
/// yet (it was stopped, or the call failed after it was sent), by CID: the block at which
/// each was submitted. A transaction may still land after the bot gave up on it.
pub type Submitted = BTreeMap<String, u32>;

/// The nodes no longer in the configuration whose pins the bot still holds, by
/// [`node_key`]: the block at which a pass first found each unserved.
pub type Unserved = BTreeMap<String, u32>;

/// The bot's files in its data directory.
pub struct StateDir {
    cache_dir: PathBuf,
    pins_path: PathBuf,
    submitted_path: PathBuf,
    unserved_path: PathBuf,
}

impl StateDir {
    /// The state kept in `data_dir` (folders created if missing).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let cache_dir = data_dir.join("cache");
        fs::create_dir_all(&cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        Ok(Self {
            cache_dir,
            pins_path: data_dir.join("pins.json"),
            submitted_path: data_dir.join("submitted.json"),
            unserved_path: data_dir.join("unserved.json"),
        })
    }

    /// Where the cache of `node` is kept.
    pub fn cache_path(&self, node: &ServedNode) -> PathBuf {
        self.cache_dir.join(format!("{}.json", node.file_stem()))
    }

    /// The cache of `node`; empty when missing or damaged (with a warning).
    pub fn load_cache(&self, node: &ServedNode) -> NodeCache {
        read_or_default(&self.cache_path(node))
    }

    /// Replaces the cache of `node`.
    pub fn save_cache(&self, node: &ServedNode, cache: &NodeCache) -> Result<()> {
        write_atomically(&self.cache_path(node), cache)
    }

    /// The pinned roots; none when the file is missing or damaged (with a warning: the roots
    /// it named stay pinned until removed by hand).
    pub fn load_pins(&self) -> Pins {
        read_or_default(&self.pins_path)
    }

    /// Replaces the pinned roots.
    pub fn save_pins(&self, pins: &Pins) -> Result<()> {
        write_atomically(&self.pins_path, pins)
    }

    /// The submitted roots not seen recorded; none when the file is missing or damaged (with
    /// a warning).
    pub fn load_submitted(&self) -> Submitted {
        read_or_default(&self.submitted_path)
    }

    /// Replaces the submitted roots.
    pub fn save_submitted(&self, submitted: &Submitted) -> Result<()> {
        write_atomically(&self.submitted_path, submitted)
    }

    /// The nodes found unserved; none when the file is missing or damaged (with a warning:
    /// their grace periods start again).
    pub fn load_unserved(&self) -> Unserved {
        read_or_default(&self.unserved_path)
    }

    /// Replaces the nodes found unserved.
    pub fn save_unserved(&self, unserved: &Unserved) -> Result<()> {
        write_atomically(&self.unserved_path, unserved)
    }
}

/// The exclusive hold of one process on a data folder: a second bot on the same folder would
/// collect blocks the first has stored but not pinned yet, and both would rewrite the pins.
/// Released when dropped, or when the process ends however it ends (`flock`).
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created if missing), or fails at once naming the pid of
    /// the process that holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if let Err(error) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if error != rustix::io::Errno::WOULDBLOCK {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
            let mut holder = String::new();
            file.read_to_string(&mut holder)?;
            anyhow::bail!(
                "{} is in use by another backup-bot (pid {}): one process per data folder",
                data_dir.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(Self { _file: file })
    }
}

/// The JSON value in `path`, or the default when the file is missing or does not parse.
fn read_or_default<T: DeserializeOwned + Default>(path: &Path) -> T {
    let parsed = fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?));
    parsed.unwrap_or_else(|error| {
        if path.exists() {
            warn!("ignoring {}: {error:#}", path.display());
        }
        T::default()
    })
}

/// Writes `value` as JSON to `path` (mode 0600): aside, synced, then renamed over it.
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(&serde_json::to_vec(value)?)?;
    file.sync_all()?;
    fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use subxt_signer::sr25519::dev;

    #[test]
    fn one_lock_per_data_folder_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        let pid = format!("(pid {})", std::process::id());
        assert!(
            error.contains("in use by another backup-bot") && error.contains(&pid),
            "{error}"
        );
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_truncated_cache_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let node = ServedNode {
            node_id: "n/../1".into(),
            owner: dev::bob().public_key().to_account_id(),
            source: PathBuf::from("/unused"),
            restore_to: PathBuf::from("/unused"),
        };
        let cache = NodeCache {
            root: "root".into(),
            ..NodeCache::default()
        };
        state.save_cache(&node, &cache).unwrap();
        assert_eq!(state.load_cache(&node), cache);
        let path = state.cache_path(&node);
        assert_eq!(path.parent().unwrap(), dir.path().join("cache"));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(state.load_cache(&node), NodeCache::default());
    }
}
