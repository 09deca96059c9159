//! The manifest: what a snapshot holds (its tree, entry by entry) and the envelope sealed
//! with age that hands the backup's secret and the manifest's pages to the recipients; and
//! opening it from a snapshot's root.

use super::crypto::{ChunkFraming, ChunkOpener, UNFRAMED_OVERHEAD};
use super::read::{block_key, decode, fetch_verified, open_listed_chunk, walk_file, BlockKey};
use super::BackupSecret;
use crate::compact_map::CompactSet;
use crate::error::{ensure_valid, Error, Result};
use crate::keys;
use crate::staging;
use crate::store::ContentStore;
use crate::tree::{EntryKind, TreeEntry};
use crate::unixfs::Block;
use cid::Cid;
use std::collections::VecDeque;
use std::io::Read;

/// The manifest format this code writes: 3 added symbolic links, permission bits,
/// modification times and names that are not UTF-8; 4 added hard links; 5 added compressed
/// chunks (a chunk listed with its block's length is [`ChunkFraming::Framed`]).
pub const MANIFEST_FORMAT: u32 = 5;

/// The oldest manifest format this code reads (2: folders and files, execute bits only).
const OLDEST_MANIFEST_FORMAT: u32 = 2;

/// Largest manifest (sealed, or its entry list) a snapshot may have: a snapshot whose list
/// would be larger is refused when it is made, and a restore refuses one (about 2 million
/// files).
pub const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

/// Name of the root's link to the chunk list.
pub(super) const CHUNKS_LINK: &str = "chunks";

/// Name of the root's link to the sealed manifest.
pub(super) const MANIFEST_LINK: &str = "manifest.age";

/// One chunk of a file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkRef {
    /// CID of the chunk's encrypted block.
    pub cid: String,
    /// Plaintext length.
    pub len: u32,
    /// Length of the chunk's block, for a block framed with a kind byte (format 5: stored
    /// raw or compressed); absent for a block of format 4 and before, which a format-5
    /// manifest still lists for files unchanged since (the plaintext, nonce and tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_len: Option<u32>,
}

impl ChunkRef {
    /// The reference to `block`, sealed by [`BackupSecret::seal_chunk`] from `len` bytes.
    pub(super) fn sealed(block: &Block, len: usize) -> anyhow::Result<Self> {
        Ok(Self {
            cid: block.cid.to_string(),
            len: u32::try_from(len)?,
            block_len: Some(u32::try_from(block.data.len())?),
        })
    }

    /// How its block holds the plaintext.
    pub(super) fn framing(&self) -> ChunkFraming {
        match self.block_len {
            Some(_) => ChunkFraming::Framed,
            None => ChunkFraming::Unframed,
        }
    }

    /// Length of its block.
    pub(super) fn block_len(&self) -> u64 {
        match self.block_len {
            Some(len) => u64::from(len),
            None => u64::from(self.len) + UNFRAMED_OVERHEAD,
        }
    }
}

/// One entry of a snapshot's tree: a folder, a regular file or a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the root, `/`-separated; for a path that is not UTF-8, its
    /// readable form (bytes that are not UTF-8 replaced), the path itself being `path_hex`.
    pub path: String,
    /// The path's bytes in hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// Whether it is a folder.
    #[serde(default)]
    pub dir: bool,
    /// For a symbolic link, its target's bytes in hex (restored as a link, never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_hex: Option<String>,
    /// For a second name of a file (a hard link), the path bytes in hex of the file's first
    /// name in the snapshot, an earlier entry; restored as a hard link to it (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_link_hex: Option<String>,
    /// Whether any execute bit is set (what format 2 kept: restored 0755, else 0644).
    #[serde(default)]
    pub executable: bool,
    /// Permission bits (format 3; restored without setuid, setgid and sticky bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Modification time, nanoseconds since the epoch (format 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// File size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The file's chunks, in order.
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
}

impl ManifestEntry {
    /// The entry of the listed `entry`, another name of the file first named `first`.
    pub(super) fn hard_link(entry: &TreeEntry, first: &[u8]) -> Self {
        Self {
            hard_link_hex: Some(hex::encode(first)),
            ..Self::of(entry, Vec::new())
        }
    }

