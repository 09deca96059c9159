//! Block stores: where snapshots go, one IPFS block per CID, kept alive by pinned roots.
//!
//! The embedded [`LocalStore`] needs nothing installed: a directory of blocks named by CID and
//! a directory of pins; [`LocalStore::collect_garbage`] removes every block no pinned root
//! reaches once it is older than a grace period. [`KuboStore`] talks to an IPFS node's HTTP
//! RPC API (Kubo's, or any implementation of it, js-ipfs among them): `block/put`,
//! `block/get`, `pin/add`, `pin/rm`, `pin/ls`; that node's own garbage collector reclaims what
//! is unpinned. Both name blocks by the same CIDv1 (sha2-256), so blocks moved between them,
//! or to any IPFS node, keep their CIDs.

use crate::unixfs::{self, Block, DAG_PB};
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How long the embedded store keeps a block no pinned root reaches, counted from when it
/// was written. A pass interrupted before its pin leaves blocks no pin reaches; kept for an
/// hour, the next pass finds them whole and does not write them again. (kopia likewise
/// keeps unreferenced blobs for a while; restic keeps unreferenced packs until `prune`.)
pub const GC_GRACE: Duration = Duration::from_secs(60 * 60);

/// How much older than the last sync a block must look to be trusted as synced: file times
/// come from the kernel's coarse clock, which may lag the clock the sync was timed with.
const SYNC_CLOCK_MARGIN_NS: u64 = 1_000_000_000;

/// A place to put blocks, fetch them back by CID and pin the roots of snapshots.
pub enum ContentStore {
    /// The embedded store: a local directory.
    Local(LocalStore),
    /// An IPFS node's HTTP RPC API.
    Kubo(KuboStore),
}

impl ContentStore {
    /// Stores `block`; returns whether its bytes were new to the store (always `true` for an
    /// IPFS node, which does not say).
    pub async fn put_block(&self, block: &Block) -> Result<bool> {
        match self {
            Self::Local(store) => store.put_block(block),
            Self::Kubo(store) => store.put_block(block).await.map(|()| true),
        }
    }

    /// The bytes stored under `cid`, unverified (see [`Block::verified`]).
    pub async fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        match self {
            Self::Local(store) => store.get_block(cid),
            Self::Kubo(store) => store.get_block(cid).await,
        }
    }

    /// Whether the store holds the block `cid` (unverified).
    pub async fn has_block(&self, cid: &Cid) -> Result<bool> {
        match self {
            Self::Local(store) => Ok(store.path_of(cid).exists()),
            Self::Kubo(store) => store.has_block(cid).await,
        }
    }

    /// Whether a block of a pinned snapshot, `cid` of `size` bytes, is still whole, before a
    /// file cache reuses it. The embedded store checks the file's size, and the bytes of a
    /// block written since its last sync (a pin there is a marker, and a power cut or a hand
    /// can remove, truncate or garble a block); an IPFS node keeps
    /// every block a recursive pin reaches, so it is not asked.
    pub fn pinned_block_whole(&self, cid: &Cid, size: u64) -> Result<bool> {
        match self {
            Self::Local(store) => store.holds_whole(cid, size),
            Self::Kubo(_) => Ok(true),
        }
    }

    /// Makes every block put so far durable (the embedded store's file system synced; an
    /// IPFS node syncs its own), before a root is pinned and recorded.
    pub fn sync(&self) -> Result<()> {
        match self {
            Self::Local(store) => store.sync(),
            Self::Kubo(_) => Ok(()),
        }
    }

    /// The same store, for the one process that puts blocks in it: an IPFS node then pins
    /// every block while it puts it, listing it in the file `journal`, until the root that
    /// reaches it is pinned (see [`KuboStore::pinning_while_putting`]). The embedded store's
    /// collection runs in that same process, after its pins, and needs none of it.
    pub fn pin_while_putting(self, journal: PathBuf) -> Self {
        match self {
            Self::Kubo(store) => Self::Kubo(store.pinning_while_putting(journal)),
            local => local,
        }
    }

    /// Pins `root` and, recursively, every block it links to; then releases the pins the
    /// blocks got while they were put.
    pub async fn pin(&self, root: &Cid) -> Result<()> {
        match self {
            Self::Local(store) => store.pin(root),
            Self::Kubo(store) => {
                store.pin_call("pin/add", root).await?;
                store.release_put_pins(Some(root)).await
            }
        }
    }

    /// Releases the pins that blocks got while they were put for a snapshot whose root was
    /// never pinned (a failed or killed attempt): its blocks are garbage, or will be put
    /// again. Nothing for the embedded store.
    pub async fn release_put_pins(&self) -> Result<()> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Kubo(store) => store.release_put_pins(None).await,
        }
    }

    /// Removes the pin of `root` (nothing happens if it has none).
    pub async fn unpin(&self, root: &Cid) -> Result<()> {
        match self {
            Self::Local(store) => store.unpin(root),
            Self::Kubo(store) => store.unpin(root).await,
        }
    }

    /// Whether `root` is pinned.
    pub async fn is_pinned(&self, root: &Cid) -> Result<bool> {
        match self {
            Self::Local(store) => Ok(store.is_pinned(root)),
            Self::Kubo(store) => store.is_pinned(root).await,
        }
    }

    /// Removes the blocks no pinned root reaches, in the embedded store; an IPFS node's own
    /// garbage collector does that for it (`None`).
    pub fn collect_garbage(&self) -> Result<Option<GarbageReport>> {
        match self {
            Self::Local(store) => store.collect_garbage().map(Some),
            Self::Kubo(_) => Ok(None),
        }
    }
}

