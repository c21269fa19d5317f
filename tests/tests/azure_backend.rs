//! The Azure Blob backend against Azurite: the shared backend suite, and a
//! push and pull through a node.

use registry_tests::azurite::Azurite;
use registry_tests::oci::sha256;
use registry_tests::TestNode;

#[tokio::test(flavor = "multi_thread")]
async fn azure_passes_the_backend_conformance_suite() {
    let azurite = tokio::task::spawn_blocking(Azurite::start).await.unwrap();
    let store = storage::backends::open(&storage::BackendConfig::Azure(azurite.config()))
        .await
        .expect("open azure");
    storage::testsuite::conformance(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_azure_pushes_and_pulls() {
    let azurite = tokio::task::spawn_blocking(Azurite::start).await.unwrap();
    let node = TestNode::start_with_blobs(storage::BackendConfig::Azure(azurite.config()));
    let client = node.client();
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 227) as u8).collect();
    let digest = client.push_image("azure/app", "v1", b"{}", &[&layer]).await;
    let chunked = client
        .push_blob_chunked("azure/app", &layer[..1_500_000], 500_000)
        .await;
    assert_eq!(
        registry_tests::oci::header(
            &client.manifest("azure/app", "v1").await,
            "Docker-Content-Digest"
        ),
        Some(digest)
    );
    let body = client.blob_bytes("azure/app", &sha256(&layer)).await;
    assert_eq!(sha256(&body), sha256(&layer));
    let body = client.blob_bytes("azure/app", &chunked).await;
    assert_eq!(sha256(&body), chunked);
    // Parts over the 5 MiB multipart minimum take the server-side path where
    // the service has one.
    let big: Vec<u8> = (0..13_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_digest = client.push_blob_chunked("azure/app", &big, 6 << 20).await;
    let body = client.blob_bytes("azure/app", &big_digest).await;
    assert_eq!(sha256(&body), big_digest);
}
