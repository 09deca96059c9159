//! `restore`: a snapshot restored with an age identity alone, from any store, with no chain.

use super::settings::{content_store, ChainArgs, ChainSettings};
use super::Ended;
use anyhow::{anyhow, bail, Context, Result};
use backup_bot::{config, keys, pipeline};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["store", "kubo_api"])))]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cid", "latest"])))]
pub struct RestoreArgs {
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

/// Restores a snapshot with an identity file alone.
pub async fn execute(args: RestoreArgs) -> Result<Ended> {
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
