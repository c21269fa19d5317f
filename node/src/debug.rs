//! The operators' listener (distribution's `http.debug.addr`): `/metrics`,
//! `/healthz` (the process answers) and `/readyz` (metadata is caught up
//! with the leader and blob storage answers).

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::Registry;
use raft::MetaStore;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use storage::{BlobStore, Digest, ErrorKind, ObjectKey};

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

async fn not_ready_reason(state: &DebugState) -> Option<String> {
    match tokio::time::timeout(PROBE_DEADLINE, state.meta.read()).await {
        Err(_) => return Some("metadata: no answer from the leader".to_owned()),
        Ok(Err(e)) => return Some(format!("metadata: {e}")),
        Ok(Ok(_)) => {}
    }
    // Any answer about an object, present or not, proves the store serves.
    let probe = ObjectKey::blob(&Digest::sha256_of(b"registry readiness probe"));
    match tokio::time::timeout(PROBE_DEADLINE, state.blobs.head(&probe)).await {
        Err(_) => Some("blob storage: no answer".to_owned()),
        Ok(Err(e)) if e.kind != ErrorKind::NotFound => Some(format!("blob storage: {e}")),
        Ok(_) => None,
    }
}
