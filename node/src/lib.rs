//! The registry node: configuration, wiring of storage, Raft and the API, and
//! the HTTP server. The binary and the tests start nodes through [`Node`].

pub mod admin;
mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod debug;
pub mod gc;
mod internal;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
mod proxy_config;
pub mod purge;
pub mod tls;

pub use config::{load, ConfigError, NodeConfig};
pub use node::{Listeners, Node, NodeError, SpawnedNode};
