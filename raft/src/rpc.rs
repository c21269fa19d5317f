//! The internal wire between nodes: paths, headers, message types, and the
//! one pooled HTTP client every call to a peer goes through.
//!
//! Bodies are bincode (the crate's [`codec`](crate::codec)) over
//! `application/octet-stream`. Every request carries the cluster secret, the
//! id of the node it is meant for, and the sender's cluster id once known;
//! the receiver checks all three ([`crate::server`]), so a request that
//! reaches the wrong node or the wrong cluster is refused rather than
//! obeyed.

use crate::codec::{decode, encode};
use crate::command::{Command, Response};
use crate::types::NodeInfo;
use crate::NodeId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const SECRET_HEADER: &str = "x-registry-cluster-secret";
pub const CLUSTER_HEADER: &str = "x-registry-cluster-id";
pub const TARGET_HEADER: &str = "x-registry-target-node";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The routes of the internal listener that this crate serves.
pub mod path {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const READ_INDEX: &str = "/raft/read-index";
    pub const APPLIED: &str = "/raft/applied";
    pub const PROPOSE: &str = "/raft/propose";
    pub const INFO: &str = "/cluster/info";
    pub const JOIN: &str = "/cluster/join";
    pub const REMOVE: &str = "/cluster/remove";
}

/// What a node says about itself and, as far as it knows, its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClusterInfo {
    pub node_id: NodeId,
    pub node: NodeInfo,
    pub cluster_id: Option<String>,
    /// Raft has a log or a vote: this node belongs to a cluster.
    pub initialized: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Members recorded as holding the data on their own disk.
    pub joined: Vec<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
}

/// A node asking the leader to make it a member.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub node: NodeInfo,
}

/// Why a proposal, read index or membership change was not done by the
/// node asked. `NotLeader` is definite: nothing was proposed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
pub enum LeaderError {
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Fatal(String),
}

pub type ProposeRequest = Command;
pub type ProposeResult = Result<Response, LeaderError>;
pub type ReadIndexResult = Result<u64, LeaderError>;
pub type JoinResult = Result<(), LeaderError>;

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Nothing reached the peer: it refused or did not accept the connection.
    #[error("peer unreachable: {0}")]
    Connect(String),
    /// The call was sent but no answer came in time; it may have taken effect.
    #[error("peer did not answer in time")]
    Timeout,
    /// The connection broke or the answer was not ours.
    #[error("{0}")]
    Transport(String),
    /// The peer refused the call itself (wrong secret, node or cluster).
    #[error("peer refused the call ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// Timing and outcome of peer calls, labelled by peer and call.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    pub duration: prometheus::HistogramVec,
    pub errors: prometheus::IntCounterVec,
}

impl RpcMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "registry_cluster_rpc_duration_seconds",
                "Time of calls to peers, by peer and call",
            )
            .buckets(prometheus::exponential_buckets(0.0002, 3.0, 11)?),
            &["peer", "rpc"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_cluster_rpc_errors_total",
                "Failed calls to peers, by peer, call and kind",
            ),
            &["peer", "rpc", "kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        Ok(RpcMetrics { duration, errors })
    }
}

/// Links between nodes that tests cut, to partition a cluster in one
/// process. A cut `(from, to)` makes every call from `from` to `to` fail as
/// if `to` accepted no connection; answers to calls the other way still
/// arrive, so one-way partitions are expressible. Empty in production.
#[derive(Debug, Clone, Default)]
pub struct LinkFaults {
    cut: Arc<RwLock<std::collections::BTreeSet<(NodeId, NodeId)>>>,
}

impl PartialEq for LinkFaults {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cut, &other.cut)
    }
}

impl Eq for LinkFaults {}

impl LinkFaults {
    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, std::collections::BTreeSet<(NodeId, NodeId)>> {
        self.cut
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls from `from` to `to` fail.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.write().insert((from, to));
    }

