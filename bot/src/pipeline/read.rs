//! Reading a snapshot's blocks from the store: each verified against its CID, UnixFS files
//! walked within bounds, chunks decrypted and measured.

use super::crypto::ChunkOpener;
use super::{ChunkRef, MAX_MANIFEST_BYTES};
use crate::compact_map::CompactSet;
use crate::error::{ensure_valid, Error, Result};
use crate::store::ContentStore;
use crate::unixfs::{self, Block, DAG_PB, RAW};
use cid::Cid;

/// Most leaves a snapshot's chunk list may have: its manifest names each of its chunks at
/// least once, by a CID of [`CID_TEXT_LEN`] characters, in at most [`MAX_MANIFEST_BYTES`]
/// (9.1 M; a 1 TiB folder of 256 KiB chunks has 4 M).
const MAX_LIST_LEAVES: u64 = MAX_MANIFEST_BYTES / CID_TEXT_LEN;

/// Characters of a [`BlockKey`]'s CID as text: the multibase prefix `b`, then base32 without
/// padding, 5 bits a character (59).
const CID_TEXT_LEN: u64 = 1 + (8 * std::mem::size_of::<BlockKey>() as u64).div_ceil(5);

/// Deepest UnixFS file DAG a restore follows (174^6 leaves is far beyond any manifest).
const MAX_FILE_DEPTH: usize = 6;

/// A block's CID in bytes, as every block of a snapshot has it: version 1, a one-byte codec, a
/// sha2-256 digest.
pub(super) type BlockKey = [u8; 36];

/// The key of `cid`; [`Error::InvalidSnapshot`] for a CID no snapshot's block has.
pub(super) fn block_key(cid: &Cid) -> Result<BlockKey> {
    cid.to_bytes()
        .try_into()
        .map_err(|_| Error::invalid(format!("{cid} is not the CID of a snapshot's block")))
}

/// Fetches the block `cid` and checks it against its CID.
pub(super) async fn fetch_verified(store: &ContentStore, cid: &Cid) -> Result<Block> {
    let bytes = store.get_block(cid).await?;
    Block::verified(cid, bytes).map_err(|error| Error::invalid(format!("{error:#}")))
}

/// Decodes a dag-pb block fetched from the store.
pub(super) fn decode(block: &Block) -> Result<unixfs::Node> {
    ensure_valid!(
        block.cid.codec() == DAG_PB,
        "{} is not a dag-pb node",
        block.cid
    );
    unixfs::decode_node(&block.data)
        .map_err(|error| Error::invalid(format!("{}: {error:#}", block.cid)))
}

/// The leaves of the UnixFS file `cid` and (when `read`) its content, verifying every block
/// fetched; at most `limit` bytes and [`MAX_LIST_LEAVES`] leaves. A block linked twice is
/// refused (the bot's files never repeat one), so that a small hostile DAG cannot make the
/// walk exponential.
pub(super) async fn walk_file(
    store: &ContentStore,
    cid: &Cid,
    read: bool,
    limit: u64,
) -> Result<(CompactSet<BlockKey>, Vec<u8>)> {
    let mut leaves = 0u64;
    let mut content = Vec::new();
    // Every block visited, leaves and nodes: one set, not two, on a chunk list of millions.
    let mut seen = CompactSet::default();
    // Depth-first, in link order: a stack of (cid, depth), last link pushed first.
    let mut pending = vec![(*cid, 0usize)];
    while let Some((cid, depth)) = pending.pop() {
        ensure_valid!(depth <= MAX_FILE_DEPTH, "file DAG too deep");
        ensure_valid!(
            seen.insert(block_key(&cid)?, ()),
            "the DAG links {cid} twice"
        );
        ensure_valid!(leaves < MAX_LIST_LEAVES, "the DAG has too many leaves");
        if cid.codec() == RAW {
            leaves += 1;
            if read {
                let block = fetch_verified(store, &cid).await?;
                ensure_valid!(
                    content.len() as u64 + block.data.len() as u64 <= limit,
                    "file larger than allowed"
                );
                content.extend_from_slice(&block.data);
            }
            continue;
        }
        let node = decode(&fetch_verified(store, &cid).await?)?;
        pending.extend(node.links.iter().rev().map(|link| (link.cid, depth + 1)));
    }
    // The leaves: the blocks whose codec (the key's second byte) is raw.
    seen.retain(|key, ()| u64::from(key[1]) == RAW);
    Ok((seen, content))
}

/// Fetches the block of the chunk a manifest lists, verified against its CID.
pub(super) async fn fetch_listed_chunk(store: &ContentStore, chunk: &ChunkRef) -> Result<Vec<u8>> {
    let cid = Cid::try_from(chunk.cid.as_str())
        .map_err(|_| Error::invalid(format!("bad chunk CID {}", chunk.cid)))?;
    Ok(fetch_verified(store, &cid).await?.data)
}

/// Fetches, verifies and decrypts the chunk a manifest lists, checking its length.
pub(super) async fn open_listed_chunk(
    store: &ContentStore,
    opener: &mut ChunkOpener,
    chunk: &ChunkRef,
) -> Result<Vec<u8>> {
    open_chunk_of(opener, &fetch_listed_chunk(store, chunk).await?, chunk)
}

/// Decrypts a verified block of the chunk `chunk` lists, checking its block's and its
/// plaintext's lengths.
pub(super) fn open_chunk_of(
    opener: &mut ChunkOpener,
    block: &[u8],
    chunk: &ChunkRef,
) -> Result<Vec<u8>> {
    ensure_valid!(
        block.len() as u64 == chunk.block_len(),
        "chunk {}'s block has the wrong length",
        chunk.cid
    );
    opener
        .open(block, chunk.framing(), chunk.len)
        .map_err(|error| Error::invalid(format!("chunk {}: {error}", chunk.cid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_text_len_is_the_length_of_a_block_cid_as_text() {
        for codec in [RAW, DAG_PB] {
            let block = Block::new(codec, b"a block".to_vec()).unwrap();
            assert_eq!(block_key(&block.cid).unwrap().len(), 36);
            assert_eq!(block.cid.to_string().len() as u64, CID_TEXT_LEN);
        }
    }
}
