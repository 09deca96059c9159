//! The IPFS store (`--kubo-api`) against a stand-in for Kubo's HTTP RPC API, written here
//! from Kubo's RPC reference (<https://docs.ipfs.tech/reference/kubo/rpc/>): `block/put` takes
//! one multipart `file` part and answers `{"Key", "Size"}`; `block/get?arg=CID` answers the
//! bytes; `pin/add`, `pin/rm` and `pin/ls` take `arg`; failures answer HTTP 500 with
//! `{"Message", "Code", "Type"}`. This checks the bot's side of the protocol: the endpoints and
//! options it sends, a snapshot stored, pinned, restored and unpinned through it, and that a CID
//! other than its own, an RPC error or an unreachable node each become an error.
//!
//! The same stand-in also answers as an IPFS Cluster peer's IPFS proxy API in front of that
//! node, as ipfs-cluster's `api/ipfsproxy` does: `pin/add`, `pin/rm` and `pin/ls` act on the
//! cluster's shared pin set and read only the first `arg`; a `pin/rm` of a CID the cluster
//! does not pin answers 500 `{"Message": "cannot unpin pin uncommitted to state: ..."}`, a
//! `pin/ls` of one 500 `{"Message": "Error: path '...' is not pinned"}`; every other call goes
//! to the node behind it.

#[path = "common/sealed.rs"]
mod sealed;

use backup_bot::pipeline;
use backup_bot::store::{ContentStore, KuboStore};
use backup_bot::unixfs::{self, Block, RAW};
use backup_bot::{demo, tree};
use cid::Cid;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stand-in Kubo holds and what it was asked.
#[derive(Default)]
struct KuboState {
    /// Blocks by CID string.
    blocks: HashMap<String, Vec<u8>>,
    /// Recursive pins: roots, and blocks put with `pin=true`.
    pins: HashSet<String>,
    /// The cluster's shared pin set, which its proxy's pin calls act on.
    cluster_pins: HashSet<String>,
    /// Request targets (`/api/v0/...?...`), in order.
    requests: Vec<String>,
    /// When set, `block/put` ignores `cid-codec` and reads the block as dag-pb, as js-ipfs
    /// does: only the deprecated `format` names another codec.
    format_only: bool,
    /// When set, `block/put` answers this CID instead of the block's.
    answer_cid: Option<String>,
    /// When set, `block/get` answers this many bytes, whatever was asked.
    flood: Option<usize>,
    /// When set, requests to this path are read and never answered.
    stall: Option<&'static str>,
}

/// One HTTP request: its method and target, headers (names in lower case) and body.
struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Index of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Reads one request with a `Content-Length` or chunked body.
async fn read_request(stream: &mut TcpStream) -> Request {
    let mut data = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    let head_end = loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "connection closed inside the request head");
        data.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target) = (request_line.next().unwrap(), request_line.next().unwrap());
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    let mut rest = data[head_end + 4..].to_vec();
    let body = if let Some(length) = headers.get("content-length") {
        let length: usize = length.parse().unwrap();
        while rest.len() < length {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "connection closed inside the body");
            rest.extend_from_slice(&buffer[..read]);
        }
        rest
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        while find(&rest, b"\r\n0\r\n\r\n").is_none() && !rest.starts_with(b"0\r\n\r\n") {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "connection closed inside a chunked body");
            rest.extend_from_slice(&buffer[..read]);
        }
        let mut body = Vec::new();
        let mut cursor = &rest[..];
        loop {
            let line_end = find(cursor, b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&cursor[..line_end]).unwrap(), 16)
                .unwrap();
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&cursor[line_end + 2..line_end + 2 + size]);
            cursor = &cursor[line_end + 2 + size + 2..];
        }
    } else {
        Vec::new()
    };
    Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
    }
}

