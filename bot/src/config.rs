//! The configuration file (TOML) and the nodes it serves. Flags and environment variables
//! win over it; the command line merges the three (`src/commands/settings.rs`).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use subxt::utils::AccountId32;

/// One node the bot backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedNode {
    /// The node's id in the registry.
    pub node_id: String,
    /// The account whose data it is.
    pub owner: AccountId32,
    /// The directory whose contents are the node's data.
    pub source: PathBuf,
    /// Where restores go: the latest restored tree replaces this folder when complete.
    pub restore_to: PathBuf,
}

impl ServedNode {
    /// The stem of the bot's files about this node: owner and hex-encoded node id, so that any
    /// node id makes a safe file name.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.owner, hex::encode(self.node_id.as_bytes()))
    }
}

/// The configuration file's contents. Relative paths are relative to the file's folder.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Chain RPC endpoint.
    pub url: Option<String>,
    /// Address of the registry contract (SS58).
    pub contract: Option<String>,
    /// The contract's metadata: `backup_registry.json` or the `.contract` bundle.
    pub metadata: Option<PathBuf>,
    /// File holding the authority's secret URI (for example `//Alice` on a dev chain).
    pub suri_file: Option<PathBuf>,
    /// The bot's folder: its identities (`keys/`), its state between passes (file caches,
    /// pins, submitted roots; see [`crate::state`]), its lock and the embedded store.
    pub data_dir: Option<PathBuf>,
    /// Kubo RPC API address; the embedded store is used when absent.
    pub kubo_api: Option<String>,
    /// IPFS proxy API of the IPFS Cluster peer in front of `kubo_api`: snapshots are pinned
    /// in the cluster as well, which replicates them.
    pub cluster_proxy_api: Option<String>,
    /// Seconds between passes.
    pub interval_secs: Option<u64>,
    /// Blocks after which the pins of a node taken out of the configuration are released,
    /// whether or not the registry still keeps its snapshots (default
    /// [`RELEASE_UNSERVED_AFTER_BLOCKS`](crate::bot::RELEASE_UNSERVED_AFTER_BLOCKS)).
    pub release_unserved_after_blocks: Option<u32>,
    /// Age recipients every snapshot's manifest is also sealed to, beside the node's own key
    /// and its owner's: an offline recovery key, so that losing the bot's disk loses no data.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The nodes this bot backs up.
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
}

/// One `[[nodes]]` table of the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id in the registry.
    pub node_id: String,
    /// The account whose data it is (SS58).
    pub owner: String,
    /// The directory whose contents are the node's data.
    pub source: PathBuf,
    /// Where restores go: the restored tree replaces this folder when complete.
    pub restore_to: PathBuf,
}

impl FileConfig {
    /// Reads the file at `path`, making its relative paths relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for path in [
            &mut config.metadata,
            &mut config.suri_file,
            &mut config.data_dir,
        ]
        .into_iter()
        .flatten()
        {
            rebase(path);
        }
        for node in &mut config.nodes {
            rebase(&mut node.source);
            rebase(&mut node.restore_to);
        }
        Ok(config)
    }

    /// The served nodes, with their owners parsed.
    pub fn served_nodes(&self) -> Result<Vec<ServedNode>> {
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                Ok(ServedNode {
                    node_id: node.node_id.clone(),
                    owner: parse_account(&node.owner)
                        .with_context(|| format!("owner of node {}", node.node_id))?,
                    source: node.source.clone(),
                    restore_to: node.restore_to.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for (index, node) in nodes.iter().enumerate() {
            if nodes[..index]
                .iter()
                .any(|other| other.node_id == node.node_id && other.owner == node.owner)
            {
                bail!("node {} of {} is listed twice", node.node_id, node.owner);
            }
        }
        Ok(nodes)
    }
}

/// Parses an SS58 account address.
pub fn parse_account(text: &str) -> Result<AccountId32> {
    text.trim()
        .parse()
        .map_err(|error| anyhow!("{text:?} is not an SS58 account address: {error:?}"))
}

/// Reads a file holding a secret, refusing it when its mode lets others read it.
pub fn read_secret_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(std::fs::read_to_string(path)?)
}

/// Reads a secret URI from a file (its first line), refusing files others can read.
pub fn read_suri_file(path: &Path) -> Result<String> {
    let text = read_secret_file(path)?;
    let suri = text.lines().next().unwrap_or("").trim().to_string();
    if suri.is_empty() {
        bail!("{} holds no secret URI", path.display());
    }
    Ok(suri)
}

/// `url` without the user name and password it may carry, for logs and errors.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn file_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(
            &path,
            format!(
                "contract = \"{ALICE}\"\nmetadata = \"ink/registry.json\"\n\n\
                 [[nodes]]\nnode_id = \"node-1\"\nowner = \"{ALICE}\"\n\
                 source = \"data\"\nrestore_to = \"/srv/restores\"\n"
            ),
        )
        .unwrap();
        let config = FileConfig::load(&path).unwrap();
        assert_eq!(config.metadata, Some(dir.path().join("ink/registry.json")));
        let nodes = config.served_nodes().unwrap();
        assert_eq!(nodes[0].source, dir.path().join("data"));
        assert_eq!(nodes[0].restore_to, PathBuf::from("/srv/restores"));
        assert_eq!(nodes[0].owner.to_string(), ALICE);
    }

    #[test]
    fn unknown_keys_and_bad_owners_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.toml");
        std::fs::write(&path, "contrat = \"typo\"\n").unwrap();
        assert!(FileConfig::load(&path).is_err());
        std::fs::write(
            &path,
            "[[nodes]]\nnode_id = \"n\"\nowner = \"bob\"\nsource = \"s\"\nrestore_to = \"r\"\n",
        )
        .unwrap();
        let error = FileConfig::load(&path).unwrap().served_nodes().unwrap_err();
        assert!(format!("{error:#}").contains("not an SS58"), "{error:#}");
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suri");
        std::fs::write(&path, "//Alice\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_suri_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_suri_file(&path).unwrap(), "//Alice");
    }
}
