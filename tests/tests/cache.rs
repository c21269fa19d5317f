//! The pull-through cache (`proxy`) against real upstreams on loopback:
//! another registry of ours (in-process, and the binary killed mid-blob)
//! and Debian's `docker-registry` (distribution itself), with and without
//! upstream credentials. What comes back through the cache is compared
//! byte for byte, and the upstream's own request counters say how often it
//! was asked.

use api::cache::UpstreamConfig;
use registry_tests::cluster::{http_get, TestCluster};
use registry_tests::oci::{
    artifact, bytes, error_code, header, image_manifest, sha256, Client, OCI_INDEX, OCI_MANIFEST,
};
use registry_tests::{eventually, free_port, TestNode};
use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// A plain single node to serve as the upstream.
fn upstream_node(adjust: impl Fn(&mut node::NodeConfig)) -> TestCluster {
    TestCluster::start(1, None, |config| {
        config.api.redirect = false;
        config.api.delete_enabled = true;
        adjust(config);
    })
}

fn upstream(prefix: &str, url: String, ttl: Option<Duration>) -> UpstreamConfig {
    UpstreamConfig {
        prefix: prefix.to_owned(),
        remote_url: url,
        username: None,
        password: None,
        ttl,
    }
}

/// The registry under test (one node or a cluster) caching `upstreams`.
fn cache(upstreams: Vec<UpstreamConfig>, adjust: impl Fn(&mut node::NodeConfig)) -> TestNode {
    TestNode::start_with(move |config| {
        config.api.delete_enabled = true;
        config.proxy = upstreams.clone();
        adjust(config);
    })
}

