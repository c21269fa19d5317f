//! The real docker CLI and daemon, and containerd's `ctr`: build an image,
//! `docker push`, remove it, `docker pull`, then pull it again with
//! containerd. The daemons run privately under a temporary directory.
//! And the registry's own image, built by `scripts/image`, run read-only.

use registry_tests::TestNode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// containerd and dockerd for one test; both are stopped on drop.
struct Daemons {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Daemons {
    fn start() -> Daemons {
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().to_owned();
        let config = Command::new("containerd")
            .args(["config", "default"])
            .output()
            .expect("containerd is installed");
        let config = String::from_utf8(config.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("root = ") {
                    format!("root = {:?}", d.join("ctrd-root"))
                } else if line.starts_with("state = ") {
                    format!("state = {:?}", d.join("ctrd-state"))
                } else if line
                    .trim_start()
                    .starts_with("address = \"/run/containerd/containerd.sock\"")
                {
                    format!("  address = {:?}", d.join("containerd.sock"))
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(d.join("containerd.toml"), config).unwrap();
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let containerd = Command::new("containerd")
            .arg("--config")
            .arg(d.join("containerd.toml"))
            .stdout(log("containerd.out"))
            .stderr(log("containerd.log"))
            .spawn()
            .expect("start containerd");
        let mut daemons = Daemons {
            dir,
            children: vec![containerd],
        };
        daemons.wait_for(&daemons.containerd_socket(), "containerd");
        let dockerd = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("docker-data"))
            .arg("--exec-root")
            .arg(d.join("docker-exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--containerd")
            .arg(d.join("containerd.sock"))
            .args([
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .args(["--insecure-registry", "127.0.0.0/8"])
            .stdout(Stdio::null())
            .stderr(log("dockerd.log"))
            .spawn()
            .expect("dockerd is installed (scripts/setup installs docker.io)");
        daemons.children.push(dockerd);
        let up = registry_tests::poll_until(Duration::from_secs(60), || {
            daemons.docker(&["version"]).status.success()
        });
        assert!(up, "dockerd did not start: {}", daemons.log("dockerd.log"));
        daemons
    }

    fn containerd_socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn wait_for(&self, socket: &Path, what: &str) {
        let up = registry_tests::poll_until(Duration::from_secs(30), || {
            std::fs::metadata(socket).is_ok()
        });
        assert!(up, "{what} did not start");
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `program` set up to talk to this test's daemon.
    fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.path().join("docker.sock").display()),
            )
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        command
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        self.client_command("docker")
            .args(args)
            .output()
            .expect("docker CLI")
    }

    fn ok(output: std::process::Output, what: &str) -> String {
        assert!(
            output.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `docker login HOST` with the password on stdin, as CI scripts do.
    fn login(&self, host: &str, user: &str, password: &str) -> std::process::Output {
        self.client_command("docker")
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(password.as_bytes())?;
                child.wait_with_output()
            })
            .expect("docker login")
    }

    /// `docker push IMAGE`; answers the digest it printed.
    fn push(&self, image: &str) -> String {
        let pushed = Daemons::ok(self.docker(&["push", image]), "docker push");
        pushed
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .expect("docker push prints the digest")
            .to_owned()
    }

    /// Builds IMAGE `FROM scratch` with one file of `payload` (and `extra`
    /// Dockerfile lines) with `docker build`.
    fn build_scratch(&self, image: &str, payload: &[u8], extra: &str) {
        let context = self.dir.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("payload"), payload).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            format!("FROM scratch\nCOPY payload /payload\n{extra}"),
        )
        .unwrap();
        Daemons::ok(
            self.docker(&["build", "-q", "-t", image, context.to_str().unwrap()]),
            "docker build",
        );
    }

    /// `docker push IMAGE`, `docker rmi` and `docker pull` it back; answers
    /// the pushed digest.
    fn push_and_pull_back(&self, image: &str) -> String {
        let digest = self.push(image);
        Daemons::ok(self.docker(&["rmi", image]), "docker rmi");
        Daemons::ok(self.docker(&["pull", image]), "docker pull");
        digest
    }

