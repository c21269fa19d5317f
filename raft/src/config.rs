//! The Raft section of the configuration.

use crate::NodeId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How this node stores and replicates metadata, and which cluster it forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id in the cluster.
    pub node_id: NodeId,
    /// Directory of the sled database holding the log and the state machine.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval. openraft also uses it as the deadline of
    /// every append RPC, the follower's fsync included.
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout; the upper bound is
    /// 1.5× this, and is also how long a follower refuses to vote after
    /// hearing from a leader (openraft's leader lease), so failover takes
    /// between one and two upper bounds.
    pub election_timeout: Duration,
    /// Build a snapshot after this many log entries since the last one. The
    /// log is trimmed to the last 1000 entries after each snapshot; a long
    /// log costs memory in sled (measured in docs/performance.md).
    pub snapshot_every: u64,
    /// Log entries kept below each snapshot, so a follower that just
    /// installed one, or lags a little, continues from the log.
    pub log_kept_after_snapshot: u64,
    /// The initial members, this node included: id → internal address.
    /// Empty for a single node with no internal listener.
    pub peers: BTreeMap<NodeId, String>,
    /// How peers reach this node's internal listener; `None` without one.
    pub advertise: Option<String>,
    /// Shared by all nodes; every internal request carries it.
    pub secret: Option<String>,
    /// How long a write may wait for a leader and a commit before it fails.
    pub write_timeout: Duration,
    /// How long a linearizable read may wait for the leader's read index.
    pub read_timeout: Duration,
    /// The address calls to peers leave from: the internal listener's IP
    /// when it binds a specific one, so peers (and firewall rules) see this
    /// node by the address it listens on. `None` lets the system choose.
    pub source_ip: Option<std::net::IpAddr>,
    /// Links to peers that tests cut; empty in production.
    pub links: crate::rpc::LinkFaults,
    /// TLS (mutual) to peers' internal listeners; `None` for plain HTTP.
    pub peer_tls: Option<crate::rpc::PeerTls>,
}

impl RaftConfig {
    pub fn single_node(data_dir: PathBuf) -> Self {
        RaftConfig {
            node_id: 1,
            data_dir,
            heartbeat: Duration::from_millis(200),
            election_timeout: Duration::from_millis(800),
            snapshot_every: 2_000,
            log_kept_after_snapshot: 1_000,
            peers: BTreeMap::new(),
            advertise: None,
            secret: None,
            source_ip: None,
            write_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            links: crate::rpc::LinkFaults::default(),
            peer_tls: None,
        }
    }

    /// The initial members; a node with no `peers` is a cluster of itself.
    pub fn initial_members(&self) -> BTreeMap<NodeId, String> {
        if self.peers.is_empty() {
            BTreeMap::from([(self.node_id, self.advertise.clone().unwrap_or_default())])
        } else {
            self.peers.clone()
        }
    }
}
