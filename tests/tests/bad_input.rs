//! Bad input gets the spec's error code and status, and changes nothing.

use registry_tests::oci::{self, error_code, header, sha256, Client, OCI_INDEX, OCI_MANIFEST};
use registry_tests::TestNode;
use reqwest::{Method, StatusCode};
use std::path::Path;

/// Everything observable about the registry's content: the catalog, every
/// repository's tags with the manifest each serves, and the blob files.
async fn fingerprint(client: &Client, blobs_dir: &Path) -> String {
    let catalog: serde_json::Value = client.get("/v2/_catalog").await.json().await.unwrap();
    let mut out = catalog.to_string();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: serde_json::Value = client.tags(repo).await.json().await.unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let response = client.manifest(repo, tag.as_str().unwrap()).await;
            out.push_str(&format!(
                "\n{repo}:{tag}={:?}",
                header(&response, "Docker-Content-Digest")
            ));
        }
    }
    let mut files = Vec::new();
    let mut pending = vec![blobs_dir.join("blobs")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    files.sort();
    out.push_str(&format!("\n{files:?}"));
    out
}

struct Case {
    what: &'static str,
    status: StatusCode,
    code: &'static str,
    response: reqwest::Response,
}

async fn expect(node: &TestNode, before: &str, case: Case) {
    assert_eq!(case.response.status(), case.status, "{}", case.what);
    if case.code.is_empty() {
        let body = case.response.bytes().await.unwrap();
        assert!(body.is_empty(), "{}: a body for a 416: {body:?}", case.what);
    } else {
        assert_eq!(error_code(case.response).await, case.code, "{}", case.what);
    }
    let after = fingerprint(&node.client(), &node.blobs_dir()).await;
    assert_eq!(before, after, "{} changed state", case.what);
}

#[tokio::test]
async fn every_error_code_leaves_state_unchanged() {
    let node = TestNode::start();
    let client = node.client();
    let config = b"{}";
    let layer = b"a layer";
    client.push_image("good", "v1", config, &[layer]).await;
    let before = fingerprint(&client, &node.blobs_dir()).await;
    let send = |method: Method, path: String, body: Vec<u8>, content_type: &'static str| {
        let client = client.clone();
        async move {
            client
                .request(method, &path)
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = sha256(b"something else");

    let cases = vec![
        Case {
            what: "upper-case repository name",
            status: StatusCode::BAD_REQUEST,
            code: "NAME_INVALID",
            response: send(
                Method::POST,
                format!("/v2/Bad/blobs/uploads/?digest={}", sha256(b"x")),
                b"x".to_vec(),
                "application/octet-stream",
            )
            .await,
        },
        Case {
            what: "repository name over 255 characters",
            status: StatusCode::BAD_REQUEST,
            code: "NAME_INVALID",
            response: send(
                Method::PUT,
                format!("/v2/{}/manifests/v1", "a".repeat(256)),
                oci::image_manifest(config, &[layer]),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "invalid tag",
            status: StatusCode::BAD_REQUEST,
            code: "TAG_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/.hidden".into(),
                oci::image_manifest(config, &[layer]),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "malformed digest",
            status: StatusCode::BAD_REQUEST,
            code: "DIGEST_INVALID",
            response: send(
                Method::POST,
                "/v2/good/blobs/uploads/?digest=sha256:1234".into(),
                b"x".to_vec(),
                "application/octet-stream",
            )
            .await,
        },
        Case {
            what: "monolithic blob whose bytes do not match the digest",
            status: StatusCode::BAD_REQUEST,
            code: "DIGEST_INVALID",
            response: send(
                Method::POST,
                format!("/v2/good/blobs/uploads/?digest={wrong}"),
                b"x".to_vec(),
                "application/octet-stream",
            )
            .await,
        },
        Case {
            what: "manifest whose bytes do not match the digest reference",
            status: StatusCode::BAD_REQUEST,
            code: "DIGEST_INVALID",
            response: send(
                Method::PUT,
                format!("/v2/good/manifests/{wrong}"),
                oci::image_manifest(config, &[layer]),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "manifest that is not JSON",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/v2".into(),
                b"{not json".to_vec(),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "manifest missing its config",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/v2".into(),
                br#"{"schemaVersion":2,"layers":[]}"#.to_vec(),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "manifest whose mediaType contradicts Content-Type",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/v2".into(),
                oci::image_manifest(config, &[layer]),
                OCI_INDEX,
            )
            .await,
        },
        Case {
            what: "manifest of an unsupported media type",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/v2".into(),
                br#"{"schemaVersion":2}"#.to_vec(),
                "application/vnd.example.unknown+json",
            )
            .await,
        },
        Case {
            what: "manifest referencing a missing layer",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_BLOB_UNKNOWN",
            response: send(
                Method::PUT,
                "/v2/good/manifests/v2".into(),
                oci::image_manifest(config, &[b"never pushed"]),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "manifest referencing a blob of another repository",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_BLOB_UNKNOWN",
            response: send(
                Method::PUT,
                "/v2/other/manifests/v1".into(),
                oci::image_manifest(config, &[layer]),
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "index referencing a missing manifest",
            status: StatusCode::BAD_REQUEST,
            code: "MANIFEST_BLOB_UNKNOWN",
            response: send(
                Method::PUT,
                "/v2/good/manifests/idx".into(),
                serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2, "mediaType": OCI_INDEX,
                    "manifests": [oci::descriptor(OCI_MANIFEST, b"no such manifest")],
                }))
                .unwrap(),
                OCI_INDEX,
            )
            .await,
        },
        Case {
            what: "manifest over 4 MiB",
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "SIZE_INVALID",
            response: send(
                Method::PUT,
                "/v2/good/manifests/huge".into(),
                vec![b' '; (4 << 20) + 1],
                OCI_MANIFEST,
            )
            .await,
        },
        Case {
            what: "PATCH to an unknown upload",
            status: StatusCode::NOT_FOUND,
            code: "BLOB_UPLOAD_UNKNOWN",
            response: send(
                Method::PATCH,
                format!(
                    "/v2/good/blobs/uploads/{}",
                    "0f0e0d0c-0b0a-4908-8706-050403020100"
                ),
                b"x".to_vec(),
                "application/octet-stream",
            )
            .await,
        },
        Case {
            what: "method not allowed on an endpoint",
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "UNSUPPORTED",
            response: send(
                Method::POST,
                format!("/v2/good/blobs/{}", sha256(layer)),
                Vec::new(),
                "application/octet-stream",
            )
            .await,
        },
        Case {
            what: "a page size that is not a number",
            status: StatusCode::BAD_REQUEST,
            code: "PAGINATION_NUMBER_INVALID",
            response: client.get("/v2/good/tags/list?n=many").await,
        },
        Case {
            what: "tags of an unknown repository",
            status: StatusCode::NOT_FOUND,
            code: "NAME_UNKNOWN",
            response: client.tags("unknown").await,
        },
    ];
    for case in cases {
        expect(&node, &before, case).await;
    }
}