    /// `node` and the others cannot call each other.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        let mut cut = self.write();
        for other in others {
            cut.insert((node, other));
            cut.insert((other, node));
        }
    }

    pub fn heal(&self) {
        self.write().clear();
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&(from, to))
    }
}

/// The pooled client for every call to a peer. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    /// `https` with `cluster.tls`, else `http`.
    scheme: &'static str,
    /// This node, the caller of every call.
    me: NodeId,
    links: LinkFaults,
    secret: Option<Arc<str>>,
    /// This node's cluster id once known, sent so a peer of another cluster refuses.
    cluster_id: Arc<RwLock<Option<String>>>,
    metrics: RpcMetrics,
}

/// The rustls config calls to peers use (`cluster.tls`): the CAs peers'
/// certificates must chain to, and this node's certificate as the client's.
#[derive(Clone)]
pub struct PeerTls(pub Arc<rustls::ClientConfig>);

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// Configs compare by identity: the same loaded config, or not.
impl PartialEq for PeerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PeerTls {}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(
        me: NodeId,
        secret: Option<String>,
        source_ip: Option<std::net::IpAddr>,
        links: LinkFaults,
        metrics: RpcMetrics,
        tls: Option<&PeerTls>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .local_address(source_ip)
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls.0));
        }
        let http = builder.build()?;
        Ok(PeerClient {
            http,
            scheme: if tls.is_some() { "https" } else { "http" },
            me,
            links,
            secret: secret.map(Arc::from),
            cluster_id: Arc::default(),
            metrics,
        })
    }

    /// The URL of `path` on the peer whose internal listener is `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// The client, for callers that stream their own requests (forwarded
    /// uploads); pair it with [`PeerClient::headers`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether a test cut the link from this node to `target`.
    pub fn link_cut(&self, target: NodeId) -> bool {
        self.links.is_cut(self.me, target)
    }

    /// The headers that make a request to `target` acceptable to it.
    pub fn headers(&self, target: NodeId) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = &self.secret {
            if let Ok(value) = secret.parse() {
                headers.insert(SECRET_HEADER, value);
            }
        }
        if let Ok(value) = target.to_string().parse() {
            headers.insert(TARGET_HEADER, value);
        }
        if let Some(id) = self.cluster_id() {
            if let Ok(value) = id.parse() {
                headers.insert(CLUSTER_HEADER, value);
            }
        }
        headers
    }

    pub fn set_cluster_id(&self, id: &str) {
        let mut known = self
            .cluster_id
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.as_deref() != Some(id) {
            *known = Some(id.to_owned());
        }
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends `request` to `path` on the node `target` at `addr` and decodes
    /// its answer, within `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let rpc = path.rsplit('/').next().unwrap_or(path);
        let peer = target.to_string();
        let started = Instant::now();
        let result = self.call_inner(target, addr, path, request, timeout).await;
        self.metrics
            .duration
            .with_label_values(&[&peer, rpc])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            let kind = match e {
                CallError::Connect(_) => "unreachable",
                CallError::Timeout => "timeout",
                CallError::Transport(_) => "transport",
                CallError::Refused { .. } => "refused",
            };
            self.metrics
                .errors
                .with_label_values(&[&peer, rpc, kind])
                .inc();
        }
        result
    }

    async fn call_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        if self.link_cut(target) {
            return Err(CallError::Connect(format!(
                "the link to node {target} is cut"
            )));
        }
        let body = encode(request).map_err(|e| CallError::Transport(e.to_string()))?;
        let sent = self
            .http
            .post(self.url(addr, path))
            .headers(self.headers(target))
            .header(reqwest::header::CONTENT_TYPE, OCTET_STREAM)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(classify)?;
        let status = sent.status();
        let bytes = sent.bytes().await.map_err(classify)?;
        if !status.is_success() {
            return Err(CallError::Refused {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).trim().to_owned(),
            });
        }
        decode(&bytes).map_err(|e| CallError::Transport(format!("undecodable answer: {e}")))
    }
}

fn classify(e: reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError::Connect(e.to_string())
    } else if e.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Transport(e.to_string())
    }
}
