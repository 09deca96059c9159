//! The backup's secret and what derives from it: the chunker's cut points, each chunk's key
//! and nonce, and the sealed block of a chunk.

use crate::invalid::{invalid, Invalid};
use crate::unixfs::{Block, RAW};
use anyhow::{anyhow, ensure, Result};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read;

/// Bytes before a chunk's ciphertext in its block.
const NONCE_LEN: usize = 24;

/// Bytes a chunk's block adds to its plaintext: nonce and tag.
pub(super) const BLOCK_OVERHEAD: u64 = NONCE_LEN as u64 + 16;

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
    pub(super) fn chunker<R: Read>(
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

    fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).map_err(|_| invalid("manifest secret is not hex"))?;
        Ok(Self(
            bytes
                .try_into()
                .map_err(|_| invalid("manifest secret is not 32 bytes"))?,
        ))
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
    use crate::pipeline::MAX_CHUNK;

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
