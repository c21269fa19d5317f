//! helm, a real client for OCI charts: package a chart, `helm push` it,
//! `helm pull` it back and compare the archive byte for byte.

use registry_tests::TestNode;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helm binary: `HELM_BIN`, or where scripts/setup installs it.
pub(crate) fn helm_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HELM_BIN") {
        return bin.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("registry-tools/helm")
}

pub(crate) fn helm(home: &Path, args: &[&str]) -> String {
    let output = Command::new(helm_bin())
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(home)
        .args(args)
        .output()
        .expect("helm is installed (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_pushes_and_pulls_an_oci_chart() {
    let node = TestNode::start();
    let host = node.host();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let home = work.path();
        helm(home, &["create", "demo"]);
        helm(home, &["package", "demo", "--destination", "packaged"]);
        // Under TEST_AUTH helm logs in first, as against any registry with
        // logins; it keeps the login in HELM_CONFIG_HOME.
        if let Some((user, password)) = registry_tests::credentials_under_test() {
            let login = [
                "registry",
                "login",
                &host,
                "--plain-http",
                "-u",
                &user,
                "-p",
                &password,
            ];
            helm(home, &login);
        }
        let archive = home.join("packaged/demo-0.1.0.tgz");
        let pushed = std::fs::read(&archive).unwrap();
        helm(
            home,
            &[
                "push",
                archive.to_str().unwrap(),
                &format!("oci://{host}/charts"),
                "--plain-http",
            ],
        );
        std::fs::create_dir(home.join("pulled")).unwrap();
        helm(
            home,
            &[
                "pull",
                &format!("oci://{host}/charts/demo"),
                "--version",
                "0.1.0",
                "--plain-http",
                "--destination",
                "pulled",
            ],
        );
        let pulled = std::fs::read(home.join("pulled/demo-0.1.0.tgz")).unwrap();
        assert!(
            pulled == pushed,
            "the chart archive comes back byte for byte"
        );
    })
    .await
    .unwrap();
    let tags: serde_json::Value = node
        .client()
        .tags("charts/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["0.1.0"]));
}
