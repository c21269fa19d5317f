//! The command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// A container registry implementing the OCI Distribution Specification v1.1,
/// with metadata replicated by Raft.
#[derive(Debug, Parser)]
#[command(name = "registry", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the registry. With no config it serves on 0.0.0.0:5000, keeping
    /// metadata in ./data/meta and blobs in ./data/blobs.
    Serve {
        /// A YAML config file shaped like distribution's (http.addr,
        /// storage.filesystem.rootdirectory, storage.delete.enabled, log.level,
        /// metadata.dir). Every key can be overridden by an environment
        /// variable: REGISTRY_ followed by the key path in capitals, joined by
        /// underscores, e.g. REGISTRY_HTTP_ADDR.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}
