//! The registry on a live node, over one `subxt` connection.

use super::{At, Call, Chain, Outcome, Weight};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use subxt::backend::{legacy::LegacyRpcMethods, rpc::RpcClient};
use subxt::config::DefaultExtrinsicParamsBuilder;
use subxt::error::DispatchError;
use subxt::ext::codec::{Decode, Encode};
use subxt::ext::scale_encode::EncodeAsType;
use subxt::tx::{DefaultPayload, TxStatus};
use subxt::utils::{AccountId32, MultiAddress};
use subxt::{OnlineClient, PolkadotConfig};
use subxt_signer::sr25519::Keypair;

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

/// What `ContractsApi_call` answers before its result: the gas used and needed, the storage
/// deposit and the debug buffer.
#[derive(Decode)]
struct DryRunHead {
    _gas_consumed: Weight,
    gas_required: Weight,
    /// pallet-contracts' `StorageDeposit`: `Refund` (0) or `Charge` (1), and the amount.
    _storage_deposit: (u8, u128),
    _debug_message: Vec<u8>,
}

/// pallet-contracts' `ExecReturnValue`: the flags (bit 0: reverted) and the returned bytes.
#[derive(Decode)]
struct ExecReturnValue {
    flags: u32,
    data: Vec<u8>,
}

/// The arguments of the `Contracts::call` transaction.
#[derive(EncodeAsType)]
#[encode_as_type(crate_path = "::subxt::ext::scale_encode")]
struct ContractsCall {
    dest: MultiAddress<AccountId32, ()>,
    value: u128,
    gas_limit: Weight,
    storage_deposit_limit: Option<u128>,
    data: Vec<u8>,
}

/// The registry on a live node, reached over one RPC connection for every call.
pub struct NodeChain {
    contract: AccountId32,
    signer: Keypair,
    client: OnlineClient<PolkadotConfig>,
    rpc: LegacyRpcMethods<PolkadotConfig>,
    /// The deployed registry's message selectors, by name, from its metadata.
    selectors: HashMap<String, [u8; 4]>,
}

impl NodeChain {
    /// Connects to `url`, for the contract at `contract` described by the metadata (or
    /// bundle) at `metadata`, signing with `signer`. Every call's selector is checked
    /// against that metadata: a bot built for another version of the registry says so
    /// instead of sending calls the contract cannot read.
    pub async fn connect(
        url: &str,
        contract: AccountId32,
        metadata: &Path,
        signer: Keypair,
    ) -> Result<Self> {
        let selectors = message_selectors(metadata)
            .with_context(|| format!("loading contract metadata {}", metadata.display()))?;
        let connecting = || format!("connecting to {}", crate::config::without_credentials(url));
        let rpc_client = RpcClient::from_url(url).await.with_context(connecting)?;
        let client = OnlineClient::<PolkadotConfig>::from_rpc_client(rpc_client.clone())
            .await
            .with_context(connecting)?;
        Ok(Self {
            contract,
            signer,
            client,
            rpc: LegacyRpcMethods::new(rpc_client),
            selectors,
        })
    }
}

/// The selector of each message of the metadata (or bundle) at `path`.
fn message_selectors(path: &Path) -> Result<HashMap<String, [u8; 4]>> {
    let metadata: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let messages = metadata["spec"]["messages"]
        .as_array()
        .ok_or_else(|| anyhow!("no spec.messages: not ink! contract metadata"))?;
    let mut selectors = HashMap::new();
    for message in messages {
        let (Some(label), Some(selector)) =
            (message["label"].as_str(), message["selector"].as_str())
        else {
            bail!("a message without label or selector");
        };
        let bytes = hex::decode(selector.trim_start_matches("0x"))?;
        let selector = <[u8; 4]>::try_from(bytes)
            .map_err(|_| anyhow!("selector {selector} is not 4 bytes"))?;
        selectors.insert(label.to_string(), selector);
    }
    Ok(selectors)
}

impl Chain for NodeChain {
    fn account(&self) -> AccountId32 {
        self.signer.public_key().to_account_id()
    }

    async fn block_number(&mut self) -> Result<u32> {
        Ok(self.client.blocks().at_latest().await?.number())
    }

    async fn dry_run(&mut self, call: &Call, at: At) -> Result<Outcome> {
        let selector = call.data.get(..4);
        if self.selectors.get(call.message).map(|s| &s[..]) != selector {
            bail!(
                "the deployed registry's metadata has no message {} with this bot's selector: \
                 the bot and the registry are of different versions",
                call.message
            );
        }
        let request = CallRequest {
            origin: self.account(),
            dest: self.contract.clone(),
            value: 0,
            gas_limit: None,
            storage_deposit_limit: None,
            input_data: call.data.clone(),
        };
        let block = match at {
            At::Best => None,
            At::Finalized => Some(self.rpc.chain_get_finalized_head().await?),
        };
        let answer = self
            .rpc
            .state_call("ContractsApi_call", Some(&request.encode()), block)
            .await
            .with_context(|| format!("dry run of {}", call.message))?;
        let decoding = || format!("decoding the dry run of {}", call.message);
        let mut rest = answer.as_slice();
        let head = DryRunHead::decode(&mut rest).with_context(decoding)?;
        // `Result<ExecReturnValue, DispatchError>`, then fields newer than this client knows.
        match u8::decode(&mut rest).with_context(decoding)? {
            0 => {
                let value = ExecReturnValue::decode(&mut rest).with_context(decoding)?;
                Ok(Outcome {
                    reverted: value.flags & 1 == 1,
                    data: value.data,
                    gas_required: head.gas_required,
                })
            }
            _ => {
                let error = DispatchError::decode_from(rest, self.client.metadata())
                    .with_context(decoding)?;
                bail!("dry run of {} failed: {error}", call.message)
            }
        }
    }

    /// Submits `call` with the gas its dry run needed and no storage deposit limit, and
    /// waits until it is in a block (a development node may never finalize).
    async fn submit(&mut self, call: &Call, dry_run: &Outcome) -> Result<()> {
        let payload = DefaultPayload::new(
            "Contracts",
            "call",
            ContractsCall {
                dest: MultiAddress::Id(self.contract.clone()),
                value: 0,
                gas_limit: dry_run.gas_required,
                storage_deposit_limit: None,
                data: call.data.clone(),
            },
        );
        // The node's next nonce counts the transactions in its pool, not only finalized ones.
        let nonce = self.rpc.system_account_next_index(&self.account()).await?;
        let params = DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new()
            .nonce(nonce)
            .build();
        let failed = |error: subxt::Error| anyhow!("{} failed on chain: {error}", call.message);
        let mut progress = self
            .client
            .tx()
            .create_signed_offline(&payload, &self.signer, params)
            .map_err(failed)?
            .submit_and_watch()
            .await
            .map_err(failed)?;
        while let Some(status) = progress.next().await {
            match status.map_err(failed)? {
                TxStatus::InBestBlock(in_block) | TxStatus::InFinalizedBlock(in_block) => {
                    in_block.wait_for_success().await.map_err(failed)?;
                    return Ok(());
                }
                TxStatus::Error { message }
                | TxStatus::Invalid { message }
                | TxStatus::Dropped { message } => {
                    bail!("{} failed on chain: {message}", call.message)
                }
                _ => continue,
            }
        }
        bail!(
            "{}: the node closed the transaction's subscription",
            call.message
        )
    }
}
