//! The CID `ipfs add --cid-version=1` gives a file, computed without IPFS.
//!
//! Kubo's defaults for CIDv1: the content is cut into 256 KiB chunks, each chunk is a `raw`
//! block (raw leaves), and the leaves are gathered into a balanced DAG of `dag-pb` nodes of at
//! most 174 links each, every node carrying UnixFS `File` data (total size and the size of
//! each child). Content of at most one chunk is its single raw leaf. All hashes are sha2-256.
//!
//! [`UnixfsHasher`] computes the root CID in one streaming pass, keeping one partial node per
//! level of the DAG, so a file of any size costs a few kilobytes of memory. The same builder,
//! fed leaves made elsewhere ([`UnixfsHasher::push_leaf`]) and asked to keep what it makes,
//! gives the blocks of a snapshot's DAG; [`directory_node`] and [`decode_node`] are the rest of
//! dag-pb the snapshots need.

use anyhow::{bail, ensure, Context, Result};
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

/// One IPFS block: its bytes and the CID naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// CIDv1 of `data` (sha2-256) under its codec.
    pub cid: Cid,
    /// The block's bytes.
    pub data: Vec<u8>,
}

impl Block {
    /// The block holding `data` under `codec` (`RAW` or `DAG_PB`).
    pub fn new(codec: u64, data: Vec<u8>) -> Result<Self> {
        Ok(Self {
            cid: block_cid(codec, &data)?,
            data,
        })
    }

    /// The block `cid` names, from bytes fetched from anywhere: refused unless they hash to
    /// `cid` (sha2-256 only).
    pub fn verified(cid: &Cid, data: Vec<u8>) -> Result<Self> {
        ensure!(
            cid.hash().code() == SHA2_256,
            "{cid}: only sha2-256 blocks are accepted"
        );
        let actual = block_cid(cid.codec(), &data)?;
        ensure!(
            actual.hash() == cid.hash(),
            "block {cid} does not match its CID"
        );
        Ok(Self { cid: *cid, data })
    }
}