    /// The entry of the listed `entry`, whose content is `chunks`.
    pub(super) fn of(entry: &TreeEntry, chunks: Vec<ChunkRef>) -> Self {
        let (path, path_hex) = match std::str::from_utf8(&entry.relative) {
            Ok(path) => (path.to_string(), None),
            Err(_) => (entry.display(), Some(hex::encode(&entry.relative))),
        };
        let link_hex = match &entry.kind {
            EntryKind::Symlink { target } => Some(hex::encode(target)),
            _ => None,
        };
        Self {
            path,
            path_hex,
            dir: entry.kind == EntryKind::Dir,
            link_hex,
            hard_link_hex: None,
            executable: entry.mode & 0o111 != 0,
            mode: Some(entry.mode),
            mtime_ns: Some(entry.mtime_ns),
            size: entry.size(),
            chunks,
        }
    }

    /// The path's bytes.
    pub fn path_bytes(&self) -> Result<Vec<u8>> {
        match &self.path_hex {
            Some(path) => hex::decode(path).map_err(|_| Error::invalid("manifest path is not hex")),
            None => Ok(self.path.clone().into_bytes()),
        }
    }

    /// The permission bits it is restored with.
    pub(super) fn permissions(&self) -> u32 {
        match self.mode {
            Some(mode) => mode & 0o777,
            None if self.dir => staging::DEFAULT_DIR_MODE,
            None if self.executable => 0o755,
            None => 0o644,
        }
    }
}

/// What a snapshot holds. Sealed, its entries are JSON lines cut into content-defined pages,
/// each encrypted as a chunk (so unchanged stretches of a large tree are stored once), and the
/// rest is the [`Envelope`] sealed with age: `manifest.age` in the snapshot's DAG.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// Whose backup, in which format, and its secret.
    #[serde(flatten)]
    pub header: ManifestHeader,
    /// The tree, in byte order of paths.
    pub entries: Vec<ManifestEntry>,
}

/// What a manifest and its envelope both begin with.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestHeader {
    /// [`MANIFEST_FORMAT`] when written; a format from `OLDEST_MANIFEST_FORMAT` on is read.
    pub format: u32,
    /// The backup's owner (SS58).
    pub owner: String,
    /// The backup's node id.
    pub node_id: String,
    /// The backup's secret (hex in the JSON): what decrypts the chunks and pages.
    pub(super) secret: BackupSecret,
}

/// The part of a manifest sealed with age to the recipients.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Envelope {
    /// Whose backup, in which format, and its secret.
    #[serde(flatten)]
    pub(super) header: ManifestHeader,
    /// CID of the snapshot's chunk list: ties the envelope to its chunks.
    pub(super) chunk_list: String,
    /// The pages of the entry list, in order.
    pub(super) pages: Vec<ChunkRef>,
}

/// A snapshot's manifest, opened and checked up to its entries, which are read a page at a
/// time ([`OpenedManifest::entries`]): a restore holds a page of the tree, not the tree.
pub struct OpenedManifest {
    /// Whose backup, in which format, and its secret.
    pub header: ManifestHeader,
    /// The pages of the entry list, in order.
    pages: Vec<ChunkRef>,
    /// The chunks the snapshot holds.
    listed: CompactSet<BlockKey>,
}

/// Fetches and opens the envelope of snapshot `root` with `identity`, checking the root's
/// layout and that the pages of its manifest are chunks the snapshot holds.
pub async fn open_snapshot(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
) -> Result<OpenedManifest> {
    let root_node = decode(&fetch_verified(store, root).await?)?;
    ensure_valid!(
        root_node.data == [0x08, 0x01] && root_node.links.len() == 2,
        "the root is not a snapshot"
    );
    let link = |name: &str| {
        root_node
            .links
            .iter()
            .find(|link| link.name == name)
            .map(|link| link.cid)
            .ok_or_else(|| Error::invalid(format!("the root has no {name}")))
    };
    let (chunks_cid, manifest_cid) = (link(CHUNKS_LINK)?, link(MANIFEST_LINK)?);
    let (_, sealed) = walk_file(store, &manifest_cid, true, MAX_MANIFEST_BYTES).await?;
    let mut json = Vec::new();
    keys::decrypt_with(identity, &sealed[..])
        .and_then(|mut reader| Ok(reader.read_to_end(&mut json)?))
        .map_err(|_| Error::NotARecipient)?;
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|error| Error::invalid(format!("manifest: {error}")))?;
    ensure_valid!(
        (OLDEST_MANIFEST_FORMAT..=MANIFEST_FORMAT).contains(&envelope.header.format),
        "manifest format {} is not supported",
        envelope.header.format
    );
    ensure_valid!(
        envelope.chunk_list == chunks_cid.to_string(),
        "the root joins the manifest of another snapshot to these chunks"
    );
    let (listed, _) = walk_file(store, &chunks_cid, false, 0).await?;
    let opened = OpenedManifest {
        header: envelope.header,
        pages: envelope.pages,
        listed,
    };
    opened
        .pages
        .iter()
        .try_for_each(|page| opened.holds(page))?;
    Ok(opened)
}

