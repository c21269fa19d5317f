//! A blob pushed in one request (`POST ?digest=`): no session, no actor.

use super::body::into_stream;
use super::commit::{commit_verified, VerifiedBlob};
use super::Body;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::{now_ms, AppState};
use futures::TryStreamExt;
use raft::{BlobSource, Response};
use std::sync::{Arc, Mutex};
use storage::{Digest, Hasher};
use uuid::Uuid;

/// Streams `body` into staging while hashing it, verifies it against
/// `digest`, moves it to its content address and records it in `repo`.
pub async fn store_blob(
    state: &AppState,
    repo: &str,
    digest: &Digest,
    body: Body,
    notifier: Option<&crate::events::Notifier>,
) -> ApiResult<u64> {
    let id = Uuid::new_v4();
    let hasher = Arc::new(Mutex::new(Hasher::new(digest.algorithm())));
    let hashing = hasher.clone();
    let stream = into_stream(body).inspect_ok(move |chunk| {
        hashing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .update(chunk)
    });
    let written = state.staging.write_part(&id, 0, Box::pin(stream)).await;
    let actual = hasher
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
        .finish();
    let verified = match written {
        Err(e) => Err(ApiError::from(e)),
        Ok(_) if &actual != digest => Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!("uploaded content has digest {actual}, not {digest}"),
        )),
        Ok(size) => Ok(size),
    };
    let size = match verified {
        Ok(size) => size,
        Err(e) => {
            state.staging.discard(&id).await?;
            return Err(e);
        }
    };
    let parts = state.staging.parts(&id).await?;
    let blob = VerifiedBlob {
        upload: &id,
        parts,
        repo,
        digest,
        size,
        source: BlobSource::Direct,
        notifier,
    };
    match commit_verified(&state.meta, &state.staging, blob, now_ms()).await? {
        Response::Done => Ok(size),
        other => Err(ApiError::new(
            ErrorCode::Unknown,
            format!("commit blob: {other:?}"),
        )),
    }
}
