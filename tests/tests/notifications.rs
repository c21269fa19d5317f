//! Notifications against real nodes and a receiver on loopback: every push,
//! mount, delete and pull arrives in distribution's envelope, in log order,
//! at least once with a stable id; a dead endpoint delays nothing and gets
//! everything once it is back (within its backlog); a node killed with
//! `kill -9` right after a push's 201, or a leader lost, still delivers it.

use node::notify::{EndpointConfig, NotifyConfig, ENVELOPE_MEDIA_TYPE};
use registry_tests::oci::{image_manifest, sha256, OCI_MANIFEST};
use registry_tests::receiver::EventReceiver;
use registry_tests::{eventually, TestCluster, TestNode};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

fn endpoint(name: &str, url: String) -> EndpointConfig {
    EndpointConfig {
        name: name.to_owned(),
        url,
        headers: vec![("X-Test".to_owned(), name.to_owned())],
        timeout: Duration::from_secs(5),
        threshold: 3,
        backoff: Duration::from_millis(50),
        ignored_media_types: Vec::new(),
        ignored_actions: Vec::new(),
        backlog: 10_000,
    }
}

fn notifying(endpoints: Vec<EndpointConfig>) -> NotifyConfig {
    NotifyConfig {
        include_references: true,
        endpoints,
    }
}

/// `(action, repository, digest or tag)` of each event, in arrival order.
fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            let target = &e["target"];
            let what = target["digest"]
                .as_str()
                .or(target["tag"].as_str())
                .unwrap_or_default();
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                target["repository"].as_str().unwrap_or_default().to_owned(),
                what.to_owned(),
            )
        })
        .collect()
}

fn series(name: &str, endpoint: &str) -> String {
    format!("{name}{{endpoint=\"{endpoint}\"}}")
}

