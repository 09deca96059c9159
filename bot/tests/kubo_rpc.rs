//! The IPFS store (`--kubo-api`) against a stand-in for Kubo's HTTP RPC API, written here
//! from Kubo's RPC reference (<https://docs.ipfs.tech/reference/kubo/rpc/>): `block/put` takes
//! one multipart `file` part and answers `{"Key", "Size"}`; `block/get?arg=CID` answers the
//! bytes; `pin/add`, `pin/rm` and `pin/ls` take `arg`; failures answer HTTP 500 with
//! `{"Message", "Code", "Type"}`. This checks the bot's side of the protocol: the endpoints and
//! options it sends, a snapshot stored, pinned, restored and unpinned through it, and that a CID
//! other than its own, an RPC error or an unreachable node each become an error.

use backup_bot::pipeline::{self, BackupSecret, FileCache};
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

/// The stand-in's answer to one request: status, content type and body.
fn answer(state: &Mutex<KuboState>, request: &Request) -> (u16, &'static str, Vec<u8>) {
    let mut state = state.lock().unwrap();
    state.requests.push(request.target.clone());
    assert_eq!(request.method, "POST", "Kubo's RPC API takes POST only");
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let error = |message: String| {
        let body = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
        (500, "application/json", body.to_string().into_bytes())
    };
    let options: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|option| option.split_once('='))
        .collect();
    let arg = options.get("arg").copied().unwrap_or_default().to_string();
    // `pin/rm` takes several.
    let args: Vec<String> = query
        .split('&')
        .filter_map(|option| option.strip_prefix("arg="))
        .map(str::to_string)
        .collect();
    let json =
        |value: serde_json::Value| (200, "application/json", format!("{value}\n").into_bytes());
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(KuboState::default()));
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
                let (status, content_type, body) = answer(&state, &request);
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
    (address, state)
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
    let secret = BackupSecret::derive(&identity, "owner", "node");
    let scanned = pipeline::scan(store, &source, &secret, "owner", "node", &FileCache::new())
        .await
        .unwrap();
    let (root, _) = pipeline::seal(store, &scanned, &[identity.to_public()])
        .await
        .unwrap();
    (root, identity, source)
}

#[tokio::test]
async fn a_snapshot_is_stored_pinned_restored_and_unpinned_through_the_rpc_api() {
    let (api, state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&format!("{api}/")));
    let dir = tempfile::tempdir().unwrap();
    let (root, identity, source) = sealed_sample(&store, dir.path()).await;
    store.pin(&root).await.unwrap();
    assert!(store.is_pinned(&root).await.unwrap());

    let target = dir.path().join("restored");
    pipeline::restore(&store, &root, &identity, None, &target)
        .await
        .unwrap();
    assert_eq!(tree::first_difference(&source, &target).unwrap(), None);

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