/// What a garbage collection removed and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct GarbageReport {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Blocks kept (reached from a pinned root).
    pub kept_blocks: u64,
    /// Blocks no pinned root reaches, kept because they were written within the grace
    /// period.
    pub young_blocks: u64,
}

/// A directory holding one file per block (`blocks/CID`), one empty file per pinned root
/// (`pins/CID`), and an empty file (`synced`) touched after each sync.
pub struct LocalStore {
    blocks: PathBuf,
    pins: PathBuf,
    synced: PathBuf,
    /// When the last sync ended (the mtime of `synced`), in nanoseconds since the epoch;
    /// zero before the first.
    synced_at: AtomicU64,
    /// How long a block no pinned root reaches is kept after it was written.
    grace: Duration,
}

/// Nanoseconds from the epoch to `time` (zero before it).
fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

impl LocalStore {
    /// A store in `root` (created if missing), collecting with the [`GC_GRACE`] period.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let synced = root.join("synced");
        let synced_at = match fs::metadata(&synced) {
            Ok(meta) => nanos_since_epoch(meta.modified()?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", synced.display()))
            }
        };
        let store = Self {
            blocks: root.join("blocks"),
            pins: root.join("pins"),
            synced,
            synced_at: AtomicU64::new(synced_at),
            grace: GC_GRACE,
        };
        for dir in [&store.blocks, &store.pins] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(store)
    }

    /// The same store, keeping blocks no pinned root reaches for `grace` instead (zero: the
    /// next collection removes them).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Where the block named `cid` lives.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.blocks.join(cid.to_string())
    }

    /// The blocks held, by CID.
    pub fn block_cids(&self) -> Result<Vec<Cid>> {
        let mut cids = Vec::new();
        for entry in fs::read_dir(&self.blocks)? {
            let name = entry?.file_name();
            if let Ok(cid) = Cid::try_from(name.to_string_lossy().as_ref()) {
                cids.push(cid);
            }
        }
        Ok(cids)
    }

    /// Bytes held in blocks.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for entry in fs::read_dir(&self.blocks)? {
            total += entry?.metadata()?.len();
        }
        Ok(total)
    }

    /// Whether the block `cid` is there, whole, with `size` bytes. A block written since the
    /// last sync (or in the second before it) is in doubt (a power cut can leave a file its full size with other bytes
    /// in it): it is read and checked against its CID. A synced one is trusted by its size.
    fn holds_whole(&self, cid: &Cid, size: u64) -> Result<bool> {
        let meta = match fs::symlink_metadata(self.path_of(cid)) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error).with_context(|| format!("reading block {cid}")),
        };
        if !meta.is_file() || meta.len() != size {
            return Ok(false);
        }
        let written_ns = nanos_since_epoch(meta.modified()?);
        let synced_ns = self.synced_at.load(Ordering::Relaxed);
        if written_ns.saturating_add(SYNC_CLOCK_MARGIN_NS) < synced_ns {
            return Ok(true);
        }
        Ok(self
            .get_block(cid)
            .and_then(|bytes| Block::verified(cid, bytes))
            .is_ok())
    }

    /// Stores `block` unless a whole copy is there (a block cut short or garbled by a power
    /// cut is written again); returns whether it wrote it. Durable only after
    /// [`LocalStore::sync`].
    fn put_block(&self, block: &Block) -> Result<bool> {
        let target = self.path_of(&block.cid);
        if self.holds_whole(&block.cid, block.data.len() as u64)? {
            return Ok(false);
        }
        // Write under a temporary name, then rename: a crash never leaves a partial block
        // under a CID.
        let partial = self.blocks.join(format!(".{}.partial", block.cid));
        fs::write(&partial, &block.data)
            .with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, &target)?;
        Ok(true)
    }

    fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        fs::read(self.path_of(cid)).with_context(|| format!("block {cid} is not in the store"))
    }

    /// Syncs the file system holding the blocks (`syncfs`: one call for every block written,
    /// with their directory entries), then touches `synced`: every block older than it is
    /// durable.
    fn sync(&self) -> Result<()> {
        let blocks = fs::File::open(&self.blocks)?;
        rustix::fs::syncfs(&blocks)
            .with_context(|| format!("syncing {}", self.blocks.display()))?;
        let marker = fs::File::create(&self.synced)
            .with_context(|| format!("writing {}", self.synced.display()))?;
        let now = SystemTime::now();
        marker.set_modified(now)?;
        self.synced_at
            .store(nanos_since_epoch(now), Ordering::Relaxed);
        Ok(())
    }

    fn pin(&self, root: &Cid) -> Result<()> {
        let path = self.pins.join(root.to_string());
        fs::File::create(&path)
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::File::open(&self.pins)?.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    }

    fn unpin(&self, root: &Cid) -> Result<()> {
        match fs::remove_file(self.pins.join(root.to_string())) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    fn is_pinned(&self, root: &Cid) -> bool {
        self.pins.join(root.to_string()).exists()
    }

    /// The pinned roots.
    pub fn pinned(&self) -> Result<Vec<Cid>> {
        let mut roots = Vec::new();
        for entry in fs::read_dir(&self.pins)? {
            let name = entry?.file_name();
            match Cid::try_from(name.to_string_lossy().as_ref()) {
                Ok(cid) => roots.push(cid),
                Err(_) => bail!("{name:?} among the pins is not a CID"),
            }
        }
        Ok(roots)
    }

    /// Every block reached from a pinned root, reading every dag-pb block (raw leaves have no
    /// links and are not read). A pin that names no CID, or a dag-pb block that is missing,
    /// unreadable, does not match its CID or does not decode, is an error: what it would have
    /// reached is unknown.
    fn reachable(&self) -> Result<HashSet<Cid>> {
        let mut reached = HashSet::new();
        let mut pending = self.pinned()?;
        while let Some(cid) = pending.pop() {
            if !reached.insert(cid) || cid.codec() != DAG_PB {
                continue;
            }
            let node = self
                .get_block(&cid)
                .and_then(|bytes| Block::verified(&cid, bytes))
                .and_then(|block| unixfs::decode_node(&block.data))
                .with_context(|| format!("garbage collection cannot follow {cid}"))?;
            pending.extend(node.links.into_iter().map(|link| link.cid));
        }
        Ok(reached)
    }

    /// Removes every block (and leftover partial write) that no pinned root reaches and
    /// that was written longer ago than the grace period. Never deletes on doubt: any pin or
    /// dag-pb block it cannot read and decode fails the whole collection before anything is
    /// removed, and so does a block whose age cannot be read. Safe to interrupt: it only
    /// ever removes unreachable blocks, and pins are taken before a snapshot is recorded,
    /// after its blocks are stored and synced.
    pub fn collect_garbage(&self) -> Result<GarbageReport> {
        let reachable = self.reachable()?;
        let started = SystemTime::now();
        let mut report = GarbageReport::default();
        for entry in fs::read_dir(&self.blocks)? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = Cid::try_from(name.to_string_lossy().as_ref())
                .is_ok_and(|cid| reachable.contains(&cid));
            if keep {
                report.kept_blocks += 1;
                continue;
            }
            let meta = entry.metadata()?;
            // A time in the future counts as young, as does an age within the grace.
            let young = started
                .duration_since(meta.modified()?)
                .map_or(true, |age| age < self.grace);
            if young {
                report.young_blocks += 1;
                continue;
            }
            fs::remove_file(entry.path())?;
            report.removed_blocks += 1;
            report.removed_bytes += meta.len();
        }
        Ok(report)
    }
}

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

