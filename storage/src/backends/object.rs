//! Object storage (S3, Azure Blob, GCS, Swift, Alibaba OSS) through opendal.
//!
//! One implementation of [`BlobStore`] over an opendal `Operator`; the
//! service is chosen by [`crate::config::BackendConfig`]. Every operator gets
//! opendal's retry layer (transient errors, with backoff and jitter) and its
//! timeout layer, so a store that stays down turns into `Unavailable` within
//! bounded time instead of a hung request.

use crate::blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
use crate::error::{ErrorKind, Result, StorageError};
use crate::key::ObjectKey;
use futures::{StreamExt, TryStreamExt};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;
use std::time::{Duration, Instant};

/// Upper bound for one whole operation (not counting streamed bytes).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for any single read or write of a streamed body to stall.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest range one server-side copy may move (S3's UploadPartCopy limit).
const MAX_COPY_RANGE: u64 = 5 << 30;
/// How often a transient failure is retried.
const RETRIES: usize = 4;

#[derive(Debug)]
pub struct ObjectStore {
    /// Replaced when credentials are renewed (a new Swift token); each
    /// operation works on the operator current when it started.
    operator: std::sync::RwLock<Operator>,
    backend: &'static str,
    /// Size of each multipart part for large writes.
    chunk_size: usize,
    renewal: Option<Renewal>,
}

/// Fresh credentials for a service whose tokens expire (Swift logins).
#[async_trait::async_trait]
pub trait Renew: Send + Sync + std::fmt::Debug {
    /// An operator with new credentials, and how soon to renew again.
    async fn renew(&self) -> Result<(Operator, Duration)>;
}

/// Renewal is lazy: the first operation after the due time renews (one
/// at a time) before it runs, so no background task outlives the store or
/// depends on the runtime that opened it.
#[derive(Debug)]
struct Renewal {
    source: Box<dyn Renew>,
    /// When the next renewal is due, and when the last one was tried.
    times: std::sync::Mutex<RenewalTimes>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Copy)]
struct RenewalTimes {
    due: Instant,
    last_try: Instant,
}

impl Renewal {
    fn times(&self) -> std::sync::MutexGuard<'_, RenewalTimes> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_due(&self) -> bool {
        Instant::now() >= self.times().due
    }

    /// Records a renewal attempt now; the next is due after `wait`.
    fn tried(&self, wait: Duration) {
        let now = Instant::now();
        *self.times() = RenewalTimes {
            due: now + wait,
            last_try: now,
        };
    }

    /// Brings the next renewal forward, but no closer than [`RENEW_GAP`]
    /// after the last try: a refusal that is not about the token (an ACL)
    /// must not turn every request into a login.
    fn soon(&self) {
        let mut times = self.times();
        times.due = times.due.min(times.last_try + RENEW_GAP);
    }
}

/// The least time between renewals brought forward by refusals.
const RENEW_GAP: Duration = Duration::from_secs(1);

/// How soon failed renewals are tried again.
const RENEW_RETRY: Duration = Duration::from_secs(5);

impl ObjectStore {
    /// Wraps an operator with retries and timeouts.
    pub fn new(operator: Operator, backend: &'static str, chunk_size: usize) -> Self {
        ObjectStore {
            operator: std::sync::RwLock::new(with_layers(operator)),
            backend,
            chunk_size,
            renewal: None,
        }
    }

    /// Renews the operator through `source` once `first` has passed, and
    /// after that as often as each renewal says.
    pub fn with_renewal(mut self, source: Box<dyn Renew>, first: Duration) -> Self {
        self.renewal = Some(Renewal {
            source,
            times: std::sync::Mutex::new(RenewalTimes {
                due: Instant::now() + first,
                last_try: Instant::now(),
            }),
            one_at_a_time: tokio::sync::Mutex::new(()),
        });
        self
    }

    /// Operations started from now on use `operator` (with the same layers).
    pub fn replace_operator(&self, operator: Operator) {
        *self
            .operator
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = with_layers(operator);
    }

    /// What the service can do; the same whatever the credentials, so no
    /// renewal is needed to ask.
    fn capability(&self) -> opendal::Capability {
        self.operator
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .info()
            .capability()
    }

