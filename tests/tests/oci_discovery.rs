//! The OCI "content discovery" workflow: tags list and catalog, paginated.

use registry_tests::oci::{error_code, header};
use registry_tests::TestNode;
use reqwest::StatusCode;

#[tokio::test]
async fn tags_list_in_lexical_order_with_pagination() {
    let node = TestNode::start();
    let client = node.client();
    let manifest_digest = client.push_image("disc", "b", b"{}", &[b"x"]).await;
    for tag in ["a", "c", "d", "e"] {
        let response = client.manifest("disc", &manifest_digest).await;
        let body = response.bytes().await.unwrap();
        let put = client
            .put_manifest("disc", tag, registry_tests::oci::OCI_MANIFEST, &body)
            .await;
        assert_eq!(put.status(), StatusCode::CREATED);
    }
    let all: serde_json::Value = client.tags("disc").await.json().await.unwrap();
    assert_eq!(all["name"], "disc");
    assert_eq!(all["tags"], serde_json::json!(["a", "b", "c", "d", "e"]));

    let first = client.get("/v2/disc/tags/list?n=2").await;
    let link = header(&first, "Link").expect("Link header when more tags exist");
    assert_eq!(link, "</v2/disc/tags/list?n=2&last=b>; rel=\"next\"");
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["a", "b"]));

    let next = client.get("/v2/disc/tags/list?n=2&last=b").await;
    assert!(header(&next, "Link").is_some());
    let body: serde_json::Value = next.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["c", "d"]));

    let last = client.get("/v2/disc/tags/list?n=2&last=d").await;
    assert!(header(&last, "Link").is_none(), "no Link on the last page");
    let body: serde_json::Value = last.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["e"]));

    let none: serde_json::Value = client
        .get("/v2/disc/tags/list?n=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["tags"], serde_json::json!([]));

    let response = client.tags("no/such/repo").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_lists_repositories_with_pagination() {
    let node = TestNode::start();
    let client = node.client();
    for repo in ["zeta", "alpha/one", "alpha/two", "mid"] {
        client.push_blob(repo, repo.as_bytes()).await;
    }
    let body: serde_json::Value = client.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["alpha/one", "alpha/two", "mid", "zeta"])
    );

    let page = client.get("/v2/_catalog?n=3").await;
    assert_eq!(
        header(&page, "Link").as_deref(),
        Some("</v2/_catalog?n=3&last=mid>; rel=\"next\"")
    );
    let body: serde_json::Value = page.json().await.unwrap();
    assert_eq!(
        body["repositories"],
        serde_json::json!(["alpha/one", "alpha/two", "mid"])
    );
    let body: serde_json::Value = client
        .get("/v2/_catalog?n=3&last=mid")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["zeta"]));
}
