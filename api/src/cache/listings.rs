//! Listings of covered repositories, tags and referrers: the upstream's,
//! which name what the cache has not pulled yet (distribution's proxy lists
//! tags so); the cache's own stand in when the upstream cannot answer.

use super::{Covered, PullThroughCache, UpstreamError};
use crate::names::RepoName;
use storage::Digest;

/// Up to `n` tags of `name` after `last` as the upstream lists them, or
/// `None` when the cache's own list has to do (counted and logged).
pub async fn tags_upstream(
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    n: Option<usize>,
    last: Option<&str>,
) -> Option<Vec<String>> {
    let upstream = covered.upstream.url();
    match covered.upstream.tags(&covered.remote_repo, n, last).await {
        Ok(mut tags) => {
            cache.metrics.lookup(upstream, "tags", "fetched");
            // The spec's lexical order, which distribution 2.8 does not keep.
            tags.sort_unstable();
            Some(tags)
        }
        Err(e @ UpstreamError::NotFound(_)) => {
            cache.metrics.lookup(upstream, "tags", e.label());
            None
        }
        Err(e) => {
            tracing::warn!(repository = %name, upstream, error = %e,
                "listing the cached tags: the upstream cannot list them");
            cache.metrics.lookup(upstream, "tags", "stale");
            None
        }
    }
}

/// The descriptors of the manifests whose subject is `subject` in `name`,
/// as the upstream lists them (filtered by `artifact_type`), or `None`
/// when the cache's own referrers have to do: the upstream has no
/// referrers API, or cannot answer (counted and logged).
pub async fn referrers_upstream(
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Option<Vec<serde_json::Value>> {
    let upstream = covered.upstream.url();
    let asked = covered
        .upstream
        .referrers(&covered.remote_repo, subject, artifact_type)
        .await;
    match asked {
        Ok(Some(descriptors)) => {
            cache.metrics.lookup(upstream, "referrers", "fetched");
            Some(descriptors)
        }
        Ok(None) => {
            cache.metrics.lookup(upstream, "referrers", "not_found");
            None
        }
        Err(e) => {
            tracing::warn!(repository = %name, %subject, upstream, error = %e,
                "listing the cached referrers: the upstream cannot list them");
            cache.metrics.lookup(upstream, "referrers", "stale");
            None
        }
    }
}
