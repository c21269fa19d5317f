//! TLS on the OCI API: clients that trust the test's CA speak HTTP/2 and
//! HTTP/1.1 to it, skopeo copies through it, `minimumtls` and mutual TLS
//! refuse at the handshake, and replaced certificate files are served to
//! new connections without a restart.

use crate::skopeo::{layout_blobs, skopeo, write_layout};
use node::tls::{ClientAuth, MinimumTls, TlsSettings};
use registry_tests::cluster::http_get;
use registry_tests::oci::{self, sha256};
use registry_tests::tls::{Pair, TestCa};
use registry_tests::{eventually, TestCluster};
use std::path::Path;
use std::time::Duration;

/// One node serving its API with `tls`.
fn start(tls: TlsSettings) -> TestCluster {
    TestCluster::start(1, None, move |config| {
        config.api.delete_enabled = true;
        config.api.redirect = false;
        config.tls = Some(tls.clone());
    })
}

fn https(cluster: &TestCluster) -> String {
    format!("https://{}", cluster.api_addr(0))
}

async fn get_v2(http: &reqwest::Client, base: &str) -> Result<reqwest::Response, reqwest::Error> {
    http.get(format!("{base}/v2/")).send().await
}

#[tokio::test]
async fn clients_that_trust_the_ca_push_and_pull_over_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("server"));
    let cluster = start(TlsSettings::new(certificate, key));
    let base = https(&cluster);

    let http2 = ca.client_builder().build().unwrap();
    let response = get_v2(&http2, &base).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN offers h2"
    );
    let http1 = ca.client_builder().http1_only().build().unwrap();
    let response = get_v2(&http1, &base).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);

    for (name, http) in [("h2", http2), ("h1", http1)] {
        let client = oci::Client::with_http(base.clone(), http);
        let repo = format!("tls/{name}");
        let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let config = format!("{{\"over\":\"{name}\"}}").into_bytes();
        let digest = client.push_image(&repo, "v1", &config, &[&layer]).await;
        let manifest = client.manifest(&repo, "v1").await;
        assert_eq!(manifest.status(), 200);
        assert_eq!(sha256(&oci::bytes(manifest).await), digest);
        assert_eq!(client.blob_bytes(&repo, &sha256(&layer)).await, layer);
    }

    let stranger = TestCa::new("another CA").client_builder().build().unwrap();
    let refused = get_v2(&stranger, &base).await;
    assert!(
        refused.is_err(),
        "a client that does not trust the CA gets no answer: {refused:?}"
    );
    let plain = reqwest::get(format!("http://{}/v2/", cluster.api_addr(0))).await;
    assert!(
        !plain.as_ref().is_ok_and(|r| r.status().is_success()),
        "plain HTTP on the TLS port is not served: {plain:?}"
    );
}

#[tokio::test]
async fn skopeo_copies_through_tls_with_the_ca_in_its_certificate_directory() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("server"));
    let cert_dir = dir.path().join("certs.d");
    ca.write(&cert_dir);
    let cluster = start(TlsSettings::new(certificate, key));

    let source = dir.path().join("source");
    let layers: Vec<Vec<u8>> = (0..3u32)
        .map(|i| vec![i as u8 + 7; 300_000 * (i as usize + 1)])
        .collect();
    let manifest_digest = write_layout(&source, "v1", &layers);
    let image = format!("docker://{}/tls/skopeo:v1", cluster.api_addr(0));
    let copy = dir.path().join("copy");
    let (src, dst, certs) = (
        format!("oci:{}:v1", source.display()),
        format!("oci:{}:v1", copy.display()),
        cert_dir.display().to_string(),
    );
    let untrusted = tokio::task::spawn_blocking(move || {
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            &certs,
            &src,
            &image,
        ]);
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            &certs,
            &image,
            &dst,
        ]);
        crate::skopeo::skopeo_output(&["inspect", &image])
    })
    .await
    .unwrap();
    assert_eq!(
        layout_blobs(&copy),
        layout_blobs(&source),
        "every blob comes back byte for byte"
    );
    let client = oci::Client::with_http(https(&cluster), ca.client_builder().build().unwrap());
    let manifest = client.manifest("tls/skopeo", "v1").await;
    assert_eq!(sha256(&oci::bytes(manifest).await), manifest_digest);
    assert!(
        !untrusted.status.success(),
        "without the CA skopeo refuses the certificate"
    );
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("certificate"), "skopeo says why: {stderr}");
}

