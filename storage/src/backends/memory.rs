//! Blobs in process memory.

use crate::blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: RwLock<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    fn object(&self, key: &ObjectKey) -> Result<Bytes> {
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StorageError::not_found(key.to_string()))
    }

    fn objects_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Bytes>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl BlobStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "inmemory"
    }

    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> Result<u64> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let size = buf.len() as u64;
        self.objects_mut().insert(key.to_string(), buf.freeze());
        Ok(size)
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let data = self.object(key)?;
        let r = ByteRange::within(range, data.len() as u64, key)?;
        let data = data.slice(r.start as usize..r.end as usize);
        Ok(futures::stream::once(async move { Ok(data) }).boxed())
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        Ok(ObjectMeta {
            size: self.object(key)?.len() as u64,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.objects_mut().remove(key.as_str());
        Ok(())
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
        let objects = self
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(objects
            .range(prefix.as_str().to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
            .filter_map(|(k, v)| {
                let key = ObjectKey::from_listing(k)?;
                Some((
                    key,
                    ObjectMeta {
                        size: v.len() as u64,
                    },
                ))
            })
            .collect())
    }

    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let mut objects = self.objects_mut();
        let data = objects
            .remove(from.as_str())
            .ok_or_else(|| StorageError::not_found(from.to_string()))?;
        objects.insert(to.to_string(), data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let store = super::MemoryStore::default();
        crate::testsuite::conformance(&store).await;
    }
}