/// A block linked from a node: its CID, its cumulative size (`Tsize`: its bytes plus those
/// of everything below it) and the file bytes below it.
#[derive(Clone)]
pub struct Child {
    /// The block's CID.
    pub cid: Cid,
    /// Its bytes plus those of every block below it.
    pub tsize: u64,
    /// The file bytes below it (for a raw leaf: its length).
    pub file_size: u64,
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

/// Appends a dag-pb `PBLink` (field 2 of the node): `Hash`, `Name`, `Tsize`, in that order.
fn put_link(node: &mut Vec<u8>, cid: &Cid, name: &[u8], tsize: u64) {
    let mut link = Vec::new();
    put_bytes(&mut link, 0x0a, &cid.to_bytes());
    put_bytes(&mut link, 0x12, name);
    link.push(0x18);
    put_varint(&mut link, tsize);
    put_bytes(node, 0x12, &link);
}

/// The dag-pb block of a UnixFS `File` node over `children`, as a child of the node above.
pub fn file_node_block(children: &[Child]) -> Result<(Child, Block)> {
    let block = Block::new(DAG_PB, file_node(children))?;
    let node = Child {
        cid: block.cid,
        tsize: block.data.len() as u64 + children.iter().map(|child| child.tsize).sum::<u64>(),
        file_size: children.iter().map(|child| child.file_size).sum(),
    };
    Ok((node, block))
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
        put_link(&mut node, &child.cid, b"", child.tsize);
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
    /// The blocks made so far, when asked to keep them ([`UnixfsHasher::keeping_blocks`]).
    kept: Option<Vec<Block>>,
}

impl UnixfsHasher {
    /// A hasher with no content yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that also keeps every block it makes, for [`UnixfsHasher::finish_with_blocks`].
    pub fn keeping_blocks() -> Self {
        Self {
            kept: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Adds a leaf made elsewhere (already stored), after everything added so far. Do not mix
    /// with [`UnixfsHasher::update`] in one file.
    pub fn push_leaf(&mut self, leaf: Child) -> Result<()> {
        self.push(0, leaf)
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
        let bytes = std::mem::take(&mut self.chunk);
        let leaf = Child {
            cid: block_cid(RAW, &bytes)?,
            tsize: bytes.len() as u64,
            file_size: bytes.len() as u64,
        };
        if let Some(kept) = &mut self.kept {
            kept.push(Block {
                cid: leaf.cid,
                data: bytes,
            });
        } else {
            // Reuse the allocation for the next chunk.
            self.chunk = bytes;
            self.chunk.clear();
        }
        self.push(0, leaf)
    }

    /// Adds `child` to `level`, gathering that level into a node first if it is full.
    fn push(&mut self, level: usize, child: Child) -> Result<()> {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            let node = self.node_over(&full)?;
            self.push(level + 1, node)?;
        }
        self.levels[level].push(child);
        Ok(())
    }

    /// The node gathering `children`, as a child of the level above.
    fn node_over(&mut self, children: &[Child]) -> Result<Child> {
        let (node, block) = file_node_block(children)?;
        if let Some(kept) = &mut self.kept {
            kept.push(block);
        }
        Ok(node)
    }

    /// The root CID of everything added.
    pub fn finish(self) -> Result<Cid> {
        Ok(self.finish_with_blocks()?.0.cid)
    }

    /// The root of everything added (CID, cumulative size, file size) and the blocks made
    /// (none unless built with [`UnixfsHasher::keeping_blocks`]), leaves before the nodes
    /// over them.
    pub fn finish_with_blocks(mut self) -> Result<(Child, Vec<Block>)> {
        // The last chunk, even empty: an empty file is one empty raw leaf.
        if !self.chunk.is_empty() || self.levels.is_empty() {
            self.flush_chunk()?;
        }
        let mut level = 0;
        loop {
            let mut entries = std::mem::take(&mut self.levels[level]);
            if level + 1 == self.levels.len() && entries.len() == 1 {
                let root = entries.remove(0);
                return Ok((root, self.kept.unwrap_or_default()));
            }
            let node = self.node_over(&entries)?;
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

/// A named link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The linked block.
    pub cid: Cid,
    /// The link's name (empty in file nodes).
    pub name: String,
    /// Cumulative size of the linked block and everything below it.
    pub tsize: u64,
}

/// The dag-pb block of a UnixFS directory holding `links` (sorted by name, as dag-pb
/// requires): what `ipfs add -r` makes of a folder, with `Data` = UnixFS `Directory`.
pub fn directory_node(mut links: Vec<Link>) -> Result<Block> {
    links.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut node = Vec::new();
    for link in &links {
        put_link(&mut node, &link.cid, link.name.as_bytes(), link.tsize);
    }
    put_bytes(&mut node, 0x0a, &[0x08, 0x01]);
    Block::new(DAG_PB, node)
}

/// A decoded dag-pb node: its links in order and its `Data` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The links, in the order encoded.
    pub links: Vec<Link>,
    /// The `Data` field (UnixFS data in UnixFS nodes).
    pub data: Vec<u8>,
}

/// Reads a protobuf varint from the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().context("truncated varint")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint longer than 64 bits")
}

/// Reads a length-delimited protobuf field's bytes from the front of `bytes`.
fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = usize::try_from(take_varint(bytes)?)?;
    ensure!(len <= bytes.len(), "field longer than its node");
    let (field, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(field)
}

/// Decodes a dag-pb block (fetched from anywhere, so every length is checked).
pub fn decode_node(mut bytes: &[u8]) -> Result<Node> {
    let mut node = Node {
        links: Vec::new(),
        data: Vec::new(),
    };
    while !bytes.is_empty() {
        match take_varint(&mut bytes)? {
            0x0a => node.data = take_bytes(&mut bytes)?.to_vec(),
            0x12 => {
                let mut link_bytes = take_bytes(&mut bytes)?;
                let mut link = (None, String::new(), 0);
                while !link_bytes.is_empty() {
                    match take_varint(&mut link_bytes)? {
                        0x0a => link.0 = Some(Cid::try_from(take_bytes(&mut link_bytes)?)?),
                        0x12 => {
                            link.1 = String::from_utf8(take_bytes(&mut link_bytes)?.to_vec())
                                .context("link name is not UTF-8")?
                        }
                        0x18 => link.2 = take_varint(&mut link_bytes)?,
                        tag => bail!("unexpected field {tag:#x} in a dag-pb link"),
                    }
                }
                node.links.push(Link {
                    cid: link.0.context("dag-pb link without a hash")?,
                    name: link.1,
                    tsize: link.2,
                });
            }
            tag => bail!("unexpected field {tag:#x} in a dag-pb node"),
        }
    }
    Ok(node)
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
