//! `backup-bot`: the off-chain worker of the backup registry. It snapshots the nodes it
//! serves when their owners' frequency says so, stores the archives by CID, records them
//! with `add_snapshot`, and serves restore requests.

use anyhow::{anyhow, bail, Context, Result};
use backup_bot::bot::Bot;
use backup_bot::chain::NodeChain;
use backup_bot::config::{self, FileConfig};
use backup_bot::registry::Registry;
use backup_bot::store::{ContentStore, KuboStore, LocalStore};
use backup_bot::{bench, demo, keys, pipeline, unixfs};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use subxt_signer::{sr25519::Keypair, SecretUri};
use tracing::{error, info, warn};

/// Environment variable that may hold the authority's secret URI.
const SURI_ENV: &str = "BACKUP_BOT_SURI";

/// Longest wait between retries when the chain or store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(name = "backup-bot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a registry on a live chain: snapshot due nodes, serve restore requests.
    Run(RunArgs),
    /// Deploy the registry on an in-process chain, back up a sample directory through the
    /// bot, restore it on request and check both trees are identical. Needs nothing running.
    Demo(DemoArgs),
    /// Restore a snapshot with an age identity alone (the owner's, or the node's from the
    /// bot's data folder), from an IPFS RPC API or an embedded store, without any chain:
    /// every block is checked against its CID before it is decrypted, and the tree takes
    /// the target's place only once complete.
    Restore(RestoreArgs),
    /// Measure the snapshot pipeline against `restic` on a generated tree: first snapshot,
    /// unchanged tree, 1 % changed, restore, store size and peak memory. Build with --release.
    Bench {
        /// Size of the generated tree, in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Folder for the tree, the store and the restic repository (emptied first).
        #[arg(long, default_value = "target/bot-bench")]
        work_dir: PathBuf,
    },
    /// Print the CID `ipfs add --cid-version=1` gives each file (UnixFS, 256 KiB chunks, raw
    /// leaves, balanced DAG of 174 links), computed without IPFS.
    Cid {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
#[command(
    after_help = "The authority's secret URI (for example //Alice on a dev chain) comes from \
the BACKUP_BOT_SURI environment variable, or from --suri-file. It is never a flag, which other \
users could read in the process list, and is never printed or logged."
)]
struct RunArgs {
    /// Configuration file (TOML). Flags and environment variables override its values;
    /// the served nodes are listed in it as `[[nodes]]` tables.
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
    /// File whose first line is the authority's secret URI (must be mode 600).
    #[arg(long, env = "BACKUP_BOT_SURI_FILE")]
    suri_file: Option<PathBuf>,
    /// Folder for the embedded content store and temporary files [default: .backup-bot].
    #[arg(long, env = "BACKUP_BOT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Kubo RPC API address (for example http://127.0.0.1:5001); without it the embedded
    /// store in the data folder is used.
    #[arg(long, env = "BACKUP_BOT_KUBO_API")]
    kubo_api: Option<String>,
    /// Seconds between passes [default: 6].
    #[arg(long, env = "BACKUP_BOT_INTERVAL")]
    interval: Option<u64>,
    /// Do one pass and exit (non-zero if anything was left undone): for cron and tests.
    #[arg(long)]
    once: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// The contract bundle made by `cargo contract build --release`.
    #[arg(long, default_value = "target/ink/backup_registry.contract")]
    bundle: PathBuf,
    /// Folder for the demo's node data, store and restores (emptied first).
    #[arg(long, default_value = "target/bot-demo")]
    work_dir: PathBuf,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["store", "kubo_api"])))]
struct RestoreArgs {
    /// Age identity file (`age-keygen` format, mode 600) of a recipient of the snapshot.
    #[arg(long, alias = "identity")]
    owner_identity: PathBuf,
    /// The snapshot's CID, as recorded on chain.
    #[arg(long)]
    cid: String,
    /// Folder to restore into: created, or replaced when empty (or with --force).
    #[arg(long)]
    target: PathBuf,
    /// Replace a target that is not empty.
    #[arg(long)]
    force: bool,
    /// An embedded store's folder (the bot's is DATA_DIR/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// An IPFS RPC API address (for example http://127.0.0.1:5001).
    #[arg(long)]
    kubo_api: Option<String>,
}

/// Everything `run` needs, once file, flags and environment are merged.
struct Settings {
    url: String,
    contract: subxt::utils::AccountId32,
    metadata: PathBuf,
    signer: Keypair,
    data_dir: PathBuf,
    kubo_api: Option<String>,
    interval: Duration,
    nodes: Vec<config::ServedNode>,
}

