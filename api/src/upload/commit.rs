//! Recording a verified blob. Its bytes go to the key of the generation
//! garbage collection allows (the recorded one, or for a blob not recorded
//! the first never condemned), then one `CommitBlobAt` records it. The log
//! decides: a commit naming a generation that a collection condemned in the
//! meantime is refused, and the bytes move to the next generation.

use raft::{BlobSource, Command, MetaStore, Response};
use storage::{Digest, ObjectKey, Part, Placement, Staging};
use uuid::Uuid;

/// A verified blob in staging, to be recorded in `repo`.
pub struct VerifiedBlob<'a> {
    pub upload: &'a Uuid,
    pub parts: Vec<Part>,
    pub repo: &'a str,
    pub digest: &'a Digest,
    pub size: u64,
    pub source: BlobSource,
    /// Builds the push event recorded with the blob, when notifications are on.
    pub notifier: Option<&'a crate::events::Notifier>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Meta(#[from] raft::MetaError),
    /// The generation this push wrote was collected between writing it and
    /// recording it (it had to be unreferenced past the delay and the grace
    /// meanwhile). Nothing was recorded; pushing again works.
    #[error("garbage collection removed {0} while it was being recorded; push it again")]
    CollectedMeanwhile(Digest),
}

/// Places the blob's bytes and records it; answers what the log answered
/// (`Done`, or the rejection of the source, such as `UploadUnknown`). The
/// staged parts are discarded once the blob is recorded.
pub async fn commit_verified(
    meta: &MetaStore,
    staging: &Staging,
    blob: VerifiedBlob<'_>,
    at_ms: u64,
) -> Result<Response, CommitError> {
    let mut generation = meta
        .local_view()
        .generation_to_write(blob.digest)
        .map_err(raft::MetaError::from)?;
    let mut placement = staging
        .place(
            blob.parts.clone(),
            &ObjectKey::blob_generation(blob.digest, generation),
        )
        .await?;
    loop {
        let command = Command::CommitBlobAt {
            repo: blob.repo.to_owned(),
            digest: blob.digest.clone(),
            size: blob.size,
            source: blob.source.clone(),
            at_ms,
            generation,
        };
        let events = blob
            .notifier
            .map(|notifier| {
                let target = crate::events::Target::Blob {
                    digest: blob.digest,
                    size: blob.size,
                    from: None,
                };
                vec![notifier.event("push", blob.repo, target)]
            })
            .unwrap_or_default();
        let command = crate::events::with_events(events, command);
        match meta.propose(command).await? {
            Response::StaleGeneration(next) if placement == Placement::AlreadyThere => {
                tracing::info!(digest = %blob.digest, stale = generation, next,
                    "blob generation was collected meanwhile; writing the next one");
                generation = next;
                placement = staging
                    .place(
                        blob.parts.clone(),
                        &ObjectKey::blob_generation(blob.digest, generation),
                    )
                    .await?;
            }
            Response::StaleGeneration(_) => {
                return Err(CommitError::CollectedMeanwhile(blob.digest.clone()))
            }
            Response::Done => {
                staging.discard(blob.upload).await?;
                return Ok(Response::Done);
            }
            other => return Ok(other),
        }
    }
}