/// The sum over `cluster`'s nodes of the samples of `metric` whose labels
/// include each of `labels` (`name="value"`).
fn counter(cluster: &TestCluster, metric: &str, labels: &[&str]) -> u64 {
    (0..cluster.len())
        .map(|i| {
            let (_, text) = http_get(cluster.debug_addr(i), "/metrics").expect("metrics");
            text.lines()
                .filter_map(|line| line.strip_prefix(metric)?.strip_prefix('{'))
                .filter(|line| labels.iter().all(|label| line.contains(label)))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Blob `GET`s the upstream answered 200.
fn blob_fetches(upstream: &TestCluster) -> u64 {
    counter(
        upstream,
        "registry_http_requests_total",
        &[r#"route="get_blob""#, r#"method="GET""#, r#"status="200""#],
    )
}

fn manifest_requests(upstream: &TestCluster) -> u64 {
    counter(
        upstream,
        "registry_http_requests_total",
        &[r#"route="get_manifest""#],
    ) + counter(
        upstream,
        "registry_http_requests_total",
        &[r#"route="head_manifest""#],
    )
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// Pulls `repo:tag` through `client` as a client does (manifest by tag,
/// then every blob) and checks each byte against what was pushed.
async fn pull_and_compare(client: &Client, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) {
    let manifest = image_manifest(config, layers);
    let response = client.manifest(repo, tag).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {repo}:{tag}");
    assert_eq!(
        header(&response, "Docker-Content-Digest").as_deref(),
        Some(sha256(&manifest).as_str())
    );
    assert_eq!(
        bytes(response).await,
        manifest,
        "the upstream's manifest bytes"
    );
    for blob in std::iter::once(config).chain(layers.iter().copied()) {
        let got = client.blob_bytes(repo, &sha256(blob)).await;
        assert!(got == blob, "blob {} came back changed", sha256(blob));
    }
}

#[tokio::test]
async fn a_cold_pull_fills_the_cache_once_and_warm_pulls_never_ask_the_upstream() {
    let origin = upstream_node(|_| {});
    let (config, layer, big) = (data(300, 1), data(70_000, 2), data(3 << 20, 3));
    let layers: [&[u8]; 2] = [&layer, &big];
    origin
        .client(0)
        .push_image("library/app", "v1", &config, &layers)
        .await;
    let node = cache(vec![upstream("hub", origin.base_url(), Some(HOUR))], |_| {});
    let client = node.client();

    // A range of a blob the cache lacks: fetched whole, then the range served.
    let response = client
        .request(
            reqwest::Method::GET,
            &format!("/v2/hub/library/app/blobs/{}", sha256(&big)),
        )
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes(response).await, &big[10..20]);
    pull_and_compare(&client, "hub/library/app", "v1", &config, &layers).await;
    assert_eq!(blob_fetches(&origin), 3, "config and two layers, once each");
    let asked = manifest_requests(&origin);
    assert!(asked >= 1);

    pull_and_compare(&client, "hub/library/app", "v1", &config, &layers).await;
    let by_digest = client
        .manifest(
            "hub/library/app",
            &sha256(&image_manifest(&config, &layers)),
        )
        .await;
    assert_eq!(by_digest.status(), StatusCode::OK);
    assert_eq!(
        blob_fetches(&origin),
        3,
        "warm pulls are served from the cache"
    );
    assert_eq!(
        manifest_requests(&origin),
        asked,
        "a tag within its ttl is not re-checked"
    );
    assert_eq!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="blob""#, r#"result="fetched""#]
        ),
        3
    );

    // What the upstream lacks is the spec's 404 for it.
    let missing = client.manifest("hub/library/app", "nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "MANIFEST_UNKNOWN");
    let missing = client
        .blob("hub/library/app", &sha256(b"never pushed anywhere"))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "BLOB_UNKNOWN");

    // Covered repositories take no pushes; the others do.
    let refused = client
        .request(reqwest::Method::POST, "/v2/hub/library/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(refused).await, "UNSUPPORTED");
    let refused = client
        .put_manifest(
            "hub/library/app",
            "v2",
            OCI_MANIFEST,
            &image_manifest(&config, &layers),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    client.push_image("mine/app", "v1", &config, &layers).await;
    pull_and_compare(&client, "mine/app", "v1", &config, &layers).await;
    assert_eq!(
        blob_fetches(&origin),
        3,
        "uncovered repositories never ask the upstream"
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_blob_fetch_it_from_the_upstream_once() {
    let origin = upstream_node(|_| {});
    let (config, layer) = (data(200, 4), data(12 << 20, 5));
    origin
        .client(0)
        .push_image("org/big", "v1", &config, &[&layer])
        .await;
    let node = cache(vec![upstream("", origin.base_url(), Some(HOUR))], |_| {});
    let digest = sha256(&layer);
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let client = node.client();
            let digest = digest.clone();
            tokio::spawn(async move { client.blob_bytes("org/big", &digest).await })
        })
        .collect();
    for pull in pulls {
        let got = pull.await.unwrap();
        assert!(got == layer, "every client gets the whole layer");
    }
    assert_eq!(blob_fetches(&origin), 1, "one fetch for the whole cluster");
    assert_eq!(
        counter(&node, "registry_cache_fetched_bytes_total", &[]),
        layer.len() as u64,
        "received once, by one node"
    );
}

#[tokio::test]
async fn tags_are_rechecked_after_their_ttl_and_served_stale_when_the_upstream_is_down() {
    let mut origin = upstream_node(|_| {});
    let (config, layer) = (data(100, 6), data(1000, 7));
    let push = |tag_config: Vec<u8>| {
        let client = origin.client(0);
        let layer = layer.clone();
        async move {
            client
                .push_image("team/app", "latest", &tag_config, &[&layer])
                .await
        }
    };
    let first = push(config.clone()).await;
    let url = origin.base_url();
    let node = cache(
        vec![
            upstream("long", url.clone(), Some(HOUR)),
            upstream("soon", url.clone(), Some(Duration::from_secs(1))),
            upstream("always", url, None),
        ],
        |_| {},
    );
    let client = node.client();
    let digest_of = |response: &reqwest::Response| header(response, "Docker-Content-Digest");
    for prefix in ["long", "soon", "always"] {
        let response = client
            .manifest(&format!("{prefix}/team/app"), "latest")
            .await;
        assert_eq!(
            digest_of(&response).as_deref(),
            Some(first.as_str()),
            "{prefix}"
        );
    }

    let second = push(data(100, 8)).await;
    let long = client.manifest("long/team/app", "latest").await;
    assert_eq!(
        digest_of(&long).as_deref(),
        Some(first.as_str()),
        "within its ttl"
    );
    let always = client.manifest("always/team/app", "latest").await;
    assert_eq!(
        digest_of(&always).as_deref(),
        Some(second.as_str()),
        "ttl 0: every pull"
    );
    let moved = eventually(Duration::from_secs(30), || async {
        let soon = client.manifest("soon/team/app", "latest").await;
        digest_of(&soon).as_deref() == Some(second.as_str())
    })
    .await;
    assert!(moved, "re-checked once its ttl passed");

    // Read-only: what is cached is served without asking, misses refused.
    let http = reqwest::Client::new();
    let switch = |mode: &'static str| {
        let request = http.post(format!("{}/readonly/{mode}", node.debug_url()));
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    switch("on").await;
    let everywhere = eventually(Duration::from_secs(30), || async {
        node.metric_sum("registry_read_only") == node.len() as u64
    })
    .await;
    assert!(everywhere, "every node applied read-only mode");
    let asked = manifest_requests(&origin);
    let cached = client.manifest("always/team/app", "latest").await;
    assert_eq!(digest_of(&cached).as_deref(), Some(second.as_str()));
    assert_eq!(
        manifest_requests(&origin),
        asked,
        "read-only stores nothing new"
    );
    let miss = client.manifest("always/team/other", "latest").await;
    assert_eq!(miss.status(), StatusCode::SERVICE_UNAVAILABLE);
    switch("off").await;
    let writable = eventually(Duration::from_secs(30), || async {
        node.metric_sum("registry_read_only") == 0
    })
    .await;
    assert!(writable, "every node left read-only mode");

    origin.stop(0);
    let stale = client.manifest("always/team/app", "latest").await;
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "the cached tag, upstream down"
    );
    assert_eq!(digest_of(&stale).as_deref(), Some(second.as_str()));
    assert!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"result="stale""#]
        ) >= 1,
        "counted"
    );
    let never_cached = client.manifest("always/team/other", "latest").await;
    assert_eq!(never_cached.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(never_cached).await, "UNAVAILABLE");
}

async fn tag_list(client: &Client, path: &str) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = client.get(path).await;
    let status = response.status();
    let link = header(&response, "Link");
    let body = serde_json::from_slice(&bytes(response).await).unwrap_or_default();
    (status, link, body)
}

#[tokio::test]
async fn tag_lists_are_the_upstreams_and_the_caches_own_while_it_is_down() {
    let mut origin = upstream_node(|_| {});
    let (config, layer) = (data(200, 11), data(4000, 12));
    for tag in ["v1", "v2", "v3"] {
        origin
            .client(0)
            .push_image("library/app", tag, &config, &[&layer])
            .await;
    }
    let node = cache(vec![upstream("hub", origin.base_url(), Some(HOUR))], |_| {});
    let client = node.client();

    let (status, link, body) = tag_list(&client, "/v2/hub/library/app/tags/list").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "hub/library/app");
    assert_eq!(
        body["tags"],
        serde_json::json!(["v1", "v2", "v3"]),
        "none pulled yet"
    );
    assert_eq!(link, None);
    let (_, link, body) = tag_list(&client, "/v2/hub/library/app/tags/list?n=2").await;
    assert_eq!(body["tags"], serde_json::json!(["v1", "v2"]));
    let link = link.expect("a next page");
    assert!(
        link.contains("/v2/hub/library/app/tags/list?n=2&last=v2"),
        "{link}"
    );
    let (_, link, body) = tag_list(&client, "/v2/hub/library/app/tags/list?n=2&last=v2").await;
    assert_eq!(body["tags"], serde_json::json!(["v3"]));
    assert_eq!(link, None);
    let (status, _, body) = tag_list(&client, "/v2/hub/library/nothing/tags/list").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");

    pull_and_compare(&client, "hub/library/app", "v2", &config, &[&layer]).await;
    origin.stop(0);
    let (status, _, body) = tag_list(&client, "/v2/hub/library/app/tags/list").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the cache's own list, upstream down"
    );
    assert_eq!(body["tags"], serde_json::json!(["v2"]));
    assert_eq!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="tags""#, r#"result="stale""#]
        ),
        1
    );
    let (status, _, body) = tag_list(&client, "/v2/hub/library/other/tags/list").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing cached to list");
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_layer_two_repositories_share_is_fetched_once_and_linked_only_where_the_upstream_has_it()
{
    let origin = upstream_node(|_| {});
    let (config_a, config_b, shared) = (data(150, 21), data(160, 22), data(200_000, 23));
    let upstream_client = origin.client(0);
    upstream_client
        .push_image("library/a", "v1", &config_a, &[&shared])
        .await;
    upstream_client
        .push_image("library/b", "v1", &config_b, &[&shared])
        .await;
    let node = cache(vec![upstream("hub", origin.base_url(), Some(HOUR))], |_| {});
    let client = node.client();

    pull_and_compare(&client, "hub/library/a", "v1", &config_a, &[&shared]).await;
    assert_eq!(blob_fetches(&origin), 2);
    pull_and_compare(&client, "hub/library/b", "v1", &config_b, &[&shared]).await;
    assert_eq!(
        blob_fetches(&origin),
        3,
        "b's config only: the shared layer is held"
    );
    assert_eq!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="blob""#, r#"result="linked""#]
        ),
        1
    );
    // a's config is held, but upstream b has no such blob: b does not serve it.
    let response = client.blob("hub/library/b", &sha256(&config_a)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");
    assert_eq!(blob_fetches(&origin), 3);
}