#[tokio::test]
async fn minimum_tls13_refuses_a_client_that_stops_at_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (certificate, key) = ca.server("registry").write(dir.path());
    let mut tls = TlsSettings::new(certificate, key);
    tls.minimum = MinimumTls::Tls13;
    let cluster = start(tls);
    let base = https(&cluster);

    let tls12 = ca
        .client_builder()
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let refused = get_v2(&tls12, &base).await;
    assert!(refused.is_err(), "a TLS 1.2 client is refused: {refused:?}");
    let tls13 = ca
        .client_builder()
        .tls_version_min(reqwest::tls::Version::TLS_1_3)
        .build()
        .unwrap();
    assert_eq!(get_v2(&tls13, &base).await.unwrap().status(), 200);
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_cas() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("server CA");
    let clients_ca = TestCa::new("clients CA");
    let (certificate, key) = ca.server("registry").write(dir.path());
    let client_cas = clients_ca.write(&dir.path().join("clients"));
    let mut required = TlsSettings::new(&certificate, &key);
    required.client_cas = vec![client_cas.clone()];
    let mut if_given = required.clone();
    if_given.client_auth = ClientAuth::IfGiven;
    let (required, if_given) = (start(required), start(if_given));

    let anonymous = ca.client_builder().build().unwrap();
    let good = ca
        .client_builder()
        .identity(clients_ca.client("ci").identity())
        .build()
        .unwrap();
    let forged = TestCa::new("clients CA");
    let foreign = ca
        .client_builder()
        .identity(forged.client("ci").identity())
        .build()
        .unwrap();

    let base = https(&required);
    let refused = get_v2(&anonymous, &base).await;
    assert!(
        refused.is_err(),
        "no client certificate, no connection: {refused:?}"
    );
    let refused = get_v2(&foreign, &base).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA (same name) is refused: {refused:?}"
    );
    assert_eq!(get_v2(&good, &base).await.unwrap().status(), 200);
    let client = oci::Client::with_http(base, good.clone());
    let layer = b"only for holders of a client certificate".to_vec();
    client.push_image("mtls/app", "v1", b"{}", &[&layer]).await;
    assert_eq!(client.blob_bytes("mtls/app", &sha256(&layer)).await, layer);

    let base = https(&if_given);
    assert_eq!(
        get_v2(&anonymous, &base).await.unwrap().status(),
        200,
        "no certificate is allowed"
    );
    assert_eq!(get_v2(&good, &base).await.unwrap().status(), 200);
    let refused = get_v2(&foreign, &base).await;
    assert!(
        refused.is_err(),
        "a certificate that is sent must verify: {refused:?}"
    );
}

/// A directory laid out as the kubelet mounts a Secret: the files are
/// symlinks through `..data`, which is swapped atomically to a new
/// timestamped directory on every update.
struct MountedSecret {
    dir: std::path::PathBuf,
    version: u32,
}

