//! Per-endpoint delivery metrics (`registry_notifications_*`).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct NotifyMetrics {
    pending: IntGaugeVec,
    delivered: IntCounterVec,
    failed: IntCounterVec,
    dropped: IntCounterVec,
    latency: HistogramVec,
    /// Pull events a node could not keep for its next batch.
    pub pull_events_dropped: IntCounter,
}

impl NotifyMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let pending = IntGaugeVec::new(
            Opts::new(
                "registry_notifications_pending",
                "Events recorded that the endpoint has not received yet (on the leader, which delivers; 0 elsewhere)",
            ),
            &["endpoint"],
        )?;
        let delivered = IntCounterVec::new(
            Opts::new(
                "registry_notifications_delivered_total",
                "Events the endpoint accepted (2xx or 3xx)",
            ),
            &["endpoint"],
        )?;
        let failed = IntCounterVec::new(
            Opts::new(
                "registry_notifications_failed_total",
                "Delivery attempts that failed (error, timeout or refusal); each is retried",
            ),
            &["endpoint"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "registry_notifications_dropped_total",
                "Events given up: the backlog overflowed, or the endpoint refused them threshold times",
            ),
            &["endpoint", "reason"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "registry_notifications_delivery_seconds",
                "From the change an event describes to the endpoint accepting it",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
            ]),
            &["endpoint"],
        )?;
        let pull_events_dropped = IntCounter::new(
            "registry_notifications_pull_events_dropped_total",
            "Pull events dropped on this node because its batch for the log was full",
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(delivered.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pull_events_dropped.clone()))?;
        Ok(NotifyMetrics {
            pending,
            delivered,
            failed,
            dropped,
            latency,
            pull_events_dropped,
        })
    }

    /// Shows `endpoint` at zero before anything happened.
    pub fn register_endpoint(&self, endpoint: &str) {
        self.pending.with_label_values(&[endpoint]).set(0);
        self.delivered.with_label_values(&[endpoint]);
        self.failed.with_label_values(&[endpoint]);
        for reason in ["overflow", "refused"] {
            self.dropped.with_label_values(&[endpoint, reason]);
        }
    }

    pub fn set_pending(&self, endpoint: &str, pending: u64) {
        self.pending
            .with_label_values(&[endpoint])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn delivered(&self, endpoint: &str, event_at_ms: u64) {
        self.delivered.with_label_values(&[endpoint]).inc();
        let age_ms = api::state::now_ms().saturating_sub(event_at_ms);
        self.latency
            .with_label_values(&[endpoint])
            .observe(age_ms as f64 / 1000.0);
    }

    pub fn failed(&self, endpoint: &str) {
        self.failed.with_label_values(&[endpoint]).inc();
    }

    pub fn dropped(&self, endpoint: &str, reason: &str, count: u64) {
        self.dropped
            .with_label_values(&[endpoint, reason])
            .inc_by(count);
    }
}
