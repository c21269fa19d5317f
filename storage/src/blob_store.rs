//! The `BlobStore` trait: an object store shaped interface that the filesystem,
//! the in-memory store and cloud object stores can all implement.

use crate::error::Result;
use crate::key::ObjectKey;
use crate::StorageError;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of bytes going into or out of a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// What a store knows about one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
}

/// A byte range `start..end` (end exclusive) that lies inside an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The range a read of `range` (or the whole object) covers in an object
    /// of `size` bytes, or `InvalidRange` when it reaches outside it.
    pub fn within(range: Option<ByteRange>, size: u64, key: &ObjectKey) -> Result<ByteRange> {
        let range = range.unwrap_or(ByteRange {
            start: 0,
            end: size,
        });
        if range.start > range.end || range.end > size {
            return Err(StorageError::new(
                crate::ErrorKind::InvalidRange,
                format!("{key}: {}..{} of {size}", range.start, range.end),
            ));
        }
        Ok(range)
    }
}

/// An object store. Keys come from [`ObjectKey`]; values are immutable once put.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Writes `body` to `key` atomically and durably: once this returns `Ok`, the
    /// object survives a crash, and readers never see a partial object. If the
    /// body stream fails, nothing is written. Returns the number of bytes written.
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64>;

    /// Streams the object, or the given range of it. A range reaching past the
    /// end of the object is `InvalidRange`; a missing object is `NotFound`.
    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream>;

    /// The object's metadata, or `NotFound`.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Removes the object. Deleting a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>>;

    /// Moves `from` to `to`, replacing `to` if present. Readers of `to` see the
    /// old or the new object, never a partial one. `NotFound` if `from` is missing.
    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()>;

    /// Whether [`BlobStore::append`] works. Stores that can append in place
    /// stage an upload as one growing object, so commit is a rename, not a copy.
    fn can_append(&self) -> bool {
        false
    }

    /// Appends `body` to the object at `key`, which must be exactly `offset`
    /// bytes long (`offset` 0 creates it), durably before returning the new
    /// length. A wrong offset is `InvalidRange`; a failed body leaves the
    /// object at `offset` bytes. Only called when `can_append` is true.
    async fn append(&self, key: &ObjectKey, _offset: u64, _body: ByteStream) -> Result<u64> {
        Err(crate::StorageError::new(
            crate::ErrorKind::Internal,
            format!("{} cannot append to {key}", self.backend()),
        ))
    }

    /// Writes the concatenation of `sources` (key and size, in order) to `to`
    /// without the bytes passing through this process, if the backend can.
    /// Returns `Ok(false)`, having written nothing, when it cannot; the
    /// caller then streams the bytes itself.
    async fn compose(&self, _sources: &[(ObjectKey, u64)], _to: &ObjectKey) -> Result<bool> {
        Ok(false)
    }

    /// A URL from which a client can `GET` the object directly for `expires`,
    /// or `None` when the backend cannot presign.
    async fn presign_get(
        &self,
        _key: &ObjectKey,
        _expires: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}