impl MountedSecret {
    fn new(dir: &Path, pair: &Pair) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut secret = MountedSecret {
            dir: dir.to_owned(),
            version: 0,
        };
        secret.update(pair);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        secret
    }

    fn update(&mut self, pair: &Pair) {
        self.version += 1;
        let version = format!("..2026_12_02_{:02}", self.version);
        pair.write(&self.dir.join(&version));
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

/// The certificate a new connection is served.
async fn served_certificate(ca: &TestCa, base: &str) -> Vec<u8> {
    let http = ca
        .client_builder()
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = get_v2(&http, base).await.unwrap();
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    info.peer_certificate()
        .expect("a peer certificate")
        .to_vec()
}

fn refused_reloads(cluster: &TestCluster) -> u64 {
    cluster.metric_sum(
        r#"registry_tls_certificate_reloads_total{listener="http.tls",result="refused"}"#,
    )
}

#[tokio::test]
async fn a_replaced_secret_is_served_to_new_connections_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("registry test CA");
    let (first, second) = (ca.server("first"), ca.server("second"));
    let mut secret = MountedSecret::new(dir.path(), &first);
    let cluster = start(TlsSettings::new(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    ));
    let base = https(&cluster);
    assert_eq!(served_certificate(&ca, &base).await, first.der());

    // An open connection keeps working across the swap; new ones get the new pair.
    let pooled = oci::Client::with_http(base.clone(), ca.client_builder().build().unwrap());
    pooled
        .push_image("reload/app", "v1", b"{}", &[b"before the swap"])
        .await;
    secret.update(&second);
    assert!(
        eventually(Duration::from_secs(20), || async {
            served_certificate(&ca, &base).await == second.der()
        })
        .await,
        "new connections get the replaced certificate without a restart"
    );
    assert_eq!(
        pooled
            .blob_bytes("reload/app", &sha256(b"before the swap"))
            .await,
        b"before the swap"
    );

    // A certificate with another pair's key does not load: it is counted
    // and logged, and the pair that works keeps being served.
    let broken = Pair {
        certificate: ca.server("third").certificate,
        key: first.key.clone(),
    };
    let refused_before = refused_reloads(&cluster);
    secret.update(&broken);
    assert!(
        eventually(Duration::from_secs(20), || async {
            refused_reloads(&cluster) > refused_before
        })
        .await,
        "the broken pair is refused"
    );
    assert_eq!(served_certificate(&ca, &base).await, second.der());
    let garbage = Pair {
        certificate: "not a certificate".to_owned(),
        key: "not a key".to_owned(),
    };
    let refused_before = refused_reloads(&cluster);
    secret.update(&garbage);
    assert!(
        eventually(Duration::from_secs(20), || async {
            refused_reloads(&cluster) > refused_before
        })
        .await
    );
    assert_eq!(served_certificate(&ca, &base).await, second.der());
}

