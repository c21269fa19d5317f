//! Raft metrics: term, leader, log and applied indexes, proposal latency,
//! and when the last snapshot was built and how long it took.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Debug, Clone)]
pub struct RaftMetrics {
    pub term: IntGauge,
    pub leader: IntGauge,
    pub is_leader: IntGauge,
    pub last_log_index: IntGauge,
    pub applied_index: IntGauge,
    pub snapshot_index: IntGauge,
    pub proposal_duration: Histogram,
    pub proposals: IntCounterVec,
    pub snapshot_last_build: Gauge,
    pub snapshot_build_duration: Gauge,
    pub leader_changes: IntCounter,
    /// Calls sent to the leader on behalf of this node's clients, by kind.
    pub forwarded: IntCounterVec,
    pub read_index_duration: Histogram,
    pub voters: IntGauge,
    pub learners: IntGauge,
    /// On the leader: how many entries each peer's log is behind its own.
    pub replication_lag: IntGaugeVec,
    /// 1 while this node reaches a majority of the voters (and so may stand
    /// for election), 0 while it is cut off.
    pub quorum_reachable: IntGauge,
}

impl RaftMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let float = |name: &str, help: &str| -> prometheus::Result<Gauge> {
            let g = Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let proposal_duration = Histogram::with_opts(
            HistogramOpts::new(
                "registry_raft_proposal_duration_seconds",
                "Time from proposing a command to its application",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 3.0, 12)?),
        )?;
        registry.register(Box::new(proposal_duration.clone()))?;
        let proposals = IntCounterVec::new(
            Opts::new(
                "registry_raft_proposals_total",
                "Commands proposed, by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(proposals.clone()))?;
        let leader_changes = IntCounter::new(
            "registry_raft_leader_changes_total",
            "Times this node saw the leader change (elections, step-downs)",
        )?;
        registry.register(Box::new(leader_changes.clone()))?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "registry_cluster_forwarded_total",
                "Writes and read-index requests this node sent to the leader",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        let read_index_duration = Histogram::with_opts(
            HistogramOpts::new(
                "registry_raft_read_index_duration_seconds",
                "Time to confirm a read index for a linearizable read",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 3.0, 12)?),
        )?;
        registry.register(Box::new(read_index_duration.clone()))?;
        let replication_lag = IntGaugeVec::new(
            Opts::new(
                "registry_raft_replication_lag_entries",
                "On the leader: log entries each peer has yet to acknowledge",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(replication_lag.clone()))?;
        Ok(RaftMetrics {
            leader_changes,
            forwarded,
            read_index_duration,
            replication_lag,
            voters: gauge("registry_raft_voters", "Voting members of the cluster")?,
            quorum_reachable: gauge(
                "registry_raft_quorum_reachable",
                "1 while this node reaches a majority of the voters, 0 while cut off",
            )?,
            learners: gauge(
                "registry_raft_learners",
                "Non-voting members (catching up before promotion)",
            )?,
            term: gauge("registry_raft_term", "Current Raft term")?,
            leader: gauge(
                "registry_raft_leader",
                "Id of the current leader (0 when none)",
            )?,
            is_leader: gauge("registry_raft_is_leader", "1 when this node leads")?,
            last_log_index: gauge(
                "registry_raft_last_log_index",
                "Index of the last log entry",
            )?,
            applied_index: gauge(
                "registry_raft_applied_index",
                "Index of the last applied entry",
            )?,
            snapshot_index: gauge(
                "registry_raft_snapshot_index",
                "Last log index in the current snapshot",
            )?,
            proposal_duration,
            proposals,
            snapshot_last_build: float(
                "registry_raft_snapshot_last_build_timestamp_seconds",
                "When this node last built a snapshot (Unix time; 0 = never)",
            )?,
            snapshot_build_duration: float(
                "registry_raft_snapshot_build_duration_seconds",
                "How long the last snapshot build took",
            )?,
        })
    }

    /// Copies openraft's own metrics into the gauges.
    pub(crate) fn observe(&self, m: &openraft::RaftMetrics<u64, crate::NodeInfo>) {
        self.term.set(m.current_term as i64);
        self.leader.set(m.current_leader.unwrap_or(0) as i64);
        self.is_leader
            .set(i64::from(m.current_leader == Some(m.id)));
        self.last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.snapshot_index
            .set(m.snapshot.map_or(0, |l| l.index) as i64);
        let membership = m.membership_config.membership();
        self.voters.set(membership.voter_ids().count() as i64);
        self.learners.set(membership.learner_ids().count() as i64);
        self.replication_lag.reset();
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (peer, matched) in replication {
                let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                self.replication_lag
                    .with_label_values(&[&peer.to_string()])
                    .set(behind as i64);
            }
        }
    }
}
