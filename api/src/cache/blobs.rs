//! Blobs of covered repositories that are not stored yet: fetched from the
//! upstream by one node per digest, once, streamed to the first client
//! while they are stored.

use super::flight::{Joined, Lead};
use super::upstream::BlobStream;
use super::{Covered, PullThroughCache, UpstreamError};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::handlers::{blobs::serve_stored, header, DOCKER_CONTENT_DIGEST};
use crate::names::RepoName;
use crate::state::{now_ms, AppState};
use actix_web::body::SizedStream;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use raft::{BlobSource, Command, NodeId, Response};
use storage::{Digest, ErrorKind, StorageError};
use tokio::sync::mpsc;

/// Chunks on their way to the first client: a slow client slows the fetch
/// down to its pace rather than filling memory.
const CLIENT_CHUNKS: usize = 16;

/// Answers a pull of blob `digest` of `name`, which the cache does not hold.
pub async fn fetch(
    state: &AppState,
    req: &HttpRequest,
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    digest: &Digest,
    head: bool,
) -> ApiResult<HttpResponse> {
    if crate::refuses_writes(state.config.read_only, &state.meta) {
        return Err(super::read_only());
    }
    if let Some(answer) = link_held(state, req, cache, covered, name, digest, head).await? {
        return Ok(answer);
    }
    if !state.forwarded {
        if let Some((owner, addr)) = owner_elsewhere(state, digest) {
            if let Some(answer) = crate::forward::forward_read(state, req, owner, &addr).await? {
                return Ok(answer);
            }
            tracing::warn!(%digest, owner, "the node that fetches this blob is unreachable; fetching it here");
        }
    }
    let key = format!("blob {name} {digest}");
    let lead = loop {
        match cache.flights.join(key.clone()) {
            Joined::Follow(follow) => {
                if let Some(outcome) = follow.outcome().await {
                    outcome?;
                    return serve_stored(state, req, name, digest, head).await;
                }
            }
            Joined::Lead(lead) => break lead,
        }
    };
    let upstream = covered.upstream.url().to_owned();
    let body = match covered.upstream.blob(&covered.remote_repo, digest).await {
        Ok(body) => body,
        Err(e) => {
            cache.metrics.lookup(&upstream, "blob", e.label());
            tracing::warn!(repository = %name, %digest, upstream, error = %e, "cannot fetch a blob");
            let refused = e.to_api(ErrorCode::BlobUnknown);
            lead.finish(Err(refused.clone()));
            return Err(refused);
        }
    };
    let whole = !head && header(req, "Range").is_none();
    let waiter = lead.follower();
    let (client, first_client) = if whole {
        let (tx, rx) = mpsc::channel(CLIENT_CHUNKS);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let length = body.length;
    let filling = Fill {
        state: state.clone(),
        metrics: cache.metrics.clone(),
        upstream,
        repo: name.to_string(),
        digest: digest.clone(),
    };
    // Detached: a client that goes away does not stop the fetch its
    // waiters (and the next pulls) need.
    actix_web::rt::spawn(filling.run(body, client, lead));
    let Some(first_client) = first_client else {
        // The fill owns the lead now and always finishes it.
        if let Some(outcome) = waiter.outcome().await {
            outcome?;
        }
        return serve_stored(state, req, name, digest, head).await;
    };
    crate::handlers::blobs::record_pull(state, req, name, digest, length.unwrap_or(0));
    let sent = state.metrics.sent_bytes.clone();
    let stream = futures::stream::unfold(first_client, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            sent.inc_by(bytes.len() as u64)
        }
    });
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/octet-stream")
        .insert_header((DOCKER_CONTENT_DIGEST, digest.to_string()))
        .insert_header(("ETag", format!("\"{digest}\"")));
    Ok(match length {
        Some(length) => response.body(SizedStream::new(length, stream)),
        None => response.streaming(stream),
    })
}

/// Serves a blob the cache already holds for another repository, linked
/// into `name` once the upstream confirmed with a `HEAD` that `name` has it
/// too: a layer images share is fetched once, and `name` serves only what
/// the upstream serves in it. `None` when it must be fetched after all.
async fn link_held(
    state: &AppState,
    req: &HttpRequest,
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    digest: &Digest,
    head: bool,
) -> ApiResult<Option<HttpResponse>> {
    let view = state.meta.read().await?;
    let Some(blob) = view.blob(digest)? else {
        return Ok(None);
    };
    let upstream = covered.upstream.url();
    match covered
        .upstream
        .has_blob(&covered.remote_repo, digest)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            cache.metrics.lookup(upstream, "blob", "not_found");
            return Err(UpstreamError::NotFound("blob").to_api(ErrorCode::BlobUnknown));
        }
        Err(e) => {
            // The fetch that follows meets the same failure and reports it.
            tracing::debug!(repository = %name, %digest, upstream, error = %e,
                "cannot ask the upstream about a blob held for another repository");
            return Ok(None);
        }
    }
    // Written like a push whose bytes are already stored: the log links
    // the blob at its recorded generation.
    let command = Command::CommitBlobAt {
        repo: name.to_string(),
        digest: digest.clone(),
        size: blob.size,
        source: BlobSource::Direct,
        at_ms: now_ms(),
        generation: view.generation_to_write(digest)?,
    };
    if state.meta.propose(command).await? != Response::Done {
        // Collected in the meantime: fetched again.
        return Ok(None);
    }
    cache.metrics.lookup(upstream, "blob", "linked");
    tracing::debug!(repository = %name, %digest, upstream,
        "linked a blob the cache held for another repository");
    serve_stored(state, req, name, digest, head).await.map(Some)
}

