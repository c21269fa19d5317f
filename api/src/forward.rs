//! Forwarding an OCI request to the node that owns what it touches (an
//! upload session, a pull-through cache's fetch of a blob), over the peer's internal listener, and relaying the
//! answer.
//!
//! The body is streamed, and it is not touched until the owner has accepted
//! the connection: if the owner cannot be reached at all, the caller gets
//! the payload back and may serve the request itself (after claiming the
//! session). Once bytes have gone out, a failure is the client's 503.

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use raft::NodeId;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Request headers an owner needs to serve an upload request.
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-range",
    "x-request-id",
    "accept",
    "range",
];
/// How long a forwarded read may take to start its answer. The owner of a
/// blob the cache lacks answers a whole `GET` once the upstream starts
/// sending, a `HEAD` or `Range` once the whole blob is stored.
const READ_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Response headers that belong to one connection, not to the answer.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
];

/// What became of a forwarded request.
pub enum Forwarded {
    /// The owner answered (success or error): relay this.
    Answered(HttpResponse),
    /// The owner accepted no connection; nothing was sent, the body is intact.
    Unreachable(web::Payload),
}

/// Sends `req` (with `payload`) to node `target` at internal address `addr`.
pub async fn forward(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    target: NodeId,
    addr: &str,
) -> ApiResult<Forwarded> {
    let Some(request) = request_to(state, req, target, addr)? else {
        return Ok(Forwarded::Unreachable(payload));
    };
    if !crate::handlers::has_body(req) {
        return match request.send().await {
            Err(e) if e.is_connect() => {
                state
                    .metrics
                    .forwarded
                    .with_label_values(&["unreachable"])
                    .inc();
                Ok(Forwarded::Unreachable(payload))
            }
            answer => relay(state, target, answer).await,
        };
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let (polled_tx, polled_rx) = oneshot::channel();
    let body = LazyBody {
        first_poll: Some(polled_tx),
        rx,
    };
    let send = request.body(reqwest::Body::wrap_stream(body)).send();
    tokio::pin!(send);
    let early = tokio::select! {
        answer = &mut send => Some(answer),
        _ = polled_rx => None,
    };
    let answer = match early {
        Some(Err(e)) if e.is_connect() => {
            state
                .metrics
                .forwarded
                .with_label_values(&["unreachable"])
                .inc();
            return Ok(Forwarded::Unreachable(payload));
        }
        Some(answer) => answer,
        None => {
            let received = state.metrics.received_bytes.clone();
            let pump = async move {
                let mut payload = payload;
                while let Some(chunk) = payload.next().await {
                    if let Ok(bytes) = &chunk {
                        received.inc_by(bytes.len() as u64);
                    }
                    let failed = chunk.is_err();
                    let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            };
            let ((), answer) = futures::join!(pump, send);
            answer
        }
    };
    relay(state, target, answer).await
}

/// `req` (its method, path and the headers an owner needs) addressed to
/// node `target`; `None` when the link to it is cut.
fn request_to(
    state: &AppState,
    req: &HttpRequest,
    target: NodeId,
    addr: &str,
) -> ApiResult<Option<reqwest::RequestBuilder>> {
    let peers = state.meta.peers();
    if peers.link_cut(target) {
        return Ok(None);
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|e| ApiError::new(ErrorCode::Unknown, format!("method: {e}")))?;
    let mut request = peers
        .http()
        .request(method, peers.url(addr, path))
        .headers(peers.headers(target));
    for name in FORWARDED_HEADERS {
        if let Some(value) = req.headers().get(*name) {
            request = request.header(*name, value.as_bytes());
        }
    }
    if let Some(notifier) = state.notifier(req) {
        request = request.header(
            crate::events::CONTEXT_HEADER,
            crate::events::encode_context(notifier.request()),
        );
    }
    Ok(Some(request))
}

/// Sends a read without a body (`GET`/`HEAD`) to node `target` and relays
/// the answer as it streams in; `None` when the node accepts no connection
/// (nothing was sent, the caller may serve the request itself).
pub async fn forward_read(
    state: &AppState,
    req: &HttpRequest,
    target: NodeId,
    addr: &str,
) -> ApiResult<Option<HttpResponse>> {
    let Some(request) = request_to(state, req, target, addr)? else {
        return Ok(None);
    };
    // A node that accepted the connection but never answers (stopped,
    // partitioned after the handshake) must not hold the client forever.
    let answer = match tokio::time::timeout(READ_ANSWER_TIMEOUT, request.send()).await {
        Err(_) => {
            state.metrics.forwarded.with_label_values(&["failed"]).inc();
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "node {target} owns this request and did not answer within {} s; retry",
                    READ_ANSWER_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(Err(e)) if e.is_connect() => {
            state
                .metrics
                .forwarded
                .with_label_values(&["unreachable"])
                .inc();
            return Ok(None);
        }
        Ok(Err(e)) => {
            state.metrics.forwarded.with_label_values(&["failed"]).inc();
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("node {target} owns this request and did not answer: {e}"),
            ));
        }
        Ok(Ok(answer)) => answer,
    };
    state
        .metrics
        .forwarded
        .with_label_values(&["answered"])
        .inc();
    let status =
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    let length = answer
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.method() == actix_web::http::Method::HEAD {
        let empty = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        return Ok(Some(
            response.body(SizedStream::new(length.unwrap_or(0), empty)),
        ));
    }
    let stream = answer
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    Ok(Some(match length {
        Some(length) => response.body(SizedStream::new(length, stream)),
        None => response.streaming(stream),
    }))
}

async fn relay(
    state: &AppState,
    target: NodeId,
    answer: Result<reqwest::Response, reqwest::Error>,
) -> ApiResult<Forwarded> {
    let answer = answer.map_err(|e| {
        state.metrics.forwarded.with_label_values(&["failed"]).inc();
        ApiError::new(
            ErrorCode::Unavailable,
            format!("node {target} owns this upload and did not answer: {e}"),
        )
    })?;
    state
        .metrics
        .forwarded
        .with_label_values(&["answered"])
        .inc();
    let status =
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    let body = answer.bytes().await.map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("node {target} broke off its answer: {e}"),
        )
    })?;
    Ok(Forwarded::Answered(response.body(body)))
}

/// A request body that signals when the HTTP client first asks for it,
/// i.e. once the peer has accepted the connection.
struct LazyBody {
    first_poll: Option<oneshot::Sender<()>>,
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl futures::Stream for LazyBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(signal) = self.first_poll.take() {
            let _ = signal.send(());
        }
        self.rx.poll_recv(cx)
    }
}
