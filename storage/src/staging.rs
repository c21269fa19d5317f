//! Upload staging on top of any [`BlobStore`].
//!
//! Each PATCH of an upload is stored as its own object, named by the offset it
//! starts at (`uploads/<uuid>/<offset>`). Parts are immutable objects, so this
//! works the same on a filesystem and on an object store that has no append.
//! Commit moves a single part to the blob's content address (a rename, no copy:
//! the common case, since docker streams a layer in one PATCH) or concatenates
//! several parts into it (server-side where the store can, else streamed
//! through this process), is a no-op when the content address already holds
//! that many bytes, and checks the stored size after writing.

use crate::blob_store::{BlobStore, ByteStream};
use crate::error::{ErrorKind, Result, StorageError};
use crate::key::ObjectKey;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use uuid::Uuid;

/// What [`Staging::place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The target held the bytes already; the staged parts are untouched.
    AlreadyThere,
    /// The parts were moved or copied to the target (a move consumes them).
    Written,
}

/// One staged part of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub key: ObjectKey,
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Staging {
    store: Arc<dyn BlobStore>,
}

impl Staging {
    pub fn new(store: Arc<dyn BlobStore>) -> Self {
        Staging { store }
    }

    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Stores `body` as the part starting at `offset`; returns its length.
    /// Stores that can append grow one object per upload instead, so a
    /// multi-PATCH upload commits by rename.
    pub async fn write_part(&self, upload: &Uuid, offset: u64, body: ByteStream) -> Result<u64> {
        if self.store.can_append() {
            let key = ObjectKey::upload_part(upload, 0);
            let end = self.store.append(&key, offset, body).await?;
            return Ok(end - offset);
        }
        self.store
            .put(&ObjectKey::upload_part(upload, offset), body)
            .await
    }

    /// The upload's parts in offset order. Parts must tile the upload from 0
    /// without gaps or overlaps; anything else is reported as `Internal`.
    pub async fn parts(&self, upload: &Uuid) -> Result<Vec<Part>> {
        let listed = self.store.list(&ObjectKey::upload_prefix(upload)).await?;
        let mut parts: Vec<Part> = listed
            .into_iter()
            .filter_map(|(key, meta)| {
                let offset = key.part_offset()?;
                Some(Part {
                    key,
                    offset,
                    size: meta.size,
                })
            })
            .filter(|p| p.size > 0)
            .collect();
        parts.sort_by_key(|p| p.offset);
        let mut expected = 0;
        for part in &parts {
            if part.offset != expected {
                return Err(StorageError::new(
                    ErrorKind::Internal,
                    format!(
                        "upload {upload}: part at {} but expected {expected}",
                        part.offset
                    ),
                ));
            }
            expected += part.size;
        }
        Ok(parts)
    }

    /// The bytes of `parts`, in order, as one stream.
    pub fn read_parts(&self, parts: Vec<Part>) -> ByteStream {
        let store = self.store.clone();
        futures::stream::iter(parts)
            .then(move |part| {
                let store = store.clone();
                async move { store.get(&part.key, None).await }
            })
            .try_flatten()
            .boxed()
    }

    /// Moves the upload's bytes to `target`, a blob's key (see
    /// [`ObjectKey::blob_generation`]), and removes the staged parts. The
    /// caller has verified that `parts` hash to the blob's digest.
    pub async fn commit(&self, upload: &Uuid, parts: Vec<Part>, target: &ObjectKey) -> Result<()> {
        self.place(parts, target).await?;
        self.discard(upload).await
    }

