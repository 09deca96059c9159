//! A directory tree as the snapshots see it: its directories and regular files in byte order
//! of their paths, with sizes, execute bits and what tells a changed file from an unchanged
//! one; and the checks that keep a restored path inside its target.
//!
//! Symbolic links and other special files are refused rather than silently skipped: a backup
//! that drops files is worse than none. Paths must be UTF-8, as the manifest stores them.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// What says a file is unchanged without reading it: if all of this is equal, the content is
/// taken as equal (as restic and git do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub device: u64,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> Self {
        let nanos =
            |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Self {
            size: meta.len(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// One entry of a tree, relative to its root.
#[derive(Debug)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated, UTF-8.
    pub relative: String,
    /// Whether it is a directory (otherwise a regular file).
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Whether any execute bit is set (files only).
    pub executable: bool,
    /// What tells whether the file changed.
    pub stamp: FileStamp,
}

/// What an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackStats {
    /// Regular files packed.
    pub files: u64,
    /// Directories packed (the root excluded).
    pub directories: u64,
    /// Bytes of file content packed.
    pub content_bytes: u64,
}

/// Lists the tree under `root` in byte order of paths, refusing special files and paths that
/// are not UTF-8.
pub fn list_tree(root: &Path) -> Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let read = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for item in read {
            let item = item?;
            let child = relative.join(item.file_name());
            let meta = fs::symlink_metadata(item.path())?;
            let Some(relative) = child.to_str().map(str::to_string) else {
                bail!("{} is not a UTF-8 path", item.path().display());
            };
            if meta.is_dir() {
                entries.push(TreeEntry {
                    relative,
                    is_dir: true,
                    size: 0,
                    executable: false,
                    stamp: FileStamp::of(&meta),
                });
                pending.push(child);
            } else if meta.is_file() {
                entries.push(TreeEntry {
                    relative,
                    is_dir: false,
                    size: meta.len(),
                    executable: meta.permissions().mode() & 0o111 != 0,
                    stamp: FileStamp::of(&meta),
                });
            } else {
                bail!(
                    "{} is neither a regular file nor a directory (links and devices are not backed up)",
                    item.path().display()
                );
            }
        }
    }
    entries.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    Ok(entries)
}

/// Checks that a stored path stays inside the directory it is restored into.
pub fn safe_relative_path(path: &Path) -> Result<&Path> {
    if path.as_os_str().is_empty() {
        bail!("unsafe path: empty");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!("unsafe path: {}", path.display())
            }
        }
    }
    Ok(path)
}

/// Whether two trees hold the same directories and the same files with the same bytes and
/// execute bits; returns the first difference found.
pub fn first_difference(left: &Path, right: &Path) -> Result<Option<String>> {
    let left_entries = list_tree(left)?;
    let right_entries = list_tree(right)?;
    if left_entries.len() != right_entries.len() {
        return Ok(Some(format!(
            "{} entries against {}",
            left_entries.len(),
            right_entries.len()
        )));
    }
    for (a, b) in left_entries.iter().zip(&right_entries) {
        if a.relative != b.relative || a.is_dir != b.is_dir || a.executable != b.executable {
            return Ok(Some(format!("{} differs from {}", a.relative, b.relative)));
        }
        if !a.is_dir && fs::read(left.join(&a.relative))? != fs::read(right.join(&b.relative))? {
            return Ok(Some(format!("content of {}", a.relative)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::write_sample_tree as sample_tree;

    #[test]
    fn entries_come_in_byte_order_with_execute_bits() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        let entries = list_tree(root.path()).unwrap();
        let paths: Vec<&str> = entries
            .iter()
            .map(|entry| entry.relative.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "README",
                "data",
                "data/blob.bin",
                "data/nested",
                "data/nested/deep.txt",
                "empty",
                "run.sh"
            ]
        );
        let run = entries
            .iter()
            .find(|entry| entry.relative == "run.sh")
            .unwrap();
        assert!(run.executable && !run.is_dir);
    }

    #[test]
    fn difference_is_reported() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        sample_tree(other.path()).unwrap();
        assert_eq!(first_difference(root.path(), other.path()).unwrap(), None);
        fs::write(other.path().join("data/blob.bin"), b"other").unwrap();
        assert_eq!(
            first_difference(root.path(), other.path()).unwrap(),
            Some("content of data/blob.bin".to_string())
        );
    }

    #[test]
    fn symlinks_are_refused() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
        let error = list_tree(root.path()).unwrap_err();
        assert!(
            error.to_string().contains("neither a regular file"),
            "{error}"
        );
    }

    #[test]
    fn paths_leaving_the_target_are_refused() {
        for path in ["../escape", "/tmp/absolute", "a/../../escape", ""] {
            let error = safe_relative_path(Path::new(path)).unwrap_err();
            assert!(error.to_string().starts_with("unsafe path"), "{error}");
        }
        assert!(safe_relative_path(Path::new("a/b.txt")).is_ok());
    }
}
