//! Online garbage collection (`storage.gc`): blobs that no manifest
//! references are hidden, then condemned after a grace, then their bytes
//! deleted, each step decided through the log (see `raft::state::collect`),
//! so pushes and pulls go on, on every node, while it runs.
//!
//! One collection, on any node:
//!
//! 0. remove the tags retention rules drop (`storage.retention`); delete
//!    the manifests marked unrooted for longer than the delay
//!    (with `untagged`; else only referrers whose subject is gone), and
//!    mark the newly unrooted;
//! 1. condemn the blobs hidden for longer than the grace;
//! 2. sweep: delete the bytes of every condemned generation (those left by
//!    an earlier, interrupted collection too) and record them swept;
//! 3. hide the blobs unreferenced and not pushed within the delay.
//!
//! A hidden blob's bytes therefore go at the first collection after the
//! grace; the scheduler runs one then. Every step may be cut short (a
//! crash, a lost leadership): the log holds what was decided, and the next
//! collection finishes it.

use futures::StreamExt;
use raft::gc::{Candidate, Graces, ManifestId, ManifestPlan, Pacer, Plan};
use raft::{Command, MetaError, MetaStore, Response};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{BlobStore, Digest, ObjectKey};

/// Digests per log entry: bounds an entry's size and its apply time, which
/// pushes queue behind.
const BATCH: usize = 250;
/// A plan pauses this many times as long as it worked, stretch by stretch,
/// so it takes a quarter of a core from pushes and pulls at most
/// (measured in docs/performance.md, "Garbage collection").
const PLAN_REST_PER_WORK: u32 = 3;
/// Deletes in flight at once while sweeping.
const SWEEP_CONCURRENCY: usize = 16;

/// `storage.gc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// Collect on a schedule.
    pub enabled: bool,
    pub interval: Duration,
    /// Nothing pushed, mounted or revived within this is collected.
    pub delay: Duration,
    /// How long a hidden blob stays revivable, and readable by transfers
    /// that began before it was hidden, before its bytes are deleted.
    pub grace: Duration,
    /// Also delete manifests nothing roots (no tag, no index listing them,
    /// no stored subject) once unrooted for `delay`; without it only
    /// referrers whose subject is gone are.
    pub untagged: bool,
    /// The repositories a pull-through cache fills (by prefix, `""` for
    /// all) with their `ttl`: there an unrooted manifest (one pulled by
    /// digest only, the children of an expired index) goes as with
    /// `untagged`, once neither fetched nor pulled within the ttl.
    pub cache_expiry: Vec<(String, Duration)>,
    /// Scheduled collections only report.
    pub dry_run: bool,
    /// `storage.retention`: which tags each repository keeps.
    pub retention: Vec<raft::gc::RetentionRule>,
    /// How often a node writes the pulls it served to the log.
    pub pull_flush: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            delay: Duration::from_secs(3600),
            grace: Duration::from_secs(30 * 60),
            untagged: false,
            cache_expiry: Vec::new(),
            dry_run: false,
            retention: Vec::new(),
            pull_flush: Duration::from_secs(10),
        }
    }
}

impl GcConfig {
    /// Whether only orphaned referrers (and manifests retention untagged)
    /// of `repo` are collected, not every unrooted manifest.
    pub fn orphans_only(&self, repo: &str) -> bool {
        !self.untagged && self.cache_ttl(repo).is_none()
    }

    /// The ttl of the pull-through cache filling `repo`, if one does.
    fn cache_ttl(&self, repo: &str) -> Option<Duration> {
        self.cache_expiry
            .iter()
            .filter(|(prefix, _)| {
                prefix.is_empty()
                    || repo
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, ttl)| *ttl)
    }

