//! `backup-bot`: the off-chain worker of the backup registry. It snapshots the nodes it
//! serves when their owners' frequency says so, stores them by CID, records them with
//! `add_snapshot`, unpins what the registry drops and serves restore requests; and, for
//! operators and owners, lists, checks and restores snapshots.

mod commands;

use clap::{Parser, Subcommand};
use commands::bench::BenchArgs;
use commands::check::CheckArgs;
use commands::cid::CidArgs;
#[cfg(feature = "sandbox")]
use commands::demo::DemoArgs;
use commands::restore::RestoreArgs;
use commands::run::RunArgs;
use commands::snapshots::SnapshotsArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "backup-bot",
    version,
    about,
    after_help = "Exit codes: 0 done; 1 fatal error (the message says what); 2 usage error (a \
flag missing, unknown or malformed); 3 incomplete: \
`run --once` left work for a later pass (some nodes or requests failed while others \
succeeded), or `check` found a snapshot missing or damaged; 130 interrupted (Ctrl-C).\n\
With --json, `run --once`, `snapshots` and `check` print one JSON document on stdout; logs \
always go to stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a registry on a live chain: snapshot due nodes, unpin what the registry
    /// dropped, serve restore requests.
    Run(RunArgs),
    /// List the snapshots the registry holds: of the served nodes, of one owner's backups,
    /// or of one backup. Reads the chain; needs no key.
    Snapshots(SnapshotsArgs),
    /// Check that every snapshot the registry keeps of the served nodes is in the store;
    /// with --read-data, read and verify every block and decrypt every chunk.
    Check(CheckArgs),
    /// Restore a snapshot with an age identity alone (the owner's, or the node's from the
    /// bot's data folder), from an IPFS RPC API or an embedded store, without any chain:
    /// every block is checked against its CID before it is decrypted, and the tree takes
    /// the target's place only once complete.
    Restore(RestoreArgs),
    /// Deploy the registry on an in-process chain, back up a sample directory through the
    /// bot, restore it on request and check both trees are identical. Needs nothing running.
    #[cfg(feature = "sandbox")]
    Demo(DemoArgs),
    /// Measure the snapshot pipeline against `restic` on a generated tree: first snapshot,
    /// unchanged tree, 1 % changed, restore, store size and peak memory. Build with --release.
    Bench(BenchArgs),
    /// Print the CID `ipfs add --cid-version=1` gives each file (UnixFS, 256 KiB chunks, raw
    /// leaves, balanced DAG of 174 links), computed without IPFS.
    Cid(CidArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,backup_bot=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let outcome = match Cli::parse().command {
        Command::Run(args) => commands::run::execute(args).await,
        Command::Snapshots(args) => commands::snapshots::execute(args).await,
        Command::Check(args) => commands::check::execute(args).await,
        Command::Restore(args) => commands::restore::execute(args).await,
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => commands::demo::execute(args).await,
        Command::Bench(args) => commands::bench::execute(args).await,
        Command::Cid(args) => commands::cid::execute(args),
    };
    match outcome {
        Ok(commands::Ended::Done) => ExitCode::SUCCESS,
        Ok(commands::Ended::Incomplete) => ExitCode::from(3),
        Ok(commands::Ended::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
