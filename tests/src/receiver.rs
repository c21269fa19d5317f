//! A notification endpoint on loopback: keeps every envelope POSTed to it
//! and answers with the status the test sets (200 until told otherwise).

use actix_web::{web, HttpRequest, HttpResponse};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub content_type: String,
    /// The `X-Test` header, which endpoint configs set.
    pub test_header: Option<String>,
    pub envelope: serde_json::Value,
    /// Whether the receiver accepted it (answered 2xx).
    pub accepted: bool,
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    status: AtomicU16,
}

pub struct EventReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: crate::thread_server::ThreadServer,
}

impl EventReceiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            deliveries: Mutex::default(),
            status: AtomicU16::new(200),
        });
        let state = shared.clone();
        let server = crate::thread_server::ThreadServer::start(listener, move |app| {
            app.app_data(web::Data::new(state.clone()))
                .default_service(web::to(receive));
        });
        EventReceiver {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Answers `status` from now on (503 plays a dead endpoint).
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The events accepted, in arrival order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.accepted)
            .flat_map(|d| d.envelope["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// How many POSTs arrived, accepted or not.
    pub fn attempts(&self) -> usize {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Shared>>,
) -> HttpResponse {
    let status = state.status.load(Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delivery = Delivery {
        content_type: header("content-type").unwrap_or_default(),
        test_header: header("x-test"),
        envelope: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        accepted: (200..300).contains(&status),
    };
    state
        .deliveries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(delivery);
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .finish()
}
