//! OpenStack Swift (Debian's swift 2.30 servers, which scripts/setup installs)
//! on loopback for tests: one account, container and object server on one
//! device with one replica, and a proxy. The proxy runs without an auth
//! middleware, so the token the backend sends is not checked.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const ACCOUNT: &str = "AUTH_registry";
pub const CONTAINER: &str = "registry-test";
/// The account's `Temp-URL-Key`, for presigned blob URLs.
pub const TEMP_URL_KEY: &str = "registry-test-tempurl-key";

pub struct Swift {
    proxy_port: u16,
    _dir: tempfile::TempDir,
    children: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/setup installs swift): {e}"));
    // swift-ring-builder exits 1 for warnings (e.g. a one-device ring).
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The user the servers run as; Swift started as root otherwise drops to `swift`.
fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn write_conf(path: &Path, port: u16, dir: &Path, pipeline: &str, app: &str) {
    let text = format!(
        "[DEFAULT]\n\
         devices = {devices}\n\
         mount_check = false\n\
         bind_ip = 127.0.0.1\n\
         bind_port = {port}\n\
         workers = 0\n\
         user = {user}\n\
         swift_dir = {swift_dir}\n\
         log_level = WARNING\n\
         [pipeline:main]\n\
         pipeline = {pipeline}\n\
         {app}",
        devices = dir.join("node").display(),
        user = current_user(),
        swift_dir = dir.display(),
    );
    std::fs::write(path, text).expect("write swift config");
}

impl Swift {
    /// Builds the rings, starts the four servers and creates [`CONTAINER`].
    pub fn start() -> Swift {
        Swift::start_with(true)
    }

    /// A proxy without the static-large-object middleware: it stores a
    /// large object's manifest as the object, a misconfiguration the
    /// registry must catch rather than record a truncated blob.
    pub fn start_without_large_objects() -> Swift {
        Swift::start_with(false)
    }

    fn start_with(large_objects: bool) -> Swift {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("node/sdb1")).expect("device dir");
        let mut swift = Swift {
            proxy_port: free_port(),
            _dir: dir,
            children: Vec::new(),
        };
        let root = swift._dir.path().to_owned();
        for name in ["account", "container", "object"] {
            let port = free_port();
            let builder = root.join(format!("{name}.builder"));
            let builder = builder.to_str().expect("utf-8 temp path");
            run("swift-ring-builder", &[builder, "create", "8", "1", "1"]);
            let device = format!("r1z1-127.0.0.1:{port}/sdb1");
            run("swift-ring-builder", &[builder, "add", &device, "100"]);
            run("swift-ring-builder", &[builder, "rebalance"]);
            let conf = root.join(format!("{name}-server.conf"));
            let app = format!("[app:{name}-server]\nuse = egg:swift#{name}\n");
            write_conf(&conf, port, &root, &format!("{name}-server"), &app);
            swift.spawn(&format!("swift-{name}-server"), &conf);
            crate::wait_for_port(port, &format!("swift {name} server"));
        }
        let conf = root.join("proxy-server.conf");
        // The proxy adds the filters it requires (copy, dlo, ...) itself;
        // static large objects, which opendal writes big objects as, are
        // optional middleware that real deployments enable.
        let app = "[filter:catch_errors]\nuse = egg:swift#catch_errors\n\
                   [filter:slo]\nuse = egg:swift#slo\n\
                   [filter:tempurl]\nuse = egg:swift#tempurl\n\
                   [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n";
        let pipeline = if large_objects {
            "catch_errors tempurl slo proxy-server"
        } else {
            "catch_errors tempurl proxy-server"
        };
        write_conf(&conf, swift.proxy_port, &root, pipeline, app);
        swift.spawn("swift-proxy-server", &conf);
        crate::wait_for_port(swift.proxy_port, "swift proxy");
        swift.create_container();
        swift.set_temp_url_key();
        swift
    }

    fn spawn(&mut self, program: &str, conf: &Path) {
        let child = Command::new(program)
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.children.push(child);
    }

    fn create_container(&self) {
        let url = format!("{}/{CONTAINER}", self.endpoint());
        let created = crate::poll_until(std::time::Duration::from_secs(30), || {
            Command::new(crate::python())
                .arg("-c")
                .arg(format!(
                    "import urllib.request as u; u.urlopen(u.Request({url:?}, method='PUT'))"
                ))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(created, "could not create the Swift container {url}");
    }

    fn set_temp_url_key(&self) {
        let url = self.endpoint();
        let script = format!(
            "import urllib.request as u; u.urlopen(u.Request({url:?}, method='POST', \
             headers={{'X-Account-Meta-Temp-URL-Key': {TEMP_URL_KEY:?}}}))"
        );
        let status = Command::new(crate::python())
            .arg("-c")
            .arg(script)
            .status()
            .expect("the test venv's python");
        assert!(status.success(), "could not set the Temp-URL-Key on {url}");
    }

    /// The account's storage URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/{ACCOUNT}", self.proxy_port)
    }

    pub fn config(&self) -> storage::config::SwiftConfig {
        storage::config::SwiftConfig {
            endpoint: self.endpoint(),
            container: CONTAINER.to_owned(),
            token: Some("not-checked".to_owned()),
            root: Some("/registry".to_owned()),
            temp_url_key: Some(TEMP_URL_KEY.to_owned()),
        }
    }
}

impl Drop for Swift {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
