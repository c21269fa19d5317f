//! The storage section of the configuration.

use std::path::PathBuf;

/// Which blob backend to use and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// Blobs as files under `root`.
    Filesystem { root: PathBuf },
    /// Blobs in process memory; lost on exit. For tests and trials.
    InMemory,
}
