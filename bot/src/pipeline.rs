//! The snapshot pipeline: the one place that turns a directory into a snapshot in a block
//! store ([`scan`] then [`seal`]) and a snapshot back into a directory ([`restore`]).
//!
//! **Chunks.** File content is cut into content-defined chunks (FastCDC 2020: 64 KiB minimum,
//! 256 KiB average, 1 MiB − 4 KiB maximum, so that every encrypted chunk fits one IPFS
//! block of at most 1 MiB, and one `block/put` request of at most 1 MiB). An edit changes
//! only the chunks around it.
//!
//! **Encryption that dedups within a backup only.** Each backup has a 32-byte secret
//! ([`BackupSecret`]). A chunk's block is `nonce ‖ XChaCha20-Poly1305(plaintext)`, with the key
//! and the 24-byte nonce both derived from that secret, the nonce by HMAC-SHA256 of the
//! plaintext: equal chunks of one backup give equal blocks, stored once; another backup, with
//! another secret, shares nothing and learns nothing.
//!
//! **Manifest.** The snapshot's tree (folders, files and symbolic links: paths, permission
//! bits, modification times, sizes, chunks) as JSON lines cut into encrypted pages; the
//! pages' CIDs and the backup's secret form the envelope, sealed with age to the node's
//! identity and the owner's registered recipient: the owner restores alone, with their
//! identity and any IPFS API.
//!
//! **Layout.** The snapshot's root is a UnixFS directory with two entries: `chunks`, a UnixFS
//! file whose leaves are the snapshot's distinct chunk blocks (raw), and `manifest.age`, the
//! sealed manifest as the UnixFS file `ipfs add --cid-version=1` makes of it. `pin add ROOT`
//! keeps the whole snapshot; any IPFS node can fetch and verify every block; the CID recorded
//! on chain is the root's.
//!
//! **Restore** verifies every block against its CID before using it, decrypts, checks the
//! manifest names only chunks the snapshot holds and that the tree fits the disk, and writes
//! the tree into a staging folder next to the target ([`crate::staging`]), which replaces the
//! target only once complete.

use crate::invalid::{invalid, Invalid};
use crate::keys;
use crate::staging::{self, Staging};
use crate::store::ContentStore;
use crate::tree::{self, EntryKind, FileStamp, Skipped, TreeEntry};
use crate::unixfs::{self, Block, Child, Link, UnixfsHasher, DAG_PB, RAW};
use anyhow::{anyhow, ensure, Context, Result};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cid::Cid;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Smallest chunk FastCDC cuts (but for the end of a file).
pub const MIN_CHUNK: u32 = 64 * 1024;
/// Average chunk size FastCDC aims at.
pub const AVG_CHUNK: u32 = 256 * 1024;
/// Largest chunk: with its nonce and tag, a block under 1 MiB, the largest block every IPFS
/// implementation accepts and exchanges, with room for the multipart framing of `block/put`
/// (js-ipfs limits a whole request to 1 MiB).
pub const MAX_CHUNK: u32 = 1024 * 1024 - 4096;
/// Bytes before a chunk's ciphertext in its block.
const NONCE_LEN: usize = 24;
/// Bytes a chunk's block adds to its plaintext: nonce and tag.
const BLOCK_OVERHEAD: u64 = NONCE_LEN as u64 + 16;
/// The manifest format this code writes: 3 keeps symbolic links, permission bits,
/// modification times and names that are not UTF-8.
pub const MANIFEST_FORMAT: u32 = 4;
/// The oldest manifest format this code reads (2: folders and files, execute bits only).
const OLDEST_MANIFEST_FORMAT: u32 = 2;
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
/// Largest manifest (sealed, or its entry list) a snapshot may have: a snapshot whose list
/// would be larger is refused when it is made, and a restore refuses one (about 2 million
/// files).
pub const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;
/// Most leaves a snapshot's chunk list may have (a 1 TiB folder of 256 KiB chunks has 4 M).
const MAX_LIST_LEAVES: usize = 64 << 20;
/// Deepest UnixFS file DAG a restore follows (174^6 leaves is far beyond any manifest).
const MAX_FILE_DEPTH: usize = 6;
/// Name of the root's link to the chunk list.
const CHUNKS_LINK: &str = "chunks";
/// Name of the root's link to the sealed manifest.
const MANIFEST_LINK: &str = "manifest.age";

/// What a restore with an identity the snapshot is not sealed to says.
pub const NOT_A_RECIPIENT: &str =
    "decrypt failed: this identity is not a recipient of the snapshot";