/// `cluster.tls`: three nodes elect a leader, replicate and forward over
/// mutual TLS; the internal listener refuses plain HTTP, clients without a
/// certificate or with one from another CA at the handshake, and a good
/// certificate without the cluster secret.
#[tokio::test]
async fn nodes_speak_mutual_tls_and_the_internal_listener_refuses_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    let (certificate, key) = ca.node("registry-node").write(&dir.path().join("node"));
    let cluster_ca = ca.write(&dir.path().join("ca"));
    let mut internal = TlsSettings::new(&certificate, &key);
    internal.client_cas = vec![cluster_ca];
    let cluster = TestCluster::start(3, None, move |config| {
        config.api.redirect = false;
        config.internal_tls = Some(internal.clone());
    });

    // Uploads started on one node and continued on another are forwarded
    // to their owner over the internal listener.
    let client = cluster.balanced_client().logged_in(None);
    let layer = vec![3u8; 3 * 1024 * 1024];
    let digest = sha256(&layer);
    client
        .push_blob_chunked("internal/app", &layer, 1024 * 1024)
        .await;
    client
        .push_image("internal/app", "v1", b"{}", &[&layer])
        .await;
    for node in 0..cluster.len() {
        let pulled = cluster.client(node).logged_in(None);
        assert_eq!(
            pulled.blob_bytes("internal/app", &digest).await,
            layer,
            "node {node}"
        );
    }

    let internal = format!("https://{}", cluster.internal_addr(0).unwrap());
    let info = |http: reqwest::Client, secret: Option<&'static str>| {
        let url = format!("{internal}{}", raft::rpc::path::INFO);
        async move {
            let mut request = http.post(url);
            if let Some(secret) = secret {
                request = request.header(raft::rpc::SECRET_HEADER, secret);
            }
            request.send().await
        }
    };
    let secret = Some(registry_tests::cluster::SECRET);
    let plain = http_get(cluster.internal_addr(0).unwrap(), raft::rpc::path::INFO);
    assert!(plain.is_none(), "plain HTTP is not served: {plain:?}");
    let anonymous = ca.client_builder().build().unwrap();
    let refused = info(anonymous, secret).await;
    assert!(refused.is_err(), "no certificate: {refused:?}");
    let forged = TestCa::new("cluster CA");
    let foreign = ca
        .client_builder()
        .identity(forged.node("registry-node").identity())
        .build()
        .unwrap();
    let refused = info(foreign, secret).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: {refused:?}"
    );
    let member = || {
        ca.client_builder()
            .identity(ca.node("registry-node").identity())
            .build()
            .unwrap()
    };
    let without_secret = info(member(), None).await.unwrap();
    assert_eq!(without_secret.status(), 401, "the secret is still needed");
    let allowed = info(member(), secret).await.unwrap();
    assert_eq!(allowed.status(), 200, "a node's certificate and the secret");

    let (_, metrics) = http_get(cluster.debug_addr(0), "/metrics").expect("metrics");
    let expiry = metrics.lines().find_map(|line| {
        line.strip_prefix(
            r#"registry_tls_certificate_expiry_timestamp_seconds{listener="cluster.tls"} "#,
        )
    });
    // rcgen's default notAfter, 4096-01-01T00:00:00Z.
    assert_eq!(
        expiry,
        Some("67090118400"),
        "the served certificate's expiry"
    );
}

/// `http.debug.tls`: `/metrics`, the probes and the admin commands over
/// HTTPS; plain HTTP is not served there, and `registry readonly` reaches
/// it with `--cacert` and fails without.
#[tokio::test]
async fn the_debug_listener_serves_https_to_the_probes_and_the_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("debug CA");
    let (certificate, key) = ca.server("registry").write(&dir.path().join("debug"));
    let ca_file = ca.write(&dir.path().join("ca"));
    let debug_tls = TlsSettings::new(&certificate, &key);
    let cluster = TestCluster::launch(1, None, move |config| {
        config.debug_tls = Some(debug_tls.clone());
    });
    let debug = cluster.debug_addr(0);
    let https = ca.client_builder().build().unwrap();
    let readyz = format!("https://{debug}/readyz");
    let ready = eventually(Duration::from_secs(60), || {
        let (https, readyz) = (https.clone(), readyz.clone());
        async move {
            https
                .get(&readyz)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    assert!(ready, "/readyz over HTTPS");
    let metrics = https
        .get(format!("https://{debug}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"registry_tls_certificate_expiry_timestamp_seconds{listener="http.debug.tls"}"#
        ),
        "{metrics}"
    );
    assert!(http_get(debug, "/readyz").is_none(), "no plain HTTP");

    let registry = crate::docker::registry_binary();
    let cli = |cacert: bool| {
        let mut command = std::process::Command::new(&registry);
        command.args(["readonly", "status", "--addr", &debug.to_string()]);
        if cacert {
            command.arg("--cacert").arg(&ca_file);
        }
        command
    };
    let (mut with_ca, mut without) = (cli(true), cli(false));
    let (with_ca, without) =
        tokio::task::spawn_blocking(move || (with_ca.output().unwrap(), without.output().unwrap()))
            .await
            .unwrap();
    assert!(
        with_ca.status.success(),
        "{}",
        String::from_utf8_lossy(&with_ca.stderr)
    );
    assert!(String::from_utf8_lossy(&with_ca.stdout).starts_with("read-only: off"));
    assert!(
        !without.status.success(),
        "plain HTTP to a TLS listener fails"
    );
}
