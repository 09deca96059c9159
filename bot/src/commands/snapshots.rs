//! `snapshots`: list the snapshots the registry holds.

use super::settings::{ChainArgs, ChainSettings};
use super::Ended;
use anyhow::Result;
use backup_bot::config;
use clap::Args;
use subxt::utils::AccountId32;

#[derive(Args)]
pub struct SnapshotsArgs {
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
pub async fn execute(args: SnapshotsArgs) -> Result<Ended> {
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
