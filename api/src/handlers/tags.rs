//! `GET /v2/<name>/tags/list` with `n`/`last` pagination (in a repository
//! a pull-through upstream covers, the upstream's list).

use super::{next_link, page};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::names::RepoName;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse};

pub async fn list(state: &AppState, req: &HttpRequest, name: &RepoName) -> ApiResult<HttpResponse> {
    let page = page(req)?;
    let limit = page.n.unwrap_or(usize::MAX);
    // One more than asked for says whether there is a next page.
    let ask = page.n.map(|n| n.saturating_add(1));
    let upstream = match state.covering(name.as_str()) {
        Some((cache, covered)) => {
            let last = page.last.as_deref();
            crate::cache::listings::tags_upstream(cache, &covered, name, ask, last).await
        }
        None => None,
    };
    let mut tags = match upstream {
        Some(tags) => tags,
        None => {
            let view = state.meta.read().await?;
            if !view.repo_exists(name.as_str())? {
                return Err(ApiError::new(
                    ErrorCode::NameUnknown,
                    format!("no repository {name}"),
                ));
            }
            view.tags(name.as_str(), page.last.as_deref(), limit.saturating_add(1))?
        }
    };
    let more = tags.len() > limit;
    tags.truncate(limit);
    let mut response = HttpResponse::Ok();
    if more {
        if let Some(link) = next_link(&format!("/v2/{name}/tags/list"), limit, &tags) {
            response.insert_header(("Link", link));
        }
    }
    Ok(response.json(serde_json::json!({ "name": name.as_str(), "tags": tags })))
}
