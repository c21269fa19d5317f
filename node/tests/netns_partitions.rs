//! Partitions made by the kernel: three `registry` processes in a network
//! namespace of their own (`unshare -n`), each on its own 127.0.0.N, with
//! nft rules dropping the connections from one node to another. The test
//! re-runs itself inside the namespace, so the namespace, its addresses and
//! its rules vanish with the test process on every exit path.
//!
//! Covered: an isolated follower (503 rather than a stale 404, unready, the
//! leader's term untouched, catches up on healing), a delete acknowledged
//! while a follower that served the manifest from its read lease is cut
//! off (never served by it afterwards), an isolated leader
//! (replaced; 503 rather than the old value; follows on healing), and a
//! one-way cut (the leader cannot reach a follower that can reach it):
//! writes through every node still commit, and every node converges.
#![allow(clippy::unwrap_used)]

mod common;

use common::sha256;
use reqwest::StatusCode;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = "netns/app";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn partitions_in_a_network_namespace() {
    if !common::rerun_inside_namespaces("partitions_in_a_network_namespace", &["--net"]) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(partitions());
}

fn ip(node: usize) -> String {
    format!("127.0.0.{}", 11 + node)
}

fn api(node: usize) -> String {
    format!("http://{}:5000", ip(node))
}

fn debug(node: usize) -> String {
    format!("http://{}:5001", ip(node))
}

/// Runs an nft script inside this namespace.
fn nft(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused: {script}");
}

/// Drops every connection `from` opens to `to`, both directions of it.
fn cut(from: usize, to: usize) {
    nft(&format!(
        "add rule inet partition output ct original ip saddr {} ct original ip daddr {} drop\n",
        ip(from),
        ip(to)
    ));
}

fn isolate(node: usize) {
    for other in (0..3).filter(|o| *o != node) {
        cut(node, other);
        cut(other, node);
    }
}

fn heal() {
    nft("flush chain inet partition output\n");
}

struct Nodes {
    children: Vec<Child>,
    _root: tempfile::TempDir,
}