/// The secret of one backup, from which its chunks' keys and nonces derive.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupSecret([u8; 32]);

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `parts` under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl BackupSecret {
    /// The secret of `owner`'s backup of `node_id`, derived from the node's identity: the bot
    /// finds it again after a restart, and the manifest hands it to the owner.
    pub fn derive(identity: &age::x25519::Identity, owner: &str, node_id: &str) -> Self {
        use age::secrecy::ExposeSecret;
        let identity = identity.to_string();
        Self(hmac(
            identity.expose_secret().as_bytes(),
            &[
                b"backup-bot backup secret v1\0",
                owner.as_bytes(),
                b"\0",
                node_id.as_bytes(),
            ],
        ))
    }

    /// The secret of the epoch whose snapshots are sealed to `recipients` (in any order):
    /// each set of recipients has its own, so that a recipient removed from a backup, who
    /// holds the secret of the snapshots it could open, cannot open the blocks of later ones.
    /// Older snapshots carry their own secret in their envelope and stay readable. A change
    /// of recipients re-stores the backup's content once (no block is shared across epochs).
    pub fn for_recipients(&self, recipients: &[String]) -> Self {
        let mut sorted: Vec<&str> = recipients.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut parts: Vec<&[u8]> = vec![b"recipients epoch"];
        for recipient in &sorted {
            parts.extend([b"\0".as_slice(), recipient.as_bytes()]);
        }
        Self(hmac(&self.0, &parts))
    }

    /// A chunker over `source` cutting where this backup's secret says (FastCDC's gear table
    /// seeded from it): the sizes of stored blocks, in order, tell nothing of where a
    /// known file's content-defined boundaries fall.
    fn chunker<R: Read>(
        &self,
        source: R,
        min: u32,
        avg: u32,
        max: u32,
    ) -> fastcdc::v2020::StreamCDC<R> {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&hmac(&self.0, &[b"chunker seed"])[..8]);
        fastcdc::v2020::StreamCDC::with_level_and_seed(
            source,
            min,
            avg,
            max,
            fastcdc::v2020::Normalization::Level1,
            u64::from_le_bytes(seed),
        )
    }

    /// The AEAD of chunks.
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&hmac(&self.0, &[b"chunk key"]).into())
    }

    /// The nonce of the chunk `plaintext`.
    fn nonce(&self, plaintext: &[u8]) -> [u8; NONCE_LEN] {
        let key = hmac(&self.0, &[b"chunk nonce"]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&hmac(&key, &[plaintext])[..NONCE_LEN]);
        nonce
    }

    /// The raw block of the chunk `plaintext`: its nonce, then the ciphertext and tag.
    pub fn seal_chunk(&self, plaintext: &[u8]) -> Result<Block> {
        let nonce = self.nonce(plaintext);
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .map_err(|_| anyhow!("chunk encryption failed"))?;
        let mut data = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&ciphertext);
        Block::new(RAW, data)
    }

    /// The plaintext of a block made by [`BackupSecret::seal_chunk`] with this secret: the
    /// tag authenticates it under the backup's key (the nonce need not be checked again: only
    /// a holder of the key can make a block that opens).
    pub fn open_chunk(&self, block: &[u8]) -> Result<Vec<u8>> {
        ensure!(
            block.len() >= NONCE_LEN,
            Invalid::new("chunk block too short")
        );
        let (nonce, ciphertext) = block.split_at(NONCE_LEN);
        let plaintext = self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| invalid("chunk fails authentication"))?;
        Ok(plaintext)
    }

    /// A short public name of the secret (an HMAC of it), telling two secrets apart without
    /// revealing either.
    pub fn fingerprint(&self) -> String {
        hex::encode(&hmac(&self.0, &[b"fingerprint"])[..16])
    }

    fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).map_err(|_| invalid("manifest secret is not hex"))?;
        Ok(Self(
            bytes
                .try_into()
                .map_err(|_| invalid("manifest secret is not 32 bytes"))?,
        ))
    }
}

/// One chunk of a file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkRef {
    /// CID of the chunk's encrypted block.
    pub cid: String,
    /// Plaintext length.
    pub len: u32,
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
    fn hard_link(entry: &TreeEntry, first: &[u8]) -> Self {
        Self {
            hard_link_hex: Some(hex::encode(first)),
            ..Self::of(entry, Vec::new())
        }
    }

    /// The entry of the listed `entry`, whose content is `chunks`.
    fn of(entry: &TreeEntry, chunks: Vec<ChunkRef>) -> Self {
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
            Some(path) => hex::decode(path).map_err(|_| invalid("manifest path is not hex")),
            None => Ok(self.path.clone().into_bytes()),
        }
    }

    /// The permission bits it is restored with.
    fn permissions(&self) -> u32 {
        match self.mode {
            Some(mode) => mode & 0o777,
            None if self.dir => staging::DEFAULT_DIR_MODE,
            None if self.executable => 0o755,
            None => 0o644,
        }
    }
}

/// The key of a listed entry in a [`FileCache`]: its path, or for a path that is not UTF-8,
/// a NUL (which no name holds) and its bytes in hex.
fn cache_key(entry: &TreeEntry) -> String {
    match std::str::from_utf8(&entry.relative) {
        Ok(path) => path.to_string(),
        Err(_) => format!("\0{}", hex::encode(&entry.relative)),
    }
}

/// What a snapshot holds. Sealed, its entries are JSON lines cut into content-defined pages,
/// each encrypted as a chunk (so unchanged stretches of a large tree are stored once), and the
/// rest is the [`Envelope`] sealed with age: `manifest.age` in the snapshot's DAG.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup's owner (SS58).
    pub owner: String,
    /// The backup's node id.
    pub node_id: String,
    /// The backup's secret, hex: what decrypts the chunks.
    secret: String,
    /// The tree, in byte order of paths.
    pub entries: Vec<ManifestEntry>,
}

/// The part of a manifest sealed with age to the recipients.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    /// [`MANIFEST_FORMAT`].
    format: u32,
    /// The backup's owner (SS58).
    owner: String,
    /// The backup's node id.
    node_id: String,
    /// The backup's secret, hex: what decrypts the chunks and pages.
    secret: String,
    /// CID of the snapshot's chunk list: ties the envelope to its chunks.
    chunk_list: String,
    /// The pages of the entry list, in order.
    pages: Vec<ChunkRef>,
}

impl Manifest {
    /// sha2-256 of its JSON: equal for equal trees of one backup.
    pub fn digest(&self) -> Result<[u8; 32]> {
        Ok(Sha256::digest(serde_json::to_vec(self)?).into())
    }
}

/// What the bot remembers of a file it chunked: if its stamp is unchanged, its chunks are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedFile {
    /// The file's stamp when it was read.
    pub stamp: FileStamp,
    /// Its chunks.
    pub chunks: Vec<ChunkRef>,
}

/// Files chunked before, by path: reused without reading while unchanged.
pub type FileCache = HashMap<String, CachedFile>;

/// Counts of a scan and a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SnapshotStats {
    /// Regular files in the tree.
    pub files: u64,
    /// Directories in the tree (the root excluded).
    pub directories: u64,
    /// Symbolic links in the tree.
    pub symlinks: u64,
    /// Second and later names of files in the tree (hard links), kept as links.
    pub hard_links: u64,
    /// Entries left out (see [`Scanned::skipped`]).
    pub skipped: u64,
    /// Bytes of file content in the tree.
    pub content_bytes: u64,
    /// Bytes read from files (those whose cache entry did not match).
    pub bytes_read: u64,
    /// Distinct chunks in the snapshot.
    pub chunks: u64,
    /// Blocks new to the store.
    pub new_blocks: u64,
    /// Bytes new to the store.
    pub new_bytes: u64,
    /// Bytes of every block of the snapshot (what `pin add ROOT` keeps).
    pub snapshot_bytes: u64,
}

/// A scanned tree: its manifest, the chunks it needs, and the cache for the next scan.
pub struct Scanned {
    /// The manifest to seal.
    pub manifest: Manifest,
    /// The files' cache entries, for the next scan.
    pub cache: FileCache,
    /// Counts so far.
    pub stats: SnapshotStats,
    /// The entries left out: special files, and files that changed while they were read.
    pub skipped: Vec<Skipped>,
}

