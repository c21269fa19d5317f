//! Bearer tokens from a token server the test runs itself (`auth.token`):
//! each way a token names its key, the `access` claims deciding, every
//! kind of bad token refused with `invalid_token` and changing nothing, a
//! token without the scope answered `insufficient_scope`, and docker and
//! skopeo going through the token server as they do with distribution.

use api::auth::{AuthConfig, TokenConfig};
use registry_tests::oci::{self, error_code, header, sha256, Client};
use registry_tests::tls::TestCa;
use registry_tests::token_server::{now, KeyRef, Signer, TokenServer, Users};
use registry_tests::{cluster_size_under_test, TestCluster};
use reqwest::StatusCode;
use std::path::Path;

pub(crate) const SERVICE: &str = "registry-test";
pub(crate) const ISSUER: &str = "test-token-server";

fn access(name: &str, actions: &[&str]) -> Vec<(String, String, Vec<String>)> {
    vec![(
        "repository".to_owned(),
        name.to_owned(),
        actions.iter().map(|a| a.to_string()).collect(),
    )]
}

/// alice may push and pull team-a/…; anyone may pull library/….
pub(crate) fn users() -> Users {
    let grant = |who: &str, prefix: &str, actions: &[&str]| {
        (
            who.to_owned(),
            prefix.to_owned(),
            actions.iter().map(|a| a.to_string()).collect(),
        )
    };
    Users {
        passwords: [("alice".to_owned(), "alice-password".to_owned())].into(),
        grants: vec![
            grant("alice", "team-a/", &["pull", "push"]),
            grant("alice", "library/", &["pull"]),
            grant("", "library/", &["pull"]),
        ],
    }
}

pub(crate) fn start(
    realm: &str,
    roots: Option<&Path>,
    jwks: Option<&Path>,
    adjust: impl Fn(&mut node::NodeConfig),
) -> TestCluster {
    let auth = AuthConfig::Token(TokenConfig {
        realm: realm.to_owned(),
        service: SERVICE.to_owned(),
        issuer: ISSUER.to_owned(),
        root_cert_bundle: roots.map(Path::to_owned),
        jwks: jwks.map(Path::to_owned),
        algorithms: Vec::new(),
    });
    TestCluster::start(cluster_size_under_test(), None, move |config| {
        config.api.redirect = false;
        config.auth = Some(auth.clone());
        adjust(config);
    })
}

fn with_token(cluster: &TestCluster, token: Option<String>) -> Client {
    cluster.balanced_client().logged_in(None).with_token(token)
}

async fn assert_challenged(
    response: reqwest::Response,
    error: Option<&str>,
    scope: Option<&str>,
    what: &str,
) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = header(&response, "www-authenticate").unwrap_or_default();
    let mut expected = format!(
        r#"Bearer realm="{}",service="{SERVICE}""#,
        "http://token.invalid/token"
    );
    if let Some(scope) = scope {
        expected.push_str(&format!(r#",scope="{scope}""#));
    }
    if let Some(error) = error {
        expected.push_str(&format!(r#",error="{error}""#));
    }
    assert_eq!(challenge, expected, "{what}");
    assert_eq!(error_code(response).await, "UNAUTHORIZED", "{what}");
}

#[tokio::test]
async fn tokens_are_verified_and_their_access_claims_decide() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("token CA");
    std::fs::write(dir.path().join("roots.pem"), ca.pem()).unwrap();
    // The realm is never fetched here: the test signs tokens itself.
    let cluster = start(
        "http://token.invalid/token",
        Some(&dir.path().join("roots.pem")),
        None,
        |_| {},
    );
    let signer = Signer::new(Some(ca.issuer()), ISSUER, SERVICE, KeyRef::X5c);
    let anonymous = with_token(&cluster, None);

    assert_challenged(anonymous.get("/v2/").await, None, None, "no token at /v2/").await;
    assert_challenged(
        anonymous.manifest("team-a/app", "v1").await,
        None,
        Some("repository:team-a/app:pull"),
        "no token for a pull",
    )
    .await;

    let push = signer.sign(&signer.claims("alice", access("team-a/app", &["pull", "push"])));
    let alice = with_token(&cluster, Some(push.clone()));
    assert_eq!(alice.get("/v2/").await.status(), StatusCode::OK);
    let layer = b"pushed with a token".to_vec();
    let digest = alice.push_image("team-a/app", "v1", b"{}", &[&layer]).await;
    assert_eq!(alice.blob_bytes("team-a/app", &sha256(&layer)).await, layer);

    // A token for pulls only: pushes get insufficient_scope, and nothing moves.
    let pull = signer.sign(&signer.claims("alice", access("team-a/app", &["pull"])));
    let reader = with_token(&cluster, Some(pull));
    assert_eq!(
        reader.manifest("team-a/app", "v1").await.status(),
        StatusCode::OK
    );
    let other = oci::image_manifest(b"{\"other\":1}", &[]);
    assert_challenged(
        reader
            .put_manifest("team-a/app", "v1", oci::OCI_MANIFEST, &other)
            .await,
        Some("insufficient_scope"),
        Some("repository:team-a/app:pull,push"),
        "a pull token pushes",
    )
    .await;
    assert_challenged(
        reader.manifest("team-a/other", "v1").await,
        Some("insufficient_scope"),
        Some("repository:team-a/other:pull"),
        "a token for another repository",
    )
    .await;
    assert_challenged(
        reader.get("/v2/_catalog").await,
        Some("insufficient_scope"),
        Some("registry:catalog:*"),
        "the catalog without its scope",
    )
    .await;
    let catalog = signer.sign(&signer.claims(
        "alice",
        vec![("registry".into(), "catalog".into(), vec!["*".into()])],
    ));
    let listed: serde_json::Value = with_token(&cluster, Some(catalog))
        .get("/v2/_catalog")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["repositories"], serde_json::json!(["team-a/app"]));

    // Every bad token: 401 invalid_token, and the push it carries writes nothing.
    let untrusted = Signer::new(
        Some(TestCa::new("another CA").issuer()),
        ISSUER,
        SERVICE,
        KeyRef::X5c,
    );
    let self_signed = Signer::new(None, ISSUER, SERVICE, KeyRef::Libtrust);
    let good = signer.claims("alice", access("team-a/app", &["pull", "push"]));
    let changed = |change: &dyn Fn(&mut registry_tests::token_server::Claims)| {
        let mut claims = good.clone();
        change(&mut claims);
        signer.sign(&claims)
    };
    let mut tampered = push.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let mut forged_claims = push.split('.').map(str::to_owned).collect::<Vec<_>>();
    let other_claims =
        signer.sign(&signer.claims("alice", access("team-a/app", &["pull", "push", "delete"])));
    forged_claims[1] = other_claims.split('.').nth(1).unwrap().to_owned();
    let bad_tokens = [
        ("expired", changed(&|c| c.expires = now() - 120)),
        ("not yet valid", changed(&|c| c.not_before = now() + 600)),
        (
            "for another service",
            changed(&|c| c.audience = "elsewhere".into()),
        ),
        (
            "from another issuer",
            changed(&|c| c.issuer = "someone-else".into()),
        ),
        ("with a tampered signature", tampered),
        (
            "with claims swapped under the signature",
            forged_claims.join("."),
        ),
        (
            "chained to an untrusted CA",
            untrusted.sign(&untrusted.claims("alice", access("team-a/app", &["push"]))),
        ),
        (
            "from an unknown key id",
            self_signed.sign(&self_signed.claims("alice", access("team-a/app", &["push"]))),
        ),
        ("that is not a JWT", "not-a-token".to_owned()),
    ];
    for (what, token) in bad_tokens {
        let client = with_token(&cluster, Some(token));
        let refused = client
            .put_manifest("team-a/app", "v2", oci::OCI_MANIFEST, &other)
            .await;
        assert_challenged(
            refused,
            Some("invalid_token"),
            Some("repository:team-a/app:pull,push"),
            what,
        )
        .await;
    }
    let tags: serde_json::Value = alice.tags("team-a/app").await.json().await.unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["v1"]),
        "no bad token tagged anything"
    );
    let pulled = alice.manifest("team-a/app", "v1").await;
    assert_eq!(sha256(&oci::bytes(pulled).await), digest);
}