    /// The operator to run an operation on, renewed first when due. A failed
    /// renewal is logged and the current operator used: its token may still
    /// work, and the service's answer is the clearest error for the caller.
    async fn op(&self) -> Operator {
        if let Some(renewal) = &self.renewal {
            if renewal.is_due() {
                let _one = renewal.one_at_a_time.lock().await;
                if renewal.is_due() {
                    match renewal.source.renew().await {
                        Ok((operator, next)) => {
                            self.replace_operator(operator);
                            renewal.tried(next);
                            tracing::info!(backend = self.backend, next_in = ?next, "renewed storage credentials");
                        }
                        Err(e) => {
                            renewal.tried(RENEW_RETRY);
                            tracing::warn!(backend = self.backend, error = %e, "could not renew storage credentials");
                        }
                    }
                }
            }
        }
        self.operator
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Fails unless the store answers: a listing of the root proves the
    /// credentials, the bucket and the network at start, not at the first push.
    pub async fn check(&self) -> Result<()> {
        self.op()
            .await
            .check()
            .await
            .map_err(|e| self.failed("check storage", e))
    }
}

/// Retries and timeouts around a service's operator.
fn with_layers(operator: Operator) -> Operator {
    operator
        .layer(
            TimeoutLayer::new()
                .with_timeout(OPERATION_TIMEOUT)
                .with_io_timeout(IO_TIMEOUT),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(RETRIES)
                .with_jitter()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5)),
        )
}

impl ObjectStore {
    /// [`convert`], and a refused credential makes the next operation renew
    /// it (a token revoked or expired early) instead of waiting for its time.
    fn failed(&self, context: impl Into<String>, err: opendal::Error) -> StorageError {
        if err.kind() == opendal::ErrorKind::PermissionDenied {
            if let Some(renewal) = &self.renewal {
                renewal.soon();
            }
        }
        convert(context, err)
    }
}

/// Maps an opendal error to a kind callers act on.
fn convert(context: impl Into<String>, err: opendal::Error) -> StorageError {
    let kind = match err.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        opendal::ErrorKind::RangeNotSatisfied => ErrorKind::InvalidRange,
        opendal::ErrorKind::RateLimited => ErrorKind::Unavailable,
        _ if err.is_temporary() => ErrorKind::Unavailable,
        // Timeouts, refused connections and DNS failures surface as
        // `Unexpected` once retries are exhausted: the store is not answering.
        opendal::ErrorKind::Unexpected => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    StorageError::new(kind, context).with_source(err)
}

