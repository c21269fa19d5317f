//! The referrers API (spec 1.1): `subject`, `OCI-Subject`, filtering.

use registry_tests::oci::{self, artifact, header, sha256, OCI_INDEX, OCI_MANIFEST};
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test]
async fn referrers_are_listed_and_filtered() {
    let node = TestNode::start();
    let client = node.client();
    let subject_digest = client.push_image("ref", "v1", b"{}", &[b"base"]).await;
    let subject = oci::image_manifest(b"{}", &[b"base"]);
    client.push_blob("ref", b"signature").await;
    client.push_blob("ref", b"sbom").await;

    let sig = artifact("application/vnd.example.sig", &subject, b"signature");
    let sig_digest = sha256(&sig);
    let response = client
        .put_manifest("ref", &sig_digest, OCI_MANIFEST, &sig)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "OCI-Subject"),
        Some(subject_digest.clone())
    );
    let sbom = artifact("application/vnd.example.sbom", &subject, b"sbom");
    let response = client
        .put_manifest("ref", &sha256(&sbom), OCI_MANIFEST, &sbom)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = client
        .get(&format!("/v2/ref/referrers/{subject_digest}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "Content-Type").as_deref(),
        Some(OCI_INDEX)
    );
    assert!(header(&response, "OCI-Filters-Applied").is_none());
    let index: serde_json::Value = response.json().await.unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let sig_entry = manifests
        .iter()
        .find(|m| m["digest"] == sig_digest.as_str())
        .unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(
        sig_entry["annotations"]["org.example.kind"],
        "application/vnd.example.sig"
    );

    let response = client
        .get(&format!(
            "/v2/ref/referrers/{subject_digest}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(
        header(&response, "OCI-Filters-Applied").as_deref(),
        Some("artifactType")
    );
    let index: serde_json::Value = response.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );

    // Deleting a referrer removes it from the list.
    assert_eq!(
        client
            .delete(&format!("/v2/ref/manifests/{sig_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let index: serde_json::Value = client
        .get(&format!("/v2/ref/referrers/{subject_digest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_subjects_have_an_empty_index_and_subjects_need_not_exist() {
    let node = TestNode::start();
    let client = node.client();
    let nothing = sha256(b"no such manifest");
    let response = client.get(&format!("/v2/empty/referrers/{nothing}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let index: serde_json::Value = response.json().await.unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));

    // A referrer may arrive before its subject.
    client.push_blob("early", b"sig").await;
    client.push_blob("early", b"{}").await;
    let absent_subject = b"subject pushed later";
    let sig = artifact("application/vnd.example.sig", absent_subject, b"sig");
    let response = client
        .put_manifest("early", &sha256(&sig), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let index: serde_json::Value = client
        .get(&format!("/v2/early/referrers/{}", sha256(absent_subject)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);

    let response = client.get("/v2/early/referrers/sha256:nope").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
