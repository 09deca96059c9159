//! The benchmark's content: pseudo-random bytes no compressor shrinks, a generated tree of
//! mixed files, and the change between its second and third snapshots.

use super::MIB;
use crate::tree::{self, EntryKind};
use anyhow::{ensure, Context, Result};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// The seed of the benchmark's trees and of their change.
pub(super) const TREE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

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

/// The next pseudo-random number below `bound`.
fn below(state: &mut u64, bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes, state);
    u64::from_le_bytes(bytes) % bound
}

/// Writes a tree of about `total_mib` MiB under `root` with mixed files: 3/5 of it in large
/// random files (24 to 64 MiB), 1/5 in medium random files (64 KiB to 4 MiB), 1/8 in
/// repetitive text files, the rest in small files of a few KiB. Returns the file paths.
pub(super) fn generate_tree(root: &Path, total_mib: u64, state: &mut u64) -> Result<Vec<String>> {
    let total = total_mib * MIB;
    let mut files = Vec::new();
    let mut write = |relative: String, content: &[u8]| -> Result<()> {
        let path = root.join(&relative);
        fs::create_dir_all(path.parent().context("a file has a folder")?)?;
        fs::write(&path, content)?;
        files.push(relative);
        Ok(())
    };
    let mut buffer = Vec::new();
    let budget = |share: u64, min: u64, max: u64, kind: &str, state: &mut u64| {
        let mut sizes = Vec::new();
        let mut left = share;
        while left >= min {
            let size = (min + below(state, max - min + 1)).min(left);
            sizes.push((kind.to_string(), size));
            left -= size;
        }
        sizes
    };
    let mut plan = budget(total * 3 / 5, 24 * MIB, 64 * MIB, "large", state);
    plan.extend(budget(total / 5, 64 * 1024, 4 * MIB, "medium", state));
    plan.extend(budget(total / 8, 2 * MIB, 16 * MIB, "text", state));
    let written: u64 = plan.iter().map(|(_, size)| size).sum();
    plan.extend(budget(
        total.saturating_sub(written),
        512,
        8 * 1024,
        "small",
        state,
    ));
    for (index, (kind, size)) in plan.into_iter().enumerate() {
        buffer.resize(size as usize, 0);
        if kind == "text" {
            let line = format!("log line {index}: the quick brown fox jumps over the lazy dog\n");
            for (byte, value) in buffer.iter_mut().zip(line.bytes().cycle()) {
                *byte = value;
            }
        } else {
            fill_random(&mut buffer, state);
        }
        write(
            format!("{kind}/dir-{}/{kind}-{index:05}", index % 7),
            &buffer,
        )?;
    }
    Ok(files)
}

/// Writes `count` small files of random bytes (16 B to 1 KiB) under `root`, a thousand to a
/// folder; returns their bytes.
pub(super) fn generate_small_files(root: &Path, count: u64, state: &mut u64) -> Result<u64> {
    let mut bytes = 0;
    let mut buffer = [0u8; 1024];
    for index in 0..count {
        let dir = root.join(format!("dir-{:04}", index / 1000));
        if index % 1000 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let size = 16 + below(state, 1024 - 16 + 1) as usize;
        fill_random(&mut buffer[..size], state);
        fs::write(dir.join(format!("file-{index:07}")), &buffer[..size])?;
        bytes += size as u64;
    }
    Ok(bytes)
}

/// Changes 1 % of `files` (half appended to, half edited in the middle) and adds 3 files of
/// 1 MiB; returns the bytes written.
pub(super) fn change_tree(root: &Path, files: &[String], state: &mut u64) -> Result<u64> {
    let mut changed = 0u64;
    let mut patch = vec![0u8; 4096];
    let count = (files.len() / 100).max(2);
    for step in 0..count {
        let index = below(state, files.len() as u64) as usize;
        fill_random(&mut patch, state);
        let path = root.join(&files[index]);
        let mut file = fs::OpenOptions::new().write(true).open(&path)?;
        let len = file.metadata()?.len();
        if step % 2 == 0 {
            file.seek(SeekFrom::End(0))?;
        } else {
            file.seek(SeekFrom::Start(len / 2))?;
        }
        file.write_all(&patch)?;
        changed += patch.len() as u64;
    }
    let mut added = vec![0u8; MIB as usize];
    for index in 0..3 {
        fill_random(&mut added, state);
        fs::write(root.join(format!("added-{index}.bin")), &added)?;
        changed += MIB;
    }
    Ok(changed)
}

/// `bench --write-tree`: writes the benchmark's tree of about `total_mib` MiB into `root`, which
/// must not exist yet; returns how many files it wrote.
pub fn write_tree(root: &Path, total_mib: u64) -> Result<usize> {
    ensure!(
        !root.exists(),
        "{} exists: the tree is written into a new folder",
        root.display()
    );
    let mut state = TREE_SEED;
    Ok(generate_tree(root, total_mib, &mut state)?.len())
}

/// `bench --change-tree`: changes the tree in `root` as the benchmark changes its tree before
/// the third snapshot (see [`change_tree`]), its files taken in the order of their names;
/// returns the bytes written.
pub fn change_written_tree(root: &Path) -> Result<u64> {
    let mut files = Vec::new();
    for entry in tree::list_tree(root)?.entries {
        if matches!(entry.kind, EntryKind::File { .. }) {
            files.push(String::from_utf8(entry.relative).context("a file name is not UTF-8")?);
        }
    }
    files.sort();
    let mut state = TREE_SEED;
    change_tree(root, &files, &mut state)
}