/// The content of the one part of a `multipart/form-data` body.
fn single_part(request: &Request) -> Vec<u8> {
    let content_type = &request.headers["content-type"];
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a multipart boundary");
    let body = &request.body;
    let start = find(body, b"\r\n\r\n").expect("part headers") + 4;
    let end = find(body, format!("\r\n--{boundary}--").as_bytes()).expect("closing boundary");
    let part_headers = String::from_utf8_lossy(&body[..start]).to_lowercase();
    assert!(
        part_headers.contains("name=\"file\""),
        "the part is Kubo's `file` field: {part_headers}"
    );
    body[start..end].to_vec()
}

/// Which API a listener of the stand-in serves.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    /// The IPFS node's own.
    Node,
    /// The IPFS proxy API of a cluster peer in front of the node.
    ClusterProxy,
}

/// The stand-in's answer to one request on `api`: status, content type and body.
fn answer(state: &Mutex<KuboState>, api: Api, request: &Request) -> (u16, &'static str, Vec<u8>) {
    let mut state = state.lock().unwrap();
    let asked = match api {
        Api::Node => request.target.clone(),
        Api::ClusterProxy => format!("cluster {}", request.target),
    };
    state.requests.push(asked);
    assert_eq!(request.method, "POST", "Kubo's RPC API takes POST only");
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let error = |message: String| {
        let body = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
        (500, "application/json", body.to_string().into_bytes())
    };
    let json =
        |value: serde_json::Value| (200, "application/json", format!("{value}\n").into_bytes());
    let options: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|option| option.split_once('='))
        .collect();
    let arg = options.get("arg").copied().unwrap_or_default().to_string();
    if api == Api::ClusterProxy {
        let cluster_error = |message: &str| {
            let body = serde_json::json!({ "Message": message });
            (500, "application/json", body.to_string().into_bytes())
        };
        match path {
            "/api/v0/pin/add" => {
                state.cluster_pins.insert(arg.clone());
                return json(serde_json::json!({ "Pins": [arg] }));
            }
            "/api/v0/pin/rm" if state.cluster_pins.remove(&arg) => {
                return json(serde_json::json!({ "Pins": [arg] }));
            }
            "/api/v0/pin/rm" => {
                return cluster_error("cannot unpin pin uncommitted to state: not found");
            }
            "/api/v0/pin/ls" if state.cluster_pins.contains(&arg) => {
                return json(serde_json::json!({ "Keys": { arg: { "Type": "recursive" } } }));
            }
            "/api/v0/pin/ls" => {
                return cluster_error(&format!("Error: path '{arg}' is not pinned"))
            }
            _ => {}
        }
    }
    // `pin/rm` takes several.
    let args: Vec<String> = query
        .split('&')
        .filter_map(|option| option.strip_prefix("arg="))
        .map(str::to_string)
        .collect();
    match path {
        "/api/v0/block/put" => {
            let content = single_part(request);
            let named = match (options.get("format"), options.get("cid-codec")) {
                (Some(format), _) => format,
                (None, Some(_)) if state.format_only => "dag-pb",
                (None, Some(codec)) => codec,
                (None, None) => "raw",
            };
            let codec = match named {
                "raw" => unixfs::RAW,
                "dag-pb" if unixfs::decode_node(&content).is_ok() => unixfs::DAG_PB,
                "dag-pb" => return error("failed to decode dag-pb block".to_string()),
                other => return error(format!("unknown codec {other}")),
            };
            let cid = match &state.answer_cid {
                Some(cid) => cid.clone(),
                None => Block::new(codec, content.clone()).unwrap().cid.to_string(),
            };
            let size = content.len();
            state.blocks.insert(cid.clone(), content);
            if options.get("pin") == Some(&"true") {
                state.pins.insert(cid.clone());
            }
            json(serde_json::json!({ "Key": cid, "Size": size }))
        }
        "/api/v0/block/get" if state.flood.is_some() => (
            200,
            "application/octet-stream",
            vec![7; state.flood.unwrap_or(0)],
        ),
        "/api/v0/block/get" => match state.blocks.get(&arg) {
            Some(content) => (200, "application/octet-stream", content.clone()),
            None => error(format!("block was not found locally (offline): {arg}")),
        },
        "/api/v0/pin/add" => {
            state.pins.insert(arg.clone());
            json(serde_json::json!({ "Pins": [arg] }))
        }
        // As Kubo: one CID after the other, stopping at the first without a pin of its own.
        "/api/v0/pin/rm" => {
            for arg in &args {
                if !state.pins.remove(arg) {
                    return error("not pinned or pinned indirectly".to_string());
                }
            }
            json(serde_json::json!({ "Pins": args }))
        }
        "/api/v0/pin/ls" => {
            if state.pins.contains(&arg) {
                json(serde_json::json!({ "Keys": { arg: { "Type": "recursive" } } }))
            } else {
                error(format!("path '{arg}' is not pinned"))
            }
        }
        _ => error(format!("unknown command {path}")),
    }
}

