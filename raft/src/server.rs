//! The Raft side of the internal listener: openraft's RPCs, read indexes
//! and proposals forwarded by followers, and the cluster calls (info, join).
//! `node` mounts [`configure`] on the internal port behind [`refusal`],
//! which every internal request passes first.

use crate::codec::{decode, encode};
use crate::meta::MetaStore;
use crate::rpc::{path, JoinRequest, CLUSTER_HEADER, OCTET_STREAM, SECRET_HEADER, TARGET_HEADER};
use crate::types::TypeConfig;
use crate::NodeId;
use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpResponse};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Large enough for a snapshot chunk or a batch of manifests.
const MAX_BODY: usize = 64 << 20;

pub fn configure(cfg: &mut web::ServiceConfig, meta: MetaStore) {
    cfg.app_data(web::Data::new(meta))
        .app_data(web::PayloadConfig::new(MAX_BODY))
        .route(path::APPEND, web::post().to(append))
        .route(path::VOTE, web::post().to(vote))
        .route(path::SNAPSHOT, web::post().to(snapshot))
        .route(path::READ_INDEX, web::post().to(read_index))
        .route(path::APPLIED, web::post().to(applied))
        .route(path::PROPOSE, web::post().to(propose))
        .route(path::INFO, web::post().to(info))
        .route(path::JOIN, web::post().to(join))
        .route(path::REMOVE, web::post().to(remove));
}

/// Why an internal request must not be served, if it must not: it lacks
/// the cluster secret, is meant for another node, or comes from another
/// cluster. `None` lets it through.
pub fn refusal(headers: &HeaderMap, meta: &MetaStore) -> Option<HttpResponse> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secret) = meta.inner.config.secret.as_deref() {
        let given = value(SECRET_HEADER).unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), secret.as_bytes()) {
            tracing::warn!("refused an internal request without the cluster secret");
            return Some(
                HttpResponse::Unauthorized().body("the cluster secret is missing or wrong"),
            );
        }
    }
    if let Some(target) = value(TARGET_HEADER) {
        if target.parse::<NodeId>().ok() != Some(meta.node_id()) {
            tracing::warn!(target, "refused an internal request meant for another node");
            return Some(HttpResponse::Conflict().body(format!(
                "this is node {}, not node {target}: check the peers' addresses",
                meta.node_id()
            )));
        }
    }
    if let (Some(theirs), Some(ours)) = (value(CLUSTER_HEADER), meta.cluster_id()) {
        if theirs != ours {
            tracing::warn!(
                theirs,
                ours,
                "refused an internal request from another cluster"
            );
            return Some(HttpResponse::Conflict().body(format!(
                "this node belongs to cluster {ours}, the caller to cluster {theirs}"
            )));
        }
    }
    None
}

/// A pristine node answers no Raft RPC until formation found it safe.
fn not_formed(meta: &MetaStore) -> Option<HttpResponse> {
    (!meta.accepts_raft()).then(|| {
        HttpResponse::ServiceUnavailable().body("this node has not joined its cluster yet")
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode(bytes).map_err(|e| format!("undecodable request: {e}"))
}

fn bad_request(why: String) -> HttpResponse {
    HttpResponse::BadRequest().body(why)
}

fn answer<T: Serialize>(value: &T) -> HttpResponse {
    match encode(value) {
        Ok(bytes) => HttpResponse::Ok().content_type(OCTET_STREAM).body(bytes),
        Err(e) => HttpResponse::InternalServerError().body(format!("unencodable answer: {e}")),
    }
}

async fn append(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    if let Some(refused) = not_formed(&meta) {
        return refused;
    }
    let request: AppendEntriesRequest<TypeConfig> = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_request(why),
    };
    answer(&meta.raft().append_entries(request).await)
}

async fn vote(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    if let Some(refused) = not_formed(&meta) {
        return refused;
    }
    let request: VoteRequest<NodeId> = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_request(why),
    };
    answer(&meta.raft().vote(request).await)
}

async fn snapshot(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    if let Some(refused) = not_formed(&meta) {
        return refused;
    }
    let request: InstallSnapshotRequest<TypeConfig> = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_request(why),
    };
    answer(&meta.raft().install_snapshot(request).await)
}

async fn read_index(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    let from: NodeId = match body(&bytes) {
        Ok(id) => id,
        Err(why) => return bad_request(why),
    };
    // Before the index is taken: a fence that misses this grant sees a
    // delete the index then covers.
    meta.grant_lease(from);
    answer(&meta.leader_read_index().await)
}

/// A leader's delete fence: answers once this node applied the index, or
/// `false` when it did not in time.
async fn applied(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    let index: u64 = match body(&bytes) {
        Ok(index) => index,
        Err(why) => return bad_request(why),
    };
    answer(
        &meta
            .await_applied(index, std::time::Duration::from_secs(5))
            .await,
    )
}

async fn propose(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    let command = match body(&bytes) {
        Ok(c) => c,
        Err(why) => return bad_request(why),
    };
    answer(&meta.propose_as_leader(command).await)
}

async fn info(meta: web::Data<MetaStore>) -> HttpResponse {
    answer(&meta.info())
}

async fn join(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    let request: JoinRequest = match body(&bytes) {
        Ok(r) => r,
        Err(why) => return bad_request(why),
    };
    answer(&meta.add_member(request).await)
}

async fn remove(meta: web::Data<MetaStore>, bytes: web::Bytes) -> HttpResponse {
    let id: NodeId = match body(&bytes) {
        Ok(id) => id,
        Err(why) => return bad_request(why),
    };
    answer(&meta.remove_member(id).await)
}
