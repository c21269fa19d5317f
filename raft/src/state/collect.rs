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
//!
//! A manifest nothing roots (no tag, no index listing it, no stored
//! subject) is first marked, then deleted by a collection at least the
//! delay later if it is still unrooted; anything that roots it meanwhile
//! clears the mark. Deleting it drops its blob references, so its blobs
//! follow the steps above.

use super::keys;
use super::view::{BlobLife, BlobRecord, StateView, Unrooted, UnrootedMark};
use super::ApplyError;
use crate::codec::encode;
use crate::command::PlannedUntag;
use crate::command::Response;
use storage::Digest;

/// Marks the blob pushed (or referenced) at `at_ms`, and un-hides it.
/// Answers whether it was hidden.
pub(super) fn revive(
    view: &StateView,
    digest: &Digest,
    record: &BlobRecord,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<bool, ApplyError> {
    let life = view.blob_life(digest, record)?;
    let revived = BlobLife {
        tombstoned_at_ms: None,
        linked_at_ms: at_ms.max(life.linked_at_ms),
        ..life
    };
    batch.insert(keys::blob_life(digest), encode(&revived)?);
    Ok(life.tombstoned_at_ms.is_some())
}

/// [`revive`] for a blob a manifest references: only a hidden one changes.
/// Answers whether it was hidden.
pub(super) fn revive_if_hidden(
    view: &StateView,
    digest: &Digest,
    record: &BlobRecord,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<bool, ApplyError> {
    if view.blob_life(digest, record)?.tombstoned_at_ms.is_some() {
        return revive(view, digest, record, at_ms, batch);
    }
    Ok(false)
}

/// Adds `revived` to the cluster's count of hidden blobs a push, mount or
/// manifest brought back (`registry_gc_blobs_revived_total`).
pub(super) fn count_revived(
    view: &StateView,
    revived: u64,
    batch: &mut sled::Batch,
) -> Result<(), ApplyError> {
    if revived > 0 {
        batch.insert(keys::REVIVED, encode(&(view.revived()? + revived))?);
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
fn dedup<T: Eq + std::hash::Hash>(items: &[T]) -> Vec<&T> {
    let mut seen = std::collections::HashSet::new();
    items.iter().filter(|item| seen.insert(*item)).collect()
}

/// A manifest stored (or stored again): it, the children it lists and the
/// referrers waiting for it as their subject are rooted, so their marks go.
pub(super) fn root_manifest(
    view: &StateView,
    repo: &str,
    digest: &Digest,
    manifest: &crate::ManifestRecord,
    batch: &mut sled::Batch,
) -> Result<(), ApplyError> {
    batch.remove(keys::unrooted(repo, digest));
    for child in &manifest.children {
        batch.remove(keys::unrooted(repo, child));
    }
    for referrer in view.referrers(repo, digest)? {
        batch.remove(keys::unrooted(repo, &referrer.digest));
    }
    Ok(())
}

/// Whether the manifest qualifies for collection: stored and unrooted, and,
/// with `orphans_only`, a referrer whose subject is gone or a manifest
/// whose last tag a retention rule removed.
fn collectable(
    view: &StateView,
    repo: &str,
    digest: &Digest,
    orphans_only: bool,
) -> Result<Option<crate::ManifestRecord>, ApplyError> {
    let Some(record) = view.manifest(repo, digest)? else {
        return Ok(None);
    };
    let mark = view.unrooted_mark(repo, digest)?;
    Ok(qualifies(view.unrooted(repo, digest, &record)?, mark, orphans_only).then_some(record))
}

/// The collection rule for manifests, shared with the planner.
pub fn qualifies(
    unrooted: Option<Unrooted>,
    mark: Option<UnrootedMark>,
    orphans_only: bool,
) -> bool {
    match unrooted {
        None => false,
        Some(Unrooted::OrphanReferrer) => true,
        Some(Unrooted::Untagged) => !orphans_only || mark.is_some_and(|m| m.by_retention),
    }
}

pub(super) fn mark_unrooted(
    view: &StateView,
    manifests: &[(String, Digest)],
    orphans_only: bool,
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    let mut marked = Vec::new();
    for (repo, digest) in dedup(manifests) {
        if view.unrooted_mark(repo, digest)?.is_some()
            || collectable(view, repo, digest, orphans_only)?.is_none()
        {
            continue;
        }
        let mark = UnrootedMark {
            at_ms,
            by_retention: false,
        };
        batch.insert(keys::unrooted(repo, digest), encode(&mark)?);
        marked.push((repo.clone(), digest.clone()));
    }
    Ok(Response::CollectedManifests(marked))
}

pub(super) fn expire_manifests(
    view: &StateView,
    manifests: &[(String, Digest)],
    orphans_only: bool,
    unrooted_before_ms: u64,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    let mut expired = Vec::new();
    for (repo, digest) in dedup(manifests) {
        let marked_long_enough = view
            .unrooted_mark(repo, digest)?
            .is_some_and(|mark| mark.at_ms < unrooted_before_ms);
        if !marked_long_enough {
            continue;
        }
        let Some(record) = collectable(view, repo, digest, orphans_only)? else {
            continue;
        };
        super::delete_manifest(view, repo, digest, &record, batch)?;
        expired.push((repo.clone(), digest.clone()));
    }
    Ok(Response::CollectedManifests(expired))
}

pub(super) fn retention_untag(
    view: &StateView,
    tags: &[PlannedUntag],
    at_ms: u64,
    batch: &mut sled::Batch,
) -> Result<Response, ApplyError> {
    let mut removed = Vec::new();
    let mut untagged_now: std::collections::HashMap<(&str, &Digest), usize> = Default::default();
    for planned in dedup(tags) {
        let (repo, manifest) = (planned.repo.as_str(), &planned.manifest);
        let unchanged = view.tag(repo, &planned.tag)?.as_ref() == Some(manifest)
            && view.tag_pushed_at(repo, manifest, &planned.tag)? == Some(planned.pushed_at_ms);
        if !unchanged {
            continue;
        }
        batch.remove(keys::tag(repo, &planned.tag));
        batch.remove(keys::tag_of(repo, manifest, &planned.tag));
        *untagged_now.entry((repo, manifest)).or_default() += 1;
        removed.push(planned.clone());
    }
    for ((repo, manifest), count) in untagged_now {
        let tags_left = view.tags_of_manifest(repo, manifest)?.len() - count;
        if tags_left == 0 && !view.manifest_listed(repo, manifest)? {
            let since = view
                .unrooted_mark(repo, manifest)?
                .map_or(at_ms, |m| m.at_ms.min(at_ms));
            let mark = UnrootedMark {
                at_ms: since,
                by_retention: true,
            };
            batch.insert(keys::unrooted(repo, manifest), encode(&mark)?);
        }
    }
    Ok(Response::Untagged(removed))
}
