//! The wrapper every backend runs in (distribution's `base.Base`): counts,
//! times and logs each operation, and labels its errors by kind, once for
//! all backends.

use crate::blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
use crate::error::Result;
use crate::key::ObjectKey;
use crate::metrics::StorageMetrics;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn BlobStore>,
    metrics: StorageMetrics,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn BlobStore>, metrics: StorageMetrics) -> Self {
        Instrumented { inner, metrics }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        key: &ObjectKey,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let backend = self.inner.backend();
        self.metrics
            .operations
            .with_label_values(&[backend, operation])
            .inc();
        let started = Instant::now();
        let result = work.await;
        let elapsed = started.elapsed();
        self.metrics
            .duration
            .with_label_values(&[backend, operation])
            .observe(elapsed.as_secs_f64());
        match &result {
            Ok(_) => {
                tracing::trace!(backend, operation, %key, micros = elapsed.as_micros() as u64, "storage")
            }
            Err(e) => {
                let kind = format!("{:?}", e.kind);
                self.metrics
                    .errors
                    .with_label_values(&[backend, operation, &kind])
                    .inc();
                if e.kind != crate::ErrorKind::NotFound {
                    tracing::warn!(backend, operation, %key, error = %e, "storage operation failed");
                }
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl BlobStore for Instrumented {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64> {
        self.observe("put", key, self.inner.put(key, body)).await
    }

    fn can_append(&self) -> bool {
        self.inner.can_append()
    }

    async fn append(&self, key: &ObjectKey, offset: u64, body: ByteStream) -> Result<u64> {
        self.observe("append", key, self.inner.append(key, offset, body))
            .await
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        self.observe("get", key, self.inner.get(key, range)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.observe("head", key, self.inner.head(key)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.observe("delete", key, self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
        self.observe("list", prefix, self.inner.list(prefix)).await
    }

    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        self.observe("rename", to, self.inner.rename(from, to))
            .await
    }

    async fn compose(&self, sources: &[(ObjectKey, u64)], to: &ObjectKey) -> Result<bool> {
        self.observe("compose", to, self.inner.compose(sources, to))
            .await
    }

    async fn presign_get(&self, key: &ObjectKey, expires: Duration) -> Result<Option<String>> {
        self.observe("presign", key, self.inner.presign_get(key, expires))
            .await
    }
}
