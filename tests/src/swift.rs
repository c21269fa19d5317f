//! OpenStack Swift (Debian's swift 2.30 servers, which scripts/setup installs)
//! on loopback for tests: one account, container and object server on one
//! device with one replica, and a proxy. By default the proxy runs without an
//! auth middleware, so the token the backend sends is not checked;
//! [`Swift::start_with_tempauth`] adds Swift's own `tempauth` (tokens kept in
//! a memcached the harness starts), whose tokens expire.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const ACCOUNT: &str = "AUTH_registry";
pub const CONTAINER: &str = "registry-test";
/// The account's `Temp-URL-Key`, for presigned blob URLs.
pub const TEMP_URL_KEY: &str = "registry-test-tempurl-key";

/// The tempauth user (`account:user`) and key.
pub const TEMPAUTH_USER: &str = "registry:tester";
pub const TEMPAUTH_KEY: &str = "testing";
/// Seconds a tempauth token lives: short, so tests see tokens expire.
pub const TOKEN_LIFE: u64 = 4;

pub struct Swift {
    proxy_port: u16,
    tempauth: bool,
    _dir: tempfile::TempDir,
    children: Vec<Child>,
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
        Swift::start_with(true, false)
    }

    /// A proxy that checks tokens with tempauth: clients log in at
    /// [`Swift::auth_url`] and their tokens expire after [`TOKEN_LIFE`].
    pub fn start_with_tempauth() -> Swift {
        Swift::start_with(true, true)
    }

    /// A proxy without the static-large-object middleware: it stores a
    /// large object's manifest as the object, a misconfiguration the
    /// registry must catch rather than record a truncated blob.
    pub fn start_without_large_objects() -> Swift {
        Swift::start_with(false, false)
    }

    fn start_with(large_objects: bool, tempauth: bool) -> Swift {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("node/sdb1")).expect("device dir");
        let mut swift = Swift {
            proxy_port: crate::free_port(),
            tempauth,
            _dir: dir,
            children: Vec::new(),
        };
        let root = swift._dir.path().to_owned();
        for name in ["account", "container", "object"] {
            let port = crate::free_port();
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
        let mut app = "[filter:catch_errors]\nuse = egg:swift#catch_errors\n\
                       [filter:slo]\nuse = egg:swift#slo\n\
                       [filter:tempurl]\nuse = egg:swift#tempurl\n\
                       [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
            .to_owned();
        let mut pipeline = vec!["catch_errors", "tempurl"];
        if tempauth {
            let memcached = crate::free_port();
            swift.spawn_program(
                "memcached",
                &[
                    "-l",
                    "127.0.0.1",
                    "-p",
                    &memcached.to_string(),
                    "-U",
                    "0",
                    "-u",
                    &current_user(),
                ],
            );
            crate::wait_for_port(memcached, "memcached");
            let (account, user) = TEMPAUTH_USER.split_once(':').expect("account:user");
            app.push_str(&format!(
                "[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{memcached}\n\
                 [filter:tempauth]\nuse = egg:swift#tempauth\ntoken_life = {TOKEN_LIFE}\n\
                 user_{account}_{user} = {TEMPAUTH_KEY} .admin\n"
            ));
            pipeline = vec!["catch_errors", "cache", "tempurl", "tempauth"];
        }
        if large_objects {
            pipeline.push("slo");
        }
        pipeline.push("proxy-server");
        write_conf(&conf, swift.proxy_port, &root, &pipeline.join(" "), &app);
        swift.spawn("swift-proxy-server", &conf);
        crate::wait_for_port(swift.proxy_port, "swift proxy");
        swift.create_container();
        swift.set_temp_url_key();
        swift
    }

    fn spawn(&mut self, program: &str, conf: &Path) {
        let conf = conf.to_str().expect("utf-8 temp path");
        self.spawn_program(program, &[conf]);
    }

    fn spawn_program(&mut self, program: &str, args: &[&str]) {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.children.push(child);
    }

    /// Sends one request to the proxy from Python, logging in first when
    /// tempauth is on; true when it succeeded.
    fn request(&self, url: &str, method: &str, headers: &str) -> bool {
        let login = if self.tempauth {
            format!(
                "r = u.urlopen(u.Request({auth:?}, headers={{'X-Auth-User': {TEMPAUTH_USER:?}, \
                 'X-Auth-Key': {TEMPAUTH_KEY:?}}})); h['X-Auth-Token'] = r.headers['X-Auth-Token']; ",
                auth = self.auth_url()
            )
        } else {
            String::new()
        };
        let script = format!(
            "import urllib.request as u; h = {{{headers}}}; {login}\
             u.urlopen(u.Request({url:?}, method={method:?}, headers=h))"
        );
        Command::new(crate::python())
            .arg("-c")
            .arg(script)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn create_container(&self) {
        let url = format!("{}/{CONTAINER}", self.endpoint());
        let created = crate::poll_until(std::time::Duration::from_secs(30), || {
            self.request(&url, "PUT", "")
        });
        assert!(created, "could not create the Swift container {url}");
    }

    fn set_temp_url_key(&self) {
        let url = self.endpoint();
        let header = format!("'X-Account-Meta-Temp-URL-Key': {TEMP_URL_KEY:?}");
        assert!(
            self.request(&url, "POST", &header),
            "could not set the Temp-URL-Key on {url}"
        );
    }

    /// tempauth's v1 auth endpoint.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.proxy_port)
    }

    /// Logs in as the registry does; tempauth answers the token it already
    /// issued to this user while that one is valid.
    pub async fn login(&self) -> String {
        let response = reqwest::Client::new()
            .get(self.auth_url())
            .header("X-Auth-User", TEMPAUTH_USER)
            .header("X-Auth-Key", TEMPAUTH_KEY)
            .send()
            .await
            .expect("tempauth login");
        assert!(response.status().is_success(), "{}", response.status());
        response.headers()["X-Auth-Token"]
            .to_str()
            .expect("ascii token")
            .to_owned()
    }

    /// Whether the account accepts `token`.
    pub async fn accepts(&self, token: &str) -> bool {
        reqwest::Client::new()
            .head(self.endpoint())
            .header("X-Auth-Token", token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The account's storage URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/{ACCOUNT}", self.proxy_port)
    }

    pub fn config(&self) -> storage::config::SwiftConfig {
        storage::config::SwiftConfig {
            endpoint: Some(self.endpoint()),
            container: CONTAINER.to_owned(),
            token: Some("not-checked".to_owned()),
            auth: None,
            root: Some("/registry".to_owned()),
            temp_url_key: Some(TEMP_URL_KEY.to_owned()),
        }
    }

    /// A config that logs in at [`Swift::auth_url`] instead of naming a token.
    pub fn login_config(&self) -> storage::config::SwiftConfig {
        storage::config::SwiftConfig {
            endpoint: None,
            token: None,
            auth: Some(storage::config::SwiftAuth {
                url: self.auth_url(),
                username: TEMPAUTH_USER.to_owned(),
                password: TEMPAUTH_KEY.to_owned(),
                ..Default::default()
            }),
            ..self.config()
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
