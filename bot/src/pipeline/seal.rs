//! Sealing a scanned tree: the manifest's pages, the chunk list, the envelope sealed to the
//! recipients and the snapshot's root, stored.

use super::manifest::{Envelope, CHUNKS_LINK, MANIFEST_LINK};
use super::scan::put_counted;
use super::{ChunkRef, Scanned, SnapshotStats, MAX_MANIFEST_BYTES};
use crate::keys;
use crate::store::ContentStore;
use crate::unixfs::{self, Block, Child, Link, UnixfsHasher};
use anyhow::{ensure, Result};
use cid::Cid;
use std::collections::HashSet;

/// Smallest page of the manifest's entry list (but for the last).
const MIN_PAGE: u32 = 1024;

/// Average page size FastCDC aims at: small, so that an edit anywhere in a large tree
/// re-stores a few KiB of the list, not all of it.
const AVG_PAGE: u32 = 4096;

/// Largest page.
const MAX_PAGE: u32 = 16 * 1024;

/// One chunk-list node in this many ends after a given leaf (by the leaf's hash), so that a
/// chunk added or removed changes only the node around it, not every node after it.
const LIST_NODE_SPREAD: u8 = 16;

/// Seals `scanned`'s manifest to `recipients`, stores the snapshot's DAG and returns its root
/// (not yet pinned) with the final counts.
pub async fn seal(
    store: &ContentStore,
    scanned: &Scanned,
    recipients: &[age::x25519::Recipient],
) -> Result<(Cid, SnapshotStats)> {
    let mut stats = scanned.stats;
    let manifest = &scanned.manifest;
    let secret = &manifest.header.secret;
    // The entries as JSON lines, cut into content-defined pages, each stored as a chunk.
    let mut lines = Vec::new();
    for entry in &manifest.entries {
        serde_json::to_writer(&mut lines, entry)?;
        lines.push(b'\n');
        ensure!(
            lines.len() as u64 <= MAX_MANIFEST_BYTES,
            "the tree has too many entries: its manifest would pass the limit of {} MiB that \
             a restore accepts (about 2 million files); split the node's folder",
            MAX_MANIFEST_BYTES >> 20
        );
    }
    let mut pages = Vec::new();
    for page in secret.chunker(&lines[..], MIN_PAGE, AVG_PAGE, MAX_PAGE) {
        let page = page?.data;
        let block = secret.seal_chunk(&page)?;
        put_counted(store, &block, &mut stats).await?;
        pages.push(ChunkRef::sealed(&block, page.len())?);
    }
    // The chunk list: each distinct chunk once, in order of first use, then the pages.
    let mut seen = HashSet::new();
    let mut leaves = Vec::new();
    let file_chunks = manifest.entries.iter().flat_map(|entry| &entry.chunks);
    for chunk in file_chunks.chain(&pages) {
        if seen.insert(chunk.cid.as_str()) {
            let block_len = chunk.block_len();
            stats.chunks += 1;
            stats.snapshot_bytes += block_len;
            leaves.push(Child {
                cid: Cid::try_from(chunk.cid.as_str())?,
                tsize: block_len,
                file_size: block_len,
            });
        }
    }
    let (chunks_root, chunk_nodes) = chunk_list(leaves)?;

    let envelope = Envelope {
        header: manifest.header.clone(),
        chunk_list: chunks_root.cid.to_string(),
        pages,
    };
    let mut sealed = Vec::new();
    let mut writer = keys::encrypt_to(recipients, &mut sealed)?;
    serde_json::to_writer(&mut writer, &envelope)?;
    writer.finish()?;
    let mut manifest_file = UnixfsHasher::keeping_blocks();
    manifest_file.update(&sealed)?;
    let (manifest_root, manifest_blocks) = manifest_file.finish_with_blocks()?;

    let root = unixfs::directory_node(vec![
        Link {
            cid: chunks_root.cid,
            name: CHUNKS_LINK.to_string(),
            tsize: chunks_root.tsize,
        },
        Link {
            cid: manifest_root.cid,
            name: MANIFEST_LINK.to_string(),
            tsize: manifest_root.tsize,
        },
    ])?;
    for block in chunk_nodes
        .iter()
        .chain(&manifest_blocks)
        .chain(std::iter::once(&root))
    {
        // The chunk list's own leaves are stored already; a tree without content has the
        // empty raw leaf as its chunk list, which is stored here.
        stats.snapshot_bytes += block.data.len() as u64;
        put_counted(store, block, &mut stats).await?;
    }
    Ok((root.cid, stats))
}

/// The UnixFS file over `leaves` that lists a snapshot's chunks: its lowest nodes end after a
/// leaf whose hash's first byte is a multiple of [`LIST_NODE_SPREAD`] (or when full), so that
/// their boundaries depend on the leaves around them, not on their positions; the nodes above
/// are a balanced tree. Returns its root and the nodes made (the leaves are stored already).
fn chunk_list(leaves: Vec<Child>) -> Result<(Child, Vec<Block>)> {
    if leaves.len() == 1 {
        // A single chunk is its own list, as a one-chunk file is its own leaf.
        let mut leaves = leaves;
        return Ok((leaves.remove(0), Vec::new()));
    }
    let mut upper = UnixfsHasher::keeping_blocks();
    let mut nodes = Vec::new();
    let mut group = Vec::new();
    let count = leaves.len();
    for (index, leaf) in leaves.into_iter().enumerate() {
        let ends_group = leaf.cid.hash().digest()[0] % LIST_NODE_SPREAD == 0;
        group.push(leaf);
        if ends_group || group.len() == unixfs::MAX_LINKS || index + 1 == count {
            let (node, block) = unixfs::file_node_block(&std::mem::take(&mut group))?;
            nodes.push(block);
            upper.push_leaf(node)?;
        }
    }
    let (root, upper_nodes) = upper.finish_with_blocks()?;
    nodes.extend(upper_nodes);
    Ok((root, nodes))
}
