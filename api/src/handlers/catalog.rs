//! `GET /v2/_catalog` with `n`/`last` pagination.

use super::{next_link, page};
use crate::auth::Identity;
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

/// Page size when the client names none.
const DEFAULT_PAGE: usize = 1000;

pub async fn list(state: &AppState, req: &HttpRequest) -> ApiResult<HttpResponse> {
    let page = page(req)?;
    let limit = page.n.unwrap_or(DEFAULT_PAGE);
    let view = state.meta.read().await?;
    let mut repos = match state.auth.as_ref().filter(|_| !state.forwarded) {
        None => view.repos(page.last.as_deref(), limit.saturating_add(1))?,
        Some(auth) => {
            let who = req
                .extensions()
                .get::<Identity>()
                .cloned()
                .unwrap_or(Identity::Anonymous);
            visible_repos(
                view,
                page.last.as_deref(),
                limit.saturating_add(1),
                |repo| auth.may_pull(&who, repo),
            )?
        }
    };
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

/// Up to `want` repositories after `last` that `visible` keeps, read from
/// the catalog in pages.
fn visible_repos(
    view: &raft::StateView,
    last: Option<&str>,
    want: usize,
    visible: impl Fn(&str) -> bool,
) -> ApiResult<Vec<String>> {
    let mut kept = Vec::new();
    let mut last = last.map(str::to_owned);
    loop {
        let batch = view.repos(last.as_deref(), DEFAULT_PAGE)?;
        let exhausted = batch.len() < DEFAULT_PAGE;
        last = batch.last().cloned();
        kept.extend(
            batch
                .into_iter()
                .filter(|repo| visible(repo))
                .take(want - kept.len()),
        );
        if kept.len() >= want || exhausted {
            return Ok(kept);
        }
    }
}