    /// `plan` without the manifests of cached repositories that were
    /// fetched or pulled within their cache's ttl: those stay however
    /// unrooted (pulls are recorded in batches, so this is judged here,
    /// not by the log).
    fn without_cached_in_use(
        &self,
        view: &raft::StateView,
        now_ms: u64,
        mut plan: ManifestPlan,
    ) -> Result<ManifestPlan, MetaError> {
        if self.cache_expiry.is_empty() {
            return Ok(plan);
        }
        let in_use = |(repo, digest): &ManifestId| -> Result<bool, MetaError> {
            let Some(ttl) = self.cache_ttl(repo) else {
                return Ok(false);
            };
            let fetched = view.manifest(repo, digest)?.map_or(0, |m| m.at_ms);
            let pulled = view.pulled_at(repo, digest)?.unwrap_or(0);
            Ok(now_ms.saturating_sub(fetched.max(pulled)) < ttl.as_millis() as u64)
        };
        for list in [&mut plan.expire, &mut plan.mark] {
            let mut kept = Vec::with_capacity(list.len());
            for id in list.drain(..) {
                if !in_use(&id)? {
                    kept.push(id);
                }
            }
            *list = kept;
        }
        Ok(plan)
    }

    fn graces(&self) -> Graces {
        Graces {
            delay_ms: self.delay.as_millis() as u64,
            grace_ms: self.grace.as_millis() as u64,
        }
    }
}

/// A manifest a collection deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemovedManifest {
    pub repository: String,
    pub digest: Digest,
}

/// A tag a retention rule removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemovedTag {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
}

/// What one collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Tags retention rules removed; their manifests go after the delay
    /// unless tagged again.
    pub tags_removed: Vec<RemovedTag>,
    /// Manifests deleted: unrooted (with `untagged`) or referrers whose
    /// subject is gone, marked so by a collection at least the delay ago.
    pub manifests_removed: Vec<RemovedManifest>,
    /// Manifests found unrooted now; deleted by the first collection after
    /// the delay unless something roots them first.
    pub manifests_marked: usize,
    /// Manifests marked earlier, still within the delay.
    pub manifests_in_delay: usize,
    /// Blobs whose bytes this collection deleted (or would delete):
    /// condemned now, with those an earlier collection left to sweep.
    pub removed: Vec<Candidate>,
    pub bytes_reclaimed: u64,
    /// Blobs hidden now; their bytes go at the first collection after the grace.
    pub hidden: Vec<Candidate>,
    /// Blobs hidden earlier and still within their grace.
    pub hidden_in_grace: usize,
    /// Unreferenced blobs pushed within the delay, hidden by a later
    /// collection unless a manifest references them first.
    pub blobs_in_delay: usize,
    /// Condemned bytes whose delete failed; the next collection retries.
    pub sweep_failures: usize,
    pub took_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("the registry is read-only: collections are paused")]
    ReadOnly,
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("a collection is already running on this node")]
    Busy,
}

/// Runs collections on this node, one at a time.
pub struct Collector {
    meta: MetaStore,
    blobs: Arc<dyn BlobStore>,
    config: GcConfig,
    metrics: crate::metrics::GcMetrics,
    read_only_by_config: bool,
    running: tokio::sync::Mutex<()>,
}

