//! The commands that change metadata, and what applying one answers.
//!
//! Commands are encoded into the Raft log, so their shape is part of the
//! on-disk format: add variants at the end, never reorder. Time travels inside
//! a command (`at_ms`), so applying one reads no clock.

use crate::NodeId;
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
    /// Applies `command` once: a second entry with the same `request_id`
    /// (a proposal retried after its answer was lost) answers what the first
    /// answered and changes nothing.
    Once {
        request_id: u128,
        command: Box<Command>,
    },
    /// Names the cluster; only the first such entry takes effect.
    SetClusterId { id: String },
    /// Records that `node` holds the cluster's data on its own disk; a node
    /// that starts empty while recorded here lost its disk.
    MemberJoined { node: NodeId },
    /// [`Command::CreateUpload`] with the node that owns the session.
    OpenUpload {
        id: String,
        repo: String,
        at_ms: u64,
        owner: NodeId,
    },
    /// Moves an upload session to node `to` if `from` still owns it (the
    /// owner is unreachable); the new owner rebuilds it from staged parts.
    ClaimUpload {
        id: String,
        from: Option<NodeId>,
        to: NodeId,
    },
    /// Forgets that `node` held data: it was removed from the cluster, so
    /// its id may join again with an empty disk.
    MemberRemoved { node: NodeId },
    /// Written by `registry cluster recover` into a lone survivor's log:
    /// the cluster takes the new id and only `survivor` still counts as
    /// holding data.
    Recovered {
        cluster_id: String,
        survivor: NodeId,
    },
    /// [`Command::PutManifest`] with any number of tags, all applied in the
    /// same entry (`PUT …/manifests/<digest>?tag=a&tag=b`).
    PutManifestTags {
        repo: String,
        digest: Digest,
        tags: Vec<String>,
        manifest: ManifestRecord,
    },
    /// Turns the cluster's read-only mode on or off: while on, every client
    /// write applied after this entry answers [`Response::ReadOnly`].
    SetReadOnly { enabled: bool },
    /// [`Command::CommitBlob`] of bytes written to the key of blob
    /// generation `generation` (`ObjectKey::blob_generation`). A blob that is
    /// not recorded is accepted only at the generation garbage collection
    /// left next, so bytes never land on a key condemned to deletion.
    CommitBlobAt {
        repo: String,
        digest: Digest,
        size: u64,
        source: BlobSource,
        at_ms: u64,
        generation: u64,
    },
    /// A collection hides each of `digests` that is recorded, not hidden,
    /// referenced by no manifest, and last pushed or mounted before
    /// `linked_before_ms`. Hidden blobs answer 404; a push, mount or
    /// manifest referencing one revives it.
    TombstoneBlobs {
        digests: Vec<Digest>,
        linked_before_ms: u64,
        at_ms: u64,
    },
    /// A collection condemns each of `digests` still hidden since before
    /// `tombstoned_before_ms` and unreferenced: it is forgotten, and its
    /// generation's key is queued for the sweeper, irrevocably.
    CondemnBlobs {
        digests: Vec<Digest>,
        tombstoned_before_ms: u64,
    },
    /// The sweeper deleted the bytes of these condemned generations.
    SweptBlobs { swept: Vec<(Digest, u64)> },
    /// A collection marks each of `manifests` (repository, digest) that is
    /// unrooted now (no tag, no index listing it, no subject present; with
    /// `orphans_only`, only referrers whose subject is gone) and not marked
    /// yet. Anything that roots a manifest later clears its mark.
    MarkUnrooted {
        manifests: Vec<(String, Digest)>,
        orphans_only: bool,
        at_ms: u64,
    },
    /// A collection deletes each of `manifests` still unrooted (as
    /// [`Command::MarkUnrooted`] judges) and marked before
    /// `unrooted_before_ms`, as `DeleteManifest` would.
    ExpireManifests {
        manifests: Vec<(String, Digest)>,
        orphans_only: bool,
        unrooted_before_ms: u64,
    },
    /// A retention rule removes each tag still as the plan saw it: pointing
    /// at the same manifest, pushed at the same time (so a tag pushed again
    /// since stays). A manifest left without tags is marked unrooted by
    /// retention, so it goes after the delay even without `untagged`.
    RetentionUntag { tags: Vec<PlannedUntag>, at_ms: u64 },
    /// When manifests were last pulled, batched by each node (lossy by
    /// design: one entry per node every few seconds, not one per pull).
    RecordPulls { pulls: Vec<(String, Digest, u64)> },
    /// Applies `command` and, if it changed the state (`Done`), records
    /// `events` after every event recorded before: a notification is
    /// durable exactly when the change it describes is.
    Notify {
        events: Vec<EventRecord>,
        command: Box<Command>,
    },
    /// A notification endpoint received every event up to ordinal
    /// `through`; events up to `prune_through` (every endpoint's received
    /// them) are forgotten.
    EventsDelivered {
        endpoint: String,
        through: u64,
        prune_through: u64,
    },
    /// A pull-through cache stores a manifest its upstream served, tagged
    /// with `tag` if it was asked for by tag, without the blobs and child
    /// manifests it references: those are fetched when they are pulled. The
    /// blobs count as referenced from now on, so a collection never takes
    /// one the cache fetches later. `manifest.at_ms` is when the upstream
    /// was asked; storing the same manifest again moves it on (the tag's
    /// `ttl` counts from it).
    CacheManifest {
        repo: String,
        digest: Digest,
        tag: Option<String>,
        manifest: ManifestRecord,
    },
}

