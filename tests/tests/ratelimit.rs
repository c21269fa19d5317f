//! Per-client limits: a client over its request or byte budget gets 429
//! `TOOMANYREQUESTS` with `Retry-After` and does nothing, others carry on,
//! and the client passes again once the budget refills.

use api::auth::{AuthConfig, HtpasswdConfig};
use api::ratelimit::{Rate, RateLimitConfig};
use registry_tests::oci::{error_code, header, Client};
use registry_tests::{eventually, write_htpasswd, TestCluster};
use reqwest::StatusCode;
use std::net::IpAddr;
use std::time::Duration;

/// One node with `limits`, and htpasswd logins when `users` are given.
fn start(limits: RateLimitConfig, htpasswd: Option<&std::path::Path>) -> TestCluster {
    let auth = htpasswd.map(|path| {
        AuthConfig::Htpasswd(HtpasswdConfig {
            realm: "registry".to_owned(),
            path: path.to_owned(),
            rules: Vec::new(),
            admins: Vec::new(),
            token_service: None,
        })
    });
    TestCluster::start(1, None, move |config| {
        config.api.redirect = false;
        config.rate_limit = limits;
        config.auth = auth.clone();
    })
}

/// A client of node 0 whose connections come from `address` (any of 127/8).
fn from(cluster: &TestCluster, address: &str) -> Client {
    let http = reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().ok())
        .build()
        .unwrap();
    Client::with_http(cluster.node_url(0), http).logged_in(None)
}

async fn assert_limited(response: reqwest::Response, what: &str) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
    let retry: u64 = header(&response, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    assert_eq!(error_code(response).await, "TOOMANYREQUESTS", "{what}");
    retry
}

#[tokio::test]
async fn a_user_over_the_request_limit_waits_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("alice", "a"), ("bob", "b")]);
    let limits = RateLimitConfig {
        requests: Some(Rate {
            per_second: 0.5,
            burst: 5.0,
        }),
        bandwidth: None,
    };
    let cluster = start(limits, Some(&htpasswd));
    let alice = from(&cluster, "127.0.0.2").logged_in(Some(("alice", "a")));
    let bob = from(&cluster, "127.0.0.2").logged_in(Some(("bob", "b")));
    for _ in 0..5 {
        assert_eq!(alice.get("/v2/").await.status(), StatusCode::OK);
    }
    let refused = alice
        .request(reqwest::Method::POST, "/v2/limited/app/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .body("over the limit")
        .send()
        .await
        .unwrap();
    let retry = assert_limited(refused, "alice's sixth request").await;
    assert!(retry <= 2, "one request refills in 2 s: {retry}");
    assert_eq!(
        bob.get("/v2/").await.status(),
        StatusCode::OK,
        "bob has his own budget"
    );
    assert_eq!(
        alice.get("/v2/_catalog").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let catalog: serde_json::Value = bob.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!([]),
        "the refused push stored nothing"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            alice.get("/v2/").await.status() == StatusCode::OK
        })
        .await,
        "alice passes again once her budget refills"
    );

    // Failed logins are charged to their address, which then gets 429
    // before any password is checked; another address logs in.
    let guesser = from(&cluster, "127.0.0.3").logged_in(Some(("alice", "guess")));
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(guesser.get("/v2/").await.status());
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    let elsewhere = from(&cluster, "127.0.0.4").logged_in(Some(("bob", "b")));
    assert_eq!(elsewhere.get("/v2/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_address_over_its_byte_budget_gets_429_until_it_is_paid_back() {
    let limits = RateLimitConfig {
        requests: None,
        bandwidth: Some(Rate {
            per_second: 200_000.0,
            burst: 200_000.0,
        }),
    };
    let cluster = start(limits, None);
    let heavy = from(&cluster, "127.0.0.5");
    let light = from(&cluster, "127.0.0.6");
    let layer = vec![1u8; 1_000_000];
    heavy.push_blob("bytes/heavy", &layer).await;
    let refused = heavy.get("/v2/").await;
    let retry = assert_limited(refused, "a megabyte over a 200 kB/s budget").await;
    assert!((3..=6).contains(&retry), "about 4 s of debt: {retry}");
    assert_eq!(
        light.get("/v2/").await.status(),
        StatusCode::OK,
        "another address is unaffected"
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            heavy.get("/v2/").await.status() == StatusCode::OK
        })
        .await,
        "the debt is paid back"
    );
}
