//! The GCS backend against fake-gcs-server: the shared backend suite, and a
//! push and pull through a node.

use registry_tests::gcs::FakeGcs;
use registry_tests::oci::sha256;
use registry_tests::TestNode;

#[tokio::test(flavor = "multi_thread")]
async fn gcs_passes_the_backend_conformance_suite() {
    let gcs = tokio::task::spawn_blocking(FakeGcs::start).await.unwrap();
    let store = storage::backends::open(&storage::BackendConfig::Gcs(gcs.config()))
        .await
        .expect("open gcs");
    storage::testsuite::conformance(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_gcs_pushes_and_pulls() {
    let gcs = tokio::task::spawn_blocking(FakeGcs::start).await.unwrap();
    let node = TestNode::start_with_blobs(storage::BackendConfig::Gcs(gcs.config()));
    let client = node.client();
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 227) as u8).collect();
    let digest = client.push_image("gcs/app", "v1", b"{}", &[&layer]).await;
    let chunked = client
        .push_blob_chunked("gcs/app", &layer[..1_500_000], 500_000)
        .await;
    assert_eq!(
        registry_tests::oci::header(
            &client.manifest("gcs/app", "v1").await,
            "Docker-Content-Digest"
        ),
        Some(digest)
    );
    let body = client.blob_bytes("gcs/app", &sha256(&layer)).await;
    assert_eq!(sha256(&body), sha256(&layer));
    let body = client.blob_bytes("gcs/app", &chunked).await;
    assert_eq!(sha256(&body), chunked);
    // 40 parts: more than one GCS compose call takes (32 sources).
    let many_parts = client
        .push_blob_chunked("gcs/app", &layer[..40 * 65_536], 65_536)
        .await;
    let body = client.blob_bytes("gcs/app", &many_parts).await;
    assert_eq!(sha256(&body), many_parts);
    // Parts over the 5 MiB multipart minimum take the server-side path where
    // the service has one.
    let big: Vec<u8> = (0..13_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_digest = client.push_blob_chunked("gcs/app", &big, 6 << 20).await;
    let body = client.blob_bytes("gcs/app", &big_digest).await;
    assert_eq!(sha256(&body), big_digest);
}