#[tokio::test]
async fn referrers_are_the_upstreams_and_the_caches_own_while_it_is_down() {
    let mut origin = upstream_node(|_| {});
    let pusher = origin.client(0);
    let subject = pusher
        .push_image("library/app", "v1", b"{}", &[b"base"])
        .await;
    let image = image_manifest(b"{}", &[b"base"]);
    let mut artifacts = Vec::new();
    for (kind, layer) in [
        ("application/vnd.example.sig", &b"signature"[..]),
        ("application/vnd.example.sbom", b"sbom"),
    ] {
        pusher.push_blob("library/app", layer).await;
        let manifest = artifact(kind, &image, layer);
        let put = pusher
            .put_manifest("library/app", &sha256(&manifest), OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
        artifacts.push(manifest);
    }
    let node = cache(vec![upstream("hub", origin.base_url(), Some(HOUR))], |_| {});
    let client = node.client();
    let referrers = |query: &'static str| {
        let path = format!("/v2/hub/library/app/referrers/{subject}{query}");
        let client = &client;
        async move {
            let response = client.get(&path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, "Content-Type").as_deref(),
                Some(OCI_INDEX)
            );
            let filtered = header(&response, "OCI-Filters-Applied");
            let index: serde_json::Value = serde_json::from_slice(&bytes(response).await).unwrap();
            let mut found: Vec<(String, String)> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["digest"].as_str().unwrap().to_owned(),
                        d["artifactType"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            found.sort();
            (found, filtered)
        }
    };
    let entry = |i: usize, kind: &str| (sha256(&artifacts[i]), kind.to_owned());
    let (all, filtered) = referrers("").await;
    let mut expected = vec![
        entry(0, "application/vnd.example.sig"),
        entry(1, "application/vnd.example.sbom"),
    ];
    expected.sort();
    assert_eq!(all, expected, "the upstream's, none pulled yet");
    assert_eq!(filtered, None);
    let (signatures, filtered) = referrers("?artifactType=application/vnd.example.sig").await;
    assert_eq!(signatures, vec![entry(0, "application/vnd.example.sig")]);
    assert_eq!(filtered.as_deref(), Some("artifactType"));

    // A verifier pulls the signature by digest through the cache.
    let pulled = client
        .manifest("hub/library/app", &sha256(&artifacts[0]))
        .await;
    assert_eq!(bytes(pulled).await, artifacts[0]);
    origin.stop(0);
    let (cached, _) = referrers("").await;
    assert_eq!(
        cached,
        vec![entry(0, "application/vnd.example.sig")],
        "the cache's own, upstream down"
    );
    assert_eq!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="referrers""#, r#"result="stale""#]
        ),
        1
    );
}

