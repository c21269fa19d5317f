//! A 3-node cluster of `registry` processes on loopback: `kill -9` of the
//! leader during pushes spread over every node, three times over; then the
//! operator's `registry cluster status`, a node whose metadata was wiped
//! refusing to start, a paused leader, and `registry cluster recover` after
//! two of three disks are lost; `kill -9` of the leader in the middle of a
//! garbage collection's sweep.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use reqwest::StatusCode;
mod common;

use common::{free_port, sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "process-cluster-secret";
/// `storage.gc.grace` of every node.
const GC_GRACE: &str = "1s";

struct Member {
    id: u64,
    api: u16,
    debug: u16,
    internal: u16,
    dir: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    members: Vec<Member>,
    blobs: PathBuf,
    _root: tempfile::TempDir,
}

impl Cluster {
    fn start(n: u64) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let blobs = root.path().join("blobs");
        let mut members: Vec<Member> = (1..=n)
            .map(|id| Member {
                id,
                api: free_port(),
                debug: free_port(),
                internal: free_port(),
                dir: root.path().join(format!("node{id}")),
                child: None,
            })
            .collect();
        let peers = Self::peers(&members);
        for member in &mut members {
            std::fs::create_dir_all(&member.dir).unwrap();
            member.child = Some(spawn(member, &blobs, &peers));
        }
        Cluster {
            members,
            blobs,
            _root: root,
        }
    }

    /// [`Cluster::start`], returning once every node is ready.
    async fn start_ready(n: u64) -> Cluster {
        let cluster = Cluster::start(n);
        for i in 0..n as usize {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    fn peers(members: &[Member]) -> String {
        members
            .iter()
            .map(|m| format!("{}=127.0.0.1:{}", m.id, m.internal))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].api)
    }

    fn debug(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].debug)
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops node `i` gracefully (SIGTERM) and waits for it to exit.
    fn terminate(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            common::signal(&child, "-TERM");
            let exited = child.wait().unwrap();
            assert!(exited.success(), "node {} exited with {exited}", i + 1);
        }
    }

    fn restart(&mut self, i: usize) {
        let peers = Self::peers(&self.members);
        let child = spawn(&self.members[i], &self.blobs, &peers);
        self.members[i].child = Some(child);
    }

    async fn wait_ready(&self, i: usize) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.debug(i))).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} never became ready",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    /// The index of the leader that a running node names.
    async fn leader(&self) -> usize {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                let Ok(answer) = client
                    .get(format!("{}/cluster/status", self.debug(i)))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(status) = answer.json::<serde_json::Value>().await else {
                    continue;
                };
                if let Some(leader) = status["leader"].as_u64() {
                    let index = leader as usize - 1;
                    if self.members[index].child.is_some() {
                        return index;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn command(member: &Member, blobs: &Path, peers: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_registry"));
    command
        .arg("serve")
        .current_dir(&member.dir)
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{}", member.api))
        .env(
            "REGISTRY_HTTP_DEBUG_ADDR",
            format!("127.0.0.1:{}", member.debug),
        )
        .env("REGISTRY_METADATA_DIR", member.dir.join("meta"))
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", blobs)
        .env("REGISTRY_CLUSTER_NODEID", member.id.to_string())
        .env(
            "REGISTRY_CLUSTER_ADDR",
            format!("127.0.0.1:{}", member.internal),
        )
        .env("REGISTRY_CLUSTER_PEERS", peers)
        .env("REGISTRY_CLUSTER_SECRET", SECRET)
        // Collections run only when a test asks for one, with no delay.
        .env("REGISTRY_STORAGE_GC_ENABLED", "false")
        .env("REGISTRY_STORAGE_GC_DELAY", "0s")
        .env("REGISTRY_STORAGE_GC_GRACE", GC_GRACE)
        .env("REGISTRY_LOG_LEVEL", "warn");
    command
}

/// Each node's log, appended to across restarts.
fn log_path(member: &Member) -> PathBuf {
    member.dir.join("registry.log")
}

fn spawn(member: &Member, blobs: &Path, peers: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(member))
        .unwrap();
    command(member, blobs, peers)
        .stdout(log)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start registry")
}

/// What a pusher saw acknowledged: tag → (manifest bytes, blob digests).
type Acknowledged = Arc<Mutex<Vec<(String, Vec<u8>, Vec<(String, Vec<u8>)>)>>>;

/// Pushes images until `stop`, each through the next node in turn, and
/// records the ones answered 201 and when.
async fn pusher(
    bases: Vec<String>,
    worker: usize,
    acknowledged: Acknowledged,
    successes: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let base = &bases[(worker + n) % bases.len()];
        let tag = format!("w{worker}-{n}");
        let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
        let layer: Vec<u8> = format!("layer {tag} ").repeat(2000).into_bytes();
        let mut ok = true;
        for blob in [&config, &layer] {
            let pushed = client
                .post(format!(
                    "{base}/v2/crash/app/blobs/uploads/?digest={}",
                    sha256(blob)
                ))
                .body(blob.clone())
                .send()
                .await;
            ok &= pushed.is_ok_and(|r| r.status() == StatusCode::CREATED);
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
            continue;
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let put = client
            .put(format!("{base}/v2/crash/app/manifests/{tag}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await;
        if put.is_ok_and(|r| r.status() == StatusCode::CREATED) {
            successes.lock().unwrap().push(Instant::now());
            acknowledged.lock().unwrap().push((
                tag,
                manifest,
                vec![(sha256(&config), config), (sha256(&layer), layer)],
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leader_during_pushes_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(3);
    for i in 0..3 {
        cluster.wait_ready(i).await;
    }
    let bases: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let acknowledged: Acknowledged = Arc::default();
    let successes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..3)
        .map(|w| {
            tokio::spawn(pusher(
                bases.clone(),
                w,
                acknowledged.clone(),
                successes.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let mut failovers = Vec::new();
    for cycle in 0..3 {
        // Pushes under way through every node before the kill.
        let before = successes.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while successes.lock().unwrap().len() < before + 10 {
            assert!(
                Instant::now() < deadline,
                "pushes stalled before cycle {cycle}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        }
        let leader = cluster.leader().await;
        let killed_at = Instant::now();
        cluster.kill(leader);
        let deadline = killed_at + Duration::from_secs(30);
        let resumed = loop {
            let next = successes
                .lock()
                .unwrap()
                .iter()
                .copied()
                .find(|t| *t > killed_at + Duration::from_millis(1));
            if let Some(t) = next {
                break t - killed_at;
            }
            assert!(
                Instant::now() < deadline,
                "pushes never resumed after cycle {cycle}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        };
        eprintln!(
            "cycle {cycle}: killed leader node {}, next acknowledged push after {resumed:?}",
            leader + 1
        );
        failovers.push(resumed);
        cluster.restart(leader);
        cluster.wait_ready(leader).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.unwrap();
    }
    eprintln!("failover times: {failovers:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 30,
        "only {} pushes acknowledged",
        acknowledged.len()
    );

    let client = reqwest::Client::new();
    for i in 0..3 {
        for (tag, manifest, blobs) in &acknowledged {
            let got = client
                .get(format!("{}/v2/crash/app/manifests/{tag}", cluster.url(i)))
                .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), StatusCode::OK, "node {} lost {tag}", i + 1);
            assert_eq!(&got.bytes().await.unwrap()[..], &manifest[..], "{tag}");
            for (digest, bytes) in blobs {
                let got = client
                    .get(format!("{}/v2/crash/app/blobs/{digest}", cluster.url(i)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(got.status(), StatusCode::OK, "node {} lost {digest}", i + 1);
                let body = got.bytes().await.unwrap();
                assert_eq!(sha256(&body), *digest);
                assert_eq!(&body[..], &bytes[..]);
            }
        }
    }

    // Determinism (invariant 5): once every node has applied the same
    // index, their replicated state hashes the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for i in 0..3 {
            let status = status(&client, &cluster.debug(i)).await;
            seen.push((
                status["applied_index"].as_u64(),
                status["state_fingerprint"].as_str().map(str::to_owned),
            ));
        }
        if seen[0].1.is_some() && seen.iter().all(|s| *s == seen[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' states never matched: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }

    // The operator's view, through the binary.
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["cluster", "status", "--addr"])
        .arg(format!("127.0.0.1:{}", cluster.members[0].debug))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("leader"), "{text}");
    assert_eq!(
        text.matches("yes").count(),
        3,
        "every member reachable:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_wiped_metadata_refuses_to_start_and_says_what_to_do() {
    let mut cluster = Cluster::start(3);
    for i in 0..3 {
        cluster.wait_ready(i).await;
    }
    let victim = (cluster.leader().await + 1) % 3;
    let client = reqwest::Client::new();
    let joined = async {
        loop {
            let status = status(&client, &cluster.debug(victim)).await;
            if status["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["joined"] == true)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    };
    tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .expect("every member records that it joined");
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.members[victim].dir.join("meta")).unwrap();
    let peers = Cluster::peers(&cluster.members);
    let out = tokio::task::spawn_blocking({
        let mut command = command(&cluster.members[victim], &cluster.blobs, &peers);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("registry cluster remove"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins_as_a_follower() {
    let cluster = Cluster::start_ready(3).await;
    let client = http_client();
    let push = |base: String, body: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .post(format!(
                    "{base}/v2/paused/app/blobs/uploads/?digest={}",
                    sha256(&body)
                ))
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::CREATED)
        }
    };
    assert!(push(cluster.url(0), b"before the pause".to_vec()).await);
    let paused = cluster.leader().await;
    let pid = cluster.members[paused]
        .child
        .as_ref()
        .unwrap()
        .id()
        .to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let survivor = (paused + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    let during = b"while the old leader is paused".to_vec();
    while !push(cluster.url(survivor), during.clone()).await {
        assert!(Instant::now() < deadline, "the others never took over");
    }
    signal("-CONT");
    // The old leader sees the higher term, follows, and catches up.
    cluster.wait_ready(paused).await;
    let blob = client
        .get(format!(
            "{}/v2/paused/app/blobs/{}",
            cluster.url(paused),
            sha256(&during)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(&blob.bytes().await.unwrap()[..], &during[..]);
    let status = status(&client, &cluster.debug(paused)).await;
    assert_ne!(
        status["leader"].as_u64(),
        Some(paused as u64 + 1),
        "{status}"
    );
    assert!(push(cluster.url(paused), b"after the pause".to_vec()).await);
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Runs `registry cluster recover` for `member` with the env of its node.
async fn recover(member: &Member, blobs: &Path, peers: &str, yes: bool) -> std::process::Output {
    // `command` runs `serve`; a fresh command with the same environment.
    let serve = command(member, blobs, peers);
    let mut recover = Command::new(env!("CARGO_BIN_EXE_registry"));
    recover.args(["cluster", "recover"]);
    if yes {
        recover.arg("--yes");
    }
    for (key, value) in serve.get_envs() {
        if let Some(value) = value {
            recover.env(key, value);
        }
    }
    recover.current_dir(serve.get_current_dir().unwrap());
    tokio::task::spawn_blocking(move || recover.output().unwrap())
        .await
        .unwrap()
}

async fn status(client: &reqwest::Client, debug: &str) -> serde_json::Value {
    client
        .get(format!("{debug}/cluster/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_turns_a_lone_survivor_into_a_cluster_the_others_rejoin() {
    let mut cluster = Cluster::start_ready(3).await;
    let client = http_client();
    let layer = b"a layer that outlives two lost disks".to_vec();
    let put = client
        .post(format!(
            "{}/v2/recover/app/blobs/uploads/?digest={}",
            cluster.url(1),
            sha256(&layer)
        ))
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let old = loop {
        let now = status(&client, &cluster.debug(0)).await;
        let members = now["members"].as_array().unwrap();
        if members
            .iter()
            .all(|m| m["joined"] == true && m["applied_index"] == members[0]["applied_index"])
        {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the members never caught up: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    };
    let peers = Cluster::peers(&cluster.members);

    let refused = recover(&cluster.members[0], &cluster.blobs, &peers, true).await;
    assert!(!refused.status.success(), "recovering a running node");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop the node"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Two disks are gone for good; node 1 survives, stopped.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 1..3 {
        std::fs::remove_dir_all(cluster.members[i].dir.join("meta")).unwrap();
    }
    let preview = recover(&cluster.members[0], &cluster.blobs, &peers, false).await;
    let preview_out = String::from_utf8_lossy(&preview.stdout);
    assert!(preview.status.success(), "{preview:?}");
    assert!(preview_out.contains("Nothing was written"), "{preview_out}");
    assert!(preview_out.contains("[2, 3]"), "{preview_out}");
    let done = recover(&cluster.members[0], &cluster.blobs, &peers, true).await;
    assert!(done.status.success(), "{done:?}");

    cluster.restart(0);
    cluster.wait_ready(0).await;
    let alone = status(&client, &cluster.debug(0)).await;
    assert_eq!(alone["leader"].as_u64(), Some(1), "{alone}");
    assert_ne!(alone["cluster_id"], old["cluster_id"], "{alone}");
    let get = |base: String| {
        let client = client.clone();
        let url = format!("{base}/v2/recover/app/blobs/{}", sha256(&layer));
        async move { client.get(url).send().await.unwrap() }
    };
    let kept = get(cluster.url(0)).await;
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(&kept.bytes().await.unwrap()[..], &layer[..]);

    // The others come back with empty disks and join as new members.
    for i in 1..3 {
        cluster.restart(i);
    }
    for i in 1..3 {
        cluster.wait_ready(i).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = status(&client, &cluster.debug(0)).await;
        let voters = now["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "learner")
            .count();
        if voters == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the others never rejoined: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
    let through_new = get(cluster.url(2)).await;
    assert_eq!(through_new.status(), StatusCode::OK);
    assert_eq!(&through_new.bytes().await.unwrap()[..], &layer[..]);
}

/// The Kubernetes rollout, one node at a time: the node leaves the set of
/// nodes clients use (its endpoint is removed, as `preStop` allows for),
/// gets SIGTERM at once, drains what it is serving, exits 0, restarts and
/// rejoins the set once ready. Pullers pulling through the set the whole
/// time see every pull answered with the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_pulls_fails_no_pull() {
    let mut cluster = Cluster::start_ready(3).await;
    let client = http_client();
    let blobs: Vec<Vec<u8>> = (0..8)
        .map(|n| format!("rolling blob {n} ").repeat(20_000).into_bytes())
        .collect();
    for (n, blob) in blobs.iter().enumerate() {
        let put = client
            .post(format!(
                "{}/v2/rolling/app/blobs/uploads/?digest={}",
                cluster.url(n % 3),
                sha256(blob)
            ))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
    }
    let in_service: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new((0..3).map(|i| cluster.url(i)).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let pulls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let blobs = Arc::new(blobs);
    let pullers: Vec<_> = (0..4)
        .map(|w| {
            let (client, in_service, stop, failures, pulls, blobs) = (
                client.clone(),
                in_service.clone(),
                stop.clone(),
                failures.clone(),
                pulls.clone(),
                blobs.clone(),
            );
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let base = {
                        let nodes = in_service.lock().unwrap();
                        nodes[n % nodes.len()].clone()
                    };
                    let blob = &blobs[n % blobs.len()];
                    let url = format!("{base}/v2/rolling/app/blobs/{}", sha256(blob));
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == StatusCode::OK => match r.bytes().await {
                            Ok(body) if body[..] == blob[..] => {}
                            Ok(_) => failures.lock().unwrap().push(format!("{url}: wrong bytes")),
                            Err(e) => failures.lock().unwrap().push(format!("{url}: {e}")),
                        },
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{url}: {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("{url}: {e}")),
                    }
                    pulls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Pulls in flight around each step: wait until some more completed.
    let more_pulls = |n: usize| {
        let pulls = pulls.clone();
        async move {
            let from = pulls.load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(30);
            while pulls.load(Ordering::Relaxed) < from + n {
                assert!(Instant::now() < deadline, "the pullers stalled");
                tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
            }
        }
    };
    for i in 0..3 {
        more_pulls(50).await;
        let url = cluster.url(i);
        in_service.lock().unwrap().retain(|u| *u != url);
        // Not a wait for a condition: this models the chart's preStop
        // pause, in which requests already routed here still arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.terminate(i);
        cluster.restart(i);
        cluster.wait_ready(i).await;
        in_service.lock().unwrap().push(url);
    }
    more_pulls(50).await;
    stop.store(true, Ordering::Relaxed);
    for p in pullers {
        p.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    let pulls = pulls.load(Ordering::Relaxed);
    eprintln!(
        "{pulls} pulls during the rolling restart, {} failed",
        failures.len()
    );
    assert!(pulls > 100, "only {pulls} pulls ran");
    // A normal rolling restart is no error: no node logged one.
    for member in &cluster.members {
        let log = std::fs::read_to_string(log_path(member)).unwrap();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert!(errors.is_empty(), "node {} logged {errors:#?}", member.id);
    }
    assert!(
        failures.is_empty(),
        "{} of {pulls} pulls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// `registry readonly on|off|status` switches the whole cluster through
/// the log: pushes through any node answer 405 UNSUPPORTED saying why,
/// pulls keep working, `/metrics` and `registry cluster status` show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_switches_every_node_at_runtime() {
    let cluster = Cluster::start_ready(3).await;
    let client = http_client();
    let push = |i: usize, body: &'static [u8]| {
        let client = client.clone();
        let url = format!(
            "{}/v2/ro/app/blobs/uploads/?digest={}",
            cluster.url(i),
            sha256(body)
        );
        async move { client.post(url).body(body).send().await.unwrap() }
    };
    assert_eq!(push(0, b"before").await.status(), StatusCode::CREATED);
    let cli = |mode: &str, i: usize| {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["readonly", mode, "--addr"])
            .arg(format!("127.0.0.1:{}", cluster.members[i].debug))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(cli("on", 0).starts_with("read-only: on"));
    for i in 0..3 {
        let refused = push(i, b"during").await;
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "node {i}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
        assert!(
            body["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("read-only"),
            "{body}"
        );
        let pulled = client
            .get(format!(
                "{}/v2/ro/app/blobs/{}",
                cluster.url(i),
                sha256(b"before")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK, "pulls keep working");
    }
    assert!(cli("status", 2).starts_with("read-only: on"));
    // A node's gauge follows what it has applied.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client
            .get(format!("{}/metrics", cluster.debug(1)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("registry_read_only 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    assert_eq!(status(&client, &cluster.debug(2)).await["read_only"], true);
    assert!(cli("off", 1).starts_with("read-only: off"));
    assert_eq!(push(2, b"after").await.status(), StatusCode::CREATED);
}

/// Runs `registry gc` against node `i`; answers its exit status and output.
async fn registry_gc(cluster: &Cluster, i: usize) -> std::process::Output {
    let mut gc = Command::new(env!("CARGO_BIN_EXE_registry"));
    gc.args(["gc", "--addr"])
        .arg(format!("127.0.0.1:{}", cluster.members[i].debug));
    tokio::task::spawn_blocking(move || gc.output().unwrap())
        .await
        .unwrap()
}

/// How many of `digests` still have bytes (any generation) under `blobs`.
fn stored(blobs: &Path, digests: &[String]) -> usize {
    digests
        .iter()
        .filter(|digest| {
            let hex = &digest["sha256:".len()..];
            let dir = blobs.join("blobs/sha256").join(&hex[..2]);
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(hex))
            })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leader_mid_sweep_loses_nothing_and_the_next_collection_finishes() {
    let mut cluster = Cluster::start_ready(3).await;
    let client = http_client();
    // An image that must survive, and garbage: blobs no manifest references.
    let layer = vec![7u8; 50_000];
    let config = b"{\"survivor\":true}".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let post = |i: usize, repo: &str, body: Vec<u8>| {
        let url = format!(
            "{}/v2/{repo}/blobs/uploads/?digest={}",
            urls[i],
            sha256(&body)
        );
        let client = client.clone();
        async move { client.post(url).body(body).send().await.unwrap().status() }
    };
    for body in [layer.clone(), config.clone()] {
        assert_eq!(post(0, "gc/kept", body).await, StatusCode::CREATED);
    }
    let put = client
        .put(format!("{}/v2/gc/kept/manifests/v1", cluster.url(1)))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let garbage: Vec<Vec<u8>> = (0..1500u32)
        .map(|n| format!("garbage blob {n}").into_bytes())
        .collect();
    let digests: Vec<String> = garbage.iter().map(|g| sha256(g)).collect();
    let pushes = futures::stream::iter(garbage.iter().enumerate())
        .map(|(n, body)| post(n % 3, "gc/loose", body.clone()))
        .buffer_unordered(8);
    let statuses: Vec<StatusCode> = pushes.collect().await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED));

    // The first collection hides the garbage; once the grace passed, the
    // second condemns it and sweeps, and the leader dies mid-sweep.
    let first = registry_gc(&cluster, 0).await;
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("blobs hidden: 1500"));
    // The grace must pass: a dry run then sees no hidden blob within it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dry: serde_json::Value = client
            .post(format!("{}/gc?dryrun=true", cluster.debug(0)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if dry["hidden_in_grace"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the grace never passed: {dry}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    let leader = cluster.leader().await;
    let collecting = {
        let mut gc = Command::new(env!("CARGO_BIN_EXE_registry"));
        gc.args(["gc", "--addr"])
            .arg(format!("127.0.0.1:{}", cluster.members[leader].debug));
        tokio::task::spawn_blocking(move || gc.output().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(&cluster.blobs, &digests) == digests.len() {
        assert!(Instant::now() < deadline, "the sweep never began");
        tokio::time::sleep(Duration::from_millis(2)).await; // poll interval
    }
    cluster.kill(leader);
    let left = stored(&cluster.blobs, &digests);
    let interrupted = collecting.await.unwrap();
    // The collection may have finished in the moment before the kill.
    assert!(
        !interrupted.status.success() || left == 0,
        "{interrupted:?}"
    );

    // A garbage blob pushed again after it was condemned is written afresh,
    // and a manifest keeps it; a late delete of the old generation cannot
    // touch it.
    let survivor = (leader + 1) % 3;
    assert_eq!(
        post(survivor, "gc/kept", garbage[0].clone()).await,
        StatusCode::CREATED
    );
    let second = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0], "size": garbage[0].len()},
        "layers": [],
    }))
    .unwrap();
    let put = client
        .put(format!("{}/v2/gc/kept/manifests/v2", cluster.url(survivor)))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(second)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    cluster.restart(leader);
    cluster.wait_ready(leader).await;
    let finish = registry_gc(&cluster, survivor).await;
    assert!(finish.status.success(), "{finish:?}");
    let report = String::from_utf8_lossy(&finish.stdout).into_owned();
    assert_eq!(
        stored(&cluster.blobs, &digests[1..]),
        0,
        "the next collection swept what the dead leader left ({left} left at the kill): {report}"
    );
    for i in 0..3 {
        let manifest_url = format!("{}/v2/gc/kept/manifests/v1", cluster.url(i));
        let got = client
            .get(manifest_url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK, "node {i}");
        assert_eq!(got.bytes().await.unwrap(), manifest);
        let kept = [
            (sha256(&layer), &layer),
            (sha256(&config), &config),
            (digests[0].clone(), &garbage[0]),
        ];
        for (digest, body) in kept {
            let got = client
                .get(format!("{}/v2/gc/kept/blobs/{digest}", cluster.url(i)))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), StatusCode::OK, "node {i} {digest}");
            assert_eq!(&got.bytes().await.unwrap()[..], &body[..]);
        }
    }
    let status = status(&client, &cluster.debug(survivor)).await;
    assert!(status["leader"].as_u64().is_some(), "{status}");
}