/// Stores `block`, counting it.
async fn put_counted(store: &ContentStore, block: &Block, stats: &mut SnapshotStats) -> Result<()> {
    if store.put_block(block).await? {
        stats.new_blocks += 1;
        stats.new_bytes += block.data.len() as u64;
    }
    Ok(())
}

/// Chunks, encrypts and stores `file`, listed as `entry`; `None` when it changed while it
/// was read (its size or modification time is no longer the listed one).
async fn chunk_file(
    store: &ContentStore,
    secret: &BackupSecret,
    file: File,
    entry: &TreeEntry,
    stats: &mut SnapshotStats,
) -> Result<Option<Vec<ChunkRef>>> {
    let expected_len = entry.size();
    let chunker = secret.chunker((&file).take(expected_len), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
    let mut chunks = Vec::new();
    let mut read = 0u64;
    for chunk in chunker {
        let chunk = chunk.with_context(|| format!("reading {}", entry.display()))?;
        read += chunk.data.len() as u64;
        let block = secret.seal_chunk(&chunk.data)?;
        put_counted(store, &block, stats).await?;
        chunks.push(ChunkRef {
            cid: block.cid.to_string(),
            len: u32::try_from(chunk.data.len())?,
        });
    }
    stats.bytes_read += read;
    let now = FileStamp::of_file(&file)?;
    let unchanged =
        read == expected_len && now.size == expected_len && now.mtime_ns == entry.stamp.mtime_ns;
    Ok(unchanged.then_some(chunks))
}

/// Whether every block of `chunks` is whole in `store` (see
/// [`ContentStore::pinned_block_whole`]): a cached file whose blocks were lost is read again.
fn all_whole(store: &ContentStore, chunks: &[ChunkRef]) -> Result<bool> {
    for chunk in chunks {
        let Ok(cid) = Cid::try_from(chunk.cid.as_str()) else {
            return Ok(false);
        };
        if !store.pinned_block_whole(&cid, u64::from(chunk.len) + BLOCK_OVERHEAD)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Files modified this close to the scan's start are read, but not cached: a write in the
/// same clock tick after the scan would leave their stamp unchanged.
const CACHE_SETTLE_NS: i128 = 1_000_000_000;

/// Reads the tree under `source` into a manifest, storing the chunks of every file whose stamp
/// is not in `previous` (the others are taken from it without reading). Special files, and
/// files that change while they are read, are left out and listed in
/// [`Scanned::skipped`].
pub async fn scan(
    store: &ContentStore,
    source: &Path,
    secret: &BackupSecret,
    owner: &str,
    node_id: &str,
    previous: &FileCache,
) -> Result<Scanned> {
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let settled_before = i128::try_from(started_ns)? - CACHE_SETTLE_NS;
    let mut listing = tree::list_tree(source)?;
    let entries = std::mem::take(&mut listing.entries);
    let total: u64 = entries.iter().map(TreeEntry::size).sum();
    let progress = crate::progress::bar(total, "snapshot");
    let mut stats = SnapshotStats::default();
    let mut cache = FileCache::new();
    let mut manifest_entries = Vec::with_capacity(entries.len());
    // Files with more than one name, by device and inode: the first name kept, and its stamp.
    let mut first_names: HashMap<(u64, u64), (Vec<u8>, FileStamp)> = HashMap::new();
    for entry in entries {
        progress.inc(entry.size());
        let file = (entry.stamp.device, entry.stamp.inode);
        if let Some((first, stamp)) = first_names.get(&file) {
            // The same file, unchanged since its first name was read: a link to it.
            if *stamp == entry.stamp {
                stats.hard_links += 1;
                manifest_entries.push(ManifestEntry::hard_link(&entry, first));
                continue;
            }
        }
        let chunks = match &entry.kind {
            EntryKind::Dir => {
                stats.directories += 1;
                Vec::new()
            }
            EntryKind::Symlink { .. } => {
                stats.symlinks += 1;
                Vec::new()
            }
            EntryKind::File { size } => {
                let key = cache_key(&entry);
                let cached = previous
                    .get(&key)
                    .filter(|cached| cached.stamp == entry.stamp);
                let chunks = match cached {
                    Some(cached) if all_whole(store, &cached.chunks)? => cached.chunks.clone(),
                    _ => {
                        let read = match listing.open_file(&entry)? {
                            Ok(file) => chunk_file(store, secret, file, &entry, &mut stats)
                                .await?
                                .ok_or(tree::Listing::CHANGED_WHILE_READ),
                            Err(reason) => Err(reason),
                        };
                        match read {
                            Ok(chunks) => chunks,
                            Err(reason) => {
                                listing.skip(&entry, reason);
                                continue;
                            }
                        }
                    }
                };
                stats.files += 1;
                stats.content_bytes += size;
                if entry.links > 1 {
                    first_names.insert(file, (entry.relative.clone(), entry.stamp));
                }
                if entry.stamp.mtime_ns < settled_before {
                    let stamp = entry.stamp;
                    cache.insert(
                        key,
                        CachedFile {
                            stamp,
                            chunks: chunks.clone(),
                        },
                    );
                }
                chunks
            }
        };
        manifest_entries.push(ManifestEntry::of(&entry, chunks));
    }
    progress.finish_and_clear();
    stats.skipped = listing.skipped.len() as u64;
    Ok(Scanned {
        manifest: Manifest {
            format: MANIFEST_FORMAT,
            owner: owner.to_string(),
            node_id: node_id.to_string(),
            secret: secret.to_hex(),
            entries: manifest_entries,
        },
        cache,
        stats,
        skipped: listing.skipped,
    })
}

/// Seals `scanned`'s manifest to `recipients`, stores the snapshot's DAG and returns its root
/// (not yet pinned) with the final counts.
pub async fn seal(
    store: &ContentStore,
    scanned: &Scanned,
    recipients: &[age::x25519::Recipient],
) -> Result<(Cid, SnapshotStats)> {
    let mut stats = scanned.stats;
    let manifest = &scanned.manifest;
    let secret = BackupSecret::from_hex(&manifest.secret)?;
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
        let block = secret.seal_chunk(&page?.data)?;
        put_counted(store, &block, &mut stats).await?;
        pages.push(ChunkRef {
            cid: block.cid.to_string(),
            len: u32::try_from(block.data.len() as u64 - BLOCK_OVERHEAD)?,
        });
    }
    // The chunk list: each distinct chunk once, in order of first use, then the pages.
    let mut seen = HashSet::new();
    let mut leaves = Vec::new();
    let file_chunks = manifest.entries.iter().flat_map(|entry| &entry.chunks);
    for chunk in file_chunks.chain(&pages) {
        if seen.insert(chunk.cid.as_str()) {
            let block_len = u64::from(chunk.len) + BLOCK_OVERHEAD;
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
        format: manifest.format,
        owner: manifest.owner.clone(),
        node_id: manifest.node_id.clone(),
        secret: manifest.secret.clone(),
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

/// Fetches the block `cid` and checks it against its CID.
async fn fetch_verified(store: &ContentStore, cid: &Cid) -> Result<Block> {
    let bytes = store.get_block(cid).await?;
    Block::verified(cid, bytes).map_err(|error| invalid(format!("{error:#}")))
}

/// Decodes a dag-pb block fetched from the store.
fn decode(block: &Block) -> Result<unixfs::Node> {
    ensure!(
        block.cid.codec() == DAG_PB,
        Invalid::new(format!("{} is not a dag-pb node", block.cid))
    );
    unixfs::decode_node(&block.data).map_err(|error| invalid(format!("{}: {error:#}", block.cid)))
}

/// The leaves of the UnixFS file `cid`, in order, and (when `read`) its content, verifying
/// every block fetched; at most `limit` bytes and [`MAX_LIST_LEAVES`] leaves. A block linked
/// twice is refused (the bot's files never repeat one), so that a small hostile DAG cannot
/// make the walk exponential.
async fn walk_file(
    store: &ContentStore,
    cid: &Cid,
    read: bool,
    limit: u64,
) -> Result<(Vec<Cid>, Vec<u8>)> {
    let mut leaves = Vec::new();
    let mut content = Vec::new();
    let mut seen = HashSet::new();
    // Depth-first, in link order: a stack of (cid, depth), last link pushed first.
    let mut pending = vec![(*cid, 0usize)];
    while let Some((cid, depth)) = pending.pop() {
        ensure!(depth <= MAX_FILE_DEPTH, Invalid::new("file DAG too deep"));
        ensure!(
            seen.insert(cid),
            Invalid::new(format!("the DAG links {cid} twice"))
        );
        ensure!(
            leaves.len() < MAX_LIST_LEAVES,
            Invalid::new("the DAG has too many leaves")
        );
        if cid.codec() == RAW {
            leaves.push(cid);
            if read {
                let block = fetch_verified(store, &cid).await?;
                ensure!(
                    content.len() as u64 + block.data.len() as u64 <= limit,
                    Invalid::new("file larger than allowed")
                );
                content.extend_from_slice(&block.data);
            }
            continue;
        }
        let node = decode(&fetch_verified(store, &cid).await?)?;
        pending.extend(node.links.iter().rev().map(|link| (link.cid, depth + 1)));
    }
    Ok((leaves, content))
}

/// Fetches, verifies and decrypts the chunk a manifest lists, checking its length.
async fn open_listed_chunk(
    store: &ContentStore,
    secret: &BackupSecret,
    chunk: &ChunkRef,
) -> Result<Vec<u8>> {
    let cid = Cid::try_from(chunk.cid.as_str())
        .map_err(|_| invalid(format!("bad chunk CID {}", chunk.cid)))?;
    open_chunk_of(secret, &fetch_verified(store, &cid).await?.data, chunk)
}

/// Decrypts a verified block of the chunk `chunk` lists, checking its length.
fn open_chunk_of(secret: &BackupSecret, block: &[u8], chunk: &ChunkRef) -> Result<Vec<u8>> {
    let plaintext = secret.open_chunk(block)?;
    ensure!(
        plaintext.len() == chunk.len as usize,
        Invalid::new(format!("chunk {} has the wrong length", chunk.cid))
    );
    Ok(plaintext)
}

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
            ensure!(store.has_block(leaf).await?, "block {leaf} is missing");
        }
        return Ok(stats);
    };
    let manifest = open_manifest(store, root, identity).await?;
    let secret = BackupSecret::from_hex(&manifest.secret)?;
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
            open_chunk_of(&secret, &block.data, chunk)?;
            stats.chunks_opened += 1;
        }
    }
    Ok(stats)
}

