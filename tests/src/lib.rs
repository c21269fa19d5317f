//! The test harness: real nodes started the way the binary starts them,
//! each on a listener bound first to a free loopback port, and a small OCI
//! client over reqwest for the workflows.

pub mod azurite;
pub mod balancer;
pub mod bench;
pub mod cache_bench;
pub mod cluster;
pub mod gc_bench;
pub mod gcs;
pub mod oci;
pub mod receiver;
pub mod roundtrip;
pub mod s3;
pub mod swift;
pub mod thread_server;
pub mod tls;
pub mod token_server;

pub use cluster::TestCluster;
use node::NodeConfig;
use std::path::PathBuf;

/// Which blob backend [`TestNode::start`] uses: `TEST_BLOB_BACKEND=s3` runs
/// the same tests against an S3 server (s3s-fs), with redirects off so the
/// node itself streams and honours `Range`; anything else is the filesystem.
pub fn backend_under_test() -> &'static str {
    match std::env::var("TEST_BLOB_BACKEND").as_deref() {
        Ok("s3") => "s3",
        _ => "filesystem",
    }
}

/// `TEST_AUTH=htpasswd` runs the suite with logins on: every node checks
/// an htpasswd file with one user (who may do everything), and the test
/// clients send that user's credentials on every request.
/// `TEST_AUTH=tokens` adds the built-in token service: real clients are
/// challenged for Bearer tokens and fetch them from the registry with those
/// credentials (the harness's own client still sends them as Basic, which
/// the registry keeps accepting).
pub fn auth_under_test() -> bool {
    std::env::var("TEST_AUTH").is_ok_and(|mode| mode == "htpasswd" || mode == "tokens")
}

fn token_service_under_test() -> bool {
    std::env::var("TEST_AUTH").is_ok_and(|mode| mode == "tokens")
}

/// Writes a fresh ECDSA P-256 private key (PKCS#8 PEM), as the token
/// service signs with, at `path`.
pub fn write_signing_key(path: &std::path::Path) {
    let key = rcgen::KeyPair::generate().expect("a P-256 key");
    std::fs::write(path, key.serialize_pem()).expect("write the signing key");
}

/// The built-in token service's config for a test: `key`, service
/// `registry`, tokens good for five minutes, the realm from the request.
pub fn token_service_config(key: &std::path::Path) -> api::auth::TokenServiceConfig {
    api::auth::TokenServiceConfig {
        key: key.to_owned(),
        realm: None,
        service: "registry".to_owned(),
        issuer: "registry".to_owned(),
        expiration: std::time::Duration::from_secs(300),
    }
}

/// The user and password the clients log in with under [`auth_under_test`].
pub fn credentials_under_test() -> Option<(String, String)> {
    auth_under_test().then(|| ("workflow".to_owned(), "workflow-password".to_owned()))
}

/// Writes an htpasswd file of `users` (name, password) at `path`, bcrypt
/// at the lowest cost so tests stay quick.
pub fn write_htpasswd(path: &std::path::Path, users: &[(&str, &str)]) {
    let lines: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("bcrypt")))
        .collect();
    std::fs::write(path, lines).expect("write htpasswd");
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

/// How many nodes [`TestNode::start`] runs: `TEST_CLUSTER=3` runs every
/// black-box test against a 3-node cluster behind a round-robin balancer;
/// unset, one node.
pub fn cluster_size_under_test() -> usize {
    std::env::var("TEST_CLUSTER")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// The registry a black-box test talks to: one node, or (with
/// `TEST_CLUSTER`) a cluster behind a balancer, with its data in a
/// temporary directory. Dereferences to the [`TestCluster`] for the rest.
pub struct TestNode {
    cluster: TestCluster,
    /// The htpasswd file under [`auth_under_test`].
    _auth: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestNode {
    type Target = TestCluster;
    fn deref(&self) -> &TestCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TestNode {
    fn deref_mut(&mut self) -> &mut TestCluster {
        &mut self.cluster
    }
}

impl TestNode {
    /// A node with deletes enabled on the backend under test.
    pub fn start() -> Self {
        Self::start_with(|config| config.api.delete_enabled = true)
    }

    /// A node on the backend under test, with `adjust` applied to its config.
    pub fn start_with(adjust: impl Fn(&mut NodeConfig)) -> Self {
        let s3 = (backend_under_test() == "s3").then(s3::S3Server::start);
        Self::start_on(cluster_size_under_test(), s3, |config| {
            config.api.redirect = false;
            adjust(config)
        })
    }

    /// One node whatever `TEST_CLUSTER` says, for tests of one node's own
    /// counters and probes.
    pub fn start_single() -> Self {
        let s3 = (backend_under_test() == "s3").then(s3::S3Server::start);
        Self::start_on(1, s3, |config| {
            config.api.redirect = false;
            config.api.delete_enabled = true;
        })
    }

    /// A node on S3 (s3s-fs) whatever the backend under test, with
    /// presigned redirects as configured by `adjust` (on by default).
    pub fn start_s3(adjust: impl Fn(&mut NodeConfig)) -> Self {
        Self::start_on(
            cluster_size_under_test(),
            Some(s3::S3Server::start()),
            adjust,
        )
    }

    /// A node whose blobs live in the backend `blobs` names.
    pub fn start_with_blobs(blobs: storage::BackendConfig) -> Self {
        Self::start_on(cluster_size_under_test(), None, move |config| {
            config.blobs = blobs.clone()
        })
    }

    fn start_on(nodes: usize, s3: Option<s3::S3Server>, adjust: impl Fn(&mut NodeConfig)) -> Self {
        let auth_dir = credentials_under_test().map(|(user, password)| {
            let dir = tempfile::tempdir().expect("temp dir");
            write_htpasswd(
                &dir.path().join("htpasswd"),
                &[(user.as_str(), password.as_str())],
            );
            if token_service_under_test() {
                write_signing_key(&dir.path().join("token-key.pem"));
            }
            dir
        });
        let auth = auth_dir.as_ref().map(|dir| {
            api::auth::AuthConfig::Htpasswd(api::auth::HtpasswdConfig {
                realm: "registry-tests".to_owned(),
                path: dir.path().join("htpasswd"),
                rules: Vec::new(),
                admins: Vec::new(),
                token_service: token_service_under_test()
                    .then(|| token_service_config(&dir.path().join("token-key.pem"))),
            })
        });
        TestNode {
            cluster: TestCluster::start(nodes, s3, |config| {
                config.auth = auth.clone();
                adjust(config)
            }),
            _auth: auth_dir,
        }
    }

    /// Stops the registry gracefully and starts it again on the same data
    /// and ports (a cluster restarts one node at a time).
    pub fn restart(&mut self) {
        self.cluster.rolling_restart();
    }

    /// [`TestNode::restart`] with every node's config changed by `adjust`.
    pub fn restart_with(&mut self, adjust: impl Fn(&mut NodeConfig)) {
        self.cluster.rolling_restart_with(adjust);
    }

    /// The base URL of `/metrics`, `/healthz` and `/readyz` (the first node's).
    pub fn debug_url(&self) -> String {
        self.cluster.debug_url(0)
    }

    /// A client of the registry. For a cluster it goes through the
    /// balancer on a new connection per request, so each request of a push
    /// or pull reaches the next node.
    pub fn client(&self) -> oci::Client {
        self.cluster.balanced_client()
    }
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
        std::thread::sleep(std::time::Duration::from_millis(20)); // poll interval
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

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
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