/// Starts the stand-in on a free loopback port; returns its API address and state.
async fn start_kubo() -> (String, Arc<Mutex<KuboState>>) {
    let state = Arc::new(Mutex::new(KuboState::default()));
    (serve(&state, Api::Node).await, state)
}

/// Serves `api` of the stand-in holding `state` on a free loopback port; returns its address.
async fn serve(state: &Arc<Mutex<KuboState>>, api: Api) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let state = shared.clone();
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                let stalled = state.lock().unwrap().stall;
                if stalled.is_some_and(|path| request.target.starts_with(path)) {
                    std::future::pending::<()>().await;
                }
                let (status, content_type, body) = answer(&state, api, &request);
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    if status == 200 { "OK" } else { "Internal Server Error" },
                    body.len()
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&body).await.unwrap();
                stream.shutdown().await.ok();
            });
        }
    });
    address
}

/// The demo's sample tree in `dir/source`, scanned and sealed into `store` (not pinned);
/// returns the root, the identity it is sealed to, and the tree's folder.
async fn sealed_sample(
    store: &ContentStore,
    dir: &std::path::Path,
) -> (Cid, age::x25519::Identity, std::path::PathBuf) {
    let source = dir.join("source");
    demo::write_sample_tree(&source).unwrap();
    let identity = age::x25519::Identity::generate();
    let (root, _) = sealed::sealed_to(store, &source, &identity).await;
    (root, identity, source)
}

/// Restores `root` from `store` into a new folder of `dir` and checks it is `source`.
async fn assert_restores(
    store: &ContentStore,
    root: &Cid,
    identity: &age::x25519::Identity,
    source: &std::path::Path,
    dir: &std::path::Path,
) {
    let target = dir.join("restored");
    pipeline::restore(store, root, identity, None, &target)
        .await
        .unwrap();
    assert_eq!(tree::first_difference(source, &target).unwrap(), None);
}

#[tokio::test]
async fn a_snapshot_is_stored_pinned_restored_and_unpinned_through_the_rpc_api() {
    let (api, state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&format!("{api}/")));
    let dir = tempfile::tempdir().unwrap();
    let (root, identity, source) = sealed_sample(&store, dir.path()).await;
    store.pin(&root).await.unwrap();
    assert!(store.is_pinned(&root).await.unwrap());

    assert_restores(&store, &root, &identity, &source, dir.path()).await;

    store.unpin(&root).await.unwrap();
    assert!(!store.is_pinned(&root).await.unwrap());
    store.unpin(&root).await.unwrap();

    let requests = state.lock().unwrap().requests.clone();
    let put = requests
        .iter()
        .find(|target| target.starts_with("/api/v0/block/put?"))
        .unwrap();
    let mut options: Vec<&str> = put.split_once('?').unwrap().1.split('&').collect();
    options.sort_unstable();
    assert!(
        options == ["cid-codec=raw", "mhtype=sha2-256", "pin=false"]
            || options == ["cid-codec=dag-pb", "mhtype=sha2-256", "pin=false"],
        "{options:?}"
    );
    assert!(requests.contains(&format!("/api/v0/pin/add?arg={root}&recursive=true")));
    assert!(requests.contains(&format!("/api/v0/block/get?arg={root}&timeout=60s")));
}