/// What a restore wrote, and whose snapshot it was.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RestoreStats {
    /// The backup's owner (SS58), as the snapshot's manifest says.
    pub owner: String,
    /// The backup's node id, as the snapshot's manifest says.
    pub node_id: String,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored (the root excluded).
    pub directories: u64,
    /// Symbolic links restored.
    pub symlinks: u64,
    /// Hard links restored (second and later names of a file).
    pub hard_links: u64,
    /// Bytes of file content restored.
    pub content_bytes: u64,
}

/// Who a restored snapshot must belong to.
pub struct Expected<'a> {
    /// The backup's owner (SS58).
    pub owner: &'a str,
    /// The backup's node id.
    pub node_id: &'a str,
}

/// Fetches and opens the manifest of snapshot `root` with `identity`, checking the root's
/// layout and that the manifest names only chunks the snapshot holds.
pub async fn open_manifest(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
) -> Result<Manifest> {
    let root_node = decode(&fetch_verified(store, root).await?)?;
    ensure!(
        root_node.data == [0x08, 0x01] && root_node.links.len() == 2,
        Invalid::new("the root is not a snapshot")
    );
    let link = |name: &str| {
        root_node
            .links
            .iter()
            .find(|link| link.name == name)
            .map(|link| link.cid)
            .ok_or_else(|| invalid(format!("the root has no {name}")))
    };
    let (chunks_cid, manifest_cid) = (link(CHUNKS_LINK)?, link(MANIFEST_LINK)?);
    let (_, sealed) = walk_file(store, &manifest_cid, true, MAX_MANIFEST_BYTES).await?;
    let mut json = Vec::new();
    keys::decrypt_with(identity, &sealed[..])
        .and_then(|mut reader| Ok(reader.read_to_end(&mut json)?))
        .map_err(|_| invalid(NOT_A_RECIPIENT))?;
    let envelope: Envelope =
        serde_json::from_slice(&json).map_err(|error| invalid(format!("manifest: {error}")))?;
    ensure!(
        (OLDEST_MANIFEST_FORMAT..=MANIFEST_FORMAT).contains(&envelope.format),
        Invalid::new(format!(
            "manifest format {} is not supported",
            envelope.format
        ))
    );
    ensure!(
        envelope.chunk_list == chunks_cid.to_string(),
        Invalid::new("the root joins the manifest of another snapshot to these chunks")
    );
    let (listed, _) = walk_file(store, &chunks_cid, false, 0).await?;
    let listed: HashSet<String> = listed.iter().map(ToString::to_string).collect();
    let holds = |chunk: &ChunkRef| -> Result<()> {
        ensure!(
            listed.contains(&chunk.cid),
            Invalid::new(format!(
                "the manifest names chunk {} the snapshot does not hold",
                chunk.cid
            ))
        );
        Ok(())
    };
    let secret = BackupSecret::from_hex(&envelope.secret)?;
    let mut lines = Vec::new();
    for page in &envelope.pages {
        holds(page)?;
        lines.extend(open_listed_chunk(store, &secret, page).await?);
        ensure!(
            lines.len() as u64 <= MAX_MANIFEST_BYTES,
            Invalid::new("manifest larger than allowed")
        );
    }
    let mut entries = Vec::new();
    for line in lines
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        let entry: ManifestEntry = serde_json::from_slice(line)
            .map_err(|error| invalid(format!("manifest entry: {error}")))?;
        entry.chunks.iter().try_for_each(holds)?;
        entries.push(entry);
    }
    let manifest = Manifest {
        format: envelope.format,
        owner: envelope.owner,
        node_id: envelope.node_id,
        secret: envelope.secret,
        entries,
    };
    Ok(manifest)
}

