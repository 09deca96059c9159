//! `check`: are the snapshots the registry keeps of the served nodes whole in the store?

use super::settings::{ChainArgs, ChainSettings, StoreArgs};
use super::Ended;
use anyhow::{bail, Context, Result};
use backup_bot::config::ServedNode;
use backup_bot::keys::{self, Keyring};
use backup_bot::store::ContentStore;
use backup_bot::{pipeline, progress};
use clap::Args;

#[derive(Args)]
pub struct CheckArgs {
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
pub async fn execute(args: CheckArgs) -> Result<Ended> {
    let chain = ChainSettings::resolve(args.chain)?;
    let place = chain.store_place(args.store);
    let store = place.store()?;
    let keyring = Keyring::open(place.data_dir.join("keys"))?;
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
    Ok(pipeline::check(store, &root, identity.as_ref()).await?)
}
