//! The CID `ipfs add --cid-version=1` gives a file, computed without IPFS.
//!
//! Kubo's defaults for CIDv1: the content is cut into 256 KiB chunks, each chunk is a `raw`
//! block (raw leaves), and the leaves are gathered into a balanced DAG of `dag-pb` nodes of at
//! most 174 links each, every node carrying UnixFS `File` data (total size and the size of
//! each child). Content of at most one chunk is its single raw leaf. All hashes are sha2-256.
//!
//! [`UnixfsHasher`] computes the root CID in one streaming pass, keeping one partial node per
//! level of the DAG, so a file of any size costs a few kilobytes of memory.

use anyhow::Result;
use cid::Cid;
use sha2::{Digest, Sha256};
use std::io::Read;

/// Kubo's default chunk size (`size-262144`).
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Kubo's default number of links per node.
pub const MAX_LINKS: usize = 174;

/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
const SHA2_256: u64 = 0x12;

/// A block linked from a node: its CID, its cumulative size (`Tsize`: its bytes plus those
/// of everything below it) and the file bytes below it.
#[derive(Clone)]
struct Child {
    cid: Cid,
    tsize: u64,
    file_size: u64,
}

/// The CIDv1 of `bytes` hashed with sha2-256 under `codec`.
fn block_cid(codec: u64, bytes: &[u8]) -> Result<Cid> {
    let digest = cid::multihash::Multihash::wrap(SHA2_256, &Sha256::digest(bytes))?;
    Ok(Cid::new_v1(codec, digest))
}

/// Appends `value` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited protobuf field.
fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The dag-pb block of a UnixFS `File` node over `children`: links first (`Hash`, empty
/// `Name`, `Tsize`), then the UnixFS data (`Type = File`, `filesize`, one `blocksizes` entry
/// per child, unpacked), as Kubo and js-ipfs encode it.
fn file_node(children: &[Child]) -> Vec<u8> {
    let mut unixfs = vec![0x08, 0x02];
    let total: u64 = children.iter().map(|child| child.file_size).sum();
    unixfs.push(0x18);
    put_varint(&mut unixfs, total);
    for child in children {
        unixfs.push(0x20);
        put_varint(&mut unixfs, child.file_size);
    }
    let mut node = Vec::new();
    for child in children {
        let mut link = Vec::new();
        put_bytes(&mut link, 0x0a, &child.cid.to_bytes());
        put_bytes(&mut link, 0x12, b"");
        link.push(0x18);
        put_varint(&mut link, child.tsize);
        put_bytes(&mut node, 0x12, &link);
    }
    put_bytes(&mut node, 0x0a, &unixfs);
    node
}

/// Streaming computation of a file's UnixFS CID (Kubo's defaults for CIDv1).
#[derive(Default)]
pub struct UnixfsHasher {
    /// Bytes of the chunk being filled.
    chunk: Vec<u8>,
    /// `levels[0]` holds leaves not yet gathered into a node, `levels[1]` nodes over leaves,
    /// and so on. A full level is only gathered when more content arrives, so that a file
    /// filling exactly one node gets no extra level.
    levels: Vec<Vec<Child>>,
}

impl UnixfsHasher {
    /// A hasher with no content yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` to the content.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let room = CHUNK_SIZE - self.chunk.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.chunk.extend_from_slice(now);
            bytes = rest;
            if self.chunk.len() == CHUNK_SIZE && !bytes.is_empty() {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Turns the current chunk into a raw leaf.
    fn flush_chunk(&mut self) -> Result<()> {
        let leaf = Child {
            cid: block_cid(RAW, &self.chunk)?,
            tsize: self.chunk.len() as u64,
            file_size: self.chunk.len() as u64,
        };
        self.chunk.clear();
        self.push(0, leaf)
    }

    /// Adds `child` to `level`, gathering that level into a node first if it is full.
    fn push(&mut self, level: usize, child: Child) -> Result<()> {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            let node = Self::node_over(&full)?;
            self.push(level + 1, node)?;
        }
        self.levels[level].push(child);
        Ok(())
    }

    /// The node gathering `children`, as a child of the level above.
    fn node_over(children: &[Child]) -> Result<Child> {
        let block = file_node(children);
        Ok(Child {
            cid: block_cid(DAG_PB, &block)?,
            tsize: block.len() as u64 + children.iter().map(|child| child.tsize).sum::<u64>(),
            file_size: children.iter().map(|child| child.file_size).sum(),
        })
    }

    /// The root CID of everything added.
    pub fn finish(mut self) -> Result<Cid> {
        // The last chunk, even empty: an empty file is one empty raw leaf.
        if !self.chunk.is_empty() || self.levels.is_empty() {
            self.flush_chunk()?;
        }
        let mut level = 0;
        loop {
            let entries = std::mem::take(&mut self.levels[level]);
            if level + 1 == self.levels.len() && entries.len() == 1 {
                return Ok(entries[0].cid);
            }
            let node = Self::node_over(&entries)?;
            if level + 1 == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(node);
            level += 1;
        }
    }
}

/// The UnixFS CID of everything `content` yields.
pub fn cid_of(mut content: impl Read) -> Result<Cid> {
    let mut hasher = UnixfsHasher::new();
    let mut buffer = vec![0u8; CHUNK_SIZE];
    loop {
        let read = content.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read])?;
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_string(bytes: &[u8]) -> String {
        cid_of(bytes).unwrap().to_string()
    }

    #[test]
    fn small_content_is_one_raw_leaf() {
        // `printf 'hello world' | ipfs add --cid-version=1 -Q`
        assert_eq!(
            cid_string(b"hello world"),
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        // The empty file: the raw block of no bytes.
        assert_eq!(
            cid_string(b""),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn exactly_one_chunk_is_still_a_leaf_and_one_more_byte_is_a_node() {
        let chunk = vec![7u8; CHUNK_SIZE];
        assert_eq!(cid_of(&chunk[..]).unwrap().codec(), RAW);
        let mut more = chunk.clone();
        more.push(7);
        assert_eq!(cid_of(&more[..]).unwrap().codec(), DAG_PB);
    }

    #[test]
    fn result_does_not_depend_on_how_content_is_fed() {
        let content: Vec<u8> = (0..(3 * CHUNK_SIZE + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let whole = cid_of(&content[..]).unwrap();
        let mut hasher = UnixfsHasher::new();
        for piece in content.chunks(1000) {
            hasher.update(piece).unwrap();
        }
        assert_eq!(hasher.finish().unwrap(), whole);
    }

    #[test]
    fn varints_are_protobuf_varints() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_varint(&mut out, 262_144);
        assert_eq!(out, [0x80, 0x80, 0x10]);
    }
}