impl Settings {
    fn resolve(args: RunArgs) -> Result<Self> {
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
        let suri = match (
            std::env::var(SURI_ENV).ok(),
            args.suri_file.or(file.suri_file.clone()),
        ) {
            (Some(suri), _) => suri,
            (None, Some(path)) => config::read_suri_file(&path)?,
            (None, None) => bail!("no authority key: set {SURI_ENV} or --suri-file"),
        };
        let uri = SecretUri::from_str(&suri).map_err(|_| anyhow!("the secret URI is malformed"))?;
        let signer =
            Keypair::from_uri(&uri).map_err(|_| anyhow!("the secret URI gives no sr25519 key"))?;
        let nodes = file.served_nodes()?;
        if nodes.is_empty() {
            warn!(
                "no [[nodes]] in the configuration: only restore requests of no node can be served"
            );
        }
        Ok(Self {
            url: args
                .url
                .or(file.url)
                .unwrap_or_else(|| "ws://127.0.0.1:9944".to_string()),
            contract: config::parse_account(&contract).context("contract address")?,
            metadata,
            signer,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| ".backup-bot".into()),
            kubo_api: args.kubo_api.or(file.kubo_api),
            interval: Duration::from_secs(args.interval.or(file.interval_secs).unwrap_or(6)),
            nodes,
        })
    }

    fn store(&self) -> Result<ContentStore> {
        Ok(match &self.kubo_api {
            Some(api) => ContentStore::Kubo(KuboStore::new(api)),
            None => ContentStore::Local(LocalStore::open(self.data_dir.join("store"))?),
        })
    }

    async fn connect(&self) -> Result<Bot<NodeChain>> {
        let chain = NodeChain::connect(
            &self.url,
            self.contract.clone(),
            &self.metadata,
            self.signer.clone(),
        )
        .await?;
        let mut bot = Bot::new(
            Registry::new(chain),
            self.store()?,
            self.nodes.clone(),
            &self.data_dir,
        )?;
        bot.check_authority().await?;
        Ok(bot)
    }
}

/// Serves the registry until Ctrl-C (or one pass with `--once`).
async fn run(args: RunArgs) -> Result<()> {
    let once = args.once;
    let settings = Settings::resolve(args)?;
    info!(
        url = %settings.url,
        contract = %settings.contract,
        authority = %settings.signer.public_key().to_account_id(),
        nodes = settings.nodes.len(),
        "starting"
    );
    if once {
        let mut bot = settings.connect().await?;
        let report = bot.pass().await?;
        info!("pass done: {report}");
        if !report.errors.is_empty() {
            bail!("{} item(s) left for a later pass", report.errors.len());
        }
        return Ok(());
    }
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            info!("Ctrl-C: stopping after the current pass");
            let _ = stop_tx.send(true);
        }
    });
    let mut backoff = Duration::from_secs(1);
    let mut bot = None;
    while !*stop.borrow() {
        let wait = match serve_once(&settings, &mut bot).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                settings.interval
            }
            Err(error) => {
                error!("{error:#}; retrying in {}s", backoff.as_secs());
                // Reconnect from scratch next time.
                bot = None;
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    info!("stopped");
    Ok(())
}

/// Connects if needed, then does one pass.
async fn serve_once(settings: &Settings, bot: &mut Option<Bot<NodeChain>>) -> Result<()> {
    let bot = match bot {
        Some(bot) => bot,
        None => bot.insert(settings.connect().await?),
    };
    let report = bot.pass().await?;
    info!("pass done: {report}");
    Ok(())
}

/// Restores a snapshot with an identity file alone.
async fn restore(args: &RestoreArgs) -> Result<()> {
    let cid = cid::Cid::try_from(args.cid.as_str()).context("--cid")?;
    let not_empty = std::fs::read_dir(&args.target).is_ok_and(|mut dir| dir.next().is_some());
    if not_empty && !args.force {
        bail!(
            "{} is not empty: choose another target, or pass --force to replace it",
            args.target.display()
        );
    }
    let identity = keys::read_identity(&args.owner_identity)?;
    let store = match (&args.store, &args.kubo_api) {
        (Some(dir), _) => ContentStore::Local(LocalStore::open(dir)?),
        (None, Some(api)) => ContentStore::Kubo(KuboStore::new(api)),
        (None, None) => bail!("name a store: --store or --kubo-api"),
    };
    let stats = pipeline::restore(&store, &cid, &identity, None, &args.target).await?;
    println!(
        "{} files, {} folders, {} bytes restored into {}",
        stats.files,
        stats.directories,
        stats.content_bytes,
        args.target.display()
    );
    Ok(())
}

/// Prints "<cid> <path>" for each file.
fn print_cids(files: &[PathBuf]) -> Result<()> {
    for file in files {
        let content =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let cid = unixfs::cid_of(std::io::BufReader::new(content))?;
        println!("{cid} {}", file.display());
    }
    Ok(())
}

/// Runs the in-process demo.
async fn run_demo(args: DemoArgs) -> Result<()> {
    if !args.bundle.exists() {
        bail!(
            "{} not found: build the contract first (bash scripts/build.sh)",
            args.bundle.display()
        );
    }
    demo::run(&args.bundle, &args.work_dir).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,backup_bot=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let outcome = match Cli::parse().command {
        Command::Run(args) => run(args).await,
        Command::Demo(args) => run_demo(args).await,
        Command::Restore(args) => restore(&args).await,
        Command::Bench { size_mib, work_dir } => bench::run(size_mib, &work_dir).await,
        Command::Cid { files } => print_cids(&files),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
