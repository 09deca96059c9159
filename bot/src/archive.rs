//! Deterministic archives of a directory tree, and their safe unpacking.
//!
//! An archive is a tar file whose entries are the tree's directories and regular files in
//! byte order of their paths, with every timestamp, owner and name field zeroed and modes
//! reduced to 0755 (executables and directories) or 0644. The same tree therefore always
//! gives the same bytes, and so the same CID. Symbolic links and other special files are
//! refused rather than silently skipped: a backup that drops files is worse than none.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Trees larger than this show a progress bar while they are packed.
const PROGRESS_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;

/// One entry of a tree, relative to its root.
struct TreeEntry {
    /// Path relative to the root, `/`-separated.
    relative: PathBuf,
    /// Whether it is a directory (otherwise a regular file).
    is_dir: bool,
    /// Size in bytes (0 for directories).
    size: u64,
    /// Whether any execute bit is set (files only).
    executable: bool,
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

/// Lists the tree under `root` in byte order of paths, refusing special files.
fn list_tree(root: &Path) -> Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let read = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for item in read {
            let item = item?;
            let child = relative.join(item.file_name());
            let meta = fs::symlink_metadata(item.path())?;
            if meta.is_dir() {
                entries.push(TreeEntry {
                    relative: child.clone(),
                    is_dir: true,
                    size: 0,
                    executable: false,
                });
                pending.push(child);
            } else if meta.is_file() {
                entries.push(TreeEntry {
                    relative: child,
                    is_dir: false,
                    size: meta.len(),
                    executable: meta.permissions().mode() & 0o111 != 0,
                });
            } else {
                bail!(
                    "{} is neither a regular file nor a directory (links and devices are not backed up)",
                    item.path().display()
                );
            }
        }
    }
    entries.sort_by(|a, b| a.relative.as_os_str().cmp(b.relative.as_os_str()));
    Ok(entries)
}

/// A tar header with every variable field fixed.
fn fixed_header(entry: &TreeEntry) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(entry.size);
    if entry.is_dir {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
    } else {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if entry.executable { 0o755 } else { 0o644 });
    }
    header
}

/// Packs the tree under `root` into a deterministic archive written to `out`.
pub fn pack(root: &Path, out: impl Write) -> Result<PackStats> {
    let entries = list_tree(root)?;
    let total: u64 = entries.iter().map(|entry| entry.size).sum();
    let progress = if total >= PROGRESS_THRESHOLD_BYTES {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("packing {bytes}/{total_bytes} {wide_bar} {eta}")
                .context("progress bar template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut stats = PackStats {
        files: 0,
        directories: 0,
        content_bytes: 0,
    };
    let mut builder = tar::Builder::new(out);
    for entry in &entries {
        let mut header = fixed_header(entry);
        if entry.is_dir {
            builder.append_data(&mut header, &entry.relative, io::empty())?;
            stats.directories += 1;
        } else {
            let path = root.join(&entry.relative);
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            // A file that changes size while packed would corrupt the archive: read exactly
            // the size listed, and fail if it is not there.
            let mut content = progress.wrap_read(file.take(entry.size));
            builder.append_data(&mut header, &entry.relative, &mut content)?;
            stats.files += 1;
            stats.content_bytes += entry.size;
        }
    }
    builder.into_inner()?.flush()?;
    progress.finish_and_clear();
    Ok(stats)
}

/// Checks that an archive path stays inside the directory it is unpacked into.
fn safe_relative_path(path: &Path) -> Result<&Path> {
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

/// Unpacks an archive made by [`pack`] into `dest` (created if missing), refusing any entry
/// that is not a regular file or directory or whose path would leave `dest`.
pub fn unpack(archive: impl Read, dest: &Path) -> Result<PackStats> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut stats = PackStats {
        files: 0,
        directories: 0,
        content_bytes: 0,
    };
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let relative = entry.path()?.into_owned();
        let target = dest.join(safe_relative_path(&relative)?);
        let mode = entry.header().mode()? & 0o755;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target)?;
                stats.directories += 1;
            }
            tar::EntryType::Regular => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut file = File::create(&target)
                    .with_context(|| format!("creating {}", target.display()))?;
                stats.content_bytes += io::copy(&mut entry, &mut file)?;
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                stats.files += 1;
            }
            other => bail!("unsafe entry type {other:?} for {}", relative.display()),
        }
    }
    Ok(stats)
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
            return Ok(Some(format!(
                "{} differs from {}",
                a.relative.display(),
                b.relative.display()
            )));
        }
        if !a.is_dir && fs::read(left.join(&a.relative))? != fs::read(right.join(&b.relative))? {
            return Ok(Some(format!("content of {}", a.relative.display())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::write_sample_tree as sample_tree;

    fn packed(root: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        pack(root, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn same_tree_gives_same_bytes() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        sample_tree(first.path()).unwrap();
        // Created in another order, at another time, with other permissions on plain files.
        fs::create_dir_all(second.path().join("empty")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        sample_tree(second.path()).unwrap();
        fs::set_permissions(
            second.path().join("README"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(packed(first.path()), packed(second.path()));
    }

    #[test]
    fn changed_content_gives_other_bytes() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        let before = packed(root.path());
        fs::write(root.path().join("data/nested/deep.txt"), b"Deep").unwrap();
        assert_ne!(before, packed(root.path()));
    }

    #[test]
    fn round_trip_restores_identical_tree() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        let bytes = packed(root.path());
        let restored = tempfile::tempdir().unwrap();
        let stats = unpack(&bytes[..], restored.path()).unwrap();
        assert_eq!(
            stats,
            PackStats {
                files: 4,
                directories: 3,
                content_bytes: 10 + 256 + 4 + 10
            }
        );
        assert_eq!(
            first_difference(root.path(), restored.path()).unwrap(),
            None
        );
        let mode = fs::metadata(restored.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn difference_is_reported() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        sample_tree(other.path()).unwrap();
        fs::write(other.path().join("data/blob.bin"), b"other").unwrap();
        assert_eq!(
            first_difference(root.path(), other.path()).unwrap(),
            Some("content of data/blob.bin".to_string())
        );
    }

    #[test]
    fn symlinks_are_refused_when_packing() {
        let root = tempfile::tempdir().unwrap();
        sample_tree(root.path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
        let error = pack(root.path(), Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("neither a regular file"),
            "{error}"
        );
    }

    /// An archive with one file entry under `path`, written without the tar crate's own
    /// path checks (which refuse `..` before we would see it).
    fn archive_with_raw_path(path: &[u8], entry_type: tar::EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        header.set_size(4);
        header.set_mode(0o644);
        header.set_entry_type(entry_type);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"evil"[..]).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn unsafe_paths_are_refused_when_unpacking() {
        for path in [&b"../escape"[..], b"/tmp/absolute", b"a/../../escape"] {
            let dest = tempfile::tempdir().unwrap();
            let bytes = archive_with_raw_path(path, tar::EntryType::Regular);
            let error = unpack(&bytes[..], &dest.path().join("restore")).unwrap_err();
            assert!(error.to_string().starts_with("unsafe path"), "{error}");
            assert!(!dest.path().join("escape").exists());
        }
    }

    #[test]
    fn links_are_refused_when_unpacking() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = archive_with_raw_path(b"link", tar::EntryType::Symlink);
        let error = unpack(&bytes[..], dest.path()).unwrap_err();
        assert!(
            error.to_string().starts_with("unsafe entry type"),
            "{error}"
        );
    }
}
