//! What the pull-through cache does, per upstream.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Pulls of covered content by kind (`manifest`, `blob`, `tags`,
    /// `referrers`) and
    /// result: `hit` (served as cached), `fetched` (filled from, or for
    /// tags listed by, the upstream), `linked` (a blob the cache holds for
    /// another repository, linked once the upstream confirmed it),
    /// `revalidated` (a tag re-checked, unchanged), `stale` (served as
    /// cached because the upstream failed), `not_found`, `refused`,
    /// `failed` (nothing to serve).
    pub lookups: IntCounterVec,
    /// Blob bytes received from the upstream.
    pub fetched_bytes: IntCounterVec,
    /// Blob fetches from the upstream running on this node.
    pub fetches_in_flight: IntGaugeVec,
}

impl CacheMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let lookups = IntCounterVec::new(
            Opts::new(
                "registry_cache_lookups_total",
                "Pulls of content a pull-through upstream covers, by kind and result",
            ),
            &["upstream", "kind", "result"],
        )?;
        let fetched_bytes = IntCounterVec::new(
            Opts::new(
                "registry_cache_fetched_bytes_total",
                "Blob bytes received from pull-through upstreams",
            ),
            &["upstream"],
        )?;
        let fetches_in_flight = IntGaugeVec::new(
            Opts::new(
                "registry_cache_fetches_in_flight",
                "Blob fetches from a pull-through upstream running on this node",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(fetched_bytes.clone()))?;
        registry.register(Box::new(fetches_in_flight.clone()))?;
        Ok(CacheMetrics {
            lookups,
            fetched_bytes,
            fetches_in_flight,
        })
    }

    pub fn lookup(&self, upstream: &str, kind: &str, result: &str) {
        self.lookups
            .with_label_values(&[upstream, kind, result])
            .inc();
    }
}