/// A notification as its proposer wrote it: `body` is the event itself (the
/// API's JSON); the rest is what delivery filters on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    pub action: String,
    pub media_type: Option<String>,
    pub repository: String,
    pub at_ms: u64,
    pub body: Vec<u8>,
}

/// A tag a retention rule drops, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PlannedUntag {
    pub repo: String,
    pub tag: String,
    pub manifest: Digest,
    pub pushed_at_ms: u64,
}

impl Command {
    /// Whether this is a client's write, which read-only mode refuses.
    pub fn is_client_write(&self) -> bool {
        match self {
            Command::Once { command, .. } | Command::Notify { command, .. } => {
                command.is_client_write()
            }
            Command::CreateUpload { .. }
            | Command::OpenUpload { .. }
            | Command::CancelUpload { .. }
            | Command::CommitBlob { .. }
            | Command::CommitBlobAt { .. }
            | Command::PutManifest { .. }
            | Command::PutManifestTags { .. }
            | Command::CacheManifest { .. }
            | Command::DeleteManifest { .. }
            | Command::DeleteTag { .. }
            | Command::UnlinkBlob { .. } => true,
            _ => false,
        }
    }

    /// Whether this is a garbage collection's decision, which pauses (is
    /// refused) while the cluster is read-only. The sweeper's record of
    /// deletes already done is not.
    pub fn is_collection(&self) -> bool {
        match self {
            Command::Once { command, .. } | Command::Notify { command, .. } => {
                command.is_collection()
            }
            Command::TombstoneBlobs { .. }
            | Command::CondemnBlobs { .. }
            | Command::MarkUnrooted { .. }
            | Command::ExpireManifests { .. }
            | Command::RetentionUntag { .. } => true,
            _ => false,
        }
    }

    /// Whether applying this can make content addressed by digest vanish,
    /// which nodes serve from their local state under a read lease.
    pub fn retracts_content(&self) -> bool {
        match self {
            Command::Once { command, .. } | Command::Notify { command, .. } => {
                command.retracts_content()
            }
            Command::DeleteManifest { .. }
            | Command::UnlinkBlob { .. }
            | Command::TombstoneBlobs { .. }
            | Command::CondemnBlobs { .. }
            | Command::ExpireManifests { .. }
            | Command::RetentionUntag { .. } => true,
            _ => false,
        }
    }
}

/// Who serves an upload session. `generation` grows with every claim, so a
/// node that owned the session before and owns it again rebuilds it instead
/// of trusting what it cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadOwner {
    pub node: NodeId,
    pub generation: u64,
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

impl Response {
    /// Whether the command changed the state: `Done`, or a collection
    /// command that acted on something.
    pub fn acted(&self) -> bool {
        match self {
            Response::Done => true,
            Response::Collected(digests) => !digests.is_empty(),
            Response::CollectedManifests(manifests) => !manifests.is_empty(),
            Response::Untagged(tags) => !tags.is_empty(),
            _ => false,
        }
    }
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
    /// A claim lost: the upload is owned by another node than the claim's `from`.
    UploadOwnedElsewhere(UploadOwner),
    /// A client write refused: the cluster is read-only.
    ReadOnly,
    /// A blob commit named a generation garbage collection condemned; the
    /// bytes must be written to this one.
    StaleGeneration(u64),
    /// The digests a collection command acted on (the others no longer
    /// qualified when it applied).
    Collected(Vec<Digest>),
    /// The manifests (repository, digest) a collection command acted on.
    CollectedManifests(Vec<(String, Digest)>),
    /// The tags a retention command removed.
    Untagged(Vec<PlannedUntag>),
}
