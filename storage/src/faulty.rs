//! A wrapper that makes a backend fail on demand, for tests of what the
//! registry does when storage is down (neon's `UnreliableWrapper`).

use crate::blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
use crate::error::{ErrorKind, Result, StorageError};
use crate::key::ObjectKey;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Switches faults on and off for every store made with it.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch {
    failing: Arc<AtomicBool>,
    deletes: Arc<AtomicU8>,
}

/// How deletes fail, on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DeleteFault {
    None = 0,
    /// The delete is refused; the object stays.
    Refuse = 1,
    /// The object is deleted, but the answer is lost: the caller sees a failure.
    LoseAnswer = 2,
}

impl FaultSwitch {
    /// While set, every operation fails with `Unavailable`.
    pub fn set(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes deletes fail as `fault` says, until set back to `None`.
    pub fn fail_deletes(&self, fault: DeleteFault) {
        self.deletes.store(fault as u8, Ordering::SeqCst);
    }

    fn delete_fault(&self) -> DeleteFault {
        match self.deletes.load(Ordering::SeqCst) {
            1 => DeleteFault::Refuse,
            2 => DeleteFault::LoseAnswer,
            _ => DeleteFault::None,
        }
    }

    fn check(&self, op: &str, key: &ObjectKey) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(injected(op, key));
        }
        Ok(())
    }
}

fn injected(op: &str, key: &ObjectKey) -> StorageError {
    StorageError::new(
        ErrorKind::Unavailable,
        format!("injected fault: {op} {key}"),
    )
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn BlobStore>,
    switch: FaultSwitch,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn BlobStore>, switch: FaultSwitch) -> Self {
        FaultyStore { inner, switch }
    }
}

#[async_trait::async_trait]
impl BlobStore for FaultyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64> {
        self.switch.check("put", key)?;
        self.inner.put(key, body).await
    }

    fn can_append(&self) -> bool {
        self.inner.can_append()
    }

    async fn append(&self, key: &ObjectKey, offset: u64, body: ByteStream) -> Result<u64> {
        self.switch.check("append", key)?;
        self.inner.append(key, offset, body).await
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        self.switch.check("get", key)?;
        self.inner.get(key, range).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.switch.check("head", key)?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.switch.check("delete", key)?;
        match self.switch.delete_fault() {
            DeleteFault::None => self.inner.delete(key).await,
            DeleteFault::Refuse => Err(injected("delete", key)),
            DeleteFault::LoseAnswer => {
                self.inner.delete(key).await?;
                Err(injected("delete (answer lost)", key))
            }
        }
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
        self.switch.check("list", prefix)?;
        self.inner.list(prefix).await
    }

    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        self.switch.check("rename", from)?;
        self.inner.rename(from, to).await
    }

    async fn compose(&self, sources: &[(ObjectKey, u64)], to: &ObjectKey) -> Result<bool> {
        self.switch.check("compose", to)?;
        self.inner.compose(sources, to).await
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires: std::time::Duration,
    ) -> Result<Option<String>> {
        self.switch.check("presign", key)?;
        self.inner.presign_get(key, expires).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::memory::MemoryStore;

    #[tokio::test]
    async fn passes_the_suite_when_healthy_and_fails_when_switched() {
        let switch = FaultSwitch::default();
        let store = FaultyStore::new(Arc::new(MemoryStore::default()), switch.clone());
        crate::testsuite::conformance(&store).await;
        switch.set(true);
        let key = ObjectKey::blob(&crate::Digest::sha256_of(b"x"));
        assert_eq!(
            store.head(&key).await.unwrap_err().kind,
            ErrorKind::Unavailable
        );
        switch.set(false);
        let body = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"x")) });
        store.put(&key, Box::pin(body)).await.unwrap();
        switch.fail_deletes(DeleteFault::Refuse);
        assert!(store.delete(&key).await.is_err());
        assert!(
            store.head(&key).await.is_ok(),
            "a refused delete keeps the object"
        );
        switch.fail_deletes(DeleteFault::LoseAnswer);
        assert!(store.delete(&key).await.is_err());
        assert!(
            store.head(&key).await.is_err(),
            "a lost answer still deleted it"
        );
    }
}
