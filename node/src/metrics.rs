//! The node's Prometheus registry (one per node, so in-process nodes keep
//! separate counters) and the metrics of the node's own background tasks.

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::time::Duration;

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

/// Garbage-collection metrics: runs and their phases, what they removed,
/// and the queues between collections.
#[derive(Debug, Clone)]
pub struct GcMetrics {
    runs: IntCounterVec,
    phase_seconds: GaugeVec,
    pub removed: IntCounter,
    pub manifests_removed: IntCounter,
    pub tags_removed: IntCounter,
    pub bytes_reclaimed: IntCounter,
    pub hidden_total: IntCounter,
    pub sweep_failures: IntCounter,
    /// Follows the replicated count (`StateView::revived`).
    revived: IntCounter,
    /// Blobs hidden and within their grace.
    pub hidden: IntGauge,
    /// Condemned generations whose bytes are not deleted yet.
    pub pending_sweeps: IntGauge,
    last_run: Gauge,
    last_success: IntGauge,
    last_duration: Gauge,
}

impl GcMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = GcMetrics {
            runs: IntCounterVec::new(
                Opts::new(
                    "registry_gc_runs_total",
                    "Garbage collections by result: success, failure, dry_run",
                ),
                &["result"],
            )?,
            phase_seconds: GaugeVec::new(
                Opts::new(
                    "registry_gc_phase_duration_seconds",
                    "How long each phase of the last collection took: plan, manifests, condemn, sweep, hide",
                ),
                &["phase"],
            )?,
            removed: IntCounter::new(
                "registry_gc_blobs_removed_total",
                "Blobs whose bytes garbage collection deleted",
            )?,
            manifests_removed: IntCounter::new(
                "registry_gc_manifests_removed_total",
                "Unrooted manifests garbage collection deleted",
            )?,
            tags_removed: IntCounter::new(
                "registry_gc_retention_tags_removed_total",
                "Tags retention rules removed",
            )?,
            bytes_reclaimed: IntCounter::new(
                "registry_gc_bytes_reclaimed_total",
                "Bytes of blobs garbage collection deleted",
            )?,
            hidden_total: IntCounter::new(
                "registry_gc_blobs_hidden_total",
                "Unreferenced blobs garbage collection hid (deleted after the grace unless pushed again)",
            )?,
            sweep_failures: IntCounter::new(
                "registry_gc_sweep_failures_total",
                "Deletes of condemned bytes that failed (retried by the next collection)",
            )?,
            revived: IntCounter::new(
                "registry_gc_blobs_revived_total",
                "Hidden blobs a push, mount or manifest brought back before their bytes went (cluster-wide)",
            )?,
            hidden: IntGauge::new(
                "registry_gc_hidden_blobs",
                "Blobs hidden and within their grace, as the last collection saw them",
            )?,
            pending_sweeps: IntGauge::new(
                "registry_gc_pending_sweeps",
                "Condemned blobs whose bytes are not deleted yet, as the last collection saw them",
            )?,
            last_run: Gauge::new(
                "registry_gc_last_run_timestamp_seconds",
                "When the last garbage collection finished (Unix time; 0 = never)",
            )?,
            last_success: IntGauge::new(
                "registry_gc_last_run_success",
                "1 if the last garbage collection succeeded, else 0",
            )?,
            last_duration: Gauge::new(
                "registry_gc_last_run_duration_seconds",
                "How long the last garbage collection took",
            )?,
        };
        registry.register(Box::new(metrics.runs.clone()))?;
        registry.register(Box::new(metrics.phase_seconds.clone()))?;
        registry.register(Box::new(metrics.removed.clone()))?;
        registry.register(Box::new(metrics.manifests_removed.clone()))?;
        registry.register(Box::new(metrics.tags_removed.clone()))?;
        registry.register(Box::new(metrics.bytes_reclaimed.clone()))?;
        registry.register(Box::new(metrics.hidden_total.clone()))?;
        registry.register(Box::new(metrics.sweep_failures.clone()))?;
        registry.register(Box::new(metrics.revived.clone()))?;
        registry.register(Box::new(metrics.hidden.clone()))?;
        registry.register(Box::new(metrics.pending_sweeps.clone()))?;
        registry.register(Box::new(metrics.last_run.clone()))?;
        registry.register(Box::new(metrics.last_success.clone()))?;
        registry.register(Box::new(metrics.last_duration.clone()))?;
        Ok(metrics)
    }

    /// Brings `registry_gc_blobs_revived_total` up to the replicated count.
    pub fn follow_revived(&self, replicated: u64) {
        let seen = self.revived.get();
        if replicated > seen {
            self.revived.inc_by(replicated - seen);
        }
    }

    pub fn phase(&self, phase: &str, took: Duration) {
        self.phase_seconds
            .with_label_values(&[phase])
            .set(took.as_secs_f64());
    }

    pub fn finished<T, E>(&self, result: &Result<T, E>, dry_run: bool, took: Duration) {
        let label = match (result.is_ok(), dry_run) {
            (false, _) => "failure",
            (true, true) => "dry_run",
            (true, false) => "success",
        };
        self.runs.with_label_values(&[label]).inc();
        self.last_run.set(api::state::now_ms() as f64 / 1000.0);
        self.last_success.set(i64::from(result.is_ok()));
        self.last_duration.set(took.as_secs_f64());
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
