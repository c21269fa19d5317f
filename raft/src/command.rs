//! The commands that change metadata, and what applying one answers.
//!
//! Commands are encoded into the Raft log, so their shape is part of the
//! on-disk format: add variants at the end, never reorder. Time travels inside
//! a command (`at_ms`), so applying one reads no clock.

use std::collections::BTreeMap;
use storage::Digest;

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Opens an upload session for `repo`.
    CreateUpload {
        id: String,
        repo: String,
        at_ms: u64,
    },
    /// Ends an upload session without a blob.
    CancelUpload { id: String },
    /// Records a blob whose bytes are durably at their content address and links it into `repo`.
    CommitBlob {
        repo: String,
        digest: Digest,
        size: u64,
        source: BlobSource,
        at_ms: u64,
    },
    /// Stores a manifest's bytes, optionally tags it, and records it as a referrer of its subject.
    PutManifest {
        repo: String,
        digest: Digest,
        tag: Option<String>,
        manifest: ManifestRecord,
    },
    /// Removes a manifest, every tag pointing at it, and its referrer link.
    DeleteManifest { repo: String, digest: Digest },
    /// Removes one tag; the manifest stays.
    DeleteTag { repo: String, tag: String },
    /// Removes a blob's link from a repository; the bytes stay until garbage collection.
    UnlinkBlob { repo: String, digest: Digest },
}

/// Where the bytes of a committed blob came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlobSource {
    /// A finished upload session, which the commit closes.
    Upload(String),
    /// A monolithic upload that had no session.
    Direct,
    /// A blob already linked into another repository (cross-repository mount).
    Mount { from: String },
}

/// A stored manifest: the exact bytes the client sent and what was extracted from them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Blobs (config, layers) the manifest references; all must be linked in the repository.
    pub blobs: Vec<Digest>,
    /// Manifests an index references; all must exist in the repository.
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub at_ms: u64,
}

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    pub started_at_ms: u64,
}

/// What applying a command answered. Rejections are decided by log order and
/// leave the state untouched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Response {
    Done,
    UploadUnknown,
    BlobUnknown,
    /// A manifest references a blob or child manifest the repository lacks.
    ManifestReferenceUnknown(Digest),
    ManifestUnknown,
}
