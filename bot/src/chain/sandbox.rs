//! The registry on an in-process chain (pallet-contracts in `ink_sandbox`), for the demo and
//! the tests (feature `sandbox`).

use super::{At, Call, Chain, Outcome, Weight};
use anyhow::{anyhow, bail, Context, Result};
use ink_sandbox::{
    api::prelude::{BalanceAPI, ContractAPI, SystemAPI},
    AccountId32 as SandboxAccount, DefaultSandbox, Sandbox,
};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use subxt::utils::AccountId32;

/// Gas limit of calls on the in-process chain: far above what any message needs.
const SANDBOX_GAS_LIMIT: ink_sandbox::Weight =
    ink_sandbox::Weight::from_parts(100_000_000_000, 4 * 1024 * 1024);

/// The in-process chain shared by the handles of several accounts.
pub type SharedSandbox = Rc<RefCell<DefaultSandbox>>;

/// The registry on an in-process chain (pallet-contracts in `ink_sandbox`).
pub struct SandboxChain {
    sandbox: SharedSandbox,
    contract: SandboxAccount,
    caller: AccountId32,
}

/// Balance given to each account of the in-process chain.
const SANDBOX_FUNDS: u128 = 1_000_000_000_000_000;

impl SandboxChain {
    /// Starts an in-process chain, funds `accounts`, and deploys the contract bundle at
    /// `bundle` from `deployer` with `constructor`. Returns the deployer's handle.
    pub fn deploy(
        bundle: &Path,
        deployer: AccountId32,
        accounts: &[AccountId32],
        constructor: &Call,
    ) -> Result<Self> {
        let code = bundle_code(bundle)
            .with_context(|| format!("loading contract bundle {}", bundle.display()))?;
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
            constructor.data.clone(),
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
            caller: deployer,
        })
    }

    /// A handle on the same chain and contract that signs as `caller`.
    pub fn as_account(&self, caller: AccountId32) -> Self {
        Self {
            sandbox: Rc::clone(&self.sandbox),
            contract: self.contract.clone(),
            caller,
        }
    }

    /// Seals the current block and starts `count` new ones.
    pub fn advance_blocks(&self, count: u32) {
        self.sandbox.borrow_mut().build_blocks(count);
    }

    fn call(&self, call: &Call, commit: bool) -> Result<Outcome> {
        let mut sandbox = self.sandbox.borrow_mut();
        let run = |sandbox: &mut DefaultSandbox| {
            sandbox.call_contract(
                self.contract.clone(),
                0,
                call.data.clone(),
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
            .map_err(|error| anyhow!("{} failed: {error:?}", call.message))?;
        Ok(Outcome {
            reverted: value.did_revert(),
            data: value.data,
            gas_required: Weight {
                ref_time: result.gas_required.ref_time(),
                proof_size: result.gas_required.proof_size(),
            },
        })
    }
}

/// The wasm code of the `.contract` bundle at `path` (its `source.wasm`, hex).
fn bundle_code(path: &Path) -> Result<Vec<u8>> {
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let wasm = bundle["source"]["wasm"].as_str().ok_or_else(|| {
        anyhow!(
            "{} holds no wasm code: use the .contract bundle",
            path.display()
        )
    })?;
    Ok(hex::decode(wasm.trim_start_matches("0x"))?)
}

impl Chain for SandboxChain {
    fn account(&self) -> AccountId32 {
        self.caller.clone()
    }

    async fn block_number(&mut self) -> Result<u32> {
        Ok(self.sandbox.borrow_mut().block_number())
    }

    /// Every block of the in-process chain is final: `at` reads the same state.
    async fn dry_run(&mut self, call: &Call, _at: At) -> Result<Outcome> {
        self.call(call, false)
    }

    /// Every call on the in-process chain runs with `SANDBOX_GAS_LIMIT`, whatever its dry run
    /// needed.
    async fn submit(&mut self, call: &Call, _dry_run: &Outcome) -> Result<()> {
        let outcome = self.call(call, true)?;
        if outcome.reverted {
            bail!("{} reverted", call.message);
        }
        Ok(())
    }
}

/// The in-process chain's form of an account.
fn sandbox_account(account: &AccountId32) -> SandboxAccount {
    SandboxAccount::new(account.0)
}
