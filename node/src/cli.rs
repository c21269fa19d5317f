//! The command line.

use clap::{Args, Parser, Subcommand};
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
        /// metadata.dir, cluster.*). Every key can be overridden by an
        /// environment variable: REGISTRY_ followed by the key path in
        /// capitals, joined by underscores, e.g. REGISTRY_HTTP_ADDR.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Inspect or change the cluster through a running node's debug listener.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Turn the cluster's read-only mode on or off, or show it: while on,
    /// pushes and deletes answer 405 UNSUPPORTED on every node and pulls
    /// keep working. Goes through the log, so every node switches at the
    /// same point; no restart.
    Readonly {
        #[arg(value_enum)]
        mode: ReadOnlyMode,
        #[command(flatten)]
        target: Target,
    },
    /// Run one garbage collection now on a running node and print its
    /// report. Unreferenced blobs not pushed within storage.gc.delay are
    /// hidden; blobs hidden for longer than storage.gc.grace have their
    /// bytes deleted. Pushes and pulls go on meanwhile.
    Gc {
        /// Only report what a collection would do now; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReadOnlyMode {
    On,
    Off,
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the members, their roles, the leader, the term, the applied
    /// index, and each member's lag and reachability.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove member ID from the cluster (voter or learner). Remove a node
    /// before scaling it away; its id may then join again with an empty disk.
    Remove {
        /// The id of the member to remove.
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// The last resort when a majority of the members is lost for good:
    /// make this node, stopped, a one-member cluster from its own data.
    /// Writes entries into its metadata directory and a new cluster id; the
    /// other members must then join again with empty metadata directories.
    /// Without --yes, prints what it would do and writes nothing.
    Recover {
        /// The config file of the stopped node to recover.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Carry out the recovery.
        #[arg(long)]
        yes: bool,
    },
}

/// Which node to ask: the one a config file describes (its
/// `http.debug.addr`), or a debug listener's address.
#[derive(Debug, Args)]
pub struct Target {
    /// The config file of the node to ask.
    #[arg(short, long, value_name = "FILE", conflicts_with = "addr")]
    pub config: Option<PathBuf>,
    /// The CA (PEM) of the debug listener's certificate, when it has
    /// `http.debug.tls`: speak HTTPS and trust only this CA.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// The node's debug listener, HOST:PORT (default 127.0.0.1:5001).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
}