#[tokio::test]
async fn upstream_credentials_are_sent_and_wrong_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    registry_tests::write_htpasswd(&htpasswd, &[("mirror", "s3cret")]);
    let auth = api::auth::AuthConfig::Htpasswd(api::auth::HtpasswdConfig {
        realm: "upstream".to_owned(),
        path: htpasswd,
        rules: Vec::new(),
        admins: Vec::new(),
        token_service: None,
    });
    let origin = upstream_node(move |config| config.auth = Some(auth.clone()));
    let (config, layer) = (data(100, 9), data(5000, 10));
    origin
        .client(0)
        .logged_in(Some(("mirror", "s3cret")))
        .push_image("private/app", "v1", &config, &[&layer])
        .await;
    let login = |password: &str| UpstreamConfig {
        username: Some("mirror".to_owned()),
        password: Some(password.to_owned()),
        ..upstream("", origin.base_url(), Some(HOUR))
    };
    let node = cache(vec![login("s3cret")], |_| {});
    pull_and_compare(&node.client(), "private/app", "v1", &config, &[&layer]).await;

    let wrong = cache(vec![login("guess")], |_| {});
    let refused = wrong.client().manifest("private/app", "v1").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(refused).await, "UNAVAILABLE");
    assert_eq!(
        counter(
            &wrong,
            "registry_cache_lookups_total",
            &[r#"result="refused""#]
        ),
        1
    );
}

