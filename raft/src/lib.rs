//! The registry's replicated metadata.
//!
//! Every metadata change is one [`Command`] appended through openraft and
//! applied by the deterministic state machine in [`state`], stored in sled.
//! The crate's API is [`MetaStore`]: `propose` a command, `read` the state,
//! from any node of the cluster. [`server`] is the Raft side of the internal
//! listener; [`network`] its client.
//! Blob bytes never pass through here.

pub mod coalesce;
pub mod codec;
pub mod command;
pub mod config;
pub mod error;
mod formation;
pub mod gc;
pub mod identity;
mod lease;
pub mod membership;
pub mod meta;
pub mod metrics;
pub mod network;
mod quorum_watch;
pub mod recovery;
pub mod rpc;
pub mod server;
pub mod state;
pub mod store;
pub mod types;

pub use command::{
    BlobSource, Command, EventRecord, ManifestRecord, PlannedUntag, Response, UploadOwner,
    UploadRecord,
};
pub use config::RaftConfig;
pub use error::MetaError;
pub use membership::{ClusterStatus, MemberStatus};
pub use meta::MetaStore;
pub use metrics::RaftMetrics;
pub use rpc::{ClusterInfo, LeaderError, LinkFaults, PeerClient};
pub use state::StateView;
pub use types::{NodeId, NodeInfo, TypeConfig};
