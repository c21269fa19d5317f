//! The OCI "content management" workflow: deleting tags, manifests and blobs.

use registry_tests::oci::{error_code, sha256};
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test]
async fn delete_tag_manifest_and_blob() {
    let node = TestNode::start();
    let client = node.client();
    let digest = client.push_image("mgmt", "v1", b"{}", &[b"layer"]).await;
    let body = client.manifest("mgmt", "v1").await.bytes().await.unwrap();
    client
        .put_manifest("mgmt", "v2", registry_tests::oci::OCI_MANIFEST, &body)
        .await;

    // Deleting a tag leaves the manifest and other tags.
    assert_eq!(
        client.delete("/v2/mgmt/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client.manifest("mgmt", "v1").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(client.manifest("mgmt", "v2").await.status(), StatusCode::OK);
    assert_eq!(
        client.manifest("mgmt", &digest).await.status(),
        StatusCode::OK
    );
    let response = client.delete("/v2/mgmt/manifests/v1").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");

    // Deleting the manifest removes every tag pointing at it.
    assert_eq!(
        client
            .delete(&format!("/v2/mgmt/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client.manifest("mgmt", &digest).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.manifest("mgmt", "v2").await.status(),
        StatusCode::NOT_FOUND
    );
    let tags: serde_json::Value = client.tags("mgmt").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
    let response = client.delete(&format!("/v2/mgmt/manifests/{digest}")).await;
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");

    // Deleting a blob unlinks it from the repository.
    let layer = sha256(b"layer");
    assert_eq!(
        client
            .delete(&format!("/v2/mgmt/blobs/{layer}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let response = client.blob("mgmt", &layer).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");
    let response = client.delete(&format!("/v2/mgmt/blobs/{layer}")).await;
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deletes_are_refused_when_disabled() {
    let node = TestNode::start_with(|config| config.api.delete_enabled = false);
    let client = node.client();
    let digest = client.push_image("keep", "v1", b"{}", &[b"layer"]).await;
    for path in [
        format!("/v2/keep/manifests/{digest}"),
        "/v2/keep/manifests/v1".to_owned(),
        format!("/v2/keep/blobs/{}", sha256(b"layer")),
    ] {
        let response = client.delete(&path).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(error_code(response).await, "UNSUPPORTED");
    }
    assert_eq!(client.manifest("keep", "v1").await.status(), StatusCode::OK);
    assert_eq!(
        client.blob("keep", &sha256(b"layer")).await.status(),
        StatusCode::OK
    );
}
