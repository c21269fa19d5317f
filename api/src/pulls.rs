//! Pull times, gathered per node and written to the log in batches: one
//! entry per node every few seconds however many pulls there were, never
//! one per pull. Retention's `pulledwithin` reads them. Lossy by design: a
//! node that stops loses what it had not written yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use storage::Digest;

/// Pull events a node holds for its next batch at most; beyond, new ones
/// are dropped (and counted) rather than memory growing while the log
/// cannot be written.
pub const MAX_PENDING_PULL_EVENTS: usize = 10_000;

/// The pulls this node served since the last batch, latest time each, and
/// their notification events.
#[derive(Debug, Clone, Default)]
pub struct PullLog {
    pending: Arc<Mutex<HashMap<(String, Digest), u64>>>,
    events: Arc<Mutex<Vec<raft::EventRecord>>>,
    /// Counts pull events dropped because a batch was full.
    dropped_events: Option<prometheus::IntCounter>,
}

impl PullLog {
    /// A log whose dropped pull events are counted in `dropped_events`.
    pub fn counting_dropped_events(dropped_events: Option<prometheus::IntCounter>) -> Self {
        PullLog {
            dropped_events,
            ..PullLog::default()
        }
    }

    pub fn record(&self, repo: &str, manifest: &Digest, at_ms: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let at = pending
            .entry((repo.to_owned(), manifest.clone()))
            .or_default();
        *at = (*at).max(at_ms);
    }

    /// Keeps a pull's event for the next batch, unless the batch is full.
    pub fn record_event(&self, event: raft::EventRecord) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() < MAX_PENDING_PULL_EVENTS {
            events.push(event);
        } else if let Some(dropped) = &self.dropped_events {
            dropped.inc();
        }
    }

    /// The pull events recorded since the last call, in the order served.
    pub fn take_events(&self) -> Vec<raft::EventRecord> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> Vec<(String, Digest, u64)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .drain()
            .map(|((repo, digest), at)| (repo, digest, at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_pull_of_each_manifest_once() {
        let log = PullLog::default();
        let d = Digest::sha256_of(b"m");
        log.record("a", &d, 5);
        log.record("a", &d, 3);
        log.record("b", &d, 1);
        let mut taken = log.take();
        taken.sort();
        assert_eq!(taken, vec![("a".into(), d.clone(), 5), ("b".into(), d, 1)]);
        assert!(log.take().is_empty());
    }
}
