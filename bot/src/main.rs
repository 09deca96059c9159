//! `backup-bot`: the off-chain worker of the backup registry. It snapshots the nodes it
//! serves when their owners' frequency says so, stores them by CID, records them with
//! `add_snapshot`, unpins what the registry drops and serves restore requests; and, for
//! operators and owners, lists, checks and restores snapshots.

use anyhow::{anyhow, bail, Context, Result};
use backup_bot::bot::Bot;
use backup_bot::chain::NodeChain;
use backup_bot::config::{self, FileConfig, ServedNode};
use backup_bot::keys::{self, Keyring};
use backup_bot::registry::Registry;
use backup_bot::state::DataDirLock;
use backup_bot::store::{ContentStore, KuboStore, LocalStore};
use backup_bot::{bench, demo, pipeline, progress, unixfs};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;
use subxt::utils::AccountId32;
use subxt_signer::{sr25519::Keypair, SecretUri};
use tracing::{error, info, warn};

/// Environment variable that may hold the authority's secret URI.
const SURI_ENV: &str = "BACKUP_BOT_SURI";

/// Environment variable that may name the file holding the authority's secret URI.
const SURI_FILE_ENV: &str = "BACKUP_BOT_SURI_FILE";

/// The account read-only commands dry-run their queries as: no key needed, nothing signed.
const QUERY_URI: &str = "//backup-bot-query";

/// Longest wait between retries when the chain or store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    name = "backup-bot",
    version,
    about,
    after_help = "Exit codes: 0 done; 1 fatal error (the message says what); 2 usage error (a \
flag missing, unknown or malformed); 3 incomplete: \
`run --once` left work for a later pass (some nodes or requests failed while others \
succeeded), or `check` found a snapshot missing or damaged; 130 interrupted (Ctrl-C).\n\
With --json, `run --once`, `snapshots` and `check` print one JSON document on stdout; logs \
always go to stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a registry on a live chain: snapshot due nodes, unpin what the registry
    /// dropped, serve restore requests.
    Run(RunArgs),
    /// List the snapshots the registry holds: of the served nodes, of one owner's backups,
    /// or of one backup. Reads the chain; needs no key.
    Snapshots(SnapshotsArgs),
    /// Check that every snapshot the registry keeps of the served nodes is in the store;
    /// with --read-data, read and verify every block and decrypt every chunk.
    Check(CheckArgs),
    /// Restore a snapshot with an age identity alone (the owner's, or the node's from the
    /// bot's data folder), from an IPFS RPC API or an embedded store, without any chain:
    /// every block is checked against its CID before it is decrypted, and the tree takes
    /// the target's place only once complete.
    Restore(RestoreArgs),
    /// Deploy the registry on an in-process chain, back up a sample directory through the
    /// bot, restore it on request and check both trees are identical. Needs nothing running.
    Demo(DemoArgs),
    /// Measure the snapshot pipeline against `restic` on a generated tree: first snapshot,
    /// unchanged tree, 1 % changed, restore, store size and peak memory. Build with --release.
    Bench {
        /// Size of the generated tree, in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Folder for the tree, the store and the restic repository: created, or emptied if
        /// `demo` or `bench` made it; any other folder is refused.
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

/// Where the registry is. Each flag wins over its environment variable, which wins over the
/// configuration file.
#[derive(Args)]
struct ChainArgs {
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
struct StoreArgs {
    /// Folder for keys, cache, pins and the embedded store [default: .backup-bot].
    #[arg(long, env = "BACKUP_BOT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// IPFS RPC API address (for example http://127.0.0.1:5001); without it the embedded
    /// store in the data folder is used.
    #[arg(long, env = "BACKUP_BOT_KUBO_API")]
    kubo_api: Option<String>,
}

#[derive(Args)]
#[command(
    after_help = "The authority's secret URI (for example //Alice on a dev chain) comes from \
--suri-file, else from the BACKUP_BOT_SURI environment variable, else from the file named by \
BACKUP_BOT_SURI_FILE or by `suri_file` in the configuration. It is never a flag, which other \
users could read in the process list, and is never printed or logged. Every other setting: the \
flag, else its environment variable, else the configuration file."
)]
struct RunArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// File whose first line is the authority's secret URI (must be mode 600); wins over
    /// BACKUP_BOT_SURI [env: BACKUP_BOT_SURI_FILE, weaker than BACKUP_BOT_SURI].
    #[arg(long)]
    suri_file: Option<PathBuf>,
    /// Seconds between passes [default: 6].
    #[arg(long, env = "BACKUP_BOT_INTERVAL")]
    interval: Option<u64>,
    /// Do one pass and exit (3 if anything was left undone): for cron and tests.
    #[arg(long)]
    once: bool,
    /// With --once: print the pass's report as JSON on stdout.
    #[arg(long, requires = "once")]
    json: bool,
}

