//! Blobs as files under a root directory.
//!
//! Writes go to a temporary file under `<root>/.tmp`, are fsynced, renamed into
//! place, and the parent directory is fsynced, so an acknowledged object
//! survives a crash and a reader never sees a partial one.

use crate::blob_store::{BlobStore, ByteRange, ByteStream, ObjectMeta};
use crate::error::{ErrorKind, Result, StorageError};
use crate::key::ObjectKey;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const TMP_DIR: &str = ".tmp";
const WRITE_BUFFER: usize = 1 << 20;
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`. Leftover temporary
    /// files from a crash are removed.
    pub async fn open(root: &Path) -> Result<Self> {
        let tmp = root.join(TMP_DIR);
        match tokio::fs::remove_dir_all(&tmp).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("clean {}", tmp.display()), e)),
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| StorageError::io(format!("create {}", tmp.display()), e))?;
        Ok(FsStore {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    async fn write_temp(&self, body: ByteStream) -> Result<(TempFile, u64)> {
        let temp = TempFile(
            self.root
                .join(TMP_DIR)
                .join(uuid::Uuid::new_v4().to_string()),
        );
        let file = tokio::fs::File::create(&temp.0)
            .await
            .map_err(|e| StorageError::io("create temp file", e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut size = 0u64;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| StorageError::io("write temp file", e))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| StorageError::io("flush temp file", e))?;
        writer
            .into_inner()
            .sync_all()
            .await
            .map_err(|e| StorageError::io("fsync temp file", e))?;
        Ok((temp, size))
    }

    /// Renames `from` to `to` (creating `to`'s parents) and fsyncs the target directory.
    async fn place(&self, from: &Path, to: &Path) -> Result<()> {
        let parent = to
            .parent()
            .ok_or_else(|| StorageError::new(ErrorKind::Internal, "object path has no parent"))?
            .to_owned();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| StorageError::io(format!("create {}", parent.display()), e))?;
        tokio::fs::rename(from, to)
            .await
            .map_err(|e| StorageError::io(format!("rename to {}", to.display()), e))?;
        tokio::task::spawn_blocking(move || std::fs::File::open(&parent)?.sync_all())
            .await
            .map_err(|e| {
                StorageError::new(ErrorKind::Internal, "fsync task failed").with_source(e)
            })?
            .map_err(|e| StorageError::io("fsync directory", e))
    }
}

/// A temporary file removed on drop unless it was moved into place.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl TempFile {
    fn disarm(mut self) {
        self.0 = PathBuf::new();
    }
}

#[async_trait::async_trait]
impl BlobStore for FsStore {
    fn backend(&self) -> &'static str {
        "filesystem"
    }

    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<u64> {
        let (temp, size) = self.write_temp(body).await?;
        self.place(&temp.0, &self.path(key)).await?;
        temp.disarm();
        Ok(size)
    }

    fn can_append(&self) -> bool {
        true
    }

    async fn append(&self, key: &ObjectKey, offset: u64, body: ByteStream) -> Result<u64> {
        let path = self.path(key);
        let parent = path
            .parent()
            .ok_or_else(|| StorageError::new(ErrorKind::Internal, "object path has no parent"))?
            .to_owned();
        if offset == 0 {
            tokio::fs::create_dir_all(&parent)
                .await
                .map_err(|e| StorageError::io(format!("create {}", parent.display()), e))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(offset == 0)
            .truncate(false)
            .open(&path)
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?
            .len();
        if len != offset {
            return Err(StorageError::new(
                ErrorKind::InvalidRange,
                format!("{key} holds {len} bytes, not {offset}"),
            ));
        }
        let mut writer = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        writer
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?;
        let mut written = 0u64;
        let mut body = body;
        let streamed: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                written += chunk.len() as u64;
                writer
                    .write_all(&chunk)
                    .await
                    .map_err(|e| StorageError::io(format!("append to {key}"), e))?;
            }
            writer
                .flush()
                .await
                .map_err(|e| StorageError::io(format!("append to {key}"), e))
        }
        .await;
        let file = writer.into_inner();
        if let Err(e) = streamed {
            // Back to where the caller believes the object ends.
            let _ = file.set_len(offset).await;
            let _ = file.sync_all().await;
            return Err(e);
        }
        file.sync_data()
            .await
            .map_err(|e| StorageError::io(format!("fsync {key}"), e))?;
        if offset == 0 {
            tokio::task::spawn_blocking(move || std::fs::File::open(&parent)?.sync_all())
                .await
                .map_err(|e| {
                    StorageError::new(ErrorKind::Internal, "fsync task failed").with_source(e)
                })?
                .map_err(|e| StorageError::io("fsync directory", e))?;
        }
        Ok(offset + written)
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?
            .len();
        let range = ByteRange::within(range, size, key)?;
        if range.start > 0 {
            file.seek(std::io::SeekFrom::Start(range.start))
                .await
                .map_err(|e| StorageError::io(key.to_string(), e))?;
        }
        let key = key.to_string();
        let reader = file.take(range.len());
        Ok(
            tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
                .map(move |r| r.map_err(|e| StorageError::io(key.clone(), e)))
                .boxed(),
        )
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let meta = tokio::fs::metadata(self.path(key))
            .await
            .map_err(|e| StorageError::io(key.to_string(), e))?;
        if !meta.is_file() {
            return Err(StorageError::not_found(key.to_string()));
        }
        Ok(ObjectMeta { size: meta.len() })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StorageError::io(key.to_string(), e)),
        }
        // Upload folders are one-shot: drop the folder once its last part is gone.
        if key.as_str().starts_with("uploads/") {
            if let Some(parent) = path.parent() {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
        let root = self.root.clone();
        let prefix = prefix.as_str().to_owned();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix))
            .await
            .map_err(|e| {
                StorageError::new(ErrorKind::Internal, "list task failed").with_source(e)
            })?
    }

    async fn rename(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        self.place(&self.path(from), &self.path(to)).await
    }
}

/// Walks the deepest folder that contains every key with `prefix`.
fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<(ObjectKey, ObjectMeta)>> {
    let folder = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut found = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(root.join(&dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(format!("list {dir}"), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(format!("list {dir}"), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if dir.is_empty() && name == TMP_DIR {
                continue;
            }
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let meta = entry
                .metadata()
                .map_err(|e| StorageError::io(format!("stat {rel}"), e))?;
            if meta.is_dir() {
                pending.push(rel);
            } else if rel.starts_with(prefix) {
                if let Some(key) = ObjectKey::from_listing(&rel) {
                    found.push((key, ObjectMeta { size: meta.len() }));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsStore::open(dir.path()).await.unwrap();
        crate::testsuite::conformance(&store).await;
    }
}