#[tokio::test]
async fn pushes_mounts_deletes_and_pulls_arrive_in_distributions_envelope_in_log_order() {
    let all = EventReceiver::start();
    let manifests_only = EventReceiver::start();
    let (all_url, filtered_url) = (all.url(), manifests_only.url());
    let node = TestNode::start_with(move |config| {
        config.api.delete_enabled = true;
        config.gc.pull_flush = Duration::from_millis(200);
        config.notifications = notifying(vec![
            endpoint("all", all_url.clone()),
            EndpointConfig {
                ignored_actions: vec!["pull".to_owned()],
                ignored_media_types: vec!["application/octet-stream".to_owned()],
                ..endpoint("manifests", filtered_url.clone())
            },
        ]);
    });
    let client = node.client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let (config_digest, layer_digest) = (sha256(&config), sha256(&layer));
    client.push_blob("notify/app", &config).await;
    client.push_blob_chunked("notify/app", &layer, 7_000).await;
    let manifest = image_manifest(&config, &[&layer]);
    let manifest_digest = sha256(&manifest);
    let put = client
        .put_manifest("notify/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let mount = client
        .request(
            reqwest::Method::POST,
            &format!("/v2/notify/copy/blobs/uploads/?mount={layer_digest}&from=notify/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), StatusCode::CREATED);
    assert_eq!(
        client.manifest("notify/app", "v1").await.status(),
        StatusCode::OK
    );
    assert_eq!(client.blob_bytes("notify/app", &layer_digest).await, layer);
    let deleted = client
        .delete(&format!("/v2/notify/app/manifests/{manifest_digest}"))
        .await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);

    let arrived = eventually(Duration::from_secs(30), || async {
        let actions: Vec<String> = all
            .events()
            .iter()
            .map(|e| e["action"].to_string())
            .collect();
        actions.iter().filter(|a| *a == "\"pull\"").count() >= 2
            && actions.iter().any(|a| a == "\"delete\"")
            && manifests_only.events().len() >= 2
    })
    .await;
    assert!(
        arrived,
        "events still missing: {:#?}",
        summary(&all.events())
    );

    for delivery in all.deliveries() {
        assert_eq!(delivery.content_type, ENVELOPE_MEDIA_TYPE);
        assert_eq!(
            delivery.test_header.as_deref(),
            Some("all"),
            "the endpoint's headers"
        );
        assert_eq!(
            delivery.envelope["events"].as_array().map(Vec::len),
            Some(1)
        );
    }
    let events = all.events();
    let changes: Vec<_> = summary(&events)
        .into_iter()
        .filter(|(action, ..)| action != "pull")
        .collect();
    let own = |action: &str, repo: &str, what: &str| (action.into(), repo.into(), what.into());
    assert_eq!(
        changes,
        vec![
            own("push", "notify/app", &config_digest),
            own("push", "notify/app", &layer_digest),
            own("push", "notify/app", &manifest_digest),
            own("mount", "notify/copy", &layer_digest),
            own("delete", "notify/app", &manifest_digest),
        ],
        "every change once, in the order the log applied them"
    );
    let mut pulls: Vec<_> = summary(&events)
        .into_iter()
        .filter(|(action, ..)| action == "pull")
        .collect();
    pulls.sort();
    assert_eq!(
        pulls,
        vec![
            own("pull", "notify/app", &layer_digest),
            own("pull", "notify/app", &manifest_digest),
        ]
    );
    let ids: BTreeSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");

    let pushed = events
        .iter()
        .find(|e| e["action"] == "push" && e["target"]["digest"] == manifest_digest.as_str())
        .unwrap();
    let target = &pushed["target"];
    assert_eq!(target["mediaType"], OCI_MANIFEST);
    assert_eq!(target["size"], manifest.len());
    assert_eq!(target["length"], manifest.len());
    assert_eq!(target["tag"], "v1");
    assert!(
        target["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2/notify/app/manifests/{manifest_digest}")),
        "{target}"
    );
    let references: Vec<&str> = target["references"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["digest"].as_str())
        .collect();
    assert_eq!(
        references,
        vec![config_digest.as_str(), layer_digest.as_str()]
    );
    assert_eq!(pushed["request"]["method"], "PUT");
    assert!(!pushed["request"]["id"].as_str().unwrap().is_empty());
    assert!(!pushed["source"]["instanceID"].as_str().unwrap().is_empty());
    assert!(pushed["timestamp"].as_str().unwrap().ends_with('Z'));
    if let Some((user, _)) = registry_tests::credentials_under_test() {
        assert_eq!(pushed["actor"]["name"], user.as_str());
    }
    let layer_push = events
        .iter()
        .find(|e| e["action"] == "push" && e["target"]["digest"] == layer_digest.as_str())
        .unwrap();
    assert_eq!(
        layer_push["target"]["mediaType"],
        "application/octet-stream"
    );
    assert_eq!(layer_push["target"]["size"], layer.len());
    assert_eq!(
        layer_push["request"]["method"], "PUT",
        "the chunked upload's final PUT"
    );
    let mounted = events.iter().find(|e| e["action"] == "mount").unwrap();
    assert_eq!(mounted["target"]["fromRepository"], "notify/app");
    let delete = events.iter().find(|e| e["action"] == "delete").unwrap();
    assert_eq!(
        delete["target"],
        serde_json::json!({"digest": manifest_digest, "repository": "notify/app"}),
        "a delete names only what went"
    );

    assert_eq!(
        summary(&manifests_only.events()),
        vec![
            own("push", "notify/app", &manifest_digest),
            own("delete", "notify/app", &manifest_digest),
        ],
        "pulls and blobs are ignored by that endpoint's filters"
    );
    let delivered = eventually(Duration::from_secs(10), || async {
        node.metric_sum(&series(
            "registry_notifications_delivered_total",
            "manifests",
        )) == 2
            && node.metric_sum(&series("registry_notifications_pending", "all")) == 0
    })
    .await;
    assert!(delivered, "the metrics count what arrived");
}

#[tokio::test]
async fn a_dead_endpoint_delays_no_push_and_gets_every_event_once_back() {
    let receiver = EventReceiver::start();
    receiver.answer(503);
    let url = receiver.url();
    let node = TestNode::start_with(move |config| {
        config.notifications = notifying(vec![endpoint("flaky", url.clone())]);
    });
    let client = node.client();
    let mut expected = Vec::new();
    for i in 0..3u8 {
        let config = format!("{{\"n\":{i}}}").into_bytes();
        let layer = vec![i; 3000];
        let digest = client
            .push_image("notify/flaky", &format!("t{i}"), &config, &[&layer])
            .await;
        expected.extend([sha256(&config), sha256(&layer), digest]);
    }
    let failing = eventually(Duration::from_secs(30), || async {
        node.metric_sum(&series("registry_notifications_failed_total", "flaky")) >= 2
            && node.metric_sum(&series("registry_notifications_pending", "flaky")) > 0
    })
    .await;
    assert!(failing, "the failures and the backlog show on /metrics");
    assert!(receiver.events().is_empty());

    receiver.answer(200);
    let caught_up = eventually(Duration::from_secs(30), || async {
        receiver.events().len() >= expected.len()
            && node.metric_sum(&series("registry_notifications_pending", "flaky")) == 0
    })
    .await;
    assert!(caught_up, "only {} events arrived", receiver.events().len());
    let events = receiver.events();
    let digests: Vec<String> = summary(&events).into_iter().map(|(_, _, d)| d).collect();
    assert_eq!(digests, expected, "each event once, in push order");
    // Retries carry the event's id: the refused attempts were of these events.
    let accepted: BTreeSet<String> = events.iter().map(|e| e["id"].to_string()).collect();
    for delivery in receiver.deliveries().iter().filter(|d| !d.accepted) {
        let id = delivery.envelope["events"][0]["id"].to_string();
        assert!(accepted.contains(&id), "a retry had another id: {id}");
    }
}

#[tokio::test]
async fn a_full_backlog_drops_the_oldest_events_and_counts_them() {
    let receiver = EventReceiver::start();
    receiver.answer(503);
    let url = receiver.url();
    let node = TestNode::start_with(move |config| {
        config.notifications = notifying(vec![EndpointConfig {
            backlog: 2,
            ..endpoint("small", url.clone())
        }]);
    });
    let client = node.client();
    let blobs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    for blob in &blobs {
        client.push_blob("notify/small", blob).await;
    }
    let dropped = eventually(Duration::from_secs(30), || async {
        node.metric_sum(&series("registry_notifications_pending", "small")) <= 2
            && node.metric_sum(
                "registry_notifications_dropped_total{endpoint=\"small\",reason=\"overflow\"}",
            ) == 3
    })
    .await;
    assert!(dropped, "three of five events are over a backlog of two");
    receiver.answer(200);
    let newest: Vec<String> = blobs[3..].iter().map(|b| sha256(b)).collect();
    let arrived = eventually(Duration::from_secs(30), || async {
        receiver.events().len() >= 2
    })
    .await;
    assert!(arrived);
    let digests: Vec<String> = summary(&receiver.events())
        .into_iter()
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(digests, newest, "the two newest, nothing dropped twice");
}

#[tokio::test]
async fn events_survive_a_leader_failover_before_delivery() {
    let receiver = EventReceiver::start();
    receiver.answer(503);
    let url = receiver.url();
    let mut cluster = TestCluster::start(3, None, move |config| {
        config.notifications = notifying(vec![endpoint("audit", url.clone())]);
    });
    let leader = cluster.leader();
    let follower = (leader + 1) % 3;
    let blob = b"pushed just before the leader went".to_vec();
    let digest = cluster
        .client(follower)
        .push_blob("notify/failover", &blob)
        .await;
    let tried = eventually(Duration::from_secs(30), || async {
        receiver.attempts() > 0
    })
    .await;
    assert!(tried, "the leader tried to deliver");
    cluster.stop(leader);
    receiver.answer(200);
    let delivered = eventually(Duration::from_secs(30), || async {
        summary(&receiver.events())
            .iter()
            .any(|(_, _, d)| *d == digest)
    })
    .await;
    assert!(delivered, "the new leader delivered the event");
}

/// The registry binary with one notification endpoint, on `port`.
fn start_registry(dir: &std::path::Path, port: u16, receiver: &str) -> std::process::Child {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "notifications:\n  endpoints:\n    - name: audit\n      url: {receiver}\n      \
             backoff: 50ms\n"
        ),
    )
    .unwrap();
    std::process::Command::new(crate::docker::registry_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir)
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", "")
        .env("REGISTRY_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the registry binary")
}

#[tokio::test]
async fn events_survive_kill_9_between_the_201_and_the_delivery() {
    let receiver = EventReceiver::start();
    receiver.answer(503);
    let dir = tempfile::tempdir().unwrap();
    let port = registry_tests::free_port();
    let mut registry = start_registry(dir.path(), port, &receiver.url());
    let client = registry_tests::oci::Client::new(format!("http://127.0.0.1:{port}"));
    let up = eventually(Duration::from_secs(60), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "the registry never answered");
    let blob = b"acknowledged, then the process died".to_vec();
    let digest = client.push_blob("notify/crash", &blob).await;
    registry.kill().unwrap(); // SIGKILL
    registry.wait().unwrap();
    assert!(
        !summary(&receiver.events())
            .iter()
            .any(|(_, _, d)| *d == digest),
        "not delivered before the kill"
    );

    receiver.answer(200);
    let mut registry = start_registry(dir.path(), port, &receiver.url());
    let delivered = eventually(Duration::from_secs(60), || async {
        summary(&receiver.events())
            .iter()
            .any(|(_, _, d)| *d == digest)
    })
    .await;
    registry.kill().unwrap();
    registry.wait().unwrap();
    assert!(delivered, "the restarted registry delivered the event");
}
