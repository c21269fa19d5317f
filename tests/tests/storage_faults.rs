//! Blob storage that fails: requests get 503 `UNAVAILABLE`, nothing is
//! recorded for bytes that did not land, and the same push works once
//! storage is back.

use registry_tests::oci::{error_code, sha256};
use registry_tests::TestNode;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn storage_outage_is_503_and_records_nothing() {
    let node = TestNode::start();
    let client = node.client();
    let kept = client.push_image("outage", "v1", b"{}", &[b"before"]).await;

    node.faults.set(true);
    let data = b"pushed during the outage".to_vec();
    let digest = sha256(&data);
    let response = client
        .request(
            Method::POST,
            &format!("/v2/outage/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "UNAVAILABLE");

    let session = client.start_upload("outage").await;
    let response = client.patch(&session, 0, &data).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let response = client.blob("outage", &sha256(b"before")).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "blob reads need storage"
    );
    assert_eq!(
        client.manifest("outage", "v1").await.status(),
        StatusCode::OK,
        "manifests come from metadata and stay readable"
    );

    node.faults.set(false);
    assert_eq!(
        client.blob("outage", &digest).await.status(),
        StatusCode::NOT_FOUND,
        "nothing recorded"
    );
    let status = client.get(&session).await;
    assert_eq!(
        registry_tests::oci::header(&status, "Range").as_deref(),
        Some("0-0"),
        "the failed chunk left nothing"
    );
    let response = client.patch(&session, 0, &data).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = client
        .finish(&registry_tests::oci::location(&response), &digest, None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        registry_tests::oci::bytes(client.blob("outage", &digest).await).await,
        data
    );
    assert_eq!(
        registry_tests::oci::header(
            &client.manifest("outage", "v1").await,
            "Docker-Content-Digest"
        ),
        Some(kept)
    );
}
