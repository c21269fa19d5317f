//! openraft storage on sled: the log store and the state machine share one
//! sled database, so one flush makes both durable.

// openraft's trait methods return its `StorageError` by value; our helpers
// return the same type rather than boxing it at every call.
#![allow(clippy::result_large_err)]

mod log;
mod snapshot_file;
mod state_machine;

pub use self::log::LogStore;
pub use state_machine::StateMachine;

use crate::types::StorageError;
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use std::path::Path;

/// sled's page cache: metadata is small and served from it.
const CACHE_BYTES: u64 = 16 << 20;

/// Opens (creating if needed) the metadata database under `dir`; snapshot
/// files go to `dir/snapshots`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), StorageError> {
    // Metadata is small next to sled's 1 GiB default page cache.
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, &e))?;
    let log = LogStore::new(&db)?;
    let sm = StateMachine::new(&db, &dir.join("snapshots"))?;
    Ok((log, sm))
}

pub(crate) fn io_error(
    subject: ErrorSubject<crate::NodeId>,
    verb: ErrorVerb,
    err: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(err)).into()
}