    /// `scripts/image TAG` with the `registry` binary of this build.
    fn build_image(&self, tag: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image");
        let built = self
            .client_command(script)
            .args([tag, "--binary"])
            .arg(registry_binary())
            .output()
            .expect("run scripts/image");
        Daemons::ok(built, "scripts/image");
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", "registry-test"])
            .args(args)
            .output()
            .expect("ctr is installed with containerd")
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            registry_tests::poll_until(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            let _ = child.kill();
            let _ = child.wait();
        }
        // dockerd leaves its default network namespace mounted under the
        // exec root; unmount whatever is still mounted under our directory.
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&dir))
        {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pushes_and_pulls_and_containerd_pulls() {
    let node = TestNode::start();
    let host = node.host();
    let digest = tokio::task::spawn_blocking(move || {
        let daemons = Daemons::start();
        let image = format!("{host}/docker/app:v1");
        let payload: Vec<u8> = (0..400_000u32).map(|i| (i % 239) as u8).collect();
        daemons.build_scratch(&image, &payload, "LABEL built.by=test\n");
        let digest = daemons.push_and_pull_back(&image);
        let labels = Daemons::ok(
            daemons.docker(&["image", "inspect", "--format", "{{.Config.Labels}}", &image]),
            "inspect",
        );
        assert!(labels.contains("built.by:test"), "{labels}");
        let by_digest = format!("{host}/docker/app@{digest}");
        Daemons::ok(
            daemons.docker(&["pull", &by_digest]),
            "docker pull by digest",
        );

        Daemons::ok(
            daemons.ctr(&["images", "pull", "--plain-http", &image]),
            "ctr pull",
        );
        let listed = Daemons::ok(daemons.ctr(&["images", "ls", "-q"]), "ctr ls");
        assert!(listed.contains(&image), "{listed}");
        let copy = format!("{host}/containerd/copy:v1");
        Daemons::ok(daemons.ctr(&["images", "tag", &image, &copy]), "ctr tag");
        Daemons::ok(
            daemons.ctr(&["images", "push", "--plain-http", &copy]),
            "ctr push",
        );
        digest
    })
    .await
    .unwrap();

    let client = node.client();
    let response = client.manifest("docker/app", "v1").await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        registry_tests::oci::header(&response, "Docker-Content-Digest"),
        Some(digest.clone())
    );
    let copied = client.manifest("containerd/copy", "v1").await;
    assert_eq!(
        registry_tests::oci::header(&copied, "Docker-Content-Digest"),
        Some(digest)
    );
}

#[tokio::test]
async fn docker_and_containerd_pull_through_the_cache() {
    let upstream = registry_tests::cluster::TestCluster::start(1, None, |config| {
        config.api.redirect = false;
    });
    let upstream_url = upstream.base_url();
    let cache = TestNode::start_with(move |config| {
        config.proxy = vec![api::cache::UpstreamConfig {
            prefix: "hub".to_owned(),
            remote_url: upstream_url.clone(),
            username: None,
            password: None,
            ttl: Some(Duration::from_secs(3600)),
        }];
    });
    let (origin, host) = (upstream.host(), cache.host());
    tokio::task::spawn_blocking(move || {
        let daemons = Daemons::start();
        let image = format!("{origin}/team/app:v1");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 233) as u8).collect();
        daemons.build_scratch(&image, &payload, "LABEL cached=yes\n");
        let digest = daemons.push(&image);
        let cached = format!("{host}/hub/team/app:v1");
        let pulled = Daemons::ok(
            daemons.docker(&["pull", &cached]),
            "docker pull via the cache",
        );
        assert!(pulled.contains(&digest), "the upstream's digest: {pulled}");
        let labels = Daemons::ok(
            daemons.docker(&[
                "image",
                "inspect",
                "--format",
                "{{.Config.Labels}}",
                &cached,
            ]),
            "inspect",
        );
        assert!(labels.contains("cached:yes"), "{labels}");
        Daemons::ok(
            daemons.ctr(&["images", "pull", "--plain-http", &cached]),
            "ctr pull via the cache",
        );
        Daemons::ok(daemons.docker(&["tag", &image, &cached]), "docker tag");
        let pushed = daemons.docker(&["push", &cached]);
        assert!(!pushed.status.success(), "a push into the cache is refused");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_logs_in_over_tls_and_the_rules_decide_its_pushes() {
    use crate::auth::{ALICE, BOB};
    let dir = tempfile::tempdir().unwrap();
    let ca = registry_tests::tls::TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("server"));
    let cluster = crate::auth::start(dir.path(), move |config| {
        config.tls = Some(node::tls::TlsSettings::new(&certificate, &key));
    });
    // dockerd treats 127.0.0.0/8 as insecure whatever certs.d says, so it
    // speaks TLS here without checking the CA (skopeo and podman check it
    // in auth.rs); the logins and refusals are docker's own.
    let host = cluster.api_addr(0).to_string();
    let cluster = std::sync::Arc::new(cluster);
    let running = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let cluster = running;
        let daemons = Daemons::start();
        let refused = daemons.login(&host, ALICE.0, "not-her-password");
        assert!(
            !refused.status.success(),
            "a wrong password fails docker login"
        );
        Daemons::ok(
            daemons.login(&host, ALICE.0, ALICE.1),
            "docker login as alice",
        );

        let image = format!("{host}/team-a/app:v1");
        daemons.build_scratch(&image, &[7u8; 200_000], "");
        daemons.push_and_pull_back(&image);

        Daemons::ok(daemons.docker(&["logout", &host]), "docker logout");
        let challenged = crate::auth::auth_counter(&cluster, "unauthenticated");
        let anonymous = daemons.docker(&["pull", &image]);
        assert!(
            !anonymous.status.success(),
            "team-a is not for anonymous pulls"
        );
        // docker falls back to plain HTTP on loopback and reports that
        // attempt's error; the registry counted the refusal.
        assert!(crate::auth::auth_counter(&cluster, "unauthenticated") > challenged);
        Daemons::ok(daemons.login(&host, BOB.0, BOB.1), "docker login as bob");
        let other = format!("{host}/team-a/bobs:v1");
        Daemons::ok(daemons.docker(&["tag", &image, &other]), "docker tag");
        let denied = daemons.docker(&["push", &other]);
        assert!(!denied.status.success(), "bob may not push to team-a");
        let stderr = String::from_utf8_lossy(&denied.stderr);
        assert!(stderr.contains("denied"), "docker says why: {stderr}");
        let scratch = format!("{host}/scratch/bob:v1");
        Daemons::ok(daemons.docker(&["tag", &image, &scratch]), "docker tag");
        daemons.push(&scratch);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_logs_in_and_pushes_through_a_token_server() {
    use crate::tokens::{users, ISSUER, SERVICE};
    use registry_tests::token_server::{KeyRef, Signer, TokenServer};
    let dir = tempfile::tempdir().unwrap();
    let ca = registry_tests::tls::TestCa::new("token CA");
    std::fs::write(dir.path().join("roots.pem"), ca.pem()).unwrap();
    let server = TokenServer::start(
        Signer::new(Some(ca.issuer()), ISSUER, SERVICE, KeyRef::X5c),
        users(),
    );
    let cluster = crate::tokens::start(
        &server.realm(),
        Some(&dir.path().join("roots.pem")),
        None,
        |_| {},
    );
    let host = cluster.api_addr(0).to_string();
    tokio::task::spawn_blocking(move || {
        let daemons = Daemons::start();
        assert!(
            !daemons.login(&host, "alice", "wrong").status.success(),
            "the token server refuses a wrong password"
        );
        Daemons::ok(
            daemons.login(&host, "alice", "alice-password"),
            "docker login through the token server",
        );
        let image = format!("{host}/team-a/tokens:v1");
        daemons.build_scratch(&image, &[9u8; 150_000], "");
        daemons.push_and_pull_back(&image);
        let outside = format!("{host}/elsewhere/tokens:v1");
        Daemons::ok(daemons.docker(&["tag", &image, &outside]), "docker tag");
        let refused = daemons.docker(&["push", &outside]);
        assert!(
            !refused.status.success(),
            "the token server grants alice nothing in elsewhere/"
        );
    })
    .await
    .unwrap();
    assert!(
        server.issued() >= 3,
        "docker fetched its tokens from the realm"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_logs_in_and_pushes_with_tokens_from_the_registry_itself() {
    use crate::auth::{ALICE, BOB};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token-key.pem");
    registry_tests::write_signing_key(&key);
    let cluster = crate::auth::start(dir.path(), move |config| {
        if let Some(api::auth::AuthConfig::Htpasswd(logins)) = &mut config.auth {
            logins.token_service = Some(registry_tests::token_service_config(&key));
        }
    });
    let host = cluster.api_addr(0).to_string();
    tokio::task::spawn_blocking(move || {
        let daemons = Daemons::start();
        assert!(
            !daemons.login(&host, ALICE.0, "wrong").status.success(),
            "the token service refuses a wrong password"
        );
        Daemons::ok(
            daemons.login(&host, ALICE.0, ALICE.1),
            "docker login through the built-in token service",
        );
        let image = format!("{host}/team-a/builtin:v1");
        daemons.build_scratch(&image, &[8u8; 150_000], "");
        daemons.push_and_pull_back(&image);
        Daemons::ok(daemons.login(&host, BOB.0, BOB.1), "docker login as bob");
        let bobs = format!("{host}/team-a/bobs:v1");
        Daemons::ok(daemons.docker(&["tag", &image, &bobs]), "docker tag");
        let refused = daemons.docker(&["push", &bobs]);
        assert!(
            !refused.status.success(),
            "bob's token grants nothing in team-a"
        );
    })
    .await
    .unwrap();
    assert!(
        crate::token_service::token_counter(&cluster, "issued") >= 3,
        "docker fetched its tokens from the registry"
    );
}

/// The `registry` binary `cargo test --workspace` built beside this test.
pub(crate) fn registry_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join("registry");
    assert!(
        std::fs::metadata(&binary).is_ok(),
        "{} is missing: build it first (cargo build -p node --bin registry)",
        binary.display()
    );
    binary
}

/// `scripts/image` packs the binary into an image that runs as user 65532
/// on a read-only root; pushed into the registry it serves, the image
/// comes back by digest.
#[test]
fn the_image_runs_read_only_as_non_root_and_serves_itself() {
    let daemons = Daemons::start();
    let tag = "registry:under-test";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image");
    let built = Command::new(script)
        .args([tag, "--binary"])
        .arg(registry_binary())
        .env(
            "DOCKER_HOST",
            format!(
                "unix://{}",
                daemons.dir.path().join("docker.sock").display()
            ),
        )
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", daemons.dir.path().join("docker-config"))
        .output()
        .expect("run scripts/image");
    Daemons::ok(built, "scripts/image");
    let user = Daemons::ok(
        daemons.docker(&["image", "inspect", "--format", "{{.Config.User}}", tag]),
        "inspect",
    );
    assert_eq!(user, "65532:65532");

    let api = registry_tests::free_port();
    let debug = registry_tests::free_port();
    let container = Daemons::ok(
        daemons.docker(&[
            "run",
            "-d",
            "--network",
            "host",
            "--read-only",
            "-v",
            "registry-under-test:/var/lib/registry",
            "-e",
            &format!("REGISTRY_HTTP_ADDR=127.0.0.1:{api}"),
            "-e",
            &format!("REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:{debug}"),
            tag,
        ]),
        "docker run",
    );
    let ready = registry_tests::poll_until(Duration::from_secs(30), || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], debug));
        registry_tests::cluster::http_get(addr, "/readyz").is_some_and(|(status, _)| status == 200)
    });
    assert!(
        ready,
        "the container never became ready: {}",
        String::from_utf8_lossy(&daemons.docker(&["logs", &container]).stderr)
    );
    let pid = Daemons::ok(
        daemons.docker(&["inspect", "--format", "{{.State.Pid}}", &container]),
        "inspect pid",
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65532"),
        "{uid}"
    );
    assert_eq!(
        Daemons::ok(
            daemons.docker(&[
                "inspect",
                "--format",
                "{{.HostConfig.ReadonlyRootfs}}",
                &container
            ]),
            "inspect rootfs",
        ),
        "true"
    );

    let pushed_name = format!("127.0.0.1:{api}/registry/self:v1");
    Daemons::ok(daemons.docker(&["tag", tag, &pushed_name]), "docker tag");
    let digest = daemons.push(&pushed_name);
    Daemons::ok(daemons.docker(&["rmi", &pushed_name]), "docker rmi");
    let by_digest = format!("127.0.0.1:{api}/registry/self@{digest}");
    Daemons::ok(
        daemons.docker(&["pull", &by_digest]),
        "docker pull by digest",
    );
    Daemons::ok(daemons.docker(&["rm", "-f", &container]), "docker rm");
    Daemons::ok(
        daemons.docker(&["volume", "rm", "registry-under-test"]),
        "docker volume rm",
    );
}

