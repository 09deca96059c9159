//! A `substrate-contracts-node` for the tests that need one: started on loopback, the
//! registry deployed, and the `backup-bot` binary run against it. Included with
//! `#[path = "common/node.rs"] mod node;` by the tests that use it.

use super::common;
use contract_extrinsics::{ExtrinsicOptsBuilder, InstantiateCommandBuilder};
use ink::env::DefaultEnvironment;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use subxt::backend::{legacy::LegacyRpcMethods, rpc::RpcClient};
use subxt::PolkadotConfig;
use subxt_signer::sr25519::{dev, Keypair};

/// A dev node on loopback, stopped when dropped.
pub struct DevNode {
    process: Child,
    /// Its RPC endpoint.
    pub url: String,
}

impl DevNode {
    /// Starts a dev node keeping its chain under `base`.
    pub fn start(base: &Path) -> Self {
        let binary =
            std::env::var("CONTRACTS_NODE").unwrap_or_else(|_| "substrate-contracts-node".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = base.join("node.log");
        let process = Command::new(&binary)
            .args(["--dev", "--rpc-port", &port.to_string(), "--base-path"])
            .arg(base.join("chain"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {binary}: {error}"));
        let node = Self {
            process,
            url: format!("ws://127.0.0.1:{port}"),
        };
        for _ in 0..120 {
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Running JSON-RPC server")
            {
                return node;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "the node did not start: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Waits until the node has finalized its best block: it finalizes each block a second
    /// after making it (`--finalize-delay-sec 1`), and the bot unpins a snapshot only once
    /// it is gone at the finalized block.
    pub async fn wait_for_finality(&self) {
        let client = RpcClient::from_url(&self.url).await.unwrap();
        let rpc = LegacyRpcMethods::<PolkadotConfig>::new(client);
        let number_of = |hash| {
            let rpc = &rpc;
            async move { rpc.chain_get_header(hash).await.unwrap().unwrap().number }
        };
        for _ in 0..120 {
            let best = number_of(None).await;
            let finalized = number_of(Some(rpc.chain_get_finalized_head().await.unwrap())).await;
            if finalized >= best {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the node did not finalize its best block within 30 s");
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Deploys the registry with Alice as admin and only authority, with `config` (a `Config`
/// value as `cargo contract` reads it) or the defaults; returns its address.
pub async fn deploy(url: &str, config: Option<&str>) -> subxt::utils::AccountId32 {
    let alice = dev::alice();
    let opts =
        ExtrinsicOptsBuilder::<PolkadotConfig, DefaultEnvironment, Keypair>::new(alice.clone())
            .file(Some(common::bundle()))
            .url(url::Url::parse(url).unwrap())
            .done();
    let mut args = vec![format!("[{}]", alice.public_key().to_account_id())];
    let constructor = match config {
        Some(config) => {
            args.push(config.to_string());
            "new"
        }
        None => "with_default_config",
    };
    let exec = InstantiateCommandBuilder::new(opts)
        .constructor(constructor)
        .args(args)
        .done()
        .await
        .unwrap();
    exec.instantiate(None).await.unwrap().contract_address
}

/// Runs `backup-bot ARGS --config CONFIG` as Alice; returns its exit code, its standard
/// output as JSON (when it printed any) and its log.
pub fn bot_command(args: &[&str], config: &Path) -> (Option<i32>, serde_json::Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_backup-bot"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("BACKUP_BOT_SURI", "//Alice")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !log.contains("//Alice"),
        "the secret URI was logged:\n{log}"
    );
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), json, log)
}

/// `backup-bot restore` of snapshot `cid` into `target` (replaced), with the identity file
/// `identity` and the embedded store in `store` alone.
pub fn restore_command(cid: &str, identity: &Path, store: &Path, target: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backup-bot"));
    command
        .args(["restore", "--force", "--cid", cid, "--owner-identity"])
        .arg(identity)
        .arg("--store")
        .arg(store)
        .arg("--target")
        .arg(target);
    command
}

/// Runs [`restore_command`]; panics with its log on failure.
pub fn restore_with_cli(cid: &str, identity: &Path, store: &Path, target: &Path) {
    let output = restore_command(cid, identity, store, target)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "backup-bot restore of {cid} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
