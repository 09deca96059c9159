//! A directory tree as the snapshots see it, read so that it cannot be redirected: every
//! folder and file is opened relative to the folder above it (`openat2` beneath the root, no
//! symbolic link followed in any component, `O_NOFOLLOW`, `O_NONBLOCK`), and what is opened
//! must be what was listed (same device and inode, same kind). A link or FIFO swapped in
//! between the listing and the reading is skipped, never followed, never waited on.
//!
//! - Folders, regular files and symbolic links are kept: links as their target text, never
//!   followed; permission bits and modification times of all three.
//! - Sockets, FIFOs and devices are skipped, and reported.
//! - A file that vanishes, changes kind or changes size while it is read is skipped and
//!   reported: the rest of the tree is still backed up.
//! - Names are bytes: a name that is not UTF-8 is kept as it is.

use anyhow::{bail, Context, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Deepest folder nesting a scan follows; deeper folders are skipped and reported.
const MAX_DEPTH: usize = 256;

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
    /// The stamp of the open `file` now.
    pub fn of_file(file: &fs::File) -> Result<Self> {
        Ok(Self::of(&rustix::fs::fstat(file)?))
    }

    fn of(stat: &rustix::fs::Stat) -> Self {
        let nanos =
            |seconds: i64, nanos: u64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Self {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            #[allow(clippy::useless_conversion)]
            mtime_ns: nanos(stat.st_mtime.into(), stat.st_mtime_nsec.into()),
            #[allow(clippy::useless_conversion)]
            ctime_ns: nanos(stat.st_ctime.into(), stat.st_ctime_nsec.into()),
            inode: stat.st_ino,
            #[allow(clippy::useless_conversion)]
            device: stat.st_dev.into(),
        }
    }
}

/// What an entry of a tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Size in bytes when listed.
        size: u64,
    },
    /// A symbolic link, kept as its target's bytes.
    Symlink {
        /// What the link points to, never followed.
        target: Vec<u8>,
    },
}

/// One entry of a tree, relative to its root.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated bytes.
    pub relative: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// What tells whether the entry changed (its device and inode also tell that a file
    /// opened later is the one listed, and which entries are names of one file).
    pub stamp: FileStamp,
    /// Number of names the file has (hard links), in the tree or outside it.
    pub links: u64,
}

impl TreeEntry {
    /// The path, for messages (not UTF-8 bytes replaced).
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.relative).into_owned()
    }

    /// Bytes of content: a file's size, else 0.
    pub fn size(&self) -> u64 {
        match self.kind {
            EntryKind::File { size } => size,
            _ => 0,
        }
    }
}

/// An entry left out of a snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Its path relative to the root (not UTF-8 bytes replaced).
    pub path: String,
    /// Why it was left out.
    pub reason: String,
}

impl Skipped {
    /// `entry`, left out for `reason`.
    pub fn of(entry: &TreeEntry, reason: &str) -> Self {
        Self {
            path: entry.display(),
            reason: reason.to_string(),
        }
    }
}

/// A listed tree: its root folder, held open, and its entries, each folder before what it
/// holds, names in byte order.
pub struct Listing {
    /// The root, from which its files are opened.
    pub root: TreeRoot,
    /// The entries kept.
    pub entries: Vec<TreeEntry>,
    /// The entries left out.
    pub skipped: Vec<Skipped>,
}

/// How entries below the root are opened: beneath it, through no symbolic link.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Opens the folder `root` (the operator's choice: it may itself be a link).
fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", root.display()))
}

/// Why an entry listed is left out when it is opened: it changed since it was listed.
const CHANGED: &str = "changed during the scan";

/// Opens `relative` beneath `root` with `flags`, following no link; `Ok(Err(reason))` when it
/// is to be skipped: gone, a link took its place, or this process may not read it.
fn open_beneath(
    root: &OwnedFd,
    relative: &[u8],
    flags: OFlags,
) -> Result<Result<OwnedFd, &'static str>> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    match rustix::fs::openat2(root, relative, flags, Mode::empty(), beneath()) {
        Ok(fd) => Ok(Ok(fd)),
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => Ok(Err(CHANGED)),
        Err(Errno::ACCESS | Errno::PERM) => Ok(Err("permission denied")),
        Err(Errno::NOSYS) => bail!("the scan needs openat2 (Linux 5.6 or later)"),
        Err(error) => {
            Err(error).with_context(|| format!("opening {}", String::from_utf8_lossy(relative)))
        }
    }
}

