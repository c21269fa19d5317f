//! `registry cluster recover`: the last resort when a majority of the
//! cluster is lost for good. Run offline on a stopped survivor, it appends
//! two entries to that node's own log:
//!
//! 1. a membership of this node alone, so on start it is a one-member
//!    cluster that elects itself and commits everything it holds;
//! 2. [`Command::Recovered`]: a new cluster id (so lost members that come
//!    back with their old data are refused instead of voting in the old
//!    configuration) and the end of every other member's record as holding
//!    data (so they may join again with empty disks).
//!
//! Whatever the lost majority committed that this node never received is
//! gone; that is why this is a last resort, and why the plan says how far
//! this node's log reaches before anything is written.

use crate::command::Command;
use crate::error::MetaError;
use crate::identity::{self, Identity};
use crate::types::{Entry, LogId, NodeInfo};
use crate::NodeId;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What recovering this node does, computed before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub node_id: NodeId,
    pub node: NodeInfo,
    /// The members this node knew besides itself, which the new cluster drops.
    pub dropped: Vec<NodeId>,
    pub old_cluster_id: Option<String>,
    pub new_cluster_id: String,
    /// The last entry this node holds (everything after it is lost).
    pub last_log_index: u64,
    pub last_applied_index: Option<u64>,
    /// The term the recovery entries are written in.
    pub term: u64,
}

impl std::fmt::Display for RecoveryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "node {} ({}) becomes the only member of cluster {} (was {})",
            self.node_id,
            self.node,
            self.new_cluster_id,
            self.old_cluster_id.as_deref().unwrap_or("unnamed")
        )?;
        writeln!(f, "members dropped: {:?}", self.dropped)?;
        write!(
            f,
            "this node's log ends at index {} (applied {}); anything the lost members committed \
             after that is gone",
            self.last_log_index,
            self.last_applied_index
                .map_or("nothing".to_owned(), |i| i.to_string())
        )
    }
}

/// A stopped node's metadata directory, opened (and locked) for recovery.
pub struct Recovery {
    dir: std::path::PathBuf,
    node_id: NodeId,
    identity: Option<Identity>,
    log: crate::store::LogStore,
    sm: crate::store::StateMachine,
}

impl Recovery {
    /// Opens the metadata directory of stopped node `node_id`. Fails when the
    /// directory is in use, holds nothing, or belongs to another node.
    pub fn open(dir: &Path, node_id: NodeId) -> Result<Self, MetaError> {
        // Opening creates a database where there is none; refuse first.
        match std::fs::metadata(dir.join("db")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MetaError::Refused(format!(
                    "{} holds no metadata: there is nothing to recover from",
                    dir.display()
                )))
            }
            Err(e) => return Err(fatal(dir, e)),
            Ok(_) => {}
        }
        let identity = identity::load(dir, node_id)?;
        let (log, sm) = crate::store::open(dir).map_err(|e| {
            MetaError::Refused(format!(
                "cannot open {} ({e}); stop the node before recovering it",
                dir.display()
            ))
        })?;
        Ok(Recovery {
            dir: dir.to_owned(),
            node_id,
            identity,
            log,
            sm,
        })
    }

    /// What recovering does (with a fresh cluster id); writes nothing.
    pub async fn plan(&mut self) -> Result<RecoveryPlan, MetaError> {
        let dir = self.dir.clone();
        let me = self.node_id;
        let state = self.log.get_log_state().await.map_err(|e| fatal(&dir, e))?;
        let Some(last) = state.last_log_id else {
            return Err(MetaError::Refused(format!(
                "{} holds no Raft log: this node never joined a cluster",
                dir.display()
            )));
        };
        let vote = self.log.read_vote().await.map_err(|e| fatal(&dir, e))?;
        let (applied, applied_membership) =
            self.sm.applied_state().await.map_err(|e| fatal(&dir, e))?;
        // The membership in force is the last one in the log, else the applied one.
        let entries = self
            .log
            .try_get_log_entries(..)
            .await
            .map_err(|e| fatal(&dir, e))?;
        let membership = entries
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                EntryPayload::Membership(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_else(|| applied_membership.membership().clone());
        let Some(node) = membership.get_node(&me).cloned() else {
            return Err(MetaError::Refused(format!(
                "node {me} is not a member of the cluster its metadata describes"
            )));
        };
        let dropped: Vec<NodeId> = membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| *id != me)
            .collect();
        if dropped.is_empty() {
            return Err(MetaError::Refused(format!(
                "node {me} is already the only member of its cluster: nothing to recover"
            )));
        }
        let term = vote
            .map_or(0, |v| v.leader_id().term)
            .max(last.leader_id.term)
            + 1;
        let old_cluster_id = self
            .identity
            .as_ref()
            .map(|i| i.cluster_id.clone())
            .or_else(|| self.sm.view().cluster_id().ok().flatten());
        Ok(RecoveryPlan {
            node_id: me,
            node,
            dropped,
            old_cluster_id,
            new_cluster_id: uuid::Uuid::new_v4().to_string(),
            last_log_index: last.index,
            last_applied_index: applied.map(|l| l.index),
            term,
        })
    }
}

