//! The operators' listener (distribution's `http.debug.addr`): `/metrics`,
//! `/healthz` (the process answers), `/readyz` (metadata is caught up
//! with the leader and this node sees the cluster's blob storage), and the
//! cluster commands' endpoints: `GET /cluster/status` (JSON) and
//! `POST /cluster/remove/{id}`.

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::Registry;
use raft::MetaStore;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use storage::BlobStore;

/// How long a readiness probe waits for each dependency.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct DebugState {
    registry: Registry,
    meta: MetaStore,
    blobs: Arc<dyn BlobStore>,
}

pub fn server(
    listener: TcpListener,
    registry: Registry,
    meta: MetaStore,
    blobs: Arc<dyn BlobStore>,
) -> std::io::Result<actix_web::dev::Server> {
    let state = DebugState {
        registry,
        meta,
        blobs,
    };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/cluster/status", web::get().to(cluster_status))
            .route("/cluster/remove/{id}", web::post().to(cluster_remove))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

async fn metrics(state: web::Data<DebugState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(&state.registry))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<DebugState>) -> HttpResponse {
    match not_ready_reason(&state).await {
        None => HttpResponse::Ok().body("ready\n"),
        Some(reason) => {
            tracing::warn!(%reason, "not ready");
            HttpResponse::ServiceUnavailable().body(format!("not ready: {reason}\n"))
        }
    }
}

async fn cluster_status(state: web::Data<DebugState>) -> HttpResponse {
    HttpResponse::Ok().json(state.meta.status().await)
}

async fn cluster_remove(state: web::Data<DebugState>, id: web::Path<u64>) -> HttpResponse {
    let id = id.into_inner();
    match state.meta.remove_member(id).await {
        Ok(()) => HttpResponse::Ok().body(format!("removed node {id}\n")),
        Err(raft::LeaderError::Refused(why)) => HttpResponse::Conflict().body(format!("{why}\n")),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

async fn not_ready_reason(state: &DebugState) -> Option<String> {
    let view = match tokio::time::timeout(PROBE_DEADLINE, state.meta.read()).await {
        Err(_) => return Some("metadata: no answer from the leader".to_owned()),
        Ok(Err(e)) => return Some(format!("metadata: {e}")),
        Ok(Ok(view)) => view,
    };
    let id = match view.cluster_id() {
        Err(e) => return Some(format!("metadata: {e}")),
        Ok(None) => return Some("the cluster has no id yet".to_owned()),
        Ok(Some(id)) => id,
    };
    // The marker's answer also proves the store serves.
    match tokio::time::timeout(
        PROBE_DEADLINE,
        crate::cluster::marker_missing(&*state.blobs, &id),
    )
    .await
    {
        Err(_) => Some("blob storage: no answer".to_owned()),
        Ok(why) => why,
    }
}
