//! HTTP metrics: requests by route, method and status with durations, bytes
//! received and sent, and upload sessions in flight.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub received_bytes: IntCounter,
    pub sent_bytes: IntCounter,
    pub uploads_in_flight: IntGauge,
    /// Requests sent on to the node owning them (their upload, a cache fetch), by outcome.
    pub forwarded: IntCounterVec,
}

impl ApiMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "registry_http_requests_total",
                "Requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "registry_http_request_duration_seconds",
                "Time to answer a request (for streamed bodies: until the response starts)",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 3.0, 14)?),
            &["route"],
        )?;
        let received_bytes = IntCounter::new(
            "registry_http_received_bytes_total",
            "Request body bytes received",
        )?;
        let sent_bytes = IntCounter::new(
            "registry_http_sent_bytes_total",
            "Blob and manifest bytes sent",
        )?;
        let uploads_in_flight = IntGauge::new(
            "registry_uploads_in_flight",
            "Upload sessions open on this node",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(received_bytes.clone()))?;
        registry.register(Box::new(sent_bytes.clone()))?;
        registry.register(Box::new(uploads_in_flight.clone()))?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "registry_http_forwarded_total",
                "Requests forwarded to the node owning them (an upload session, a cache fetch), by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        Ok(ApiMetrics {
            requests,
            duration,
            received_bytes,
            sent_bytes,
            uploads_in_flight,
            forwarded,
        })
    }
}
