//! podman and buildah, real clients: build an image, push it in OCI and in
//! Docker schema 2 format, remove it locally, pull it back.

use registry_tests::TestNode;
use std::path::Path;
use std::process::Command;

/// Runs podman or buildah with storage private to this test.
fn tool(program: &str, store: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pushes_and_pulls_images_built_by_buildah() {
    let node = TestNode::start();
    let host = node.host();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let store = work.path();
        let payload = work.path().join("payload.bin");
        std::fs::write(
            &payload,
            (0..300_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let container = tool("buildah", store, &["from", "scratch"]);
        tool(
            "buildah",
            store,
            &[
                "copy",
                &container,
                payload.to_str().unwrap(),
                "/payload.bin",
            ],
        );
        tool(
            "buildah",
            store,
            &["config", "--label", "built.by=test", &container],
        );
        tool(
            "buildah",
            store,
            &["commit", "--quiet", &container, "localhost/podman-test:v1"],
        );
        let local_id = tool(
            "podman",
            store,
            &[
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                "localhost/podman-test:v1",
            ],
        );

        for (format, tag) in [("oci", "oci"), ("v2s2", "docker")] {
            let remote = format!("{host}/podman/app:{tag}");
            tool(
                "podman",
                store,
                &[
                    "push",
                    "--tls-verify=false",
                    "--format",
                    format,
                    "localhost/podman-test:v1",
                    &remote,
                ],
            );
            tool(
                "podman",
                store,
                &["pull", "--quiet", "--tls-verify=false", &remote],
            );
            let pulled_id = tool(
                "podman",
                store,
                &["image", "inspect", "--format", "{{.Id}}", &remote],
            );
            if format == "oci" {
                assert_eq!(
                    pulled_id, local_id,
                    "the image comes back with the same config"
                );
            }
            let labels = tool(
                "podman",
                store,
                &["image", "inspect", "--format", "{{.Labels}}", &remote],
            );
            assert!(labels.contains("built.by:test"), "{labels}");
            tool("podman", store, &["rmi", "--force", &remote]);
        }
    })
    .await
    .unwrap();

    let tags: serde_json::Value = node.client().tags("podman/app").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["docker", "oci"]));
    let response = node.client().manifest("podman/app", "docker").await;
    assert_eq!(
        registry_tests::oci::header(&response, "Content-Type").as_deref(),
        Some(registry_tests::oci::DOCKER_MANIFEST)
    );
}
