//! `run`: serve the registry, one pass every interval (or one pass with `--once`).

use super::settings::{authority_key, ChainArgs, ChainSettings, StoreArgs, StorePlace};
use super::Ended;
use anyhow::{Context, Result};
use backup_bot::bot::Bot;
use backup_bot::chain::NodeChain;
use backup_bot::config::{self, ServedNode};
use backup_bot::keys;
use backup_bot::state::DataDirLock;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use subxt_signer::sr25519::Keypair;
use tracing::{error, info, warn};

/// Longest wait between retries when the chain or store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Args)]
#[command(
    after_help = "The authority's secret URI (for example //Alice on a dev chain) comes from \
--suri-file, else from the BACKUP_BOT_SURI environment variable, else from the file named by \
BACKUP_BOT_SURI_FILE or by `suri_file` in the configuration. It is never a flag, which other \
users could read in the process list, and is never printed or logged. Every other setting: the \
flag, else its environment variable, else the configuration file."
)]
pub struct RunArgs {
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

/// Everything `run` needs.
struct RunSettings {
    chain: ChainSettings,
    signer: Keypair,
    place: StorePlace,
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
        let place = chain.store_place(args.store);
        Ok(Self {
            place,
            chain,
            signer,
            interval: Duration::from_secs(interval),
            nodes,
            recipients,
        })
    }

    async fn connect(&self) -> Result<Bot<NodeChain>> {
        let registry = self.chain.registry(self.signer.clone()).await?;
        let data_dir = &self.place.data_dir;
        let store = self
            .place
            .store()?
            .pin_while_putting(data_dir.join("kubo-put-pins"));
        let mut bot = Bot::new(registry, store, self.nodes.clone(), data_dir)?;
        bot.set_extra_recipients(self.recipients.clone());
        if let Some(blocks) = self.chain.file.release_unserved_after_blocks {
            bot.set_release_unserved_after(blocks);
        }
        bot.check_authority().await?;
        Ok(bot)
    }
}

/// Serves the registry until Ctrl-C (or one pass with `--once`).
pub async fn execute(args: RunArgs) -> Result<Ended> {
    let (once, json) = (args.once, args.json);
    let settings = RunSettings::resolve(args)?;
    // Held until the process ends, across reconnections.
    let _lock = DataDirLock::acquire(&settings.place.data_dir)?;
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
