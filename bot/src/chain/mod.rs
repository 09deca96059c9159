//! Access to the registry contract on a chain, behind one small trait with two
//! implementations: a live node over RPC (`subxt`: one connection per bot, dry runs through
//! pallet-contracts' `ContractsApi_call` runtime API, transactions as `Contracts::call`) and
//! an in-process chain (pallet-contracts in `ink_sandbox`).
//!
//! Both take a [`Call`]: a message's selector and SCALE-encoded arguments, built from the
//! contract crate's own types (see [`crate::registry`]), as ink's `e2e` tests build theirs.

mod node;
#[cfg(feature = "sandbox")]
mod sandbox;

pub use self::node::NodeChain;
#[cfg(feature = "sandbox")]
pub use self::sandbox::{SandboxChain, SharedSandbox};

use anyhow::Result;
use subxt::ext::codec::{Decode, Encode};
use subxt::ext::scale_encode::EncodeAsType;
use subxt::utils::AccountId32;

/// One message of the registry, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The message's name, for errors and logs.
    pub message: &'static str,
    /// Its call data: the 4-byte selector, then the SCALE-encoded arguments.
    pub data: Vec<u8>,
}

impl Call {
    /// The call of `message`, whose selector is `selector`, with `args` (a tuple of the
    /// message's parameters, in order, as the contract's types encode them).
    pub fn new(message: &'static str, selector: [u8; 4], args: impl Encode) -> Self {
        let mut data = selector.to_vec();
        args.encode_to(&mut data);
        Self { message, data }
    }
}

/// What a dry run of a message returned.
pub struct Outcome {
    /// The message's SCALE-encoded return value.
    pub data: Vec<u8>,
    /// Whether the contract reverted (its `Result` is an `Err`).
    pub reverted: bool,
    /// The gas the message needed: the limit its transaction is submitted with.
    pub gas_required: Weight,
}

/// pallet-contracts' `Weight`: computation time and proof size, as the runtime encodes it
/// (compact) and as a transaction's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, EncodeAsType)]
#[encode_as_type(crate_path = "::subxt::ext::scale_encode")]
pub struct Weight {
    /// Computation time, in picoseconds.
    #[codec(compact)]
    pub ref_time: u64,
    /// Size of the storage proof, in bytes.
    #[codec(compact)]
    pub proof_size: u64,
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

    /// Runs `call` on the state `at` without committing anything and returns what it
    /// returned.
    async fn dry_run(&mut self, call: &Call, at: At) -> Result<Outcome>;

    /// Runs `call` in a transaction, after `dry_run`, its successful dry run (whose gas it
    /// is given).
    async fn submit(&mut self, call: &Call, dry_run: &Outcome) -> Result<()>;
}
