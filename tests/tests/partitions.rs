//! Partitions of a 3-node cluster (links cut inside the process, see
//! `raft::LinkFaults`): an isolated follower, an isolated leader and a
//! one-way cut. A node cut off from the majority answers 503 rather than
//! stale data and turns unready; healing catches it up without deposing
//! the leader; and a history of concurrent tag writes and reads through
//! every node during the whole schedule is linearizable (todc-utils'
//! Wing–Gong checker with memoization).

use registry_tests::cluster::http_get;
use registry_tests::cluster::TestCluster;
use registry_tests::oci::{self, Client};
use registry_tests::{eventually, poll_until};
use reqwest::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use todc_utils::specifications::register::{RegisterOperation, RegisterSpecification};
use todc_utils::{Action, History, WGLChecker};

const REPO: &str = "part/app";
/// Writes and reads that must succeed in each phase of the schedule.
const PHASE_OPERATIONS: usize = 8;

fn cluster() -> TestCluster {
    TestCluster::start(3, None, |config| {
        config.raft.write_timeout = Duration::from_secs(3);
        config.raft.read_timeout = Duration::from_secs(2);
    })
}

/// A manifest over the shared config blob, told apart by `n`.
fn manifest(config: &[u8], n: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": oci::descriptor(oci::OCI_CONFIG, config),
        "layers": [],
        "annotations": { "n": n.to_string() },
    }))
    .unwrap()
}

async fn put_tag(client: &Client, tag: &str, body: &[u8]) -> StatusCode {
    client
        .request(reqwest::Method::PUT, &format!("/v2/{REPO}/manifests/{tag}"))
        .header("Content-Type", oci::OCI_MANIFEST)
        .body(body.to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_or(StatusCode::REQUEST_TIMEOUT, |r| r.status())
}

/// The digest a tag points at through `client`, or the failure status.
async fn read_tag(client: &Client, tag: &str) -> Result<String, StatusCode> {
    let response = client
        .request(reqwest::Method::GET, &format!("/v2/{REPO}/manifests/{tag}"))
        .header("Accept", oci::OCI_MANIFEST)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|_| StatusCode::REQUEST_TIMEOUT)?;
    if response.status() != StatusCode::OK {
        assert!(
            response.status() == StatusCode::SERVICE_UNAVAILABLE,
            "a read failed with {}",
            response.status()
        );
        assert!(response.headers().contains_key("retry-after"));
        return Err(response.status());
    }
    let body = response.bytes().await.unwrap();
    Ok(oci::sha256(&body))
}

