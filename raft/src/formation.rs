//! Cluster formation, in any start order, and the node's housekeeping once
//! it is a member.
//!
//! A node that already has a Raft log does nothing: a restart never
//! re-initializes. A pristine node asks every configured peer about itself
//! (`/cluster/info`) until one of these holds:
//!
//! * some peer belongs to an initialized cluster: if that cluster lists this
//!   node, its leader replicates to it, so it waits; if the cluster also
//!   records this node as having joined with data, the disk was wiped and
//!   the node refuses to start; otherwise it asks the leader to add it
//!   (learner, then voter);
//! * every peer answered, as the node id it is listed under, and every one
//!   is pristine: the peer with the lowest id (only it) initializes the
//!   cluster with all of them.
//!
//! Peers that do not answer are waited for, never counted as pristine.

use crate::command::Command;
use crate::error::MetaError;
use crate::identity::{self, Identity};
use crate::meta::MetaStore;
use crate::rpc::{path, CallError, ClusterInfo, JoinRequest, JoinResult, LeaderError};
use crate::NodeId;
use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a forming node logs whom it is still waiting for.
const REPORT_EVERY: Duration = Duration::from_secs(10);
const INFO_DEADLINE: Duration = Duration::from_secs(2);
const JOIN_DEADLINE: Duration = Duration::from_secs(150);

impl MetaStore {
    /// Returns once this node belongs to an initialized cluster (a leader
    /// may still be being elected), then keeps its identity and membership
    /// record up to date in the background. Fails with `Refused` when the
    /// node must not take part (see the module docs).
    pub async fn form(&self) -> Result<(), MetaError> {
        self.join_or_initialize().await?;
        self.spawn_housekeeping();
        Ok(())
    }

    async fn is_initialized(&self) -> Result<bool, MetaError> {
        self.raft()
            .is_initialized()
            .await
            .map_err(|e| MetaError::Fatal(e.to_string()))
    }

    async fn join_or_initialize(&self) -> Result<(), MetaError> {
        if self.is_initialized().await? {
            self.accept_raft(true);
            return Ok(());
        }
        let me = self.node_id();
        if let Some(identity) = self.recorded_identity() {
            return Err(MetaError::Refused(format!(
                "{} records node {me} of cluster {} but holds no Raft log: this node's metadata \
                 was lost. Remove it from the cluster (registry cluster remove {me}) and start it \
                 with an empty metadata directory, or restore the directory",
                self.inner.config.data_dir.display(),
                identity.cluster_id
            )));
        }
        let members = self.inner.config.initial_members();
        if !members.contains_key(&me) {
            return Err(MetaError::Refused(format!(
                "cluster.peers does not list this node ({me})"
            )));
        }
        if members.len() == 1 {
            return self
                .initialize(BTreeMap::from([(me, self.node_info().clone())]))
                .await;
        }
        let mut last_report = Instant::now();
        loop {
            if self.is_initialized().await? {
                self.accept_raft(true);
                tracing::info!(node = me, "this node is a member of the cluster");
                return Ok(());
            }
            let answers = self.ask_peers(&members).await;
            let mut waiting = Vec::new();
            let mut pristine = BTreeMap::new();
            let mut formed: Option<ClusterInfo> = None;
            for (id, addr, answer) in answers {
                match answer {
                    Ok(info) if info.node_id != id => {
                        waiting.push(format!("{addr} answers as node {}, not {id}", info.node_id))
                    }
                    Ok(info) if info.initialized => formed = Some(info),
                    Ok(info) => {
                        pristine.insert(id, info.node);
                    }
                    Err(e) => waiting.push(format!("node {id} at {addr}: {e}")),
                }
            }
            if let Some(cluster) = formed {
                self.join_formed(&cluster).await?;
            } else if waiting.is_empty() && members.keys().next() == Some(&me) {
                pristine.insert(me, self.node_info().clone());
                return self.initialize(pristine).await;
            }
            if !waiting.is_empty() && last_report.elapsed() >= REPORT_EVERY {
                tracing::info!(?waiting, "forming the cluster: waiting for peers");
                last_report = Instant::now();
            }
            let jitter = uuid::Uuid::new_v4().as_u128() % 300;
            tokio::time::sleep(Duration::from_millis(300 + jitter as u64)).await;
        }
    }

    async fn ask_peers(
        &self,
        members: &BTreeMap<NodeId, String>,
    ) -> Vec<(NodeId, String, Result<ClusterInfo, CallError>)> {
        let me = self.node_id();
        futures::future::join_all(members.iter().filter(|(id, _)| **id != me).map(
            |(id, addr)| async move {
                let answer = self
                    .peers()
                    .call(*id, addr, path::INFO, &(), INFO_DEADLINE)
                    .await;
                (*id, addr.clone(), answer)
            },
        ))
        .await
    }

