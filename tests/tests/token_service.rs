//! The built-in token service (`auth.tokenservice`): htpasswd users get
//! Bearer tokens from the registry itself, scoped by the access rules; the
//! tokens one node issues work on every node; bad tokens, wrong passwords
//! and wrong services are refused as clients expect and change nothing;
//! real clients (skopeo, podman, helm, oci-client) follow the challenge to
//! it through TLS.

use crate::auth::{ALICE, BOB, OPS};
use api::auth::AuthConfig;
use base64::Engine;
use registry_tests::oci::{error_code, header, Client};
use registry_tests::tls::TestCa;
use registry_tests::token_server::{now, KeyRef, Signer};
use registry_tests::{token_service_config, write_signing_key, TestCluster};
use reqwest::{Method, StatusCode};
use std::path::Path;

const SERVICE: &str = "registry";

/// auth.rs's users and rules, with the token service signing with a key
/// in `dir` (`token-key.pem`, the same file for every node).
fn start(dir: &Path, adjust: impl Fn(&mut node::NodeConfig)) -> TestCluster {
    let key = dir.join("token-key.pem");
    write_signing_key(&key);
    crate::auth::start(dir, move |config| {
        if let Some(AuthConfig::Htpasswd(logins)) = &mut config.auth {
            logins.token_service = Some(token_service_config(&key));
        }
        adjust(config);
    })
}

fn as_user(cluster: &TestCluster, user: Option<(&str, &str)>) -> Client {
    cluster.balanced_client().logged_in(user)
}

fn with_token(cluster: &TestCluster, token: &str) -> Client {
    cluster
        .balanced_client()
        .logged_in(None)
        .with_token(Some(token.to_owned()))
}

/// `GET /token?service=registry&scope=…` as `user`.
async fn token_response(
    cluster: &TestCluster,
    user: Option<(&str, &str)>,
    scopes: &[&str],
) -> reqwest::Response {
    let mut path = format!("/token?service={SERVICE}");
    for scope in scopes {
        path.push_str(&format!("&scope={scope}"));
    }
    as_user(cluster, user).get(&path).await
}

