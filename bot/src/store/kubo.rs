//! An IPFS node's HTTP RPC API (Kubo's, or js-ipfs's) as a block store, its pins optionally
//! replicated by an IPFS Cluster through the cluster's IPFS proxy API.

use crate::unixfs::{self, Block, DAG_PB};
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// How long an IPFS node may look for a block it does not hold before it answers.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long any other call may take (a recursive pin of a large snapshot walks all of it).
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest answer to `block/get` read: the largest block the bot makes (1 MiB) and room.
const MAX_BLOCK_ANSWER: usize = 1024 * 1024 + 64 * 1024;
/// Largest answer to any other call read (JSON of a pin or a put, an error message).
const MAX_SMALL_ANSWER: usize = 64 * 1024;
/// Most CIDs one `pin/rm` call releases.
const PINS_RELEASED_PER_CALL: usize = 128;

/// An IPFS node's HTTP RPC API (`/api/v0`), as Kubo serves it. Every call has a timeout and
/// every answer a size limit: a node that stalls or floods is an error, not a hang.
pub struct KuboStore {
    api: String,
    http: reqwest::Client,
    /// How long the node may look for a block (its `timeout` option); the request itself
    /// gives up a little later, should the node ignore the option.
    fetch_timeout: Duration,
    /// When set, blocks are pinned as they are put, and listed in this file (one CID a
    /// line) until the root reaching them is pinned.
    put_pins: Option<PathBuf>,
    /// When set, the IPFS proxy API of an IPFS Cluster peer (`/api/v0`, port 9095 by
    /// default): every root pinned on the node is pinned in the cluster too, which replicates
    /// it to its peers, and unpinned there first.
    cluster_proxy: Option<String>,
}

/// The body of `response`, refused past `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(piece) = response
        .chunk()
        .await
        .context("reading the IPFS node's answer")?
    {
        if body.len() + piece.len() > limit {
            bail!("the IPFS node's answer is larger than the {limit} bytes allowed");
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// The JSON body of `response`, at most [`MAX_SMALL_ANSWER`] bytes.
async fn read_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let body = read_capped(response, MAX_SMALL_ANSWER).await?;
    serde_json::from_slice(&body).context("the IPFS node's answer is not the JSON expected")
}

/// An IPFS RPC call that did not succeed, told apart by what its caller does about it.
#[derive(Debug)]
pub enum RpcError {
    /// No answer: the node is down, unreachable, or did not answer in time. It may pass.
    Unreachable(reqwest::Error),
    /// The node answered with an error status and this message.
    Answered {
        /// The HTTP status of the answer.
        status: reqwest::StatusCode,
        /// The node's message (its JSON error body, as sent).
        message: String,
    },
}

impl RpcError {
    /// Whether the node answered with a message holding one of `wordings`: the RPC API tells
    /// its errors apart only by their text, so each kind is the node's own wordings of it.
    fn answered(&self, wordings: &[&str]) -> bool {
        match self {
            Self::Answered { message, .. } => wordings.iter().any(|words| message.contains(words)),
            Self::Unreachable(_) => false,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(_) => f.write_str("IPFS RPC API unreachable"),
            Self::Answered { status, message } => write!(f, "IPFS RPC error {status}: {message}"),
        }
    }
}

impl std::error::Error for RpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreachable(error) => Some(error),
            Self::Answered { .. } => None,
        }
    }
}

/// The node's wordings of "this has no pin of its own" (not pinned, or pinned only through a
/// root): Kubo says "not pinned or pinned indirectly", js-ipfs "is pinned indirectly under".
const NOT_PINNED: &[&str] = &["not pinned", "pinned indirectly"];

/// An IPFS Cluster proxy's wordings of "the cluster has no such pin" (`pin/rm` of a CID that is
/// not in its shared pin set: "cannot unpin pin uncommitted to state: not found").
const NOT_IN_CLUSTER: &[&str] = &["uncommitted to state"];

