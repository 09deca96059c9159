//! `bench --many-files N`: a tree of N small files, where what a tool spends per file (its
//! time and its memory) is all there is. One run, in a process of its own so that its peak
//! memory is this tree's alone: the bot's first snapshot, a second of the unchanged tree and a
//! restore, next to restic's, with each one's peak RSS.

use super::generate::generate_small_files;
use super::{
    claim_work_dir, du, peak_rss, reset_peak_rss, restic_in, settle, timed, OurBackup, MIB,
};
use crate::tree;
use anyhow::{bail, ensure, Result};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Seconds, two decimals.
fn seconds(elapsed: Duration) -> String {
    format!("{:.2}", elapsed.as_secs_f64())
}

/// Generates `count` small files in `work_dir` (see [`claim_work_dir`]), measures both tools
/// once and prints a table; removes the work files at the end.
pub async fn run_many_files(count: u64, work_dir: &Path) -> Result<()> {
    ensure!(count > 0, "--many-files must be at least 1");
    claim_work_dir(work_dir)?;
    let tree = work_dir.join("tree");
    let started = Instant::now();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes = generate_small_files(&tree, count, &mut state)?;
    println!(
        "{count} files of 16 B to 1 KiB, {bytes} bytes, generated in {} s",
        seconds(started.elapsed())
    );

    let mut ours = OurBackup::open(work_dir)?;
    // The scan does not cache a file changed within the second before it starts (it may
    // change again within the same time stamp): files that young would be read again by the
    // unchanged snapshot, as they would on a node.
    std::thread::sleep(Duration::from_secs(2));
    settle();
    reset_peak_rss()?;
    let first = ours.snapshot(&tree).await?;
    let first_peak = peak_rss(false)?;
    settle();
    reset_peak_rss()?;
    let second = ours.snapshot(&tree).await?;
    let second_peak = peak_rss(false)?;
    ensure!(
        first.recorded && !second.recorded,
        "the first snapshot is recorded, the unchanged second is not"
    );
    let ours_target = work_dir.join("restored-ours");
    settle();
    reset_peak_rss()?;
    let ours_restore = ours.restore_latest(&ours_target).await?;
    let restore_peak = peak_rss(false)?;
    let ours_peak = first_peak.max(second_peak).max(restore_peak);
    if let Some(difference) = tree::first_difference(&tree, &ours_target)? {
        bail!("our restore differs from the tree: {difference}");
    }
    let ours_store = ours.store_bytes()?;

    timed(restic_in(work_dir).arg("init"))?;
    settle();
    let restic_first = timed(restic_in(work_dir).arg("backup").arg(&tree))?;
    settle();
    let restic_second = timed(restic_in(work_dir).arg("backup").arg(&tree))?;
    settle();
    let restic_restore = timed(
        restic_in(work_dir)
            .args(["restore", "latest", "--target"])
            .arg(work_dir.join("restored-restic")),
    )?;
    let restic_peak = peak_rss(true)?;
    let restic_store = du(&work_dir.join("restic-repo"))?;

    println!();
    println!("| {count} small files | backup-bot | restic |");
    println!("|---|---:|---:|");
    println!(
        "| first snapshot, seconds | {} | {} |",
        seconds(first.elapsed),
        seconds(restic_first)
    );
    println!(
        "| unchanged tree, seconds | {} | {} |",
        seconds(second.elapsed),
        seconds(restic_second)
    );
    println!(
        "| restore, seconds | {} | {} |",
        seconds(ours_restore),
        seconds(restic_restore)
    );
    println!(
        "| store, MiB | {:.1} | {:.1} |",
        ours_store as f64 / MIB as f64,
        restic_store as f64 / MIB as f64
    );
    println!(
        "| peak RSS, MiB | {} | {} |",
        ours_peak / MIB,
        restic_peak / MIB
    );
    println!(
        "backup-bot's peak RSS by step: first snapshot {} MiB, unchanged {} MiB, restore {} MiB",
        first_peak / MIB,
        second_peak / MIB,
        restore_peak / MIB
    );
    fs::remove_dir_all(work_dir.join("tree"))?;
    for dir in [
        "store",
        "restored-ours",
        "restored-restic",
        "restic-repo",
        "restic-cache",
    ] {
        fs::remove_dir_all(work_dir.join(dir))?;
    }
    println!("work files removed from {}", work_dir.display());
    Ok(())
}