fn term_and_leader(cluster: &TestCluster, i: usize) -> (u64, u64) {
    let status = cluster.status(i).expect("status");
    (
        status["term"].as_u64().unwrap(),
        status["leader"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_serves_nothing_stale_and_catches_up_without_deposing_the_leader() {
    let cluster = cluster();
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let config = b"{\"partition\":1}".to_vec();
    cluster.client(leader).push_blob(REPO, &config).await;
    assert_eq!(
        put_tag(&cluster.client(leader), "t", &manifest(&config, 1)).await,
        StatusCode::CREATED
    );
    let (term, _) = term_and_leader(&cluster, leader);

    tracing::info!(follower, "the follower is cut off from both peers");
    let id = follower as u64 + 1;
    cluster
        .links
        .isolate(id, (1..=3).filter(|other| *other != id));
    let newer = manifest(&config, 2);
    assert_eq!(
        put_tag(&cluster.client(leader), "t", &newer).await,
        StatusCode::CREATED
    );
    let isolated = cluster.client(follower);
    assert_eq!(
        read_tag(&isolated, "t").await,
        Err(StatusCode::SERVICE_UNAVAILABLE),
        "stale or served"
    );
    assert_eq!(
        put_tag(&isolated, "t", &manifest(&config, 3)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let list = isolated.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(list.status(), StatusCode::SERVICE_UNAVAILABLE);
    let unready = poll_until(Duration::from_secs(20), || {
        cluster
            .readiness(follower)
            .is_some_and(|(status, _)| status == 503)
    });
    assert!(unready, "the isolated node stayed ready");
    // The isolated node has stopped standing for election: without that its
    // term would grow with every election timeout and depose the leader on healing.
    let withdrawn = poll_until(Duration::from_secs(20), || {
        http_get(cluster.debug_addr(follower), "/metrics")
            .is_some_and(|(_, body)| body.contains("registry_raft_quorum_reachable 0"))
    });
    assert!(withdrawn, "the isolated node kept standing for election");

    tracing::info!("the partition heals");
    cluster.links.heal();
    cluster.wait_ready(follower);
    assert_eq!(read_tag(&isolated, "t").await, Ok(oci::sha256(&newer)));
    let (term_after, leader_after) = term_and_leader(&cluster, leader);
    assert_eq!(
        leader_after,
        leader as u64 + 1,
        "the healthy leader was deposed"
    );
    assert_eq!(term_after, term, "the isolated node raised the term");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_serves_nothing_stale() {
    let cluster = cluster();
    let old = cluster.leader();
    let config = b"{\"partition\":2}".to_vec();
    cluster.client(old).push_blob(REPO, &config).await;
    assert_eq!(
        put_tag(&cluster.client(old), "t", &manifest(&config, 1)).await,
        StatusCode::CREATED
    );
    let id = old as u64 + 1;
    cluster
        .links
        .isolate(id, (1..=3).filter(|other| *other != id));
    let survivor = (old + 1) % 3;
    let newer = manifest(&config, 2);
    let written = eventually(Duration::from_secs(30), || async {
        put_tag(&cluster.client(survivor), "t", &newer).await == StatusCode::CREATED
    })
    .await;
    assert!(written, "the majority never accepted a write");
    assert_eq!(
        read_tag(&cluster.client(old), "t").await,
        Err(StatusCode::SERVICE_UNAVAILABLE),
        "the old leader served a read it could not confirm"
    );
    cluster.links.heal();
    cluster.wait_ready(old);
    assert_eq!(
        read_tag(&cluster.client(old), "t").await,
        Ok(oci::sha256(&newer))
    );
}

/// One client operation as recorded, in real-time order; a failed read is
/// dropped afterwards (it changed nothing).
type Recorded = Vec<Option<(usize, Action<RegisterOperation<String>>)>>;

/// Concurrent writes and reads of one tag through every node while the
/// cluster is partitioned three ways and healed; the recorded history must
/// be linearizable. A write that failed (503, timeout) may or may not have
/// happened: its response goes at the end of the history (it may take
/// effect anywhere after its call), and its client continues under a fresh
/// process id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_writes_and_reads_through_every_node_stay_linearizable_across_partitions() {
    let cluster = Arc::new(cluster());
    let config = b"{\"linearizable\":true}".to_vec();
    let first = manifest(&config, 0);
    cluster.client(0).push_blob(REPO, &config).await;
    assert_eq!(
        put_tag(&cluster.client(0), "x", &first).await,
        StatusCode::CREATED
    );
    let initial = oci::sha256(&first);
    let history: Arc<Mutex<Recorded>> = Arc::new(Mutex::new(vec![
        Some((0, Action::Call(RegisterOperation::Write(initial.clone())))),
        Some((0, Action::Response(RegisterOperation::Write(initial)))),
    ]));
    let unknown: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicUsize::new(1));
    let (written, read) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let record = |history: &Mutex<Recorded>, pid, action| {
        let mut history = history.lock().unwrap();
        history.push(Some((pid, action)));
        history.len() - 1
    };
    let clients: Vec<_> = (0..6)
        .map(|worker| {
            let (cluster, history, unknown, stop, next_id, written, read, config) = (
                cluster.clone(),
                history.clone(),
                unknown.clone(),
                stop.clone(),
                next_id.clone(),
                written.clone(),
                read.clone(),
                config.clone(),
            );
            tokio::spawn(async move {
                let mut pid = next_id.fetch_add(1, Ordering::SeqCst);
                let mut n = 0;
                // One operation per 40 ms per client keeps the history in the
                // hundreds of operations the checker handles quickly.
                let mut pace = tokio::time::interval(Duration::from_millis(40));
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let node = cluster.client((worker + n) % 3);
                    if worker % 2 == 0 {
                        let body = manifest(&config, 1000 * (worker + 1) + n);
                        let digest = oci::sha256(&body);
                        record(
                            &history,
                            pid,
                            Action::Call(RegisterOperation::Write(digest.clone())),
                        );
                        if put_tag(&node, "x", &body).await == StatusCode::CREATED {
                            record(
                                &history,
                                pid,
                                Action::Response(RegisterOperation::Write(digest)),
                            );
                            written.fetch_add(1, Ordering::SeqCst);
                        } else {
                            unknown.lock().unwrap().push((pid, digest));
                            pid = next_id.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        let call =
                            record(&history, pid, Action::Call(RegisterOperation::Read(None)));
                        match read_tag(&node, "x").await {
                            Ok(digest) => {
                                record(
                                    &history,
                                    pid,
                                    Action::Response(RegisterOperation::Read(Some(digest))),
                                );
                                read.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => history.lock().unwrap()[call] = None,
                        }
                    }
                    pace.tick().await;
                }
            })
        })
        .collect();
    // Each phase lasts until the clients got more writes and reads through,
    // so every fault is in the history with operations around it.
    let progress = |what: &'static str| {
        let (written, read) = (written.clone(), read.clone());
        async move {
            let (w, r) = (written.load(Ordering::SeqCst), read.load(Ordering::SeqCst));
            let moved = eventually(Duration::from_secs(30), || {
                let (written, read) = (written.clone(), read.clone());
                async move {
                    written.load(Ordering::SeqCst) >= w + PHASE_OPERATIONS
                        && read.load(Ordering::SeqCst) >= r + PHASE_OPERATIONS
                }
            })
            .await;
            assert!(moved, "no progress {what}");
        }
    };
    progress("before any fault").await;
    let follower = (cluster.leader() + 1) % 3 + 1;
    tracing::info!(follower, "isolate a follower");
    cluster
        .links
        .isolate(follower as u64, (1..=3).filter(|o| *o != follower as u64));
    progress("with a follower isolated").await;
    cluster.links.heal();
    progress("after healing the follower").await;
    let leader = cluster.leader() as u64 + 1;
    tracing::info!(leader, "isolate the leader");
    cluster
        .links
        .isolate(leader, (1..=3).filter(|o| *o != leader));
    progress("with the leader isolated").await;
    cluster.links.heal();
    progress("after healing the leader").await;
    let leader = cluster.leader() as u64 + 1;
    let other = leader % 3 + 1;
    tracing::info!(
        leader,
        other,
        "cut one way: the leader cannot reach one follower"
    );
    cluster.links.cut(leader, other);
    progress("with a one-way cut").await;
    cluster.links.heal();
    progress("after healing the cut").await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let mut actions: Vec<_> = history.lock().unwrap().drain(..).flatten().collect();
    for (pid, digest) in unknown.lock().unwrap().drain(..) {
        actions.push((pid, Action::Response(RegisterOperation::Write(digest))));
    }
    let (written, read) = (written.load(Ordering::SeqCst), read.load(Ordering::SeqCst));
    assert!(
        written > 10 && read > 10,
        "too few operations succeeded: {written} writes, {read} reads"
    );
    let operations = actions.len() / 2;
    let checking = std::time::Instant::now();
    let linearizable = WGLChecker::<RegisterSpecification<String>>::is_linearizable(
        History::from_actions(actions),
    );
    tracing::info!(operations, written, read, took = ?checking.elapsed(), "checked the history");
    assert!(
        linearizable,
        "the history of {operations} operations is not linearizable"
    );
}

/// The checker above is only worth something if it refuses a stale read.
#[test]
fn the_checker_refuses_a_read_of_an_overwritten_value() {
    use RegisterOperation::{Read, Write};
    let write = |v: &str| Write(v.to_owned());
    let stale = vec![
        (0, Action::Call(write("a"))),
        (0, Action::Response(write("a"))),
        (0, Action::Call(write("b"))),
        (0, Action::Response(write("b"))),
        (1, Action::Call(Read(None))),
        (1, Action::Response(Read(Some("a".to_owned())))),
    ];
    assert!(
        !WGLChecker::<RegisterSpecification<String>>::is_linearizable(History::from_actions(stale))
    );
    let concurrent = vec![
        (0, Action::Call(write("a"))),
        (0, Action::Response(write("a"))),
        (0, Action::Call(write("b"))),
        (1, Action::Call(Read(None))),
        (1, Action::Response(Read(Some("a".to_owned())))),
        (0, Action::Response(write("b"))),
    ];
    assert!(
        WGLChecker::<RegisterSpecification<String>>::is_linearizable(History::from_actions(
            concurrent
        ))
    );
}
