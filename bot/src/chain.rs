//! Access to the registry contract on a chain, behind one small trait with two
//! implementations: a live node over RPC (`subxt`; transactions through cargo-contract's
//! `contract-extrinsics`) and an in-process chain (pallet-contracts in `ink_sandbox`).
//!
//! Both take a message name and its arguments as text, and encode them with
//! `contract-transcode` from the contract's metadata, exactly as `cargo contract call` does.

use anyhow::{anyhow, bail, Context, Result};
use contract_extrinsics::pallet_contracts_primitives::ContractExecResult;
use contract_extrinsics::{
    CallCommandBuilder, ContractArtifacts, ContractMessageTranscoder, ExtrinsicOptsBuilder,
};
use ink::env::DefaultEnvironment;
use ink_sandbox::{
    api::prelude::{BalanceAPI, ContractAPI, SystemAPI},
    AccountId32 as SandboxAccount, DefaultSandbox, Sandbox, Weight,
};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use subxt::backend::{legacy::LegacyRpcMethods, rpc::RpcClient};
use subxt::ext::codec::{Decode, Encode};
use subxt::utils::AccountId32;
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::Keypair;

/// What a dry run of a message returned.
pub struct Outcome {
    /// The message's SCALE-encoded return value.
    pub data: Vec<u8>,
    /// Whether the contract reverted (its `Result` is an `Err`).
    pub reverted: bool,
}

/// The state of the chain a dry run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The best block: the newest state, which a fork may still replace.
    Best,
    /// The latest finalized block: a state no fork replaces, a little older.
    Finalized,
}

/// A chain with the registry deployed, seen by one account.
#[allow(async_fn_in_trait)]
pub trait Chain {
    /// The account that signs this handle's calls.
    fn account(&self) -> AccountId32;

    /// The number of the chain's latest finalized block.
    async fn block_number(&mut self) -> Result<u32>;

    /// Runs `message` on the state `at` without committing anything and returns what it
    /// returned.
    async fn dry_run(&mut self, message: &str, args: &[String], at: At) -> Result<Outcome>;

    /// Runs `message` in a transaction (after a successful dry run).
    async fn submit(&mut self, message: &str, args: &[String]) -> Result<()>;
}

/// The registry on a live node, reached over its RPC endpoint: one connection and one
/// transcoder for every query.
pub struct NodeChain {
    url: url::Url,
    contract: AccountId32,
    metadata: std::path::PathBuf,
    signer: Keypair,
    client: OnlineClient<PolkadotConfig>,
    rpc: LegacyRpcMethods<PolkadotConfig>,
    transcoder: ContractMessageTranscoder,
}

/// The arguments of the runtime API `ContractsApi_call` (pallet-contracts' dry run).
#[derive(Encode)]
struct CallRequest {
    origin: AccountId32,
    dest: AccountId32,
    value: u128,
    /// `None`: as much as a block allows.
    gas_limit: Option<Weight>,
    /// `None`: no limit.
    storage_deposit_limit: Option<u128>,
    input_data: Vec<u8>,
}

impl NodeChain {
    /// Connects to `url`, for the contract at `contract` described by the metadata (or
    /// bundle) at `metadata`, signing with `signer`.
    pub async fn connect(
        url: &str,
        contract: AccountId32,
        metadata: &Path,
        signer: Keypair,
    ) -> Result<Self> {
        let connecting = || format!("connecting to {}", crate::config::without_credentials(url));
        let rpc_client = RpcClient::from_url(url).await.with_context(connecting)?;
        let client = OnlineClient::<PolkadotConfig>::from_rpc_client(rpc_client.clone())
            .await
            .with_context(connecting)?;
        let transcoder =
            ContractArtifacts::from_manifest_or_file(None, Some(&metadata.to_path_buf()))
                .and_then(|artifacts| artifacts.contract_transcoder())
                .with_context(|| format!("loading contract metadata {}", metadata.display()))?;
        Ok(Self {
            url: url.parse()?,
            contract,
            metadata: metadata.to_path_buf(),
            signer,
            client,
            rpc: LegacyRpcMethods::new(rpc_client),
            transcoder,
        })
    }

    async fn call_exec(
        &self,
        message: &str,
        args: &[String],
    ) -> Result<contract_extrinsics::CallExec<PolkadotConfig, DefaultEnvironment, Keypair>> {
        let opts = ExtrinsicOptsBuilder::new(self.signer.clone())
            .file(Some(self.metadata.clone()))
            .url(self.url.clone())
            .done();
        CallCommandBuilder::new(self.contract.clone(), message, opts)
            .args(args.to_vec())
            .done()
            .await
    }
}

impl Chain for NodeChain {
    fn account(&self) -> AccountId32 {
        self.signer.public_key().to_account_id()
    }

    async fn block_number(&mut self) -> Result<u32> {
        Ok(self.client.blocks().at_latest().await?.number())
    }

    async fn dry_run(&mut self, message: &str, args: &[String], at: At) -> Result<Outcome> {
        let request = CallRequest {
            origin: self.account(),
            dest: self.contract.clone(),
            value: 0,
            gas_limit: None,
            storage_deposit_limit: None,
            input_data: self.transcoder.encode(message, args)?,
        };
        let block = match at {
            At::Best => None,
            At::Finalized => Some(self.rpc.chain_get_finalized_head().await?),
        };
        let answer = self
            .rpc
            .state_call("ContractsApi_call", Some(&request.encode()), block)
            .await
            .with_context(|| format!("dry run of {message}"))?;
        // The answer may carry fields newer than this client knows of, after the result.
        let result = ContractExecResult::<u128>::decode(&mut answer.as_slice())
            .with_context(|| format!("decoding the dry run of {message}"))?;
        let value = result
            .result
            .map_err(|error| anyhow!("dry run of {message} failed: {error:?}"))?;
        Ok(Outcome {
            reverted: value.did_revert(),
            data: value.data,
        })
    }

