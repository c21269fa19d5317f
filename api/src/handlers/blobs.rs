//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use super::{header, DOCKER_CONTENT_DIGEST};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::{with_events, Target};
use crate::names::RepoName;
use crate::state::AppState;
use actix_web::body::SizedStream;
use actix_web::{HttpRequest, HttpResponse};
use futures::TryStreamExt;
use raft::{Command, Response};
use storage::{ByteRange, Digest, ObjectKey};

use crate::PRESIGN_EXPIRY;

pub async fn get(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    digest: &Digest,
    head: bool,
) -> ApiResult<HttpResponse> {
    if let Some(blob) = servable(state, name, digest).await? {
        return serve(state, req, name, digest, blob, head).await;
    }
    if let Some((cache, covered)) = state.covering(name.as_str()) {
        return crate::cache::blobs::fetch(state, req, cache, &covered, name, digest, head).await;
    }
    Err(unknown(name, digest))
}

async fn servable(
    state: &AppState,
    name: &RepoName,
    digest: &Digest,
) -> ApiResult<Option<raft::state::ServableBlob>> {
    let (_, blob) =
        super::by_digest(state, |view| view.servable_blob(name.as_str(), digest)).await?;
    Ok(blob)
}

fn unknown(name: &RepoName, digest: &Digest) -> ApiError {
    ApiError::new(ErrorCode::BlobUnknown, format!("{digest} is not in {name}"))
}

/// Serves a blob stored in `name` (after the pull-through cache filled it).
pub async fn serve_stored(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    digest: &Digest,
    head: bool,
) -> ApiResult<HttpResponse> {
    let blob = servable(state, name, digest)
        .await?
        .ok_or_else(|| unknown(name, digest))?;
    serve(state, req, name, digest, blob, head).await
}

async fn serve(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    digest: &Digest,
    blob: raft::state::ServableBlob,
    head: bool,
) -> ApiResult<HttpResponse> {
    if !head && header(req, "Range").is_none_or(|r| r.starts_with("bytes=0-")) {
        record_pull(state, req, name, digest, blob.size);
    }
    if !head && state.config.redirect {
        if let Some(url) = state
            .blobs()
            .presign_get(
                &ObjectKey::blob_generation(digest, blob.generation),
                PRESIGN_EXPIRY,
            )
            .await?
        {
            return Ok(HttpResponse::TemporaryRedirect()
                .insert_header(("Location", url))
                .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
                .finish());
        }
    }
    let range = match header(req, "Range") {
        None => None,
        Some(raw) => match parse_range(raw, blob.size) {
            RangeRequest::Ignored => None,
            RangeRequest::Satisfiable(r) => Some(r),
            RangeRequest::Unsatisfiable => {
                return Err(ApiError::new(
                    ErrorCode::RangeInvalid,
                    format!("range {raw:?} is outside a blob of {} bytes", blob.size),
                )
                .with_header("Content-Range", format!("bytes */{}", blob.size)))
            }
        },
    };
    let mut response = match range {
        Some(r) => {
            let mut response = HttpResponse::PartialContent();
            response.insert_header((
                "Content-Range",
                format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size),
            ));
            response
        }
        None => HttpResponse::Ok(),
    };
    response
        .content_type("application/octet-stream")
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("ETag", format!("\"{digest}\"")));
    let length = range.map_or(blob.size, |r| r.len());
    if head {
        return Ok(response.body(SizedStream::new(
            length,
            futures::stream::empty::<Result<bytes::Bytes, storage::StorageError>>(),
        )));
    }
    let sent = state.metrics.sent_bytes.clone();
    let stream = state
        .blobs()
        .get(&ObjectKey::blob_generation(digest, blob.generation), range)
        .await?
        .inspect_ok(move |chunk| sent.inc_by(chunk.len() as u64));
    Ok(response.body(SizedStream::new(length, stream)))
}

/// A blob pull's event (one per GET of the whole blob, or of its start).
pub(crate) fn record_pull(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    digest: &Digest,
    size: u64,
) {
    if let Some(notifier) = state.notifier(req) {
        let target = Target::Blob {
            digest,
            size,
            from: None,
        };
        state
            .pulls
            .record_event(notifier.event("pull", name.as_str(), target));
    }
}

pub async fn delete(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    digest: &Digest,
) -> ApiResult<HttpResponse> {
    if !state.config.delete_enabled {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "deletes are disabled",
        ));
    }
    let command = Command::UnlinkBlob {
        repo: name.to_string(),
        digest: digest.clone(),
    };
    let events = state
        .notifier(req)
        .map(|n| vec![n.event("delete", name.as_str(), Target::DeletedBlob(digest))])
        .unwrap_or_default();
    match state.meta.propose(with_events(events, command)).await? {
        Response::Done => Ok(HttpResponse::Accepted().finish()),
        _ => Err(ApiError::new(
            ErrorCode::BlobUnknown,
            format!("{digest} is not in {name}"),
        )),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Not a single byte range we understand: serve the whole blob (RFC 9110).
    Ignored,
    Satisfiable(ByteRange),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against a blob of `size` bytes.
fn parse_range(raw: &str, size: u64) -> RangeRequest {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Ignored;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return RangeRequest::Ignored,
        (true, false) => {
            let Some(suffix) = number(last) else {
                return RangeRequest::Ignored;
            };
            if suffix == 0 {
                return RangeRequest::Unsatisfiable;
            }
            (size.saturating_sub(suffix), size)
        }
        (false, open_end) => {
            let Some(start) = number(first) else {
                return RangeRequest::Ignored;
            };
            let end = if open_end {
                size
            } else {
                match number(last) {
                    Some(last) if last >= start => (last + 1).min(size),
                    _ => return RangeRequest::Ignored,
                }
            };
            (start, end)
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |start, end| RangeRequest::Satisfiable(ByteRange { start, end });
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 100));
        assert_eq!(parse_range("bytes=50-500", 100), r(50, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=200-300", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=5-1", 100), RangeRequest::Ignored);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignored);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), RangeRequest::Ignored);
    }
}
