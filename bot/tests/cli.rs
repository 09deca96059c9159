//! The `backup-bot` binary's command line without a chain: exit codes, which setting wins
//! (flag, then environment, then file), and an owner's restore from the embedded store with
//! their own identity alone. The commands that read a chain (`run --once --json`,
//! `snapshots`, `check`) are run against a live node in `tests/live_node.rs`.

use backup_bot::pipeline::{self, BackupSecret};
use backup_bot::state::DataDirLock;
use backup_bot::store::{ContentStore, LocalStore};
use backup_bot::{demo, keys, tree};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use subxt_signer::sr25519::dev;

fn bot(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backup-bot"));
    command.args(args);
    for variable in ["BACKUP_BOT_SURI", "BACKUP_BOT_URL", "BACKUP_BOT_CONFIG"] {
        command.env_remove(variable);
    }
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_documents_the_exit_codes() {
    let output = bot(&["--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for code in ["0 done", "1 fatal", "3 incomplete", "130 interrupted"] {
        assert!(help.contains(code), "{help}");
    }
}

#[test]
fn a_missing_setting_is_fatal() {
    let output = bot(&["run", "--once"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("error: no contract address"),
        "{}",
        stderr(&output)
    );
}

/// The key file given as a flag wins over `BACKUP_BOT_SURI`, and `--url` over
/// `BACKUP_BOT_URL`: the bot starts as Bob on the flag's URL (where no chain answers).
#[test]
fn flags_win_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bob.suri");
    fs::write(&key, "//Bob\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let output = bot(&["run", "--once", "--contract"])
        .arg(dev::alice().public_key().to_account_id().to_string())
        .args([
            "--metadata",
            "unused.json",
            "--url",
            "ws://user:hunter2@127.0.0.1:9",
        ])
        .arg("--suri-file")
        .arg(&key)
        .env("BACKUP_BOT_SURI", "//Alice")
        .env("BACKUP_BOT_URL", "ws://127.0.0.1:8")
        .env("BACKUP_BOT_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let bob = dev::bob().public_key().to_account_id().to_string();
    assert!(log.contains(&format!("authority={bob}")), "{log}");
    assert!(log.contains("url=ws://127.0.0.1:9"), "{log}");
    assert!(!log.contains("//Bob") && !log.contains("//Alice"), "{log}");
    assert!(
        !log.contains("hunter2"),
        "the URL's password was logged: {log}"
    );
}

/// A second process on a data folder in use exits 1 before it connects, naming the holder.
#[test]
fn a_second_bot_on_one_data_folder_exits_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _held = DataDirLock::acquire(&data_dir).unwrap();
    let output = bot(&["run", "--once", "--contract"])
        .arg(dev::alice().public_key().to_account_id().to_string())
        .args(["--metadata", "unused.json", "--url", "ws://127.0.0.1:9"])
        .env("BACKUP_BOT_SURI", "//Alice")
        .env("BACKUP_BOT_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let holder = format!("in use by another backup-bot (pid {})", std::process::id());
    assert!(log.contains(&holder), "{log}");
    assert!(
        !log.contains("starting"),
        "it must stop before connecting: {log}"
    );
}

/// `demo` (and `bench`) empty their work folder only if they made it: another folder is
/// refused and keeps its files.
#[test]
fn demo_refuses_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("any.contract");
    fs::write(&bundle, b"{}").unwrap();
    let precious = dir.path().join("home");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("thesis.tex"), b"years of work").unwrap();
    for command in ["demo", "bench"] {
        let output = bot(&[command, "--bundle"][..if command == "demo" { 2 } else { 1 }])
            .args(if command == "demo" {
                vec![bundle.as_os_str()]
            } else {
                Vec::new()
            })
            .arg("--work-dir")
            .arg(&precious)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("did not put there"),
            "{}",
            stderr(&output)
        );
        assert_eq!(
            fs::read(precious.join("thesis.tex")).unwrap(),
            b"years of work"
        );
    }
}

/// A snapshot of the sample tree in an embedded store under `dir`, sealed to the bot's
/// identity and to `owner`; returns its root CID.
async fn snapshot_for(dir: &Path, owner: &age::x25519::Identity) -> String {
    let source = dir.join("source");
    demo::write_sample_tree(&source).unwrap();
    let store = ContentStore::Local(LocalStore::open(dir.join("store")).unwrap());
    let bot_identity = age::x25519::Identity::generate();
    let owner_account = dev::bob().public_key().to_account_id().to_string();
    let secret = BackupSecret::derive(&bot_identity, &owner_account, "node");
    let recipients = [bot_identity.to_public(), owner.to_public()];
    let (root, _) = pipeline::snapshot_folder(
        &store,
        &source,
        &secret,
        &owner_account,
        "node",
        &recipients,
    )
    .await
    .unwrap();
    root.to_string()
}

#[tokio::test]
async fn the_owner_restores_alone_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let owner = age::x25519::Identity::generate();
    let identity_file = dir.path().join("owner.age-identity");
    keys::write_identity(&identity_file, &owner, "the owner's key").unwrap();
    let cid = snapshot_for(dir.path(), &owner).await;
    let target = dir.path().join("restored");
    let restore = |target: &Path, identity: &Path, extra: &[&str]| {
        bot(&["restore", "--cid", &cid, "--owner-identity"])
            .arg(identity)
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--target")
            .arg(target)
            .args(extra)
            .output()
            .unwrap()
    };

    let bob = dev::bob().public_key().to_account_id().to_string();
    let output = restore(
        &target,
        &identity_file,
        &["--owner", &bob, "--node", "node"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        tree::first_difference(&dir.path().join("source"), &target).unwrap(),
        None
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        said.starts_with(&format!("snapshot of node \"node\" of {bob}: ")),
        "{said}"
    );

    // A snapshot of another backup than the one named is refused, nothing written.
    let alice = dev::alice().public_key().to_account_id().to_string();
    let other = dir.path().join("other");
    for (owner, node) in [(alice.as_str(), "node"), (bob.as_str(), "another node")] {
        let output = restore(&other, &identity_file, &["--owner", owner, "--node", node]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("the snapshot belongs to node \"node\""),
            "{}",
            stderr(&output)
        );
        assert!(!other.exists());
    }

    // A target that is not empty is refused, unless --force replaces it.
    let output = restore(&target, &identity_file, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );
    fs::write(target.join("stray"), b"x").unwrap();
    let output = restore(&target, &identity_file, &["--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!target.join("stray").exists());

    // Another identity cannot open it, and leaves no trace.
    let stranger_file = dir.path().join("stranger.age-identity");
    let stranger = age::x25519::Identity::generate();
    keys::write_identity(&stranger_file, &stranger, "someone else").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let output = restore(&elsewhere, &stranger_file, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("decrypt failed"),
        "{}",
        stderr(&output)
    );
    assert!(!elsewhere.exists());
}
