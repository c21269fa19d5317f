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
    let asked = match covered.upstream.tags(&covered.remote_repo, n, last).await {
        Err(UpstreamError::NotFound(_)) => Ok(None),
        other => other.map(Some),
    };
    let mut tags = counted(cache, covered, name, "tags", asked)?;
    // The spec's lexical order, which distribution 2.8 does not keep.
    tags.sort_unstable();
    Some(tags)
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
    let asked = covered
        .upstream
        .referrers(&covered.remote_repo, subject, artifact_type)
        .await;
    counted(cache, covered, name, "referrers", asked)
}

/// Counts what the upstream answered for a listing of `kind`, logging a
/// failure; the listing, or `None` when it had none (`not_found`) or failed
/// (`stale`: the cache's own is served).
fn counted<T>(
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    kind: &str,
    asked: Result<Option<T>, UpstreamError>,
) -> Option<T> {
    let upstream = covered.upstream.url();
    let result = match &asked {
        Ok(Some(_)) => "fetched",
        Ok(None) => "not_found",
        Err(e) => {
            tracing::warn!(repository = %name, upstream, kind, error = %e,
                "listing what the cache holds: the upstream cannot list it");
            "stale"
        }
    };
    cache.metrics.lookup(upstream, kind, result);
    asked.ok().flatten()
}
