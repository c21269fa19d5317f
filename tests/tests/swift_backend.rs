//! The Swift backend against OpenStack Swift on loopback: the shared backend
//! suite, and a push and pull through a node.

use registry_tests::oci::sha256;
use registry_tests::swift::Swift;
use registry_tests::TestNode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn swift_passes_the_backend_conformance_suite() {
    let swift = tokio::task::spawn_blocking(Swift::start).await.unwrap();
    let store = storage::backends::open(&storage::BackendConfig::Swift(swift.config()))
        .await
        .expect("open swift");
    storage::testsuite::conformance(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_swift_pushes_and_pulls() {
    let swift = tokio::task::spawn_blocking(Swift::start).await.unwrap();
    let blobs = storage::BackendConfig::Swift(swift.config());
    let node = registry_tests::roundtrip::every_upload_shape(blobs, "swift/app").await;
    // With `secretkey` (the Temp-URL-Key) set, blob GETs redirect to TempURLs.
    let client = node.client();
    let data = b"served by swift itself".to_vec();
    let digest = client.push_blob("swift/app", &data).await;
    let response = client.blob("swift/app", &digest).await;
    assert_eq!(response.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let location = registry_tests::oci::location(&response);
    assert!(location.contains("temp_url_sig="), "{location}");
    assert_eq!(client.blob_bytes("swift/app", &digest).await, data);
}

/// A proxy without static-large-object support stores a big object's segment
/// list as its content. The commit checks the stored size, so the push fails
/// and no blob is recorded; a small blob on the same proxy still works.
#[tokio::test(flavor = "multi_thread")]
async fn a_swift_without_large_objects_fails_the_push_and_records_nothing() {
    let swift = tokio::task::spawn_blocking(Swift::start_without_large_objects)
        .await
        .unwrap();
    let node = TestNode::start_with_blobs(storage::BackendConfig::Swift(swift.config()));
    let client = node.client();
    let big: Vec<u8> = (0..13_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut session = client.start_upload("swift/broken").await;
    for (i, chunk) in big.chunks(6 << 20).enumerate() {
        let response = client.patch(&session, (i * (6 << 20)) as u64, chunk).await;
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        session = registry_tests::oci::location(&response);
    }
    let digest = sha256(&big);
    let response = client.finish(&session, &digest, None).await;
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(registry_tests::oci::error_code(response).await, "UNKNOWN");
    let head = client
        .request(
            reqwest::Method::HEAD,
            &format!("/v2/swift/broken/blobs/{digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), reqwest::StatusCode::NOT_FOUND);

    let small = b"fits in one object".to_vec();
    let small_digest = client.push_blob_chunked("swift/broken", &small, 8).await;
    assert_eq!(
        client.blob_bytes("swift/broken", &small_digest).await,
        small
    );
}

/// With `authurl`, `username` and `password` the node logs in to Swift
/// (tempauth, v1) and logs in again as tokens expire: pushes made after the
/// first token has expired still land, and everything pushed reads back.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_logs_in_to_swift_and_again_when_its_token_expires() {
    let swift = tokio::task::spawn_blocking(Swift::start_with_tempauth)
        .await
        .unwrap();
    let node = TestNode::start_with_blobs(storage::BackendConfig::Swift(swift.login_config()));
    let client = node.client();
    let before = b"pushed with the first token".to_vec();
    let before_digest = client.push_blob("swift/login", &before).await;
    // tempauth hands one user the same token until it expires.
    let first_token = swift.login().await;
    assert!(swift.accepts(&first_token).await);
    let expired = registry_tests::eventually(Duration::from_secs(30), || async {
        !swift.accepts(&first_token).await
    })
    .await;
    assert!(expired, "the first token never expired");

    let after = b"pushed after the first token expired".to_vec();
    let after_digest = sha256(&after);
    // The node swaps in a fresh token within about a second of expiry.
    let pushed = registry_tests::eventually(Duration::from_secs(30), || async {
        let response = client
            .request(
                reqwest::Method::POST,
                &format!("/v2/swift/login/blobs/uploads/?digest={after_digest}"),
            )
            .body(after.clone())
            .send()
            .await
            .unwrap();
        response.status() == reqwest::StatusCode::CREATED
    })
    .await;
    assert!(pushed, "no push succeeded after the first token expired");
    assert_ne!(swift.login().await, first_token);
    assert_eq!(
        client.blob_bytes("swift/login", &before_digest).await,
        before
    );
    assert_eq!(client.blob_bytes("swift/login", &after_digest).await, after);
}
