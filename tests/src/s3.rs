//! An S3 server on loopback for tests: `s3s-fs` (installed by scripts/setup),
//! which verifies SigV4 signatures and keeps objects as plain files.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const BUCKET: &str = "test";
pub const ACCESS_KEY: &str = "registry-test-key";
pub const SECRET_KEY: &str = "registry-test-secret";

/// The s3s-fs binary: `S3S_FS_BIN`, or where scripts/setup installs it.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("S3S_FS_BIN") {
        return bin.into();
    }
    crate::tool_cache().join("s3s/bin/s3s-fs")
}

pub struct S3Server {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server with one empty bucket, [`BUCKET`].
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = S3Server {
            port,
            dir,
            child: None,
        };
        server.resume();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the bucket's objects lie on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(BUCKET)
    }

    /// The node config section for this server.
    pub fn config(&self) -> storage::config::S3Config {
        storage::config::S3Config {
            bucket: BUCKET.to_owned(),
            region: Some("us-east-1".to_owned()),
            endpoint: Some(self.endpoint()),
            force_path_style: true,
            access_key: Some(ACCESS_KEY.to_owned()),
            secret_key: Some(SECRET_KEY.to_owned()),
            chunk_size: storage::config::MIN_CHUNK_SIZE,
            ..Default::default()
        }
    }

    /// Kills the server (the objects stay on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs is installed (scripts/setup installs it)");
        self.child = Some(child);
        crate::wait_for_port(self.port, "s3s-fs");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
