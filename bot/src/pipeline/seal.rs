//! Sealing a scanned tree: the manifest's pages, the chunk list, the envelope sealed to the
//! recipients and the snapshot's root, stored.

use super::chunker::Chunker;
use super::crypto::ChunkSealer;
use super::manifest::{Envelope, CHUNKS_LINK, MANIFEST_LINK};
use super::read::{block_key, BlockKey};
use super::scan::put_counted;
use super::{
    scan, BackupSecret, ChunkRef, Manifest, ManifestEntry, ManifestHeader, PreviousFiles, Scanned,
    SnapshotStats, MAX_MANIFEST_BYTES,
};
use crate::compact_map::CompactSet;
use crate::keys;
use crate::store::ContentStore;
use crate::unixfs::{self, Child, Link, UnixfsHasher};
use anyhow::{anyhow, ensure, Result};
use cid::Cid;
use sha2::{Digest, Sha256};
use std::path::Path;

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

/// A manifest being sealed entry by entry as a scan makes them: its JSON lines are cut into
/// pages and stored as soon as a page is certain, and the chunk list's lowest nodes as their
/// groups end, so that what is held is less than two pages, one group and one key per
/// distinct chunk, never the tree. [`ManifestSealer::seal`] stores the rest and the root.
pub struct ManifestSealer {
    header: ManifestHeader,
    /// JSON lines not cut into a page yet.
    lines: Vec<u8>,
    /// Bytes of every line so far.
    manifest_bytes: u64,
    /// sha2-256 of the manifest's JSON (the header and the entries so far).
    digest: Sha256,
    /// Entries so far.
    entries: u64,
    /// The pages stored so far, in order.
    pages: Vec<ChunkRef>,
    /// The chunks of the entries so far.
    chunk_list: ChunkList,
    /// Where pages end, and what seals them.
    page_chunker: Chunker,
    page_sealer: ChunkSealer,
}

impl ManifestSealer {
    /// A sealer of the manifest of `header`, with no entry yet.
    pub fn new(header: ManifestHeader) -> Result<Self> {
        // The JSON of a whole manifest is its header's fields, then `"entries":[...]`.
        let mut prefix = serde_json::to_vec(&header)?;
        ensure!(
            prefix.pop() == Some(b'}'),
            "a manifest header is a JSON object"
        );
        prefix.extend_from_slice(b",\"entries\":[");
        let mut digest = Sha256::new();
        digest.update(&prefix);
        Ok(Self {
            page_chunker: header.secret.chunker(MIN_PAGE, AVG_PAGE, MAX_PAGE),
            page_sealer: header.secret.sealer()?,
            header,
            lines: Vec::new(),
            manifest_bytes: 0,
            digest,
            entries: 0,
            pages: Vec::new(),
            chunk_list: ChunkList::new(),
        })
    }

    /// Adds `entry` after those pushed before (paths in the tree's order), storing the pages
    /// and chunk-list nodes it completes.
    pub async fn push(
        &mut self,
        store: &ContentStore,
        entry: &ManifestEntry,
        stats: &mut SnapshotStats,
    ) -> Result<()> {
        let line = serde_json::to_vec(entry)?;
        self.manifest_bytes += line.len() as u64 + 1;
        ensure!(
            self.manifest_bytes <= MAX_MANIFEST_BYTES,
            "the tree has too many entries: its manifest would pass the limit of {} MiB that \
             a restore accepts (about 2 million files); split the node's folder",
            MAX_MANIFEST_BYTES >> 20
        );
        if self.entries > 0 {
            self.digest.update(b",");
        }
        self.digest.update(&line);
        self.entries += 1;
        self.lines.extend_from_slice(&line);
        self.lines.push(b'\n');
        for chunk in &entry.chunks {
            self.chunk_list.add(store, chunk, stats).await?;
        }
        self.store_pages(store, MAX_PAGE as usize, stats).await
    }

    /// Cuts pages off the start of the held lines, sealing and storing each, while at least
    /// `held` bytes are held. A page's end depends only on the bytes from its start to at
    /// most MAX_PAGE on: with that many held, the first page is the one a cut of the whole
    /// list makes; with 1, every byte left is paged.
    async fn store_pages(
        &mut self,
        store: &ContentStore,
        held: usize,
        stats: &mut SnapshotStats,
    ) -> Result<()> {
        while !self.lines.is_empty() && self.lines.len() >= held {
            let len = self.page_chunker.first_len(&self.lines);
            let block = self.page_sealer.seal(&self.lines[..len])?;
            put_counted(store, &block, stats).await?;
            self.pages.push(ChunkRef::sealed(&block, len)?);
            self.lines.drain(..len);
        }
        Ok(())
    }

    /// sha2-256 of the JSON of the manifest pushed so far ([`Manifest`] serialized): equal for
    /// equal trees of one backup.
    pub fn manifest_sha256(&self) -> [u8; 32] {
        let mut digest = self.digest.clone();
        digest.update(b"]}");
        digest.finalize().into()
    }

