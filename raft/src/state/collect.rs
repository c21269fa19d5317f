//! Applying garbage collection's decisions. Each is re-checked against the
//! state at its place in the log, so a decision computed from an older view
//! (a lagging proposer, two collections at once) acts only on what still
//! qualifies, and a push ordered before it wins.
//!
//! A blob goes through three steps, each one log entry:
//!
//! 1. **tombstone**: unreferenced and not pushed since the delay, it is
//!    hidden (404) but kept; a push, mount or manifest referencing it
//!    revives it;
//! 2. **condemn**: still hidden after the grace (streams begun before the
//!    tombstone have finished), it is forgotten and its generation's key is
//!    queued for deletion. Irrevocable: a later push writes the next
//!    generation's key, so no delete, however late, hits live bytes;
//! 3. **swept**: the sweeper deleted the key.

use super::keys;
use super::view::{BlobLife, BlobRecord, StateView};
use super::ApplyError;
use crate::codec::encode;
use crate::command::Response;
use storage::Digest;

/// Marks the blob pushed (or referenced) at `at_ms`, and un-hides it.
pub(super) fn revive(
    view: &StateView,
    digest: &Digest,
    record: &BlobRecord,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<(), ApplyError> {
    let life = view.blob_life(digest, record)?;
    let revived = BlobLife {
        tombstoned_at_ms: None,
        linked_at_ms: at_ms.max(life.linked_at_ms),
        ..life
    };
    batch.insert(keys::blob_life(digest), encode(&revived)?);
    Ok(())
}

/// [`revive`] for a blob a manifest references: only a hidden one changes.
pub(super) fn revive_if_hidden(
    view: &StateView,
    digest: &Digest,
    record: &BlobRecord,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<(), ApplyError> {
    if view.blob_life(digest, record)?.tombstoned_at_ms.is_some() {
        revive(view, digest, record, at_ms, batch)?;
    }
    Ok(())
}

pub(super) fn tombstone(
    view: &StateView,
    digests: &[Digest],
    linked_before_ms: u64,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    if view.read_only()? {
        return Ok(Response::ReadOnly);
    }
    let mut hidden = Vec::new();
    for digest in dedup(digests) {
        let Some(record) = view.blob(digest)? else {
            continue;
        };
        let life = view.blob_life(digest, &record)?;
        if life.tombstoned_at_ms.is_some()
            || life.linked_at_ms >= linked_before_ms
            || view.blob_referenced(digest)?
        {
            continue;
        }
        let tombstoned = BlobLife {
            tombstoned_at_ms: Some(at_ms),
            ..life
        };
        batch.insert(keys::blob_life(digest), encode(&tombstoned)?);
        hidden.push(digest.clone());
    }
    Ok(Response::Collected(hidden))
}

pub(super) fn condemn(
    view: &StateView,
    digests: &[Digest],
    tombstoned_before_ms: u64,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    if view.read_only()? {
        return Ok(Response::ReadOnly);
    }
    let mut condemned = Vec::new();
    for digest in dedup(digests) {
        let Some(record) = view.blob(digest)? else {
            continue;
        };
        let life = view.blob_life(digest, &record)?;
        let hidden_long_enough = life
            .tombstoned_at_ms
            .is_some_and(|at| at < tombstoned_before_ms);
        // A hidden blob that a manifest references was revived by it, so
        // the second test is a guard, not a case.
        if !hidden_long_enough || view.blob_referenced(digest)? {
            continue;
        }
        batch.remove(keys::blob(digest));
        batch.insert(keys::sweep(digest, life.generation), encode(&record.size)?);
        let forgotten = BlobLife {
            generation: life.generation + 1,
            tombstoned_at_ms: None,
            linked_at_ms: life.linked_at_ms,
        };
        batch.insert(keys::blob_life(digest), encode(&forgotten)?);
        condemned.push(digest.clone());
    }
    Ok(Response::Collected(condemned))
}

/// `digests` without repeats, in their first order: a batch names a digest
/// once, and a repeat must not be judged against the unchanged view twice.
fn dedup(digests: &[Digest]) -> Vec<&Digest> {
    let mut seen = std::collections::HashSet::new();
    digests.iter().filter(|d| seen.insert(*d)).collect()
}