#[tokio::test]
async fn keys_are_found_by_thumbprint_libtrust_id_and_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let by_thumbprint = Signer::new(None, ISSUER, SERVICE, KeyRef::Thumbprint);
    let by_libtrust = Signer::new(None, ISSUER, SERVICE, KeyRef::Libtrust);
    let by_jwks = Signer::new(None, ISSUER, SERVICE, KeyRef::Kid("jwks-key-1".to_owned()));
    let roots = format!("{}{}", by_thumbprint.certificate, by_libtrust.certificate);
    std::fs::write(dir.path().join("roots.pem"), roots).unwrap();
    let jwks = serde_json::json!({ "keys": [by_jwks.jwk("jwks-key-1")] });
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let cluster = start(
        "http://token.invalid/token",
        Some(&dir.path().join("roots.pem")),
        Some(&dir.path().join("jwks.json")),
        |_| {},
    );
    for (what, signer) in [
        ("thumbprint", &by_thumbprint),
        ("libtrust", &by_libtrust),
        ("jwks", &by_jwks),
    ] {
        let token = signer.sign(&signer.claims("alice", access("keys/app", &["pull", "push"])));
        let client = with_token(&cluster, Some(token));
        assert_eq!(
            client.get("/v2/").await.status(),
            StatusCode::OK,
            "a key found by {what}"
        );
        client
            .push_image("keys/app", what, what.as_bytes(), &[what.as_bytes()])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_gets_tokens_from_the_token_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("token CA");
    std::fs::write(dir.path().join("roots.pem"), ca.pem()).unwrap();
    let server = TokenServer::start(
        Signer::new(Some(ca.issuer()), ISSUER, SERVICE, KeyRef::X5c),
        users(),
    );
    let cluster = start(
        &server.realm(),
        Some(&dir.path().join("roots.pem")),
        None,
        |_| {},
    );
    let host = cluster.node_url(0).trim_start_matches("http://").to_owned();
    let source = dir.path().join("layout");
    let manifest_digest = crate::skopeo::write_layout(&source, "v1", &[vec![5u8; 300_000]]);
    tokio::task::spawn_blocking(move || {
        let src = format!("oci:{}:v1", source.display());
        let image = format!("docker://{host}/team-a/skopeo:v1");
        let plain = "--dest-tls-verify=false";
        crate::skopeo::skopeo(&[
            "copy",
            "--preserve-digests",
            plain,
            "--dest-creds",
            "alice:alice-password",
            &src,
            &image,
        ]);
        let inspected = crate::skopeo::skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:alice-password",
            &image,
        ]);
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Digest"], manifest_digest.as_str());
        let anonymous = crate::skopeo::skopeo_output(&[
            "copy",
            "--preserve-digests",
            plain,
            &src,
            &format!("docker://{host}/team-a/anon:v1"),
        ]);
        assert!(
            !anonymous.status.success(),
            "an anonymous token grants no push"
        );
        let wrong = crate::skopeo::skopeo_output(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:wrong",
            &image,
        ]);
        assert!(
            !wrong.status.success(),
            "the token server refuses a wrong password"
        );
    })
    .await
    .unwrap();
    assert!(server.issued() >= 2, "skopeo went through the token server");
}