impl Collector {
    pub fn new(
        meta: MetaStore,
        blobs: Arc<dyn BlobStore>,
        config: GcConfig,
        metrics: crate::metrics::GcMetrics,
        read_only_by_config: bool,
    ) -> Self {
        Collector {
            meta,
            blobs,
            config,
            metrics,
            read_only_by_config,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &GcConfig {
        &self.config
    }

    /// Updates the metrics that follow the replicated state; called when
    /// `/metrics` is scraped.
    pub fn refresh_metrics(&self) {
        if let Ok(revived) = self.meta.local_view().revived() {
            self.metrics.follow_revived(revived);
        }
    }

    /// Runs one collection now, after any collection already running here.
    pub async fn collect(&self, dry_run: bool) -> Result<GcReport, GcError> {
        let _running = self.running.lock().await;
        self.collect_exclusive(dry_run).await
    }

    /// Runs one collection unless one is running here already.
    pub async fn try_collect(&self, dry_run: bool) -> Result<GcReport, GcError> {
        let _running = self.running.try_lock().map_err(|_| GcError::Busy)?;
        self.collect_exclusive(dry_run).await
    }

    async fn collect_exclusive(&self, dry_run: bool) -> Result<GcReport, GcError> {
        let started = Instant::now();
        let result = self.run(dry_run).await;
        let took = started.elapsed();
        self.metrics.finished(&result, dry_run, took);
        match &result {
            Ok(report) => tracing::info!(
                dry_run,
                tags_removed = report.tags_removed.len(),
                manifests_removed = report.manifests_removed.len(),
                manifests_marked = report.manifests_marked,
                removed = report.removed.len(),
                bytes_reclaimed = report.bytes_reclaimed,
                hidden = report.hidden.len(),
                hidden_in_grace = report.hidden_in_grace,
                sweep_failures = report.sweep_failures,
                millis = took.as_millis() as u64,
                "garbage collection finished"
            ),
            Err(e) => tracing::warn!(dry_run, error = %e, "garbage collection failed"),
        }
        result.map(|report| GcReport {
            took_ms: took.as_millis() as u64,
            ..report
        })
    }

    async fn run(&self, dry_run: bool) -> Result<GcReport, GcError> {
        if api::refuses_writes(self.read_only_by_config, &self.meta) {
            return Err(GcError::ReadOnly);
        }
        let graces = self.config.graces();
        let now = api::state::now_ms();
        let phase = Instant::now();
        let mut view = self.meta.read().await?;
        let untag = raft::gc::plan_retention(view, now, graces, &self.config.retention)
            .map_err(MetaError::from)?;
        let tags_removed = if dry_run || untag.is_empty() {
            untag
        } else {
            let removed = self
                .propose_in_batches(
                    "retention",
                    &untag,
                    |tags| Command::RetentionUntag {
                        tags,
                        at_ms: api::state::now_ms(),
                    },
                    |answer| match answer {
                        Response::Untagged(tags) => Ok(tags),
                        other => Err(other),
                    },
                )
                .await?;
            tracing::info!(tags = removed.len(), "retention removed tags");
            view = self.meta.read().await?;
            removed
        };
        let tags_removed: Vec<RemovedTag> = tags_removed
            .into_iter()
            .map(|t| RemovedTag {
                repository: t.repo,
                tag: t.tag,
                digest: t.manifest,
            })
            .collect();
        if !dry_run {
            self.metrics.tags_removed.inc_by(tags_removed.len() as u64);
        }
        let config = self.config.clone();
        let manifests = paced(view, move |view, pacer| {
            let orphans_only = |repo: &str| config.orphans_only(repo);
            raft::gc::plan_manifests(view, now, graces, &orphans_only, pacer)
        })
        .await?;
        let manifests = self.config.without_cached_in_use(view, now, manifests)?;
        let expiring: BTreeSet<ManifestId> = if dry_run {
            manifests.expire.iter().cloned().collect()
        } else {
            BTreeSet::new()
        };
        let mut manifest_report = ManifestReport {
            removed: Vec::new(),
            marked: manifests.mark.len(),
            in_delay: manifests.marked_in_delay,
        };
        if !dry_run {
            manifest_report = self.collect_manifests(&manifests, now, graces).await?;
            if !manifest_report.removed.is_empty() {
                // Their blob references are gone: the blobs plan on the state after.
                view = self.meta.read().await?;
            }
        }
        let plan = paced(view, move |view, pacer| {
            raft::gc::plan(view, now, graces, &expiring, pacer)
        })
        .await?;
        self.metrics.phase("plan", phase.elapsed());
        self.metrics.hidden.set(plan.hidden_in_grace as i64);
        self.metrics
            .pending_sweeps
            .set((plan.pending_sweeps.len() + plan.condemn.len()) as i64);
        tracing::info!(
            dry_run,
            manifests_to_remove = manifests.expire.len(),
            manifests_to_mark = manifests.mark.len(),
            to_condemn = plan.condemn.len(),
            to_sweep = plan.pending_sweeps.len(),
            to_hide = plan.tombstone.len(),
            hidden_in_grace = plan.hidden_in_grace,
            "garbage collection planned"
        );
        if dry_run {
            let mut report = dry_report(plan);
            report.tags_removed = tags_removed;
            report.manifests_removed = removed_manifests(manifests.expire);
            report.manifests_marked = manifests.mark.len();
            report.manifests_in_delay = manifests.marked_in_delay;
            return Ok(report);
        }
        let mut report = GcReport {
            tags_removed,
            hidden_in_grace: plan.hidden_in_grace,
            blobs_in_delay: plan.blobs_in_delay,
            manifests_removed: removed_manifests(manifest_report.removed),
            manifests_marked: manifest_report.marked,
            manifests_in_delay: manifest_report.in_delay,
            ..GcReport::default()
        };

        let phase = Instant::now();
        let condemned = self
            .propose_in_batches(
                "condemn",
                &digests_of(&plan.condemn),
                |digests| Command::CondemnBlobs {
                    digests,
                    tombstoned_before_ms: Plan::tombstoned_before(now, graces),
                },
                collected_blobs,
            )
            .await?;
        tracing::debug!(condemned = condemned.len(), "garbage collection condemned");
        self.metrics.phase("condemn", phase.elapsed());

        let phase = Instant::now();
        let (swept, failures) = self.sweep().await?;
        report.removed = swept.iter().map(|(c, _)| c.clone()).collect();
        report.bytes_reclaimed = swept.iter().map(|(c, _)| c.size).sum();
        report.sweep_failures = failures;
        self.metrics.removed.inc_by(report.removed.len() as u64);
        self.metrics.bytes_reclaimed.inc_by(report.bytes_reclaimed);
        self.metrics.sweep_failures.inc_by(failures as u64);
        self.metrics.phase("sweep", phase.elapsed());

        let phase = Instant::now();
        let hidden: std::collections::HashSet<Digest> = self
            .propose_in_batches(
                "hide",
                &digests_of(&plan.tombstone),
                |digests| Command::TombstoneBlobs {
                    digests,
                    linked_before_ms: Plan::linked_before(now, graces),
                    at_ms: now,
                },
                collected_blobs,
            )
            .await?
            .into_iter()
            .collect();
        report.hidden = plan
            .tombstone
            .into_iter()
            .filter(|c| hidden.contains(&c.digest))
            .collect();
        self.metrics.hidden_total.inc_by(report.hidden.len() as u64);
        self.metrics
            .hidden
            .set((report.hidden_in_grace + report.hidden.len()) as i64);
        self.metrics.phase("hide", phase.elapsed());
        Ok(report)
    }

    /// Deletes the manifests marked unrooted long enough, then marks the
    /// newly unrooted ones.
    async fn collect_manifests(
        &self,
        plan: &ManifestPlan,
        now: u64,
        graces: Graces,
    ) -> Result<ManifestReport, GcError> {
        let phase = Instant::now();
        let mut removed = Vec::new();
        for (orphans_only, manifests) in self.by_orphans_only(&plan.expire) {
            removed.extend(
                self.propose_in_batches(
                    "remove manifests",
                    &manifests,
                    |manifests| Command::ExpireManifests {
                        manifests,
                        orphans_only,
                        unrooted_before_ms: Plan::linked_before(now, graces),
                    },
                    collected_manifests,
                )
                .await?,
            );
        }
        // What the deleted manifests listed or signed is unrooted now: it is
        // marked in this collection, so each level of an unrooted tree
        // waits one delay, not two.
        let replanned;
        let plan = if removed.is_empty() {
            plan
        } else {
            let view = self.meta.read().await?;
            let config = self.config.clone();
            let replanned_all = paced(view, move |view, pacer| {
                let orphans_only = |repo: &str| config.orphans_only(repo);
                raft::gc::plan_manifests(view, now, graces, &orphans_only, pacer)
            })
            .await?;
            replanned = self
                .config
                .without_cached_in_use(view, now, replanned_all)?;
            &replanned
        };
        // A mark says "unrooted since": it carries the time it is sent, not
        // the (older) time of the plan.
        let mut marked = Vec::new();
        for (orphans_only, manifests) in self.by_orphans_only(&plan.mark) {
            marked.extend(
                self.propose_in_batches(
                    "mark manifests",
                    &manifests,
                    |manifests| Command::MarkUnrooted {
                        manifests,
                        orphans_only,
                        at_ms: api::state::now_ms(),
                    },
                    collected_manifests,
                )
                .await?,
            );
        }
        self.metrics.manifests_removed.inc_by(removed.len() as u64);
        self.metrics.phase("manifests", phase.elapsed());
        Ok(ManifestReport {
            removed,
            marked: marked.len(),
            in_delay: plan.marked_in_delay,
        })
    }

    /// `manifests` split by the rule their repository is collected by
    /// (`orphans_only` or not), which each command carries for all it lists.
    fn by_orphans_only(&self, manifests: &[ManifestId]) -> Vec<(bool, Vec<ManifestId>)> {
        let (strict, loose): (Vec<_>, Vec<_>) = manifests
            .iter()
            .cloned()
            .partition(|(repo, _)| self.config.orphans_only(repo));
        [(true, strict), (false, loose)]
            .into_iter()
            .filter(|(_, manifests)| !manifests.is_empty())
            .collect()
    }

    /// Proposes `make(batch)` for each batch of `items`; answers what the
    /// log acted on, which `acted` takes out of each answer (the others no
    /// longer qualified when their entry applied).
    async fn propose_in_batches<T: Clone, A>(
        &self,
        step: &'static str,
        items: &[T],
        make: impl Fn(Vec<T>) -> Command,
        acted: impl Fn(Response) -> Result<Vec<A>, Response>,
    ) -> Result<Vec<A>, GcError> {
        let mut done = Vec::new();
        let batches = items.len().div_ceil(BATCH);
        for (n, batch) in items.chunks(BATCH).enumerate() {
            match acted(self.meta.propose(make(batch.to_vec())).await?) {
                Ok(answered) => done.extend(answered),
                Err(Response::ReadOnly) => return Err(GcError::ReadOnly),
                Err(other) => {
                    return Err(GcError::Meta(MetaError::Fatal(format!(
                        "{step}: unexpected answer {other:?}"
                    ))))
                }
            }
            if batches > 1 {
                tracing::info!(
                    step,
                    batch = n + 1,
                    of = batches,
                    acted = done.len(),
                    "garbage collection progress"
                );
            }
        }
        Ok(done)
    }

    /// Deletes the bytes of every condemned generation the log lists and
    /// records them swept. Answers what was swept (with generations) and
    /// how many deletes failed.
    async fn sweep(&self) -> Result<(Vec<(Candidate, u64)>, usize), GcError> {
        let pending = self
            .meta
            .read()
            .await?
            .pending_sweeps()
            .map_err(MetaError::from)?;
        let total = pending.len();
        let deleted: Vec<_> = futures::stream::iter(pending)
            .map(|(digest, generation, size)| {
                let blobs = self.blobs.clone();
                async move {
                    let key = ObjectKey::blob_generation(&digest, generation);
                    let result = blobs.delete(&key).await;
                    if let Err(e) = &result {
                        tracing::warn!(%key, error = %e, "sweep: delete failed; the next collection retries");
                    }
                    (Candidate { digest, size }, generation, result.is_ok())
                }
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        let mut swept = Vec::new();
        let mut failures = 0;
        for (candidate, generation, ok) in deleted {
            if ok {
                swept.push((candidate, generation));
            } else {
                failures += 1;
            }
        }
        for (n, batch) in swept.chunks(BATCH).enumerate() {
            let command = Command::SweptBlobs {
                swept: batch
                    .iter()
                    .map(|(c, generation)| (c.digest.clone(), *generation))
                    .collect(),
            };
            self.meta.propose(command).await?;
            if total > BATCH {
                tracing::info!(
                    batch = n + 1,
                    swept = swept.len(),
                    of = total,
                    "garbage collection progress: sweeping"
                );
            }
        }
        self.metrics.pending_sweeps.set(failures as i64);
        Ok((swept, failures))
    }
}

fn digests_of(candidates: &[Candidate]) -> Vec<Digest> {
    candidates.iter().map(|c| c.digest.clone()).collect()
}

fn collected_blobs(answer: Response) -> Result<Vec<Digest>, Response> {
    match answer {
        Response::Collected(digests) => Ok(digests),
        other => Err(other),
    }
}

fn collected_manifests(answer: Response) -> Result<Vec<ManifestId>, Response> {
    match answer {
        Response::CollectedManifests(manifests) => Ok(manifests),
        other => Err(other),
    }
}

/// The manifest part of a collection.
struct ManifestReport {
    removed: Vec<ManifestId>,
    marked: usize,
    in_delay: usize,
}

fn removed_manifests(manifests: Vec<ManifestId>) -> Vec<RemovedManifest> {
    manifests
        .into_iter()
        .map(|(repository, digest)| RemovedManifest { repository, digest })
        .collect()
}

/// Runs `plan` over `view` on a blocking thread with a [`Pacer`]: a plan
/// reads every record of the state once.
async fn paced<T: Send + 'static>(
    view: &raft::StateView,
    plan: impl FnOnce(&raft::StateView, &mut Pacer) -> Result<T, raft::state::ApplyError>
        + Send
        + 'static,
) -> Result<T, GcError> {
    let view = view.clone();
    tokio::task::spawn_blocking(move || plan(&view, &mut Pacer::new(PLAN_REST_PER_WORK)))
        .await
        .map_err(|e| GcError::Meta(MetaError::Fatal(format!("plan: {e}"))))?
        .map_err(|e| GcError::Meta(e.into()))
}

fn dry_report(plan: Plan) -> GcReport {
    let mut removed = plan.condemn;
    removed.extend(plan.pending_sweeps.into_iter().map(|s| Candidate {
        digest: s.digest,
        size: s.size,
    }));
    GcReport {
        dry_run: true,
        bytes_reclaimed: removed.iter().map(|c| c.size).sum(),
        removed,
        hidden: plan.tombstone,
        hidden_in_grace: plan.hidden_in_grace,
        blobs_in_delay: plan.blobs_in_delay,
        ..GcReport::default()
    }
}

/// Writes the pulls this node served (and their notification events) to
/// the log every `every`, in one entry, until the node stops.
pub async fn record_pulls_forever(meta: MetaStore, pulls: api::pulls::PullLog, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let batch = pulls.take();
        let events = pulls.take_events();
        if batch.is_empty() && events.is_empty() {
            continue;
        }
        let (count, event_count) = (batch.len(), events.len());
        let command = api::events::with_events(events, Command::RecordPulls { pulls: batch });
        match meta.propose(command).await {
            Ok(_) => tracing::debug!(manifests = count, events = event_count, "pulls recorded"),
            // Lossy by design: retention may then see a pull as older, and
            // the pull events of this batch are not sent.
            Err(e) => tracing::warn!(manifests = count, events = event_count, error = %e,
                "pulls not recorded"),
        }
    }
}

/// Runs a collection every `interval` on the node that leads the cluster,
/// and one more as soon as the blobs a collection hid are past their grace.
pub async fn run_forever(collector: Arc<Collector>) {
    let config = collector.config().clone();
    let mut wait = config.interval;
    loop {
        tokio::time::sleep(wait).await;
        wait = config.interval;
        let leader = collector.meta.leader();
        if leader.is_none_or(|(id, _)| id != collector.meta.node_id()) {
            tracing::debug!("garbage collection: not the leader, skipping this pass");
            continue;
        }
        match collector.try_collect(config.dry_run).await {
            Ok(report)
                if !config.dry_run && (!report.hidden.is_empty() || report.hidden_in_grace > 0) =>
            {
                // Just past the grace, so the hidden blobs are condemned then.
                wait = wait.min(config.grace + Duration::from_secs(1));
            }
            Ok(_) => {}
            Err(GcError::ReadOnly) => {
                tracing::info!("garbage collection paused: the registry is read-only")
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_repositories_collect_unrooted_manifests_by_their_caches_ttl() {
        let config = GcConfig {
            cache_expiry: vec![
                ("hub".to_owned(), Duration::from_secs(60)),
                ("hub/slow".to_owned(), Duration::from_secs(600)),
            ],
            ..GcConfig::default()
        };
        assert!(config.orphans_only("mine/app"), "untagged is off");
        assert!(!config.orphans_only("hub/lib/app"));
        assert!(config.orphans_only("hubble/app"), "a prefix ends at a /");
        assert_eq!(
            config.cache_ttl("hub/lib/app"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            config.cache_ttl("hub/slow/app"),
            Some(Duration::from_secs(600)),
            "the longest prefix"
        );
        let everything = GcConfig {
            cache_expiry: vec![(String::new(), Duration::from_secs(1))],
            ..GcConfig::default()
        };
        assert!(!everything.orphans_only("any/repo"));
    }
}
