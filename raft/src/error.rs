//! Errors of the metadata store.

/// Why a metadata read or write failed. None of these mean a command was
/// rejected by the state machine: rejections come back as a [`crate::Response`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// No leader is known or the cluster has no quorum; retry later.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// This node must not serve: its data belongs to another cluster, or it
    /// lost data the cluster counted on. The message says what to do.
    #[error("{0}")]
    Refused(String),
    /// A client write refused because the cluster is read-only.
    #[error("the registry is read-only: {0}")]
    ReadOnly(String),
    /// Storage failed or an invariant broke; the node cannot serve metadata.
    #[error("metadata store failed: {0}")]
    Fatal(String),
}
