//! The backup registry's off-chain bot, as a library: the `backup-bot` binary (`src/main.rs`,
//! one file per subcommand in `src/commands/`) and the integration tests drive it.
//!
//! - [`pipeline`]: the one place where trees become snapshots and snapshots trees (scan,
//!   seal, crypto, manifest, read, check, restore);
//! - [`tree`]: a directory tree as the snapshots see it, read without following links;
//! - [`staging`]: where a restore writes, and how the result takes the target's place;
//! - [`error`]: the error callers branch on (a bad snapshot, a refusal, a retry);
//! - [`unixfs`]: dag-pb and UnixFS blocks as `ipfs add --cid-version=1` makes them;
//! - [`store`]: block stores with pins (embedded directory with garbage collection, IPFS RPC);
//! - [`state`]: what the bot keeps between passes (file cache, pins);
//! - [`chain`]: the registry on a live node or on an in-process chain, behind one trait;
//! - [`registry`]: the contract's messages, typed (the bot's, and the owner's its tests and
//!   demo send);
//! - [`keys`]: age encryption and the bot's identities;
//! - [`bot`]: one pass of snapshots, unpinning and restores;
//! - [`config`]: the configuration file and the served nodes;
//! - [`progress`]: progress bars on a terminal;
//! - `demo` (feature `sandbox`): the whole flow in-process, and the world the tests share;
//! - [`bench`]: the pipeline measured next to `sha256sum` and restic.

pub mod bench;
pub mod bot;
pub mod chain;
mod compact_map;
pub mod config;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod error;
pub mod keys;
pub mod pipeline;
pub mod progress;
pub mod registry;
pub mod staging;
pub mod state;
pub mod store;
pub mod tree;
pub mod unixfs;

/// Pseudo-random test content, the same the integration tests use.
#[cfg(test)]
#[path = "../tests/common/random.rs"]
mod random;
