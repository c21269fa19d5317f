//! The test harness: real nodes started the way the binary starts them,
//! each on a listener bound first to a free loopback port, and a small OCI
//! client over reqwest for the workflows.

pub mod oci;

use node::{Node, NodeConfig, SpawnedNode};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::faulty::{FaultSwitch, FaultyStore};

/// A single-node registry on loopback with its data in a temporary directory.
pub struct TestNode {
    node: Option<SpawnedNode>,
    /// Makes the node's blob store fail while set.
    pub faults: FaultSwitch,
    config: NodeConfig,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// A node with deletes enabled and filesystem storage.
    pub fn start() -> Self {
        Self::start_with(|config| config.api.delete_enabled = true)
    }

    pub fn start_with(adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NodeConfig::single_node(dir.path());
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        config.listen = addr;
        let faults = FaultSwitch::default();
        let node = spawn(&config, listener, &faults);
        TestNode {
            node: Some(node),
            faults,
            config,
            addr,
            dir,
        }
    }

    /// Stops the node gracefully and starts it again on the same data and port.
    pub fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop();
        }
        let listener = TcpListener::bind(self.addr).expect("rebind the same port");
        self.node = Some(spawn(&self.config, listener, &self.faults));
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn client(&self) -> oci::Client {
        oci::Client::new(self.base_url())
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }
}

/// Starts a node whose blob store (from `config`) fails while `faults` is set.
fn spawn(config: &NodeConfig, listener: TcpListener, faults: &FaultSwitch) -> SpawnedNode {
    // Opened on a thread of its own: callers may be inside a tokio runtime.
    let inner = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(storage::backends::open(&config.blobs))
        })
        .join()
        .expect("open thread")
    })
    .expect("open blob store");
    let blobs = Arc::new(FaultyStore::new(inner, faults.clone()));
    Node::spawn_with_store(config.clone(), listener, blobs).expect("node starts")
}

/// Logs go to the test's output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
