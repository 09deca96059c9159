//! Encryption of snapshot manifests with age (X25519 recipients, authenticated, streaming),
//! and the bot's identities.
//!
//! The bot holds one age identity per served node, created on first use in
//! `data_dir/keys/` (mode 0600) in the format of `age-keygen`, so `age -d -i FILE` can use
//! it too, and never created again while snapshots sealed with it are kept (see
//! [`crate::bot`]). Every manifest is sealed to that identity's recipient and, when the owner
//! registered one on chain, to the owner's recipient as well. Secrets are never printed.

use crate::config::ServedNode;
use age::secrecy::ExposeSecret;
use anyhow::{anyhow, Context, Result};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The bot's identities, one file per served node.
pub struct Keyring {
    dir: PathBuf,
}

impl Keyring {
    /// The keyring in `dir` (created if missing, mode 0700).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir })
    }

    /// Where the identity of `node` is kept.
    pub fn path_of(&self, node: &ServedNode) -> PathBuf {
        self.dir.join(format!("{}.age-identity", node.file_stem()))
    }

    /// The identity of `node`, if its file is there.
    pub fn identity(&self, node: &ServedNode) -> Result<Option<age::x25519::Identity>> {
        let path = self.path_of(node);
        match fs::symlink_metadata(&path) {
            Ok(_) => read_identity(&path).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Creates the identity of `node`, which must have none (the keyring's folder must be
    /// there: a folder that vanished is not made again behind the operator's back).
    pub fn create_identity(&self, node: &ServedNode) -> Result<age::x25519::Identity> {
        let path = self.path_of(node);
        let identity = age::x25519::Identity::generate();
        write_identity(
            &path,
            &identity,
            &format!(
                "backup-bot identity of node {:?} of {}",
                node.node_id, node.owner
            ),
        )?;
        fs::File::open(&self.dir)?.sync_all()?;
        tracing::info!(
            node = %node.node_id,
            key = %path.display(),
            "created the node's age identity: keep a copy; without it, and without an owner \
             recipient or an extra recipient in the configuration, this node's snapshots cannot \
             be read"
        );
        Ok(identity)
    }
}

/// Writes `identity` to a new file at `path` (mode 0600) in `age-keygen`'s format, with
/// `comment` and its public key as comment lines.
pub fn write_identity(path: &Path, identity: &age::x25519::Identity, comment: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(
        file,
        "# {comment}\n# public key: {}\n{}",
        identity.to_public(),
        identity.to_string().expose_secret()
    )?;
    file.sync_all()?;
    Ok(())
}

/// Reads an identity file in `age-keygen`'s format, refusing files others can read.
pub fn read_identity(path: &Path) -> Result<age::x25519::Identity> {
    let text = crate::config::read_secret_file(path)?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| anyhow!("{} holds no identity", path.display()))?;
    age::x25519::Identity::from_str(line)
        .map_err(|_| anyhow!("{} holds no valid age identity", path.display()))
}

/// Parses an age recipient (`age1...`).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(text.trim())
        .map_err(|error| anyhow!("{text:?} is not an age recipient: {error}"))
}

/// Encrypts everything written to the returned writer to `recipients`, into `output`;
/// call `finish` on it at the end.
pub fn encrypt_to<W: Write>(
    recipients: &[age::x25519::Recipient],
    output: W,
) -> Result<age::stream::StreamWriter<W>> {
    let encryptor = age::Encryptor::with_recipients(
        recipients
            .iter()
            .map(|recipient| recipient as &dyn age::Recipient),
    )?;
    Ok(encryptor.wrap_output(output)?)
}

/// Decrypts `input` with `identity`. Fails at once for a wrong identity or a damaged
/// header; the returned reader fails on any tampered chunk.
pub fn decrypt_with<R: BufRead>(identity: &age::x25519::Identity, input: R) -> Result<impl Read> {
    let decryptor = age::Decryptor::new_buffered(input)?;
    Ok(decryptor.decrypt(std::iter::once(identity as &dyn age::Identity))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use subxt_signer::sr25519::dev;

    fn node(node_id: &str) -> ServedNode {
        ServedNode {
            node_id: node_id.to_string(),
            owner: dev::bob().public_key().to_account_id(),
            source: PathBuf::from("/unused"),
            restore_to: PathBuf::from("/unused"),
        }
    }

    #[test]
    fn identity_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::open(dir.path().join("keys")).unwrap();
        let node = node("../odd/node id");
        assert!(keyring.identity(&node).unwrap().is_none());
        let first = keyring.create_identity(&node).unwrap();
        let path = keyring.path_of(&node);
        assert_eq!(path.parent().unwrap(), dir.path().join("keys"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = keyring.identity(&node).unwrap().unwrap();
        assert_eq!(first.to_public().to_string(), again.to_public().to_string());
        assert!(keyring.create_identity(&node).is_err(), "never overwritten");
        let other = keyring.create_identity(&self::node("other")).unwrap();
        assert_ne!(first.to_public().to_string(), other.to_public().to_string());
    }

    #[test]
    fn encryption_round_trip_and_wrong_identity() {
        let alice = age::x25519::Identity::generate();
        let bob = age::x25519::Identity::generate();
        let mut ciphertext = Vec::new();
        let mut writer = encrypt_to(&[alice.to_public()], &mut ciphertext).unwrap();
        writer.write_all(b"secret manifest").unwrap();
        writer.finish().unwrap();
        assert!(!ciphertext
            .windows(b"secret".len())
            .any(|window| window == b"secret"));

        let mut plaintext = Vec::new();
        decrypt_with(&alice, &ciphertext[..])
            .unwrap()
            .read_to_end(&mut plaintext)
            .unwrap();
        assert_eq!(plaintext, b"secret manifest");
        assert!(decrypt_with(&bob, &ciphertext[..]).is_err());
    }

    #[test]
    fn both_recipients_can_decrypt() {
        let bot = age::x25519::Identity::generate();
        let owner = age::x25519::Identity::generate();
        let mut ciphertext = Vec::new();
        let mut writer =
            encrypt_to(&[bot.to_public(), owner.to_public()], &mut ciphertext).unwrap();
        writer.write_all(b"shared").unwrap();
        writer.finish().unwrap();
        for identity in [&bot, &owner] {
            let mut plaintext = Vec::new();
            decrypt_with(identity, &ciphertext[..])
                .unwrap()
                .read_to_end(&mut plaintext)
                .unwrap();
            assert_eq!(plaintext, b"shared");
        }
    }

    #[test]
    fn recipients_are_validated() {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        assert!(parse_recipient(&recipient).is_ok());
        assert!(parse_recipient("age1notarecipient").is_err());
        assert!(parse_recipient("").is_err());
    }
}
