//! The GCS backend against fake-gcs-server: the shared backend suite, and a
//! push and pull through a node.

use registry_tests::gcs::FakeGcs;

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
    let blobs = storage::BackendConfig::Gcs(gcs.config());
    registry_tests::roundtrip::every_upload_shape(blobs, "gcs/app").await;
}
