//! Pull times, gathered per node and written to the log in batches: one
//! entry per node every few seconds however many pulls there were, never
//! one per pull. Retention's `pulledwithin` reads them. Lossy by design: a
//! node that stops loses what it had not written yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use storage::Digest;

/// The pulls this node served since the last batch, latest time each.
#[derive(Debug, Clone, Default)]
pub struct PullLog {
    pending: Arc<Mutex<HashMap<(String, Digest), u64>>>,
}

impl PullLog {
    pub fn record(&self, repo: &str, manifest: &Digest, at_ms: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let at = pending
            .entry((repo.to_owned(), manifest.clone()))
            .or_default();
        *at = (*at).max(at_ms);
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
