//! openraft type configuration.

use crate::command::{Command, Response};
use std::fmt;

pub type NodeId = u64;

/// How to reach a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The public OCI API address.
    pub api_addr: String,
    /// The internal address that serves Raft RPCs.
    pub raft_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api={} raft={}", self.api_addr, self.raft_addr)
    }
}

openraft::declare_raft_types!(
    /// The registry's Raft types.
    pub TypeConfig:
        D = Command,
        R = Response,
        Node = NodeInfo,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
