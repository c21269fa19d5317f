//! The node's part in its cluster: formation at start, naming a new
//! cluster (with a marker in blob storage), and the check that this node
//! sees the same blob storage as the node that named it.
//!
//! The marker is written only by the node that names the cluster, right
//! before it proposes the name, so a node pointed at the wrong storage never
//! creates one there: it finds none and stays unready, saying why.

use raft::MetaStore;
use std::time::Duration;
use storage::{BlobStore, ErrorKind, ObjectKey};

/// Forms or joins the cluster; returns when the node is a member.
pub async fn form(meta: &MetaStore) -> Result<(), raft::MetaError> {
    meta.form().await
}

/// Returns once the cluster has a name: names it when this node leads a
/// cluster that has none, else waits for the leader to. Then checks that
/// this node sees the cluster's marker in blob storage (and says so if not).
pub async fn ensure_named(meta: &MetaStore, blobs: &dyn BlobStore) {
    loop {
        match meta.local_view().cluster_id() {
            Ok(Some(id)) => {
                check_marker(blobs, &id).await;
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "read the cluster id"),
        }
        if meta.leader().is_some_and(|(id, _)| id == meta.node_id()) {
            match name(meta, blobs).await {
                Ok(id) => tracing::info!(cluster = %id, "named the cluster"),
                Err(e) => tracing::warn!(error = %e, "could not name the cluster yet"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn name(meta: &MetaStore, blobs: &dyn BlobStore) -> Result<String, String> {
    let id = uuid::Uuid::new_v4().to_string();
    write_marker(blobs, &id).await?;
    meta.name_cluster(id).await.map_err(|e| e.to_string())
}

/// Writes cluster `id`'s marker into blob storage, before the id is used.
pub async fn write_marker(blobs: &dyn BlobStore, id: &str) -> Result<(), String> {
    let marker = format!("registry cluster {id}\n").into_bytes();
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(marker)) });
    blobs
        .put(&ObjectKey::cluster_marker(id), Box::pin(body))
        .await
        .map(|_| ())
        .map_err(|e| format!("write the cluster marker to blob storage: {e}"))
}

/// Why this node cannot serve blobs of cluster `id`, if it cannot: the
/// cluster's marker is not in the blob storage it sees.
pub async fn marker_missing(blobs: &dyn BlobStore, id: &str) -> Option<String> {
    match blobs.head(&ObjectKey::cluster_marker(id)).await {
        Ok(_) => None,
        Err(e) if e.kind == ErrorKind::NotFound => Some(format!(
            "blob storage holds no marker of cluster {id} (cluster/{id}): this node does not \
             see the blob storage its peers write to; point every node at the same storage"
        )),
        Err(e) => Some(format!("blob storage: {e}")),
    }
}

async fn check_marker(blobs: &dyn BlobStore, id: &str) {
    match marker_missing(blobs, id).await {
        None => tracing::debug!(cluster = %id, "blob storage holds this cluster's marker"),
        Some(why) => tracing::error!(cluster = %id, "{why}"),
    }
}