/// A writer's store pins each block as it puts it (the node's garbage collector cannot take
/// it before its root is pinned), lists it first, and releases those pins once the root is
/// pinned; pins left by an attempt that never reached its root are released on the next
/// call, a listed block without a pin of its own included.
#[tokio::test]
async fn blocks_are_pinned_while_put_until_their_root_is() {
    let (api, state) = start_kubo().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("kubo-put-pins");
    let store = ContentStore::Kubo(KuboStore::new(&api)).pin_while_putting(journal.clone());
    let (root, _, _) = sealed_sample(&store, dir.path()).await;
    let put: HashSet<String> = state.lock().unwrap().blocks.keys().cloned().collect();
    assert_eq!(
        state.lock().unwrap().pins,
        put,
        "every block pinned as it was put"
    );
    let listed: HashSet<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, put, "and listed");
    store.pin(&root).await.unwrap();
    assert_eq!(
        state.lock().unwrap().pins,
        HashSet::from([root.to_string()])
    );
    assert!(!journal.exists());

    // An attempt killed before its root: a block put and pinned, and a listed one the node
    // never got.
    let orphan = Block::new(RAW, b"put by an attempt that never finished".to_vec()).unwrap();
    store.put_block(&orphan).await.unwrap();
    let never_put = Block::new(RAW, b"listed, then killed".to_vec()).unwrap();
    let mut lines = std::fs::read_to_string(&journal).unwrap();
    lines.push_str(&format!("{}\nbafk", never_put.cid));
    std::fs::write(&journal, lines).unwrap();
    let restarted = ContentStore::Kubo(KuboStore::new(&api)).pin_while_putting(journal.clone());
    restarted.release_put_pins().await.unwrap();
    assert_eq!(
        state.lock().unwrap().pins,
        HashSet::from([root.to_string()])
    );
    assert!(!journal.exists());
    restarted.release_put_pins().await.unwrap();
}

/// The stand-in's node API and a cluster proxy in front of it (one state), a folder, and the
/// path of a journal of pins put there.
async fn node_behind_cluster_proxy() -> (
    String,
    String,
    Arc<Mutex<KuboState>>,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let (api, state) = start_kubo().await;
    let proxy = serve(&state, Api::ClusterProxy).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("kubo-put-pins");
    (api, proxy, state, dir, journal)
}

/// With an IPFS Cluster proxy given, a root is pinned on the node (proving it whole there)
/// and in the cluster (which replicates it); the blocks' own pins are released on the node;
/// unpinning empties both, and a root the cluster lost no longer counts as pinned.
#[tokio::test]
async fn a_cluster_proxy_pins_every_root_cluster_wide() {
    let (api, proxy, state, dir, journal) = node_behind_cluster_proxy().await;
    let store = ContentStore::Kubo(KuboStore::new(&api).with_cluster_proxy(&format!("{proxy}/")))
        .pin_while_putting(journal.clone());
    let (root, identity, source) = sealed_sample(&store, dir.path()).await;
    store.pin(&root).await.unwrap();
    let only_root = HashSet::from([root.to_string()]);
    assert_eq!(state.lock().unwrap().pins, only_root, "on the node");
    assert_eq!(
        state.lock().unwrap().cluster_pins,
        only_root,
        "in the cluster"
    );
    assert!(!journal.exists());
    assert!(store.is_pinned(&root).await.unwrap());
    assert_restores(&store, &root, &identity, &source, dir.path()).await;

    state.lock().unwrap().cluster_pins.clear();
    assert!(
        !store.is_pinned(&root).await.unwrap(),
        "a root the cluster no longer pins is not pinned"
    );
    store.pin(&root).await.unwrap();
    store.unpin(&root).await.unwrap();
    assert!(state.lock().unwrap().pins.is_empty());
    assert!(state.lock().unwrap().cluster_pins.is_empty());
    assert!(!store.is_pinned(&root).await.unwrap());
    // Neither the cluster's "uncommitted to state" nor the node's "not pinned" is an error.
    store.unpin(&root).await.unwrap();
    let requests = state.lock().unwrap().requests.clone();
    let cluster_unpin = format!("cluster /api/v0/pin/rm?arg={root}&recursive=true");
    let node_unpin = format!("/api/v0/pin/rm?arg={root}&recursive=true");
    let first = |asked: &str| requests.iter().position(|target| target == asked).unwrap();
    assert!(
        first(&cluster_unpin) < first(&node_unpin),
        "unpinned in the cluster first: {requests:?}"
    );
}