/// Restores snapshot `root` into `target` with `identity`: the tree is written into a staging
/// folder beside `target` and replaces `target` (if any) only when complete, so an
/// interrupted or refused restore leaves `target` as it was. With `expected`, a snapshot of
/// another backup is refused.
pub async fn restore(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
    expected: Option<Expected<'_>>,
    target: &Path,
) -> Result<RestoreStats> {
    let manifest = open_manifest(store, root, identity).await?;
    if let Some(expected) = expected {
        ensure!(
            manifest.owner == expected.owner && manifest.node_id == expected.node_id,
            Invalid::new(format!(
                "the snapshot belongs to node {:?} of {}",
                manifest.node_id, manifest.owner
            ))
        );
    }
    check_sizes(&manifest, target)?;
    let mut staging = Staging::create(target)?;
    let stats = write_tree(store, &manifest, &mut staging).await?;
    staging.replace(target)?;
    Ok(stats)
}

/// Checks, before anything is written, that every file's chunks add up to its size and that
/// the whole tree fits the free space of `target`'s file system: a snapshot naming one chunk
/// again and again cannot fill the disk.
fn check_sizes(manifest: &Manifest, target: &Path) -> Result<()> {
    let mut total = 0u64;
    for entry in &manifest.entries {
        let listed: u64 = entry.chunks.iter().map(|chunk| u64::from(chunk.len)).sum();
        // A hard link takes no space: its size is its first name's, checked when it is made.
        let size = if entry.hard_link_hex.is_some() {
            0
        } else {
            entry.size
        };
        ensure!(
            listed == size,
            Invalid::new(format!("{} has the wrong size", entry.path))
        );
        total = total.saturating_add(listed);
    }
    let mut place = target;
    while !place.exists() {
        match place.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => place = parent,
            _ => {
                place = Path::new(".");
                break;
            }
        }
    }
    let space = rustix::fs::statvfs(place)?;
    let free = space.f_bavail.saturating_mul(space.f_frsize);
    ensure!(
        total <= free,
        Invalid::new(format!(
            "the snapshot holds {total} bytes and the restore target's file system has {free} free"
        ))
    );
    Ok(())
}