/// Whether `fd` is the entry listed as `entry`: same device, inode and kind.
fn is_listed(fd: &OwnedFd, entry: &TreeEntry) -> Result<bool> {
    let stat = rustix::fs::fstat(fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let same_kind = matches!(
        (&entry.kind, kind),
        (EntryKind::Dir, FileType::Directory) | (EntryKind::File { .. }, FileType::RegularFile)
    );
    let stamp = FileStamp::of(&stat);
    Ok(same_kind && stamp.inode == entry.stamp.inode && stamp.device == entry.stamp.device)
}

/// `parent/name` (or `name` at the root).
fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// What a walk yields next: an entry kept, or one left out.
pub enum Walked {
    /// A folder, regular file or symbolic link.
    Entry(TreeEntry),
    /// An entry left out, and why.
    Skipped(Skipped),
}

/// A folder being walked: its handle, path and the names in it not walked yet.
struct Frame {
    dir: OwnedFd,
    relative: Vec<u8>,
    names: std::vec::IntoIter<Vec<u8>>,
    depth: usize,
}

/// The tree under a root, walked in the order [`list_tree`] lists it, one folder's names at
/// a time: what is held is the names left in the folders on the current path, not the tree.
pub struct TreeWalk {
    root: OwnedFd,
    stack: Vec<Frame>,
}

/// The names in the folder open as `dir` (`.` and `..` left out), in byte order.
fn sorted_names(dir: &OwnedFd) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let name = item?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl TreeWalk {
    /// Starts a walk of the tree under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let root_fd = open_root(root)?;
        let names =
            sorted_names(&root_fd).with_context(|| format!("listing {}", root.display()))?;
        let frame = Frame {
            dir: root_fd.try_clone()?,
            relative: Vec::new(),
            names: names.into_iter(),
            depth: 0,
        };
        Ok(Self {
            root: root_fd,
            stack: vec![frame],
        })
    }

    /// A handle on the walk's root, from which its files are opened ([`TreeRoot::open_file`]).
    pub fn root(&self) -> Result<TreeRoot> {
        Ok(TreeRoot(self.root.try_clone()?))
    }

    /// The next entry: each folder before its content, names in byte order; other kinds, and
    /// folders that change while listed, are left out. `None` once the tree is walked.
    pub fn next_item(&mut self) -> Result<Option<Walked>> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(name) = frame.names.next() else {
                self.stack.pop();
                continue;
            };
            let path = join(&frame.relative, &name);
            let (dir, depth) = (&frame.dir, frame.depth);
            let skip = |reason: &str| {
                Ok(Some(Walked::Skipped(Skipped {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    reason: reason.to_string(),
                })))
            };
            let stat = match rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => return skip("removed during the scan"),
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("reading {}", String::from_utf8_lossy(&path)))
                }
            };
            let kind = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => EntryKind::Dir,
                FileType::RegularFile => EntryKind::File {
                    size: u64::try_from(stat.st_size).unwrap_or(0),
                },
                FileType::Symlink => match rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())
                {
                    Ok(target) => EntryKind::Symlink {
                        target: target.into_bytes(),
                    },
                    Err(Errno::NOENT | Errno::INVAL) => return skip(CHANGED),
                    Err(error) => return Err(error.into()),
                },
                FileType::Fifo => return skip("a FIFO: not backed up"),
                FileType::Socket => return skip("a socket: not backed up"),
                _ => return skip("a device: not backed up"),
            };
            let stamp = FileStamp::of(&stat);
            let entry = TreeEntry {
                relative: path.clone(),
                kind,
                mode: stat.st_mode & 0o7777,
                mtime_ns: i64::try_from(stamp.mtime_ns).unwrap_or(0),
                stamp,
                #[allow(clippy::useless_conversion)]
                links: stat.st_nlink.into(),
            };
            if entry.kind != EntryKind::Dir {
                return Ok(Some(Walked::Entry(entry)));
            }
            if depth + 1 >= MAX_DEPTH {
                return skip("nested too deep");
            }
            let child = match open_beneath(&self.root, &path, OFlags::RDONLY | OFlags::DIRECTORY)? {
                Ok(child) if is_listed(&child, &entry)? => child,
                Ok(_) => return skip(CHANGED),
                Err(reason) => return skip(reason),
            };
            let names = sorted_names(&child)
                .with_context(|| format!("listing {}", String::from_utf8_lossy(&path)))?;
            self.stack.push(Frame {
                dir: child,
                relative: path,
                names: names.into_iter(),
                depth: depth + 1,
            });
            return Ok(Some(Walked::Entry(entry)));
        }
    }
}

