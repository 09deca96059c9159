//! The bot's error, by what a caller does about it: refuse a bad snapshot, leave a snapshot
//! sealed to other keys to their holders, take the registry's refusal as final, or try again
//! later. Callers branch on [`Error`]'s variant; nothing is told apart by its text.

use backup_registry::Error as ContractError;

/// What a restore with an identity the snapshot is not sealed to says.
pub const NOT_A_RECIPIENT: &str =
    "decrypt failed: this identity is not a recipient of the snapshot";

/// An error of the bot, by what its caller does about it.
#[derive(Debug)]
pub enum Error {
    /// A snapshot's content is bad for any reader: wrong CIDs, failed authentication, a
    /// malformed manifest or DAG, entries no tree can hold (an entry twice, an entry under a
    /// file), more than a restore takes. Retrying cannot help: a restore request fails with
    /// this reason.
    InvalidSnapshot(String),
    /// The snapshot's envelope does not open with this identity: it is sealed to other keys
    /// (another authority's), or it is not an age envelope at all.
    NotARecipient,
    /// The registry refused a call with one of its errors in the call's dry run: nothing was
    /// submitted, so the call cannot land later.
    Refused(ContractError),
    /// Anything else (a store or a node out of reach, a full disk, a failed write): a later
    /// try may pass.
    Other(anyhow::Error),
}

/// A result whose error is the bot's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidSnapshot`] saying `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidSnapshot(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidSnapshot(message) => f.write_str(message),
            Self::NotARecipient => f.write_str(NOT_A_RECIPIENT),
            Self::Refused(error) => write!(f, "the registry refused the call: {error:?}"),
            // The alternate form (`{:#}`) goes on to print the whole chain.
            Self::Other(error) => std::fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Other(error) => error.source(),
            _ => None,
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        Self::Other(error)
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Self::Other(error.into())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(error: rustix::io::Errno) -> Self {
        Self::Other(error.into())
    }
}

/// Returns an [`Error::InvalidSnapshot`] saying the formatted message unless `$condition`
/// holds.
macro_rules! ensure_valid {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::error::Error::InvalidSnapshot(format!($($message)+)));
        }
    };
}
pub(crate) use ensure_valid;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_error_keeps_its_chain_through_anyhow() {
        let io = std::io::Error::new(std::io::ErrorKind::Other, "disk full");
        let error = Error::from(anyhow::Error::from(io).context("writing a pack"));
        assert_eq!(format!("{error:#}"), "writing a pack: disk full");
        let wrapped = anyhow::Error::from(error).context("sealing");
        assert_eq!(format!("{wrapped:#}"), "sealing: writing a pack: disk full");
    }
}
