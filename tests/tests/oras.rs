//! oras-py (the ORAS project's Python client, installed by scripts/setup into
//! a venv) pushes and pulls artifacts, monolithic and chunked; under
//! `TEST_AUTH` it logs in with Basic credentials on every request.
//!
//! Not with its token backend: oras-py 0.2.43 keeps the first token it got
//! (here `pull`, for a blob HEAD) and fetches a wider one only after a 403,
//! while the token spec (and distribution, and this registry) answer a
//! missing scope with 401 `insufficient_scope`; its push then fails
//! against any registry whose tokens are scoped per request.

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
            let mut command = Command::new(&python);
            command.arg(&script).arg(host).arg(work);
            if let Some((user, password)) = registry_tests::credentials_under_test() {
                command
                    .env("ORAS_USER", user)
                    .env("ORAS_PASSWORD", password)
                    .env("ORAS_AUTH", "basic");
            }
            command.output()
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
