//! `MetaStore`: the crate's API. Propose a command from any node; read the
//! state after a linearizability check, so a read on any node sees every
//! write acknowledged before it began.
//!
//! * A write on a follower is forwarded to the leader over the internal port
//!   (one [`Command`] per call, never the HTTP request). Every proposal is
//!   wrapped in [`Command::Once`] with a fresh request id, so retrying after
//!   a lost answer or a leader change cannot apply it twice; the retries stop
//!   at `write_timeout`, and the caller gets `Unavailable`.
//! * A read takes a read index (the leader's commit index, confirmed by a
//!   heartbeat quorum) and waits until this node has applied it. On a
//!   follower the index comes from the leader over the internal port.
//!   Concurrent reads share one round ([`crate::coalesce`]).

use crate::coalesce::Coalescer;
use crate::command::{Command, Response};
use crate::config::RaftConfig;
use crate::error::MetaError;
use crate::identity::{self, Identity};
use crate::lease::Leases;
use crate::network::HttpNetwork;
use crate::rpc::{self, path, LeaderError, PeerClient, ProposeResult, ReadIndexResult, RpcMetrics};
use crate::state::{ApplyError, StateView};
use crate::types::{NodeInfo, Raft};
use crate::NodeId;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a caller pauses before retrying a proposal or read that found
/// no leader, or a leader that had just stepped down.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct MetaStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) raft: Raft,
    pub(crate) view: StateView,
    pub(crate) node_id: NodeId,
    pub(crate) node: NodeInfo,
    pub(crate) metrics: crate::RaftMetrics,
    pub(crate) peers: PeerClient,
    pub(crate) config: RaftConfig,
    /// The identity recorded in the metadata directory, once known.
    pub(crate) identity: std::sync::Mutex<Option<Identity>>,
    /// Read-index rounds this node runs as leader.
    leader_reads: Arc<Coalescer<Result<u64, LeaderError>>>,
    /// Read-index rounds this node asks the leader for, as follower.
    follower_reads: Arc<Coalescer<Result<u64, MetaError>>>,
    /// Membership changes run one at a time (concurrent ones can leave a joint config).
    pub(crate) membership_changes: tokio::sync::Mutex<()>,
    /// Whether Raft RPCs are answered. A pristine node answers none until
    /// formation has found it safe: a node whose disk was wiped must not
    /// tell the leader it has nothing (openraft's leader panics when a
    /// follower's log goes backwards).
    pub(crate) accepting_raft: std::sync::atomic::AtomicBool,
    /// Local reads of present content, and the leader's delete fence.
    pub(crate) leases: Leases,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("node_id", &self.inner.node_id)
            .finish()
    }
}

impl From<ApplyError> for MetaError {
    fn from(e: ApplyError) -> Self {
        MetaError::Fatal(e.to_string())
    }
}

