//! `GET /v2/<name>/tags/list` with `n`/`last` pagination.

use super::{next_link, page};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::names::RepoName;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse};

pub async fn list(state: &AppState, req: &HttpRequest, name: &RepoName) -> ApiResult<HttpResponse> {
    let page = page(req)?;
    let view = state.meta.read().await?;
    if !view.repo_exists(name.as_str())? {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            format!("no repository {name}"),
        ));
    }
    let limit = page.n.unwrap_or(usize::MAX);
    let mut tags = view.tags(name.as_str(), page.last.as_deref(), limit.saturating_add(1))?;
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