    /// This pristine node and an initialized cluster: wait to be replicated
    /// to, refuse (a wiped disk), or ask to join.
    async fn join_formed(&self, cluster: &ClusterInfo) -> Result<(), MetaError> {
        let me = self.node_id();
        let listed = cluster.voters.contains(&me) || cluster.learners.contains(&me);
        if listed && cluster.joined.contains(&me) {
            return Err(MetaError::Refused(format!(
                "node {me} is a member of cluster {} with data of its own, but its metadata \
                 directory {} is empty (a wiped or replaced disk). Remove the member first \
                 (registry cluster remove {me}) and start again, or give this node a new \
                 cluster.nodeid",
                cluster.cluster_id.as_deref().unwrap_or("(unnamed)"),
                self.inner.config.data_dir.display()
            )));
        }
        if listed {
            // The leader replicates to a listed member; let it.
            self.accept_raft(true);
            return Ok(());
        }
        let Some((leader, node)) = cluster
            .leader
            .and_then(|l| cluster.nodes.get(&l).map(|n| (l, n.clone())))
        else {
            return Ok(());
        };
        tracing::info!(
            node = me,
            leader,
            "asking the cluster's leader to add this node"
        );
        // The leader starts replicating as soon as it adds the learner.
        self.accept_raft(true);
        let request = JoinRequest {
            node_id: me,
            node: self.node_info().clone(),
        };
        let answer: Result<JoinResult, _> = self
            .peers()
            .call(leader, &node.raft_addr, path::JOIN, &request, JOIN_DEADLINE)
            .await;
        match answer {
            Ok(Ok(())) => {
                tracing::info!(node = me, "joined the cluster as a voter");
                Ok(())
            }
            Ok(Err(LeaderError::Refused(why))) => Err(MetaError::Refused(why)),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "join not done yet; retrying");
                Ok(())
            }
            Err(e) => {
                tracing::info!(error = %e, "join not done yet; retrying");
                Ok(())
            }
        }
    }

    async fn initialize(
        &self,
        members: BTreeMap<NodeId, crate::NodeInfo>,
    ) -> Result<(), MetaError> {
        let ids: Vec<NodeId> = members.keys().copied().collect();
        self.accept_raft(true);
        match self.raft().initialize(members).await {
            Ok(()) => {
                tracing::info!(members = ?ids, "initialized a new cluster");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(MetaError::Fatal(format!("initialize the cluster: {e}"))),
        }
    }

    pub(crate) fn recorded_identity(&self) -> Option<Identity> {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Once the cluster is named: record the identity on disk, record this
    /// node as holding data, and (as leader) keep this node's address in
    /// the membership current. Runs for the life of the store.
    fn spawn_housekeeping(&self) {
        let store = self.clone();
        let mut changes = self.raft().metrics();
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.housekeeping_pass().await {
                    tracing::warn!(error = %e, "cluster housekeeping");
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    async fn housekeeping_pass(&self) -> Result<(), MetaError> {
        let Some(cluster_id) = self.local_view().cluster_id()? else {
            return Ok(());
        };
        let me = self.node_id();
        if self.recorded_identity().is_none() {
            let identity = Identity {
                cluster_id: cluster_id.clone(),
                node_id: me,
            };
            identity::store(&self.inner.config.data_dir, &identity).map_err(|e| {
                MetaError::Fatal(format!(
                    "record identity in {}: {e}",
                    self.inner.config.data_dir.display()
                ))
            })?;
            self.peers().set_cluster_id(&cluster_id);
            *self
                .inner
                .identity
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(identity);
            tracing::info!(cluster = %cluster_id, node = me, "this node belongs to the cluster");
        }
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let member =
            membership.voter_ids().any(|v| v == me) || membership.learner_ids().any(|l| l == me);
        if member && !self.local_view().member_joined(me)? && m.current_leader.is_some() {
            self.propose(Command::MemberJoined { node: me }).await?;
        }
        if m.current_leader == Some(me)
            && membership
                .get_node(&me)
                .is_some_and(|n| n != self.node_info())
        {
            tracing::info!(node = me, info = %self.node_info(), "updating this node's address in the membership");
            let _one_at_a_time = self.inner.membership_changes.lock().await;
            self.raft()
                .change_membership(
                    ChangeMembers::SetNodes(BTreeMap::from([(me, self.node_info().clone())])),
                    true,
                )
                .await
                .map_err(|e| MetaError::Unavailable(format!("update this node's address: {e}")))?;
        }
        Ok(())
    }

    /// Names the cluster if nobody has yet; only the first name applied
    /// counts. Returns the name in force.
    pub async fn name_cluster(&self, id: String) -> Result<String, MetaError> {
        self.propose(Command::SetClusterId { id }).await?;
        self.read()
            .await?
            .cluster_id()?
            .ok_or_else(|| MetaError::Fatal("the cluster id was not applied".to_owned()))
    }
}
