//! The backup's secret and what derives from it: the chunker's cut points, each chunk's key
//! and nonce, and the sealed block of a chunk, compressed when that makes it smaller.

use super::chunker::Chunker;
use super::MAX_CHUNK;
use crate::error::{ensure_valid, Error};
use crate::unixfs::{Block, RAW};
use anyhow::{anyhow, Result};
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes before a chunk's ciphertext in its block.
const NONCE_LEN: usize = 24;

/// Bytes of the authentication tag after the ciphertext.
const TAG_LEN: usize = 16;

/// Bytes a chunk's block of manifest format 4 and before adds to its plaintext: nonce and tag
/// (its plaintext stored as it is, with no kind byte).
pub(super) const UNFRAMED_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;

/// The zstd level chunks are compressed at (restic's default, "auto", is zstd's level 3 too).
const ZSTD_LEVEL: i32 = 3;

/// How a chunk's block holds its plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkFraming {
    /// Manifest format 4 and before: the ciphertext is the plaintext's.
    Unframed,
    /// Format 5: the ciphertext is a kind byte ([`Stored`]) and the chunk as stored.
    Framed,
}

/// What follows a framed chunk's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stored {
    /// The plaintext itself: it did not shrink compressed.
    Raw = 0,
    /// The plaintext as one zstd frame.
    Zstd = 1,
}

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

    /// A chunker cutting where this backup's secret says (FastCDC's gear table seeded from
    /// it): the sizes of stored blocks, in order, tell nothing of where a known file's
    /// content-defined boundaries fall.
    pub(super) fn chunker(&self, min: u32, avg: u32, max: u32) -> Chunker {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&hmac(&self.0, &[b"chunker seed"])[..8]);
        Chunker::new(u64::from_le_bytes(seed), min, avg, max)
    }

    /// The sealer of this backup's chunks, made once for all the chunks a scan seals.
    pub(super) fn sealer(&self) -> Result<ChunkSealer> {
        Ok(ChunkSealer {
            cipher: self.cipher(),
            nonce_key: self.nonce_key(),
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
        })
    }

    /// The opener of this backup's chunks, made once for all the chunks a restore, a check
    /// or a manifest's reading opens.
    pub(super) fn opener(&self) -> ChunkOpener {
        ChunkOpener {
            cipher: self.cipher(),
            decompressor: None,
        }
    }

    /// The AEAD of chunks.
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&hmac(&self.0, &[b"chunk key"]).into())
    }

    /// The key of chunks' nonces.
    fn nonce_key(&self) -> [u8; 32] {
        hmac(&self.0, &[b"chunk nonce"])
    }

    /// A chunk's block as manifest format 4 and before sealed it: the nonce from the
    /// plaintext, no kind byte (what the file caches of earlier releases list).
    #[cfg(test)]
    pub(super) fn seal_unframed(&self, plaintext: &[u8]) -> Block {
        let nonce = nonce(&self.nonce_key(), plaintext);
        let mut data = nonce.to_vec();
        data.extend(
            self.cipher()
                .encrypt(XNonce::from_slice(&nonce), plaintext)
                .unwrap(),
        );
        Block::new(RAW, data).unwrap()
    }

    /// A short public name of the secret (an HMAC of it), telling two secrets apart without
    /// revealing either.
    pub fn fingerprint(&self) -> String {
        hex::encode(&hmac(&self.0, &[b"fingerprint"])[..16])
    }

    fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).map_err(|_| anyhow!("manifest secret is not hex"))?;
        Ok(Self(
            bytes
                .try_into()
                .map_err(|_| anyhow!("manifest secret is not 32 bytes"))?,
        ))
    }
}

/// The nonce of a chunk whose encrypted bytes are `message`: an HMAC of exactly what it
/// encrypts, so that one nonce never encrypts two different messages (not even the same
/// plaintext compressed differently by another zstd version).
fn nonce(key: &[u8; 32], message: &[u8]) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&hmac(key, &[message])[..NONCE_LEN]);
    nonce
}

/// Seals the chunks of one backup ([`BackupSecret::sealer`]): its key and nonce key derived
/// once, and one zstd context kept from chunk to chunk (a context made per chunk was a sixth
/// of the time a snapshot of small files took).
pub struct ChunkSealer {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
    compressor: zstd::bulk::Compressor<'static>,
}

impl ChunkSealer {
    /// The raw block of the chunk `plaintext` ([`ChunkFraming::Framed`]): its nonce, then
    /// the ciphertext of a kind byte and the chunk, zstd-compressed when that is smaller, and
    /// the tag.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Block> {
        let compressed = self.compressor.compress(plaintext)?;
        let (kind, stored) = if compressed.len() < plaintext.len() {
            (Stored::Zstd, &compressed[..])
        } else {
            (Stored::Raw, plaintext)
        };
        let mut data = Vec::with_capacity(NONCE_LEN + 1 + stored.len() + TAG_LEN);
        data.extend_from_slice(&[0; NONCE_LEN]);
        data.push(kind as u8);
        data.extend_from_slice(stored);
        let nonce = nonce(&self.nonce_key, &data[NONCE_LEN..]);
        data[..NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut data[NONCE_LEN..])
            .map_err(|_| anyhow!("chunk encryption failed"))?;
        data.extend_from_slice(&tag);
        Block::new(RAW, data)
    }
}

