use super::*;
use crate::demo::write_sample_tree as sample_tree;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

fn paths(listing: &Listing) -> Vec<String> {
    listing.entries.iter().map(TreeEntry::display).collect()
}

#[test]
fn folders_come_before_their_content_with_modes() {
    let root = tempfile::tempdir().unwrap();
    sample_tree(root.path()).unwrap();
    let listing = list_tree(root.path()).unwrap();
    assert_eq!(
        paths(&listing),
        [
            "README",
            "data",
            "data/blob.bin",
            "data/nested",
            "data/nested/deep.txt",
            "empty",
            "latest",
            "run.sh"
        ]
    );
    let run = listing
        .entries
        .iter()
        .find(|entry| entry.relative == b"run.sh")
        .unwrap();
    assert_eq!(run.mode, 0o700);
    assert!(listing.skipped.is_empty());
}

#[test]
fn links_are_kept_as_links_and_special_files_skipped() {
    let root = tempfile::tempdir().unwrap();
    sample_tree(root.path()).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("link")).unwrap();
    let fifo = std::ffi::CString::new(root.path().join("fifo").as_os_str().as_bytes()).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, fifo.as_c_str(), Mode::from_raw_mode(0o600)).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.path().join("socket")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs::write(root.path().join(odd), b"latin-1 name").unwrap();
    let listing = list_tree(root.path()).unwrap();
    let link = listing
        .entries
        .iter()
        .find(|entry| entry.relative == b"link")
        .unwrap();
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: b"/etc/passwd".to_vec()
        }
    );
    assert!(listing
        .entries
        .iter()
        .any(|entry| entry.relative == b"caf\xe9"));
    let skipped: Vec<(&str, &str)> = listing
        .skipped
        .iter()
        .map(|skipped| (skipped.path.as_str(), skipped.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("fifo", "a FIFO: not backed up"),
            ("socket", "a socket: not backed up")
        ]
    );
}

/// Between the listing and the reading, a file is replaced by a link to a secret, and
/// another by a FIFO: neither is opened (nothing followed, nothing waited on).
#[test]
fn what_is_swapped_in_after_the_listing_is_not_opened() {
    let root = tempfile::tempdir().unwrap();
    let secret = root.path().join("secret");
    fs::write(&secret, b"not for the snapshot").unwrap();
    let source = root.path().join("source");
    fs::create_dir_all(source.join("sub")).unwrap();
    fs::write(source.join("a.txt"), b"a").unwrap();
    fs::write(source.join("b.txt"), b"b").unwrap();
    fs::write(source.join("sub/c.txt"), b"c").unwrap();
    let listing = list_tree(&source).unwrap();
    let entry = |name: &[u8]| {
        listing
            .entries
            .iter()
            .find(|entry| entry.relative == name)
            .unwrap()
            .clone()
    };
    let (a, b, c) = (entry(b"a.txt"), entry(b"b.txt"), entry(b"sub/c.txt"));
    fs::remove_file(source.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, source.join("a.txt")).unwrap();
    fs::remove_file(source.join("b.txt")).unwrap();
    let fifo = std::ffi::CString::new(source.join("b.txt").as_os_str().as_bytes()).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, fifo.as_c_str(), Mode::from_raw_mode(0o600)).unwrap();
    // A folder swapped for a link to the secret's folder, holding a file of the same name.
    fs::write(root.path().join("c.txt"), b"secret too").unwrap();
    fs::rename(source.join("sub"), root.path().join("old-sub")).unwrap();
    std::os::unix::fs::symlink(root.path(), source.join("sub")).unwrap();
    for entry in [&a, &b, &c] {
        assert!(
            listing.root.open_file(entry).unwrap().err() == Some(CHANGED),
            "{}",
            entry.display()
        );
    }
}

/// This thread's file-system user id as `nobody` while alive (Linux credentials are per
/// thread; a root fsuid changed to another drops the capabilities that bypass modes), so
/// that modes deny reading as they would to a bot not running as root.
struct AsNobody(bool);

impl AsNobody {
    fn start() -> Self {
        // SAFETY: plain system calls on this thread's own credentials.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            unsafe { libc::syscall(libc::SYS_setfsuid, 65534) };
        }
        Self(root)
    }
}

impl Drop for AsNobody {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_setfsuid, 0) };
        }
    }
}