#[derive(Args)]
struct SnapshotsArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Only the backups of this account (SS58).
    #[arg(long)]
    owner: Option<String>,
    /// Only this node's backup (with --owner).
    #[arg(long, requires = "owner")]
    node: Option<String>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Read every block, verify it against its CID, open each manifest with the node's
    /// identity and decrypt every chunk.
    #[arg(long)]
    read_data: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["store", "kubo_api"])))]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cid", "latest"])))]
struct RestoreArgs {
    /// Age identity file (`age-keygen` format, mode 600) of a recipient of the snapshot.
    #[arg(long, alias = "identity")]
    owner_identity: PathBuf,
    /// The snapshot's CID, as recorded on chain.
    #[arg(long)]
    cid: Option<String>,
    /// The newest snapshot of --owner's backup of --node, read from the chain (a query: no
    /// key, no transaction).
    #[arg(long, requires_all = ["owner", "node"])]
    latest: bool,
    /// The backup's owner (SS58): with --latest, whose snapshot; with --cid, a snapshot of
    /// another owner's backup is refused.
    #[arg(long)]
    owner: Option<String>,
    /// The backup's node id: with --latest, which backup; with --cid and --owner, a snapshot
    /// of another node is refused.
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    chain: ChainArgs,
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

#[derive(Args)]
struct DemoArgs {
    /// The contract bundle made by `cargo contract build --release`.
    #[arg(long, default_value = "target/ink/backup_registry.contract")]
    bundle: PathBuf,
    /// Folder for the demo's node data, store and restores: created, or emptied if `demo` or
    /// `bench` made it; any other folder is refused.
    #[arg(long, default_value = "target/bot-demo")]
    work_dir: PathBuf,
}

/// How a command ended, when it did not fail.
enum Ended {
    /// Everything done.
    Done,
    /// Some of it left undone or found bad (exit code 3).
    Incomplete,
    /// Stopped by Ctrl-C (exit code 130).
    Interrupted,
}

/// The registry's place, once flags, environment and file are merged.
struct ChainSettings {
    url: String,
    contract: AccountId32,
    metadata: PathBuf,
    file: FileConfig,
}

impl ChainSettings {
    fn resolve(args: ChainArgs) -> Result<Self> {
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
    async fn registry(&self, signer: Keypair) -> Result<Registry<NodeChain>> {
        let chain =
            NodeChain::connect(&self.url, self.contract.clone(), &self.metadata, signer).await?;
        Ok(Registry::new(chain))
    }

    /// The registry for queries only.
    async fn query_registry(&self) -> Result<Registry<NodeChain>> {
        self.registry(keypair(QUERY_URI)?).await
    }

    /// The served nodes of the configuration file.
    fn nodes(&self) -> Result<Vec<ServedNode>> {
        self.file.served_nodes()
    }

    /// The data folder and the IPFS API, if any: flags and environment, else the file.
    fn store_place(&self, args: StoreArgs) -> (PathBuf, Option<String>) {
        let data_dir = args
            .data_dir
            .or(self.file.data_dir.clone())
            .unwrap_or_else(|| ".backup-bot".into());
        (data_dir, args.kubo_api.or(self.file.kubo_api.clone()))
    }
}

/// The IPFS node at `kubo_api` when given, else the embedded store in the folder `local`.
fn content_store(kubo_api: Option<&str>, local: &Path) -> Result<ContentStore> {
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
fn authority_key(suri_file: Option<PathBuf>, file: &FileConfig) -> Result<Keypair> {
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

/// Everything `run` needs.
struct RunSettings {
    chain: ChainSettings,
    signer: Keypair,
    data_dir: PathBuf,
    kubo_api: Option<String>,
    interval: Duration,
    nodes: Vec<ServedNode>,
    recipients: Vec<age::x25519::Recipient>,
}

impl RunSettings {
    fn resolve(args: RunArgs) -> Result<Self> {
        let chain = ChainSettings::resolve(args.chain)?;
        let signer = authority_key(args.suri_file, &chain.file)?;
        let nodes = chain.nodes()?;
        if nodes.is_empty() {
            warn!(
                "no [[nodes]] in the configuration: only restore requests of no node can be served"
            );
        }
        let recipients = chain
            .file
            .recipients
            .iter()
            .map(|recipient| keys::parse_recipient(recipient))
            .collect::<Result<Vec<_>>>()
            .context("`recipients` in the configuration")?;
        let interval = args.interval.or(chain.file.interval_secs).unwrap_or(6);
        let (data_dir, kubo_api) = chain.store_place(args.store);
        Ok(Self {
            data_dir,
            kubo_api,
            chain,
            signer,
            interval: Duration::from_secs(interval),
            nodes,
            recipients,
        })
    }

    async fn connect(&self) -> Result<Bot<NodeChain>> {
        let registry = self.chain.registry(self.signer.clone()).await?;
        let store = content_store(self.kubo_api.as_deref(), &self.data_dir.join("store"))?
            .pin_while_putting(self.data_dir.join("kubo-put-pins"));
        let mut bot = Bot::new(registry, store, self.nodes.clone(), &self.data_dir)?;
        bot.set_extra_recipients(self.recipients.clone());
        if let Some(blocks) = self.chain.file.release_unserved_after_blocks {
            bot.set_release_unserved_after(blocks);
        }
        bot.check_authority().await?;
        Ok(bot)
    }
}

/// Serves the registry until Ctrl-C (or one pass with `--once`).
async fn run(args: RunArgs) -> Result<Ended> {
    let (once, json) = (args.once, args.json);
    let settings = RunSettings::resolve(args)?;
    // Held until the process ends, across reconnections.
    let _lock = DataDirLock::acquire(&settings.data_dir)?;
    info!(
        url = %config::without_credentials(&settings.chain.url),
        contract = %settings.chain.contract,
        authority = %settings.signer.public_key().to_account_id(),
        nodes = settings.nodes.len(),
        "starting"
    );
    if once {
        let mut bot = settings.connect().await?;
        let report = bot.pass().await?;
        info!("pass done: {report}");
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if !report.errors.is_empty() {
            warn!("{} item(s) left for a later pass", report.errors.len());
            return Ok(Ended::Incomplete);
        }
        return Ok(Ended::Done);
    }
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            info!("Ctrl-C: stopping after the current pass (again to stop at once)");
            let _ = stop_tx.send(true);
        }
        // Nothing is lost by stopping mid-pass: blocks are recorded only once durable and
        // pinned, and a claimed restore is resumed by the next start.
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("second Ctrl-C: stopping now");
            std::process::exit(130);
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
    Ok(Ended::Interrupted)
}

/// Connects if needed, then does one pass.
async fn serve_once(settings: &RunSettings, bot: &mut Option<Bot<NodeChain>>) -> Result<()> {
    let bot = match bot {
        Some(bot) => bot,
        None => bot.insert(settings.connect().await?),
    };
    let report = bot.pass().await?;
    info!("pass done: {report}");
    Ok(())
}

/// `timestamp_ms` (milliseconds since the epoch) as UTC `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(timestamp_ms: u64) -> String {
    let seconds = timestamp_ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One snapshot as `snapshots` lists it.
#[derive(serde::Serialize)]
struct ListedSnapshot {
    owner: String,
    node_id: String,
    seq: u32,
    cid: String,
    block_number: u32,
    timestamp_ms: u64,
    time: String,
    size_bytes: u64,
    pinned: bool,
    description: String,
}

/// Lists the snapshots the registry holds.
async fn snapshots(args: SnapshotsArgs) -> Result<Ended> {
    let chain = ChainSettings::resolve(args.chain)?;
    let backups: Vec<(AccountId32, String)> = match (&args.owner, &args.node) {
        (Some(owner), Some(node)) => vec![(config::parse_account(owner)?, node.clone())],
        (Some(owner), None) => {
            let owner = config::parse_account(owner)?;
            let mut registry = chain.query_registry().await?;
            registry
                .backups_of(&owner)
                .await?
                .into_iter()
                .map(|backup| (owner.clone(), backup.node_id))
                .collect()
        }
        _ => chain
            .nodes()?
            .into_iter()
            .map(|node| (node.owner, node.node_id))
            .collect(),
    };
    let mut registry = chain.query_registry().await?;
    let mut listed = Vec::new();
    for (owner, node_id) in backups {
        for numbered in registry.numbered_snapshots(&owner, &node_id).await? {
            let snapshot = numbered.snapshot;
            listed.push(ListedSnapshot {
                owner: owner.to_string(),
                node_id: node_id.clone(),
                seq: numbered.seq,
                pinned: numbered.pinned,
                time: utc(snapshot.timestamp),
                cid: snapshot.cid,
                block_number: snapshot.block_number,
                timestamp_ms: snapshot.timestamp,
                size_bytes: snapshot.size_bytes,
                description: snapshot.description,
            });
        }
    }
    if args.json {
        let document = serde_json::json!({ "snapshots": listed });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(Ended::Done);
    }
    println!("node\tseq\tblock\ttime\tsize\tpinned\tcid");
    for snapshot in &listed {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            snapshot.node_id,
            snapshot.seq,
            snapshot.block_number,
            snapshot.time,
            snapshot.size_bytes,
            if snapshot.pinned { "pinned" } else { "-" },
            snapshot.cid
        );
    }
    eprintln!("{} snapshots", listed.len());
    Ok(Ended::Done)
}

/// What `check` found of one snapshot.
#[derive(serde::Serialize)]
struct CheckedSnapshot {
    owner: String,
    node_id: String,
    cid: String,
    ok: bool,
    problem: Option<String>,
    stats: pipeline::CheckStats,
}

/// Checks the snapshots the registry keeps of the served nodes.
async fn check(args: CheckArgs) -> Result<Ended> {
    let chain = ChainSettings::resolve(args.chain)?;
    let (data_dir, kubo_api) = chain.store_place(args.store);
    let store = content_store(kubo_api.as_deref(), &data_dir.join("store"))?;
    let keyring = Keyring::open(data_dir.join("keys"))?;
    let mut registry = chain.query_registry().await?;
    let mut kept = Vec::new();
    for node in chain.nodes()? {
        for snapshot in registry.snapshots(&node.owner, &node.node_id).await? {
            kept.push((node.clone(), snapshot.cid));
        }
    }
    let bar = progress::items(kept.len() as u64, "check");
    let mut checked = Vec::new();
    for (node, cid) in kept {
        let outcome = check_one(&store, &keyring, &node, &cid, args.read_data).await;
        bar.inc(1);
        let (stats, problem) = match outcome {
            Ok(stats) => (stats, None),
            Err(error) => (pipeline::CheckStats::default(), Some(format!("{error:#}"))),
        };
        checked.push(CheckedSnapshot {
            owner: node.owner.to_string(),
            node_id: node.node_id.clone(),
            cid,
            ok: problem.is_none(),
            problem,
            stats,
        });
    }
    bar.finish_and_clear();
    let all_ok = checked.iter().all(|snapshot| snapshot.ok);
    if args.json {
        let document = serde_json::json!({ "ok": all_ok, "snapshots": checked });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        for snapshot in &checked {
            match &snapshot.problem {
                None => println!("ok\t{}\t{}", snapshot.node_id, snapshot.cid),
                Some(problem) => println!("BAD\t{}\t{}\t{problem}", snapshot.node_id, snapshot.cid),
            }
        }
        let bad = checked.iter().filter(|snapshot| !snapshot.ok).count();
        eprintln!(
            "{} snapshots checked, {bad} missing or damaged",
            checked.len()
        );
    }
    Ok(if all_ok {
        Ended::Done
    } else {
        Ended::Incomplete
    })
}

/// Checks one snapshot of `node`: pinned, every block there (and, with `read_data`, read,
/// verified and decrypted with the node's identity).
async fn check_one(
    store: &ContentStore,
    keyring: &Keyring,
    node: &ServedNode,
    cid: &str,
    read_data: bool,
) -> Result<pipeline::CheckStats> {
    let root = cid::Cid::try_from(cid).context("not a CID")?;
    if !store.is_pinned(&root).await? {
        bail!("not pinned in the store");
    }
    let identity = if read_data {
        let path = keyring.path_of(node);
        if !path.exists() {
            bail!("the node's identity {} is missing", path.display());
        }
        Some(keys::read_identity(&path)?)
    } else {
        None
    };
    pipeline::check(store, &root, identity.as_ref()).await
}

/// Restores a snapshot with an identity file alone.
async fn restore(args: RestoreArgs) -> Result<Ended> {
    let cid = match (&args.cid, &args.owner, &args.node) {
        (Some(cid), _, _) => cid.clone(),
        (None, Some(owner), Some(node)) => {
            let owner = config::parse_account(owner)?;
            let mut registry = ChainSettings::resolve(args.chain)?.query_registry().await?;
            registry
                .latest_snapshot(&owner, node)
                .await?
                .ok_or_else(|| anyhow!("{owner} has no snapshot of node {node:?}"))?
                .cid
        }
        _ => bail!("name a snapshot: --cid, or --latest --owner --node"),
    };
    let cid = cid::Cid::try_from(cid.as_str()).context("the snapshot's CID")?;
    let not_empty = std::fs::read_dir(&args.target).is_ok_and(|mut dir| dir.next().is_some());
    if not_empty && !args.force {
        bail!(
            "{} is not empty: choose another target, or pass --force to replace it",
            args.target.display()
        );
    }
    let identity = keys::read_identity(&args.owner_identity)?;
    // Clap requires one of --store and --kubo-api.
    let local = args.store.clone().unwrap_or_default();
    let store = content_store(args.kubo_api.as_deref(), &local)?;
    // The owner as the manifest spells it (SS58 with the generic prefix).
    let owner = args
        .owner
        .as_deref()
        .map(|owner| config::parse_account(owner).map(|owner| owner.to_string()))
        .transpose()?;
    let expected = match (&owner, &args.node) {
        (Some(owner), Some(node_id)) => Some(pipeline::Expected { owner, node_id }),
        _ => None,
    };
    let stats = pipeline::restore(&store, &cid, &identity, expected, &args.target).await?;
    println!(
        "snapshot of node {:?} of {}: {} files, {} folders, {} links, {} bytes restored into {}",
        stats.node_id,
        stats.owner,
        stats.files,
        stats.directories,
        stats.symlinks,
        stats.content_bytes,
        args.target.display()
    );
    Ok(Ended::Done)
}

/// Prints "<cid> <path>" for each file.
fn print_cids(files: &[PathBuf]) -> Result<Ended> {
    for file in files {
        let content =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let cid = unixfs::cid_of(std::io::BufReader::new(content))?;
        println!("{cid} {}", file.display());
    }
    Ok(Ended::Done)
}

/// Runs the in-process demo.
async fn run_demo(args: DemoArgs) -> Result<Ended> {
    if !args.bundle.exists() {
        bail!(
            "{} not found: build the contract first (bash scripts/build.sh)",
            args.bundle.display()
        );
    }
    demo::run(&args.bundle, &args.work_dir).await?;
    Ok(Ended::Done)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
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
        Command::Snapshots(args) => snapshots(args).await,
        Command::Check(args) => check(args).await,
        Command::Restore(args) => restore(args).await,
        Command::Demo(args) => run_demo(args).await,
        Command::Bench { size_mib, work_dir } => {
            bench::run(size_mib, &work_dir).await.map(|()| Ended::Done)
        }
        Command::Cid { files } => print_cids(&files),
    };
    match outcome {
        Ok(Ended::Done) => ExitCode::SUCCESS,
        Ok(Ended::Incomplete) => ExitCode::from(3),
        Ok(Ended::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_083_199_999), "2026-11-30T23:59:59Z");
    }
}