/// Writes `manifest`'s tree into `staging`, fetching, verifying and decrypting each chunk.
async fn write_tree(
    store: &ContentStore,
    manifest: &Manifest,
    staging: &mut Staging,
) -> Result<RestoreStats> {
    let secret = BackupSecret::from_hex(&manifest.secret)?;
    let total: u64 = manifest.entries.iter().map(|entry| entry.size).sum();
    let progress = crate::progress::bar(total, "restore");
    let mut stats = RestoreStats {
        owner: manifest.owner.clone(),
        node_id: manifest.node_id.clone(),
        ..RestoreStats::default()
    };
    // The paths hard links name, and the size of each such file written so far: only those
    // are kept, not every file's. (A name that is not hex is refused at its link.)
    let linked: HashSet<Vec<u8>> = manifest
        .entries
        .iter()
        .filter_map(|entry| hex::decode(entry.hard_link_hex.as_deref()?).ok())
        .collect();
    let mut written: HashMap<Vec<u8>, u64> = HashMap::new();
    for entry in &manifest.entries {
        let path = entry.path_bytes()?;
        tree::safe_relative_path(&path).map_err(|error| invalid(error.to_string()))?;
        let mode = entry.permissions();
        if let Some(first) = &entry.hard_link_hex {
            let first = hex::decode(first).map_err(|_| invalid("hard link path is not hex"))?;
            ensure!(
                written.get(&first) == Some(&entry.size),
                Invalid::new(format!(
                    "{} names no file of its size written before it",
                    entry.path
                ))
            );
            staging.create_hard_link(&path, &first)?;
            stats.hard_links += 1;
            continue;
        }
        if entry.dir {
            staging.create_dir(&path, mode, entry.mtime_ns)?;
            stats.directories += 1;
            continue;
        }
        if let Some(target) = &entry.link_hex {
            let target = hex::decode(target).map_err(|_| invalid("link target is not hex"))?;
            ensure!(
                !target.is_empty() && !target.contains(&0),
                Invalid::new(format!("{} has an empty link target", entry.path))
            );
            staging.create_symlink(&path, &target, entry.mtime_ns)?;
            stats.symlinks += 1;
            continue;
        }
        let mut file = staging.create_file(&path)?;
        for chunk in &entry.chunks {
            let plaintext = open_listed_chunk(store, &secret, chunk).await?;
            file.write_all(&plaintext)?;
            progress.inc(plaintext.len() as u64);
        }
        Staging::finish_file(&file, mode, entry.mtime_ns)?;
        if linked.contains(&path) {
            written.insert(path, entry.size);
        }
        stats.files += 1;
        stats.content_bytes += entry.size;
    }
    progress.finish_and_clear();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::random_bytes;
    use crate::store::LocalStore;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A tree with a large random file, a small one, an executable and an empty folder.
    fn sample_tree(root: &Path) {
        fs::create_dir_all(root.join("data/empty")).unwrap();
        fs::write(root.join("data/large.bin"), random_bytes(8 << 20, 7)).unwrap();
        fs::write(root.join("small.txt"), b"small file\n").unwrap();
        fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        // Written an hour ago: files modified in the second before a scan are not cached.
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for file in ["data/large.bin", "small.txt", "run.sh"] {
            let file = File::options().write(true).open(root.join(file)).unwrap();
            file.set_modified(past).unwrap();
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        source: PathBuf,
        store: ContentStore,
        identity: age::x25519::Identity,
        secret: BackupSecret,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let source = root.join("source");
        sample_tree(&source);
        let identity = age::x25519::Identity::generate();
        let secret = BackupSecret::derive(&identity, "owner", "node");
        Fixture {
            store: ContentStore::Local(LocalStore::open(root.join("store")).unwrap()),
            _dir: dir,
            root,
            source,
            identity,
            secret,
        }
    }

    impl Fixture {
        fn local(&self) -> &LocalStore {
            match &self.store {
                ContentStore::Local(local) => local,
                ContentStore::Kubo(_) => unreachable!(),
            }
        }

        async fn scan(&self, previous: &FileCache) -> Scanned {
            scan(
                &self.store,
                &self.source,
                &self.secret,
                "owner",
                "node",
                previous,
            )
            .await
            .unwrap()
        }

        async fn snapshot(&self) -> (Cid, Scanned, SnapshotStats) {
            let scanned = self.scan(&FileCache::new()).await;
            let (root, stats) = seal(&self.store, &scanned, &[self.identity.to_public()])
                .await
                .unwrap();
            (root, scanned, stats)
        }

        async fn restore(&self, root: &Cid, target: &Path) -> Result<RestoreStats> {
            restore(&self.store, root, &self.identity, None, target).await
        }
    }

    /// The chunk CIDs of `scanned`'s file `path`.
    fn chunks_of(scanned: &Scanned, path: &str) -> Vec<String> {
        let entry = scanned
            .manifest
            .entries
            .iter()
            .find(|entry| entry.path == path);
        entry
            .unwrap()
            .chunks
            .iter()
            .map(|chunk| chunk.cid.clone())
            .collect()
    }

    #[tokio::test]
    async fn round_trip_restores_the_identical_tree() {
        let fixture = fixture();
        let (root, _, stats) = fixture.snapshot().await;
        assert_eq!((stats.files, stats.directories), (3, 2));
        assert!(stats.chunks >= 8, "{stats:?}");
        let target = fixture.root.join("restored");
        let restored = fixture.restore(&root, &target).await.unwrap();
        assert_eq!(restored.files, 3);
        assert_eq!(
            tree::first_difference(&fixture.source, &target).unwrap(),
            None
        );
        let mode = fs::metadata(target.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "the mode itself, not only its execute bit"
        );
    }

    #[tokio::test]
    async fn equal_trees_share_every_chunk_and_an_edit_changes_only_its_neighbours() {
        let fixture = fixture();
        let (_, first, first_stats) = fixture.snapshot().await;
        let (_, second, second_stats) = fixture.snapshot().await;
        let chunk_blocks = |scanned: &Scanned| chunks_of(scanned, "data/large.bin");
        assert_eq!(chunk_blocks(&first), chunk_blocks(&second));
        assert_eq!(second_stats.bytes_read, first_stats.bytes_read);
        // Only the sealed manifest (new age file key), the chunk list's nodes already there.
        assert!(second_stats.new_blocks <= 2, "{second_stats:?}");

        let path = fixture.source.join("data/large.bin");
        let mut content = fs::read(&path).unwrap();
        let middle = content.len() / 2;
        content[middle] ^= 0x55;
        fs::write(&path, &content).unwrap();
        let third = fixture.scan(&first.cache).await;
        let (before, after) = (chunk_blocks(&first), chunk_blocks(&third));
        assert_eq!(before.len(), after.len());
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(
            before.len() >= 8 && changed == 1,
            "{changed} of {} chunks changed",
            before.len()
        );
        assert_eq!(third.stats.new_blocks, 1);
        // Only the edited file was read again.
        assert_eq!(third.stats.bytes_read, content.len() as u64);
    }

    #[tokio::test]
    async fn the_cache_skips_unchanged_files_and_a_new_mtime_reuses_chunks() {
        let fixture = fixture();
        let (_, first, _) = fixture.snapshot().await;
        let again = fixture.scan(&first.cache).await;
        assert_eq!(again.stats.bytes_read, 0);
        assert_eq!(
            again.manifest.digest().unwrap(),
            first.manifest.digest().unwrap()
        );

        let path = fixture.source.join("data/large.bin");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let touched = fixture.scan(&first.cache).await;
        assert_eq!(touched.stats.bytes_read, 8 << 20);
        assert_eq!(
            touched.stats.new_blocks, 0,
            "the same content gives the same blocks"
        );
        assert_eq!(
            chunks_of(&touched, "data/large.bin"),
            chunks_of(&first, "data/large.bin")
        );
        assert_ne!(
            touched.manifest.digest().unwrap(),
            first.manifest.digest().unwrap(),
            "the new modification time is part of the snapshot"
        );
    }

    #[tokio::test]
    async fn the_same_file_in_two_backups_shares_no_block() {
        let fixture = fixture();
        let (_, first, _) = fixture.snapshot().await;
        let other_secret = BackupSecret::derive(&fixture.identity, "owner", "other node");
        let other = scan(
            &fixture.store,
            &fixture.source,
            &other_secret,
            "owner",
            "other node",
            &FileCache::new(),
        )
        .await
        .unwrap();
        let ours: HashSet<String> = chunks_of(&first, "data/large.bin").into_iter().collect();
        let theirs = chunks_of(&other, "data/large.bin");
        assert!(theirs.iter().all(|cid| !ours.contains(cid)));
        let theirs_distinct = theirs.iter().collect::<HashSet<_>>().len();
        assert_eq!(other.stats.new_blocks as usize, theirs_distinct + 2);
        // Boundaries, hence block sizes, depend on the backup's secret.
        let lengths = |scanned: &Scanned| -> Vec<u32> {
            let entry = scanned
                .manifest
                .entries
                .iter()
                .find(|entry| entry.path == "data/large.bin");
            entry
                .unwrap()
                .chunks
                .iter()
                .map(|chunk| chunk.len)
                .collect()
        };
        assert_ne!(lengths(&first), lengths(&other));
    }

    /// Restores `root` over a target holding a previous tree: refused as invalid, with the
    /// target untouched.
    async fn assert_refused(fixture: &Fixture, root: &Cid, expected: &str) {
        let target = fixture.root.join("target");
        fs::create_dir_all(&target).unwrap();
        fs::write(target.join("previous"), b"kept").unwrap();
        let error = fixture.restore(root, &target).await.unwrap_err();
        let invalid = error.downcast_ref::<Invalid>();
        assert!(
            invalid.is_some_and(|invalid| invalid.0.contains(expected)),
            "{error:#}"
        );
        let left: Vec<_> = fs::read_dir(&target).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(fs::read(target.join("previous")).unwrap(), b"kept");
        let staging_left = fs::read_dir(&fixture.root).unwrap().any(|item| {
            item.unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".restoring-")
        });
        assert!(!staging_left, "the staging folder is removed");
    }

    /// Names of one file in the tree come back as names of one file. Listed in byte order,
    /// `data/small.2` is the first name of `small.txt`'s file. A file whose other name is
    /// outside the tree comes back as a plain file.
    #[tokio::test]
    async fn hard_links_are_restored_as_hard_links() {
        use std::os::unix::fs::MetadataExt;
        let fixture = fixture();
        let source = &fixture.source;
        fs::hard_link(source.join("small.txt"), source.join("data/small.2")).unwrap();
        fs::hard_link(source.join("small.txt"), source.join("small.3")).unwrap();
        fs::hard_link(source.join("run.sh"), fixture.root.join("outside")).unwrap();
        let (root, scanned, stats) = fixture.snapshot().await;
        assert_eq!((stats.files, stats.hard_links), (3, 2));
        assert!(
            chunks_of(&scanned, "small.txt").is_empty(),
            "not stored twice"
        );
        let target = fixture.root.join("restored");
        let restored = fixture.restore(&root, &target).await.unwrap();
        assert_eq!((restored.files, restored.hard_links), (3, 2));
        assert_eq!(tree::first_difference(source, &target).unwrap(), None);
        let inode = |path: &str| fs::metadata(target.join(path)).unwrap().ino();
        assert_eq!(inode("small.txt"), inode("data/small.2"));
        assert_eq!(inode("small.3"), inode("data/small.2"));
        assert_eq!(fs::metadata(target.join("run.sh")).unwrap().nlink(), 1);
    }

    /// A hard link must name a file written before it, of its size: not a later entry, not
    /// a folder, not a path outside the snapshot.
    #[tokio::test]
    async fn a_hard_link_to_no_earlier_file_is_refused() {
        let fixture = fixture();
        let (_, scanned, _) = fixture.snapshot().await;
        for first in ["small.txt", "data", "../outside"] {
            let mut edited = fixture.scan(&scanned.cache).await;
            let entry = edited
                .manifest
                .entries
                .iter_mut()
                .find(|entry| entry.path == "run.sh")
                .unwrap();
            entry.hard_link_hex = Some(hex::encode(first));
            entry.chunks.clear();
            entry.size = 11;
            let (root, _) = seal(&fixture.store, &edited, &[fixture.identity.to_public()])
                .await
                .unwrap();
            assert_refused(
                &fixture,
                &root,
                "names no file of its size written before it",
            )
            .await;
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_in_any_block_is_refused() {
        let fixture = fixture();
        let (root, _, _) = fixture.snapshot().await;
        for cid in fixture.local().block_cids().unwrap() {
            let path = fixture.local().path_of(&cid);
            let original = fs::read(&path).unwrap();
            let mut flipped = original.clone();
            let at = flipped.len() / 2;
            flipped[at] ^= 1;
            fs::write(&path, &flipped).unwrap();
            assert_refused(&fixture, &root, "does not match its CID").await;
            fs::write(&path, &original).unwrap();
        }
        fixture
            .restore(&root, &fixture.root.join("fine"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_swapped_block_is_refused() {
        let fixture = fixture();
        let (root, scanned, _) = fixture.snapshot().await;
        let chunks = chunks_of(&scanned, "data/large.bin");
        let (first, second) = (
            Cid::try_from(chunks[0].as_str()).unwrap(),
            Cid::try_from(chunks[1].as_str()).unwrap(),
        );
        fs::copy(
            fixture.local().path_of(&second),
            fixture.local().path_of(&first),
        )
        .unwrap();
        assert_refused(&fixture, &root, "does not match its CID").await;
    }

    #[tokio::test]
    async fn a_manifest_from_another_snapshot_is_refused() {
        let fixture = fixture();
        let (root, _, _) = fixture.snapshot().await;
        fs::write(fixture.source.join("small.txt"), b"changed").unwrap();
        let (other_root, _, _) = fixture.snapshot().await;
        let links = |root: &Cid| {
            let bytes = fs::read(fixture.local().path_of(root)).unwrap();
            unixfs::decode_node(&bytes).unwrap().links
        };
        // This snapshot's chunks under the other snapshot's manifest.
        let mut mixed = links(&root);
        let other_manifest = links(&other_root)
            .into_iter()
            .find(|link| link.name == MANIFEST_LINK)
            .unwrap();
        mixed.retain(|link| link.name != MANIFEST_LINK);
        mixed.push(other_manifest);
        let mixed_root = unixfs::directory_node(mixed).unwrap();
        fixture.store.put_block(&mixed_root).await.unwrap();
        assert_refused(&fixture, &mixed_root.cid, "manifest of another snapshot").await;
    }

    #[tokio::test]
    async fn only_recipients_restore_and_a_restore_replaces_the_target() {
        let fixture = fixture();
        let owner = age::x25519::Identity::generate();
        let scanned = fixture.scan(&FileCache::new()).await;
        let recipients = [fixture.identity.to_public(), owner.to_public()];
        let (root, _) = seal(&fixture.store, &scanned, &recipients).await.unwrap();
        let target = fixture.root.join("owner");
        fs::create_dir_all(target.join("old")).unwrap();
        restore(&fixture.store, &root, &owner, None, &target)
            .await
            .unwrap();
        assert_eq!(
            tree::first_difference(&fixture.source, &target).unwrap(),
            None
        );

        let stranger = age::x25519::Identity::generate();
        let error = restore(&fixture.store, &root, &stranger, None, &target)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("decrypt failed"), "{error}");
        let expected = Expected {
            owner: "owner",
            node_id: "another node",
        };
        let error = restore(&fixture.store, &root, &owner, Some(expected), &target)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("belongs to node \"node\""),
            "{error}"
        );
        assert_eq!(
            tree::first_difference(&fixture.source, &target).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_path_leaving_the_target_is_refused() {
        let fixture = fixture();
        let mut scanned = fixture.scan(&FileCache::new()).await;
        scanned.manifest.entries[0].path = "../escape".into();
        let (root, _) = seal(&fixture.store, &scanned, &[fixture.identity.to_public()])
            .await
            .unwrap();
        assert_refused(&fixture, &root, "unsafe path: ../escape").await;
        assert!(!fixture.root.join("escape").exists());
    }

    /// A root whose manifest is a DAG of six levels, each node linking the one below 174
    /// times (174^6 paths to one leaf): refused at the second visit, not walked.
    #[tokio::test]
    async fn a_dag_repeating_one_child_is_refused_at_once() {
        let fixture = fixture();
        let (root, _, _) = fixture.snapshot().await;
        let leaf = Block::new(RAW, b"one leaf".to_vec()).unwrap();
        fixture.store.put_block(&leaf).await.unwrap();
        let mut child = Child {
            cid: leaf.cid,
            tsize: 8,
            file_size: 8,
        };
        for _ in 0..6 {
            let (node, block) = unixfs::file_node_block(&vec![child; unixfs::MAX_LINKS]).unwrap();
            fixture.store.put_block(&block).await.unwrap();
            child = node;
        }
        let bytes = fs::read(fixture.local().path_of(&root)).unwrap();
        let mut links = unixfs::decode_node(&bytes).unwrap().links;
        links.retain(|link| link.name != MANIFEST_LINK);
        links.push(Link {
            cid: child.cid,
            name: MANIFEST_LINK.to_string(),
            tsize: child.tsize,
        });
        let hostile = unixfs::directory_node(links).unwrap();
        fixture.store.put_block(&hostile).await.unwrap();
        assert_refused(&fixture, &hostile.cid, "twice").await;
    }

    /// A manifest naming one chunk again and again, 1 TiB in all: refused before anything is
    /// written, by the free space of the target's file system.
    #[tokio::test]
    async fn a_manifest_naming_a_terabyte_is_refused_before_writing() {
        let fixture = fixture();
        let mut scanned = fixture.scan(&FileCache::new()).await;
        let entry = scanned
            .manifest
            .entries
            .iter_mut()
            .find(|entry| entry.path == "data/large.bin")
            .unwrap();
        let chunk = ChunkRef {
            len: u32::MAX,
            ..entry.chunks[0].clone()
        };
        entry.chunks = vec![chunk; 256];
        entry.size = 256 * u64::from(u32::MAX);
        let (root, _) = seal(&fixture.store, &scanned, &[fixture.identity.to_public()])
            .await
            .unwrap();
        assert_refused(&fixture, &root, "restore target's file system has").await;
    }

    /// A staging-like name planted beside the target as a link to another folder: removed as
    /// a link, never followed; the folder it names keeps its files.
    #[tokio::test]
    async fn a_planted_staging_link_is_removed_not_followed() {
        let fixture = fixture();
        let (root, _, _) = fixture.snapshot().await;
        let victim = fixture.root.join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("precious"), b"keep me").unwrap();
        let planted = fixture.root.join(".target.restoring-planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let target = fixture.root.join("target");
        fixture.restore(&root, &target).await.unwrap();
        assert_eq!(
            tree::first_difference(&fixture.source, &target).unwrap(),
            None
        );
        assert!(fs::symlink_metadata(&planted).is_err(), "the link is gone");
        assert_eq!(fs::read(victim.join("precious")).unwrap(), b"keep me");
    }

    /// A target that is a file, or a link to a folder, is refused before anything is written.
    #[tokio::test]
    async fn a_target_that_is_not_a_folder_is_refused() {
        let fixture = fixture();
        let (root, _, _) = fixture.snapshot().await;
        let file = fixture.root.join("a-file");
        fs::write(&file, b"not a folder").unwrap();
        let link = fixture.root.join("a-link");
        std::os::unix::fs::symlink(&fixture.source, &link).unwrap();
        for target in [&file, &link] {
            let error = fixture.restore(&root, target).await.unwrap_err();
            assert!(error.to_string().contains("is not a folder"), "{error}");
        }
        assert_eq!(fs::read(&file).unwrap(), b"not a folder");
        assert_eq!(
            tree::first_difference(&fixture.source, &link).unwrap(),
            None
        );
    }

    #[test]
    fn each_set_of_recipients_has_its_own_secret() {
        let secret = BackupSecret([3; 32]);
        let names =
            |list: &[&str]| -> Vec<String> { list.iter().map(|name| name.to_string()).collect() };
        let (old, new) = (
            secret.for_recipients(&names(&["bot", "owner-a"])),
            secret.for_recipients(&names(&["bot", "owner-b"])),
        );
        assert!(
            old == secret.for_recipients(&names(&["owner-a", "bot", "bot"])),
            "order and repeats do not matter"
        );
        let block = new
            .seal_chunk(b"written after owner-a was removed")
            .unwrap();
        assert!(
            old.open_chunk(&block.data).is_err(),
            "the removed recipient's secret opens nothing new"
        );
        assert_eq!(
            new.open_chunk(&block.data).unwrap(),
            b"written after owner-a was removed"
        );
        assert!(old.fingerprint() != new.fingerprint());
    }

    #[test]
    fn blocks_fit_ipfs_and_chunks_authenticate() {
        let secret = BackupSecret([9; 32]);
        let block = secret.seal_chunk(&vec![1u8; MAX_CHUNK as usize]).unwrap();
        assert!(block.data.len() <= 1024 * 1024);
        assert_eq!(
            secret.open_chunk(&block.data).unwrap(),
            vec![1u8; MAX_CHUNK as usize]
        );
        assert!(BackupSecret([8; 32]).open_chunk(&block.data).is_err());
        assert_eq!(
            secret.seal_chunk(b"same").unwrap(),
            secret.seal_chunk(b"same").unwrap()
        );
    }
}
