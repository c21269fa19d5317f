//! Membership changes, run on the leader one at a time: a node joins as a
//! learner and becomes a voter once it has caught up; a member is removed.
//! Also the cluster status that `registry cluster status` prints.

use crate::command::Command;
use crate::meta::MetaStore;
use crate::rpc::{path, ClusterInfo, JoinRequest, JoinResult, LeaderError};
use crate::NodeId;
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a learner may take to catch up before its join fails (it may
/// ask again; the learner stays and keeps replicating meanwhile).
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);
/// A learner this close to the leader's log is promoted.
const CAUGHT_UP_ENTRIES: u64 = 64;

/// One member as `registry cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    pub raft_addr: String,
    pub api_addr: String,
    pub reachable: bool,
    pub applied_index: Option<u64>,
    /// Recorded as holding the cluster's data on its own disk.
    pub joined: bool,
    /// Entries behind the leader's log, when both are known.
    pub lag: Option<u64>,
    pub error: Option<String>,
}

/// The cluster as seen from the node asked.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The cluster's runtime read-only mode (`registry readonly on|off`).
    #[serde(default)]
    pub read_only: bool,
    /// The last entry in the asked node's latest snapshot.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// The asked node's log starts after this entry (older ones are in the snapshot).
    #[serde(default)]
    pub purged_index: Option<u64>,
    /// SHA-256 of the asked node's replicated state at `applied_index`
    /// (taken while nothing is being applied, it matches every node's at
    /// the same index).
    pub state_fingerprint: Option<String>,
    pub members: Vec<MemberStatus>,
}

impl MetaStore {
    fn is_leader(&self) -> bool {
        self.leader().is_some_and(|(id, _)| id == self.node_id())
    }

    fn not_leader(&self) -> LeaderError {
        LeaderError::NotLeader(self.leader().map(|(id, _)| id))
    }

    /// Makes the node in `request` a voter: as a learner first, promoted
    /// once it has caught up. Idempotent; must run on the leader.
    pub(crate) async fn add_member(&self, request: JoinRequest) -> JoinResult {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let _one_at_a_time = self.inner.membership_changes.lock().await;
        let id = request.node_id;
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        let is_learner = membership.learner_ids().any(|l| l == id);
        if !is_learner && self.local_view().member_joined(id).unwrap_or(false) {
            return Err(LeaderError::Refused(format!(
                "node {id} was a member with data of its own and is not one now; give this node \
                 a new cluster.nodeid, or remove the old member first (registry cluster remove {id})"
            )));
        }
        if !is_learner {
            tracing::info!(node = id, addr = %request.node.raft_addr, "adding a learner");
            self.raft()
                .add_learner(id, request.node.clone(), false)
                .await
                .map_err(|e| LeaderError::Unavailable(format!("add learner {id}: {e}")))?;
        }
        let deadline = Instant::now() + CATCH_UP_DEADLINE;
        loop {
            let m = self.metrics();
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |l| l.index);
            if last.saturating_sub(matched) <= CAUGHT_UP_ENTRIES {
                break;
            }
            if m.current_leader != Some(self.node_id()) {
                return Err(self.not_leader());
            }
            if Instant::now() >= deadline {
                return Err(LeaderError::Unavailable(format!(
                    "learner {id} is still {} entries behind",
                    last.saturating_sub(matched)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(node = id, "promoting a caught-up learner to voter");
        self.raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| LeaderError::Unavailable(format!("promote {id}: {e}")))?;
        Ok(())
    }

    /// Removes member `id` (voter or learner) from the cluster, through the
    /// leader wherever it is, and forgets that it held data.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), LeaderError> {
        if !self.is_leader() {
            let Some((leader, node)) = self.leader() else {
                return Err(LeaderError::Unavailable("no leader elected".to_owned()));
            };
            let answer: Result<Result<(), LeaderError>, _> = self
                .peers()
                .call(
                    leader,
                    &node.raft_addr,
                    path::REMOVE,
                    &id,
                    Duration::from_secs(30),
                )
                .await;
            return answer
                .map_err(|e| LeaderError::Unavailable(format!("leader {leader}: {e}")))?;
        }
        let _one_at_a_time = self.inner.membership_changes.lock().await;
        let membership = self.metrics().membership_config.membership().clone();
        let change = if membership.voter_ids().any(|v| v == id) {
            if membership.voter_ids().count() == 1 {
                return Err(LeaderError::Refused(format!(
                    "node {id} is the only voter; a cluster cannot remove its last member"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.learner_ids().any(|l| l == id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(LeaderError::Refused(format!("node {id} is not a member")));
        };
        tracing::info!(node = id, "removing a member");
        self.raft()
            .change_membership(change, false)
            .await
            .map_err(|e| LeaderError::Unavailable(format!("remove {id}: {e}")))?;
        self.propose(Command::MemberRemoved { node: id })
            .await
            .map_err(|e| LeaderError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Members, roles, leader, term, indexes, and each member's lag and
    /// reachability (each member is asked, one second each at most).
    pub async fn status(&self) -> ClusterStatus {
        let me = self.info();
        let infos = futures::future::join_all(me.nodes.iter().map(|(id, node)| {
            let store = self.clone();
            let (id, addr) = (*id, node.raft_addr.clone());
            async move {
                if id == store.node_id() {
                    return (id, Ok(store.info()));
                }
                let answer: Result<ClusterInfo, _> = store
                    .peers()
                    .call(id, &addr, path::INFO, &(), Duration::from_secs(1))
                    .await;
                (id, answer.map_err(|e| e.to_string()))
            }
        }))
        .await;
        let infos: BTreeMap<NodeId, Result<ClusterInfo, String>> = infos.into_iter().collect();
        let leader_log = me.leader.and_then(|leader| match infos.get(&leader) {
            Some(Ok(info)) => info.last_log_index,
            _ => None,
        });
        let members = me
            .nodes
            .iter()
            .map(|(id, node)| {
                let info = infos.get(id);
                let applied = match info {
                    Some(Ok(info)) => info.applied_index,
                    _ => None,
                };
                let role = if me.leader == Some(*id) {
                    "leader"
                } else if me.voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                };
                MemberStatus {
                    id: *id,
                    role: role.to_owned(),
                    raft_addr: node.raft_addr.clone(),
                    api_addr: node.api_addr.clone(),
                    reachable: matches!(info, Some(Ok(_))),
                    applied_index: applied,
                    joined: me.joined.contains(id),
                    lag: leader_log.zip(applied).map(|(l, a)| l.saturating_sub(a)),
                    error: match info {
                        Some(Err(e)) => Some(e.clone()),
                        _ => None,
                    },
                }
            })
            .collect();
        let raft_metrics = self.metrics();
        let view = self.local_view().clone();
        let fingerprint = tokio::task::spawn_blocking(move || view.fingerprint())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|d| d.to_string());
        ClusterStatus {
            node_id: me.node_id,
            cluster_id: me.cluster_id,
            leader: me.leader,
            term: me.term,
            last_log_index: me.last_log_index,
            applied_index: self.info().applied_index,
            read_only: self.local_view().read_only().unwrap_or(false),
            snapshot_index: raft_metrics.snapshot.map(|l| l.index),
            purged_index: raft_metrics.purged.map(|l| l.index),
            state_fingerprint: fingerprint,
            members,
        }
    }
}
