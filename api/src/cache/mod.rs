//! The pull-through cache (`proxy`): repositories an upstream registry
//! covers are filled from it when a pull misses, and refused pushes.
//!
//! * Manifests: one asked for by digest is fetched once and kept; a tag is
//!   served from the cache for `ttl` after it was fetched, then re-checked
//!   with a `HEAD` (which Docker Hub does not count against its pull limit).
//!   When the upstream fails, the cached tag is served and the failure
//!   logged. Cached manifests go through the log ([`raft::Command::CacheManifest`]),
//!   so every node serves them.
//! * Blobs: fetched by one node of the cluster per digest (the members'
//!   rendezvous hash picks it; the others forward their misses to it),
//!   once however many clients ask at the same moment ([`flight`]), and
//!   streamed to the first client while they are stored. The last bytes go
//!   out only once the digest is verified and the blob recorded, so a
//!   client never receives a whole blob that does not hash to its digest.
//! * Tag lists and referrers are the upstream's ([`listings`]), the cache's
//!   own when the upstream cannot answer.
//! * Expiry is the node's business: a retention rule per upstream untags
//!   what was neither fetched nor pulled within `ttl`, and garbage
//!   collection does the rest, never taking a blob another image uses.

pub mod blobs;
mod flight;
pub mod listings;
pub mod manifests;
mod metrics;
mod upstream;

pub use metrics::CacheMetrics;
pub use upstream::{Upstream, UpstreamError};

use std::sync::Arc;
use std::time::Duration;

/// One upstream as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The repositories it covers: `prefix/...`, the prefix removed
    /// upstream; empty covers every repository (distribution's `proxy`).
    pub prefix: String,
    /// `http(s)://host[:port]`, the root of the upstream registry.
    pub remote_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long a fetched tag is served before it is re-checked, and what
    /// is neither fetched nor pulled for this long expires; `None` (a `ttl`
    /// of 0) re-checks tags on every pull and never expires anything.
    pub ttl: Option<Duration>,
}

/// The upstreams, longest prefix first.
pub struct PullThroughCache {
    upstreams: Vec<Arc<Upstream>>,
    flights: flight::Flights,
    metrics: CacheMetrics,
}

/// A repository an upstream covers.
pub struct Covered {
    pub upstream: Arc<Upstream>,
    /// Its name upstream (the prefix removed).
    pub remote_repo: String,
}

impl PullThroughCache {
    pub fn new(configs: &[UpstreamConfig], metrics: CacheMetrics) -> Result<Self, String> {
        let mut upstreams = configs
            .iter()
            .map(|config| Upstream::new(config).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.prefix().len()));
        Ok(PullThroughCache {
            upstreams,
            flights: flight::Flights::default(),
            metrics,
        })
    }

    /// The upstream covering `repo`, if any: the one with the longest
    /// prefix that is `repo` or a parent of it.
    pub fn covering(&self, repo: &str) -> Option<Covered> {
        self.upstreams.iter().find_map(|upstream| {
            let prefix = upstream.prefix();
            let remote_repo = if prefix.is_empty() {
                repo
            } else {
                repo.strip_prefix(prefix)?.strip_prefix('/')?
            };
            Some(Covered {
                upstream: upstream.clone(),
                remote_repo: remote_repo.to_owned(),
            })
        })
    }

    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }
}

/// The refusal of a push into a repository an upstream covers.
pub fn push_refused(repo: &str, covered: &Covered) -> crate::error::ApiError {
    crate::error::ApiError::new(
        crate::error::ErrorCode::Unsupported,
        format!(
            "{repo} is a pull-through cache of {}: pushes are refused",
            covered.upstream.url()
        ),
    )
}

/// A miss while the registry is read-only: the cache stores nothing new
/// then (what it holds is served).
pub fn read_only() -> crate::error::ApiError {
    crate::error::ApiError::new(
        crate::error::ErrorCode::Unavailable,
        "the registry is read-only: the pull-through cache serves what it holds and fetches nothing new",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(prefix: &str, url: &str) -> UpstreamConfig {
        UpstreamConfig {
            prefix: prefix.to_owned(),
            remote_url: url.to_owned(),
            username: None,
            password: None,
            ttl: None,
        }
    }

    #[test]
    fn the_longest_covering_prefix_wins_and_is_removed_upstream() {
        let metrics = CacheMetrics::new(&prometheus::Registry::new()).unwrap();
        let cache = PullThroughCache::new(
            &[
                upstream("hub", "https://registry-1.docker.io"),
                upstream("hub/special", "http://127.0.0.1:5999"),
            ],
            metrics,
        )
        .unwrap();
        let covered = cache.covering("hub/library/alpine").unwrap();
        assert_eq!(covered.remote_repo, "library/alpine");
        assert_eq!(covered.upstream.url(), "https://registry-1.docker.io");
        let covered = cache.covering("hub/special/x").unwrap();
        assert_eq!(covered.remote_repo, "x");
        assert_eq!(covered.upstream.url(), "http://127.0.0.1:5999");
        assert!(cache.covering("hubble/x").is_none(), "a prefix ends at a /");
        assert!(
            cache.covering("hub").is_none(),
            "names no repository upstream"
        );
        assert!(cache.covering("mine/app").is_none());

        let metrics = CacheMetrics::new(&prometheus::Registry::new()).unwrap();
        let everything =
            PullThroughCache::new(&[upstream("", "http://127.0.0.1:5999")], metrics).unwrap();
        assert_eq!(everything.covering("a/b").unwrap().remote_repo, "a/b");
    }
}
