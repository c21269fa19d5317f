//! `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose
//! subject is `<digest>`, optionally filtered by `artifactType`.

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
    let view = state.meta.read().await?;
    let referrers = view.referrers(name.as_str(), subject)?;
    let manifests: Vec<serde_json::Value> = referrers
        .into_iter()
        .filter(|r| filter.is_none() || r.manifest.artifact_type == filter)
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
        .collect();
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