/// `deploy/compose.yaml` with the image `scripts/image` built: three nodes
/// form a cluster; a blob pushed through one is served by another; with
/// one node stopped the other two keep taking pushes.
#[test]
fn the_image_in_compose_forms_a_cluster_that_outlives_a_node() {
    let daemons = Daemons::start();
    daemons.build_image("registry:dev");
    let ports = [0; 3].map(|_| registry_tests::free_port());
    let project = format!("regtest{}", std::process::id());
    let compose_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose.yaml");
    let compose = |args: &[&str]| {
        let mut command = daemons.client_command("docker-compose");
        command
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(&compose_file)
            .args(args);
        for (i, port) in ports.iter().enumerate() {
            command.env(format!("REGISTRY_PORT_{}", i + 1), port.to_string());
        }
        command
            .output()
            .expect("docker-compose is installed (scripts/setup installs it)")
    };
    Daemons::ok(compose(&["up", "-d"]), "docker-compose up");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            let push = |port: u16, body: &'static [u8]| async move {
                let digest = registry_tests::oci::sha256(body);
                reqwest::Client::new()
                    .post(format!(
                        "http://127.0.0.1:{port}/v2/compose/app/blobs/uploads/?digest={digest}"
                    ))
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
            };
            let pull = |port: u16, body: &'static [u8]| async move {
                let digest = registry_tests::oci::sha256(body);
                let answer = reqwest::get(format!(
                    "http://127.0.0.1:{port}/v2/compose/app/blobs/{digest}"
                ))
                .await
                .unwrap();
                answer.status() == reqwest::StatusCode::OK
                    && answer.bytes().await.unwrap()[..] == body[..]
            };
            let until_pushed = |port: u16, body: &'static [u8]| async move {
                let pushed =
                    registry_tests::eventually(Duration::from_secs(90), || push(port, body)).await;
                assert!(
                    pushed,
                    "never pushed {:?} through port {port}",
                    String::from_utf8_lossy(body)
                );
            };
            until_pushed(ports[0], b"through node 1").await;
            assert!(pull(ports[1], b"through node 1").await);
            Daemons::ok(compose(&["stop", "registry-1"]), "docker-compose stop");
            until_pushed(ports[2], b"node 1 is down").await;
            assert!(pull(ports[1], b"node 1 is down").await);
            assert!(pull(ports[2], b"through node 1").await);
        })
    }));
    let down = compose(&["down", "-v"]);
    if let Err(panic) = outcome {
        eprintln!("{}", String::from_utf8_lossy(&compose(&["logs"]).stdout));
        std::panic::resume_unwind(panic);
    }
    Daemons::ok(down, "docker-compose down");
}
