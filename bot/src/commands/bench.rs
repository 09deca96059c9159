//! `bench`: the snapshot pipeline measured against restic on a generated tree.

use super::Ended;
use anyhow::Result;
use backup_bot::bench;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Size of the generated tree, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Runs, each on a fresh tree, store and repository; the table gives their medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Folder for the tree, the store and the restic repository: created, or emptied if
    /// `demo` or `bench` made it; any other folder is refused.
    #[arg(long, default_value = "target/bot-bench")]
    work_dir: PathBuf,
}

/// Runs the benchmark and prints its table.
pub async fn execute(args: BenchArgs) -> Result<Ended> {
    bench::run(args.size_mib, args.runs, &args.work_dir).await?;
    Ok(Ended::Done)
}
