//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use super::{header, DOCKER_CONTENT_DIGEST};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::{with_events, Target};
use crate::manifest;
use crate::names::{Reference, RepoName};
use crate::state::{now_ms, AppState};
use actix_web::body::SizedStream;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures::StreamExt;
use raft::{Command, Response};
use storage::{Algorithm, Hasher};

pub async fn put(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
    name: &RepoName,
    reference: &Reference,
) -> ApiResult<HttpResponse> {
    let limit = state.config.max_manifest_bytes;
    let too_large = || {
        ApiError::new(
            ErrorCode::ManifestTooLarge,
            format!("manifests are limited to {limit} bytes"),
        )
    };
    if header(req, "Content-Length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(too_large());
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, format!("body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    state.metrics.received_bytes.inc_by(bytes.len() as u64);
    let bytes = bytes.freeze();
    let parsed = manifest::parse(header(req, "Content-Type"), &bytes)?;
    let (digest, tag) = match reference {
        Reference::Digest(expected) => {
            let mut hasher = Hasher::new(expected.algorithm());
            hasher.update(&bytes);
            let actual = hasher.finish();
            if &actual != expected {
                return Err(ApiError::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest has digest {actual}, not {expected}"),
                ));
            }
            (actual, None)
        }
        Reference::Tag(tag) => {
            let mut hasher = Hasher::new(Algorithm::Sha256);
            hasher.update(&bytes);
            (hasher.finish(), Some(tag.as_str().to_owned()))
        }
    };
    // Spec 1.1.1: `?tag=a&tag=b` tags a manifest pushed by digest with each.
    let mut query_tags: Vec<String> = Vec::new();
    for (key, value) in web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
    {
        if key == "tag" {
            let tag = crate::names::Tag::parse(&value)?.as_str().to_owned();
            if !query_tags.contains(&tag) {
                query_tags.push(tag);
            }
        }
    }
    let subject = parsed.subject.clone();
    let record = parsed.into_record(bytes.to_vec(), now_ms());
    let events = state
        .notifier(req)
        .map(|notifier| {
            let mut tags: Vec<Option<&str>> = Vec::new();
            for tag in tag.iter().chain(&query_tags) {
                if !tags.contains(&Some(tag.as_str())) {
                    tags.push(Some(tag));
                }
            }
            if tags.is_empty() {
                tags.push(None);
            }
            tags.into_iter()
                .map(|tag| {
                    let target = Target::manifest(&digest, &record, tag);
                    notifier.event("push", name.as_str(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    let command = if query_tags.is_empty() {
        Command::PutManifest {
            repo: name.to_string(),
            digest: digest.clone(),
            tag,
            manifest: record,
        }
    } else {
        let mut tags = query_tags.clone();
        if let Some(tag) = tag {
            if !tags.contains(&tag) {
                tags.insert(0, tag);
            }
        }
        Command::PutManifestTags {
            repo: name.to_string(),
            digest: digest.clone(),
            tags,
            manifest: record,
        }
    };
    let command = with_events(events, command);
    match state.meta.propose(command).await? {
        Response::Done => {}
        Response::ManifestReferenceUnknown(missing) => {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("{missing} is not in {name}"),
            ))
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::Unknown,
                format!("put manifest: {other:?}"),
            ))
        }
    }
    let mut response = HttpResponse::Created();
    response
        .insert_header(("Location", format!("/v2/{name}/manifests/{digest}")))
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()));
    for tag in &query_tags {
        response.append_header(("OCI-Tag", tag.as_str()));
    }
    if let Some(subject) = subject {
        response.insert_header(("OCI-Subject", subject.to_string()));
    }
    Ok(response.finish())
}

pub async fn get(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    reference: &Reference,
    head: bool,
) -> ApiResult<HttpResponse> {
    if let Some((cache, covered)) = state.covering(name.as_str()) {
        crate::cache::manifests::refresh(state, cache, &covered, name, reference).await?;
    }
    let (view, found) = match reference {
        Reference::Digest(d) => {
            super::by_digest(state, |view| {
                Ok(view.manifest(name.as_str(), d)?.map(|m| (d.clone(), m)))
            })
            .await?
        }
        Reference::Tag(tag) => {
            let view = state.meta.read().await?;
            let found = match view.tag(name.as_str(), tag.as_str())? {
                Some(d) => view.manifest(name.as_str(), &d)?.map(|m| (d, m)),
                None => None,
            };
            (view, found)
        }
    };
    let Some((digest, record)) = found else {
        return Err(if view.repo_exists(name.as_str())? {
            ApiError::new(
                ErrorCode::ManifestUnknown,
                format!("{reference} is not in {name}"),
            )
        } else {
            ApiError::new(ErrorCode::NameUnknown, format!("no repository {name}"))
        });
    };
    // Clients may send one Accept header per type (containers/image does).
    let accept: Vec<&str> = req
        .headers()
        .get_all("Accept")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accept = (!accept.is_empty()).then(|| accept.join(","));
    if !accepts(accept.as_deref(), &record.media_type) {
        return Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!(
                "{reference} is a {}, which the request's Accept header excludes",
                record.media_type
            ),
        ));
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type(record.media_type.as_str())
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
        .insert_header(("ETag", format!("\"{digest}\"")));
    if head {
        let size = record.bytes.len() as u64;
        return Ok(response.body(SizedStream::new(
            size,
            futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
        )));
    }
    state.metrics.sent_bytes.inc_by(record.bytes.len() as u64);
    state
        .pulls
        .record(name.as_str(), &digest, crate::state::now_ms());
    if let Some(notifier) = state.notifier(req) {
        let tag = match reference {
            Reference::Tag(tag) => Some(tag.as_str()),
            Reference::Digest(_) => None,
        };
        let target = Target::manifest(&digest, &record, tag);
        state
            .pulls
            .record_event(notifier.event("pull", name.as_str(), target));
    }
    Ok(response.body(record.bytes))
}

