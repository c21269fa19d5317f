//! What a garbage collection would decide, computed from a view of the
//! state: pure, no I/O, so a dry run reports exactly what a real run at the
//! same moment proposes. The proposals are re-checked when they apply
//! (`state::collect`), so a plan made from an older view is safe too.

use crate::state::{ApplyError, StateView};
use std::collections::BTreeSet;
use storage::Digest;

/// Spreads a plan's CPU use so that pushes and pulls keep theirs: after
/// every stretch of work it pauses `rest_per_work` times as long (the plan
/// runs on a blocking thread, so the pause blocks nothing else).
#[derive(Debug)]
pub struct Pacer {
    rest_per_work: u32,
    items: usize,
    since: std::time::Instant,
}

impl Pacer {
    /// Records read between two looks at the clock.
    const STRETCH: usize = 2000;

    /// A pacer that never pauses (tests, dry runs someone waits on).
    pub fn unpaced() -> Self {
        Self::new(0)
    }

    pub fn new(rest_per_work: u32) -> Self {
        Pacer {
            rest_per_work,
            items: 0,
            since: std::time::Instant::now(),
        }
    }

    /// Counts one record read; pauses at the end of a stretch.
    pub fn tick(&mut self) {
        self.items += 1;
        if self.rest_per_work == 0 || !self.items.is_multiple_of(Self::STRETCH) {
            return;
        }
        std::thread::sleep(self.since.elapsed() * self.rest_per_work);
        self.since = std::time::Instant::now();
    }
}

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