    async fn submit(&mut self, message: &str, args: &[String]) -> Result<()> {
        let exec = self.call_exec(message, args).await?;
        exec.call(None)
            .await
            .map_err(|error| anyhow!("{message} failed on chain: {error}"))?;
        Ok(())
    }
}

/// Gas limit of calls on the in-process chain: far above what any message needs.
const SANDBOX_GAS_LIMIT: Weight = Weight::from_parts(100_000_000_000, 4 * 1024 * 1024);

/// The in-process chain shared by the handles of several accounts.
pub type SharedSandbox = Rc<RefCell<DefaultSandbox>>;

/// The registry on an in-process chain (pallet-contracts in `ink_sandbox`).
pub struct SandboxChain {
    sandbox: SharedSandbox,
    contract: SandboxAccount,
    transcoder: Rc<ContractMessageTranscoder>,
    caller: AccountId32,
}

/// Balance given to each account of the in-process chain.
const SANDBOX_FUNDS: u128 = 1_000_000_000_000_000;

impl SandboxChain {
    /// Starts an in-process chain, funds `accounts`, and deploys the contract bundle at
    /// `bundle` from `deployer` with `constructor` and `args`. Returns the deployer's handle.
    pub fn deploy(
        bundle: &Path,
        deployer: AccountId32,
        accounts: &[AccountId32],
        constructor: &str,
        args: &[String],
    ) -> Result<Self> {
        let artifacts = ContractArtifacts::from_manifest_or_file(None, Some(&bundle.to_path_buf()))
            .with_context(|| format!("loading contract bundle {}", bundle.display()))?;
        let code = artifacts
            .metadata()?
            .source
            .wasm
            .ok_or_else(|| {
                anyhow!(
                    "{} holds no wasm code: use the .contract bundle",
                    bundle.display()
                )
            })?
            .0;
        let transcoder = Rc::new(artifacts.contract_transcoder()?);
        let data = transcoder.encode(constructor, args)?;
        let mut sandbox = DefaultSandbox::default();
        for account in accounts.iter().chain([&deployer]) {
            sandbox
                .mint_into(&sandbox_account(account), SANDBOX_FUNDS)
                .map_err(|error| anyhow!("funding {account}: {error:?}"))?;
        }
        // Start at block 1, as a real chain's first block after genesis.
        sandbox.build_block();
        let result = sandbox.deploy_contract(
            code,
            0,
            data,
            Vec::new(),
            sandbox_account(&deployer),
            SANDBOX_GAS_LIMIT,
            None,
        );
        let deployed = result
            .result
            .map_err(|error| anyhow!("deploying the contract: {error:?}"))?;
        if deployed.result.did_revert() {
            bail!("the constructor refused its arguments");
        }
        Ok(Self {
            sandbox: Rc::new(RefCell::new(sandbox)),
            contract: deployed.account_id,
            transcoder,
            caller: deployer,
        })
    }

    /// A handle on the same chain and contract that signs as `caller`.
    pub fn as_account(&self, caller: AccountId32) -> Self {
        Self {
            sandbox: Rc::clone(&self.sandbox),
            contract: self.contract.clone(),
            transcoder: Rc::clone(&self.transcoder),
            caller,
        }
    }

    /// Seals the current block and starts `count` new ones.
    pub fn advance_blocks(&self, count: u32) {
        self.sandbox.borrow_mut().build_blocks(count);
    }

    fn call(&self, message: &str, args: &[String], commit: bool) -> Result<Outcome> {
        let data = self.transcoder.encode(message, args)?;
        let mut sandbox = self.sandbox.borrow_mut();
        let run = |sandbox: &mut DefaultSandbox| {
            sandbox.call_contract(
                self.contract.clone(),
                0,
                data,
                sandbox_account(&self.caller),
                SANDBOX_GAS_LIMIT,
                None,
                ink_sandbox::pallet_contracts::Determinism::Enforced,
            )
        };
        let result = if commit {
            run(&mut sandbox)
        } else {
            sandbox.dry_run(run)
        };
        let value = result
            .result
            .map_err(|error| anyhow!("{message} failed: {error:?}"))?;
        Ok(Outcome {
            reverted: value.did_revert(),
            data: value.data,
        })
    }
}

impl Chain for SandboxChain {
    fn account(&self) -> AccountId32 {
        self.caller.clone()
    }

    async fn block_number(&mut self) -> Result<u32> {
        Ok(self.sandbox.borrow_mut().block_number())
    }

    /// Every block of the in-process chain is final: `at` reads the same state.
    async fn dry_run(&mut self, message: &str, args: &[String], _at: At) -> Result<Outcome> {
        self.call(message, args, false)
    }

    async fn submit(&mut self, message: &str, args: &[String]) -> Result<()> {
        let outcome = self.call(message, args, true)?;
        if outcome.reverted {
            bail!("{message} reverted");
        }
        Ok(())
    }
}

/// The in-process chain's form of an account.
fn sandbox_account(account: &AccountId32) -> SandboxAccount {
    SandboxAccount::new(account.0)
}
