//! The Kubo store (`--kubo-api`) against a stand-in for Kubo's HTTP RPC API, written here
//! from Kubo's RPC reference (<https://docs.ipfs.tech/reference/kubo/rpc/>): `add` takes one
//! multipart `file` part and answers `{"Name", "Hash", "Size"}`; `cat?arg=CID` answers the
//! bytes; failures answer HTTP 500 with `{"Message", "Code", "Type"}`. This machine cannot
//! download a real Kubo, so this checks the bot's side of the protocol: the endpoints and
//! options it sends (`cid-version=1`, `pin=true`), the upload and download of the bytes, and
//! that a CID other than its own, an RPC error or an unreachable node each become an error.

use backup_bot::store::{cid_of_file, verify, ContentStore, KuboStore};
use backup_bot::unixfs;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stand-in Kubo holds and what it was asked.
#[derive(Default)]
struct KuboState {
    /// Content by CID string.
    blocks: HashMap<String, Vec<u8>>,
    /// Request targets (`/api/v0/...?...`), in order.
    requests: Vec<String>,
    /// When set, `add` answers this CID instead of the content's.
    answer_cid: Option<String>,
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
    match path {
        "/api/v0/add" => {
            let content = single_part(request);
            let cid = match &state.answer_cid {
                Some(cid) => cid.clone(),
                None => unixfs::cid_of(&content[..]).unwrap().to_string(),
            };
            let size = content.len();
            state.blocks.insert(cid.clone(), content);
            let body = serde_json::json!({ "Name": "file", "Hash": cid, "Size": size.to_string() });
            (200, "application/json", format!("{body}\n").into_bytes())
        }
        "/api/v0/cat" => {
            let cid = query.strip_prefix("arg=").unwrap_or_default();
            match state.blocks.get(cid) {
                Some(content) => (200, "text/plain", content.clone()),
                None => error(format!("block was not found locally (offline): {cid}")),
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

/// A file of `len` pseudo-random bytes in `dir`.
fn sample_file(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let path = dir.join("archive.age");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn put_and_fetch_through_the_rpc_api() {
    let (api, state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&format!("{api}/")));
    let dir = tempfile::tempdir().unwrap();
    // Three chunks and a bit: a dag-pb root over raw leaves.
    let source = sample_file(dir.path(), 3 * 256 * 1024 + 5);
    let cid = store.put(&source).await.unwrap();
    assert_eq!(cid, cid_of_file(&source).unwrap());
    assert!(state.lock().unwrap().blocks[&cid.to_string()] == std::fs::read(&source).unwrap());

    let fetched = dir.path().join("fetched");
    store.fetch(&cid, &fetched).await.unwrap();
    verify(&cid, &fetched).unwrap();
    assert!(std::fs::read(&fetched).unwrap() == std::fs::read(&source).unwrap());

    let requests = state.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (add_path, add_query) = requests[0].split_once('?').unwrap();
    assert_eq!(add_path, "/api/v0/add");
    let mut options: Vec<&str> = add_query.split('&').collect();
    options.sort_unstable();
    assert_eq!(options, ["cid-version=1", "pin=true"]);
    assert_eq!(requests[1], format!("/api/v0/cat?arg={cid}"));
}

#[tokio::test]
async fn a_different_cid_from_kubo_is_refused() {
    let (api, state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let dir = tempfile::tempdir().unwrap();
    let source = sample_file(dir.path(), 1000);
    let other = unixfs::cid_of(&b"something else"[..]).unwrap();
    state.lock().unwrap().answer_cid = Some(other.to_string());
    let error = store.put(&source).await.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("Kubo stored the archive as {other}, expected ")),
        "{error}"
    );
}

#[tokio::test]
async fn rpc_errors_and_an_unreachable_node_are_errors() {
    let (api, _state) = start_kubo().await;
    let store = ContentStore::Kubo(KuboStore::new(&api));
    let dir = tempfile::tempdir().unwrap();
    let missing = unixfs::cid_of(&b"never added"[..]).unwrap();
    let error = format!(
        "{:#}",
        store
            .fetch(&missing, &dir.path().join("out"))
            .await
            .unwrap_err()
    );
    assert!(error.starts_with("Kubo RPC error 500"), "{error}");
    assert!(error.contains("block was not found locally"), "{error}");

    // A port nothing listens on: bind one, then free it.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let store = ContentStore::Kubo(KuboStore::new(&address));
    let error = format!(
        "{:#}",
        store.put(&sample_file(dir.path(), 10)).await.unwrap_err()
    );
    assert!(error.starts_with("Kubo RPC unreachable"), "{error}");
}