    /// Seals the manifest to `recipients` and stores the rest of the snapshot's DAG; returns
    /// its root (not yet pinned) with `stats` completed.
    pub async fn seal(
        mut self,
        store: &ContentStore,
        recipients: &[age::x25519::Recipient],
        mut stats: SnapshotStats,
    ) -> Result<(Cid, SnapshotStats)> {
        let stats = &mut stats;
        self.store_pages(store, 1, stats).await?;
        // The chunk list: each distinct chunk once, in order of first use, then the pages.
        for page in &self.pages {
            self.chunk_list.add(store, page, stats).await?;
        }
        let chunks_root = self.chunk_list.finish(store, stats).await?;

        let envelope = Envelope {
            header: self.header,
            chunk_list: chunks_root.cid.to_string(),
            pages: self.pages,
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
        for block in manifest_blocks.iter().chain(std::iter::once(&root)) {
            stats.snapshot_bytes += block.data.len() as u64;
            put_counted(store, block, stats).await?;
        }
        Ok((root.cid, *stats))
    }
}

/// Seals the manifest of `scanned` to `recipients` and stores the rest of the snapshot's DAG;
/// returns its root (not yet pinned) with the final counts.
pub async fn seal(
    store: &ContentStore,
    scanned: Scanned,
    recipients: &[age::x25519::Recipient],
) -> Result<(Cid, SnapshotStats)> {
    scanned
        .manifest
        .seal(store, recipients, scanned.stats)
        .await
}

/// Scans `source` with no file cache (every file read) and seals it to `recipients`: a
/// snapshot made outside the bot's pass. Returns its root (not yet pinned) and counts.
pub async fn snapshot_folder(
    store: &ContentStore,
    source: &Path,
    secret: &BackupSecret,
    owner: &str,
    node_id: &str,
    recipients: &[age::x25519::Recipient],
) -> Result<(Cid, SnapshotStats)> {
    let mut no_files = PreviousFiles::none();
    let scanned = scan(store, source, secret, owner, node_id, &mut no_files, None).await?;
    seal(store, scanned, recipients).await
}

/// Seals `manifest` (made by a scan, or read with [`super::open_manifest`] and edited) to
/// `recipients` and stores the snapshot's DAG; returns its root (not yet pinned) with `stats`
/// completed.
pub async fn seal_manifest(
    store: &ContentStore,
    manifest: &Manifest,
    recipients: &[age::x25519::Recipient],
    mut stats: SnapshotStats,
) -> Result<(Cid, SnapshotStats)> {
    let mut sealer = ManifestSealer::new(manifest.header.clone())?;
    for entry in &manifest.entries {
        sealer.push(store, entry, &mut stats).await?;
    }
    sealer.seal(store, recipients, stats).await
}

/// The UnixFS file that lists a snapshot's chunks, built as they come: its lowest nodes end
/// after a leaf whose hash's first byte is a multiple of [`LIST_NODE_SPREAD`] (or when full),
/// so that their boundaries depend on the leaves around them, not on their positions; the
/// nodes above are a balanced tree. The leaves are stored already; each node is stored when
/// made.
struct ChunkList {
    /// The CIDs listed so far, in bytes.
    listed: CompactSet<BlockKey>,
    /// Leaves of the lowest node being filled.
    group: Vec<Child>,
    /// Whether `group` is complete: it becomes a node when another leaf comes (a single
    /// leaf is its own list, as a one-chunk file is its own leaf).
    group_ended: bool,
    /// The first leaf, and how many there are.
    first: Option<Child>,
    leaves: u64,
    /// The levels above the lowest nodes.
    upper: UnixfsHasher,
}

impl ChunkList {
    /// A list with no chunk yet.
    fn new() -> Self {
        Self {
            listed: CompactSet::default(),
            group: Vec::new(),
            group_ended: false,
            first: None,
            leaves: 0,
            upper: UnixfsHasher::keeping_blocks(),
        }
    }

    /// Lists `chunk` unless it is listed already.
    async fn add(
        &mut self,
        store: &ContentStore,
        chunk: &ChunkRef,
        stats: &mut SnapshotStats,
    ) -> Result<()> {
        let cid = Cid::try_from(chunk.cid.as_str())?;
        let key = block_key(&cid)?;
        if !self.listed.insert(key, ()) {
            return Ok(());
        }
        let block_len = chunk.block_len();
        stats.chunks += 1;
        stats.snapshot_bytes += block_len;
        if self.group_ended {
            self.close_group(store, stats).await?;
        }
        let leaf = Child {
            cid,
            tsize: block_len,
            file_size: block_len,
        };
        self.group_ended = leaf.cid.hash().digest()[0] % LIST_NODE_SPREAD == 0
            || self.group.len() + 1 == unixfs::MAX_LINKS;
        if self.leaves == 0 {
            self.first = Some(leaf.clone());
        }
        self.leaves += 1;
        self.group.push(leaf);
        Ok(())
    }

    /// Stores the node over the group's leaves and adds it to the level above.
    async fn close_group(&mut self, store: &ContentStore, stats: &mut SnapshotStats) -> Result<()> {
        let (node, block) = unixfs::file_node_block(&std::mem::take(&mut self.group))?;
        stats.snapshot_bytes += block.data.len() as u64;
        put_counted(store, &block, stats).await?;
        self.group_ended = false;
        self.upper.push_leaf(node)
    }

    /// The list's root, its last nodes stored.
    async fn finish(mut self, store: &ContentStore, stats: &mut SnapshotStats) -> Result<Child> {
        if self.leaves == 1 {
            return self
                .first
                .ok_or_else(|| anyhow!("one leaf listed, none kept"));
        }
        if !self.group.is_empty() {
            self.close_group(store, stats).await?;
        }
        // A tree without content has the empty raw leaf as its chunk list, stored here.
        let (root, blocks) = self.upper.finish_with_blocks()?;
        for block in &blocks {
            stats.snapshot_bytes += block.data.len() as u64;
            put_counted(store, block, stats).await?;
        }
        Ok(root)
    }
}