/// A token for `user` with `scopes`; panics unless the service issues one.
async fn token(cluster: &TestCluster, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let response = token_response(cluster, user, scopes).await;
    assert_eq!(response.status(), StatusCode::OK, "a token for {user:?}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().unwrap().to_owned()
}

/// A JWT's header or claims (`part` 0 or 1), unverified.
fn jwt_part(token: &str, part: usize) -> serde_json::Value {
    let encoded = token.split('.').nth(part).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The `access` claims as `(type, name, actions)`, in order.
fn access(token: &str) -> Vec<(String, String, Vec<String>)> {
    jwt_part(token, 1)["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|claim| {
            (
                claim["type"].as_str().unwrap().to_owned(),
                claim["name"].as_str().unwrap().to_owned(),
                serde_json::from_value(claim["actions"].clone()).unwrap(),
            )
        })
        .collect()
}

fn claim(kind: &str, name: &str, actions: &[&str]) -> (String, String, Vec<String>) {
    (
        kind.to_owned(),
        name.to_owned(),
        actions.iter().map(|a| a.to_string()).collect(),
    )
}

/// 401 `UNAUTHORIZED` with the Bearer challenge naming this registry's
/// token endpoint.
async fn assert_bearer_challenge(
    cluster: &TestCluster,
    response: reqwest::Response,
    scope: Option<&str>,
    error: Option<&str>,
    what: &str,
) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let mut expected = format!(
        r#"Bearer realm="{}/token",service="{SERVICE}""#,
        cluster.base_url()
    );
    if let Some(scope) = scope {
        expected.push_str(&format!(r#",scope="{scope}""#));
    }
    if let Some(error) = error {
        expected.push_str(&format!(r#",error="{error}""#));
    }
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some(expected.as_str()),
        "{what}"
    );
    assert_eq!(error_code(response).await, "UNAUTHORIZED", "{what}");
}

pub(crate) fn token_counter(cluster: &TestCluster, result: &str) -> u64 {
    cluster.metric_sum(&format!(
        "registry_auth_token_requests_total{{result=\"{result}\"}}"
    ))
}

#[tokio::test]
async fn tokens_carry_what_the_rules_allow_and_work_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), |_| {});

    assert_bearer_challenge(
        &cluster,
        as_user(&cluster, None).get("/v2/").await,
        None,
        None,
        "anonymous /v2/",
    )
    .await;
    assert_bearer_challenge(
        &cluster,
        as_user(&cluster, None).manifest("team-a/app", "v1").await,
        Some("repository:team-a/app:pull"),
        None,
        "an anonymous pull of team-a",
    )
    .await;

    // Each scope is cut down to what the rules give alice there.
    let alice = token(
        &cluster,
        Some(ALICE),
        &[
            "repository:team-a/app:pull,push",
            "repository:library/alpine:pull,push",
            "repository:team-b/app:push,delete",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(
        access(&alice),
        [
            claim("repository", "team-a/app", &["pull", "push"]),
            claim("repository", "library/alpine", &["pull"]),
            claim("registry", "catalog", &["*"]),
        ]
    );
    let claims = jwt_part(&alice, 1);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        (&claims["iss"], &claims["aud"]),
        (&SERVICE.into(), &SERVICE.into())
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(jwt_part(&alice, 0)["alg"], "ES256");

    // A push through the balancer: on a cluster each request reaches the
    // next node, and each verifies the token another issued.
    let layer = vec![7u8; 50_000];
    let bearer = with_token(&cluster, &alice);
    assert_eq!(bearer.get("/v2/").await.status(), StatusCode::OK);
    let digest = bearer
        .push_image("team-a/app", "v1", b"{}", &[&layer])
        .await;
    for node in 0..cluster.len() {
        let pulled = cluster
            .client(node)
            .logged_in(None)
            .with_token(Some(alice.clone()));
        assert_eq!(
            pulled.manifest("team-a/app", &digest).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            pulled
                .blob_bytes("team-a/app", &registry_tests::oci::sha256(&layer))
                .await,
            layer,
            "node {node} serves the pull the token grants"
        );
    }
    let catalog: serde_json::Value = bearer.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team-a/app"]));

    // Outside its scopes the token is answered insufficient_scope, and
    // nothing is written.
    let manifest = registry_tests::oci::image_manifest(b"{}", &[]);
    let refused = bearer
        .put_manifest(
            "team-a/other",
            "v1",
            registry_tests::oci::OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_bearer_challenge(
        &cluster,
        refused,
        Some("repository:team-a/other:pull,push"),
        Some("insufficient_scope"),
        "a push the token does not grant",
    )
    .await;
    let refused = bearer
        .put_manifest(
            "library/alpine",
            "v1",
            registry_tests::oci::OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "pull only on library"
    );
    let ops = as_user(&cluster, Some(OPS));
    for repository in ["team-a/other", "library/alpine"] {
        assert_eq!(
            ops.tags(repository).await.status(),
            StatusCode::NOT_FOUND,
            "nothing written to {repository}"
        );
    }

    // bob asked for team-a: the token says nothing about it, and the
    // catalog is his to list as a login.
    let bob = token(
        &cluster,
        Some(BOB),
        &["repository:team-a/app:pull", "registry:catalog:*"],
    )
    .await;
    assert_eq!(access(&bob), [claim("registry", "catalog", &["*"])]);
    assert_bearer_challenge(
        &cluster,
        with_token(&cluster, &bob)
            .manifest("team-a/app", "v1")
            .await,
        Some("repository:team-a/app:pull"),
        Some("insufficient_scope"),
        "bob's token for team-a",
    )
    .await;
    let listed: serde_json::Value = with_token(&cluster, &bob)
        .get("/v2/_catalog")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["repositories"],
        serde_json::json!([]),
        "bob sees none of team-a"
    );

    // Anonymous tokens carry what anonymous callers may: pulls outside team-a.
    let anonymous = token(
        &cluster,
        None,
        &[
            "repository:library/alpine:pull,push",
            "repository:team-a/app:pull",
        ],
    )
    .await;
    assert_eq!(
        access(&anonymous),
        [claim("repository", "library/alpine", &["pull"])]
    );
    assert_eq!(jwt_part(&anonymous, 1)["sub"], "");

    // The password grant containerd tries first; other grants it falls back from.
    let posted = as_user(&cluster, None)
        .request(Method::POST, "/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username={}&password={}&service={SERVICE}\
             &client_id=containerd&scope=repository%3Ateam-a%2Fapp%3Apull+registry%3Acatalog%3A*",
            ALICE.0, ALICE.1
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let posted: serde_json::Value = posted.json().await.unwrap();
    let posted = posted["access_token"].as_str().unwrap();
    assert_eq!(
        access(posted),
        [
            claim("repository", "team-a/app", &["pull"]),
            claim("registry", "catalog", &["*"]),
        ]
    );
    let refresh = as_user(&cluster, None)
        .request(Method::POST, "/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=x&service=registry&client_id=c")
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::BAD_REQUEST);
    let refresh: serde_json::Value = refresh.json().await.unwrap();
    assert_eq!(refresh["error"], "unsupported_grant_type");

    // A wrong password gets no token, and a Basic challenge for the login.
    let issued = token_counter(&cluster, "issued");
    let wrong = token_response(
        &cluster,
        Some((ALICE.0, "wrong")),
        &["repository:team-a/app:pull"],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&wrong, "www-authenticate").as_deref(),
        Some(r#"Basic realm="registry""#)
    );
    assert_eq!(error_code(wrong).await, "UNAUTHORIZED");
    // Another service's token is not ours to issue.
    let other = as_user(&cluster, Some(ALICE))
        .get("/token?service=elsewhere&scope=repository:team-a/app:pull")
        .await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(other["error"], "invalid_request");
    assert_eq!(
        token_counter(&cluster, "issued"),
        issued,
        "refusals issue nothing"
    );
    assert!(token_counter(&cluster, "bad_credentials") >= 1);
    assert!(token_counter(&cluster, "invalid_request") >= 2);

    // Basic credentials keep working beside tokens.
    assert_eq!(
        as_user(&cluster, Some(ALICE))
            .manifest("team-a/app", "v1")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn expired_foreign_tampered_and_misaddressed_tokens_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), |_| {});
    let key = std::fs::read_to_string(dir.path().join("token-key.pem")).unwrap();
    // Signing with the registry's own key, its kid the RFC 7638 thumbprint
    // computed by the test: the registry must name its key the same way.
    let own = Signer::with_key(
        rcgen::KeyPair::from_pem(&key).unwrap(),
        None,
        SERVICE,
        SERVICE,
        KeyRef::Thumbprint,
    );
    let push = vec![claim("repository", "team-a/app", &["pull", "push"])];
    let good = own.sign(&own.claims("alice", push.clone()));
    let bearer = with_token(&cluster, &good);
    bearer
        .push_image("team-a/app", "v1", b"{}", &[b"first"])
        .await;

    let mut expired = own.claims("alice", push.clone());
    (expired.issued_at, expired.not_before, expired.expires) =
        (now() - 900, now() - 900, now() - 600);
    let mut other_service = own.claims("alice", push.clone());
    other_service.audience = "another-registry".to_owned();
    let mut other_issuer = own.claims("alice", push.clone());
    other_issuer.issuer = "someone-else".to_owned();
    let foreign = Signer::new(None, SERVICE, SERVICE, KeyRef::Thumbprint);
    let tampered = {
        // alice's token with its claims swapped for more, the signature kept.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims = jwt_part(&good, 1);
        claims["access"][0]["name"] = "team-b/app".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap());
        parts.join(".")
    };
    let bad = [
        ("expired", own.sign(&expired)),
        ("for another service", own.sign(&other_service)),
        ("from another issuer", own.sign(&other_issuer)),
        (
            "signed by an untrusted key",
            foreign.sign(&foreign.claims("alice", push.clone())),
        ),
        ("tampered", tampered),
        ("not a JWT", "not-a-token".to_owned()),
    ];
    let manifest = registry_tests::oci::image_manifest(b"{\"bad\":1}", &[]);
    for (what, token) in &bad {
        let client = with_token(&cluster, token);
        let refused = client
            .put_manifest(
                "team-a/app",
                "v1",
                registry_tests::oci::OCI_MANIFEST,
                &manifest,
            )
            .await;
        assert_bearer_challenge(
            &cluster,
            refused,
            Some("repository:team-a/app:pull,push"),
            Some("invalid_token"),
            what,
        )
        .await;
        let upload = client
            .request(Method::POST, "/v2/team-a/app/blobs/uploads/")
            .send()
            .await
            .unwrap();
        assert_eq!(
            upload.status(),
            StatusCode::UNAUTHORIZED,
            "{what}: no upload starts"
        );
    }
    let tags: serde_json::Value = bearer.tags("team-a/app").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let current = bearer.manifest("team-a/app", "v1").await;
    assert_eq!(
        registry_tests::oci::bytes(current).await,
        registry_tests::oci::image_manifest(b"{}", &[b"first"]),
        "v1 is still the good token's push"
    );
    assert_eq!(
        crate::auth::auth_counter(&cluster, "bad_credentials"),
        2 * bad.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_clients_follow_the_challenge_to_the_built_in_token_service_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("server"));
    let certs = dir.path().join("certs.d");
    let ca_file = ca.write(&certs);
    let cluster = start(dir.path(), move |config| {
        config.tls = Some(node::tls::TlsSettings::new(&certificate, &key));
    });
    let host = cluster.api_addr(0).to_string();
    let issued_before = token_counter(&cluster, "issued");

    let source = dir.path().join("layout");
    let layers = vec![vec![5u8; 300_000], vec![6u8; 20_000]];
    let manifest_digest = crate::skopeo::write_layout(&source, "v1", &layers);
    let expected_digest = manifest_digest.clone();
    let work = dir.path().to_owned();
    let (certs_arg, image_host) = (certs.display().to_string(), host.clone());
    tokio::task::spawn_blocking(move || {
        let host = image_host;
        let src = format!("oci:{}:v1", source.display());
        let image = format!("docker://{host}/team-a/skopeo:v1");
        let alice = format!("{}:{}", ALICE.0, ALICE.1);
        crate::skopeo::skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            &certs_arg,
            "--dest-creds",
            &alice,
            &src,
            &image,
        ]);
        let inspected = crate::skopeo::skopeo(&[
            "inspect",
            "--cert-dir",
            &certs_arg,
            "--creds",
            &alice,
            &image,
        ]);
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Digest"], manifest_digest.as_str());
        let bob = format!("{}:{}", BOB.0, BOB.1);
        let denied = crate::skopeo::skopeo_output(&[
            "copy",
            "--dest-cert-dir",
            &certs_arg,
            "--dest-creds",
            &bob,
            &src,
            &format!("docker://{host}/team-a/bobs:v1"),
        ]);
        assert!(
            !denied.status.success(),
            "bob's token grants no push to team-a"
        );

        // podman login fetches a token with the credentials, as docker does.
        let authfile = work.join("auth.json");
        let login = crate::auth::podman_login(&work, &certs_arg, &authfile, ALICE, &host);
        assert!(
            login.status.success(),
            "podman login: {}",
            String::from_utf8_lossy(&login.stderr)
        );
        let wrong =
            crate::auth::podman_login(&work, &certs_arg, &authfile, (ALICE.0, "wrong"), &host);
        assert!(
            !wrong.status.success(),
            "podman login with a wrong password fails"
        );
        // What podman login stored is what skopeo then logs in with.
        crate::skopeo::skopeo(&[
            "copy",
            "--dest-cert-dir",
            &certs_arg,
            "--dest-authfile",
            &authfile.display().to_string(),
            &src,
            &format!("docker://{host}/team-a/podman:v1"),
        ]);
    })
    .await
    .unwrap();

    // helm logs in and pushes a chart, trusting the CA by file.
    let (helm_host, ca_arg) = (host.clone(), ca_file.display().to_string());
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let home = work.path();
        crate::helm::helm(home, &["create", "demo"]);
        crate::helm::helm(home, &["package", "demo", "--destination", "packaged"]);
        crate::helm::helm(
            home,
            &[
                "registry",
                "login",
                &helm_host,
                "--ca-file",
                &ca_arg,
                "-u",
                ALICE.0,
                "-p",
                ALICE.1,
            ],
        );
        let archive = home.join("packaged/demo-0.1.0.tgz");
        crate::helm::helm(
            home,
            &[
                "push",
                archive.to_str().unwrap(),
                &format!("oci://{helm_host}/team-a/charts"),
                "--ca-file",
                &ca_arg,
            ],
        );
    })
    .await
    .unwrap();

    // The Rust oci-client crate with Basic credentials and the CA.
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Https,
        extra_root_certificates: vec![oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data: ca.pem().as_bytes().to_vec(),
        }],
        ..Default::default()
    });
    let reference: oci_client::Reference = format!("{host}/team-a/skopeo:v1").parse().unwrap();
    let auth = oci_client::secrets::RegistryAuth::Basic(ALICE.0.to_owned(), ALICE.1.to_owned());
    let (_, digest) = client
        .pull_manifest(&reference, &auth)
        .await
        .expect("oci-client pulls with a token");
    assert_eq!(digest, expected_digest);

    let ops = Client::with_http(
        cluster.node_url(0).replace("http://", "https://"),
        ca.client_builder().build().unwrap(),
    )
    .logged_in(Some(OPS));
    for repository in ["team-a/podman", "team-a/charts/demo"] {
        assert_eq!(
            ops.tags(repository).await.status(),
            StatusCode::OK,
            "{repository} was pushed"
        );
    }
    assert_eq!(
        ops.tags("team-a/bobs").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        token_counter(&cluster, "issued") > issued_before + 4,
        "the clients fetched tokens from the registry"
    );
}