/// The node's wordings of "this block is not here": Kubo offline says "not found", a node
/// that ignores `offline` gives up looking with "timed out".
const NO_BLOCK: &[&str] = &["not found", "timed out"];

/// `value` when `error` is the node's answer that what was to be unpinned has no pin of its
/// own, else `error`.
fn not_pinned<T>(error: RpcError, value: T) -> Result<T> {
    if error.answered(NOT_PINNED) {
        Ok(value)
    } else {
        Err(error.into())
    }
}

/// The address of the RPC call `call` (`pin/add`) of the API at `api`.
fn rpc_url(api: &str, call: &str) -> String {
    format!("{api}/api/v0/{call}")
}

/// The multicodec name IPFS's RPC API uses for `codec`.
fn codec_name(codec: u64) -> Result<&'static str> {
    Ok(match codec {
        unixfs::RAW => "raw",
        DAG_PB => "dag-pb",
        other => bail!("unsupported codec {other:#x}"),
    })
}

impl KuboStore {
    /// A client of the RPC API at `api` (for example `http://127.0.0.1:5001`).
    pub fn new(api: &str) -> Self {
        Self {
            api: api.trim_end_matches('/').to_string(),
            http: Self::client(DEFAULT_CALL_TIMEOUT),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            put_pins: None,
            cluster_proxy: None,
        }
    }

    /// The same client, pinning and unpinning every root in the IPFS Cluster whose IPFS proxy
    /// API is at `proxy` (for example `http://127.0.0.1:9095`) as well as on the node: the
    /// node's pin proves the snapshot whole where it was put, the cluster's replicates it to
    /// the peers it allocates. Blocks are still put on, and the pins they get while put
    /// released from, the node itself: the proxy keeps its own pin set, and answers a
    /// `pin/rm` for only the first CID it names.
    pub fn with_cluster_proxy(mut self, proxy: &str) -> Self {
        self.cluster_proxy = Some(proxy.trim_end_matches('/').to_string());
        self
    }

    /// The same client, pinning each block as it puts it (`block/put` with `pin=true`), so
    /// that the node's garbage collector cannot take the blocks of a snapshot before its root
    /// is pinned; each such block is first listed in the file `journal`, and
    /// [`KuboStore::release_put_pins`] releases them all once their root is pinned, or at the
    /// next pass after an attempt that failed or was killed. (The pins a node keeps are not
    /// counted: two bots with separate data folders on one node may release a block the other
    /// still puts, which only widens that block's window back to what it was without this.)
    pub fn pinning_while_putting(mut self, journal: PathBuf) -> Self {
        self.put_pins = Some(journal);
        self
    }

