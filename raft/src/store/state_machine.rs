//! The state machine on sled. Each log entry's changes and the new
//! `last_applied` (and membership) land in one atomic batch on the `state`
//! tree. A snapshot is the state tree minus bookkeeping, streamed to a file
//! under `snapshots/` (format in `snapshot_file`); the `snapshot` tree names
//! the current one.

use super::io_error;
use super::snapshot_file::{RecordReader, RecordWriter};
use crate::codec::{decode, encode};
use crate::command::Response;
use crate::state::{self, keys, StateView};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncSeekExt;

const CURRENT_SNAPSHOT: &[u8] = b"current";
const SNAPSHOT_SUFFIX: &str = ".snap";
const PARTIAL_PREFIX: &str = "partial-";

/// The current snapshot: its metadata and its file under the snapshot dir.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    file: String,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    db: sled::Db,
    view: StateView,
    snapshots: sled::Tree,
    snapshot_dir: PathBuf,
    /// Held while a batch is written or the state is exported, so a snapshot
    /// built concurrently with `apply` sees a state matching its `last_applied`.
    write_lock: Arc<Mutex<()>>,
    metrics: Option<crate::RaftMetrics>,
}

impl StateMachine {
    pub(super) fn new(db: &sled::Db, snapshot_dir: &Path) -> Result<Self, StorageError> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))
        };
        std::fs::create_dir_all(snapshot_dir)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?;
        let sm = StateMachine {
            db: db.clone(),
            view: StateView::new(open("state")?),
            snapshots: open("snapshot")?,
            snapshot_dir: snapshot_dir.to_owned(),
            write_lock: Arc::new(Mutex::new(())),
            metrics: None,
        };
        let current = sm.stored_snapshot()?.map(|stored| stored.file);
        sm.remove_snapshot_files_except(current.as_deref(), Leftovers::AlsoPartial);
        crate::state::upgrade(sm.view.tree()).map_err(|e| Self::write_error(&e))?;
        Ok(sm)
    }

    /// Records snapshot builds in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::RaftMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A read-only view of the applied state.
    pub fn view(&self) -> StateView {
        self.view.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_bookkeeping(&self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let tree = self.view.tree();
        let read_err = |e: &dyn std::error::Error| {
            StorageError::from(StorageIOError::new(
                ErrorSubject::StateMachine,
                ErrorVerb::Read,
                openraft::AnyError::error(e.to_string()),
            ))
        };
        let last_applied = match tree.get(keys::LAST_APPLIED).map_err(|e| read_err(&e))? {
            Some(bytes) => Some(decode(&bytes).map_err(|e| read_err(&e))?),
            None => None,
        };
        let membership = match tree.get(keys::MEMBERSHIP).map_err(|e| read_err(&e))? {
            Some(bytes) => decode(&bytes).map_err(|e| read_err(&e))?,
            None => StoredMembership::default(),
        };
        Ok((last_applied, membership))
    }

    fn write_error(e: &(impl std::error::Error + 'static)) -> StorageError {
        io_error(ErrorSubject::StateMachine, ErrorVerb::Write, e)
    }

    fn apply_entry(&self, entry: &Entry) -> Result<Response, StorageError> {
        let (mut batch, response) = match &entry.payload {
            EntryPayload::Blank => (sled::Batch::default(), Response::Done),
            EntryPayload::Normal(command) => state::apply(&self.view, entry.log_id.index, command)
                .map_err(|e| Self::write_error(&e))?,
            EntryPayload::Membership(membership) => {
                let mut batch = sled::Batch::default();
                let stored = StoredMembership::new(Some(entry.log_id), membership.clone());
                batch.insert(
                    keys::MEMBERSHIP,
                    encode(&stored).map_err(|e| Self::write_error(&e))?,
                );
                (batch, Response::Done)
            }
        };
        batch.insert(
            keys::LAST_APPLIED,
            encode(&entry.log_id).map_err(|e| Self::write_error(&e))?,
        );
        self.view
            .tree()
            .apply_batch(batch)
            .map_err(|e| Self::write_error(&e))?;
        Ok(response)
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let read = |e: &(dyn std::error::Error + 'static)| {
            StorageError::from(StorageIOError::new(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Read,
                openraft::AnyError::error(e.to_string()),
            ))
        };
        match self.snapshots.get(CURRENT_SNAPSHOT).map_err(|e| read(&e))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(&bytes).map_err(|e| read(&e))?)),
        }
    }

    /// Makes `snapshot` (whose file is already durable) the current one, then
    /// deletes every other snapshot file.
    async fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes = encode(snapshot).map_err(|e| Self::write_error(&e))?;
        self.snapshots
            .insert(CURRENT_SNAPSHOT, bytes)
            .map_err(|e| Self::write_error(&e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| Self::write_error(&e))?;
        self.remove_snapshot_files_except(Some(&snapshot.file), Leftovers::OnlyComplete);
        Ok(())
    }

    /// Deletes snapshot files other than `keep`: older snapshots, and at
    /// start the partial files a crash left (later, a partial file may be a
    /// snapshot being built). A reader that has a file open keeps its bytes.
    fn remove_snapshot_files_except(&self, keep: Option<&str>, leftovers: Leftovers) {
        let Ok(entries) = std::fs::read_dir(&self.snapshot_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(SNAPSHOT_SUFFIX)
                || (leftovers == Leftovers::AlsoPartial && name.starts_with(PARTIAL_PREFIX));
            if ours && Some(name.as_str()) != keep {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %name, error = %e, "could not delete an old snapshot file");
                }
            }
        }
    }

    /// Streams the state to a new snapshot file, holding the write lock only
    /// while reading the tree so the file matches `last_applied`. Blocking.
    fn write_snapshot_file(&self) -> std::io::Result<(SnapshotMeta, String, u64)> {
        let partial = self.partial_path();
        let written = self.write_snapshot_file_at(&partial);
        discard_on_error(written, &partial)
    }

    fn write_snapshot_file_at(
        &self,
        partial: &Path,
    ) -> std::io::Result<(SnapshotMeta, String, u64)> {
        let mut writer = RecordWriter::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(partial)?,
        ));
        let (last_applied, membership) = {
            let _guard = self.lock();
            let bookkeeping = self
                .read_bookkeeping()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            for record in self.view.records() {
                let (key, value) = record.map_err(std::io::Error::other)?;
                writer.write(&key, &value)?;
            }
            bookkeeping
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
        let (name, bytes) = self.make_durable(file, partial, &meta)?;
        Ok((meta, name, bytes))
    }

    /// Copies a received snapshot into a new snapshot file and returns it with
    /// the batch that replaces the state with it. Blocking.
    fn receive_snapshot_file(
        &self,
        meta: &SnapshotMeta,
        source: std::fs::File,
    ) -> std::io::Result<(String, sled::Batch)> {
        let partial = self.partial_path();
        let received = self.receive_snapshot_file_at(meta, source, &partial);
        discard_on_error(received, &partial)
    }

    fn receive_snapshot_file_at(
        &self,
        meta: &SnapshotMeta,
        source: std::fs::File,
        partial: &Path,
    ) -> std::io::Result<(String, sled::Batch)> {
        let mut writer = RecordWriter::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(partial)?,
        ));
        let mut batch = sled::Batch::default();
        for key in self.view.tree().iter().keys() {
            batch.remove(key?);
        }
        for record in RecordReader::new(BufReader::with_capacity(1 << 20, source)) {
            let (key, value) = record?;
            if key.starts_with(keys::BOOKKEEPING) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "snapshot carries bookkeeping keys",
                ));
            }
            writer.write(&key, &value)?;
            batch.insert(key, value);
        }
        let codec_error = |e: crate::codec::CodecError| std::io::Error::other(e.to_string());
        batch.insert(
            keys::MEMBERSHIP,
            encode(&meta.last_membership).map_err(codec_error)?,
        );
        if let Some(last) = &meta.last_log_id {
            batch.insert(keys::LAST_APPLIED, encode(last).map_err(codec_error)?);
        }
        let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
        let (name, _) = self.make_durable(file, partial, meta)?;
        Ok((name, batch))
    }

    fn partial_path(&self) -> PathBuf {
        self.snapshot_dir
            .join(format!("{PARTIAL_PREFIX}{}", storage::uuid::Uuid::new_v4()))
    }

    /// fsyncs `file`, renames it from `partial` to its final name, fsyncs the
    /// directory. Returns the name and the file's size.
    fn make_durable(
        &self,
        file: std::fs::File,
        partial: &Path,
        meta: &SnapshotMeta,
    ) -> std::io::Result<(String, u64)> {
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        let name = snapshot_file_name(meta);
        std::fs::rename(partial, self.snapshot_dir.join(&name))?;
        std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        Ok((name, bytes))
    }

    async fn open_snapshot(
        &self,
        stored: &StoredSnapshot,
    ) -> Result<tokio::fs::File, StorageError> {
        tokio::fs::File::open(self.snapshot_dir.join(&stored.file))
            .await
            .map_err(|e| {
                io_error(
                    ErrorSubject::Snapshot(Some(stored.meta.signature())),
                    ErrorVerb::Read,
                    &e,
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    OnlyComplete,
    AlsoPartial,
}

/// Deletes the partial file of a snapshot that failed to be written.
fn discard_on_error<T>(result: std::io::Result<T>, partial: &Path) -> std::io::Result<T> {
    if result.is_err() {
        // Absent when the failure came before the file was created.
        let _ = std::fs::remove_file(partial);
    }
    result
}

/// A file name for the snapshot: its id with anything but `[A-Za-z0-9-]`
/// replaced, so an id from another node cannot name a path.
fn snapshot_file_name(meta: &SnapshotMeta) -> String {
    let id: String = meta
        .snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{id}{SNAPSHOT_SUFFIX}")
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let builder = self.clone();
        let (meta, file, bytes) =
            tokio::task::spawn_blocking(move || builder.write_snapshot_file())
                .await
                .map_err(std::io::Error::other)
                .and_then(|written| written)
                .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?;
        let stored = StoredSnapshot { meta, file };
        self.save_snapshot(&stored).await?;
        let took = started.elapsed();
        if let Some(metrics) = &self.metrics {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            metrics.snapshot_last_build.set(now.as_secs_f64());
            metrics.snapshot_build_duration.set(took.as_secs_f64());
        }
        tracing::info!(
            snapshot = %stored.meta.snapshot_id,
            bytes,
            millis = took.as_millis() as u64,
            "built metadata snapshot"
        );
        let snapshot = Box::new(self.open_snapshot(&stored).await?);
        Ok(Snapshot {
            meta: stored.meta,
            snapshot,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_bookkeeping()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _guard = self.lock();
        entries
            .into_iter()
            .map(|entry| self.apply_entry(&entry))
            .collect()
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// An anonymous file: created and unlinked at once, so an interrupted
    /// transfer leaves nothing behind. `install_snapshot` copies it into a
    /// snapshot file of its own.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.partial_path();
        let error =
            |e: &std::io::Error| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| error(&e))?;
        tokio::fs::remove_file(&path).await.map_err(|e| error(&e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let error = |e: &std::io::Error| {
            io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        let mut source = *snapshot;
        source
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| error(&e))?;
        let source = source.into_std().await;
        let receiver = self.clone();
        let received_meta = meta.clone();
        let (file, batch) = tokio::task::spawn_blocking(move || {
            receiver.receive_snapshot_file(&received_meta, source)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|received| received)
        .map_err(|e| error(&e))?;
        {
            let _guard = self.lock();
            self.view
                .tree()
                .apply_batch(batch)
                .map_err(|e| Self::write_error(&e))?;
            // A snapshot from a node of an older version lacks derived indexes.
            crate::state::upgrade(self.view.tree()).map_err(|e| Self::write_error(&e))?;
        }
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            file,
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(stored) = self.stored_snapshot()? else {
            return Ok(None);
        };
        let snapshot = Box::new(self.open_snapshot(&stored).await?);
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::types::NodeId;
    use openraft::{CommittedLeaderId, Entry};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn upload(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::<NodeId>::new(1, 1), index),
            payload: EntryPayload::Normal(Command::CreateUpload {
                id: format!("upload-{index}"),
                repo: "snap/repo".to_owned(),
                at_ms: index,
            }),
        }
    }

    fn records(sm: &StateMachine) -> Vec<(sled::IVec, sled::IVec)> {
        sm.view.records().map(|r| r.unwrap()).collect()
    }

    fn snapshot_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn snapshots_are_files_that_survive_a_reopen_and_install_elsewhere() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (_log, mut leader) = super::super::open(leader_dir.path()).unwrap();
        leader.apply((1..=50).map(upload)).await.unwrap();
        let first = leader.build_snapshot().await.unwrap();
        leader.apply((51..=80).map(upload)).await.unwrap();
        let second = leader.build_snapshot().await.unwrap();
        assert_eq!(second.meta.last_log_id.map(|id| id.index), Some(80));
        assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
        assert_eq!(
            snapshot_files(leader_dir.path()).len(),
            1,
            "older snapshot files are deleted"
        );
        let expected = records(&leader);
        drop((_log, leader));
        std::fs::write(leader_dir.path().join("snapshots/partial-crashed"), b"x").unwrap();

        let (_log, mut reopened) = super::super::open(leader_dir.path()).unwrap();
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, second.meta);
        assert_eq!(
            snapshot_files(leader_dir.path()).len(),
            1,
            "a crashed build's partial file is deleted at start"
        );

        let follower_dir = tempfile::tempdir().unwrap();
        let (_flog, mut follower) = super::super::open(follower_dir.path()).unwrap();
        follower.apply((1..=3).map(upload)).await.unwrap();
        let mut received = follower.begin_receiving_snapshot().await.unwrap();
        let mut bytes = Vec::new();
        let mut sent = current.snapshot;
        sent.read_to_end(&mut bytes).await.unwrap();
        received.write_all(&bytes).await.unwrap();
        follower
            .install_snapshot(&current.meta, received)
            .await
            .unwrap();
        assert!(
            records(&follower) == expected,
            "the follower has the leader's state"
        );
        let (applied, _) = follower.applied_state().await.unwrap();
        assert_eq!(applied, current.meta.last_log_id);
        assert_eq!(snapshot_files(follower_dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn a_truncated_snapshot_is_refused_and_changes_nothing() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (_log, mut leader) = super::super::open(leader_dir.path()).unwrap();
        leader.apply((1..=20).map(upload)).await.unwrap();
        let snapshot = leader.build_snapshot().await.unwrap();
        let mut bytes = Vec::new();
        let mut sent = snapshot.snapshot;
        sent.read_to_end(&mut bytes).await.unwrap();

        let follower_dir = tempfile::tempdir().unwrap();
        let (_flog, mut follower) = super::super::open(follower_dir.path()).unwrap();
        follower.apply((1..=3).map(upload)).await.unwrap();
        let before = records(&follower);
        let mut received = follower.begin_receiving_snapshot().await.unwrap();
        received.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
        assert!(follower
            .install_snapshot(&snapshot.meta, received)
            .await
            .is_err());
        assert!(records(&follower) == before);
        assert!(follower.get_current_snapshot().await.unwrap().is_none());
        assert!(
            snapshot_files(follower_dir.path()).is_empty(),
            "no partial file is left behind"
        );
    }
}
