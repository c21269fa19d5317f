//! The state machine on sled. Each log entry's changes and the new
//! `last_applied` (and membership) land in one atomic batch on the `state`
//! tree. Snapshots are the whole state tree minus bookkeeping, kept in the
//! `snapshot` tree.

use super::io_error;
use crate::codec::{decode, encode};
use crate::command::Response;
use crate::state::{self, keys, StateView};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError,
};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

const CURRENT_SNAPSHOT: &[u8] = b"current";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    db: sled::Db,
    view: StateView,
    snapshots: sled::Tree,
    /// Held while a batch is written or the state is exported, so a snapshot
    /// built concurrently with `apply` sees a state matching its `last_applied`.
    write_lock: Arc<Mutex<()>>,
    metrics: Option<crate::RaftMetrics>,
}

impl StateMachine {
    pub(super) fn new(db: &sled::Db) -> Result<Self, StorageError> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))
        };
        Ok(StateMachine {
            db: db.clone(),
            view: StateView::new(open("state")?),
            snapshots: open("snapshot")?,
            write_lock: Arc::new(Mutex::new(())),
            metrics: None,
        })
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
            EntryPayload::Normal(command) => {
                state::apply(&self.view, command).map_err(|e| Self::write_error(&e))?
            }
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

    async fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes = encode(snapshot).map_err(|e| Self::write_error(&e))?;
        self.snapshots
            .insert(CURRENT_SNAPSHOT, bytes)
            .map_err(|e| Self::write_error(&e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| Self::write_error(&e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let (last_applied, membership, data) = {
            let _guard = self.lock();
            let (last_applied, membership) = self.read_bookkeeping()?;
            let data = self
                .view
                .export()
                .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
            (last_applied, membership, data)
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
        let stored = StoredSnapshot { meta, data };
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
            bytes = stored.data.len(),
            millis = took.as_millis() as u64,
            "built metadata snapshot"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let snapshot_error = |e: &(dyn std::error::Error + 'static)| {
            StorageError::from(StorageIOError::new(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                openraft::AnyError::error(e.to_string()),
            ))
        };
        let entries: Vec<(Vec<u8>, Vec<u8>)> = decode(&data).map_err(|e| snapshot_error(&e))?;
        {
            let _guard = self.lock();
            let tree = self.view.tree();
            let mut batch = sled::Batch::default();
            for key in tree.iter().keys() {
                batch.remove(key.map_err(|e| snapshot_error(&e))?);
            }
            for (key, value) in entries {
                batch.insert(key, value);
            }
            batch.insert(
                keys::MEMBERSHIP,
                encode(&meta.last_membership).map_err(|e| snapshot_error(&e))?,
            );
            if let Some(last) = &meta.last_log_id {
                batch.insert(
                    keys::LAST_APPLIED,
                    encode(last).map_err(|e| snapshot_error(&e))?,
                );
            }
            tree.apply_batch(batch).map_err(|e| snapshot_error(&e))?;
        }
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
