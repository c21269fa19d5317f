//! The operators' listener: Prometheus metrics that move by the right
//! amounts, liveness, readiness that follows blob storage, request ids.

use registry_tests::oci::{self, header, sha256};
use registry_tests::TestNode;
use reqwest::StatusCode;

/// The value of the sample `name{labels…}` in Prometheus text, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse().ok()).flatten()
        })
}

async fn scrape(node: &TestNode) -> String {
    let response = reqwest::get(format!("{}/metrics", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn counters_move_by_what_was_pushed_and_pulled() {
    let node = TestNode::start_single();
    let client = node.client();
    let before = scrape(&node).await;
    let received_before = sample(&before, "registry_http_received_bytes_total", &[]).unwrap();
    let sent_before = sample(&before, "registry_http_sent_bytes_total", &[]).unwrap();

    let config = br#"{"architecture":"amd64"}"#.to_vec();
    let layer = vec![9u8; 250_000];
    let digest = client
        .push_image("metrics/app", "v1", &config, &[&layer])
        .await;
    let manifest = oci::image_manifest(&config, &[&layer]);
    let pulled_manifest = client
        .manifest("metrics/app", &digest)
        .await
        .bytes()
        .await
        .unwrap();
    let pulled_layer = client
        .blob("metrics/app", &sha256(&layer))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(pulled_layer.len(), layer.len());

    let after = scrape(&node).await;
    let received =
        sample(&after, "registry_http_received_bytes_total", &[]).unwrap() - received_before;
    assert_eq!(
        received as usize,
        config.len() + layer.len() + manifest.len()
    );
    let sent = sample(&after, "registry_http_sent_bytes_total", &[]).unwrap() - sent_before;
    assert_eq!(sent as usize, pulled_manifest.len() + layer.len());

    let requests = |route: &str, method: &str, status: &str| {
        sample(
            &after,
            "registry_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        requests("start_upload", "POST", "201"),
        Some(2.0),
        "two monolithic blob pushes"
    );
    assert_eq!(requests("put_manifest", "PUT", "201"), Some(1.0));
    assert_eq!(requests("get_manifest", "GET", "200"), Some(1.0));
    assert_eq!(requests("get_blob", "GET", "200"), Some(1.0));
    assert!(
        sample(
            &after,
            "registry_http_request_duration_seconds_count",
            &[("route", "put_manifest")]
        )
        .unwrap()
            >= 1.0
    );

    let backend = if registry_tests::backend_under_test() == "s3" {
        "s3"
    } else {
        "filesystem"
    };
    let op = |operation: &str| {
        sample(
            &after,
            "registry_storage_operations_total",
            &[("backend", backend), ("operation", operation)],
        )
    };
    // The filesystem stages by appending; object stores by put.
    let write_op = if backend == "filesystem" {
        "append"
    } else {
        "put"
    };
    assert!(op(write_op).unwrap() >= 2.0, "each blob was written once");
    assert!(op("get").unwrap() >= 1.0, "the layer was read once");
    assert!(
        sample(
            &after,
            "registry_storage_operation_duration_seconds_count",
            &[("backend", backend), ("operation", write_op)]
        )
        .unwrap()
            >= 2.0
    );

    assert_eq!(sample(&after, "registry_raft_is_leader", &[]), Some(1.0));
    assert!(sample(&after, "registry_raft_term", &[]).unwrap() >= 1.0);
    let applied = sample(&after, "registry_raft_applied_index", &[]).unwrap();
    assert!(
        applied >= 3.0,
        "two blob commits and a manifest were applied: {applied}"
    );
    assert!(sample(&after, "registry_raft_last_log_index", &[]).unwrap() >= applied);
    assert!(
        sample(
            &after,
            "registry_raft_proposals_total",
            &[("outcome", "done")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(sample(&after, "registry_raft_proposal_duration_seconds_count", &[]).unwrap() >= 3.0);
    assert!(sample(&after, "registry_uploads_in_flight", &[]).is_some());
    assert!(sample(
        &after,
        "registry_upload_purge_last_run_timestamp_seconds",
        &[]
    )
    .is_some());
}

#[tokio::test]
async fn readiness_follows_blob_storage_and_liveness_does_not() {
    let node = TestNode::start_single();
    let healthz = reqwest::get(format!("{}/healthz", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let ready = reqwest::get(format!("{}/readyz", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    node.faults.set(true);
    let ready = reqwest::get(format!("{}/readyz", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("blob storage"), "{reason}");
    let healthz = reqwest::get(format!("{}/healthz", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK, "alive, just not ready");

    node.faults.set(false);
    let ready = reqwest::get(format!("{}/readyz", node.debug_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let node = TestNode::start_single();
    let client = node.client();
    let first = header(&client.get("/v2/").await, "X-Request-Id").expect("a generated id");
    let second =
        header(&client.get("/v2/nothing/tags/list").await, "X-Request-Id").expect("errors too");
    assert_ne!(first, second);
    let echoed = client
        .request(reqwest::Method::GET, "/v2/")
        .header("X-Request-Id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&echoed, "X-Request-Id").as_deref(),
        Some("trace-abc-123")
    );
}
