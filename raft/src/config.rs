//! The Raft section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

/// How this node stores and replicates metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id in the cluster.
    pub node_id: u64,
    /// Directory of the sled database holding the log and the state machine.
    pub data_dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout (the upper bound is twice this).
    pub election_timeout: Duration,
    /// Build a snapshot after this many log entries since the last one. The
    /// log is trimmed to the last 1000 entries after each snapshot; a long
    /// log costs memory in sled (measured in docs/performance.md).
    pub snapshot_every: u64,
}

impl RaftConfig {
    pub fn single_node(data_dir: PathBuf) -> Self {
        RaftConfig {
            node_id: 1,
            data_dir,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(250),
            snapshot_every: 2_000,
        }
    }
}