/// Plans the manifest part of a collection: in the repositories for which
/// `orphans_only` holds (all, by default: `storage.gc.untagged: false`)
/// only referrers whose subject is gone, elsewhere every manifest nothing
/// roots. Reads every manifest once.
pub fn plan_manifests(
    view: &StateView,
    now_ms: u64,
    graces: Graces,
    orphans_only: &dyn Fn(&str) -> bool,
    pacer: &mut Pacer,
) -> Result<ManifestPlan, ApplyError> {
    let unrooted_before = Plan::linked_before(now_ms, graces);
    let mut plan = ManifestPlan::default();
    for item in view.manifests() {
        pacer.tick();
        let (repo, digest, record) = item?;
        let mark = view.unrooted_mark(&repo, &digest)?;
        let unrooted = view.unrooted(&repo, &digest, &record)?;
        if !crate::state::qualifies(unrooted, mark, orphans_only(&repo)) {
            continue;
        }
        match mark {
            None => plan.mark.push((repo, digest)),
            Some(mark) if mark.at_ms < unrooted_before => plan.expire.push((repo, digest)),
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
    /// Unreferenced, pushed within the delay: hidden by a later collection.
    pub blobs_in_delay: usize,
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
    pacer: &mut Pacer,
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
        pacer.tick();
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
            None if life.linked_at_ms < linked_before => {
                if !referenced(&digest)? {
                    plan.tombstone.push(candidate);
                }
            }
            None => {
                if !referenced(&digest)? {
                    plan.blobs_in_delay += 1;
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

/// One `storage.retention` rule: for the repositories its patterns match,
/// every tag that no `keep` criterion holds is removed.
#[derive(Debug, Clone)]
pub struct RetentionRule {
    pub repositories: Vec<String>,
    pub keep: Keep,
    repository_set: globset::GlobSet,
    tag_set: globset::GlobSet,
}

/// What a retention rule keeps: a tag is kept when any criterion holds. A
/// rule with none keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// Tag names matching one of these globs.
    pub tags: Vec<String>,
    /// The N most recently pushed tags of the repository.
    pub most_recent: Option<usize>,
    pub pushed_within_ms: Option<u64>,
    /// Tags whose manifest was pulled within this.
    pub pulled_within_ms: Option<u64>,
}

impl Keep {
    fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.most_recent.is_none()
            && self.pushed_within_ms.is_none()
            && self.pulled_within_ms.is_none()
    }
}

impl PartialEq for RetentionRule {
    fn eq(&self, other: &Self) -> bool {
        self.repositories == other.repositories && self.keep == other.keep
    }
}

impl Eq for RetentionRule {}

/// A glob as repository names use them: `*` stays within one path
/// segment, `**` crosses them.
pub fn repository_glob(pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{pattern:?}: {e}"))
}

fn glob_set(patterns: &[String]) -> Result<globset::GlobSet, String> {
    let mut set = globset::GlobSetBuilder::new();
    for pattern in patterns {
        set.add(repository_glob(pattern)?);
    }
    set.build().map_err(|e| e.to_string())
}

impl RetentionRule {
    pub fn new(repositories: Vec<String>, keep: Keep) -> Result<Self, String> {
        Ok(RetentionRule {
            repository_set: glob_set(&repositories)?,
            tag_set: glob_set(&keep.tags)?,
            repositories,
            keep,
        })
    }

    pub fn applies_to(&self, repo: &str) -> bool {
        self.repository_set.is_match(repo)
    }
}

/// The subject a cosign-style tag (`sha256-<hex>.sig`, `.att`, `.sbom`)
/// signs or describes, which it follows as a referrer follows its subject.
pub fn cosign_subject(tag: &str) -> Option<Digest> {
    let stem = [".sig", ".att", ".sbom"]
        .iter()
        .find_map(|suffix| tag.strip_suffix(suffix))?;
    let hex = stem.strip_prefix("sha256-")?;
    format!("sha256:{hex}").parse().ok()
}

/// The tags retention removes at `now_ms`:
///
/// * a cosign-style tag follows its subject: kept while the subject is
///   stored, removed once the subject is gone and the tag is older than the
///   delay, whatever the rules say;
/// * every other tag, in a repository some rule matches, is judged by the
///   first matching rule; repositories no rule matches keep their tags.
pub fn plan_retention(
    view: &StateView,
    now_ms: u64,
    graces: Graces,
    rules: &[RetentionRule],
) -> Result<Vec<crate::PlannedUntag>, ApplyError> {
    let mut untag = Vec::new();
    for repo in view.repos(None, usize::MAX)? {
        let rule = rules
            .iter()
            .find(|rule| rule.applies_to(&repo))
            .filter(|rule| !rule.keep.is_empty());
        let mut tags = Vec::new();
        for (tag, manifest) in view.tags_with_targets(&repo)? {
            let pushed_at = view.tag_pushed_at(&repo, &manifest, &tag)?.unwrap_or(0);
            let planned = crate::PlannedUntag {
                repo: repo.clone(),
                tag,
                manifest,
                pushed_at_ms: pushed_at,
            };
            match cosign_subject(&planned.tag) {
                Some(subject) => {
                    let orphan = view.manifest(&repo, &subject)?.is_none()
                        && pushed_at < Plan::linked_before(now_ms, graces);
                    if orphan {
                        untag.push(planned);
                    }
                }
                None if rule.is_some() => {
                    let pulled_at = view.pulled_at(&repo, &planned.manifest)?;
                    tags.push((planned, pulled_at));
                }
                None => {}
            }
        }
        let Some(rule) = rule else {
            continue;
        };
        // Most recent first; equal times in name order, so every plan agrees.
        tags.sort_by(|(a, _), (b, _)| {
            b.pushed_at_ms
                .cmp(&a.pushed_at_ms)
                .then_with(|| a.tag.cmp(&b.tag))
        });
        let keep = &rule.keep;
        let within = |at: Option<u64>, window: Option<u64>| match (at, window) {
            (Some(at), Some(window)) => at >= now_ms.saturating_sub(window),
            _ => false,
        };
        for (rank, (planned, pulled_at)) in tags.into_iter().enumerate() {
            let kept = rule.tag_set.is_match(&planned.tag)
                || keep.most_recent.is_some_and(|n| rank < n)
                || within(Some(planned.pushed_at_ms), keep.pushed_within_ms)
                || within(pulled_at, keep.pulled_within_ms);
            if !kept {
                untag.push(planned);
            }
        }
    }
    Ok(untag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_name_their_subject() {
        let hex = "a".repeat(64);
        let subject: Digest = format!("sha256:{hex}").parse().unwrap();
        for suffix in ["sig", "att", "sbom"] {
            assert_eq!(
                cosign_subject(&format!("sha256-{hex}.{suffix}")),
                Some(subject.clone())
            );
        }
        assert_eq!(cosign_subject("v1.sig"), None);
        assert_eq!(cosign_subject(&format!("sha256-{hex}")), None);
        assert_eq!(cosign_subject("sha256-abc.sig"), None);
    }
}
