//! skopeo, a real client: copy a multi-layer OCI image layout into the
//! registry and back out, and compare every digest and byte.

use registry_tests::oci::sha256;
use registry_tests::TestNode;
use std::path::Path;
use std::process::Command;

/// Writes an OCI image layout with `layers` under `dir`, tagged `tag`;
/// returns the manifest digest.
pub(crate) fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let digest = sha256(data);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data).unwrap();
        serde_json::json!({ "digest": digest, "size": data.len() })
    };
    let layer_descriptors: Vec<_> = layers
        .iter()
        .map(|l| {
            let mut d = put(l);
            d["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
            d
        })
        .collect();
    let diff_ids: Vec<_> = layers.iter().map(|l| sha256(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": {},
    }))
    .unwrap();
    let mut config_descriptor = put(&config);
    config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layer_descriptors,
    }))
    .unwrap();
    let mut manifest_descriptor = put(&manifest);
    manifest_descriptor["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_descriptor["annotations"] =
        serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(
            &serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_descriptor] }),
        )
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    sha256(&manifest)
}

/// skopeo's output, whether it succeeded or not.
pub(crate) fn skopeo_output(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed (scripts/setup installs it)")
}

pub(crate) fn skopeo(args: &[&str]) -> String {
    let output = skopeo_output(args);
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every file under `blobs/` of a layout, by name, with its bytes.
pub(crate) fn layout_blobs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn skopeo_copies_an_image_in_and_out_unchanged() {
    let node = TestNode::start();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let layers: Vec<Vec<u8>> = (0..4u32)
        .map(|i| {
            (0..(200_000 * (i + 1)))
                .map(|j| (j.wrapping_mul(31).wrapping_add(i)) as u8)
                .collect()
        })
        .collect();
    let manifest_digest = write_layout(&source, "v1", &layers);
    let image = format!("docker://{}/skopeo/multi:v1", node.host());

    let src = format!("oci:{}:v1", source.display());
    let node_ref = image.clone();
    tokio::task::spawn_blocking(move || {
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &src,
            &node_ref,
        ]);
    })
    .await
    .unwrap();

    let node_ref = image.clone();
    let inspected =
        tokio::task::spawn_blocking(move || skopeo(&["inspect", "--tls-verify=false", &node_ref]))
            .await
            .unwrap();
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest_digest.as_str());
    let expected_layers: Vec<_> = layers.iter().map(|l| sha256(l)).collect();
    assert_eq!(inspected["Layers"], serde_json::json!(expected_layers));

    let copy = work.path().join("copy");
    let dst = format!("oci:{}:v1", copy.display());
    let node_ref = image.clone();
    tokio::task::spawn_blocking(move || {
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &node_ref,
            &dst,
        ]);
    })
    .await
    .unwrap();
    let out = layout_blobs(&copy);
    assert_eq!(
        out,
        layout_blobs(&source),
        "every blob comes back byte for byte"
    );
    for (name, data) in &out {
        assert_eq!(sha256(data), format!("sha256:{name}"));
    }

    // skopeo delete removes the manifest.
    let node_ref = format!("docker://{}/skopeo/multi@{manifest_digest}", node.host());
    tokio::task::spawn_blocking(move || skopeo(&["delete", "--tls-verify=false", &node_ref]))
        .await
        .unwrap();
    let response = node.client().manifest("skopeo/multi", "v1").await;
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
}