impl Nodes {
    fn start() -> Nodes {
        let root = tempfile::tempdir().unwrap();
        let blobs = root.path().join("blobs");
        let peers = (0..3)
            .map(|n| format!("{}={}:5101", n + 1, ip(n)))
            .collect::<Vec<_>>()
            .join(",");
        let children = (0..3)
            .map(|n| {
                let dir: PathBuf = root.path().join(format!("node{}", n + 1));
                std::fs::create_dir_all(&dir).unwrap();
                Command::new(env!("CARGO_BIN_EXE_registry"))
                    .arg("serve")
                    .current_dir(&dir)
                    .env("REGISTRY_HTTP_ADDR", format!("{}:5000", ip(n)))
                    .env("REGISTRY_HTTP_DEBUG_ADDR", format!("{}:5001", ip(n)))
                    .env("REGISTRY_METADATA_DIR", dir.join("meta"))
                    .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &blobs)
                    .env("REGISTRY_CLUSTER_NODEID", (n + 1).to_string())
                    .env("REGISTRY_CLUSTER_ADDR", format!("{}:5101", ip(n)))
                    .env("REGISTRY_CLUSTER_PEERS", &peers)
                    .env("REGISTRY_CLUSTER_SECRET", "netns-secret")
                    .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
                    .env("REGISTRY_LOG_LEVEL", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start registry")
            })
            .collect();
        Nodes {
            children,
            _root: root,
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 100 ms until it holds or `within` passes.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

struct Client(reqwest::Client);

impl Client {
    async fn ready(&self, node: usize) -> bool {
        self.0
            .get(format!("{}/readyz", debug(node)))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }

    async fn status(&self, node: usize) -> Option<serde_json::Value> {
        self.0
            .get(format!("{}/cluster/status", debug(node)))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// The leader's index and the term, as `node` knows them.
    async fn leader(&self, node: usize) -> Option<(usize, u64)> {
        let status = self.status(node).await?;
        let leader = status["leader"].as_u64()? as usize - 1;
        Some((leader, status["term"].as_u64()?))
    }

    async fn push_config(&self, node: usize, config: &[u8]) -> StatusCode {
        self.0
            .post(format!(
                "{}/v2/{REPO}/blobs/uploads/?digest={}",
                api(node),
                sha256(config)
            ))
            .body(config.to_vec())
            .send()
            .await
            .map_or(StatusCode::REQUEST_TIMEOUT, |r| r.status())
    }

    async fn get_by_digest(&self, node: usize, digest: &str) -> StatusCode {
        self.0
            .get(format!("{}/v2/{REPO}/manifests/{digest}", api(node)))
            .header("Accept", MANIFEST)
            .send()
            .await
            .map_or(StatusCode::REQUEST_TIMEOUT, |r| r.status())
    }

    async fn delete(&self, node: usize, digest: &str) -> StatusCode {
        self.0
            .delete(format!("{}/v2/{REPO}/manifests/{digest}", api(node)))
            .send()
            .await
            .map_or(StatusCode::REQUEST_TIMEOUT, |r| r.status())
    }

    async fn put_tag(&self, node: usize, manifest: &[u8]) -> StatusCode {
        self.0
            .put(format!("{}/v2/{REPO}/manifests/t", api(node)))
            .header("Content-Type", MANIFEST)
            .body(manifest.to_vec())
            .send()
            .await
            .map_or(StatusCode::REQUEST_TIMEOUT, |r| r.status())
    }

    /// The digest tag `t` names through `node`, or the status it answered.
    async fn read_tag(&self, node: usize) -> Result<String, StatusCode> {
        let response = self
            .0
            .get(format!("{}/v2/{REPO}/manifests/t", api(node)))
            .header("Accept", MANIFEST)
            .send()
            .await
            .map_err(|_| StatusCode::REQUEST_TIMEOUT)?;
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        Ok(sha256(&response.bytes().await.unwrap()))
    }
}

fn manifest(config: &[u8], n: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": [],
        "annotations": {"n": n.to_string()},
    }))
    .unwrap()
}

async fn partitions() {
    common::run("ip", &["link", "set", "lo", "up"]);
    nft("add table inet partition\nadd chain inet partition output { type filter hook output priority 0; }\n");
    let _nodes = Nodes::start();
    let client = Client(
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    );
    let minute = Duration::from_secs(60);
    for node in 0..3 {
        eventually(&format!("node {} ready", node + 1), minute, || {
            client.ready(node)
        })
        .await;
    }
    let config = b"{\"netns\":true}".to_vec();
    assert_eq!(client.push_config(0, &config).await, StatusCode::CREATED);

    // An isolated follower: 503, never the stale "no such tag".
    let (leader, term) = client.leader(0).await.unwrap();
    let follower = (leader + 1) % 3;
    isolate(follower);
    let first = manifest(&config, 1);
    assert_eq!(client.put_tag(leader, &first).await, StatusCode::CREATED);
    assert_eq!(
        client.read_tag(follower).await,
        Err(StatusCode::SERVICE_UNAVAILABLE)
    );
    eventually("the isolated follower turns unready", minute, || async {
        !client.ready(follower).await
    })
    .await;
    heal();
    eventually("the healed follower serves the tag", minute, || async {
        client.read_tag(follower).await == Ok(sha256(&first))
    })
    .await;
    assert_eq!(
        client.leader(leader).await,
        Some((leader, term)),
        "healing the follower deposed nobody"
    );

    // A follower serves a manifest by digest from its read lease; a delete
    // acknowledged while it is cut off waits its lease out, so it never
    // serves the deleted manifest afterwards.
    let doomed = manifest(&config, 99);
    let doomed_digest = sha256(&doomed);
    let put = client
        .0
        .put(format!(
            "{}/v2/{REPO}/manifests/{doomed_digest}",
            api(leader)
        ))
        .header("Content-Type", MANIFEST)
        .body(doomed)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(
        client.get_by_digest(follower, &doomed_digest).await,
        StatusCode::OK
    );
    isolate(follower);
    assert_eq!(
        client.delete(leader, &doomed_digest).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client.get_by_digest(follower, &doomed_digest).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a deleted manifest served from a lease"
    );
    heal();
    eventually("the healed follower knows the delete", minute, || async {
        client.get_by_digest(follower, &doomed_digest).await == StatusCode::NOT_FOUND
    })
    .await;

    // An isolated leader: replaced; it serves nothing stale; follows on healing.
    isolate(leader);
    let second = manifest(&config, 2);
    eventually("a write commits without the old leader", minute, || async {
        client.put_tag(follower, &second).await == StatusCode::CREATED
    })
    .await;
    assert_eq!(
        client.read_tag(leader).await,
        Err(StatusCode::SERVICE_UNAVAILABLE)
    );
    heal();
    eventually("the old leader serves the new tag", minute, || async {
        client.read_tag(leader).await == Ok(sha256(&second))
    })
    .await;

    // One way: the leader cannot reach a follower that can reach it.
    let (leader, _) = client.leader(follower).await.unwrap();
    let cut_off = (leader + 1) % 3;
    cut(leader, cut_off);
    let mut last = Vec::new();
    for node in 0..3 {
        let body = manifest(&config, 10 + node);
        eventually(
            &format!("a write through node {} commits", node + 1),
            minute,
            || async { client.put_tag(node, &body).await == StatusCode::CREATED },
        )
        .await;
        last = body;
    }
    heal();
    for node in 0..3 {
        eventually(
            &format!("node {} serves the last write", node + 1),
            minute,
            || async { client.read_tag(node).await == Ok(sha256(&last)) },
        )
        .await;
    }
}
