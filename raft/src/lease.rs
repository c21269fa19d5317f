//! Read leases: content addressed by digest that a node holds locally is
//! served without a round trip to the leader, and a delete of such content
//! is acknowledged only once no node can still serve it.
//!
//! * Every read round (a read index confirmed by a leader's heartbeat
//!   quorum, then applied here) grants this node a lease of one election
//!   timeout, counted from when the read began. While it lasts, a digest
//!   that is present in the local state may be served from it.
//! * The leader notes when it answered each node's read round (before
//!   computing the index, so a round racing a delete returns an index that
//!   covers the delete). After committing a delete, and before answering
//!   it, the leader waits for every other member either to confirm it has
//!   applied the delete or to have let its lease run out: 1.25 leases after
//!   its last round with that leader, or after this leader took office,
//!   whichever is later (a lease granted by the previous leader started
//!   before the election that ended it).
//!
//! Absent content is never trusted locally (it may just not have arrived
//! yet): a miss falls back to a full read.

use crate::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Leases {
    /// How long a read round lets this node serve present content locally.
    pub(crate) length: Duration,
    /// Until when this node's own lease lasts.
    own: Mutex<Option<Instant>>,
    /// As leader: when each node last started a read round with this node.
    granted: Mutex<HashMap<NodeId, Instant>>,
    /// The term this node leads and since when, as far as it noticed.
    office: Mutex<Option<(u64, Instant)>>,
}

impl Leases {
    pub(crate) fn new(length: Duration) -> Self {
        Leases {
            length,
            own: Mutex::new(None),
            granted: Mutex::new(HashMap::new()),
            office: Mutex::new(None),
        }
    }

    /// How long past a grant (or taking office) the leader waits for a node
    /// that does not confirm a delete: the lease, with room for clock drift.
    pub(crate) fn expiry_wait(&self) -> Duration {
        self.length * 5 / 4
    }

    /// A read that began at `started` succeeded and is applied here.
    pub(crate) fn renew(&self, started: Instant) {
        let until = started + self.length;
        let mut own = lock(&self.own);
        if own.is_none_or(|current| current < until) {
            *own = Some(until);
        }
    }

    pub(crate) fn holds(&self) -> bool {
        lock(&self.own).is_some_and(|until| Instant::now() < until)
    }

    /// As leader: `node` starts a read round now.
    pub(crate) fn grant(&self, node: NodeId) {
        lock(&self.granted).insert(node, Instant::now());
    }

    /// Notes that this node leads `term` (called whenever it sees itself lead).
    pub(crate) fn leading(&self, term: u64) {
        let mut office = lock(&self.office);
        if office.is_none_or(|(t, _)| t != term) {
            *office = Some((term, Instant::now()));
            lock(&self.granted).clear();
        }
    }

    /// As leader of `term`: the moment after which `node` can no longer
    /// serve from a lease it held before this call.
    pub(crate) fn expiry_of(&self, node: NodeId, term: u64) -> Instant {
        let now = Instant::now();
        let since = match *lock(&self.office) {
            Some((t, since)) if t == term => since,
            // Not yet noticed as leader of this term: count from now.
            _ => now,
        };
        let granted = lock(&self.granted).get(&node).copied();
        granted.map_or(since, |g| g.max(since)) + self.expiry_wait()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_its_length_from_the_start_of_the_read() {
        let leases = Leases::new(Duration::from_millis(200));
        assert!(!leases.holds());
        leases.renew(Instant::now());
        assert!(leases.holds());
        leases.renew(Instant::now() - Duration::from_secs(1));
        assert!(leases.holds(), "an older read does not shorten the lease");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!leases.holds());
    }

    #[test]
    fn a_new_term_counts_every_lease_from_taking_office() {
        let leases = Leases::new(Duration::from_millis(100));
        let wait = leases.expiry_wait();
        let before = Instant::now();
        leases.leading(3);
        let fresh = leases.expiry_of(2, 3);
        assert!(fresh >= before + wait, "unknown grants count from office");
        std::thread::sleep(Duration::from_millis(20));
        leases.grant(2);
        assert!(leases.expiry_of(2, 3) >= fresh + Duration::from_millis(20));
        leases.leading(4);
        assert!(
            leases.expiry_of(2, 4) >= Instant::now() + wait - Duration::from_millis(5),
            "grants of an earlier term are forgotten, office counts"
        );
        assert!(
            leases.expiry_of(2, 5) >= Instant::now() + wait - Duration::from_millis(5),
            "a term not yet noticed counts from now"
        );
    }
}
