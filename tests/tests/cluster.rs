//! Multi-node clusters in one process: formation, reads of one node's
//! writes on every other, uploads spread over nodes (and continued when
//! their node stops), leader loss, membership changes, and the nodes that
//! must refuse to serve.

use registry_tests::cluster::TestCluster;
use registry_tests::oci::{self, Client};
use registry_tests::poll_until;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

fn cluster(n: usize) -> TestCluster {
    TestCluster::start(n, None, |config| config.api.delete_enabled = true)
}

/// Pushes a one-layer image `repo:tag` through `client`; answers the
/// manifest's bytes.
async fn push_image(client: &Client, repo: &str, tag: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer of {seed}").repeat(100).into_bytes();
    client.push_blob(repo, &config).await;
    client.push_blob(repo, &layer).await;
    let manifest = oci::image_manifest(&config, &[&layer]);
    let response = client
        .put_manifest(repo, tag, oci::OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "push {repo}:{tag}");
    manifest
}

async fn manifest_of(client: &Client, repo: &str, reference: &str) -> (StatusCode, Vec<u8>) {
    let response = client
        .request(
            reqwest::Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("Accept", oci::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_one_node_is_read_at_once_through_every_other() {
    let cluster = cluster(3);
    tracing::info!("every node pushes, every other node reads the tag at once");
    for writer in 0..3 {
        for round in 0..3 {
            let tag = format!("w{writer}-r{round}");
            let manifest = push_image(&cluster.client(writer), "team/app", &tag, &tag).await;
            for reader in (0..3).filter(|r| *r != writer) {
                let (status, bytes) = manifest_of(&cluster.client(reader), "team/app", &tag).await;
                assert_eq!(status, StatusCode::OK, "node {reader} misses {tag}");
                assert_eq!(
                    bytes, manifest,
                    "node {reader} serves other bytes for {tag}"
                );
            }
        }
    }
    tracing::info!("tag lists and the catalog agree on every node");
    for i in 0..3 {
        let tags: serde_json::Value = cluster
            .client(i)
            .get("/v2/team/app/tags/list")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            tags["tags"].as_array().unwrap().len(),
            9,
            "node {i}: {tags}"
        );
    }
    let status = cluster.status(0).expect("status");
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
    assert!(status["cluster_id"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_on_one_node_is_continued_and_finished_on_the_others() {
    let cluster = cluster(3);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = oci::sha256(&data);
    let location = cluster.client(0).start_upload("spread/blob").await;
    let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
    let mut offset = 0;
    for (i, chunk) in chunks[..2].iter().enumerate() {
        let node = 1 + i % 2;
        let response = cluster.client(node).patch(&location, offset, chunk).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "PATCH through node {node}"
        );
        offset += chunk.len() as u64;
        assert_eq!(
            registry_tests::oci::header(&response, "Range").as_deref(),
            Some(format!("0-{}", offset - 1).as_str())
        );
    }
    let status = cluster.client(2).get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    let finished = cluster
        .client(1)
        .finish(&location, &digest, Some(chunks[2]))
        .await;
    assert_eq!(finished.status(), StatusCode::CREATED);
    for i in 0..3 {
        let blob = cluster
            .client(i)
            .get(&format!("/v2/spread/blob/blobs/{digest}"))
            .await;
        assert_eq!(blob.status(), StatusCode::OK);
        assert_eq!(oci::sha256(&blob.bytes().await.unwrap()), digest);
    }
    tracing::info!(
        "the whole chunked push again through the balancer, a new connection per request"
    );
    let balanced = cluster.balanced_client();
    let pushed = balanced
        .push_blob_chunked("spread/blob", &data[..250_000], 64 * 1024)
        .await;
    assert_eq!(pushed, oci::sha256(&data[..250_000]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_node_stopped_continues_on_another() {
    let mut cluster = cluster(3);
    let leader = cluster.leader();
    let owner = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let digest = oci::sha256(&data);
    let location = cluster.client(owner).start_upload("orphan/blob").await;
    let first = cluster
        .client(owner)
        .patch(&location, 0, &data[..100_000])
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    tracing::info!(owner, "the node owning the session stops");
    cluster.stop(owner);
    let second = cluster
        .client(other)
        .patch(&location, 100_000, &data[100_000..])
        .await;
    assert_eq!(
        second.status(),
        StatusCode::ACCEPTED,
        "{}",
        second.text().await.unwrap()
    );
    let finished = cluster
        .client(leader)
        .finish(&location, &digest, None)
        .await;
    assert_eq!(finished.status(), StatusCode::CREATED);
    let blob = cluster
        .client(other)
        .get(&format!("/v2/orphan/blob/blobs/{digest}"))
        .await;
    assert_eq!(oci::sha256(&blob.bytes().await.unwrap()), digest);
    tracing::info!("the stopped node comes back, catches up and serves the blob");
    cluster.start_node(owner);
    cluster.wait_ready(owner);
    let blob = cluster
        .client(owner)
        .get(&format!("/v2/orphan/blob/blobs/{digest}"))
        .await;
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(oci::sha256(&blob.bytes().await.unwrap()), digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_loses_nothing_and_writes_resume() {
    let mut cluster = cluster(3);
    let mut pushed = Vec::new();
    for round in 0..2 {
        let leader = cluster.leader();
        for i in 0..3 {
            let tag = format!("r{round}-{i}");
            let manifest = push_image(&cluster.client(i), "failover/app", &tag, &tag).await;
            pushed.push((tag, manifest));
        }
        tracing::info!(leader, "the leader stops");
        cluster.stop(leader);
        let survivor = cluster.client((leader + 1) % 3);
        let stopped = Instant::now();
        let mut attempt = 0;
        let resumed = loop {
            attempt += 1;
            let tag = format!("after-{round}-{attempt}");
            let config = format!("{{\"after\":\"{tag}\"}}").into_bytes();
            let response = survivor
                .request(
                    reqwest::Method::POST,
                    &format!(
                        "/v2/failover/app/blobs/uploads/?digest={}",
                        oci::sha256(&config)
                    ),
                )
                .body(config.clone())
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::CREATED {
                break stopped.elapsed();
            }
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key("retry-after"));
            assert!(
                stopped.elapsed() < Duration::from_secs(30),
                "writes never resumed"
            );
        };
        tracing::info!(?resumed, "writes resumed after the leader stopped");
        for (tag, manifest) in &pushed {
            for i in (0..3).filter(|i| cluster.is_running(*i)) {
                let (status, bytes) = manifest_of(&cluster.client(i), "failover/app", tag).await;
                assert_eq!(status, StatusCode::OK, "node {i} lost {tag}");
                assert_eq!(&bytes, manifest);
            }
        }
        cluster.start_node(leader);
        cluster.wait_ready(leader);
        for (tag, manifest) in &pushed {
            let (status, bytes) = manifest_of(&cluster.client(leader), "failover/app", tag).await;
            assert_eq!(status, StatusCode::OK, "the restarted node misses {tag}");
            assert_eq!(&bytes, manifest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_node_cluster_survives_two_losses() {
    let mut cluster = cluster(5);
    let manifest = push_image(&cluster.client(4), "five/app", "v1", "five").await;
    let leader = cluster.leader();
    let lost: Vec<usize> = vec![leader, (leader + 1) % 5];
    for i in &lost {
        cluster.stop(*i);
    }
    let alive: Vec<usize> = (0..5).filter(|i| !lost.contains(i)).collect();
    push_image(&cluster.client(alive[0]), "five/app", "v2", "five-two").await;
    for i in &alive {
        let (status, bytes) = manifest_of(&cluster.client(*i), "five/app", "v1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, manifest);
        let (status, _) = manifest_of(&cluster.client(*i), "five/app", "v2").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_serves_then_is_removed() {
    let mut cluster = cluster(3);
    let manifest = push_image(&cluster.client(0), "grow/app", "v1", "grow").await;
    let fourth = cluster.add_node(4);
    cluster.wait_ready(fourth);
    let (status, bytes) = manifest_of(&cluster.client(fourth), "grow/app", "v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, manifest);
    let became_voter = poll_until(Duration::from_secs(30), || {
        cluster.status(0).is_some_and(|s| {
            s["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == 4 && (m["role"] == "voter" || m["role"] == "leader"))
        })
    });
    assert!(became_voter, "{:?}", cluster.status(0));
    push_image(&cluster.client(fourth), "grow/app", "v2", "grow-two").await;

    tracing::info!("node 4 is removed through node 1's debug listener");
    let removed = reqwest::Client::new()
        .post(format!("{}/cluster/remove/4", cluster.debug_url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        removed.status(),
        StatusCode::OK,
        "{}",
        removed.text().await.unwrap()
    );
    let status = cluster.status(0).expect("status");
    let ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{status}");
    let (status, _) = manifest_of(&cluster.client(1), "grow/app", "v2").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_a_wiped_metadata_directory_is_refused() {
    let mut cluster = cluster(3);
    push_image(&cluster.client(0), "wiped/app", "v1", "wiped").await;
    let victim = (cluster.leader() + 1) % 3;
    // Every member records that it joined with data once it has caught up.
    let recorded = poll_until(Duration::from_secs(30), || {
        cluster.status(victim).is_some_and(|s| {
            s["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == victim as u64 + 1 && m["joined"] == true)
        })
    });
    assert!(recorded);
    cluster.stop(victim);
    std::fs::remove_dir_all(cluster.meta_dir(victim)).unwrap();
    cluster.start_node(victim);
    let refused = poll_until(Duration::from_secs(30), || {
        cluster.failure(victim).is_some()
    });
    assert!(refused, "a wiped node started");
    let why = cluster.failure(victim).unwrap();
    assert!(why.contains("registry cluster remove"), "{why}");
    assert!(why.contains("empty"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_sees_other_blob_storage_stays_unready_and_says_why() {
    let mut cluster = cluster(3);
    let elsewhere = tempfile::tempdir().unwrap();
    let root = elsewhere.path().to_owned();
    let victim = (cluster.leader() + 1) % 3;
    tracing::info!(victim, "a node restarts pointed at a disk of its own");
    cluster.start_node_with(victim, move |config| {
        config.blobs = storage::BackendConfig::Filesystem { root };
    });
    let unready = poll_until(Duration::from_secs(30), || {
        cluster
            .readiness(victim)
            .is_some_and(|(status, _)| status == 503)
    });
    let (status, why) = cluster.readiness(victim).expect("the node answers");
    assert!(unready, "{status}: {why}");
    assert!(why.contains("marker"), "{why}");
    assert!(why.contains("same storage"), "{why}");
    for i in (0..3).filter(|i| *i != victim) {
        assert_eq!(cluster.readiness(i).map(|(s, _)| s), Some(200));
    }
}

/// A follower stopped while the others write past several snapshots finds
/// the leader's log trimmed beyond where it stopped: it is sent a snapshot,
/// installs it, and then serves everything, hashing the same as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_catches_up_from_a_shipped_snapshot() {
    let mut cluster = TestCluster::start(3, None, |config| {
        config.raft.snapshot_every = 20;
        config.raft.log_kept_after_snapshot = 5;
    });
    let leader = cluster.leader();
    let behind = (leader + 1) % 3;
    let stopped_at = cluster.status(behind).expect("status")["last_log_index"]
        .as_u64()
        .unwrap();
    cluster.stop(behind);
    let mut pushed = Vec::new();
    for n in 0..30 {
        let tag = format!("t{n}");
        pushed.push((
            tag.clone(),
            push_image(&cluster.client(leader), "far/app", &tag, &tag).await,
        ));
    }
    let status = cluster.status(leader).expect("status");
    let purged = status["purged_index"]
        .as_u64()
        .expect("the leader trimmed its log");
    assert!(
        purged > stopped_at,
        "the leader's log still reaches index {stopped_at}: {status}"
    );
    cluster.start_node(behind);
    cluster.wait_ready(behind);
    let installed = poll_until(Duration::from_secs(60), || {
        cluster
            .status(behind)
            .and_then(|s| s["snapshot_index"].as_u64())
            .is_some_and(|i| i >= purged)
    });
    assert!(
        installed,
        "node {} holds no snapshot past {purged}: {:?}",
        behind + 1,
        cluster.status(behind)
    );
    for (tag, manifest) in &pushed {
        let (status, bytes) = manifest_of(&cluster.client(behind), "far/app", tag).await;
        assert_eq!(status, StatusCode::OK, "{tag}");
        assert_eq!(&bytes, manifest, "{tag}");
    }
    let same = poll_until(Duration::from_secs(30), || {
        let prints: Vec<_> = (0..3)
            .map(|i| {
                cluster
                    .status(i)
                    .map(|s| (s["applied_index"].clone(), s["state_fingerprint"].clone()))
            })
            .collect();
        prints.iter().all(|p| p.is_some() && *p == prints[0])
    });
    assert!(same, "the nodes' states differ after the snapshot");
}
