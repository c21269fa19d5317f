//! `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose
//! subject is `<digest>`, optionally filtered by `artifactType` (in a
//! repository a pull-through upstream covers, the upstream's).

use super::query;
use crate::error::ApiResult;
use crate::manifest::OCI_INDEX;
use crate::names::RepoName;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse};
use storage::Digest;

pub async fn list(
    state: &AppState,
    req: &HttpRequest,
    name: &RepoName,
    subject: &Digest,
) -> ApiResult<HttpResponse> {
    let filter = query(req).get("artifactType").cloned();
    let upstream = match state.covering(name.as_str()) {
        Some((cache, covered)) => {
            let filter = filter.as_deref();
            crate::cache::listings::referrers_upstream(cache, &covered, name, subject, filter).await
        }
        None => None,
    };
    let manifests = match upstream {
        Some(manifests) => manifests,
        None => stored(state, name, subject, filter.as_deref()).await?,
    };
    let mut response = HttpResponse::Ok();
    response.content_type(OCI_INDEX);
    if filter.is_some() {
        response.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    Ok(response.body(body.to_string()))
}

/// The descriptors of the stored manifests whose subject is `subject`.
async fn stored(
    state: &AppState,
    name: &RepoName,
    subject: &Digest,
    filter: Option<&str>,
) -> ApiResult<Vec<serde_json::Value>> {
    let view = state.meta.read().await?;
    let referrers = view.referrers(name.as_str(), subject)?;
    Ok(referrers
        .into_iter()
        .filter(|r| filter.is_none() || r.manifest.artifact_type.as_deref() == filter)
        .map(|r| {
            let mut descriptor = serde_json::json!({
                "mediaType": r.manifest.media_type,
                "digest": r.digest.to_string(),
                "size": r.manifest.bytes.len(),
            });
            if let Some(t) = &r.manifest.artifact_type {
                descriptor["artifactType"] = t.clone().into();
            }
            if !r.manifest.annotations.is_empty() {
                descriptor["annotations"] = serde_json::json!(r.manifest.annotations);
            }
            descriptor
        })
        .collect())
}
