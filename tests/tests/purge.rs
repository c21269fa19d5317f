//! Stale uploads are purged: the session is gone and so are its staged bytes.

use registry_tests::oci::{error_code, location};
use registry_tests::TestNode;
use reqwest::StatusCode;
use std::time::Duration;

fn staged_files(node: &TestNode) -> usize {
    let mut count = 0;
    let mut pending = vec![node.blobs_dir().join("uploads")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    count
}

#[tokio::test]
async fn stale_uploads_and_their_bytes_are_purged() {
    let node = TestNode::start_with(|config| {
        config.purge.age = Duration::from_secs(2);
        config.purge.interval = Duration::from_millis(100);
    });
    let client = node.client();
    let session = client.start_upload("purge").await;
    let response = client.patch(&session, 0, &vec![1u8; 100_000]).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "a young upload is left alone"
    );
    let session = location(&response);
    assert_eq!(staged_files(&node), 1);

    // The purge cancels the session through the log first and deletes the
    // staged parts after, so the 404 can be seen a moment before the bytes go.
    let purged = registry_tests::eventually(Duration::from_secs(60), || async {
        client.get(&session).await.status() == StatusCode::NOT_FOUND
    })
    .await;
    assert!(purged, "the stale upload was never purged");
    assert_eq!(
        error_code(client.get(&session).await).await,
        "BLOB_UPLOAD_UNKNOWN"
    );
    let bytes_gone = registry_tests::eventually(Duration::from_secs(30), || async {
        staged_files(&node) == 0
    })
    .await;
    assert!(bytes_gone, "staged parts are deleted with the session");
}
