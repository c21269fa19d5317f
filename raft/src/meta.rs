//! `MetaStore`: the crate's API. Propose a command; read the state after a
//! linearizability check, so a read sees every write acknowledged before it.

use crate::command::{Command, Response};
use crate::config::RaftConfig;
use crate::error::MetaError;
use crate::network::SingleNodeNetwork;
use crate::state::{ApplyError, StateView};
use crate::types::{NodeInfo, Raft};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a starting node waits to become leader of its one-member cluster.
const ELECTION_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct MetaStore {
    raft: Raft,
    view: StateView,
    node_id: u64,
    metrics: crate::RaftMetrics,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl From<ApplyError> for MetaError {
    fn from(e: ApplyError) -> Self {
        MetaError::Fatal(e.to_string())
    }
}

impl MetaStore {
    /// Opens the metadata store under `config.data_dir`, starts Raft, and
    /// bootstraps a one-member cluster on first start. Returns once this node leads.
    pub async fn open(
        config: &RaftConfig,
        node: NodeInfo,
        registry: &prometheus::Registry,
    ) -> Result<Self, MetaError> {
        let metrics = crate::RaftMetrics::new(registry)
            .map_err(|e| MetaError::Fatal(format!("register raft metrics: {e}")))?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| MetaError::Fatal(format!("create {}: {e}", config.data_dir.display())))?;
        let (log, sm) = crate::store::open(&config.data_dir)
            .map_err(|e| MetaError::Fatal(format!("open {}: {e}", config.data_dir.display())))?;
        let sm = sm.with_metrics(metrics.clone());
        let view = sm.view();
        let election_ms = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "registry".to_owned(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Fatal(format!("raft config: {e}")))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            SingleNodeNetwork,
            log,
            sm,
        )
        .await
        .map_err(|e| MetaError::Fatal(format!("start raft: {e}")))?;

        let members = BTreeMap::from([(config.node_id, node)]);
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(node = config.node_id, "bootstrapped a one-member cluster"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(MetaError::Fatal(format!("bootstrap: {e}"))),
        }
        raft.wait(Some(ELECTION_DEADLINE))
            .current_leader(config.node_id, "this node leads its cluster")
            .await
            .map_err(|e| MetaError::Unavailable(format!("no leader elected: {e}")))?;
        let mut watch = raft.metrics();
        let gauges = metrics.clone();
        tokio::spawn(async move {
            loop {
                gauges.observe(&watch.borrow_and_update());
                if watch.changed().await.is_err() {
                    break;
                }
            }
        });
        Ok(MetaStore {
            raft,
            view,
            node_id: config.node_id,
            metrics,
        })
    }

    /// Appends `command` to the log and returns what applying it answered.
    pub async fn propose(&self, command: Command) -> Result<Response, MetaError> {
        let timer = self.metrics.proposal_duration.start_timer();
        let result = self.propose_inner(command).await;
        timer.observe_duration();
        let outcome = match &result {
            Ok(Response::Done) => "done",
            Ok(_) => "rejected",
            Err(_) => "failed",
        };
        self.metrics.proposals.with_label_values(&[outcome]).inc();
        result
    }

    async fn propose_inner(&self, command: Command) -> Result<Response, MetaError> {
        match self.raft.client_write(command).await {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(
                MetaError::Unavailable(format!("not the leader (leader: {:?})", f.leader_id)),
            ),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(MetaError::Fatal(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(MetaError::Fatal(e.to_string())),
        }
    }

    /// The state, once it reflects every write committed before this call.
    pub async fn read(&self) -> Result<&StateView, MetaError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(&self.view),
            Err(RaftError::APIError(e)) => Err(MetaError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(MetaError::Fatal(e.to_string())),
        }
    }

    /// The local state without a leadership check, for background tasks that tolerate staleness.
    pub fn local_view(&self) -> &StateView {
        &self.view
    }

    /// Current Raft metrics (term, leader, indexes).
    pub fn metrics(&self) -> openraft::RaftMetrics<u64, NodeInfo> {
        self.raft.metrics().borrow().clone()
    }

    /// Stops Raft; the log and state are flushed.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