/// A child process killed (SIGKILL) when dropped, so a failing test
/// leaves no server behind.
struct Killed(std::process::Child);

impl Killed {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The registry binary serving `dir` on `port`.
fn start_registry(dir: &std::path::Path, port: u16) -> Killed {
    let child = std::process::Command::new(crate::docker::registry_binary())
        .arg("serve")
        .current_dir(dir)
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", "")
        .env("REGISTRY_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the registry binary");
    Killed(child)
}

async fn answers(url: &str) -> bool {
    eventually(Duration::from_secs(60), || async {
        reqwest::get(format!("{url}/v2/")).await.is_ok()
    })
    .await
}

#[tokio::test]
async fn an_upstream_killed_mid_blob_leaves_nothing_stored_and_the_next_pull_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut origin = start_registry(dir.path(), port);
    assert!(answers(&url).await, "the upstream never answered");
    let layer = data(64 << 20, 11);
    let digest = Client::new(url.clone())
        .push_blob("big/layer", &layer)
        .await;
    let node = cache(vec![upstream("", url.clone(), Some(HOUR))], |_| {});
    let client = node.client();

    let mut response = client.blob("big/layer", &digest).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = response.chunk().await.unwrap().map_or(0, |c| c.len());
    // This client reads no further for now, so the fetch stalls on it,
    // mid-blob, when the upstream dies.
    origin.kill();
    let mut broken = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break,
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert!(
        broken || received < layer.len(),
        "a client never gets a whole blob the cache could not verify"
    );
    let failed = eventually(Duration::from_secs(60), || async {
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="blob""#, r#"result="failed""#],
        ) == 1
    })
    .await;
    assert!(failed, "the fetch failed and said so");
    let gone = client.blob("big/layer", &digest).await;
    assert_eq!(
        gone.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing stored: the cache asks the (dead) upstream again"
    );

    let mut origin = start_registry(dir.path(), port);
    assert!(answers(&url).await, "the upstream never came back");
    let got = client.blob_bytes("big/layer", &digest).await;
    origin.kill();
    assert!(got == layer, "the next pull gets the whole, verified layer");
}

