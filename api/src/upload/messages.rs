//! Messages an upload session answers.

use super::Body;
use actix::Message;
use storage::Digest;

/// Appends a chunk. `start`, when the client sent `Content-Range`, must equal
/// the current offset. Answers the new offset.
pub struct Append {
    pub start: Option<u64>,
    pub body: Body,
}

impl Message for Append {
    type Result = Result<u64, UploadError>;
}

/// Answers the current offset.
pub struct Status;

impl Message for Status {
    type Result = Result<u64, UploadError>;
}

/// Appends an optional last chunk, verifies the digest, moves the bytes to
/// their content address and records the blob. Answers the blob's size.
/// `start`, as in [`Append`], must equal the offset when the last chunk
/// came with `Content-Range`; if not, nothing changes.
pub struct Finish {
    pub digest: Digest,
    pub start: Option<u64>,
    pub body: Option<Body>,
    /// Builds the blob's push event, when notifications are on.
    pub notifier: Option<crate::events::Notifier>,
}

impl Message for Finish {
    type Result = Result<u64, UploadError>;
}

/// Discards the upload.
pub struct Cancel;

impl Message for Cancel {
    type Result = Result<(), UploadError>;
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("chunk starts at {start} but the upload is at offset {offset}")]
    OutOfOrder { start: u64, offset: u64 },
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("upload is unknown or already finished")]
    Unknown,
    #[error("garbage collection removed {0} while it was being recorded; push it again")]
    CollectedMeanwhile(Digest),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Meta(#[from] raft::MetaError),
}
