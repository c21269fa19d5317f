//! Logins and access rules: htpasswd users, the most specific rule
//! deciding, admins, anonymous pulls; refusals answered as clients expect
//! (401 with a Basic challenge, 403 `DENIED`) and leaving state unchanged;
//! the catalog filtered; the file re-read; real clients logging in through
//! TLS.

use api::auth::{AccessRule, Actions, AuthConfig, HtpasswdConfig};
use registry_tests::oci::{self, error_code, header, sha256, Client};
use registry_tests::tls::TestCa;
use registry_tests::{cluster_size_under_test, eventually, write_htpasswd, TestCluster};
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::time::Duration;

pub(crate) const ALICE: (&str, &str) = ("alice", "alice-password");
pub(crate) const CI_A: (&str, &str) = ("ci-a", "ci-a-password");
pub(crate) const BOB: (&str, &str) = ("bob", "bob-password");
pub(crate) const OPS: (&str, &str) = ("ops", "ops-password");

fn actions(names: &[&str]) -> Actions {
    Actions::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
}

/// The issue's example: team-a for its users, scratch for any login,
/// pulls for everyone elsewhere, ops everywhere.
fn rules() -> Vec<AccessRule> {
    let rule = |repositories: &str,
                users: &[&str],
                granted: &[&str],
                authenticated: &[&str],
                anonymous: &[&str]| AccessRule {
        repositories: vec![repositories.to_owned()],
        users: users.iter().map(|u| u.to_string()).collect(),
        actions: actions(granted),
        authenticated: actions(authenticated),
        anonymous: actions(anonymous),
    };
    vec![
        rule("team-a/**", &["alice", "ci-a"], &["pull", "push"], &[], &[]),
        rule("scratch/**", &[], &[], &["pull", "push"], &[]),
        rule("**", &[], &[], &[], &["pull"]),
    ]
}

pub(crate) fn start(dir: &Path, adjust: impl Fn(&mut node::NodeConfig)) -> TestCluster {
    let htpasswd = dir.join("htpasswd");
    write_htpasswd(&htpasswd, &[ALICE, CI_A, BOB, OPS]);
    let auth = AuthConfig::Htpasswd(HtpasswdConfig {
        realm: "registry".to_owned(),
        path: htpasswd,
        rules: rules(),
        admins: vec!["ops".to_owned()],
        token_service: None,
    });
    TestCluster::start(cluster_size_under_test(), None, move |config| {
        config.api.delete_enabled = true;
        config.api.redirect = false;
        config.auth = Some(auth.clone());
        adjust(config);
    })
}

fn as_user(cluster: &TestCluster, user: Option<(&str, &str)>) -> Client {
    cluster.balanced_client().logged_in(user)
}

