//! Purging stale uploads (distribution's `storage.maintenance.uploadpurging`):
//! an upload session older than `age` is cancelled through the log and its
//! staged parts are deleted. Runs every `interval` on the node that leads
//! the metadata cluster.

use raft::{Command, MetaStore, Response};
use std::time::Duration;
use storage::Staging;

/// When and what to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeConfig {
    pub enabled: bool,
    /// Uploads started longer ago than this are purged.
    pub age: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Log what would be purged, change nothing.
    pub dry_run: bool,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            enabled: true,
            age: Duration::from_secs(7 * 24 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    pub examined: usize,
    pub purged: usize,
    pub failed: usize,
}

/// Purges every upload that started before `now_ms - age`.
pub async fn run_once(
    meta: &MetaStore,
    staging: &Staging,
    config: &PurgeConfig,
    now_ms: u64,
) -> PurgeReport {
    let cutoff = now_ms.saturating_sub(config.age.as_millis() as u64);
    let uploads = match meta
        .read()
        .await
        .and_then(|view| view.uploads().map_err(Into::into))
    {
        Ok(uploads) => uploads,
        Err(e) => {
            tracing::warn!(error = %e, "upload purge could not read metadata");
            return PurgeReport {
                failed: 1,
                ..Default::default()
            };
        }
    };
    let mut report = PurgeReport {
        examined: uploads.len(),
        ..Default::default()
    };
    for (id, record) in uploads
        .into_iter()
        .filter(|(_, r)| r.started_at_ms < cutoff)
    {
        if config.dry_run {
            tracing::info!(upload = %id, repo = %record.repo, "upload purge (dry run) would purge");
            continue;
        }
        // Cancel first: once the log says the upload is gone, no request can
        // add to it, and the parts can go.
        match meta.propose(Command::CancelUpload { id: id.clone() }).await {
            Ok(Response::Done) | Ok(Response::UploadUnknown) => {}
            Ok(other) => {
                tracing::warn!(upload = %id, answer = ?other, "upload purge: unexpected answer");
                report.failed += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(upload = %id, error = %e, "upload purge: cancel failed");
                report.failed += 1;
                continue;
            }
        }
        let discarded = match uuid_of(&id) {
            Some(uuid) => staging.discard(&uuid).await,
            None => Ok(()),
        };
        match discarded {
            Ok(()) => report.purged += 1,
            Err(e) => {
                tracing::warn!(upload = %id, error = %e, "upload purge: staged parts remain");
                report.failed += 1;
            }
        }
    }
    report
}

fn uuid_of(id: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(id).ok()
}

/// Runs [`run_once`] at start and then every `interval` until the node stops.
pub async fn run_forever(
    meta: MetaStore,
    staging: Staging,
    config: PurgeConfig,
    metrics: crate::metrics::PurgeMetrics,
    read_only_by_config: bool,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Every node runs this loop; only the leader purges, so a cluster
        // cancels each stale upload once.
        if meta.leader().is_none_or(|(id, _)| id != meta.node_id()) {
            tracing::debug!("upload purge: not the leader, skipping this pass");
            continue;
        }
        if api::refuses_writes(read_only_by_config, &meta) {
            tracing::info!("upload purge paused: the registry is read-only");
            continue;
        }
        let started = std::time::Instant::now();
        let report = run_once(&meta, &staging, &config, api::state::now_ms()).await;
        let took = started.elapsed();
        metrics.purged.inc_by(report.purged as u64);
        metrics.failures.inc_by(report.failed as u64);
        metrics.duration.set(took.as_secs_f64());
        metrics.last_run.set(api::state::now_ms() as f64 / 1000.0);
        tracing::info!(
            examined = report.examined,
            purged = report.purged,
            failed = report.failed,
            dry_run = config.dry_run,
            millis = took.as_millis() as u64,
            "upload purge finished"
        );
    }
}
