//! Tag lists of covered repositories: the upstream's, which names tags the
//! cache has not pulled yet, as distribution's proxy lists them; the
//! cache's own list stands in when the upstream cannot answer.

use super::{Covered, PullThroughCache, UpstreamError};
use crate::names::RepoName;

/// Up to `n` tags of `name` after `last` as the upstream lists them, or
/// `None` when the cache's own list has to do (counted and logged).
pub async fn listed_upstream(
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
