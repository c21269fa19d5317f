//! What a garbage collection would decide, computed from a view of the
//! state: pure, no I/O, so a dry run reports exactly what a real run at the
//! same moment proposes. The proposals are re-checked when they apply
//! (`state::collect`), so a plan made from an older view is safe too.

use crate::state::{ApplyError, StateView, Unrooted};
use std::collections::BTreeSet;
use storage::Digest;

/// A manifest in its repository.
pub type ManifestId = (String, Digest);

/// How long content is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graces {
    /// A blob pushed, mounted or revived within this is never hidden: it
    /// covers a layer pushed before its manifest.
    pub delay_ms: u64,
    /// A hidden blob is condemned only after this: reads begun before it
    /// was hidden (streams, presigned URLs) finish first.
    pub grace_ms: u64,
}

/// A blob a collection acts on, with its size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub digest: Digest,
    pub size: u64,
}

/// A condemned generation the sweeper has yet to delete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sweep {
    pub digest: Digest,
    pub generation: u64,
    pub size: u64,
}

/// What a collection decides about manifests at `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestPlan {
    /// Marked unrooted before the delay, still unrooted: to delete.
    pub expire: Vec<ManifestId>,
    /// Unrooted, not marked yet: to mark.
    pub mark: Vec<ManifestId>,
    /// Marked within the delay.
    pub marked_in_delay: usize,
}

/// Plans the manifest part of a collection: with `orphans_only` (the
/// default, `storage.gc.untagged: false`) only referrers whose subject is
/// gone, else every manifest nothing roots. Reads every manifest once.
pub fn plan_manifests(
    view: &StateView,
    now_ms: u64,
    graces: Graces,
    orphans_only: bool,
) -> Result<ManifestPlan, ApplyError> {
    let unrooted_before = Plan::linked_before(now_ms, graces);
    let mut plan = ManifestPlan::default();
    for item in view.manifests() {
        let (repo, digest, record) = item?;
        let collectable = match view.unrooted(&repo, &digest, &record)? {
            None => false,
            Some(Unrooted::OrphanReferrer) => true,
            Some(Unrooted::Untagged) => !orphans_only,
        };
        if !collectable {
            continue;
        }
        match view.unrooted_since(&repo, &digest)? {
            None => plan.mark.push((repo, digest)),
            Some(at) if at < unrooted_before => plan.expire.push((repo, digest)),
            Some(_) => plan.marked_in_delay += 1,
        }
    }
    Ok(plan)
}

/// One collection's decisions at `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Hidden for longer than the grace, still unreferenced: to condemn.
    pub condemn: Vec<Candidate>,
    /// Condemned earlier, bytes not yet deleted.
    pub pending_sweeps: Vec<Sweep>,
    /// Unreferenced, not pushed within the delay: to hide.
    pub tombstone: Vec<Candidate>,
    /// Hidden, still within the grace (neither condemned nor hidden now).
    pub hidden_in_grace: usize,
}

impl Plan {
    /// The cutoff a `TombstoneBlobs` made at `now_ms` carries.
    pub fn linked_before(now_ms: u64, graces: Graces) -> u64 {
        now_ms.saturating_sub(graces.delay_ms)
    }

    /// The cutoff a `CondemnBlobs` made at `now_ms` carries.
    pub fn tombstoned_before(now_ms: u64, graces: Graces) -> u64 {
        now_ms.saturating_sub(graces.grace_ms)
    }
}

/// Plans the blob part of a collection at `now_ms`, as if the manifests in
/// `deleted` were gone (a dry run's view of what the manifest part would
/// delete first). Reads every blob record once.
pub fn plan(
    view: &StateView,
    now_ms: u64,
    graces: Graces,
    deleted: &BTreeSet<ManifestId>,
) -> Result<Plan, ApplyError> {
    let referenced = |digest: &Digest| -> Result<bool, ApplyError> {
        if deleted.is_empty() {
            return view.blob_referenced(digest);
        }
        Ok(view
            .blob_referrers(digest)?
            .iter()
            .any(|manifest| !deleted.contains(manifest)))
    };
    let linked_before = Plan::linked_before(now_ms, graces);
    let tombstoned_before = Plan::tombstoned_before(now_ms, graces);
    let mut plan = Plan::default();
    for item in view.blobs() {
        let (digest, record) = item?;
        let life = view.blob_life(&digest, &record)?;
        let candidate = Candidate {
            digest: digest.clone(),
            size: record.size,
        };
        match life.tombstoned_at_ms {
            Some(at) if at < tombstoned_before => {
                if !referenced(&digest)? {
                    plan.condemn.push(candidate);
                }
            }
            Some(_) => plan.hidden_in_grace += 1,
            None => {
                if life.linked_at_ms < linked_before && !referenced(&digest)? {
                    plan.tombstone.push(candidate);
                }
            }
        }
    }
    plan.pending_sweeps = view
        .pending_sweeps()?
        .into_iter()
        .map(|(digest, generation, size)| Sweep {
            digest,
            generation,
            size,
        })
        .collect();
    Ok(plan)
}
