//! The registry's replicated metadata.
//!
//! Every metadata change is one [`Command`] appended through openraft and
//! applied by the deterministic state machine in [`state`], stored in sled.
//! The crate's API is [`MetaStore`]: `propose` a command, `read` the state.
//! Blob bytes never pass through here.

pub mod codec;
pub mod command;
pub mod config;
pub mod error;
pub mod meta;
pub mod metrics;
pub mod network;
pub mod state;
pub mod store;
pub mod types;

pub use command::{BlobSource, Command, ManifestRecord, Response, UploadRecord};
pub use config::RaftConfig;
pub use error::MetaError;
pub use meta::MetaStore;
pub use metrics::RaftMetrics;
pub use state::StateView;
pub use types::{NodeId, NodeInfo, TypeConfig};
