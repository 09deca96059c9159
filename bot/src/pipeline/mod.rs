//! The snapshot pipeline: the one place that turns a directory into a snapshot in a block
//! store ([`scan`] then [`seal`]) and a snapshot back into a directory ([`restore`]).
//!
//! **Chunks.** File content is cut into content-defined chunks (FastCDC 2020: 64 KiB minimum,
//! 256 KiB average, 1 MiB − 4 KiB maximum, so that every encrypted chunk fits one IPFS
//! block of at most 1 MiB, and one `block/put` request of at most 1 MiB). An edit changes
//! only the chunks around it.
//!
//! **Compression, then encryption that dedups within a backup only.** Each backup has a
//! 32-byte secret ([`BackupSecret`]). A chunk is compressed (zstd, level 3) and kept so when
//! that makes it smaller; its block is `nonce ‖ XChaCha20-Poly1305(kind ‖ stored)`, the kind
//! byte saying raw or zstd, with the key and the 24-byte nonce both derived from that secret,
//! the nonce by HMAC-SHA256 of what it encrypts: equal chunks of one backup give equal blocks,
//! stored once; another backup, with another secret, shares nothing and learns nothing.
//! Blocks of manifest format 4 and before (no kind byte) are still read.
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
//!
//! **Rooms**, along restic's `internal/` lines: `scan` (a folder into a
//! manifest and stored chunks), `file_cache` (what the scan remembers of files, as lines in
//! the walk's order), `seal` (the manifest into pages, chunk list, sealed envelope
//! and root), `crypto` (the backup's secret; compression and encryption of chunks), `manifest` (the format, and opening it from a
//! root), `read` (verified, bounded reads of a snapshot's blocks), `check` and `restore`.

mod check;
mod chunker;
mod crypto;
mod file_cache;
mod manifest;
mod read;
mod restore;
mod scan;
mod seal;
#[cfg(test)]
mod tests;

pub use self::check::{check, CheckStats};
pub use self::crypto::BackupSecret;
pub use self::file_cache::{CachedFile, NextFiles, PreviousFiles};
pub use self::manifest::{
    open_manifest, open_snapshot, ChunkRef, Manifest, ManifestEntries, ManifestEntry,
    ManifestHeader, OpenedManifest, MANIFEST_FORMAT, MAX_MANIFEST_BYTES,
};
pub use self::restore::{restore, Expected, RestoreStats};
pub use self::scan::{scan, Scanned, SnapshotStats, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
pub use self::seal::{seal, seal_manifest, snapshot_folder, ManifestSealer};