/// Whether an `Accept` header admits `media_type`. No header, or one naming
/// no manifest type at all, admits everything (older clients send `*/*` or
/// `application/json`).
fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    let Some(accept) = accept else { return true };
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or_default().trim())
        .collect();
    let names_manifests = types.iter().any(|t| {
        [
            manifest::OCI_MANIFEST,
            manifest::OCI_INDEX,
            manifest::DOCKER_MANIFEST,
            manifest::DOCKER_LIST,
        ]
        .contains(t)
    });
    !names_manifests || types.iter().any(|t| *t == media_type || *t == "*/*")
}

pub async fn delete(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    reference: &Reference,
) -> ApiResult<HttpResponse> {
    if !state.config.delete_enabled {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "deletes are disabled",
        ));
    }
    let command = match reference {
        Reference::Digest(digest) => Command::DeleteManifest {
            repo: name.to_string(),
            digest: digest.clone(),
        },
        Reference::Tag(tag) => Command::DeleteTag {
            repo: name.to_string(),
            tag: tag.as_str().to_owned(),
        },
    };
    let events = state
        .notifier(req)
        .map(|notifier| {
            let target = match reference {
                Reference::Digest(digest) => Target::DeletedManifest(digest),
                Reference::Tag(tag) => Target::DeletedTag(tag.as_str()),
            };
            vec![notifier.event("delete", name.as_str(), target)]
        })
        .unwrap_or_default();
    match state.meta.propose(with_events(events, command)).await? {
        Response::Done => Ok(HttpResponse::Accepted().finish()),
        _ => Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("{reference} is not in {name}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(accepts(None, manifest::OCI_MANIFEST));
        assert!(accepts(Some("*/*"), manifest::OCI_MANIFEST));
        assert!(accepts(Some("application/json"), manifest::DOCKER_MANIFEST));
        let docker_only = "application/vnd.docker.distribution.manifest.v2+json";
        assert!(!accepts(Some(docker_only), manifest::OCI_INDEX));
        assert!(accepts(
            Some(&format!("{docker_only}, {}", manifest::OCI_INDEX)),
            manifest::OCI_INDEX
        ));
    }
}
