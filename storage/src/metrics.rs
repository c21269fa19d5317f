//! Blob-store metrics: operations, errors and durations by operation and backend.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct StorageMetrics {
    pub operations: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
}

impl StorageMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let operations = IntCounterVec::new(
            Opts::new(
                "registry_storage_operations_total",
                "Blob-store operations started",
            ),
            &["backend", "operation"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "registry_storage_errors_total",
                "Blob-store operations that failed",
            ),
            &["backend", "operation", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "registry_storage_operation_duration_seconds",
                "Time to complete a blob-store operation (for get: until the stream opens)",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 4.0, 10)?),
            &["backend", "operation"],
        )?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(StorageMetrics {
            operations,
            errors,
            duration,
        })
    }
}
