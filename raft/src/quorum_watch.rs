//! Pre-vote, approximated: a node that cannot reach a majority of the
//! voters does not stand for election.
//!
//! openraft 0.9 has no Pre-Vote. Without it, a follower cut off from the
//! others times out, stands for election again and again, and raises its
//! term each time; when the partition heals, its higher term makes the
//! healthy leader step down for nothing. So every node pings the other
//! voters a few times per election timeout and switches its own elections
//! off while fewer than a majority (itself included) have answered lately.
//! A dead leader does not switch anyone off: the surviving majority still
//! reach each other.

use crate::meta::MetaStore;
use crate::rpc::{path, ClusterInfo};
use crate::NodeId;
use std::collections::HashMap;
use std::time::Instant;

impl MetaStore {
    pub(crate) fn spawn_quorum_watch(&self) {
        let store = self.clone();
        let election = self.inner.config.election_timeout;
        // Pings every fifth of the election timeout; a peer silent for
        // three quarters of it counts as unreachable, so an isolated node
        // switches elections off before its first election timer fires.
        let every = election / 5;
        let fresh_for = election * 3 / 4;
        tokio::spawn(async move {
            let mut last_answer: HashMap<NodeId, Instant> = HashMap::new();
            let mut electing = true;
            let mut peer_answers: std::collections::HashMap<NodeId, bool> = Default::default();
            let started = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let me = store.node_id();
                let voters: Vec<(NodeId, String)> = {
                    let m = store.inner.raft.metrics();
                    let m = m.borrow();
                    let membership = m.membership_config.membership();
                    membership
                        .voter_ids()
                        .filter_map(|id| Some((id, membership.get_node(&id)?.raft_addr.clone())))
                        .collect()
                };
                let pings = voters.iter().filter(|(id, _)| *id != me).map(|(id, addr)| {
                    let store = store.clone();
                    async move {
                        let answer: Result<ClusterInfo, _> =
                            store.peers().call(*id, addr, path::INFO, &(), every).await;
                        (*id, answer.is_ok())
                    }
                });
                let now = Instant::now();
                for (id, ok) in futures::future::join_all(pings).await {
                    if ok {
                        last_answer.insert(id, now);
                    }
                    // Once per change, not per failed RPC (openraft's own
                    // per-RPC errors are dropped by the node's log filter).
                    match peer_answers.insert(id, ok) {
                        Some(false) if ok => tracing::info!(peer = id, "peer answers again"),
                        Some(true) | None if !ok => {
                            tracing::warn!(peer = id, "peer does not answer")
                        }
                        _ => {}
                    }
                }
                let reachable = 1 + voters
                    .iter()
                    .filter(|(id, _)| *id != me)
                    .filter(|(id, _)| {
                        last_answer
                            .get(id)
                            .is_some_and(|at| now.duration_since(*at) < fresh_for)
                    })
                    .count();
                let quorum = voters.len() / 2 + 1;
                // Right after start nobody has answered yet; let formation elect.
                let warming_up = started.elapsed() < fresh_for;
                let elect = voters.len() <= 1 || reachable >= quorum || warming_up;
                store.inner.metrics.quorum_reachable.set(i64::from(elect));
                if elect != electing {
                    if elect {
                        tracing::info!(
                            reachable,
                            quorum,
                            "a majority is reachable again; standing for election when needed"
                        );
                    } else {
                        tracing::warn!(
                            reachable,
                            quorum,
                            "cannot reach a majority of the voters; not standing for election"
                        );
                    }
                    store.inner.raft.runtime_config().elect(elect);
                    electing = elect;
                }
            }
        });
    }
}
