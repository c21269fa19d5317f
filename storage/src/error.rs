//! Storage errors as a kind a caller can act on plus the source that explains it.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// A requested byte range lies outside the object.
    InvalidRange,
    /// Bytes did not hash to the digest they were meant to have.
    DigestMismatch,
    /// The backend could not be reached or refused service; retrying later may help.
    Unavailable,
    /// Anything else: a bug or a broken invariant.
    Internal,
}

/// An error from a storage operation.
#[derive(Debug, thiserror::Error)]
pub struct StorageError {
    pub kind: ErrorKind,
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StorageError {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn not_found(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, context)
    }

    /// Maps an I/O error, keeping `NotFound` distinguishable.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, context).with_source(err)
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