/// Opens the chunks of one backup ([`BackupSecret::opener`]): its key derived once, and one
/// zstd context, made at the first compressed chunk and kept (the twin of [`ChunkSealer`]).
pub struct ChunkOpener {
    cipher: XChaCha20Poly1305,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl ChunkOpener {
    /// The plaintext of a chunk's block sealed with this backup's secret, which must be `len`
    /// bytes long: the tag authenticates it under the backup's key (the nonce need not be
    /// checked again: only a holder of the key can make a block that opens); a compressed
    /// chunk is never inflated past `len`, which may be at most [`MAX_CHUNK`].
    pub fn open(
        &mut self,
        block: &[u8],
        framing: ChunkFraming,
        len: u32,
    ) -> crate::error::Result<Vec<u8>> {
        ensure_valid!(block.len() >= NONCE_LEN, "chunk block too short");
        ensure_valid!(len <= MAX_CHUNK, "chunk longer than allowed");
        let (nonce, ciphertext) = block.split_at(NONCE_LEN);
        let mut message = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| Error::invalid("chunk fails authentication"))?;
        let plaintext = match framing {
            ChunkFraming::Unframed => message,
            ChunkFraming::Framed => match message.first() {
                Some(&kind) if kind == Stored::Raw as u8 => {
                    message.remove(0);
                    message
                }
                Some(&kind) if kind == Stored::Zstd as u8 => {
                    let decompressor = match &mut self.decompressor {
                        Some(decompressor) => decompressor,
                        none => none.insert(zstd::bulk::Decompressor::new()?),
                    };
                    decompressor
                        .decompress(&message[1..], len as usize)
                        .map_err(|_| Error::invalid("compressed chunk does not decompress"))?
                }
                _ => return Err(Error::invalid("chunk stored in an unknown way")),
            },
        };
        ensure_valid!(
            plaintext.len() == len as usize,
            "chunk has the wrong length"
        );
        Ok(plaintext)
    }
}

/// In a manifest, the secret is its 64 hex digits.
impl serde::Serialize for BackupSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for BackupSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = b"written after owner-a was removed";
        let block = new.sealer().unwrap().seal(text).unwrap();
        let open = |secret: &BackupSecret| {
            secret
                .opener()
                .open(&block.data, ChunkFraming::Framed, text.len() as u32)
        };
        assert!(
            open(&old).is_err(),
            "the removed recipient's secret opens nothing new"
        );
        assert_eq!(open(&new).unwrap(), text);
        assert!(old.fingerprint() != new.fingerprint());
    }

    #[test]
    fn blocks_fit_ipfs_and_chunks_authenticate() {
        let secret = BackupSecret([9; 32]);
        // The largest chunk that does not compress: stored raw, with its kind byte.
        let mut incompressible = vec![0u8; MAX_CHUNK as usize];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for byte in &mut incompressible {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let block = secret.sealer().unwrap().seal(&incompressible).unwrap();
        assert_eq!(
            block.data.len(),
            MAX_CHUNK as usize + NONCE_LEN + 1 + TAG_LEN
        );
        assert!(block.data.len() <= 1024 * 1024);
        let open = |secret: &BackupSecret, data: &[u8]| {
            secret.opener().open(data, ChunkFraming::Framed, MAX_CHUNK)
        };
        assert_eq!(open(&secret, &block.data).unwrap(), incompressible);
        assert!(open(&BackupSecret([8; 32]), &block.data).is_err());
        // A chunk that compresses is stored compressed, and opens to the same bytes.
        let repetitive = vec![1u8; MAX_CHUNK as usize];
        let compressed = secret.sealer().unwrap().seal(&repetitive).unwrap();
        assert!(
            compressed.data.len() < 1024,
            "{} bytes",
            compressed.data.len()
        );
        assert_eq!(open(&secret, &compressed.data).unwrap(), repetitive);
        // One sealer's context, kept from chunk to chunk, seals as a new one does.
        let mut sealer = secret.sealer().unwrap();
        let first = sealer.seal(b"same").unwrap();
        sealer.seal(&repetitive).unwrap();
        assert_eq!(sealer.seal(b"same").unwrap(), first);
        assert_eq!(secret.sealer().unwrap().seal(b"same").unwrap(), first);
        // One opener, kept from chunk to chunk, opens compressed and raw chunks alike.
        let mut opener = secret.opener();
        for (block, plaintext) in [
            (&compressed, &repetitive),
            (&block, &incompressible),
            (&compressed, &repetitive),
        ] {
            let opened = opener.open(&block.data, ChunkFraming::Framed, MAX_CHUNK);
            assert_eq!(&opened.unwrap(), plaintext);
        }
    }

    #[test]
    fn a_chunk_opens_only_at_its_length_and_framing() {
        let secret = BackupSecret([5; 32]);
        let text = vec![7u8; 100_000];
        let block = secret.sealer().unwrap().seal(&text).unwrap();
        let mut opener = secret.opener();
        for wrong in [99_999, 100_001, 0] {
            assert!(
                opener
                    .open(&block.data, ChunkFraming::Framed, wrong)
                    .is_err(),
                "a manifest claiming {wrong} bytes is refused"
            );
        }
        // Read as a chunk of format 4, the kind byte and the compressed bytes are not the
        // plaintext: refused by its length.
        assert!(opener
            .open(&block.data, ChunkFraming::Unframed, 100_000)
            .is_err());
        assert!(
            opener
                .open(&block.data, ChunkFraming::Framed, MAX_CHUNK + 1)
                .is_err(),
            "no chunk is inflated past the largest a scan makes"
        );
    }

    #[test]
    fn chunks_of_format_4_still_open() {
        let secret = BackupSecret([4; 32]);
        let plaintext = b"sealed by the previous release";
        let block = secret.seal_unframed(plaintext);
        assert_eq!(
            block.data.len() as u64,
            plaintext.len() as u64 + UNFRAMED_OVERHEAD
        );
        assert_eq!(
            secret
                .opener()
                .open(&block.data, ChunkFraming::Unframed, plaintext.len() as u32)
                .unwrap(),
            plaintext
        );
    }
}
