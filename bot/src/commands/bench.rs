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
    /// Instead: one run on a tree of this many small files (16 B to 1 KiB each), timing the
    /// first snapshot, the unchanged one and the restore, with each tool's peak memory.
    #[arg(long, conflicts_with_all = ["size_mib", "runs"])]
    many_files: Option<u64>,
    /// Folder for the tree, the store and the restic repository: created, or emptied if
    /// `demo` or `bench` made it; any other folder is refused.
    #[arg(long, default_value = "target/bot-bench")]
    work_dir: PathBuf,
}

/// Runs the benchmark and prints its table.
pub async fn execute(args: BenchArgs) -> Result<Ended> {
    match args.many_files {
        Some(count) => bench::run_many_files(count, &args.work_dir).await?,
        None => bench::run(args.size_mib, args.runs, &args.work_dir).await?,
    }
    Ok(Ended::Done)
}
