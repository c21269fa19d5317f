//! The OCI Distribution HTTP API and the actors behind it.
//!
//! Every request is parsed once into a [`route::Route`], dispatched to the
//! handler of its resource, and answered; errors become the spec's JSON
//! envelope in [`error`], and nowhere else.

/// The tracing target of the access log, one line per request; the node
/// turns it off with `log.accesslog.disabled`.
pub const ACCESS_LOG_TARGET: &str = "registry::access";

/// How long a presigned blob URL stays valid (distribution's S3 default).
/// Garbage collection's grace must outlast it.
pub const PRESIGN_EXPIRY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod events;
pub mod forward;
pub mod handlers;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod pulls;
pub mod ratelimit;
pub mod route;
pub mod state;
pub mod time;
pub mod upload;

pub use config::ApiConfig;
pub use metrics::ApiMetrics;
pub use state::AppState;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use error::{ApiError, ApiResult, ErrorCode};
use handlers::{base, blobs, catalog, manifests, referrers, tags, uploads};
use route::Route;
use tracing::Instrument;

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
    let request_id = request_id(&req);
    let span = tracing::info_span!("request", id = %request_id);
    req.extensions_mut()
        .insert(events::RequestId(request_id.clone()));
    let serves_tokens = req.path() == auth::service::TOKEN_PATH
        && !state.forwarded
        && state.auth.as_ref().is_some_and(|auth| auth.serves_tokens());
    let (route_name, result) = if serves_tokens {
        (
            "token",
            answer_token_request(&state, &req, payload)
                .instrument(span.clone())
                .await,
        )
    } else {
        match Route::parse(req.method(), req.path()) {
            Ok(route) => (
                route.name(),
                handle(&state, &req, payload, route)
                    .instrument(span.clone())
                    .await,
            ),
            Err(e) => ("unknown", Err(e)),
        }
    };
    let mut response = result.unwrap_or_else(|e| span.in_scope(|| e.error_response()));
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .with_label_values(&[route_name, req.method().as_str(), &status.to_string()])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&[route_name])
        .observe(elapsed.as_secs_f64());
    let bytes = match actix_web::body::MessageBody::size(response.body()) {
        actix_web::body::BodySize::Sized(n) => Some(n),
        _ => None,
    };
    if let (Some(limits), Some(client)) =
        (&state.limits, req.extensions().get::<RateLimitedClient>())
    {
        let length = |headers: &actix_web::http::header::HeaderMap| {
            headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let sent = bytes.unwrap_or_else(|| length(response.headers()));
        limits.charge(&client.0, length(req.headers()) + sent);
    }
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        id = %request_id,
        method = %req.method(),
        path = req.path(),
        route = route_name,
        status,
        bytes,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

/// The built-in token service's endpoint, with the same per-address limit
/// on failed logins as the API: a refusal is charged to the address, a
/// token to the user it was issued to.
async fn answer_token_request(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> ApiResult<HttpResponse> {
    /// A form of a user name, a password and scopes is far smaller.
    const MAX_FORM: usize = 64 * 1024;
    let address = RateLimitedClient::address(req);
    if let Some(limits) = &state.limits {
        limits.exhausted(&address.0).map_err(too_many_requests)?;
    }
    let mut body = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut payload).await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::Unsupported, e.to_string()))?;
        if body.len() + chunk.len() > MAX_FORM {
            return Err(ApiError::new(
                ErrorCode::SizeInvalid,
                format!("a token request's form is at most {MAX_FORM} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let Some(answer) = (match &state.auth {
        Some(auth) => auth.answer_token_request(req, &body).await,
        None => None,
    }) else {
        return Err(ApiError::new(ErrorCode::NotFound, "no token service here"));
    };
    let (client, response) = match answer {
        auth::endpoint::TokenAnswer::Issued(auth::Identity::User(name), response) => {
            (RateLimitedClient(format!("user:{name}")), response)
        }
        auth::endpoint::TokenAnswer::Issued(auth::Identity::Anonymous, response) => {
            (address, response)
        }
        auth::endpoint::TokenAnswer::Refused(response) => {
            if let Some(limits) = &state.limits {
                let _ = limits.admit(&address.0);
            }
            return Ok(response);
        }
    };
    if let Some(limits) = &state.limits {
        limits.admit(&client.0).map_err(too_many_requests)?;
        req.extensions_mut().insert(client);
    }
    Ok(response)
}

/// Whom a request's limits are counted against: the user who logged in,
/// else the client's address. Left in the request's extensions so the
/// bytes it moved are charged when it is answered.
#[derive(Debug, Clone)]
struct RateLimitedClient(String);

impl RateLimitedClient {
    fn address(req: &HttpRequest) -> Self {
        let ip = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        RateLimitedClient(format!("address:{ip}"))
    }
}

/// 429 with `Retry-After` in whole seconds (at least one).
fn too_many_requests((limit, wait): (ratelimit::Limit, std::time::Duration)) -> ApiError {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        ErrorCode::TooManyRequests,
        format!("over the {} limit: retry in {seconds} s", limit.name()),
    )
    .with_header("Retry-After", seconds.to_string())
}

/// Whether writes are refused: by this node's config (`by_config`), or by
/// the cluster's mode as this node last applied it (the state machine
/// refuses writes applied after the switch either way).
pub fn refuses_writes(by_config: bool, meta: &raft::MetaStore) -> bool {
    by_config || meta.local_view().read_only().unwrap_or(false)
}

/// The client's `X-Request-Id` when it is a sane token, else a fresh one.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    route: Route,
) -> ApiResult<HttpResponse> {
    let limits = state.limits.as_ref().filter(|_| !state.forwarded);
    let address = RateLimitedClient::address(req);
    if let Some(limits) = limits {
        limits.exhausted(&address.0).map_err(too_many_requests)?;
    }
    let who = match state.auth.as_ref().filter(|_| !state.forwarded) {
        None => None,
        Some(auth) => match auth.authorize(req, &route).await {
            Ok(who) => Some(who),
            Err(refused) => {
                if let Some(limits) = limits {
                    let _ = limits.admit(&address.0);
                }
                return Err(refused);
            }
        },
    };
    if let Some(limits) = limits {
        let client = match who {
            Some(auth::Identity::User(name)) => RateLimitedClient(format!("user:{name}")),
            _ => address,
        };
        limits.admit(&client.0).map_err(too_many_requests)?;
        req.extensions_mut().insert(client);
    }
    if route.writes() && refuses_writes(state.config.read_only, &state.meta) {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "the registry is read-only: pushes and deletes are refused, pulls work",
        ));
    }
    if let Some(name) = route.pushed_repository() {
        if let Some((_, covered)) = state.covering(name.as_str()) {
            return Err(cache::push_refused(name.as_str(), &covered));
        }
    }
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
            manifests::delete(state, req, &name, &reference).await
        }
        Route::GetBlob { name, digest, head } => blobs::get(state, req, &name, &digest, head).await,
        Route::DeleteBlob { name, digest } => blobs::delete(state, req, &name, &digest).await,
        Route::StartUpload { name } => uploads::start(state, req, payload, &name).await,
        Route::UploadStatus { name, id } => uploads::status(state, req, payload, &name, id).await,
        Route::PatchUpload { name, id } => uploads::patch(state, req, payload, &name, id).await,
        Route::FinishUpload { name, id } => uploads::finish(state, req, payload, &name, id).await,
        Route::CancelUpload { name, id } => uploads::cancel(state, req, payload, &name, id).await,
        Route::Referrers { name, digest } => referrers::list(state, req, &name, &digest).await,
    }
}
