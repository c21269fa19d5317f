//! The real docker CLI and daemon, and containerd's `ctr`: build an image,
//! `docker push`, remove it, `docker pull`, then pull it again with
//! containerd. The daemons run privately under a temporary directory.

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

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.path().join("docker.sock").display()),
            )
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
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
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pushes_and_pulls_and_containerd_pulls() {
    let node = TestNode::start();
    let host = node.host();
    let digest = tokio::task::spawn_blocking(move || {
        let daemons = Daemons::start();
        let context = daemons.dir.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("payload"),
            (0..400_000u32).map(|i| (i % 239) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY payload /payload\nLABEL built.by=test\n",
        )
        .unwrap();
        let image = format!("{host}/docker/app:v1");
        Daemons::ok(
            daemons.docker(&["build", "-q", "-t", &image, context.to_str().unwrap()]),
            "docker build",
        );
        let pushed = Daemons::ok(daemons.docker(&["push", &image]), "docker push");
        let digest = pushed
            .split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .expect("docker push prints the digest")
            .to_owned();
        Daemons::ok(daemons.docker(&["rmi", &image]), "docker rmi");
        Daemons::ok(daemons.docker(&["pull", &image]), "docker pull");
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