#[tokio::test]
async fn a_failed_upload_step_leaves_the_session_usable() {
    let node = TestNode::start();
    let client = node.client();
    let data = b"0123456789".to_vec();
    let session = client.start_upload("sess").await;
    let response = client.patch(&session, 0, &data[..5]).await;
    let session = oci::location(&response);
    let before = fingerprint(&client, &node.blobs_dir()).await;

    let response = client
        .request(Method::PATCH, &session)
        .header("Content-Range", "garbage")
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    expect(
        &node,
        &before,
        Case {
            what: "malformed Content-Range",
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            code: "", // 416: no JSON body, the headers tell
            response,
        },
    )
    .await;

    let response = client
        .request(Method::PATCH, &session)
        .header("Content-Range", "5-9")
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    expect(
        &node,
        &before,
        Case {
            what: "Content-Range longer than the body",
            status: StatusCode::BAD_REQUEST,
            code: "BLOB_UPLOAD_INVALID",
            response,
        },
    )
    .await;

    let response = client.patch(&session, 3, &data[3..]).await;
    assert_eq!(
        header(&response, "Range").as_deref(),
        Some("0-4"),
        "416 reports the real offset"
    );
    expect(
        &node,
        &before,
        Case {
            what: "overlapping chunk",
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            code: "", // 416: no JSON body, the headers tell
            response,
        },
    )
    .await;

    let response = client.finish(&session, &sha256(b"01234"), None).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the session still finishes"
    );
    assert_eq!(
        oci::bytes(client.blob("sess", &sha256(b"01234")).await).await,
        b"01234"
    );

    let session = client.start_upload("sess").await;
    client.patch(&session, 0, b"abc").await;
    let response = client.finish(&session, &sha256(b"abd"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "DIGEST_INVALID");
    assert_eq!(
        client.blob("sess", &sha256(b"abd")).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = client.finish(&session, &sha256(b"abc"), None).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a wrong digest does not lose the upload"
    );
    let response = client.finish(&session, "sha256:bad", None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// `storage.maintenance.readonly.enabled`: every write answers 405 with
/// the JSON `UNSUPPORTED` envelope saying why (distribution answers plain
/// text there), nothing changes, pulls keep working.
#[tokio::test]
async fn a_node_read_only_by_config_refuses_writes_and_serves_pulls() {
    let mut node = TestNode::start_with(|config| config.api.delete_enabled = true);
    let config = b"{\"ro\":true}";
    let digest = node.client().push_image("ro", "v1", config, &[]).await;
    node.restart_with(|config| config.api.read_only = true);
    let client = node.client();
    let before = fingerprint(&client, &node.blobs_dir()).await;
    let attempts = [
        (Method::POST, "/v2/ro/blobs/uploads/".to_owned()),
        (Method::PUT, "/v2/ro/manifests/v2".to_owned()),
        (Method::DELETE, format!("/v2/ro/manifests/{digest}")),
        (Method::DELETE, format!("/v2/ro/blobs/{}", sha256(config))),
    ];
    for (method, path) in attempts {
        let response = client
            .request(method.clone(), &path)
            .header("Content-Type", oci::OCI_MANIFEST)
            .body(b"{}".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED", "{method} {path}");
        assert!(body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("read-only"));
    }
    assert_eq!(before, fingerprint(&client, &node.blobs_dir()).await);
    let pulled = client.manifest("ro", "v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
}