/// The member that fetches `digest` for the whole cluster, when it is not
/// this node: the highest rendezvous score, so every node picks the same one
/// and a member leaving moves only its own share of digests.
fn owner_elsewhere(state: &AppState, digest: &Digest) -> Option<(NodeId, String)> {
    let (owner, info) = state
        .meta
        .voters()
        .into_iter()
        .max_by_key(|(id, _)| rendezvous_score(digest, *id))?;
    (owner != state.meta.node_id()).then_some((owner, info.raft_addr))
}

/// FNV-1a of the digest and the node id, finished with splitmix64's mixer:
/// stable across processes and versions, unlike the std hasher.
fn rendezvous_score(digest: &Digest, node: NodeId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in digest.to_string().bytes().chain(node.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// One blob's fetch into the store.
struct Fill {
    state: AppState,
    metrics: super::CacheMetrics,
    upstream: String,
    repo: String,
    digest: Digest,
}

impl Fill {
    /// Stores `body` (verified against the digest and recorded) while
    /// passing it to `client`, all but the last chunk as they arrive and the
    /// last once the blob is recorded; then tells the waiters.
    async fn run(
        self,
        body: BlobStream,
        client: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
        lead: Lead,
    ) {
        let in_flight = self
            .metrics
            .fetches_in_flight
            .with_label_values(&[&self.upstream]);
        in_flight.inc();
        let started = std::time::Instant::now();
        let (to_store, stored_body) = mpsc::channel(CLIENT_CHUNKS);
        let fetched = self
            .metrics
            .fetched_bytes
            .with_label_values(&[&self.upstream]);
        let pump = pump(body, to_store, client, fetched);
        let store =
            crate::upload::store_blob(&self.state, &self.repo, &self.digest, stored_body, None);
        let ((last, client), stored) = futures::join!(pump, store);
        in_flight.dec();
        match stored {
            Ok(size) => {
                if let (Some(client), Some(last)) = (client, last) {
                    let _ = client.send(Ok(last)).await;
                }
                self.metrics.lookup(&self.upstream, "blob", "fetched");
                tracing::info!(repository = %self.repo, digest = %self.digest, size,
                    upstream = self.upstream, millis = started.elapsed().as_millis() as u64,
                    "cached a blob from the upstream");
                lead.finish(Ok(()));
            }
            Err(e) => {
                self.metrics.lookup(&self.upstream, "blob", "failed");
                tracing::warn!(repository = %self.repo, digest = %self.digest,
                    upstream = self.upstream, error = %e.detail,
                    "fetching a blob from the upstream failed; nothing was stored");
                lead.finish(Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "fetching {} from the upstream failed: {}",
                        self.digest, e.detail
                    ),
                )));
            }
        }
    }
}

/// Copies the upstream's body into the store and, one chunk behind, to the
/// client; answers the chunk held back (for the caller to send once the
/// blob is recorded) and the client, if it is still there. A broken body
/// reaches the store as an error, so nothing is recorded.
async fn pump(
    mut body: BlobStream,
    to_store: mpsc::Sender<Result<Bytes, StorageError>>,
    mut client: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    fetched: prometheus::IntCounter,
) -> (
    Option<Bytes>,
    Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
) {
    let mut held: Option<Bytes> = None;
    while let Some(chunk) = body.stream.next().await {
        let bytes = match chunk {
            Ok(bytes) => bytes,
            Err(e) => {
                let broken =
                    StorageError::new(ErrorKind::Unavailable, "the upstream broke off the blob")
                        .with_source(e.to_string());
                let _ = to_store.send(Err(broken)).await;
                return (None, None);
            }
        };
        fetched.inc_by(bytes.len() as u64);
        if to_store.send(Ok(bytes.clone())).await.is_err() {
            return (None, None);
        }
        if let Some(previous) = held.replace(bytes) {
            if let Some(tx) = &client {
                if tx.send(Ok(previous)).await.is_err() {
                    client = None;
                }
            }
        }
    }
    (held, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_scores_a_digest_alike_and_digests_spread_over_nodes() {
        let digests: Vec<Digest> = (0..300)
            .map(|i| Digest::sha256_of(format!("blob {i}").as_bytes()))
            .collect();
        let owner = |digest: &Digest| {
            (1..=3u64)
                .max_by_key(|node| rendezvous_score(digest, *node))
                .unwrap()
        };
        let mut owned = [0usize; 3];
        for digest in &digests {
            assert_eq!(rendezvous_score(digest, 2), rendezvous_score(digest, 2));
            owned[(owner(digest) - 1) as usize] += 1;
        }
        for count in owned {
            assert!(count > 60, "each of 3 nodes owns a fair share: {owned:?}");
        }
    }
}
