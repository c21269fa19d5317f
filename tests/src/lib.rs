//! The test harness: real nodes started the way the binary starts them,
//! each on a listener bound first to a free loopback port, and a small OCI
//! client over reqwest for the workflows.

pub mod azurite;
pub mod bench;
pub mod gcs;
pub mod oci;
pub mod roundtrip;
pub mod s3;
pub mod swift;

use node::{Node, NodeConfig, SpawnedNode};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::faulty::{FaultSwitch, FaultyStore};

/// Which blob backend [`TestNode::start`] uses: `TEST_BLOB_BACKEND=s3` runs
/// the same tests against an S3 server (s3s-fs), with redirects off so the
/// node itself streams and honours `Range`; anything else is the filesystem.
pub fn backend_under_test() -> &'static str {
    match std::env::var("TEST_BLOB_BACKEND").as_deref() {
        Ok("s3") => "s3",
        _ => "filesystem",
    }
}

/// The Python of the venv scripts/setup makes (oras-py, the Azure SDK).
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TEST_PYTHON") {
        return python.into();
    }
    tool_cache()
        .with_file_name("registry-venv")
        .join("bin/python")
}

/// Where scripts/setup puts the tools it installs.
pub fn tool_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
        .join("registry-tools")
}

/// A single-node registry on loopback with its data in a temporary directory.
pub struct TestNode {
    node: Option<SpawnedNode>,
    /// The S3 server behind the node, when the backend is S3.
    pub s3: Option<s3::S3Server>,
    /// Makes the node's blob store fail while set.
    pub faults: FaultSwitch,
    config: NodeConfig,
    addr: SocketAddr,
    debug_addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// A node with deletes enabled on the backend under test.
    pub fn start() -> Self {
        Self::start_with(|config| config.api.delete_enabled = true)
    }

    /// A node on the backend under test, with `adjust` applied to its config.
    pub fn start_with(adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        let s3 = (backend_under_test() == "s3").then(s3::S3Server::start);
        Self::start_on(s3, |config| {
            config.api.redirect = false;
            adjust(config)
        })
    }

    /// A node on S3 (s3s-fs) whatever the backend under test, with
    /// presigned redirects as configured by `adjust` (on by default).
    pub fn start_s3(adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::start_on(Some(s3::S3Server::start()), adjust)
    }

    /// A node whose blobs live in the backend `blobs` names.
    pub fn start_with_blobs(blobs: storage::BackendConfig) -> Self {
        Self::start_on(None, |config| config.blobs = blobs)
    }

    fn start_on(s3: Option<s3::S3Server>, adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NodeConfig::single_node(dir.path());
        if let Some(server) = &s3 {
            config.blobs = storage::BackendConfig::S3(server.config());
        }
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let debug = TcpListener::bind("127.0.0.1:0").expect("bind debug");
        let addr = listener.local_addr().expect("addr");
        let debug_addr = debug.local_addr().expect("debug addr");
        config.listen = addr;
        config.debug_listen = Some(debug_addr);
        let faults = FaultSwitch::default();
        let node = spawn(&config, listener, debug, &faults);
        TestNode {
            node: Some(node),
            s3,
            faults,
            config,
            addr,
            debug_addr,
            dir,
        }
    }

    /// Stops the node gracefully and starts it again on the same data and port.
    pub fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop();
        }
        let listener = TcpListener::bind(self.addr).expect("rebind the same port");
        let debug = TcpListener::bind(self.debug_addr).expect("rebind the debug port");
        self.node = Some(spawn(&self.config, listener, debug, &self.faults));
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL of `/metrics`, `/healthz` and `/readyz`.
    pub fn debug_url(&self) -> String {
        format!("http://{}", self.debug_addr)
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

    /// The directory whose `blobs/` holds the stored blobs as files (the
    /// filesystem backend's root, or the S3 server's bucket).
    pub fn blobs_dir(&self) -> PathBuf {
        match &self.s3 {
            Some(server) => server.bucket_dir(),
            None => self.dir.path().join("blobs"),
        }
    }
}

/// Starts a node whose blob store (from `config`) fails while `faults` is set.
fn spawn(
    config: &NodeConfig,
    listener: TcpListener,
    debug: TcpListener,
    faults: &FaultSwitch,
) -> SpawnedNode {
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
    let listeners = node::Listeners {
        api: listener,
        debug: Some(debug),
    };
    Node::spawn_with_store(config.clone(), listeners, blobs).expect("node starts")
}

/// Polls `ready` every few milliseconds until it holds or `limit` passes;
/// answers whether it held. The one place the harness waits.
pub fn poll_until(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`poll_until`] for async conditions: awaits `ready()` until it holds or
/// `limit` passes; answers whether it held.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        ticks.tick().await;
        if ready().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// Waits until something listens on loopback `port`; panics naming `what` after a minute.
pub fn wait_for_port(port: u16, what: &str) {
    let listening = poll_until(std::time::Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "{what} never listened on port {port}");
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