#[tokio::test]
async fn expired_content_goes_through_retention_and_gc_and_shared_blobs_stay() {
    let origin = upstream_node(|_| {});
    let (config, shared, own) = (data(100, 12), data(4000, 13), data(5000, 14));
    // A multi-platform image: its index is tagged, its one image is not.
    let pusher = origin.client(0);
    for blob in [&config, &shared, &own] {
        pusher.push_blob("lib/app", blob).await;
    }
    let image = image_manifest(&config, &[&shared, &own]);
    let image_digest = sha256(&image);
    let put = pusher
        .put_manifest("lib/app", &image_digest, OCI_MANIFEST, &image)
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    }))
    .unwrap();
    let put = pusher
        .put_manifest("lib/app", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let node = cache(
        vec![upstream(
            "hub",
            origin.base_url(),
            Some(Duration::from_millis(500)),
        )],
        |config| {
            config.gc.enabled = false;
            config.gc.delay = Duration::ZERO;
            config.gc.grace = Duration::from_millis(300);
        },
    );
    let client = node.client();
    let pulled = client.manifest("hub/lib/app", "multi").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(bytes(pulled).await, index);
    pull_and_compare(
        &client,
        "hub/lib/app",
        &image_digest,
        &config,
        &[&shared, &own],
    )
    .await;
    // An image pushed here that uses one of the cached layers.
    client
        .push_image("mine/app", "v1", &data(100, 15), &[&shared])
        .await;

    let http = reqwest::Client::new();
    let removed = std::sync::Mutex::new((BTreeSet::new(), BTreeSet::new(), BTreeSet::new()));
    let expected: BTreeSet<String> = [sha256(&config), sha256(&own)].into();
    let collected = eventually(Duration::from_secs(60), || async {
        let report: serde_json::Value = http
            .post(format!("{}/gc", node.debug_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut removed = removed.lock().unwrap();
        for tag in report["tags_removed"].as_array().unwrap() {
            removed
                .0
                .insert(format!("{}:{}", tag["repository"], tag["tag"]));
        }
        for blob in report["removed"].as_array().unwrap() {
            removed
                .1
                .insert(blob["digest"].as_str().unwrap().to_owned());
        }
        for manifest in report["manifests_removed"].as_array().unwrap() {
            let digest = manifest["digest"].as_str().unwrap().to_owned();
            removed.2.insert(digest);
        }
        removed.1.is_superset(&expected)
    })
    .await;
    let (removed_tags, removed_blobs, removed_manifests) = removed.into_inner().unwrap();
    assert!(collected, "expired blobs collected: {removed_blobs:?}");
    assert_eq!(
        removed_tags,
        BTreeSet::from([r#""hub/lib/app":"multi""#.to_owned()])
    );
    assert_eq!(
        removed_manifests,
        BTreeSet::from([sha256(&index), image_digest]),
        "the expired index and the image only it rooted"
    );
    assert!(
        !removed_blobs.contains(&sha256(&shared)),
        "a layer another image uses stays"
    );
    pull_and_compare(&client, "mine/app", "v1", &data(100, 15), &[&shared]).await;
}

/// Debian's `docker-registry` (distribution 2.8) on `port` with its data
/// under `dir`, behind an htpasswd login when `login` is given.
fn start_distribution(dir: &std::path::Path, port: u16, login: Option<(&str, &str)>) -> Killed {
    let auth = match login {
        Some(user) => {
            let htpasswd = dir.join("htpasswd");
            registry_tests::write_htpasswd(&htpasswd, &[user]);
            format!(
                "auth:\n  htpasswd:\n    realm: distribution\n    path: {}\n",
                htpasswd.display()
            )
        }
        None => String::new(),
    };
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry is installed (scripts/setup installs it)");
    Killed(child)
}

#[tokio::test]
async fn distributions_registry_serves_as_an_upstream_with_and_without_a_login() {
    let (config, layer) = (data(100, 16), data(200_000, 17));
    let mut upstreams = Vec::new();
    let mut servers = Vec::new();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (dir, login) in dirs.iter().zip([None, Some(("mirror", "pa55"))]) {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        servers.push(start_distribution(dir.path(), port, login));
        assert!(answers(&url).await, "docker-registry never answered");
        // distribution takes no single-`POST` blob: push through sessions.
        let pusher = Client::new(url.clone()).logged_in(login);
        for blob in [&config, &layer] {
            pusher.push_blob_chunked("lib/app", blob, 64 << 10).await;
        }
        let manifest = image_manifest(&config, &[&layer]);
        let put = pusher
            .put_manifest("lib/app", "v1", OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(
            put.status(),
            StatusCode::CREATED,
            "PUT manifest to distribution"
        );
        let later = pusher
            .put_manifest("lib/app", "later", OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(later.status(), StatusCode::CREATED);
        let prefix = if login.is_some() { "private" } else { "public" };
        upstreams.push(UpstreamConfig {
            username: login.map(|(user, _)| user.to_owned()),
            password: login.map(|(_, password)| password.to_owned()),
            ..upstream(prefix, url, Some(HOUR))
        });
    }
    let node = cache(upstreams, |_| {});
    let client = node.client();
    pull_and_compare(&client, "public/lib/app", "v1", &config, &[&layer]).await;
    pull_and_compare(&client, "private/lib/app", "v1", &config, &[&layer]).await;
    let (status, _, listed) = tag_list(&client, "/v2/private/lib/app/tags/list").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["tags"],
        serde_json::json!(["later", "v1"]),
        "distribution's list, through its login"
    );
    // distribution 2.8 has no referrers API: the cache's own (none) stand in.
    let subject = sha256(&image_manifest(&config, &[&layer]));
    let response = client
        .get(&format!("/v2/private/lib/app/referrers/{subject}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let index: serde_json::Value = serde_json::from_slice(&bytes(response).await).unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
    assert_eq!(
        counter(
            &node,
            "registry_cache_lookups_total",
            &[r#"kind="referrers""#, r#"result="not_found""#]
        ),
        1
    );

    // skopeo, a real client, copies the cached image out unchanged.
    let out = tempfile::tempdir().unwrap();
    let source = format!("docker://{}/private/lib/app:v1", node.host());
    let dest = format!("oci:{}:v1", out.path().display());
    let creds = registry_tests::credentials_under_test().map(|(u, p)| format!("{u}:{p}"));
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
        if let Some(creds) = &creds {
            args.extend(["--src-creds", creds]);
        }
        args.extend([source.as_str(), dest.as_str()]);
        crate::skopeo::skopeo(&args);
    })
    .await
    .unwrap();
    let copied = crate::skopeo::layout_blobs(out.path());
    assert!(
        copied.iter().any(|(_, bytes)| *bytes == layer),
        "the layer, unchanged"
    );
    drop(servers);
}
