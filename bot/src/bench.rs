//! `backup-bot bench`: the snapshot pipeline next to `restic` on the same generated tree, in
//! the same runs: a first snapshot, a second of the unchanged tree, a third after changing 1 %
//! of the files and adding a few, and a restore of the latest; with `sha256sum` of every file
//! as the hashing reference, the stores' sizes and peak memory. A benchmark, not a test: it
//! prints the median (and range) of what it measured over its runs, and how each figure
//! compares with its target. Also
//! [`claim_work_dir`], the work folder rule `bench` and `demo` share.

use crate::tree;
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod generate;
mod many_files;
mod ours;

use self::generate::{change_tree, generate_tree, TREE_SEED};
pub use self::generate::{change_written_tree, write_tree};
pub use self::many_files::run_many_files;
use self::ours::{OurBackup, Ours};

const MIB: u64 = 1024 * 1024;

/// The largest peak resident memory of a command [`timed`] ran, in bytes.
static CHILD_PEAK_RSS: AtomicU64 = AtomicU64::new(0);

/// Runs `command`, failing with its error output if it fails; returns how long it took. Its
/// peak memory is read from `/proc` while it runs (`VmHWM`, the last value read before it
/// exits) into [`CHILD_PEAK_RSS`]: `getrusage(RUSAGE_CHILDREN)` would not do, as a child's
/// count starts from this process's own peak, which its `exec` inherits.
fn timed(command: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    let mut stderr = child.stderr.take().context("stderr is piped")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let status_path = format!("/proc/{}/status", child.id());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(status) = fs::read_to_string(&status_path) {
            if let Some(peak) = vm_hwm(&status) {
                CHILD_PEAK_RSS.fetch_max(peak, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let errors = errors
        .join()
        .map_err(|_| anyhow::anyhow!("reading {command:?}'s errors panicked"))??;
    if !status.success() {
        bail!("{command:?} failed: {errors}");
    }
    Ok(elapsed)
}

/// The `VmHWM` (peak resident memory) of a `/proc/PID/status`, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Writes every dirty page back (`sync(2)`), so that a timed step does not pay for the
/// writes of the one before it (the file system writes back in the background).
fn settle() {
    rustix::fs::sync();
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Starts this process's peak resident memory again from what it holds now (Linux 4.0 on),
/// so that [`peak_rss`] then tells one step's peak.
fn reset_peak_rss() -> Result<()> {
    fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")
}

/// Peak resident memory, in bytes: of this process, or of the largest command [`timed`] ran.
fn peak_rss(children: bool) -> Result<u64> {
    if children {
        return Ok(CHILD_PEAK_RSS.load(Ordering::Relaxed));
    }
    vm_hwm(&fs::read_to_string("/proc/self/status")?).context("no VmHWM in /proc/self/status")
}

/// A `restic` command on the repository `work_dir/restic-repo`, its cache in `work_dir`.
fn restic_in(work_dir: &Path) -> Command {
    let mut command = Command::new("restic");
    command
        .arg("--repo")
        .arg(work_dir.join("restic-repo"))
        .arg("--quiet")
        .env("RESTIC_PASSWORD", "benchmark")
        .env("RESTIC_CACHE_DIR", work_dir.join("restic-cache"));
    command
}

/// MiB per second.
fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// What one run measured, for us and for restic.
struct Figures {
    /// Files and bytes of the generated tree, and how long `sha256sum` took over it.
    files: usize,
    tree_bytes: u64,
    sha: Duration,
    /// Bytes changed for the third snapshot.
    changed: u64,
    ours: [Ours; 3],
    /// restic's three backups: time, bytes added to its repository.
    restic: [(Duration, u64); 3],
    /// The restore of the latest snapshot: bytes restored, our time, restic's.
    restored_bytes: u64,
    ours_restore: Duration,
    restic_restore: Duration,
    /// How long writing restic's restored tree to disk took after restic returned (ours is on
    /// disk before it returns, and counted in its time).
    restic_restore_unsynced: Duration,
    /// Store sizes after the three snapshots.
    ours_store: u64,
    restic_store: u64,
}

/// One run in `work_dir` (empty): generates the tree, takes the three snapshots and the
/// restore, ours and restic's, and checks that our restore equals the tree.
async fn measure(total_mib: u64, work_dir: &Path) -> Result<Figures> {
    let tree = work_dir.join("tree");
    let mut state = TREE_SEED;
    let files = generate_tree(&tree, total_mib, &mut state)?;
    let tree_bytes = du(&tree)?;
    // Warm the page cache equally for everyone: read it all once.
    let find_exec = |command: &str| {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(format!(
            "find '{}' -type f -exec {command} {{}} + > /dev/null",
            tree.display()
        ));
        shell
    };
    timed(&mut find_exec("cat"))?;
    let sha = timed(&mut find_exec("sha256sum"))?;

    let mut ours = OurBackup::open(work_dir)?;
    let repository = work_dir.join("restic-repo");
    let restic = || restic_in(work_dir);
    timed(restic().arg("init"))?;
    let restic_backup = || -> Result<(Duration, u64)> {
        let before = du(&repository)?;
        let elapsed = timed(restic().arg("backup").arg(&tree))?;
        Ok((elapsed, du(&repository)? - before))
    };

    // Each timed step starts with no dirty page left by the step before (`settle`).
    settle();
    let first = ours.snapshot(&tree).await?;
    settle();
    let restic_first = restic_backup()?;
    settle();
    let second = ours.snapshot(&tree).await?;
    settle();
    let restic_second = restic_backup()?;
    let changed = change_tree(&tree, &files, &mut state)?;
    settle();
    let third = ours.snapshot(&tree).await?;
    settle();
    let restic_third = restic_backup()?;
    ensure!(
        first.recorded && third.recorded,
        "changed trees must be recorded"
    );

    let ours_target = work_dir.join("restored-ours");
    settle();
    let ours_restore = ours.restore_latest(&ours_target).await?;
    let restic_target = work_dir.join("restored-restic");
    settle();
    let restic_restore = timed(
        restic()
            .args(["restore", "latest", "--target"])
            .arg(&restic_target),
    )?;
    let started = Instant::now();
    settle();
    let restic_restore_unsynced = started.elapsed();
    if let Some(difference) = tree::first_difference(&tree, &ours_target)? {
        bail!("our restore differs from the tree: {difference}");
    }
    let ours_store = ours.store_bytes()?;
    Ok(Figures {
        files: files.len(),
        restored_bytes: du(&tree)?,
        tree_bytes,
        sha,
        changed,
        ours: [first, second, third],
        restic: [restic_first, restic_second, restic_third],
        ours_restore,
        restic_restore,
        restic_restore_unsynced,
        ours_store,
        restic_store: du(&repository)?,
    })
}

/// The median of `values` (the upper one of an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The median of `values` and, over more than one run, their range: "12 (10–15)".
fn spread(values: &[f64], decimals: usize) -> String {
    let median = median(values);
    if values.len() < 2 {
        return format!("{median:.decimals$}");
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

/// Generates a tree of about `total_mib` MiB in `work_dir` (see [`claim_work_dir`]), measures
/// `runs` runs, each on a fresh tree, store and repository, and prints the table of medians
/// (and ranges) with issue 23's targets against restic.
pub async fn run(total_mib: u64, runs: usize, work_dir: &Path) -> Result<()> {
    ensure!(runs > 0, "--runs must be at least 1");
    claim_work_dir(work_dir)?;
    let restic_version = Command::new("restic")
        .arg("version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .context("restic is not installed (apt-get install restic)")?;
    let mut all = Vec::new();
    for number in 1..=runs {
        let dir = work_dir.join(format!("run-{number}"));
        let figures = measure(total_mib, &dir).await?;
        println!(
            "run {number} of {runs}: {} files, {:.1} MiB; first snapshot {:.2} s (restic {:.2} \
             s), unchanged {:.2} s ({:.2} s), 1 % changed {:.2} s ({:.2} s), restore {:.2} s \
             ({:.2} s)",
            figures.files,
            figures.tree_bytes as f64 / MIB as f64,
            figures.ours[0].elapsed.as_secs_f64(),
            figures.restic[0].0.as_secs_f64(),
            figures.ours[1].elapsed.as_secs_f64(),
            figures.restic[1].0.as_secs_f64(),
            figures.ours[2].elapsed.as_secs_f64(),
            figures.restic[2].0.as_secs_f64(),
            figures.ours_restore.as_secs_f64(),
            figures.restic_restore.as_secs_f64(),
        );
        // Each run's files (about 5 GiB) are kept until every run is done: removing them
        // before the next run slowed its file creations (see the end of this function).
        all.push(figures);
    }
    let peak_ours = peak_rss(false)?;
    let peak_restic = peak_rss(true)?;
    let of = |figure: &dyn Fn(&Figures) -> f64| all.iter().map(figure).collect::<Vec<_>>();
    let last = all.last().expect("at least one run");
    println!();
    println!(
        "restic: {restic_version}; {runs} run(s), median (min–max); bytes changed for \
         snapshot 3: {}",
        last.changed
    );
    println!();
    println!("| measure | backup-bot | restic | target | met |");
    println!("|---|---:|---:|---|---|");
    let mut met_count = 0;
    let mut row = |measure: &str, ours: String, theirs: String, target: &str, met: bool| {
        met_count += usize::from(met);
        let met = if met { "yes" } else { "**no**" };
        println!("| {measure} | {ours} | {theirs} | {target} | {met} |");
    };
    let seconds = |elapsed: Duration| elapsed.as_secs_f64();
    let first = of(&|f| mib_per_s(f.tree_bytes, f.ours[0].elapsed));
    let restic_first = of(&|f| mib_per_s(f.tree_bytes, f.restic[0].0));
    let sha = of(&|f| mib_per_s(f.tree_bytes, f.sha));
    row(
        "1. first snapshot, MiB/s",
        spread(&first, 0),
        spread(&restic_first, 0),
        &format!(
            "≥ 1.25 × restic (sha256sum of every file: {:.0} MiB/s)",
            median(&sha)
        ),
        median(&first) >= 1.25 * median(&restic_first),
    );
    let unchanged = of(&|f| seconds(f.ours[1].elapsed));
    let restic_unchanged = of(&|f| seconds(f.restic[1].0));
    let unchanged_new = of(&|f| {
        if f.ours[1].recorded {
            f.ours[1].stats.new_bytes as f64
        } else {
            0.0
        }
    });
    row(
        "2. unchanged tree: seconds",
        spread(&unchanged, 2),
        spread(&restic_unchanged, 2),
        "≤ 0.5 × restic, nothing stored",
        median(&unchanged) <= 0.5 * median(&restic_unchanged)
            && unchanged_new.iter().all(|bytes| *bytes == 0.0),
    );
    let changed_time = of(&|f| seconds(f.ours[2].elapsed));
    let restic_changed_time = of(&|f| seconds(f.restic[2].0));
    row(
        "3. 1 % changed: seconds",
        spread(&changed_time, 2),
        spread(&restic_changed_time, 2),
        "≤ 0.5 × restic",
        median(&changed_time) <= 0.5 * median(&restic_changed_time),
    );
    let changed_new = of(&|f| f.ours[2].stats.new_bytes as f64);
    let restic_changed_new = of(&|f| f.restic[2].1 as f64);
    row(
        "3. 1 % changed: new bytes stored",
        spread(&changed_new, 0),
        spread(&restic_changed_new, 0),
        "≤ restic",
        median(&changed_new) <= median(&restic_changed_new),
    );
    let restore = of(&|f| mib_per_s(f.restored_bytes, f.ours_restore));
    let restic_restore = of(&|f| mib_per_s(f.restored_bytes, f.restic_restore));
    row(
        "4. restore latest, MiB/s",
        spread(&restore, 0),
        spread(&restic_restore, 0),
        "≥ 1.25 × restic",
        median(&restore) >= 1.25 * median(&restic_restore),
    );
    let store = of(&|f| f.ours_store as f64 / MIB as f64);
    let restic_store = of(&|f| f.restic_store as f64 / MIB as f64);
    row(
        "5. store size after 3 snapshots, MiB",
        spread(&store, 1),
        spread(&restic_store, 1),
        "≤ restic",
        median(&store) <= median(&restic_store),
    );
    row(
        "5. peak RSS over all runs, MiB",
        format!("{:.0}", peak_ours as f64 / MIB as f64),
        format!("{:.0}", peak_restic as f64 / MIB as f64),
        "≤ 256 MiB",
        peak_ours <= 256 * MIB,
    );
    println!();
    println!("targets met: {met_count} of 7");
    println!(
        "backup-bot, last run: {} distinct chunks; snapshot 1 stored {} bytes in {} blocks \
         (restic added {}); snapshot 3 read {} bytes and stored {} new bytes in {} new blocks.",
        last.ours[2].stats.chunks,
        last.ours[0].stats.new_bytes,
        last.ours[0].stats.new_blocks,
        last.restic[0].1,
        last.ours[2].stats.bytes_read,
        last.ours[2].stats.new_bytes,
        last.ours[2].stats.new_blocks
    );
    println!(
        "backup-bot: syncing packs (durable before pinned) took {} s of the first snapshot \
         and {} s of the third.",
        spread(&of(&|f| seconds(f.ours[0].synced_in)), 2),
        spread(&of(&|f| seconds(f.ours[2].synced_in)), 2),
    );
    println!(
        "restic's restore returned before its tree was on disk: writing it took {} s more \
         (backup-bot's restore syncs before it swaps the tree in; that is in its time).",
        spread(&of(&|f| seconds(f.restic_restore_unsynced)), 2),
    );
    // Removed at the end, not between runs: ext4 does not reuse an inode freed within the
    // last minutes, and looks at each one when it makes a file, so a run that followed the
    // removal of the previous run's ~70,000 files made its files several times slower (the
    // restore's file creations went from 0.4 s to 7-12 s; `perf`: `recently_deleted` and
    // `find_inode_bit` in the kernel).
    for number in 1..=runs {
        fs::remove_dir_all(work_dir.join(format!("run-{number}")))?;
    }
    println!("work files removed from {}", work_dir.display());
    Ok(())
}

/// The file that marks a work folder as made by `backup-bot demo` or `bench`.
const WORK_DIR_MARK: &str = ".backup-bot-work-dir";

/// Makes `work_dir` an empty work folder of `demo` or `bench`: created if missing, emptied
/// only if one of them made it (it holds their mark) or it is empty; any other folder is
/// refused, so that a mistyped `--work-dir` deletes nothing.
pub fn claim_work_dir(work_dir: &Path) -> Result<()> {
    match fs::read_dir(work_dir) {
        Ok(mut items) => {
            let ours = work_dir.join(WORK_DIR_MARK).exists();
            if !ours && items.next().is_some() {
                anyhow::bail!(
                    "{} holds files backup-bot did not put there: choose another --work-dir",
                    work_dir.display()
                );
            }
            let parent = rustix::fs::open(
                work_dir
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            let name = work_dir.file_name().context("a work folder needs a name")?;
            crate::staging::remove_tree(&parent, name)?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", work_dir.display())),
    }
    fs::create_dir_all(work_dir)?;
    fs::write(work_dir.join(WORK_DIR_MARK), b"")?;
    Ok(())
}