/// A file and a folder the bot may not read: skipped with the reason, the rest is kept.
#[test]
fn what_the_bot_may_not_read_is_skipped_and_reported() {
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.path().join("open.txt"), b"readable").unwrap();
    fs::set_permissions(
        root.path().join("open.txt"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::write(root.path().join("private.key"), b"not for the bot").unwrap();
    fs::set_permissions(
        root.path().join("private.key"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::create_dir(root.path().join("closed")).unwrap();
    fs::write(root.path().join("closed/inside.txt"), b"unseen").unwrap();
    fs::set_permissions(
        root.path().join("closed"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let _nobody = AsNobody::start();
    let listing = list_tree(root.path()).unwrap();
    assert_eq!(paths(&listing), ["open.txt", "private.key"]);
    assert_eq!(
        listing.skipped,
        [Skipped {
            path: "closed".into(),
            reason: "permission denied".into()
        }]
    );
    let entry = |name: &[u8]| {
        let entry = listing.entries.iter().find(|entry| entry.relative == name);
        entry.unwrap().clone()
    };
    assert!(listing.root.open_file(&entry(b"open.txt")).unwrap().is_ok());
    assert_eq!(
        listing
            .root
            .open_file(&entry(b"private.key"))
            .unwrap()
            .err(),
        Some("permission denied")
    );
}

#[test]
fn differences_of_content_mode_and_time_are_reported() {
    let root = tempfile::tempdir().unwrap();
    sample_tree(root.path()).unwrap();
    let other = tempfile::tempdir().unwrap();
    sample_tree(other.path()).unwrap();
    fs::set_permissions(
        root.path().join("README"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Every modification time of `root`, links' own included, copied onto `other`.
    let copy_times = || {
        let other_dir = open_root(other.path()).unwrap();
        for entry in list_tree(root.path()).unwrap().entries {
            let time = rustix::fs::Timespec {
                tv_sec: entry.mtime_ns.div_euclid(1_000_000_000),
                tv_nsec: entry.mtime_ns.rem_euclid(1_000_000_000),
            };
            let times = rustix::fs::Timestamps {
                last_access: time,
                last_modification: time,
            };
            rustix::fs::utimensat(
                &other_dir,
                entry.relative.as_slice(),
                &times,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    };
    fs::set_permissions(
        other.path().join("README"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    copy_times();
    assert_eq!(
        first_difference(root.path(), other.path()).unwrap(),
        Some("mode of README: 644 against 600".to_string())
    );
    fs::set_permissions(
        other.path().join("README"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_eq!(first_difference(root.path(), other.path()).unwrap(), None);
    fs::File::options()
        .write(true)
        .open(other.path().join("run.sh"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    assert_eq!(
        first_difference(root.path(), other.path()).unwrap(),
        Some("modification time of run.sh".to_string())
    );
    fs::write(other.path().join("data/blob.bin"), b"other").unwrap();
    copy_times();
    assert_eq!(
        first_difference(root.path(), other.path()).unwrap(),
        Some("content of data/blob.bin".to_string())
    );
    fs::copy(
        root.path().join("data/blob.bin"),
        other.path().join("data/blob.bin"),
    )
    .unwrap();
    // A second name of README on one side, a copy of it on the other.
    fs::hard_link(root.path().join("README"), root.path().join("README.2")).unwrap();
    fs::copy(root.path().join("README"), other.path().join("README.2")).unwrap();
    copy_times();
    assert_eq!(
        first_difference(root.path(), other.path()).unwrap(),
        Some("hard links of README.2".to_string())
    );
    fs::remove_file(other.path().join("README.2")).unwrap();
    fs::hard_link(other.path().join("README"), other.path().join("README.2")).unwrap();
    assert_eq!(first_difference(root.path(), other.path()).unwrap(), None);
}

#[test]
fn paths_leaving_the_target_are_refused() {
    for path in [
        &b"../escape"[..],
        b"/tmp/absolute",
        b"a/../../escape",
        b"",
        b"a//b",
        b"a/./b",
        b"a\0b",
    ] {
        let error = safe_relative_path(path).unwrap_err();
        assert!(error.to_string().starts_with("unsafe path"), "{error}");
    }
    assert!(safe_relative_path(b"a/b.txt").is_ok());
}
