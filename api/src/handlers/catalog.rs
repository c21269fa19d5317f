//! `GET /v2/_catalog` with `n`/`last` pagination.

use super::{next_link, page};
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse};

/// Page size when the client names none.
const DEFAULT_PAGE: usize = 1000;

pub async fn list(state: &AppState, req: &HttpRequest) -> ApiResult<HttpResponse> {
    let page = page(req)?;
    let limit = page.n.unwrap_or(DEFAULT_PAGE);
    let view = state.meta.read().await?;
    let mut repos = view.repos(page.last.as_deref(), limit.saturating_add(1))?;
    let more = repos.len() > limit;
    repos.truncate(limit);
    let mut response = HttpResponse::Ok();
    if more {
        if let Some(link) = next_link("/v2/_catalog", limit, &repos) {
            response.insert_header(("Link", link));
        }
    }
    Ok(response.json(serde_json::json!({ "repositories": repos })))
}
