//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic,
//! mount) and `GET`/`PATCH`/`PUT`/`DELETE` on a session.

use super::{has_body, header, query, upload_range, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::forward::{forward, Forwarded};
use crate::names::{parse_digest, RepoName};
use crate::state::{now_ms, AppState};
use crate::upload::{self, pump, Append, Cancel, Finish, Session, Status, UploadSession};
use actix::Addr;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use raft::{BlobSource, Command, Response, UploadOwner};
use storage::Digest;
use uuid::Uuid;

pub async fn start(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
) -> ApiResult<HttpResponse> {
    let q = query(req);
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let digest = parse_digest(mount)?;
        let from = RepoName::parse(from)?;
        let may_read_source = req
            .extensions()
            .get::<crate::auth::MountRefused>()
            .is_none();
        if may_read_source && mount_blob(state, req, name, &from, &digest).await? {
            return Ok(blob_created(name, &digest));
        }
        // Not mountable (or not the caller's to read): fall through to a
        // new session, as the spec asks.
    } else if let Some(raw) = q.get("digest") {
        let digest = parse_digest(raw)?;
        let (forward, body) = pump(payload, state.metrics.received_bytes.clone());
        let notifier = state.notifier(req);
        let (_, stored) = futures::join!(
            forward,
            upload::store_blob(state, name.as_str(), &digest, body, notifier.as_ref())
        );
        stored?;
        return Ok(blob_created(name, &digest));
    }
    let id = Uuid::new_v4();
    let command = Command::OpenUpload {
        id: id.to_string(),
        repo: name.to_string(),
        at_ms: now_ms(),
        owner: state.meta.node_id(),
    };
    state.meta.propose(command).await?;
    state
        .uploads
        .send(Session {
            id,
            repo: name.to_string(),
            fresh: true,
            generation: 0,
        })
        .await?;
    Ok(upload_accepted(name, id, 0))
}

async fn mount_blob(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    from: &RepoName,
    digest: &Digest,
) -> ApiResult<bool> {
    let view = state.meta.read().await?;
    let Some(blob) = view.blob_in_repo(from.as_str(), digest)? else {
        return Ok(false);
    };
    // A mount writes no bytes: the log links the blob at its recorded
    // generation, whatever this one says.
    let command = Command::CommitBlobAt {
        repo: name.to_string(),
        digest: digest.clone(),
        size: blob.size,
        source: BlobSource::Mount {
            from: from.to_string(),
        },
        at_ms: now_ms(),
        generation: view.generation_to_write(digest)?,
    };
    let events = state
        .notifier(req)
        .map(|notifier| {
            let target = crate::events::Target::Blob {
                digest,
                size: blob.size,
                from: Some(from.as_str()),
            };
            vec![notifier.event("mount", name.as_str(), target)]
        })
        .unwrap_or_default();
    let command = crate::events::with_events(events, command);
    Ok(state.meta.propose(command).await? == Response::Done)
}

/// Where an upload's session is served.
enum Owner {
    /// This node serves it; the request's payload is untouched.
    Here(Addr<UploadSession>, web::Payload),
    /// Another node owned it and answered this.
    Elsewhere(HttpResponse),
}

/// Finds the session of upload `id` of `name`: here when this node owns it
/// (or was forwarded the request by a peer), else forwarded to its owner.
/// An owner that accepts no connection (dead, or removed) loses the session
/// to this node, which rebuilds it from the staged parts (everything
/// acknowledged is there) and serves the request itself.
async fn locate(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
    id: Uuid,
) -> ApiResult<Owner> {
    let view = state.meta.read().await?;
    let key = id.to_string();
    match view.upload(&key)? {
        Some(record) if record.repo == name.as_str() => {}
        _ => {
            return Err(ApiError::new(
                ErrorCode::BlobUploadUnknown,
                format!("no upload {id} in {name}"),
            ))
        }
    }
    let me = state.meta.node_id();
    let owner = view.upload_owner(&key)?;
    let generation = match owner {
        None => 0,
        Some(owner) if owner.node == me => owner.generation,
        Some(owner) if state.forwarded => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("upload {id} moved to node {}; retry", owner.node),
            ))
        }
        Some(owner) => {
            let payload = match state.meta.member(owner.node) {
                Some(node) => {
                    match forward(state, req, payload, owner.node, &node.raft_addr).await? {
                        Forwarded::Answered(response) => return Ok(Owner::Elsewhere(response)),
                        Forwarded::Unreachable(payload) => payload,
                    }
                }
                None => payload,
            };
            let generation = claim(state, &key, owner).await?;
            let session = local_session(state, name, id, generation).await?;
            return Ok(Owner::Here(session, payload));
        }
    };
    let session = local_session(state, name, id, generation).await?;
    Ok(Owner::Here(session, payload))
}

