//! The subcommands, one file each (as rustic's `src/commands/`): each holds its arguments
//! and its `execute`. `settings` merges flags, environment and configuration file for all.

pub mod bench;
pub mod check;
pub mod cid;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod restore;
pub mod run;
mod settings;
pub mod snapshots;

/// How a command ended, when it did not fail.
pub enum Ended {
    /// Everything done.
    Done,
    /// Some of it left undone or found bad (exit code 3).
    Incomplete,
    /// Stopped by Ctrl-C (exit code 130).
    Interrupted,
}