impl MetaStore {
    /// Opens the metadata store under `config.data_dir` and starts Raft.
    /// The node answers Raft calls from then on, but belongs to a cluster only
    /// after [`MetaStore::form`]; `api_addr` is where it serves the OCI API.
    pub async fn open(
        config: &RaftConfig,
        api_addr: String,
        registry: &prometheus::Registry,
    ) -> Result<Self, MetaError> {
        let metrics = crate::RaftMetrics::new(registry)
            .map_err(|e| MetaError::Fatal(format!("register raft metrics: {e}")))?;
        let rpc_metrics = RpcMetrics::new(registry)
            .map_err(|e| MetaError::Fatal(format!("register rpc metrics: {e}")))?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| MetaError::Fatal(format!("create {}: {e}", config.data_dir.display())))?;
        let identity = identity::load(&config.data_dir, config.node_id)?;
        let (log, sm) = crate::store::open(&config.data_dir)
            .map_err(|e| MetaError::Fatal(format!("open {}: {e}", config.data_dir.display())))?;
        let sm = sm.with_metrics(metrics.clone());
        let view = sm.view();
        let peers = PeerClient::new(
            config.node_id,
            config.secret.clone(),
            config.source_ip,
            config.links.clone(),
            rpc_metrics,
            config.peer_tls.as_ref(),
        )
        .map_err(|e| MetaError::Fatal(format!("peer client: {e}")))?;
        if let Some(identity) = &identity {
            peers.set_cluster_id(&identity.cluster_id);
        }
        let heartbeat = config.heartbeat.as_millis() as u64;
        let election_ms = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "registry".to_owned(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 3 / 2,
            // A snapshot chunk's deadline also covers installing the last
            // one into sled; openraft's 200 ms default loops forever on
            // anything but a tiny state.
            install_snapshot_timeout: 10_000.max(election_ms * 4),
            snapshot_max_chunk_size: 1 << 20,
            // Each append RPC must finish within one heartbeat, follower
            // fsync included, so keep batches modest (manifests are up to 4 MiB).
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.log_kept_after_snapshot,
            replication_lag_threshold: config.snapshot_every * 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Fatal(format!("raft config: {e}")))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            HttpNetwork::new(peers.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| MetaError::Fatal(format!("start raft: {e}")))?;
        let node = NodeInfo {
            raft_addr: config.advertise.clone().unwrap_or_else(|| api_addr.clone()),
            api_addr,
        };
        let store = MetaStore {
            inner: Arc::new(Inner {
                raft,
                view,
                node_id: config.node_id,
                node,
                metrics,
                peers,
                config: config.clone(),
                identity: std::sync::Mutex::new(identity),
                leader_reads: Arc::default(),
                follower_reads: Arc::default(),
                membership_changes: tokio::sync::Mutex::new(()),
                accepting_raft: std::sync::atomic::AtomicBool::new(false),
                leases: Leases::new(config.election_timeout),
            }),
        };
        let initialized = store
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| MetaError::Fatal(e.to_string()))?;
        store.accept_raft(initialized);
        store.spawn_metrics_observer();
        store.spawn_quorum_watch();
        Ok(store)
    }

    fn spawn_metrics_observer(&self) {
        let mut watch = self.inner.raft.metrics();
        let gauges = self.inner.metrics.clone();
        let store = self.clone();
        tokio::spawn(async move {
            let mut last_leader = None;
            let mut last_voters = Vec::new();
            loop {
                let (leader, voters) = {
                    let m = watch.borrow_and_update();
                    gauges.observe(&m);
                    let voters: Vec<NodeId> =
                        m.membership_config.membership().voter_ids().collect();
                    if m.current_leader == Some(store.inner.node_id) {
                        store.inner.leases.leading(m.current_term);
                    }
                    (m.current_leader, voters)
                };
                if leader != last_leader {
                    gauges.leader_changes.inc();
                    match leader {
                        Some(id) => tracing::info!(leader = id, "raft leader changed"),
                        None => tracing::info!("raft has no leader"),
                    }
                    last_leader = leader;
                }
                if voters != last_voters {
                    tracing::info!(?voters, "raft membership changed");
                    last_voters = voters;
                }
                if watch.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Whether this node answers Raft RPCs (see `Inner::accepting_raft`).
    pub fn accepts_raft(&self) -> bool {
        self.inner
            .accepting_raft
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn accept_raft(&self, accept: bool) {
        if accept {
            self.inner
                .accepting_raft
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// How peers and clients reach this node.
    pub fn node_info(&self) -> &NodeInfo {
        &self.inner.node
    }

    /// The shared client for calls to peers.
    pub fn peers(&self) -> &PeerClient {
        &self.inner.peers
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The current leader and how to reach it, as this node knows.
    pub fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Waits until some node leads the cluster.
    pub async fn await_leader(&self, deadline: Duration) -> Result<(), MetaError> {
        self.inner
            .raft
            .wait(Some(deadline))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map(|_| ())
            .map_err(|e| MetaError::Unavailable(format!("no leader elected: {e}")))
    }

    /// The voting members and how to reach them, in id order.
    pub fn voters(&self) -> Vec<(NodeId, NodeInfo)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| Some((id, membership.get_node(&id)?.clone())))
            .collect()
    }

    /// How to reach member `id`, if it is one.
    pub fn member(&self, id: NodeId) -> Option<NodeInfo> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Appends `command` to the log (through the leader, wherever it is) and
    /// returns what applying it answered.
    pub async fn propose(&self, command: Command) -> Result<Response, MetaError> {
        let timer = self.inner.metrics.proposal_duration.start_timer();
        let once = Command::Once {
            request_id: uuid::Uuid::new_v4().as_u128(),
            command: Box::new(command),
        };
        let deadline = Instant::now() + self.inner.config.write_timeout;
        let result = match self.propose_until(once, deadline).await {
            Ok(Response::ReadOnly) => Err(MetaError::ReadOnly(
                "writes are refused until `registry readonly off`".to_owned(),
            )),
            other => other,
        };
        timer.observe_duration();
        let outcome = match &result {
            Ok(response) if response.acted() => "done",
            Ok(_) => "rejected",
            Err(_) => "failed",
        };
        self.inner
            .metrics
            .proposals
            .with_label_values(&[outcome])
            .inc();
        result
    }

    async fn propose_until(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<Response, MetaError> {
        let mut last = String::from("no leader elected");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(MetaError::Unavailable(format!(
                    "the write was not committed in time: {last}"
                )));
            }
            match self.leader() {
                None => last = "no leader elected".to_owned(),
                Some((id, _)) if id == self.inner.node_id => {
                    match tokio::time::timeout(remaining, self.propose_as_leader(command.clone()))
                        .await
                    {
                        Err(_) => last = "no quorum acknowledged the write".to_owned(),
                        Ok(Ok(response)) => return Ok(response),
                        Ok(Err(LeaderError::Fatal(e))) => return Err(MetaError::Fatal(e)),
                        Ok(Err(e)) => last = e.to_string(),
                    }
                }
                Some((id, node)) => {
                    let answer: Result<ProposeResult, _> = self
                        .inner
                        .peers
                        .call(id, &node.raft_addr, path::PROPOSE, &command, remaining)
                        .await;
                    self.inner
                        .metrics
                        .forwarded
                        .with_label_values(&["write"])
                        .inc();
                    match answer {
                        Ok(Ok(response)) => return Ok(response),
                        Ok(Err(LeaderError::Fatal(e))) => return Err(MetaError::Fatal(e)),
                        Ok(Err(e)) => last = format!("leader {id}: {e}"),
                        // The outcome is unknown; the retry carries the same
                        // request id, so it cannot apply twice.
                        Err(e) => last = format!("leader {id}: {e}"),
                    }
                }
            }
            tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
        }
    }

    /// Proposes on this node, which must lead. Serves forwarded proposals too.
    pub(crate) async fn propose_as_leader(&self, command: Command) -> ProposeResult {
        let retracts = command.retracts_content();
        match self.inner.raft.client_write(command).await {
            Ok(written) => {
                if retracts && written.data.acted() {
                    self.fence(written.log_id.index).await;
                }
                Ok(written.data)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(LeaderError::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(LeaderError::Fatal(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(LeaderError::Fatal(e.to_string())),
        }
    }

    /// The state, once it reflects every write committed before this call.
    pub async fn read(&self) -> Result<&StateView, MetaError> {
        let timer = self.inner.metrics.read_index_duration.start_timer();
        let started = Instant::now();
        let index = self.read_index().await;
        timer.observe_duration();
        let index = index?;
        let applied = self.applied_index();
        if applied < Some(index) {
            let remaining = self
                .inner
                .config
                .read_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(100));
            self.inner
                .raft
                .wait(Some(remaining))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|e| {
                    MetaError::Unavailable(format!(
                        "this node is not caught up with the leader: {e}"
                    ))
                })?;
        }
        self.inner.leases.renew(started);
        Ok(&self.inner.view)
    }

    /// The local state while this node holds a read lease (see
    /// [`crate::lease`]): good for content addressed by digest that it
    /// holds. A miss proves nothing; fall back to [`MetaStore::read`].
    pub fn leased_view(&self) -> Option<&StateView> {
        self.inner.leases.holds().then_some(&self.inner.view)
    }

    /// As leader, after committing entry `index` that retracts content:
    /// returns once no other member can serve that content from a lease,
    /// because it applied `index` or its lease ran out.
    async fn fence(&self, index: u64) {
        let m = self.metrics();
        let term = m.current_term;
        let me = self.inner.node_id;
        let members: Vec<(NodeId, NodeInfo)> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        futures::future::join_all(members.into_iter().map(|(id, node)| async move {
            let expiry = self.inner.leases.expiry_of(id, term);
            let remaining = expiry.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return;
            }
            let confirmed: Result<bool, _> = self
                .inner
                .peers
                .call(id, &node.raft_addr, path::APPLIED, &index, remaining)
                .await;
            if !matches!(confirmed, Ok(true)) {
                tokio::time::sleep_until(expiry.into()).await;
            }
        }))
        .await;
    }

    /// Whether this node applied `index` within `deadline` (a leader's fence asks).
    pub(crate) async fn await_applied(&self, index: u64, deadline: Duration) -> bool {
        let deadline = deadline.min(self.inner.leases.expiry_wait());
        self.inner
            .raft
            .wait(Some(deadline))
            .applied_index_at_least(Some(index), "a delete's fence")
            .await
            .is_ok()
    }

    /// As leader: `node` starts a read round, which renews its lease.
    pub(crate) fn grant_lease(&self, node: NodeId) {
        self.inner.leases.grant(node);
    }

    fn applied_index(&self) -> Option<u64> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
    }

    /// A read index valid for a read that starts now.
    async fn read_index(&self) -> Result<u64, MetaError> {
        if self
            .leader()
            .is_some_and(|(id, _)| id == self.inner.node_id)
        {
            match self.leader_read_index().await {
                Ok(index) => return Ok(index),
                Err(LeaderError::NotLeader(_)) => {}
                Err(LeaderError::Fatal(e)) => return Err(MetaError::Fatal(e)),
                Err(e) => return Err(MetaError::Unavailable(e.to_string())),
            }
        }
        let store = self.clone();
        self.inner
            .follower_reads
            .run(move || {
                let store = store.clone();
                async move { store.remote_read_index().await }
            })
            .await
            .unwrap_or_else(|| Err(MetaError::Unavailable("the read round was lost".to_owned())))
    }

    /// Asks the leader (whichever it is by then) for a read index, retrying
    /// through leader changes until `read_timeout`.
    async fn remote_read_index(&self) -> Result<u64, MetaError> {
        let deadline = Instant::now() + self.inner.config.read_timeout;
        let mut last = String::from("no leader elected");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(MetaError::Unavailable(format!(
                    "cannot confirm this node is up to date: {last}"
                )));
            }
            match self.leader() {
                None => last = "no leader elected".to_owned(),
                Some((id, _)) if id == self.inner.node_id => match self.leader_read_index().await {
                    Ok(index) => return Ok(index),
                    Err(LeaderError::Fatal(e)) => return Err(MetaError::Fatal(e)),
                    Err(e) => last = e.to_string(),
                },
                Some((id, node)) => {
                    self.inner
                        .metrics
                        .forwarded
                        .with_label_values(&["read_index"])
                        .inc();
                    let answer: Result<ReadIndexResult, _> = self
                        .inner
                        .peers
                        .call(
                            id,
                            &node.raft_addr,
                            path::READ_INDEX,
                            &self.inner.node_id,
                            remaining,
                        )
                        .await;
                    match answer {
                        Ok(Ok(index)) => return Ok(index),
                        Ok(Err(LeaderError::Fatal(e))) => return Err(MetaError::Fatal(e)),
                        Ok(Err(e)) => last = format!("leader {id}: {e}"),
                        Err(e) => last = format!("leader {id}: {e}"),
                    }
                }
            }
            tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
        }
    }

    /// The read index as leader: the commit index once a quorum has
    /// confirmed this node still leads. Serves followers' requests too.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, LeaderError> {
        let raft = self.inner.raft.clone();
        let deadline = self.inner.config.read_timeout;
        self.inner
            .leader_reads
            .run(move || {
                let raft = raft.clone();
                async move {
                    match tokio::time::timeout(deadline, raft.get_read_log_id()).await {
                        Err(_) => Err(LeaderError::Unavailable(
                            "no quorum confirmed the leader in time".to_owned(),
                        )),
                        Ok(Ok((read_log_id, _))) => Ok(read_log_id.map_or(0, |l| l.index)),
                        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                            Err(LeaderError::NotLeader(f.leader_id))
                        }
                        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                            Err(LeaderError::Unavailable(e.to_string()))
                        }
                        Ok(Err(RaftError::Fatal(e))) => Err(LeaderError::Fatal(e.to_string())),
                    }
                }
            })
            .await
            .unwrap_or_else(|| {
                Err(LeaderError::Unavailable(
                    "the read round was lost".to_owned(),
                ))
            })
    }

    /// The local state without a leadership check: for content addressed by
    /// digest (immutable once present) and background tasks that tolerate
    /// staleness.
    pub fn local_view(&self) -> &StateView {
        &self.inner.view
    }

    /// Current Raft metrics (term, leader, indexes).
    pub fn metrics(&self) -> openraft::RaftMetrics<u64, NodeInfo> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Waits until this node's Raft state moves (an entry applied, a term or
    /// leader change) or `at_most` passes, whichever is first: background
    /// tasks that follow the log wake on new entries instead of polling.
    pub async fn moved_within(&self, at_most: std::time::Duration) {
        let mut watch = self.inner.raft.metrics();
        watch.borrow_and_update();
        let _ = tokio::time::timeout(at_most, watch.changed()).await;
    }

    /// Stops Raft; the log and state are flushed.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// What this node knows of itself and its cluster.
    pub fn info(&self) -> rpc::ClusterInfo {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        rpc::ClusterInfo {
            node_id: self.inner.node_id,
            node: self.inner.node.clone(),
            cluster_id: self.cluster_id(),
            initialized: m.vote.leader_id().term > 0
                || m.last_log_index.is_some()
                || membership.voter_ids().next().is_some(),
            leader: m.current_leader,
            term: m.current_term,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            joined: self.inner.view.joined_members().unwrap_or_default(),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
        }
    }

    /// The cluster id this node knows: recorded on disk, or applied.
    pub fn cluster_id(&self) -> Option<String> {
        let recorded = self
            .inner
            .identity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|i| i.cluster_id.clone());
        recorded.or_else(|| self.inner.view.cluster_id().ok().flatten())
    }
}