/// Takes upload `key` over from `owner`, which cannot be reached; answers
/// the session's new generation.
async fn claim(state: &AppState, key: &str, owner: UploadOwner) -> ApiResult<u64> {
    let me = state.meta.node_id();
    let command = Command::ClaimUpload {
        id: key.to_owned(),
        from: Some(owner.node),
        to: me,
    };
    match state.meta.propose(command).await? {
        Response::Done => {
            tracing::warn!(upload = %key, from = owner.node, "took over an upload whose node is unreachable");
            Ok(owner.generation + 1)
        }
        Response::UploadUnknown => Err(ApiError::new(
            ErrorCode::BlobUploadUnknown,
            format!("no upload {key}"),
        )),
        other => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("upload {key} changed owner meanwhile ({other:?}); retry"),
        )),
    }
}

async fn local_session(
    state: &AppState,
    name: &RepoName,
    id: Uuid,
    generation: u64,
) -> ApiResult<Addr<UploadSession>> {
    Ok(state
        .uploads
        .send(Session {
            id,
            repo: name.to_string(),
            fresh: false,
            generation,
        })
        .await?)
}

pub async fn status(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
    id: Uuid,
) -> ApiResult<HttpResponse> {
    let addr = match locate(state, req, payload, name, id).await? {
        Owner::Elsewhere(response) => return Ok(response),
        Owner::Here(addr, _) => addr,
    };
    let offset = addr.send(Status).await??;
    let mut response = upload_accepted(name, id, offset);
    *response.status_mut() = actix_web::http::StatusCode::NO_CONTENT;
    Ok(response)
}

pub async fn patch(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
    id: Uuid,
) -> ApiResult<HttpResponse> {
    let start = chunk_start(req)?;
    let (addr, payload) = match locate(state, req, payload, name, id).await? {
        Owner::Elsewhere(response) => return Ok(response),
        Owner::Here(addr, payload) => (addr, payload),
    };
    let (forward, body) = pump(payload, state.metrics.received_bytes.clone());
    let (_, offset) = futures::join!(forward, addr.send(Append { start, body }));
    Ok(upload_accepted(name, id, offset??))
}

pub async fn finish(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
    id: Uuid,
) -> ApiResult<HttpResponse> {
    let q = query(req);
    let Some(raw) = q.get("digest") else {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            "digest query parameter is required",
        ));
    };
    let digest = parse_digest(raw)?;
    let start = chunk_start(req)?;
    let (addr, payload) = match locate(state, req, payload, name, id).await? {
        Owner::Elsewhere(response) => return Ok(response),
        Owner::Here(addr, payload) => (addr, payload),
    };
    let size = if has_body(req) {
        let (forward, body) = pump(payload, state.metrics.received_bytes.clone());
        let message = Finish {
            digest: digest.clone(),
            start,
            body: Some(body),
            notifier: state.notifier(req),
        };
        let (_, size) = futures::join!(forward, addr.send(message));
        size??
    } else {
        addr.send(Finish {
            digest: digest.clone(),
            start: None,
            body: None,
            notifier: state.notifier(req),
        })
        .await??
    };
    tracing::debug!(repo = %name, %digest, size, "blob upload finished");
    Ok(blob_created(name, &digest))
}

pub async fn cancel(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    name: &RepoName,
    id: Uuid,
) -> ApiResult<HttpResponse> {
    let addr = match locate(state, req, payload, name, id).await? {
        Owner::Elsewhere(response) => return Ok(response),
        Owner::Here(addr, _) => addr,
    };
    addr.send(Cancel).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Where a chunk says it starts (`Content-Range`, checked against
/// `Content-Length`), if it says.
fn chunk_start(req: &HttpRequest) -> ApiResult<Option<u64>> {
    let Some(raw) = header(req, "Content-Range") else {
        return Ok(None);
    };
    let (start, end) = parse_content_range(raw)?;
    let declared = header(req, "Content-Length").and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len != end - start + 1) {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {raw:?} does not match Content-Length {declared:?}"),
        ));
    }
    Ok(Some(start))
}

/// `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefix tolerated).
fn parse_content_range(raw: &str) -> ApiResult<(u64, u64)> {
    let spec = raw
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let spec = spec.split('/').next().unwrap_or_default();
    let parsed = spec
        .split_once('-')
        .and_then(|(s, e)| Some((s.trim().parse::<u64>().ok()?, e.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((start, end)) if end >= start => Ok((start, end)),
        _ => Err(ApiError::new(
            ErrorCode::RangeInvalid,
            format!("Content-Range {raw:?} is not <start>-<end>"),
        )),
    }
}

fn upload_accepted(name: &RepoName, id: Uuid, offset: u64) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header(("Location", format!("/v2/{name}/blobs/uploads/{id}")))
        .insert_header(("Range", upload_range(offset)))
        .insert_header((DOCKER_UPLOAD_UUID, id.to_string()))
        .insert_header(("Content-Length", "0"))
        .finish()
}

fn blob_created(name: &RepoName, digest: &Digest) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(("Location", format!("/v2/{name}/blobs/{digest}")))
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99").unwrap(), (0, 99));
        assert_eq!(parse_content_range("100-199").unwrap(), (100, 199));
        assert_eq!(parse_content_range("bytes 5-9/10").unwrap(), (5, 9));
        assert_eq!(
            parse_content_range("9-5").unwrap_err().code,
            ErrorCode::RangeInvalid
        );
        assert_eq!(
            parse_content_range("x").unwrap_err().code,
            ErrorCode::RangeInvalid
        );
    }
}