/// A refusal as clients expect it: the status, the code, and for a 401
/// the challenge and the API version header.
async fn assert_refused(response: reqwest::Response, status: StatusCode, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(
        header(&response, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let challenge = header(&response, "www-authenticate");
    let code = error_code(response).await;
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            challenge.as_deref(),
            Some(r#"Basic realm="registry""#),
            "{what}"
        );
        assert_eq!(code, "UNAUTHORIZED", "{what}");
    } else {
        assert_eq!(challenge, None, "{what}");
        assert_eq!(code, "DENIED", "{what}");
    }
}

/// `podman login` to HOST as `(user, password)`, trusting the CAs in
/// `certs`, storing the login in `authfile`; podman's storage under `work`.
pub(crate) fn podman_login(
    work: &Path,
    certs: &str,
    authfile: &Path,
    (user, password): (&str, &str),
    host: &str,
) -> std::process::Output {
    std::process::Command::new("podman")
        .arg("--root")
        .arg(work.join("podman/root"))
        .arg("--runroot")
        .arg(work.join("podman/run"))
        .args(["--storage-driver", "vfs", "login", "--cert-dir", certs])
        .arg("--authfile")
        .arg(authfile)
        .args(["-u", user, "-p", password, host])
        .output()
        .expect("podman is installed")
}

pub(crate) fn auth_counter(cluster: &TestCluster, result: &str) -> u64 {
    cluster.metric_sum(&format!(
        "registry_auth_requests_total{{result=\"{result}\"}}"
    ))
}

#[tokio::test]
async fn each_user_does_what_the_most_specific_rule_allows_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), |_| {});
    let anonymous = as_user(&cluster, None);
    let (alice, bob, ops) = (
        as_user(&cluster, Some(ALICE)),
        as_user(&cluster, Some(BOB)),
        as_user(&cluster, Some(OPS)),
    );

    // `/v2/` checks the login: docker login and every client's ping rely on it.
    assert_refused(
        anonymous.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "anonymous /v2/",
    )
    .await;
    assert_eq!(alice.get("/v2/").await.status(), StatusCode::OK);
    let wrong = as_user(&cluster, Some(("alice", "not-her-password")));
    assert_refused(
        wrong.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "a wrong password",
    )
    .await;
    let unknown = as_user(&cluster, Some(("mallory", "alice-password")));
    assert_refused(
        unknown.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "an unknown user",
    )
    .await;

    let layer = b"team-a's layer".to_vec();
    let digest = alice
        .push_image("team-a/app", "v1", b"{\"team\":\"a\"}", &[&layer])
        .await;
    as_user(&cluster, Some(CI_A))
        .push_image("team-a/ci", "v1", b"{}", &[b"ci layer"])
        .await;
    let public = ops
        .push_image(
            "library/alpine",
            "3",
            b"{\"os\":\"linux\"}",
            &[b"alpine layer"],
        )
        .await;

    // bob logged in, but team-a/** decides for team-a and does not name him.
    let secret = b"bob's blob".to_vec();
    let refused = bob
        .request(
            Method::POST,
            &format!("/v2/team-a/app/blobs/uploads/?digest={}", sha256(&secret)),
        )
        .body(secret.clone())
        .send()
        .await
        .unwrap();
    assert_refused(
        refused,
        StatusCode::FORBIDDEN,
        "bob pushes a blob to team-a",
    )
    .await;
    let manifest = oci::image_manifest(b"{}", &[]);
    let refused = bob
        .put_manifest("team-a/app", "v1", oci::OCI_MANIFEST, &manifest)
        .await;
    assert_refused(refused, StatusCode::FORBIDDEN, "bob moves team-a's tag").await;
    assert_refused(
        bob.manifest("team-a/app", "v1").await,
        StatusCode::FORBIDDEN,
        "bob pulls team-a",
    )
    .await;
    assert_eq!(
        alice
            .head(&format!("/v2/team-a/app/blobs/{}", sha256(&secret)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let pulled = alice.manifest("team-a/app", "v1").await;
    assert_eq!(
        sha256(&oci::bytes(pulled).await),
        digest,
        "the tag did not move"
    );

    // Anonymous callers pull where `**` lets them, and are challenged elsewhere.
    assert_refused(
        anonymous.manifest("team-a/app", "v1").await,
        StatusCode::UNAUTHORIZED,
        "anonymous pull of team-a",
    )
    .await;
    let pulled = anonymous.manifest("library/alpine", "3").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(sha256(&oci::bytes(pulled).await), public);
    assert_eq!(
        anonymous
            .blob_bytes("library/alpine", &sha256(b"alpine layer"))
            .await,
        b"alpine layer"
    );
    let refused = anonymous
        .request(Method::POST, "/v2/library/alpine/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_refused(refused, StatusCode::UNAUTHORIZED, "anonymous push").await;
    let refused = alice
        .request(Method::POST, "/v2/library/alpine/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_refused(
        refused,
        StatusCode::FORBIDDEN,
        "alice pushes outside team-a",
    )
    .await;

    // Any login may use scratch; a mount needs the right to read its source.
    let from_team_a = format!(
        "/v2/scratch/bob/blobs/uploads/?mount={}&from=team-a/app",
        sha256(&layer)
    );
    let started = bob
        .request(Method::POST, &from_team_a)
        .send()
        .await
        .unwrap();
    assert_eq!(
        started.status(),
        StatusCode::ACCEPTED,
        "bob may not read team-a: a fresh upload, no mount"
    );
    assert_eq!(
        bob.head(&format!("/v2/scratch/bob/blobs/{}", sha256(&layer)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let mount = format!(
        "/v2/scratch/alice/blobs/uploads/?mount={}&from=team-a/app",
        sha256(&layer)
    );
    assert_eq!(
        alice
            .request(Method::POST, &mount)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    alice
        .push_image("scratch/alice", "v1", b"{\"alice\":1}", &[&layer])
        .await;
    bob.push_image("scratch/bob", "v1", b"{\"bob\":1}", &[b"bob's own"])
        .await;

    // The catalog lists what the caller may pull.
    let catalog = |client: Client| async move {
        let response = client.get("/v2/_catalog").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = response.json().await.unwrap();
        body["repositories"].clone()
    };
    assert_eq!(
        catalog(anonymous.clone()).await,
        serde_json::json!(["library/alpine"])
    );
    assert_eq!(
        catalog(alice.clone()).await,
        serde_json::json!([
            "library/alpine",
            "scratch/alice",
            "scratch/bob",
            "team-a/app",
            "team-a/ci"
        ])
    );
    assert_eq!(
        catalog(bob.clone()).await,
        serde_json::json!(["library/alpine", "scratch/alice", "scratch/bob"])
    );
    let paged = bob.get("/v2/_catalog?n=1&last=library/alpine").await;
    let body: serde_json::Value = paged.json().await.unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["scratch/alice"]));

    // Deleting is for admins here: alice's refusal leaves the manifest.
    let delete = format!("/v2/team-a/app/manifests/{digest}");
    assert_refused(
        alice.delete(&delete).await,
        StatusCode::FORBIDDEN,
        "alice deletes",
    )
    .await;
    assert_eq!(
        alice.manifest("team-a/app", &digest).await.status(),
        StatusCode::OK
    );
    assert_eq!(ops.delete(&delete).await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        alice.manifest("team-a/app", &digest).await.status(),
        StatusCode::NOT_FOUND
    );

    assert_eq!(auth_counter(&cluster, "denied"), 5);
    assert_eq!(auth_counter(&cluster, "bad_credentials"), 2);
    assert_eq!(auth_counter(&cluster, "unauthenticated"), 3);
}

#[tokio::test]
async fn a_changed_htpasswd_file_is_read_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), |_| {});
    let carol = as_user(&cluster, Some(("carol", "carol-password")));
    assert_refused(
        carol.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "carol before she is added",
    )
    .await;
    write_htpasswd(
        &dir.path().join("htpasswd"),
        &[ALICE, ("carol", "carol-password")],
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            // Every node (the balanced client's next request reaches the next).
            let mut all = true;
            for _ in 0..cluster.len() {
                all &= carol.get("/v2/").await.status() == StatusCode::OK;
            }
            all
        })
        .await,
        "carol can log in once the file has her"
    );
    let bob = as_user(&cluster, Some(BOB));
    assert_refused(
        bob.get("/v2/").await,
        StatusCode::UNAUTHORIZED,
        "bob, removed from the file",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_and_podman_log_in_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("server"));
    let certs = dir.path().join("certs.d");
    ca.write(&certs);
    let cluster = start(dir.path(), move |config| {
        config.tls = Some(node::tls::TlsSettings::new(&certificate, &key));
    });
    let host = cluster.api_addr(0).to_string();
    let source = dir.path().join("layout");
    let layers = vec![vec![3u8; 400_000], vec![4u8; 100_000]];
    let manifest_digest = crate::skopeo::write_layout(&source, "v1", &layers);
    let (work, certs) = (dir.path().to_owned(), certs.display().to_string());
    tokio::task::spawn_blocking(move || {
        let src = format!("oci:{}:v1", source.display());
        let image = format!("docker://{host}/team-a/skopeo:v1");
        let alice = format!("{}:{}", ALICE.0, ALICE.1);
        crate::skopeo::skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            &alice,
            &src,
            &image,
        ]);
        let inspected =
            crate::skopeo::skopeo(&["inspect", "--cert-dir", &certs, "--creds", &alice, &image]);
        let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Digest"], manifest_digest.as_str());

        let bob = format!("{}:{}", BOB.0, BOB.1);
        let denied = crate::skopeo::skopeo_output(&[
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            &bob,
            &src,
            &image,
        ]);
        assert!(!denied.status.success(), "bob may not push to team-a");
        let stderr = String::from_utf8_lossy(&denied.stderr);
        // Its first request is a HEAD, whose 403 has no body to carry DENIED.
        assert!(
            stderr.contains("403 (Forbidden)") || stderr.contains("denied"),
            "skopeo reports the refusal: {stderr}"
        );
        let wrong = format!("{}:wrong", ALICE.0);
        let refused = crate::skopeo::skopeo_output(&[
            "inspect",
            "--cert-dir",
            &certs,
            "--creds",
            &wrong,
            &image,
        ]);
        assert!(!refused.status.success(), "a wrong password is refused");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("unauthorized") || stderr.contains("authentication required"),
            "{stderr}"
        );

        // podman login checks the credentials against /v2/ and stores them;
        // skopeo then works from the stored login.
        let authfile = work.join("auth.json");
        let login = podman_login(&work, &certs, &authfile, ALICE, &host);
        assert!(
            login.status.success(),
            "podman login: {}",
            String::from_utf8_lossy(&login.stderr)
        );
        let failed = podman_login(
            &work,
            &certs,
            &work.join("other.json"),
            (ALICE.0, "wrong"),
            &host,
        );
        assert!(
            !failed.status.success(),
            "podman login with a wrong password fails"
        );
        crate::skopeo::skopeo(&[
            "inspect",
            "--cert-dir",
            &certs,
            "--authfile",
            &authfile.display().to_string(),
            &image,
        ]);
    })
    .await
    .unwrap();
}
