//! oras-py (the ORAS project's Python client, installed by scripts/setup into
//! a venv) pushes and pulls artifacts, monolithic and chunked.

use registry_tests::TestNode;
use std::path::PathBuf;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn oras_pushes_and_pulls_artifacts() {
    let node = TestNode::start();
    let work = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/oras_roundtrip.py");
    let python = registry_tests::python();
    let output = tokio::task::spawn_blocking({
        let (host, work) = (node.host(), work.path().to_owned());
        move || {
            Command::new(&python)
                .arg(&script)
                .arg(host)
                .arg(work)
                .output()
        }
    })
    .await
    .unwrap()
    .expect("run oras-py (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "oras round trip failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let tags: serde_json::Value = node
        .client()
        .tags("oras/artifact")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["chunked", "whole"]));
}
