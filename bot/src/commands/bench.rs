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
    /// Instead: writes the tree of --size-mib MiB the benchmark measures into this folder
    /// (which must not exist), for timing other commands on it (`scripts/bench-pass.sh`).
    #[arg(long, conflicts_with_all = ["runs", "many_files", "change_tree"])]
    write_tree: Option<PathBuf>,
    /// Instead: changes the tree --write-tree wrote in this folder as the benchmark changes
    /// its tree before the third snapshot (4 KiB written into 1 % of its files, three files
    /// of 1 MiB added).
    #[arg(long, conflicts_with_all = ["size_mib", "runs", "many_files"])]
    change_tree: Option<PathBuf>,
    /// Folder for the tree, the store and the restic repository: created, or emptied if
    /// `demo` or `bench` made it; any other folder is refused.
    #[arg(long, default_value = "target/bot-bench")]
    work_dir: PathBuf,
}

/// Runs the benchmark and prints its table (or writes or changes its tree).
pub async fn execute(args: BenchArgs) -> Result<Ended> {
    if let Some(root) = args.write_tree {
        let files = bench::write_tree(&root, args.size_mib)?;
        println!("{files} files written under {}", root.display());
    } else if let Some(root) = args.change_tree {
        let bytes = bench::change_written_tree(&root)?;
        println!("{bytes} bytes written under {}", root.display());
    } else if let Some(count) = args.many_files {
        bench::run_many_files(count, &args.work_dir).await?;
    } else {
        bench::run(args.size_mib, args.runs, &args.work_dir).await?;
    }
    Ok(Ended::Done)
}
