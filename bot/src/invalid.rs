//! The one error that says a snapshot is bad, wherever a restore or a check finds it.

/// A snapshot's content is bad: wrong CIDs, failed decryption, a malformed manifest or DAG,
/// or entries no tree can hold (an entry twice, an entry under a file). Retrying cannot help;
/// other errors (an unreachable store, a full disk) may pass.
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    /// The refusal `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An [`Invalid`] error with `message`.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    Invalid::new(message).into()
}
