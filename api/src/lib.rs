//! The OCI Distribution HTTP API and the actors behind it.
//!
//! Every request is parsed once into a [`route::Route`], dispatched to the
//! handler of its resource, and answered; errors become the spec's JSON
//! envelope in [`error`], and nowhere else.

pub mod config;
pub mod error;
pub mod handlers;
pub mod manifest;
pub mod names;
pub mod route;
pub mod state;
pub mod upload;

pub use config::ApiConfig;
pub use state::AppState;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use error::ApiResult;
use handlers::{base, blobs, catalog, manifests, referrers, tags, uploads};
use route::Route;

/// Mounts the OCI API (everything under `/v2/`) on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state))
        .app_data(web::PayloadConfig::new(usize::MAX))
        .default_service(web::to(dispatch));
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let (route_name, result) = match Route::parse(req.method(), req.path()) {
        Ok(route) => (route.name(), handle(&state, &req, payload, route).await),
        Err(e) => ("unknown", Err(e)),
    };
    let mut response = result.unwrap_or_else(|e| e.error_response());
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("docker-distribution-api-version"),
        actix_web::http::header::HeaderValue::from_static("registry/2.0"),
    );
    tracing::debug!(
        method = %req.method(),
        path = req.path(),
        route = route_name,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    route: Route,
) -> ApiResult<HttpResponse> {
    match route {
        Route::Base => Ok(base::get()),
        Route::Catalog => catalog::list(state, req).await,
        Route::TagsList { name } => tags::list(state, req, &name).await,
        Route::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(state, req, &name, &reference, head).await,
        Route::PutManifest { name, reference } => {
            manifests::put(state, req, payload, &name, &reference).await
        }
        Route::DeleteManifest { name, reference } => {
            manifests::delete(state, &name, &reference).await
        }
        Route::GetBlob { name, digest, head } => blobs::get(state, req, &name, &digest, head).await,
        Route::DeleteBlob { name, digest } => blobs::delete(state, &name, &digest).await,
        Route::StartUpload { name } => uploads::start(state, req, payload, &name).await,
        Route::UploadStatus { name, id } => uploads::status(state, &name, id).await,
        Route::PatchUpload { name, id } => uploads::patch(state, req, payload, &name, id).await,
        Route::FinishUpload { name, id } => uploads::finish(state, req, payload, &name, id).await,
        Route::CancelUpload { name, id } => uploads::cancel(state, &name, id).await,
        Route::Referrers { name, digest } => referrers::list(state, req, &name, &digest).await,
    }
}
