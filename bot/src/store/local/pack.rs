//! The pack format: the magic `bbpack1\n`, one record per block (its key, the CID's 36
//! bytes; its length, `u32` little-endian; its bytes), then the index (per block: key, offset
//! of its bytes, length), the sha2-256 of the index, the number of entries and the magic
//! `bbindex1`. Written as `NAME.partial` and renamed `NAME.pack` once synced.

use super::Location;
use anyhow::{anyhow, ensure, Context, Result};
use cid::Cid;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A pack is closed once it holds this many bytes (restic's default pack size).
pub const PACK_TARGET_BYTES: u64 = 16 << 20;

const PACK_MAGIC: [u8; 8] = *b"bbpack1\n";
const INDEX_MAGIC: [u8; 8] = *b"bbindex1";
/// A block's key: its CIDv1 in bytes (version, one-byte codec, sha2-256 multihash).
pub(super) const KEY_BYTES: usize = 36;
pub(super) type Key = [u8; KEY_BYTES];
/// A record's header: the key and the block's length (`u32`).
const RECORD_HEADER_BYTES: usize = KEY_BYTES + 4;
/// An index entry: the key, the offset of the block's bytes and their length (`u32`s).
const ENTRY_BYTES: usize = KEY_BYTES + 8;
/// The end of a pack: the entries' sha2-256, their count and the index magic.
pub(super) const TAIL_BYTES: usize = 32 + 4 + INDEX_MAGIC.len();

/// The key of `cid`, or `None` for a CID the store cannot hold (not a CIDv1 with a one-byte
/// codec and a sha2-256 digest, as every [`crate::unixfs::Block`] is).
pub(super) fn key_of(cid: &Cid) -> Option<Key> {
    cid.to_bytes().try_into().ok()
}

/// The CID whose bytes `key` holds.
pub(super) fn cid_of(key: &Key) -> Result<Cid> {
    Cid::try_from(&key[..]).map_err(|error| anyhow!("an index entry is not a CID: {error}"))
}

/// A block as a pack's index lists it: its key, the offset of its bytes, how many.
pub(super) struct IndexEntry {
    pub(super) key: Key,
    pub(super) offset: u32,
    pub(super) len: u32,
}

impl IndexEntry {
    /// Where this block is, in the pack in `slot`.
    pub(super) fn at(&self, slot: usize) -> Result<Location> {
        Ok(Location {
            pack: u32::try_from(slot).context("the store has more than 2^32 packs")?,
            offset: self.offset,
            len: self.len,
        })
    }
}

/// A finished pack.
pub(super) struct Pack {
    pub(super) name: String,
    /// Blocks in its index, and the bytes of those blocks.
    pub(super) blocks: u64,
    pub(super) block_bytes: u64,
    /// When it was finished (its modification time).
    pub(super) modified: SystemTime,
}

/// The pack being written, as `NAME.partial`.
pub(super) struct OpenPack {
    pub(super) slot: usize,
    pub(super) name: String,
    out: BufWriter<File>,
    len: u64,
    entries: Vec<u8>,
    blocks: u64,
    block_bytes: u64,
}

/// The finished pack `name` in `dir`.
pub(super) fn pack_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pack"))
}

/// The pack `name` in `dir` while it is written.
pub(super) fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.partial"))
}

