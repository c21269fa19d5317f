//! The OCI "push" workflow: every way a blob and a manifest can arrive.

use registry_tests::oci::{
    self, bytes, error_code, header, location, sha256, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use registry_tests::TestNode;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn monolithic_post_and_session_put() {
    let node = TestNode::start();
    let client = node.client();
    let data = b"monolithic blob".to_vec();
    let digest = sha256(&data);
    let response = client
        .request(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(location(&response), format!("/v2/repo/blobs/{digest}"));
    assert_eq!(
        header(&response, "Docker-Content-Digest"),
        Some(digest.clone())
    );
    assert_eq!(bytes(client.blob("repo", &digest).await).await, data);

    // POST then a single PUT carrying the whole body.
    let data = b"put with body".to_vec();
    let digest = sha256(&data);
    let session = client.start_upload("repo").await;
    assert!(session.starts_with("/v2/repo/blobs/uploads/"));
    let response = client.finish(&session, &digest, Some(&data)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(location(&response), format!("/v2/repo/blobs/{digest}"));
    assert_eq!(bytes(client.blob("repo", &digest).await).await, data);
}

#[tokio::test]
async fn chunked_upload_with_status_and_out_of_order_chunk() {
    let node = TestNode::start();
    let client = node.client();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);
    let session = client.start_upload("chunks").await;

    let response = client.patch(&session, 0, &data[..1_000_000]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "Range").as_deref(), Some("0-999999"));
    let session = location(&response);

    // A chunk that does not start at the current offset is refused and changes nothing.
    let response = client
        .patch(&session, 1_500_000, &data[1_500_000..2_000_000])
        .await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(
        bytes(response).await.is_empty(),
        "a 416 carries no error code"
    );

    let status = client.get(&session).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "Range").as_deref(), Some("0-999999"));
    assert!(header(&status, "Docker-Upload-UUID").is_some());

    let response = client
        .patch(&session, 1_000_000, &data[1_000_000..2_000_000])
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The last chunk rides on the PUT.
    let response = client
        .finish(&location(&response), &digest, Some(&data[2_000_000..]))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = bytes(client.blob("chunks", &digest).await).await;
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256(&body), digest);

    // The session is gone once finished.
    assert_eq!(client.get(&session).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let node = TestNode::start();
    let client = node.client();
    let data = vec![42u8; 2_500_000];
    let digest = sha256(&data);
    let session = client.start_upload("stream").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let response = client
        .request(Method::PATCH, &session)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&response, "Range"),
        Some(format!("0-{}", data.len() - 1))
    );
    let response = client.finish(&location(&response), &digest, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        sha256(&bytes(client.blob("stream", &digest).await).await),
        digest
    );
}

