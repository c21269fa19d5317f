//! The S3 backend against a real S3 server on loopback (s3s-fs, which
//! verifies SigV4): the shared backend suite, presigned redirects, a server
//! that dies mid-push, and a server that is down at start.

use registry_tests::oci::{self, bytes, error_code, header, sha256};
use registry_tests::s3::S3Server;
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test]
async fn s3_passes_the_backend_conformance_suite() {
    let server = S3Server::start();
    let store = storage::backends::open(&storage::BackendConfig::S3(server.config()))
        .await
        .expect("open s3");
    assert_eq!(store.backend(), "s3");
    storage::testsuite::conformance(store.as_ref()).await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_at_start() {
    let server = S3Server::start();
    let mut config = server.config();
    config.secret_key = Some("not the secret".to_owned());
    let err = storage::backends::open(&storage::BackendConfig::S3(config))
        .await
        .expect_err("the server checks signatures");
    assert!(err.to_string().contains("check storage"), "{err}");
}

#[tokio::test]
async fn unreachable_storage_at_start_is_an_error_not_a_hang() {
    let mut server = S3Server::start();
    server.stop();
    let started = std::time::Instant::now();
    let err = storage::backends::open(&storage::BackendConfig::S3(server.config()))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind, storage::ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_that_serve_the_right_bytes() {
    let node = TestNode::start_s3(|config| config.api.delete_enabled = true);
    let client = node.client();
    let layer: Vec<u8> = (0..2_000_000u32).map(|i| (i % 233) as u8).collect();
    client.push_image("presigned", "v1", b"{}", &[&layer]).await;
    let digest = sha256(&layer);

    let response = client.blob("presigned", &digest).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = header(&response, "Location").expect("Location");
    let endpoint = node.s3.as_ref().unwrap().endpoint();
    assert!(
        location.starts_with(&endpoint),
        "{location} is on the S3 server"
    );
    assert!(
        location.contains("X-Amz-Signature="),
        "{location} is presigned"
    );

    // A client that follows the redirect gets the bytes straight from S3.
    let following = reqwest::Client::new();
    let response = following
        .get(format!("{}/v2/presigned/blobs/{digest}", node.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sha256(&response.bytes().await.unwrap()), digest);
    let ranged = following
        .get(format!("{}/v2/presigned/blobs/{digest}", node.base_url()))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap() == layer[10..20]);

    // HEAD is answered by the registry itself.
    let head = client.head(&format!("/v2/presigned/blobs/{digest}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        header(&head, "Content-Length"),
        Some(layer.len().to_string())
    );
}

#[tokio::test]
async fn with_redirect_disabled_the_node_streams_from_s3() {
    let node = TestNode::start_s3(|config| config.api.redirect = false);
    let client = node.client();
    let data = vec![5u8; 300_000];
    let digest = client.push_blob("streamed", &data).await;
    let response = client.blob("streamed", &digest).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "Docker-Content-Digest"), Some(digest));
    assert!(bytes(response).await == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_dying_mid_push_fails_the_push_records_nothing_and_the_retry_works() {
    let mut node = TestNode::start_s3(|_| {});
    let client = node.client();
    let config = b"{\"config\":1}".to_vec();
    let layer: Vec<u8> = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
    client.push_blob("outage", &config).await;

    let session = client.start_upload("outage").await;
    let response = client.patch(&session, 0, &layer[..3_000_000]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let session = oci::location(&response);

    node.s3.as_mut().unwrap().stop();
    let response = client.patch(&session, 3_000_000, &layer[3_000_000..]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "UNAVAILABLE");
    let manifest = oci::image_manifest(&config, &[&layer]);
    let response = client
        .put_manifest("outage", "v1", oci::OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "the layer was never recorded"
    );
    assert_eq!(error_code(response).await, "MANIFEST_BLOB_UNKNOWN");

    node.s3.as_mut().unwrap().resume();
    assert_eq!(
        client.blob("outage", &sha256(&layer)).await.status(),
        StatusCode::NOT_FOUND
    );
    // The same push, continued from where S3 last acknowledged it.
    let status = client.get(&session).await;
    assert_eq!(header(&status, "Range").as_deref(), Some("0-2999999"));
    let response = client.patch(&session, 3_000_000, &layer[3_000_000..]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = client
        .finish(&oci::location(&response), &sha256(&layer), None)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = client
        .put_manifest("outage", "v1", oci::OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    tokio::task::block_in_place(|| node.restart());
    assert_eq!(
        client.manifest("outage", "v1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn large_chunks_are_composed_on_the_server_and_small_ones_streamed() {
    let node = TestNode::start_s3(|_| {});
    let client = node.client();
    let large: Vec<u8> = (0..13_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = client.push_blob_chunked("compose", &large, 6 << 20).await;
    let small: Vec<u8> = (0..3_000_000u32).map(|i| (i % 199) as u8).collect();
    let small_digest = client.push_blob_chunked("compose", &small, 256 << 10).await;
    let following = reqwest::Client::new();
    for (digest, data) in [(digest, &large), (small_digest, &small)] {
        let body = following
            .get(format!("{}/v2/compose/blobs/{digest}", node.base_url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), data.len());
        assert_eq!(sha256(&body), digest);
    }
    // s3s-fs keeps emptied folders; count objects, not folders.
    let mut leftovers = 0;
    let mut pending = vec![node.blobs_dir().join("uploads")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                leftovers += 1;
            }
        }
    }
    assert_eq!(leftovers, 0, "staged parts are gone after commit");
}

#[tokio::test]
async fn s3_composes_objects_server_side() {
    use futures::StreamExt;
    let server = S3Server::start();
    let store = storage::backends::open(&storage::BackendConfig::S3(server.config()))
        .await
        .expect("open s3");
    let upload = storage::uuid::Uuid::new_v4();
    let first: Vec<u8> = vec![1; 5 << 20];
    let second: Vec<u8> = vec![2; 1000];
    let mut sources = Vec::new();
    for (offset, data) in [(0u64, &first), (first.len() as u64, &second)] {
        let key = storage::ObjectKey::upload_part(&upload, offset);
        let body = futures::stream::once({
            let data = bytes::Bytes::from(data.clone());
            async move { Ok(data) }
        })
        .boxed();
        store.put(&key, body).await.unwrap();
        sources.push((key, data.len() as u64));
    }
    let whole = [first.as_slice(), second.as_slice()].concat();
    let target = storage::ObjectKey::blob(&storage::Digest::sha256_of(&whole));
    assert!(
        store.compose(&sources, &target).await.unwrap(),
        "S3 composes with UploadPartCopy"
    );
    let body: Vec<bytes::Bytes> = store
        .get(&target, None)
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert!(body.concat() == whole);

    // A part under 5 MiB before the last cannot be a multipart part: not composed.
    let small_first = vec![
        (sources[1].0.clone(), 1000),
        (sources[0].0.clone(), 5 << 20),
    ];
    assert!(!store.compose(&small_first, &target).await.unwrap());
}
