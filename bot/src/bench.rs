//! `backup-bot bench`: throughput of the snapshot pipeline (pack, encrypt, hash to a UnixFS
//! CID and store), next to `sha256sum` over the same files and `restic backup` of the same
//! tree, measured in the same run. A benchmark, not a test: it prints what it measured.

use crate::archive;
use crate::keys;
use crate::store::{ContentStore, LocalStore};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Size of each generated file.
const FILE_SIZE: usize = 16 * 1024 * 1024;

/// Fills `buffer` with pseudo-random bytes (xorshift64*), which no compressor shrinks.
fn fill_random(buffer: &mut [u8], state: &mut u64) {
    for chunk in buffer.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&value[..chunk.len()]);
    }
}

/// Writes a tree of about `total_mib` MiB under `root`: 16 MiB files of random bytes in a few
/// folders, plus a hundred small files.
fn generate_tree(root: &Path, total_mib: usize) -> Result<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buffer = vec![0u8; FILE_SIZE];
    let files = (total_mib * 1024 * 1024).div_ceil(FILE_SIZE);
    let mut written = 0u64;
    for index in 0..files {
        let dir = root.join(format!("dir-{}", index % 4));
        fs::create_dir_all(&dir)?;
        fill_random(&mut buffer, &mut state);
        fs::write(dir.join(format!("blob-{index:03}.bin")), &buffer)?;
        written += FILE_SIZE as u64;
    }
    let small = root.join("small");
    fs::create_dir_all(&small)?;
    for index in 0..100 {
        fs::write(
            small.join(format!("note-{index}.txt")),
            format!("note {index}\n"),
        )?;
        written += format!("note {index}\n").len() as u64;
    }
    Ok(written)
}

/// MiB per second.
fn throughput(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Runs `command`, failing with its output if it fails; returns how long it took.
fn timed(command: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(start.elapsed())
}

/// Generates a tree of about `total_mib` MiB in `work_dir` (emptied first) and prints the
/// measured throughputs.
pub async fn run(total_mib: usize, work_dir: &Path) -> Result<()> {
    if work_dir.exists() {
        fs::remove_dir_all(work_dir)?;
    }
    let tree = work_dir.join("tree");
    let bytes = generate_tree(&tree, total_mib)?;
    println!(
        "tree: {} MiB in {} ({} files)",
        bytes / (1024 * 1024),
        tree.display(),
        (total_mib * 1024 * 1024).div_ceil(FILE_SIZE) + 100
    );
    // Warm the page cache equally for everyone: read it all once.
    timed(Command::new("sh").arg("-c").arg(format!(
        "find '{}' -type f -exec cat {{}} + > /dev/null",
        tree.display()
    )))?;

    let store = ContentStore::Local(LocalStore::open(work_dir.join("store"))?);
    let identity = age::x25519::Identity::generate();
    let start = Instant::now();
    let archive_path = work_dir.join("archive.age");
    let file = fs::File::create(&archive_path)?;
    let mut encrypted = keys::encrypt_to(&[identity.to_public()], BufWriter::new(file))?;
    archive::pack(&tree, &mut encrypted)?;
    encrypted.finish()?.flush()?;
    let cid = store.put(&archive_path).await?;
    let ours = start.elapsed();

    let sha = timed(Command::new("sh").arg("-c").arg(format!(
        "find '{}' -type f -exec sha256sum {{}} + > /dev/null",
        tree.display()
    )))?;
    println!("| pipeline | seconds | MiB/s | ratio to sha256sum |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, elapsed: Duration| {
        println!(
            "| {name} | {:.2} | {:.1} | {:.2} |",
            elapsed.as_secs_f64(),
            throughput(bytes, elapsed),
            sha.as_secs_f64() / elapsed.as_secs_f64()
        );
    };
    row("sha256sum of every file", sha);
    row(
        "backup-bot: tar + age + UnixFS CID + local store (one thread)",
        ours,
    );
    match Command::new("restic").arg("version").output() {
        Ok(output) if output.status.success() => {
            let repository = work_dir.join("restic-repo");
            let restic = || {
                let mut command = Command::new("restic");
                command
                    .arg("--repo")
                    .arg(&repository)
                    .env("RESTIC_PASSWORD", "benchmark")
                    .arg("--quiet");
                command
            };
            timed(restic().arg("init"))?;
            let elapsed = timed(restic().arg("backup").arg(&tree))?;
            let version = String::from_utf8_lossy(&output.stdout);
            row(&format!("restic backup ({})", version.trim()), elapsed);
        }
        _ => println!("| restic backup | not installed (apt-get install restic) | | |"),
    }
    println!("snapshot CID {cid}; work files in {}", work_dir.display());
    Ok(())
}