/// The root of a walked tree, held open: its files are opened beneath it.
pub struct TreeRoot(OwnedFd);

impl TreeRoot {
    /// Opens the regular file `entry` for reading, beneath the root and through no link;
    /// `Ok(Err(reason))` when it is to be skipped: no longer the file listed (gone, replaced,
    /// a link or FIFO swapped in), or not readable by this process.
    pub fn open_file(&self, entry: &TreeEntry) -> Result<Result<fs::File, &'static str>> {
        Ok(
            match open_beneath(&self.0, &entry.relative, OFlags::RDONLY)? {
                Ok(fd) if is_listed(&fd, entry)? => Ok(fs::File::from(fd)),
                Ok(_) => Err(CHANGED),
                Err(reason) => Err(reason),
            },
        )
    }

    /// Why a file whose size or time changed while it was read is left out.
    pub const CHANGED_WHILE_READ: &'static str = CHANGED;
}

/// Lists the whole tree under `root` (see [`TreeWalk`]).
pub fn list_tree(root: &Path) -> Result<Listing> {
    let mut walk = TreeWalk::open(root)?;
    let mut listing = Listing {
        root: walk.root()?,
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    while let Some(item) = walk.next_item()? {
        match item {
            Walked::Entry(entry) => listing.entries.push(entry),
            Walked::Skipped(skipped) => listing.skipped.push(skipped),
        }
    }
    Ok(listing)
}

/// Checks that a stored path stays inside the folder it is restored into: relative, no empty,
/// `.` or `..` component, no NUL byte.
pub fn safe_relative_path(path: &[u8]) -> Result<&[u8]> {
    let unsafe_path = || format!("unsafe path: {}", String::from_utf8_lossy(path));
    if path.is_empty() || path.contains(&0) {
        bail!(unsafe_path());
    }
    for component in path.split(|byte| *byte == b'/') {
        if component.is_empty() || component == b"." || component == b".." {
            bail!(unsafe_path());
        }
    }
    Ok(path)
}

/// Whether two trees hold the same entries with the same kinds, permission bits, modification
/// times, link targets, bytes and hard links (which names are one file); returns the first
/// difference found.
pub fn first_difference(left: &Path, right: &Path) -> Result<Option<String>> {
    let left_tree = list_tree(left)?;
    let right_tree = list_tree(right)?;
    // For each file, the first path in the tree naming the same file: the hard links.
    let mut left_names = HashMap::new();
    let mut right_names = HashMap::new();
    if left_tree.entries.len() != right_tree.entries.len() {
        return Ok(Some(format!(
            "{} entries against {}",
            left_tree.entries.len(),
            right_tree.entries.len()
        )));
    }
    for (a, b) in left_tree.entries.iter().zip(&right_tree.entries) {
        let same_kind = match (&a.kind, &b.kind) {
            (EntryKind::File { .. }, EntryKind::File { .. }) => true,
            (left, right) => left == right,
        };
        if a.relative != b.relative || !same_kind {
            return Ok(Some(format!(
                "{} differs from {}",
                a.display(),
                b.display()
            )));
        }
        // A link's own permission bits are not kept by Linux.
        if a.mode != b.mode && !matches!(a.kind, EntryKind::Symlink { .. }) {
            return Ok(Some(format!(
                "mode of {}: {:o} against {:o}",
                a.display(),
                a.mode,
                b.mode
            )));
        }
        if a.mtime_ns != b.mtime_ns {
            return Ok(Some(format!("modification time of {}", a.display())));
        }
        if matches!(a.kind, EntryKind::File { .. }) {
            let read = |tree: &Listing, entry: &TreeEntry| -> Result<Vec<u8>> {
                let mut file = tree
                    .root
                    .open_file(entry)?
                    .map_err(|reason| anyhow::anyhow!("{}: {reason}", entry.display()))?;
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes)?;
                Ok(bytes)
            };
            if read(&left_tree, a)? != read(&right_tree, b)? {
                return Ok(Some(format!("content of {}", a.display())));
            }
            let first_name = |names: &mut HashMap<(u64, u64), Vec<u8>>, entry: &TreeEntry| {
                let file = (entry.stamp.device, entry.stamp.inode);
                names
                    .entry(file)
                    .or_insert_with(|| entry.relative.clone())
                    .clone()
            };
            if first_name(&mut left_names, a) != first_name(&mut right_names, b) {
                return Ok(Some(format!("hard links of {}", a.display())));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
