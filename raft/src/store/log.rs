//! The Raft log on sled: entries keyed by big-endian index in the `log` tree;
//! vote, committed id and last purged id in the `raft` tree. An append is
//! reported complete only after the database is flushed.

use super::io_error;
use crate::codec::{decode, encode};
use crate::types::{Entry, LogId, StorageError, TypeConfig};
use crate::NodeId;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, RaftLogReader, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Debug, Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    raft: sled::Tree,
}

impl LogStore {
    pub(super) fn new(db: &sled::Db) -> Result<Self, StorageError> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, &e))
        };
        Ok(LogStore {
            db: db.clone(),
            log: open("log")?,
            raft: open("raft")?,
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self
            .raft
            .get(key)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, &e))?
        else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| io_error(subject, ErrorVerb::Read, &e))
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, &e))?;
        self.raft
            .insert(key, bytes)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Write, &e))?;
        self.flush(subject).await
    }

    async fn flush(&self, subject: ErrorSubject<NodeId>) -> Result<(), StorageError> {
        self.db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| io_error(subject, ErrorVerb::Write, &e))
    }

    /// Appends `entries` and flushes, outside openraft: for offline
    /// recovery of a stopped node only.
    pub(crate) fn append_offline(&self, entries: &[Entry]) -> Result<(), StorageError> {
        self.insert_entries(entries)?;
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
    }

    /// Writes `entries` into the log tree, unflushed.
    fn insert_entries<E: std::borrow::Borrow<Entry>>(
        &self,
        entries: impl IntoIterator<Item = E>,
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let entry = entry.borrow();
            let bytes =
                encode(entry).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
            batch.insert(&index_key(entry.get_log_id().index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, &e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((_, bytes)) = self
            .log
            .last()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))?
        else {
            return Ok(None);
        };
        let entry: Entry =
            decode(&bytes).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
        Ok(Some(*entry.get_log_id()))
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range((start, end)) {
            let (_, bytes) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
            let entry: Entry =
                decode(&bytes).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(LAST_PURGED, ErrorSubject::Store)?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Durability of `committed` is an optimization (faster catch-up after a
        // restart), so it is written without its own flush.
        let bytes =
            encode(&committed).map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.raft
            .insert(COMMITTED, bytes)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.insert_entries(entries)?;
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two steps leaves
        // extra entries, never a gap the log state does not know about.
        self.write_meta(LAST_PURGED, &log_id, ErrorSubject::Store)
            .await?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        Ok(())
    }
}
