//! The data model and the deterministic application of commands.
//!
//! `apply` is a pure function of the current state and the command: no clock,
//! no randomness, no I/O besides reading the state tree. It returns the
//! changes as one `sled::Batch`, which the state machine writes atomically
//! together with `last_applied`.

pub mod keys;
mod view;

pub use view::{BlobRecord, Referrer, StateView};

use crate::codec::{encode, CodecError};
use crate::command::{BlobSource, Command, Response};

/// Computes the effect of `command` on `view` as a batch, and the response.
pub fn apply(view: &StateView, command: &Command) -> Result<(sled::Batch, Response), ApplyError> {
    let mut batch = sled::Batch::default();
    let response = match command {
        Command::CreateUpload { id, repo, at_ms } => {
            let record = crate::UploadRecord {
                repo: repo.clone(),
                started_at_ms: *at_ms,
            };
            batch.insert(keys::upload(id), encode(&record)?);
            Response::Done
        }
        Command::CancelUpload { id } => {
            if view.upload(id)?.is_none() {
                Response::UploadUnknown
            } else {
                batch.remove(keys::upload(id));
                Response::Done
            }
        }
        Command::CommitBlob {
            repo,
            digest,
            size,
            source,
            at_ms,
        } => {
            let allowed = match source {
                BlobSource::Upload(id) => {
                    let open = view.upload(id)?.is_some_and(|u| &u.repo == repo);
                    if open {
                        batch.remove(keys::upload(id));
                        Ok(())
                    } else {
                        Err(Response::UploadUnknown)
                    }
                }
                BlobSource::Direct => Ok(()),
                BlobSource::Mount { from } => {
                    if view.blob_in_repo(from, digest)?.is_some() {
                        Ok(())
                    } else {
                        Err(Response::BlobUnknown)
                    }
                }
            };
            match allowed {
                Err(rejection) => rejection,
                Ok(()) => {
                    if view.blob(digest)?.is_none() {
                        let record = BlobRecord {
                            size: *size,
                            created_at_ms: *at_ms,
                        };
                        batch.insert(keys::blob(digest), encode(&record)?);
                    }
                    batch.insert(keys::link(repo, digest), Vec::<u8>::new());
                    batch.insert(keys::repo(repo), Vec::<u8>::new());
                    Response::Done
                }
            }
        }
        Command::PutManifest {
            repo,
            digest,
            tag,
            manifest,
        } => {
            let mut missing = None;
            for blob in &manifest.blobs {
                if view.blob_in_repo(repo, blob)?.is_none() {
                    missing = Some(blob.clone());
                    break;
                }
            }
            if missing.is_none() {
                for child in &manifest.children {
                    if child != digest && view.manifest(repo, child)?.is_none() {
                        missing = Some(child.clone());
                        break;
                    }
                }
            }
            match missing {
                Some(d) => Response::ManifestReferenceUnknown(d),
                None => {
                    batch.insert(keys::manifest(repo, digest), encode(manifest)?);
                    if let Some(tag) = tag {
                        batch.insert(keys::tag(repo, tag), digest.to_string().into_bytes());
                    }
                    if let Some(subject) = &manifest.subject {
                        batch.insert(keys::referrer(repo, subject, digest), Vec::<u8>::new());
                    }
                    batch.insert(keys::repo(repo), Vec::<u8>::new());
                    Response::Done
                }
            }
        }
        Command::DeleteManifest { repo, digest } => match view.manifest(repo, digest)? {
            None => Response::ManifestUnknown,
            Some(record) => {
                batch.remove(keys::manifest(repo, digest));
                for (tag, target) in view.tags_with_targets(repo)? {
                    if &target == digest {
                        batch.remove(keys::tag(repo, &tag));
                    }
                }
                if let Some(subject) = &record.subject {
                    batch.remove(keys::referrer(repo, subject, digest));
                }
                Response::Done
            }
        },
        Command::DeleteTag { repo, tag } => {
            if view.tag(repo, tag)?.is_none() {
                Response::ManifestUnknown
            } else {
                batch.remove(keys::tag(repo, tag));
                Response::Done
            }
        }
        Command::UnlinkBlob { repo, digest } => {
            if view.blob_in_repo(repo, digest)?.is_none() {
                Response::BlobUnknown
            } else {
                batch.remove(keys::link(repo, digest));
                Response::Done
            }
        }
    };
    Ok((batch, response))
}

/// Applying failed for a reason outside the command: the store is broken.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("state tree: {0}")]
    Sled(#[from] sled::Error),
    #[error("state value: {0}")]
    Codec(#[from] CodecError),
}
