//! One module per resource. A handler parses what its route left (query,
//! headers, body), validates, sends one actor message or one propose/read,
//! and builds the response. Errors leave through `ApiError` only.

pub mod base;
pub mod blobs;
pub mod catalog;
pub mod manifests;
pub mod referrers;
pub mod tags;
pub mod uploads;

use crate::error::{ApiError, ApiResult, ErrorCode};
use actix_web::HttpRequest;
use std::collections::HashMap;

pub const DOCKER_CONTENT_DIGEST: &str = "Docker-Content-Digest";
pub const DOCKER_UPLOAD_UUID: &str = "Docker-Upload-UUID";

/// The request's query parameters (last value wins).
pub fn query(req: &HttpRequest) -> HashMap<String, String> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner().into_iter().collect())
        .unwrap_or_default()
}

/// Content addressed by digest, looked up with `find`: from this node's own
/// state while it holds a read lease and has the content (deletes wait for
/// leases to end; docs/cluster.md, Reads), else after a linearizable read,
/// since a local miss proves nothing. Answers the state it came from too.
pub async fn by_digest<T>(
    state: &crate::state::AppState,
    find: impl Fn(&raft::StateView) -> Result<Option<T>, raft::state::ApplyError>,
) -> ApiResult<(&raft::StateView, Option<T>)> {
    if let Some(view) = state.meta.leased_view() {
        if let Some(found) = find(view)? {
            return Ok((view, Some(found)));
        }
    }
    let view = state.meta.read().await?;
    let found = find(view)?;
    Ok((view, found))
}

pub fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `n` and `last` of a paginated list. `n` absent means "no limit".
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

pub fn page(req: &HttpRequest) -> ApiResult<Page> {
    let q = query(req);
    let n = match q.get("n") {
        None => None,
        Some(raw) => Some(raw.parse::<usize>().map_err(|_| {
            ApiError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={raw:?} is not a count"),
            )
        })?),
    };
    Ok(Page {
        n,
        last: q.get("last").cloned().filter(|l| !l.is_empty()),
    })
}

/// The `Link` header pointing at the page after `items`, when `more` exist.
pub fn next_link(path: &str, n: usize, items: &[String]) -> Option<String> {
    let last = items.last()?;
    let last = url_escape(last);
    Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `Range` header value of an upload that holds `offset` bytes.
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// Whether the request carries a body (a declared non-zero length, or chunks).
pub fn has_body(req: &HttpRequest) -> bool {
    match header(req, "Content-Length") {
        Some(len) => len.trim() != "0",
        None => header(req, "Transfer-Encoding").is_some_and(|te| te.contains("chunked")),
    }
}