    /// Makes `target` hold the parts' bytes: leaves the parts alone when it
    /// already does (a blob pushed before), else moves or copies them there.
    /// The caller has verified that `parts` hash to the blob's digest, and
    /// discards the upload once the blob is recorded.
    pub async fn place(&self, parts: Vec<Part>, target: &ObjectKey) -> Result<Placement> {
        let size: u64 = parts.iter().map(|p| p.size).sum();
        match self.store.head(target).await {
            Ok(existing) if existing.size == size => return Ok(Placement::AlreadyThere),
            Ok(existing) => {
                tracing::warn!(
                    key = %target,
                    stored = existing.size,
                    expected = size,
                    "a stored blob has the wrong size; rewriting it"
                );
            }
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.write_blob(parts, target, size).await?;
        Ok(Placement::Written)
    }

    /// Writes the parts' concatenation to `target` and checks that the store
    /// kept `size` bytes: a backend that silently stores something else (a
    /// Swift proxy without large-object support stores the segment list)
    /// must not get a blob recorded.
    async fn write_blob(&self, parts: Vec<Part>, target: &ObjectKey, size: u64) -> Result<()> {
        match parts.as_slice() {
            [single] => self.store.rename(&single.key, target).await?,
            _ => {
                let sources: Vec<_> = parts.iter().map(|p| (p.key.clone(), p.size)).collect();
                if !self.store.compose(&sources, target).await? {
                    self.store.put(target, self.read_parts(parts)).await?;
                }
            }
        }
        let stored = self.store.head(target).await?.size;
        if stored != size {
            self.store.delete(target).await?;
            return Err(StorageError::new(
                ErrorKind::Internal,
                format!(
                    "the {} backend stored {stored} bytes for {target}, not {size}",
                    self.store.backend()
                ),
            ));
        }
        Ok(())
    }

    /// Removes every staged part of the upload.
    pub async fn discard(&self, upload: &Uuid) -> Result<()> {
        for (key, _) in self.store.list(&ObjectKey::upload_prefix(upload)).await? {
            self.store.delete(&key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::digest::Digest;
    use bytes::Bytes;

    fn body(data: &'static [u8]) -> ByteStream {
        futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
    }

    async fn read(store: &dyn BlobStore, key: &ObjectKey) -> Vec<u8> {
        let chunks: Vec<Bytes> = store
            .get(key, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn commits_many_parts_by_concatenation_and_one_by_rename() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let staging = Staging::new(store.clone());
        let id = Uuid::new_v4();
        staging.write_part(&id, 0, body(b"hello ")).await.unwrap();
        staging.write_part(&id, 6, body(b"world")).await.unwrap();
        let parts = staging.parts(&id).await.unwrap();
        assert_eq!(parts.len(), 2);
        let digest = Digest::sha256_of(b"hello world");
        staging
            .commit(&id, parts, &ObjectKey::blob(&digest))
            .await
            .unwrap();
        assert_eq!(
            read(&*store, &ObjectKey::blob(&digest)).await,
            b"hello world"
        );
        assert!(staging.parts(&id).await.unwrap().is_empty());

        let single = Uuid::new_v4();
        staging.write_part(&single, 0, body(b"one")).await.unwrap();
        let digest = Digest::sha256_of(b"one");
        let parts = staging.parts(&single).await.unwrap();
        staging
            .commit(&single, parts, &ObjectKey::blob(&digest))
            .await
            .unwrap();
        assert_eq!(read(&*store, &ObjectKey::blob(&digest)).await, b"one");
        assert_eq!(
            store
                .list(&ObjectKey::upload_prefix(&single))
                .await
                .unwrap(),
            vec![]
        );
    }

    #[tokio::test]
    async fn a_gap_between_parts_is_reported() {
        let staging = Staging::new(Arc::new(MemoryStore::default()));
        let id = Uuid::new_v4();
        staging.write_part(&id, 0, body(b"ab")).await.unwrap();
        staging.write_part(&id, 5, body(b"cd")).await.unwrap();
        let err = staging.parts(&id).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_stored_blob_of_the_wrong_size_is_rewritten() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::default());
        let staging = Staging::new(store.clone());
        let digest = Digest::sha256_of(b"complete");
        let target = ObjectKey::blob(&digest);
        store.put(&target, body(b"compl")).await.unwrap();
        let id = Uuid::new_v4();
        staging.write_part(&id, 0, body(b"complete")).await.unwrap();
        let parts = staging.parts(&id).await.unwrap();
        staging
            .commit(&id, parts, &ObjectKey::blob(&digest))
            .await
            .unwrap();
        assert_eq!(read(&*store, &target).await, b"complete");
    }
}