impl Recovery {
    /// Carries out `plan` (from [`Recovery::plan`] on this same directory):
    /// appends the recovery entries and records the new cluster id.
    pub async fn carry_out(mut self, plan: &RecoveryPlan) -> Result<(), MetaError> {
        let dir = self.dir.clone();
        let node_id = self.node_id;
        let membership = Membership::new(
            vec![BTreeSet::from([node_id])],
            BTreeMap::from([(node_id, plan.node.clone())]),
        );
        let leader = CommittedLeaderId::new(plan.term, node_id);
        let entries = [
            Entry {
                log_id: LogId::new(leader, plan.last_log_index + 1),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: LogId::new(leader, plan.last_log_index + 2),
                payload: EntryPayload::Normal(Command::Recovered {
                    cluster_id: plan.new_cluster_id.clone(),
                    survivor: node_id,
                }),
            },
        ];
        self.log
            .append_offline(&entries)
            .map_err(|e| fatal(&dir, e))?;
        // An uncommitted vote of the recovery term: on start the node times
        // out as a follower and elects itself in the next term, the only voter.
        self.log
            .save_vote(&Vote::new(plan.term, node_id))
            .await
            .map_err(|e| fatal(&dir, e))?;
        identity::store(
            &dir,
            &Identity {
                cluster_id: plan.new_cluster_id.clone(),
                node_id,
            },
        )
        .map_err(|e| fatal(&dir, e))?;
        tracing::warn!(node = node_id, cluster = %plan.new_cluster_id, dropped = ?plan.dropped, "recovered as a one-member cluster");
        Ok(())
    }
}

fn fatal(dir: &Path, e: impl std::fmt::Display) -> MetaError {
    MetaError::Fatal(format!("recover {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetaStore, RaftConfig};
    use std::time::Duration;

    #[tokio::test]
    async fn an_empty_directory_is_refused_and_left_empty() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        assert!(matches!(
            Recovery::open(&meta, 1),
            Err(MetaError::Refused(_))
        ));
        assert!(std::fs::metadata(&meta).is_err(), "nothing was created");
    }

    /// A node of a 3-member cluster whose peers are gone: recovered, it
    /// leads alone, under a new cluster id, and commits writes again.
    #[tokio::test]
    async fn a_member_of_a_lost_cluster_leads_alone_after_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RaftConfig::single_node(dir.path().join("meta"));
        config.election_timeout = Duration::from_millis(300);
        config.heartbeat = Duration::from_millis(100);
        config.write_timeout = Duration::from_millis(1500);
        let node = |port: u16| NodeInfo {
            api_addr: format!("127.0.0.1:{port}"),
            raft_addr: format!("127.0.0.1:{port}"),
        };
        // The log `initialize` leaves: the first membership, at index 0.
        {
            let (log, _sm) = crate::store::open(&config.data_dir).unwrap();
            let members = Membership::new(
                vec![BTreeSet::from([1, 2, 3])],
                BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
            );
            log.append_offline(&[Entry {
                log_id: LogId::new(CommittedLeaderId::new(0, 0), 0),
                payload: EntryPayload::Membership(members),
            }])
            .unwrap();
        }
        let mut recovery = Recovery::open(&config.data_dir, 1).unwrap();
        let plan = recovery.plan().await.unwrap();
        assert_eq!(plan.dropped, vec![2, 3]);
        recovery.carry_out(&plan).await.unwrap();

        let registry = prometheus::Registry::new();
        let store = MetaStore::open(&config, "127.0.0.1:1".into(), &registry)
            .await
            .unwrap();
        store.await_leader(Duration::from_secs(10)).await.unwrap();
        store
            .propose(Command::MemberJoined { node: 1 })
            .await
            .unwrap();
        let view = store.read().await.unwrap();
        assert_eq!(
            view.cluster_id().unwrap().as_deref(),
            Some(plan.new_cluster_id.as_str())
        );
        assert_eq!(view.joined_members().unwrap(), vec![1]);
        assert_eq!(
            store.cluster_id().as_deref(),
            Some(plan.new_cluster_id.as_str())
        );
        let voters: Vec<NodeId> = store
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        assert_eq!(voters, vec![1]);
        let again = Recovery::open(&config.data_dir, 1);
        assert!(again.is_err(), "the running node's directory is locked");
        store.shutdown().await;
    }
}
