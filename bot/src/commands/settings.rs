//! Where a command finds the registry, the store and the authority's key: each setting from
//! its flag, else its environment variable, else the configuration file, merged here once.

use anyhow::{anyhow, bail, Context, Result};
use backup_bot::chain::NodeChain;
use backup_bot::config::{self, FileConfig, ServedNode};
use backup_bot::registry::Registry;
use backup_bot::store::{ContentStore, KuboStore, LocalStore};
use clap::Args;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use subxt::utils::AccountId32;
use subxt_signer::{sr25519::Keypair, SecretUri};

/// Environment variable that may hold the authority's secret URI.
const SURI_ENV: &str = "BACKUP_BOT_SURI";

/// Environment variable that may name the file holding the authority's secret URI.
const SURI_FILE_ENV: &str = "BACKUP_BOT_SURI_FILE";

/// The account read-only commands dry-run their queries as: no key needed, nothing signed.
const QUERY_URI: &str = "//backup-bot-query";

/// Where the registry is. Each flag wins over its environment variable, which wins over the
/// configuration file.
#[derive(Args)]
pub struct ChainArgs {
    /// Configuration file (TOML); the served nodes are listed in it as `[[nodes]]` tables.
    #[arg(long, env = "BACKUP_BOT_CONFIG")]
    config: Option<PathBuf>,
    /// Chain RPC endpoint [default: ws://127.0.0.1:9944].
    #[arg(long, env = "BACKUP_BOT_URL")]
    url: Option<String>,
    /// Address (SS58) of the registry contract.
    #[arg(long, env = "BACKUP_BOT_CONTRACT")]
    contract: Option<String>,
    /// The contract's metadata: target/ink/backup_registry.json or the .contract bundle.
    #[arg(long, env = "BACKUP_BOT_METADATA")]
    metadata: Option<PathBuf>,
}

/// Where the bot keeps its keys, state and blocks.
#[derive(Args)]
pub struct StoreArgs {
    /// Folder for keys, cache, pins and the embedded store [default: .backup-bot].
    #[arg(long, env = "BACKUP_BOT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// IPFS RPC API address (for example http://127.0.0.1:5001); without it the embedded
    /// store in the data folder is used.
    #[arg(long, env = "BACKUP_BOT_KUBO_API")]
    kubo_api: Option<String>,
    /// IPFS proxy API of an IPFS Cluster peer (for example http://127.0.0.1:9095), with
    /// --kubo-api naming that peer's IPFS node: every snapshot pinned on the node is pinned
    /// in the cluster too, which replicates it.
    #[arg(long, env = "BACKUP_BOT_CLUSTER_PROXY_API", requires = "kubo_api")]
    cluster_proxy_api: Option<String>,
}

/// Where the bot keeps its keys, state and blocks, once flags, environment and file are
/// merged.
pub struct StorePlace {
    /// The bot's folder.
    pub data_dir: PathBuf,
    /// The IPFS node's RPC API, if the bot stores there rather than in its folder.
    pub kubo_api: Option<String>,
    /// The IPFS Cluster proxy API that replicates the node's pins, if any.
    pub cluster_proxy_api: Option<String>,
}

impl StorePlace {
    /// The store this place names: the IPFS node (its pins replicated by the cluster, if one
    /// is given), else the embedded store in the data folder.
    pub fn store(&self) -> Result<ContentStore> {
        let store = content_store(self.kubo_api.as_deref(), &self.data_dir.join("store"))?;
        match (&self.cluster_proxy_api, store) {
            (None, store) => Ok(store),
            (Some(proxy), ContentStore::Kubo(kubo)) => {
                Ok(ContentStore::Kubo(kubo.with_cluster_proxy(proxy)))
            }
            (Some(_), ContentStore::Local(_)) => bail!(
                "an IPFS Cluster proxy API needs the IPFS API of the node behind it (kubo_api)"
            ),
        }
    }
}

/// The registry's place, once flags, environment and file are merged.
pub struct ChainSettings {
    /// The chain's RPC endpoint.
    pub url: String,
    /// The registry contract's address.
    pub contract: AccountId32,
    /// The contract's metadata file.
    pub metadata: PathBuf,
    /// The configuration file's settings (empty without one).
    pub file: FileConfig,
}

impl ChainSettings {
    /// The settings `args` give, completed from the configuration file.
    pub fn resolve(args: ChainArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let contract = args.contract.or(file.contract.clone()).ok_or_else(|| {
            anyhow!("no contract address: set --contract or `contract` in the config file")
        })?;
        let metadata = args.metadata.or(file.metadata.clone()).ok_or_else(|| {
            anyhow!("no contract metadata: set --metadata or `metadata` in the config file")
        })?;
        Ok(Self {
            url: args
                .url
                .or(file.url.clone())
                .unwrap_or_else(|| "ws://127.0.0.1:9944".to_string()),
            contract: config::parse_account(&contract).context("contract address")?,
            metadata,
            file,
        })
    }

    /// The registry, seen through `signer`.
    pub async fn registry(&self, signer: Keypair) -> Result<Registry<NodeChain>> {
        let chain =
            NodeChain::connect(&self.url, self.contract.clone(), &self.metadata, signer).await?;
        Ok(Registry::new(chain))
    }

    /// The registry for queries only.
    pub async fn query_registry(&self) -> Result<Registry<NodeChain>> {
        self.registry(keypair(QUERY_URI)?).await
    }

    /// The served nodes of the configuration file.
    pub fn nodes(&self) -> Result<Vec<ServedNode>> {
        self.file.served_nodes()
    }

    /// The data folder, the IPFS API and the cluster's, if any: flags and environment, else
    /// the file.
    pub fn store_place(&self, args: StoreArgs) -> StorePlace {
        StorePlace {
            data_dir: args
                .data_dir
                .or(self.file.data_dir.clone())
                .unwrap_or_else(|| ".backup-bot".into()),
            kubo_api: args.kubo_api.or(self.file.kubo_api.clone()),
            cluster_proxy_api: args
                .cluster_proxy_api
                .or(self.file.cluster_proxy_api.clone()),
        }
    }
}

/// The IPFS node at `kubo_api` when given, else the embedded store in the folder `local`.
pub fn content_store(kubo_api: Option<&str>, local: &Path) -> Result<ContentStore> {
    Ok(match kubo_api {
        Some(api) => ContentStore::Kubo(KuboStore::new(api)),
        None => ContentStore::Local(LocalStore::open(local)?),
    })
}

/// The sr25519 key of a secret URI.
fn keypair(suri: &str) -> Result<Keypair> {
    let uri = SecretUri::from_str(suri).map_err(|_| anyhow!("the secret URI is malformed"))?;
    Keypair::from_uri(&uri).map_err(|_| anyhow!("the secret URI gives no sr25519 key"))
}

/// The authority's key: `--suri-file`, else `BACKUP_BOT_SURI`, else the file named by
/// `BACKUP_BOT_SURI_FILE` or the configuration's `suri_file`.
pub fn authority_key(suri_file: Option<PathBuf>, file: &FileConfig) -> Result<Keypair> {
    let suri = match (suri_file, std::env::var(SURI_ENV).ok()) {
        (Some(path), _) => config::read_suri_file(&path)?,
        (None, Some(suri)) => suri,
        (None, None) => match std::env::var_os(SURI_FILE_ENV)
            .map(PathBuf::from)
            .or(file.suri_file.clone())
        {
            Some(path) => config::read_suri_file(&path)?,
            None => bail!("no authority key: set --suri-file or {SURI_ENV}"),
        },
    };
    keypair(&suri)
}
