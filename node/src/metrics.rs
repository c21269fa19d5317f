//! The node's Prometheus registry (one per node, so in-process nodes keep
//! separate counters) and the metrics of the node's own background tasks.

use prometheus::{Encoder, Gauge, IntCounter, Registry, TextEncoder};

/// Upload-purge metrics: what it removed, when it last ran, how long it took.
#[derive(Debug, Clone)]
pub struct PurgeMetrics {
    pub purged: IntCounter,
    pub failures: IntCounter,
    pub last_run: Gauge,
    pub duration: Gauge,
}

impl PurgeMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let purged = IntCounter::new(
            "registry_uploads_purged_total",
            "Stale upload sessions purged",
        )?;
        let failures = IntCounter::new(
            "registry_upload_purge_failures_total",
            "Stale uploads the purge could not remove",
        )?;
        let last_run = Gauge::new(
            "registry_upload_purge_last_run_timestamp_seconds",
            "When the upload purge last finished (Unix time; 0 = never)",
        )?;
        let duration = Gauge::new(
            "registry_upload_purge_duration_seconds",
            "How long the last upload purge took",
        )?;
        registry.register(Box::new(purged.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(last_run.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(PurgeMetrics {
            purged,
            failures,
            last_run,
            duration,
        })
    }
}

/// The registry in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    String::from_utf8(out).unwrap_or_default()
}
