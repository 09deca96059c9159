//! Checking a snapshot in the store, as `check` and `check --read-data` do.

use super::read::{decode, fetch_verified, open_chunk_of};
use super::{open_manifest, ChunkRef};
use crate::error::Result;
use crate::store::ContentStore;
use crate::unixfs::RAW;
use anyhow::anyhow;
use cid::Cid;
use std::collections::{HashMap, HashSet};

/// What a check of one snapshot covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CheckStats {
    /// Blocks found (and, when read, verified).
    pub blocks: u64,
    /// Blocks read and verified against their CIDs.
    pub blocks_read: u64,
    /// Chunks decrypted and authenticated (with an identity).
    pub chunks_opened: u64,
}

/// Checks snapshot `root` in `store`: every dag-pb node is there and matches its CID, and every
/// leaf is there. With `identity` (`check --read-data`), every block is read and verified, the
/// manifest is opened and every chunk decrypted and authenticated, as a restore would, without
/// writing anything.
pub async fn check(
    store: &ContentStore,
    root: &Cid,
    identity: Option<&age::x25519::Identity>,
) -> Result<CheckStats> {
    let mut stats = CheckStats::default();
    let mut leaves = Vec::new();
    let mut pending = vec![*root];
    let mut seen = HashSet::new();
    while let Some(cid) = pending.pop() {
        if !seen.insert(cid) {
            continue;
        }
        stats.blocks += 1;
        if cid.codec() == RAW {
            leaves.push(cid);
            continue;
        }
        let block = fetch_verified(store, &cid).await?;
        stats.blocks_read += 1;
        pending.extend(decode(&block)?.links.iter().map(|link| link.cid));
    }
    let Some(identity) = identity else {
        for leaf in &leaves {
            if !store.has_block(leaf).await? {
                return Err(anyhow!("block {leaf} is missing").into());
            }
        }
        return Ok(stats);
    };
    let manifest = open_manifest(store, root, identity).await?;
    let mut opener = manifest.header.secret.opener();
    let named: HashMap<&str, &ChunkRef> = manifest
        .entries
        .iter()
        .flat_map(|entry| &entry.chunks)
        .map(|chunk| (chunk.cid.as_str(), chunk))
        .collect();
    // Every leaf read once: verified against its CID and, when the manifest names it as a
    // file's chunk, decrypted and measured.
    for leaf in leaves {
        let block = fetch_verified(store, &leaf).await?;
        stats.blocks_read += 1;
        if let Some(chunk) = named.get(leaf.to_string().as_str()) {
            open_chunk_of(&mut opener, &block.data, chunk)?;
            stats.chunks_opened += 1;
        }
    }
    Ok(stats)
}
