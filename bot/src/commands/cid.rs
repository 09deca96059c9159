//! `cid`: the CID `ipfs add --cid-version=1` gives a file, computed without IPFS.

use super::Ended;
use anyhow::{Context, Result};
use backup_bot::unixfs;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CidArgs {
    /// Files to hash.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Prints "<cid> <path>" for each file.
pub fn execute(args: CidArgs) -> Result<Ended> {
    for file in &args.files {
        let content =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let cid = unixfs::cid_of(std::io::BufReader::new(content))?;
        println!("{cid} {}", file.display());
    }
    Ok(Ended::Done)
}
