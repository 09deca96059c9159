//! Content stores: where archives go, addressed by their CID.
//!
//! The embedded [`LocalStore`] needs nothing installed: a directory of files named by CID.
//! [`KuboStore`] talks to a Kubo (go-ipfs) node's HTTP RPC API. Both name content by the CID
//! `ipfs add --cid-version=1` gives it ([`crate::unixfs`]), so content moved between them, or
//! to any IPFS node, keeps its CID.

use crate::unixfs;
use anyhow::{bail, Context, Result};
use cid::Cid;
use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

/// The CID of the file at `path`, as `ipfs add --cid-version=1` computes it.
pub fn cid_of_file(path: &Path) -> Result<Cid> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    unixfs::cid_of(BufReader::new(file))
}

/// Checks that the file at `path` is the content `cid` names.
pub fn verify(cid: &Cid, path: &Path) -> Result<()> {
    let actual = cid_of_file(path)?;
    if actual != *cid {
        bail!("cid mismatch: content is {actual}");
    }
    Ok(())
}

/// A place to put archives and fetch them back by CID.
pub enum ContentStore {
    /// The embedded store: a local directory.
    Local(LocalStore),
    /// A Kubo node's HTTP RPC API.
    Kubo(KuboStore),
}

impl ContentStore {
    /// Stores the file at `path` and returns its CID.
    pub async fn put(&self, path: &Path) -> Result<Cid> {
        match self {
            Self::Local(store) => store.put(path),
            Self::Kubo(store) => store.put(path).await,
        }
    }

    /// Writes the content named `cid` to `dest`, unverified (see [`verify`]).
    pub async fn fetch(&self, cid: &Cid, dest: &Path) -> Result<()> {
        match self {
            Self::Local(store) => store.fetch(cid, dest),
            Self::Kubo(store) => store.fetch(cid, dest).await,
        }
    }
}

/// A directory holding one file per CID.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store in `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Self { root })
    }

    /// Where the content named `cid` lives.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.root.join(cid.to_string())
    }

    fn put(&self, path: &Path) -> Result<Cid> {
        let cid = cid_of_file(path)?;
        let target = self.path_of(&cid);
        if !target.exists() {
            // Copy under a temporary name, then rename: a crash never leaves a partial file
            // under a CID.
            let partial = self.root.join(format!(".{cid}.partial"));
            fs::copy(path, &partial)?;
            fs::rename(&partial, &target)?;
        }
        Ok(cid)
    }

    fn fetch(&self, cid: &Cid, dest: &Path) -> Result<()> {
        let source = self.path_of(cid);
        fs::copy(&source, dest)
            .with_context(|| format!("content {cid} is not in the local store"))?;
        Ok(())
    }
}

/// A Kubo node's HTTP RPC API (`/api/v0`).
pub struct KuboStore {
    api: String,
    http: reqwest::Client,
}

impl KuboStore {
    /// A client of the Kubo RPC API at `api` (for example `http://127.0.0.1:5001`).
    pub fn new(api: &str) -> Self {
        Self {
            api: api.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn rpc(&self, call: &str, query: &[(&str, &str)]) -> Result<reqwest::Response> {
        let url = format!("{}/api/v0/{call}", self.api);
        self.rpc_request(self.http.post(&url).query(query)).await
    }

    async fn rpc_request(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.context("Kubo RPC unreachable")?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("Kubo RPC error {status}: {body}");
        }
        Ok(response)
    }

    async fn put(&self, path: &Path) -> Result<Cid> {
        // Kubo computes the CID itself, with the same defaults as ours: refuse any other.
        let expected = cid_of_file(path)?;
        let part = reqwest::multipart::Part::file(path).await?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = format!("{}/api/v0/add", self.api);
        let query = [("cid-version", "1"), ("pin", "true")];
        let response = self
            .rpc_request(self.http.post(&url).query(&query).multipart(form))
            .await?;
        #[derive(serde::Deserialize)]
        struct Added {
            #[serde(rename = "Hash")]
            hash: String,
        }
        let added: Added = response.json().await?;
        let cid = Cid::try_from(added.hash.as_str())?;
        if cid != expected {
            bail!("Kubo stored the archive as {cid}, expected {expected}");
        }
        Ok(cid)
    }

    async fn fetch(&self, cid: &Cid, dest: &Path) -> Result<()> {
        let arg = cid.to_string();
        let mut response = self.rpc("cat", &[("arg", arg.as_str())]).await?;
        let mut file = File::create(dest)?;
        while let Some(chunk) = response.chunk().await? {
            file.write_all(&chunk)?;
        }
        file.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("store")).unwrap();
        let source = dir.path().join("archive");
        fs::write(&source, b"archive bytes").unwrap();
        let cid = store.put(&source).unwrap();
        let fetched = dir.path().join("fetched");
        store.fetch(&cid, &fetched).unwrap();
        verify(&cid, &fetched).unwrap();
        assert_eq!(fs::read(&fetched).unwrap(), b"archive bytes");

        // Flip one byte of the stored content: fetching still works, verifying does not.
        let mut stored = fs::read(store.path_of(&cid)).unwrap();
        stored[0] ^= 1;
        fs::write(store.path_of(&cid), stored).unwrap();
        store.fetch(&cid, &fetched).unwrap();
        let error = verify(&cid, &fetched).unwrap_err();
        assert!(error.to_string().starts_with("cid mismatch"), "{error}");
    }

    #[test]
    fn unknown_cid_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let cid = unixfs::cid_of(&b"never stored"[..]).unwrap();
        assert!(store.fetch(&cid, &dir.path().join("out")).is_err());
    }
}