    /// Unpins every block listed in the journal but `root`, then removes the journal. A block
    /// that has no pin of its own (pinned only through a root, or never put) is no error. On
    /// any other error the journal stays, for the next call.
    pub(super) async fn release_put_pins(&self, root: Option<&Cid>) -> Result<()> {
        let Some(journal) = &self.put_pins else {
            return Ok(());
        };
        let listed = match fs::read_to_string(journal) {
            Ok(listed) => listed,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", journal.display()))
            }
        };
        // A line cut short by a crash names no CID, and its block was never put.
        let cids: HashSet<Cid> = listed
            .lines()
            .filter_map(|line| Cid::try_from(line).ok())
            .filter(|cid| Some(cid) != root)
            .collect();
        let cids: Vec<String> = cids.iter().map(Cid::to_string).collect();
        for batch in cids.chunks(PINS_RELEASED_PER_CALL) {
            match self.unpin_all(batch).await {
                Ok(released) if released == batch.len() => {}
                Ok(released) => bail!(
                    "the IPFS node released {released} of the {} pins asked: the IPFS API \
                     looks like an IPFS Cluster proxy (give the IPFS node's own API, and the \
                     proxy as the cluster's)",
                    batch.len()
                ),
                // Kubo stops at the first CID without a pin of its own: one by one, then.
                Err(_) => {
                    for cid in batch {
                        match self.unpin_all(std::slice::from_ref(cid)).await {
                            Ok(_) => {}
                            Err(error) if error.answered(NOT_IN_CLUSTER) => bail!(
                                "{error}: the IPFS API is an IPFS Cluster proxy, which cannot \
                                 release the pins its IPFS node gave blocks as they were put \
                                 (give the IPFS node's own API, and the proxy as the cluster's)"
                            ),
                            Err(error) => not_pinned(error, ())?,
                        }
                    }
                }
            }
        }
        fs::remove_file(journal).with_context(|| format!("removing {}", journal.display()))
    }

    /// Removes the recursive pins of `cids` in one `pin/rm` call; how many the node says it
    /// removed.
    async fn unpin_all(&self, cids: &[String]) -> Result<usize, RpcError> {
        let mut query: Vec<(&str, &str)> = cids.iter().map(|cid| ("arg", cid.as_str())).collect();
        query.push(("recursive", "true"));
        let response = self
            .send(self.http.post(self.url("pin/rm")).query(&query))
            .await?;
        #[derive(serde::Deserialize)]
        struct Removed {
            #[serde(rename = "Pins", default)]
            pins: Vec<String>,
        }
        // An answer that cannot be read says nothing of how many: as many as asked.
        Ok(read_json::<Removed>(response)
            .await
            .map_or(cids.len(), |removed| removed.pins.len()))
    }

    /// An HTTP client whose calls give up after `timeout`.
    fn client(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default()
    }

    /// The same client, giving up on calls other than block fetches after `timeout`
    /// instead of ten minutes.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.http = Self::client(timeout);
        self
    }

    /// The same client, letting the node look for a missing block for `timeout` (at least
    /// one second) instead of a minute.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// A request of `call` about the block `cid`, bounded by the fetch timeout.
    fn block_request(
        &self,
        call: &str,
        cid: &Cid,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let timeout = format!("{}s", self.fetch_timeout.as_secs());
        let arg = cid.to_string();
        self.http
            .post(self.url(call))
            .query(&[("arg", arg.as_str()), ("timeout", timeout.as_str())])
            .query(extra)
            .timeout(self.fetch_timeout + Duration::from_secs(5))
    }

    fn url(&self, call: &str) -> String {
        rpc_url(&self.api, call)
    }

    /// Sends `request`; an HTTP error status becomes an error carrying the node's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RpcError> {
        let response = request.send().await.map_err(RpcError::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response, MAX_SMALL_ANSWER)
                .await
                .unwrap_or_default();
            return Err(RpcError::Answered {
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(response)
    }

    /// Puts `block` with `block/put`, naming its codec with Kubo's current option
    /// (`cid-codec`) and, if the node refuses that or answers another CID, once more with the
    /// deprecated one (`format`) that older nodes and js-ipfs take.
    pub(super) async fn put_block(&self, block: &Block) -> Result<()> {
        let codec = codec_name(block.cid.codec())?;
        // Listed before it is pinned: a crash in between leaves no pin unlisted. Once, for
        // both attempts.
        self.list_put_pin(&block.cid)?;
        match self.put_block_with(block, "cid-codec", codec).await {
            Ok(()) => Ok(()),
            Err(first) => self
                .put_block_with(block, "format", codec)
                .await
                .map_err(|second| first.context(second)),
        }
    }

    /// Lists `cid` in the journal of blocks pinned while put, if there is one.
    fn list_put_pin(&self, cid: &Cid) -> Result<()> {
        let Some(journal) = &self.put_pins else {
            return Ok(());
        };
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal)
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, format!("{cid}\n").as_bytes())
            })
            .with_context(|| format!("writing {}", journal.display()))
    }

    async fn put_block_with(&self, block: &Block, option: &str, codec: &str) -> Result<()> {
        // js-ipfs refuses a part without a content type; Kubo takes either.
        let part = reqwest::multipart::Part::bytes(block.data.clone())
            .file_name("block")
            .mime_str("application/octet-stream")?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let pin = if self.put_pins.is_some() {
            "true"
        } else {
            "false"
        };
        let query = [(option, codec), ("mhtype", "sha2-256"), ("pin", pin)];
        let response = self
            .send(
                self.http
                    .post(self.url("block/put"))
                    .query(&query)
                    .multipart(form),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Put {
            #[serde(rename = "Key")]
            key: String,
        }
        let put: Put = read_json(response).await?;
        let cid = Cid::try_from(put.key.as_str())?;
        // The node computes the CID itself: it must name the same bytes under the same codec
        // (in any CID version or base). Under another CID, the node pinned what it stored
        // there: listed too, to be released.
        if cid.hash() != block.cid.hash() || cid.codec() != block.cid.codec() {
            self.list_put_pin(&cid)?;
            bail!(
                "the IPFS node stored the block as {cid}, expected {}",
                block.cid
            );
        }
        Ok(())
    }

    pub(super) async fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        let request = self.block_request("block/get", cid, &[]);
        read_capped(self.send(request).await?, MAX_BLOCK_ANSWER).await
    }

    pub(super) async fn has_block(&self, cid: &Cid) -> Result<bool> {
        // Offline (Kubo) or timed out (nodes that ignore `offline`): a block the node would
        // have to fetch from the network is not held.
        let request = self.block_request("block/stat", cid, &[("offline", "true")]);
        match self.send(request).await {
            Ok(_) => Ok(true),
            Err(error) if error.answered(NO_BLOCK) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Calls the pin API `call` on `root`, recursively, at the API `api`.
    async fn pin_call(
        &self,
        api: &str,
        call: &str,
        root: &Cid,
    ) -> Result<reqwest::Response, RpcError> {
        let arg = root.to_string();
        let query = [("arg", arg.as_str()), ("recursive", "true")];
        self.send(self.http.post(rpc_url(api, call)).query(&query))
            .await
    }

    /// Pins `root` on the node (which answers once every block it reaches is there), then in
    /// the cluster if there is one, then releases the pins its blocks got while put.
    pub(super) async fn pin(&self, root: &Cid) -> Result<()> {
        self.pin_call(&self.api, "pin/add", root).await?;
        if let Some(proxy) = &self.cluster_proxy {
            self.pin_call(proxy, "pin/add", root)
                .await
                .context("pinning in the IPFS Cluster")?;
        }
        self.release_put_pins(Some(root)).await
    }

    /// Unpins `root` in the cluster if there is one (first: a cluster peer would otherwise
    /// pin it again on the node), then on the node. A root without a pin is no error.
    pub(super) async fn unpin(&self, root: &Cid) -> Result<()> {
        if let Some(proxy) = &self.cluster_proxy {
            match self.pin_call(proxy, "pin/rm", root).await {
                Ok(_) => {}
                Err(error) if error.answered(NOT_IN_CLUSTER) || error.answered(NOT_PINNED) => {}
                Err(error) => {
                    return Err(anyhow::Error::new(error).context("unpinning in the IPFS Cluster"))
                }
            }
        }
        self.pin_call(&self.api, "pin/rm", root)
            .await
            .map(drop)
            .or_else(|error| not_pinned(error, ()))
    }

    /// Whether `root` has a recursive pin on the node and, if there is one, in the cluster.
    pub(super) async fn is_pinned(&self, root: &Cid) -> Result<bool> {
        if !self.pinned_at(&self.api, root).await? {
            return Ok(false);
        }
        match &self.cluster_proxy {
            Some(proxy) => self
                .pinned_at(proxy, root)
                .await
                .context("asking the IPFS Cluster"),
            None => Ok(true),
        }
    }

    /// Whether the API `api` lists `root` among its recursive pins.
    async fn pinned_at(&self, api: &str, root: &Cid) -> Result<bool> {
        let arg = root.to_string();
        let query = [("arg", arg.as_str()), ("type", "recursive")];
        match self
            .send(self.http.post(rpc_url(api, "pin/ls")).query(&query))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.answered(NOT_PINNED) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
