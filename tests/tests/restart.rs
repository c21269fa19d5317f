//! Content and upload sessions survive a restart on the same data.

use registry_tests::oci::{bytes, header, location, sha256};
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn pushed_content_survives_a_restart() {
    let mut node = TestNode::start();
    let client = node.client();
    let layer = vec![3u8; 300_000];
    let digest = client
        .push_image("durable/app", "v1", b"{\"a\":1}", &[&layer])
        .await;
    tokio::task::block_in_place(|| node.restart());

    let response = client.manifest("durable/app", "v1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "Docker-Content-Digest"), Some(digest));
    let body = bytes(client.blob("durable/app", &sha256(&layer)).await).await;
    assert_eq!(body, layer);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_resumes_after_a_restart() {
    let mut node = TestNode::start();
    let client = node.client();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 199) as u8).collect();
    let digest = sha256(&data);
    let session = client.start_upload("resume").await;
    let response = client.patch(&session, 0, &data[..1_200_000]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let session = location(&response);

    tokio::task::block_in_place(|| node.restart());

    let status = client.get(&session).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "Range").as_deref(), Some("0-1199999"));
    let response = client.patch(&session, 1_200_000, &data[1_200_000..]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = client.finish(&location(&response), &digest, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        sha256(&bytes(client.blob("resume", &digest).await).await),
        digest
    );
}