/// `value` when `error` is the node's answer that what was to be unpinned has no pin of its
/// own (not pinned, or pinned only through a root: Kubo says "not pinned or pinned
/// indirectly", js-ipfs "is pinned indirectly under"), else `error`.
fn not_pinned<T>(error: anyhow::Error, value: T) -> Result<T> {
    let message = error.to_string();
    if message.contains("not pinned") || message.contains("pinned indirectly") {
        Ok(value)
    } else {
        Err(error)
    }
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
        }
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
    async fn release_put_pins(&self, root: Option<&Cid>) -> Result<()> {
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
            if self.unpin_all(batch).await.is_err() {
                // Kubo stops at the first CID without a pin of its own: one by one, then.
                for cid in batch {
                    self.unpin_all(std::slice::from_ref(cid))
                        .await
                        .or_else(|error| not_pinned(error, ()))?;
                }
            }
        }
        fs::remove_file(journal).with_context(|| format!("removing {}", journal.display()))
    }

    /// Removes the recursive pins of `cids` in one `pin/rm` call.
    async fn unpin_all(&self, cids: &[String]) -> Result<()> {
        let mut query: Vec<(&str, &str)> = cids.iter().map(|cid| ("arg", cid.as_str())).collect();
        query.push(("recursive", "true"));
        self.send(self.http.post(self.url("pin/rm")).query(&query))
            .await
            .map(drop)
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
        format!("{}/api/v0/{call}", self.api)
    }

    /// Sends `request`; an HTTP error status becomes an error carrying the node's message.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.context("IPFS RPC API unreachable")?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response, MAX_SMALL_ANSWER)
                .await
                .unwrap_or_default();
            bail!(
                "IPFS RPC error {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(response)
    }

    /// Puts `block` with `block/put`, naming its codec with Kubo's current option
    /// (`cid-codec`) and, if the node refuses that or answers another CID, once more with the
    /// deprecated one (`format`) that older nodes and js-ipfs take.
    async fn put_block(&self, block: &Block) -> Result<()> {
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

    async fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
        let request = self.block_request("block/get", cid, &[]);
        read_capped(self.send(request).await?, MAX_BLOCK_ANSWER).await
    }

    async fn has_block(&self, cid: &Cid) -> Result<bool> {
        // Offline (Kubo) or timed out (nodes that ignore `offline`): a block the node would
        // have to fetch from the network is not held.
        let request = self.block_request("block/stat", cid, &[("offline", "true")]);
        match self.send(request).await {
            Ok(_) => Ok(true),
            Err(error) => {
                let message = error.to_string();
                if message.contains("not found") || message.contains("timed out") {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Calls the pin API `call` on `root`, recursively.
    async fn pin_call(&self, call: &str, root: &Cid) -> Result<reqwest::Response> {
        let arg = root.to_string();
        let query = [("arg", arg.as_str()), ("recursive", "true")];
        self.send(self.http.post(self.url(call)).query(&query))
            .await
    }

    async fn unpin(&self, root: &Cid) -> Result<()> {
        self.pin_call("pin/rm", root)
            .await
            .map(drop)
            .or_else(|error| not_pinned(error, ()))
    }

    async fn is_pinned(&self, root: &Cid) -> Result<bool> {
        let arg = root.to_string();
        let query = [("arg", arg.as_str()), ("type", "recursive")];
        match self
            .send(self.http.post(self.url("pin/ls")).query(&query))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.to_string().contains("not pinned") => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{directory_node, Link, RAW};

    fn raw(bytes: &[u8]) -> Block {
        Block::new(RAW, bytes.to_vec()).unwrap()
    }

    #[test]
    fn blocks_round_trip_and_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"block bytes");
        assert!(store.put_block(&block).unwrap());
        assert!(!store.put_block(&block).unwrap());
        let bytes = store.get_block(&block.cid).unwrap();
        assert_eq!(Block::verified(&block.cid, bytes).unwrap(), block);
        assert!(store.get_block(&raw(b"never stored").cid).is_err());
    }

    /// A power cut can leave a block written before it its full size, with zeros in it: until
    /// the store is synced, such a block is checked against its CID before it is trusted.
    #[test]
    fn a_garbled_block_written_since_the_last_sync_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"a block a power cut garbled");
        assert!(store.put_block(&block).unwrap());
        fs::write(store.path_of(&block.cid), vec![0; block.data.len()]).unwrap();
        assert!(store.put_block(&block).unwrap(), "rewritten");
        assert_eq!(store.get_block(&block.cid).unwrap(), block.data);
        store.sync().unwrap();
        assert!(!store.put_block(&block).unwrap(), "whole and synced");
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert!(reopened
            .holds_whole(&block.cid, block.data.len() as u64)
            .unwrap());
    }

    #[test]
    fn a_block_cut_short_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let block = raw(b"a whole block");
        assert!(store.put_block(&block).unwrap());
        fs::write(store.path_of(&block.cid), b"").unwrap();
        assert!(!store.holds_whole(&block.cid, 13).unwrap());
        assert!(store.put_block(&block).unwrap(), "rewritten");
        assert_eq!(store.get_block(&block.cid).unwrap(), block.data);
        store.sync().unwrap();
    }

    /// A pinned root reaching a node that cannot be read: the collection stops and removes
    /// nothing, not even a block no pin reaches, since what the bad node links to is unknown.
    #[test]
    fn garbage_collection_with_an_unreadable_block_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path())
            .unwrap()
            .with_grace(Duration::ZERO);
        let (leaf, unreferenced) = (raw(b"leaf"), raw(b"unreferenced"));
        let link = |block: &Block| Link {
            cid: block.cid,
            name: "x".into(),
            tsize: block.data.len() as u64,
        };
        let middle = directory_node(vec![link(&leaf)]).unwrap();
        let root = directory_node(vec![link(&middle)]).unwrap();
        for block in [&leaf, &unreferenced, &middle, &root] {
            store.put_block(block).unwrap();
        }
        store.pin(&root.cid).unwrap();
        let damaged = |bytes: &[u8]| {
            let mut bytes = bytes.to_vec();
            bytes[0] ^= 0xff;
            bytes
        };
        let path = store.path_of(&middle.cid);
        fs::remove_file(&path).unwrap();
        for (what, content) in [
            ("unreadable", None),
            ("damaged", Some(damaged(&middle.data))),
        ] {
            match &content {
                // A directory where the block should be: reading it fails.
                None => fs::create_dir(&path).unwrap(),
                Some(bytes) => fs::write(&path, bytes).unwrap(),
            }
            let error = store.collect_garbage().unwrap_err();
            assert!(
                format!("{error:#}").contains("cannot follow"),
                "{what}: {error:#}"
            );
            assert_eq!(
                store.block_cids().unwrap().len(),
                4,
                "{what}: nothing removed"
            );
            match content {
                None => fs::remove_dir(&path).unwrap(),
                Some(_) => fs::remove_file(&path).unwrap(),
            }
        }
        store.put_block(&middle).unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!((report.removed_blocks, report.kept_blocks), (1, 3));
    }

    #[test]
    fn garbage_collection_keeps_what_pins_reach() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path())
            .unwrap()
            .with_grace(Duration::ZERO);
        let (kept, dropped) = (raw(b"kept"), raw(b"dropped"));
        let link = |block: &Block| Link {
            cid: block.cid,
            name: "x".into(),
            tsize: block.data.len() as u64,
        };
        let root = directory_node(vec![link(&kept)]).unwrap();
        let other_root = directory_node(vec![link(&dropped)]).unwrap();
        for block in [&kept, &dropped, &root, &other_root] {
            store.put_block(block).unwrap();
        }
        store.pin(&root.cid).unwrap();
        store.pin(&other_root.cid).unwrap();
        store.unpin(&other_root.cid).unwrap();
        store.unpin(&other_root.cid).unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!((report.removed_blocks, report.kept_blocks), (2, 2));
        let mut left = store.block_cids().unwrap();
        left.sort();
        let mut expected = vec![kept.cid, root.cid];
        expected.sort();
        assert_eq!(left, expected);
    }

    /// A block no pin reaches stays while it is younger than the grace period (a pass
    /// interrupted before its pin finds it again), and goes once older.
    #[test]
    fn unreferenced_blocks_stay_for_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let (recent, old) = (raw(b"written just now"), raw(b"written two hours ago"));
        for block in [&recent, &old] {
            store.put_block(block).unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
        fs::File::options()
            .write(true)
            .open(store.path_of(&old.cid))
            .and_then(|file| file.set_modified(two_hours_ago))
            .unwrap();
        let report = store.collect_garbage().unwrap();
        assert_eq!(
            (
                report.removed_blocks,
                report.young_blocks,
                report.kept_blocks
            ),
            (1, 1, 0)
        );
        assert_eq!(report.removed_bytes, old.data.len() as u64);
        assert_eq!(store.block_cids().unwrap(), [recent.cid]);
    }
}