/// The pack `name`, and its index entries, checked against the pack's length.
pub(super) fn read_index(dir: &Path, name: &str) -> Result<(Pack, Vec<IndexEntry>)> {
    let path = pack_path(dir, name);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata()?;
    let len = meta.len();
    let mut tail = [0; TAIL_BYTES];
    ensure!(
        len >= (PACK_MAGIC.len() + TAIL_BYTES) as u64,
        "{} is too short to be a pack",
        path.display()
    );
    file.read_exact_at(&mut tail, len - TAIL_BYTES as u64)?;
    ensure!(
        tail[36..] == INDEX_MAGIC,
        "{} does not end with an index",
        path.display()
    );
    let count = u32::from_le_bytes(tail[32..36].try_into()?);
    let entries_len = u64::from(count) * ENTRY_BYTES as u64;
    let records_end = len
        .checked_sub(TAIL_BYTES as u64 + entries_len)
        .filter(|end| *end >= PACK_MAGIC.len() as u64)
        .with_context(|| format!("{} names more blocks than it holds", path.display()))?;
    let mut entries = vec![0; usize::try_from(entries_len)?];
    file.read_exact_at(&mut entries, records_end)?;
    ensure!(
        Sha256::digest(&entries)[..] == tail[..32],
        "the index of {} does not match its checksum",
        path.display()
    );
    let mut blocks = Vec::with_capacity(count as usize);
    let mut block_bytes = 0;
    for entry in entries.chunks_exact(ENTRY_BYTES) {
        let key: Key = entry[..KEY_BYTES].try_into()?;
        let offset = u32::from_le_bytes(entry[KEY_BYTES..KEY_BYTES + 4].try_into()?);
        let block_len = u32::from_le_bytes(entry[KEY_BYTES + 4..].try_into()?);
        ensure!(
            u64::from(offset) + u64::from(block_len) <= records_end,
            "{} indexes a block beyond its records",
            path.display()
        );
        block_bytes += u64::from(block_len);
        blocks.push(IndexEntry {
            key,
            offset,
            len: block_len,
        });
    }
    let pack = Pack {
        name: name.to_string(),
        blocks: u64::from(count),
        block_bytes,
        modified: meta.modified()?,
    };
    Ok((pack, blocks))
}

impl OpenPack {
    /// A new, empty pack in slot `slot`, under a name no other pack has.
    pub(super) fn create(dir: &Path, slot: usize) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for attempt in 0u32.. {
            let name = format!("{nanos:x}-{:x}-{attempt}", std::process::id());
            let path = partial_path(dir, &name);
            let file = match File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(error).with_context(|| format!("creating {}", path.display()))
                }
            };
            let mut out = BufWriter::with_capacity(1 << 18, file);
            out.write_all(&PACK_MAGIC)?;
            return Ok(Self {
                slot,
                name,
                out,
                len: PACK_MAGIC.len() as u64,
                entries: Vec::new(),
                blocks: 0,
                block_bytes: 0,
            });
        }
        unreachable!("the attempts are unbounded")
    }

    /// Appends the block `key` holding `data`; returns its index entry.
    pub(super) fn append(&mut self, key: Key, data: &[u8]) -> Result<IndexEntry> {
        let len = u32::try_from(data.len()).context("a block of 4 GiB or more")?;
        let offset = u32::try_from(self.len + RECORD_HEADER_BYTES as u64)
            .context("a pack of 4 GiB or more")?;
        self.out.write_all(&key)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(data)?;
        self.entries.extend_from_slice(&key);
        self.entries.extend_from_slice(&offset.to_le_bytes());
        self.entries.extend_from_slice(&len.to_le_bytes());
        self.len = u64::from(offset) + u64::from(len);
        self.blocks += 1;
        self.block_bytes += u64::from(len);
        Ok(IndexEntry { key, offset, len })
    }

    /// Whether the pack reached [`PACK_TARGET_BYTES`].
    pub(super) fn is_full(&self) -> bool {
        self.len >= PACK_TARGET_BYTES
    }

    /// The bytes at `offset`, once everything appended is flushed to the file.
    pub(super) fn read_at(&mut self, bytes: &mut [u8], offset: u64) -> Result<()> {
        self.out.flush()?;
        self.out.get_ref().read_exact_at(bytes, offset)?;
        Ok(())
    }

    /// Writes the index after the records; returns the pack as finished and its file, not
    /// yet synced nor renamed.
    pub(super) fn close(mut self) -> Result<(Pack, File)> {
        let count = u32::try_from(self.blocks)?;
        self.out.write_all(&self.entries)?;
        self.out.write_all(&Sha256::digest(&self.entries))?;
        self.out.write_all(&count.to_le_bytes())?;
        self.out.write_all(&INDEX_MAGIC)?;
        let file = self.out.into_inner().map_err(|error| error.into_error())?;
        let pack = Pack {
            name: self.name,
            blocks: self.blocks,
            block_bytes: self.block_bytes,
            modified: SystemTime::now(),
        };
        Ok((pack, file))
    }
}
