//! The Azure Blob backend against Azurite: the shared backend suite, and a
//! push and pull through a node.

use registry_tests::azurite::Azurite;

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
    let blobs = storage::BackendConfig::Azure(azurite.config());
    registry_tests::roundtrip::every_upload_shape(blobs, "azure/app").await;
}
