//! The operators' listener (distribution's `http.debug.addr`): `/metrics`,
//! `/healthz` (the process answers), `/readyz` (metadata is caught up
//! with the leader and this node sees the cluster's blob storage), and the
//! cluster commands' endpoints: `GET /cluster/status` (JSON),
//! `POST /cluster/remove/{id}`, read-only mode: `GET /readonly`,
//! `POST /readonly/on`, `POST /readonly/off`, and garbage collection:
//! `POST /gc` (`?dryrun=true` to only report), which answers the report.

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
    /// `storage.maintenance.readonly.enabled` on this node.
    read_only_by_config: bool,
    read_only: prometheus::IntGauge,
    collector: Arc<crate::gc::Collector>,
}

/// Read-only mode as `GET /readonly` reports it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ReadOnlyStatus {
    /// This node refuses writes, for either reason below.
    pub read_only: bool,
    /// The cluster's runtime mode (`registry readonly on|off`).
    pub cluster: bool,
    /// This node's `storage.maintenance.readonly.enabled`.
    pub config: bool,
}

pub fn server(
    listener: TcpListener,
    registry: Registry,
    meta: MetaStore,
    blobs: Arc<dyn BlobStore>,
    read_only_by_config: bool,
    collector: Arc<crate::gc::Collector>,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let read_only = prometheus::IntGauge::new(
        "registry_read_only",
        "1 while this node refuses writes (read-only mode), else 0",
    )
    .map_err(std::io::Error::other)?;
    registry
        .register(Box::new(read_only.clone()))
        .map_err(std::io::Error::other)?;
    let state = DebugState {
        registry,
        meta,
        blobs,
        read_only_by_config,
        read_only,
        collector,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/cluster/status", web::get().to(cluster_status))
            .route("/cluster/remove/{id}", web::post().to(cluster_remove))
            .route("/readonly", web::get().to(get_read_only))
            .route("/readonly/{mode}", web::post().to(set_read_only))
            .route("/gc", web::post().to(collect))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

fn read_only_status(state: &DebugState) -> ReadOnlyStatus {
    let cluster = state.meta.local_view().read_only().unwrap_or(false);
    ReadOnlyStatus {
        read_only: cluster || state.read_only_by_config,
        cluster,
        config: state.read_only_by_config,
    }
}

async fn metrics(state: web::Data<DebugState>) -> HttpResponse {
    state
        .read_only
        .set(i64::from(read_only_status(&state).read_only));
    state.collector.refresh_metrics();
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

async fn get_read_only(state: web::Data<DebugState>) -> HttpResponse {
    match state.meta.read().await {
        Ok(_) => HttpResponse::Ok().json(read_only_status(&state)),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

/// Switches the cluster's mode through the log, so every node switches at
/// the same entry; answers once it is committed.
async fn set_read_only(state: web::Data<DebugState>, mode: web::Path<String>) -> HttpResponse {
    let enabled = match mode.as_str() {
        "on" => true,
        "off" => false,
        other => return HttpResponse::NotFound().body(format!("{other:?} is not on or off\n")),
    };
    let command = raft::Command::SetReadOnly { enabled };
    if let Err(e) = state.meta.propose(command).await {
        return HttpResponse::ServiceUnavailable().body(format!("{e}\n"));
    }
    tracing::info!(enabled, "read-only mode switched");
    // Committed on the leader; report once this node applied it too.
    match state.meta.read().await {
        Ok(_) => HttpResponse::Ok().json(read_only_status(&state)),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

#[derive(serde::Deserialize)]
struct CollectQuery {
    #[serde(default)]
    dryrun: bool,
}

/// Runs one collection now (after one already running here) and answers
/// its report; 409 while the registry is read-only.
async fn collect(state: web::Data<DebugState>, query: web::Query<CollectQuery>) -> HttpResponse {
    match state.collector.collect(query.dryrun).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e @ crate::gc::GcError::ReadOnly) => HttpResponse::Conflict().body(format!("{e}\n")),
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
