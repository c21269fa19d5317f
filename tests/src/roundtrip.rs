//! One push-and-pull workout for a node on any blob backend: every upload
//! shape the staging code treats differently, each checked byte for byte.

use crate::oci::{header, sha256};
use crate::TestNode;

/// Starts a node whose blobs live in `blobs`, then pushes into `repo`:
/// * an image with a 3 MB layer (monolithic uploads, one staged part);
/// * 1.5 MB in three 500 KB chunks (several small parts);
/// * 40 chunks of 64 KiB (more sources than one GCS compose call takes);
/// * 13 MB in 6 MiB chunks (parts over the 5 MiB multipart minimum, and a
///   blob over the 10 MiB write chunk: a multipart write, a Swift static
///   large object);
///
/// and pulls each back, following presigned redirects as clients do. Returns
/// the node for further checks.
pub async fn every_upload_shape(blobs: storage::BackendConfig, repo: &str) -> TestNode {
    let node = TestNode::start_with_blobs(blobs);
    let client = node.client();
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 227) as u8).collect();
    let manifest = client.push_image(repo, "v1", b"{}", &[&layer]).await;
    assert_eq!(
        header(&client.manifest(repo, "v1").await, "Docker-Content-Digest"),
        Some(manifest)
    );
    let layer_digest = sha256(&layer);
    assert_eq!(
        sha256(&client.blob_bytes(repo, &layer_digest).await),
        layer_digest
    );
    let big: Vec<u8> = (0..13_000_000u32).map(|i| (i % 251) as u8).collect();
    let chunked = [
        (&layer[..1_500_000], 500_000),
        (&layer[..40 * 65_536], 65_536),
        (&big[..], 6 << 20),
    ];
    for (data, chunk) in chunked {
        let digest = client.push_blob_chunked(repo, data, chunk).await;
        assert_eq!(
            sha256(&client.blob_bytes(repo, &digest).await),
            digest,
            "{} bytes in {chunk}-byte chunks",
            data.len()
        );
    }
    node
}