/// The proxy given as the node's own API: the pins blocks get while put are the node's, which
/// the proxy cannot release (it unpins only in the cluster, and only the first CID named).
/// The pin is then an error naming the mistake, and the journal of those pins stays.
#[tokio::test]
async fn a_cluster_proxy_given_as_the_node_is_an_error_not_a_leak() {
    let (_, proxy, state, dir, journal) = node_behind_cluster_proxy().await;
    let store = ContentStore::Kubo(KuboStore::new(&proxy)).pin_while_putting(journal.clone());
    let (root, _, _) = sealed_sample(&store, dir.path()).await;
    let error = format!("{:#}", store.pin(&root).await.unwrap_err());
    assert!(error.contains("IPFS Cluster proxy"), "{error}");
    assert!(journal.exists());
    assert!(
        state.lock().unwrap().pins.len() > 1,
        "the blocks' pins are kept"
    );
}

#[tokio::test]
async fn a_node_that_knows_only_the_deprecated_format_option_is_served() {
    let (api, state) = start_kubo().await;
    state.lock().unwrap().format_only = true;
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let block = Block::new(RAW, b"raw block".to_vec()).unwrap();
    store.put_block(&block).await.unwrap();
    assert_eq!(store.get_block(&block.cid).await.unwrap(), block.data);
    let requests = state.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests[0].contains("cid-codec=raw"), "{requests:?}");
    assert!(requests[1].contains("format=raw"), "{requests:?}");
}

#[tokio::test]
async fn a_different_cid_from_the_node_is_refused() {
    let (api, state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let block = Block::new(RAW, b"block".to_vec()).unwrap();
    let other = Block::new(RAW, b"something else".to_vec()).unwrap().cid;
    state.lock().unwrap().answer_cid = Some(other.to_string());
    let error = store.put_block(&block).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "the IPFS node stored the block as {other}, expected {}",
            block.cid
        )
    );
}

#[tokio::test]
async fn rpc_errors_and_an_unreachable_node_are_errors() {
    let (api, _state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let missing: Cid = Block::new(RAW, b"never added".to_vec()).unwrap().cid;
    let error = format!("{:#}", store.get_block(&missing).await.unwrap_err());
    assert!(error.starts_with("IPFS RPC error 500"), "{error}");
    assert!(error.contains("block was not found locally"), "{error}");

    // A port nothing listens on: bind one, then free it.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let store = ContentStore::Kubo(KuboStore::new(&address));
    let block = Block::new(RAW, b"block".to_vec()).unwrap();
    let error = format!("{:#}", store.put_block(&block).await.unwrap_err());
    assert!(error.starts_with("IPFS RPC API unreachable"), "{error}");
}

/// A node that answers a block fetch with 5 MiB, or never answers a pin: errors, promptly,
/// nothing read past the limit.
#[tokio::test]
async fn a_flooding_or_stalling_node_is_an_error() {
    let (api, state) = start_kubo().await;
    state.lock().unwrap().flood = Some(5 << 20);
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let block = Block::new(RAW, b"asked for".to_vec()).unwrap();
    let error = format!("{:#}", store.get_block(&block.cid).await.unwrap_err());
    assert!(error.contains("larger than the"), "{error}");

    state.lock().unwrap().stall = Some("/api/v0/pin/add");
    let store = ContentStore::Kubo(
        KuboStore::new(&api).with_call_timeout(std::time::Duration::from_secs(1)),
    );
    let started = std::time::Instant::now();
    let error = format!("{:#}", store.pin(&block.cid).await.unwrap_err());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{error}"
    );
    assert!(error.contains("IPFS RPC API unreachable"), "{error}");
}
