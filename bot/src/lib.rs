//! The backup registry's off-chain bot, as a library: the `backup-bot` binary is a thin
//! command line over it, and the integration tests drive it directly.
//!
//! - [`archive`]: deterministic archives of a directory and their safe unpacking;
//! - [`unixfs`]: the CID `ipfs add --cid-version=1` gives a file, computed in one pass;
//! - [`store`]: content stores addressed by CID (embedded directory, Kubo RPC);
//! - [`chain`]: the registry on a live node or on an in-process chain, behind one trait;
//! - [`registry`]: the contract's messages the bot uses, typed;
//! - [`keys`]: age encryption of archives and the bot's identities;
//! - [`bot`]: one pass of snapshots and restores;
//! - [`config`]: the configuration file;
//! - [`demo`]: the whole flow in-process;
//! - [`bench`]: throughput of the snapshot pipeline next to `sha256sum` and restic.

pub mod archive;
pub mod bench;
pub mod bot;
pub mod chain;
pub mod config;
pub mod demo;
pub mod keys;
pub mod registry;
pub mod store;
pub mod unixfs;