#[async_trait::async_trait]
impl BlobStore for ObjectStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> Result<u64> {
        let mut writer = self
            .op()
            .await
            .writer_with(key.as_str())
            .chunk(self.chunk_size)
            .concurrent(4)
            .await
            .map_err(|e| self.failed(format!("open writer {key}"), e))?;
        let mut size = 0u64;
        let streamed: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                writer
                    .write(chunk)
                    .await
                    .map_err(|e| self.failed(format!("write {key}"), e))?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            // Nothing becomes visible: a multipart upload that is never completed has no object.
            let _ = writer.abort().await;
            return Err(e);
        }
        writer
            .close()
            .await
            .map_err(|e| self.failed(format!("close {key}"), e))?;
        Ok(size)
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        // opendal reads lazily; a stat first turns a missing object or a bad
        // range into an error before any response has started.
        let size = self.head(key).await?.size;
        let range = ByteRange::within(range, size, key)?;
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let reader = self
            .op()
            .await
            .reader_with(key.as_str())
            .chunk(self.chunk_size)
            .await
            .map_err(|e| self.failed(format!("read {key}"), e))?;
        let bytes_range: opendal::BytesRange = (range.start..range.end).into();
        let stream = reader
            .into_bytes_stream(bytes_range)
            .await
            .map_err(|e| self.failed(format!("read {key}"), e))?;
        let key = key.to_string();
        Ok(stream
            .map_err(move |e| StorageError::io(format!("read {key}"), e))
            .boxed())
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let meta = self
            .op()
            .await
            .stat(key.as_str())
            .await
            .map_err(|e| self.failed(format!("stat {key}"), e))?;
        Ok(ObjectMeta {
            size: meta.content_length(),
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match self.op().await.delete(key.as_str()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failed(format!("delete {key}"), e)),
        }
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
        // opendal lists folders; start at the folder holding the prefix.
        let folder = match prefix.as_str().rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
        };
        let entries = match self.op().await.list_with(&folder).recursive(true).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.failed(format!("list {prefix}"), e)),
        };
        let mut found: Vec<(ObjectKey, ObjectMeta)> = Vec::new();
        for entry in entries {
            let path = entry.path();
            if path.ends_with('/') || !path.starts_with(prefix.as_str()) {
                continue;
            }
            let Some(key) = ObjectKey::from_listing(path) else {
                continue;
            };
            let size = match entry.metadata().content_length() {
                0 => self.head(&key).await.map(|m| m.size).unwrap_or(0),
                n => n,
            };
            found.push((key, ObjectMeta { size }));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        if self.capability().rename {
            return self
                .op()
                .await
                .rename(from.as_str(), to.as_str())
                .await
                .map_err(|e| self.failed(format!("rename {from} to {to}"), e));
        }
        // Object stores have no rename: a server-side copy where the service
        // has one, else a streamed one (both atomic for readers of `to`),
        // then the source goes.
        if self.capability().copy {
            self.op()
                .await
                .copy(from.as_str(), to.as_str())
                .await
                .map_err(|e| self.failed(format!("copy {from} to {to}"), e))?;
        } else {
            let bytes = self.get(from, None).await?;
            self.put(to, bytes).await?;
        }
        self.delete(from).await
    }

    async fn compose(&self, sources: &[(ObjectKey, u64)], to: &ObjectKey) -> Result<bool> {
        // GCS composes objects of any size natively (opendal chains its
        // 32-source limit through intermediate objects).
        if self.capability().compose && !sources.is_empty() {
            self.op()
                .await
                .compose(sources.iter().map(|(key, _)| key.as_str()), to.as_str())
                .await
                .map_err(|e| self.failed(format!("compose {to}"), e))?;
            return Ok(true);
        }
        // Elsewhere server-side copies become multipart parts, and every part
        // but the last must be at least 5 MiB: small PATCHes are streamed instead.
        let parts_big_enough = sources
            .iter()
            .rev()
            .skip(1)
            .all(|(_, size)| *size as usize >= crate::config::MIN_CHUNK_SIZE);
        if !self.capability().write_can_copy_from || !parts_big_enough {
            return Ok(false);
        }
        let mut writer = self
            .op()
            .await
            .writer_with(to.as_str())
            .chunk(self.chunk_size)
            .await
            .map_err(|e| self.failed(format!("open writer {to}"), e))?;
        for (key, size) in sources {
            let mut start = 0;
            while start < *size {
                let end = (start + MAX_COPY_RANGE).min(*size);
                if let Err(e) = writer.copy_from(key.as_str(), start..end).await {
                    let _ = writer.abort().await;
                    return Err(self.failed(format!("copy {key} into {to}"), e));
                }
                start = end;
            }
        }
        writer
            .close()
            .await
            .map_err(|e| self.failed(format!("close {to}"), e))?;
        Ok(true)
    }

    async fn presign_get(&self, key: &ObjectKey, expires: Duration) -> Result<Option<String>> {
        if !self.capability().presign_read {
            return Ok(None);
        }
        let request = self
            .op()
            .await
            .presign_read(key.as_str(), expires)
            .await
            .map_err(|e| self.failed(format!("presign {key}"), e))?;
        Ok(Some(request.uri().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct CountingLogin(AtomicUsize);

    #[async_trait::async_trait]
    impl Renew for std::sync::Arc<CountingLogin> {
        async fn renew(&self) -> Result<(Operator, Duration)> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let operator = Operator::new(opendal::services::Memory::default()).unwrap();
            Ok((operator, Duration::from_secs(3600)))
        }
    }

    #[tokio::test]
    async fn credentials_are_renewed_when_due_and_not_before() {
        let logins = std::sync::Arc::new(CountingLogin::default());
        let operator = Operator::new(opendal::services::Memory::default()).unwrap();
        let store = ObjectStore::new(operator, "test", 5 << 20)
            .with_renewal(Box::new(logins.clone()), Duration::ZERO);
        store.check().await.unwrap();
        assert_eq!(logins.0.load(Ordering::SeqCst), 1, "due at once");
        store.check().await.unwrap();
        assert_eq!(logins.0.load(Ordering::SeqCst), 1, "next due in an hour");
    }

    #[tokio::test]
    async fn a_refusal_brings_the_renewal_forward_but_keeps_a_gap() {
        let operator = Operator::new(opendal::services::Memory::default()).unwrap();
        let logins = std::sync::Arc::new(CountingLogin::default());
        let store = ObjectStore::new(operator, "test", 5 << 20)
            .with_renewal(Box::new(logins), Duration::from_secs(3600));
        let renewal = store.renewal.as_ref().unwrap();
        let refused = opendal::Error::new(opendal::ErrorKind::PermissionDenied, "401");
        let _ = store.failed("put", refused);
        let times = *renewal.times();
        assert_eq!(times.due, times.last_try + RENEW_GAP);
    }

    #[tokio::test]
    async fn conformance_on_opendal_memory() {
        let operator = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
        let store = super::ObjectStore::new(operator, "opendal-memory", 5 << 20);
        crate::testsuite::conformance(&store).await;
    }
}