impl OpenedManifest {
    /// Checks that the snapshot holds `chunk`.
    fn holds(&self, chunk: &ChunkRef) -> Result<()> {
        let key = Cid::try_from(chunk.cid.as_str())
            .ok()
            .and_then(|cid| block_key(&cid).ok());
        ensure_valid!(
            key.is_some_and(|key| self.listed.contains(&key)),
            "the manifest names chunk {} the snapshot does not hold",
            chunk.cid
        );
        Ok(())
    }

    /// Its entries from the first, read a page at a time.
    pub fn entries(&self) -> ManifestEntries<'_> {
        ManifestEntries {
            manifest: self,
            opener: self.header.secret.opener(),
            next_page: 0,
            partial: Vec::new(),
            ready: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// The entries of an [`OpenedManifest`] in order, each checked to name only chunks the
/// snapshot holds.
pub struct ManifestEntries<'a> {
    manifest: &'a OpenedManifest,
    /// The opener of its pages.
    opener: ChunkOpener,
    next_page: usize,
    /// The start of a line the next page ends.
    partial: Vec<u8>,
    /// Entries of the pages read, not yet taken.
    ready: VecDeque<ManifestEntry>,
    /// Bytes of the pages read.
    bytes: u64,
}

impl ManifestEntries<'_> {
    /// The next entry; `None` after the last.
    pub async fn next(&mut self, store: &ContentStore) -> Result<Option<ManifestEntry>> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Ok(Some(entry));
            }
            let Some(page) = self.manifest.pages.get(self.next_page) else {
                // A last line without its newline.
                let last = std::mem::take(&mut self.partial);
                if last.is_empty() {
                    return Ok(None);
                }
                return self.parse(&last).map(Some);
            };
            self.next_page += 1;
            let bytes = open_listed_chunk(store, &mut self.opener, page).await?;
            self.bytes += bytes.len() as u64;
            ensure_valid!(
                self.bytes <= MAX_MANIFEST_BYTES,
                "manifest larger than allowed"
            );
            self.partial.extend_from_slice(&bytes);
            let Some(end) = self.partial.iter().rposition(|byte| *byte == b'\n') else {
                continue;
            };
            let rest = self.partial.split_off(end + 1);
            let lines = std::mem::replace(&mut self.partial, rest);
            for line in lines.split(|byte| *byte == b'\n') {
                if !line.is_empty() {
                    let entry = self.parse(line)?;
                    self.ready.push_back(entry);
                }
            }
        }
    }

    /// The entry `line` holds, checked.
    fn parse(&self, line: &[u8]) -> Result<ManifestEntry> {
        let entry: ManifestEntry = serde_json::from_slice(line)
            .map_err(|error| Error::invalid(format!("manifest entry: {error}")))?;
        for chunk in &entry.chunks {
            self.manifest.holds(chunk)?;
        }
        Ok(entry)
    }
}

/// Fetches and opens the whole manifest of snapshot `root` with `identity` (see
/// [`open_snapshot`]): its header and every entry, checked.
pub async fn open_manifest(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
) -> Result<Manifest> {
    let opened = open_snapshot(store, root, identity).await?;
    let mut entries = Vec::new();
    let mut reading = opened.entries();
    while let Some(entry) = reading.next(store).await? {
        entries.push(entry);
    }
    Ok(Manifest {
        header: opened.header,
        entries,
    })
}
