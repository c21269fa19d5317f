//! The OCI "pull" workflow: manifests by tag and digest, blobs, ranges.

use registry_tests::oci::{self, bytes, error_code, header, sha256, OCI_MANIFEST};
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test]
async fn pull_manifest_by_tag_and_digest_returns_the_pushed_bytes() {
    let node = TestNode::start();
    let client = node.client();
    let response = client.get("/v2/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "Docker-Distribution-API-Version").as_deref(),
        Some("registry/2.0")
    );

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = vec![7u8; 100_000];
    let digest = client
        .push_image("library/app", "v1", config, &[&layer])
        .await;
    let expected = oci::image_manifest(config, &[&layer]);

    for reference in ["v1", digest.as_str()] {
        let response = client.manifest("library/app", reference).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "Content-Type").as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            header(&response, "Docker-Content-Digest").as_deref(),
            Some(digest.as_str())
        );
        assert_eq!(bytes(response).await, expected);

        let head = client
            .head(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            header(&head, "Content-Length"),
            Some(expected.len().to_string())
        );
        assert_eq!(
            header(&head, "Docker-Content-Digest").as_deref(),
            Some(digest.as_str())
        );
    }
}

#[tokio::test]
async fn pull_blob_whole_and_by_range() {
    let node = TestNode::start();
    let client = node.client();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = client.push_blob("a/b/c", &data).await;

    let response = client.blob("a/b/c", &digest).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "Content-Length"),
        Some(data.len().to_string())
    );
    assert_eq!(
        header(&response, "Docker-Content-Digest"),
        Some(digest.clone())
    );
    assert_eq!(header(&response, "Accept-Ranges").as_deref(), Some("bytes"));
    let body = bytes(response).await;
    assert_eq!(sha256(&body), digest, "served bytes hash to the digest");

    let head = client.head(&format!("/v2/a/b/c/blobs/{digest}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        header(&head, "Content-Length"),
        Some(data.len().to_string())
    );

    let ranged = client
        .request(reqwest::Method::GET, &format!("/v2/a/b/c/blobs/{digest}"))
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&ranged, "Content-Range").as_deref(),
        Some("bytes 1000-1999/1000000")
    );
    assert_eq!(bytes(ranged).await, &data[1000..2000]);

    let suffix = client
        .request(reqwest::Method::GET, &format!("/v2/a/b/c/blobs/{digest}"))
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes(suffix).await, &data[data.len() - 10..]);

    let beyond = client
        .request(reqwest::Method::GET, &format!("/v2/a/b/c/blobs/{digest}"))
        .header("Range", "bytes=2000000-")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&beyond, "Content-Range").as_deref(),
        Some("bytes */1000000")
    );
    assert!(
        bytes(beyond).await.is_empty(),
        "a 416 carries no error code"
    );
}

#[tokio::test]
async fn unknown_content_is_404_with_its_code() {
    let node = TestNode::start();
    let client = node.client();
    let missing = sha256(b"never pushed");
    let response = client.blob("nothing/here", &missing).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UNKNOWN");

    let response = client.manifest("nothing/here", "latest").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "NAME_UNKNOWN");

    client.push_image("present", "v1", b"{}", &[b"l"]).await;
    let response = client.manifest("present", "v2").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    let response = client.manifest("present", &missing).await;
    assert_eq!(error_code(response).await, "MANIFEST_UNKNOWN");
    let head = client.head(&format!("/v2/present/blobs/{missing}")).await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    // A blob pushed to one repository is not visible through another.
    let digest = client.push_blob("one", b"private").await;
    assert_eq!(
        client.blob("two", &digest).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn accept_negotiation_excludes_unaccepted_manifest_types() {
    let node = TestNode::start();
    let client = node.client();
    let digest = client.push_image("neg", "v1", b"{}", &[b"layer"]).await;
    let response = client
        .request(reqwest::Method::GET, &format!("/v2/neg/manifests/{digest}"))
        .header("Accept", oci::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .request(reqwest::Method::GET, "/v2/neg/manifests/v1")
        .header("Accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn accept_may_come_as_one_header_per_type() {
    let node = TestNode::start();
    let client = node.client();
    client.push_image("multi", "v1", b"{}", &[b"layer"]).await;
    let response = client
        .request(reqwest::Method::GET, "/v2/multi/manifests/v1")
        .header("Accept", oci::DOCKER_MANIFEST)
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