#[tokio::test]
async fn sha512_blobs() {
    use sha2::{Digest as _, Sha512};
    let node = TestNode::start();
    let client = node.client();
    let data = b"hashed with sha512".to_vec();
    let digest = format!("sha512:{}", hex::encode(Sha512::digest(&data)));
    let response = client
        .request(
            Method::POST,
            &format!("/v2/long/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(bytes(client.blob("long", &digest).await).await, data);

    let other = b"chunked sha512".to_vec();
    let digest = format!("sha512:{}", hex::encode(Sha512::digest(&other)));
    let session = client.start_upload("long").await;
    let response = client.patch(&session, 0, &other).await;
    let response = client.finish(&location(&response), &digest, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(bytes(client.blob("long", &digest).await).await, other);
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let node = TestNode::start();
    let client = node.client();
    let digest = client.push_blob("source", b"shared layer").await;

    let response = client
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(location(&response), format!("/v2/target/blobs/{digest}"));
    assert_eq!(
        bytes(client.blob("target", &digest).await).await,
        b"shared layer"
    );

    // Not mountable: the registry opens an ordinary session instead.
    let missing = sha256(b"not anywhere");
    let response = client
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={missing}&from=source"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(location(&response).starts_with("/v2/target/blobs/uploads/"));
}

#[tokio::test]
async fn cancel_upload() {
    let node = TestNode::start();
    let client = node.client();
    let session = client.start_upload("cancel").await;
    let response = client.patch(&session, 0, b"abandoned").await;
    let session = location(&response);
    assert_eq!(
        client.delete(&session).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = client.get(&session).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        client.patch(&session, 9, b"more").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifests_of_every_media_type() {
    let node = TestNode::start();
    let client = node.client();
    let config = b"{\"os\":\"linux\"}";
    let layer = b"layer bytes";
    client.push_blob("types", config).await;
    client.push_blob("types", layer).await;

    // Docker schema 2 manifest, by tag.
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": oci::descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [oci::descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
    }))
    .unwrap();
    let response = client
        .put_manifest("types", "docker", DOCKER_MANIFEST, &docker)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = client.manifest("types", "docker").await;
    assert_eq!(
        header(&response, "Content-Type").as_deref(),
        Some(DOCKER_MANIFEST)
    );
    assert_eq!(bytes(response).await, docker);

    // OCI manifest by digest, with odd whitespace: the stored bytes are the sent bytes.
    let oci_manifest = String::from_utf8(oci::image_manifest(config, &[layer]))
        .unwrap()
        .replace(",", " ,\n ");
    let digest = sha256(oci_manifest.as_bytes());
    let response = client
        .put_manifest("types", &digest, OCI_MANIFEST, oci_manifest.as_bytes())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(location(&response), format!("/v2/types/manifests/{digest}"));
    assert_eq!(
        bytes(client.manifest("types", &digest).await).await,
        oci_manifest.as_bytes()
    );

    // An index over both, tagged.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [oci::descriptor(OCI_MANIFEST, oci_manifest.as_bytes()), oci::descriptor(DOCKER_MANIFEST, &docker)],
    }))
    .unwrap();
    let response = client
        .put_manifest("types", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(bytes(client.manifest("types", "multi").await).await, index);

    // An artifact: empty config, artifactType.
    let empty = b"{}";
    client.push_blob("types", empty).await;
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": oci::descriptor(oci::EMPTY_CONFIG, empty),
        "layers": [oci::descriptor("application/octet-stream", layer)],
    }))
    .unwrap();
    let response = client
        .put_manifest("types", "artifact", OCI_MANIFEST, &artifact)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // Re-tagging moves the tag.
    let response = client
        .put_manifest("types", "docker", OCI_MANIFEST, oci_manifest.as_bytes())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(
            &client.manifest("types", "docker").await,
            "Docker-Content-Digest"
        ),
        Some(digest)
    );
}

/// Spec 1.1.1: a manifest pushed by digest with `?tag=` parameters gets
/// each tag in the same write, named back in `OCI-Tag` headers; a bad tag
/// among them is refused and nothing is stored.
#[tokio::test]
async fn a_push_by_digest_with_tag_parameters_applies_every_tag() {
    let node = TestNode::start();
    let client = node.client();
    let config = b"{\"tags\":\"many\"}".to_vec();
    client.push_blob("multi/app", &config).await;
    let manifest = oci::image_manifest(&config, &[]);
    let digest = sha256(&manifest);
    let put = client
        .put_manifest(
            "multi/app",
            &format!("{digest}?tag=v1&tag=latest&tag=v1"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let tags: Vec<&str> = put
        .headers()
        .get_all("OCI-Tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["v1", "latest"]);
    for tag in ["v1", "latest"] {
        let got = client.manifest("multi/app", tag).await;
        assert_eq!(got.status(), StatusCode::OK, "{tag}");
        assert_eq!(bytes(got).await, manifest, "{tag}");
    }

    let other = oci::image_manifest(&config, &[]);
    let mut other: serde_json::Value = serde_json::from_slice(&other).unwrap();
    other["annotations"] = serde_json::json!({"n": "2"});
    let other = serde_json::to_vec(&other).unwrap();
    let other_digest = sha256(&other);
    let refused = client
        .put_manifest(
            "multi/app",
            &format!("{other_digest}?tag=ok&tag=-bad"),
            OCI_MANIFEST,
            &other,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(refused).await, "TAG_INVALID");
    assert_eq!(
        client.manifest("multi/app", &other_digest).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.manifest("multi/app", "ok").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A last chunk on the `PUT` whose `Content-Range` does not start at the
/// session's offset answers 416, like an out-of-order `PATCH`, and leaves
/// the session usable.
#[tokio::test]
async fn an_out_of_order_final_chunk_is_refused_and_the_session_survives() {
    let node = TestNode::start();
    let client = node.client();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let digest = sha256(&data);
    let session = client.start_upload("lastchunk").await;
    let response = client.patch(&session, 0, &data[..100_000]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let session = location(&response);
    let separator = if session.contains('?') { '&' } else { '?' };
    let wrong = client
        .request(Method::PUT, &format!("{session}{separator}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "150000-199999")
        .body(data[150_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let status = client.get(&session).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "Range").as_deref(), Some("0-99999"));
    let right = client
        .request(Method::PUT, &format!("{session}{separator}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::CREATED);
    assert_eq!(bytes(client.blob("lastchunk", &digest).await).await, data);
}
