//! `demo`: the registry on an in-process chain, a sample tree backed up and restored.

use super::Ended;
use anyhow::{bail, Result};
use backup_bot::demo;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct DemoArgs {
    /// The contract bundle made by `cargo contract build --release`.
    #[arg(long, default_value = "target/ink/backup_registry.contract")]
    bundle: PathBuf,
    /// Folder for the demo's node data, store and restores: created, or emptied if `demo` or
    /// `bench` made it; any other folder is refused.
    #[arg(long, default_value = "target/bot-demo")]
    work_dir: PathBuf,
}

/// Runs the in-process demo.
pub async fn execute(args: DemoArgs) -> Result<Ended> {
    if !args.bundle.exists() {
        bail!(
            "{} not found: build the contract first (bash scripts/build.sh)",
            args.bundle.display()
        );
    }
    demo::run(&args.bundle, &args.work_dir).await?;
    Ok(Ended::Done)
}
