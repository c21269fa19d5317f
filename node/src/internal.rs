//! The internal listener (`cluster.addr`): Raft RPC, read indexes and
//! proposals forwarded by followers, cluster calls, and OCI requests a peer
//! forwarded to the node that owns them (upload sessions). Every request
//! must carry the cluster secret and name this node
//! ([`raft::server::refusal`]); with `cluster.tls` it must also come over
//! mutual TLS with a certificate from the cluster's CAs.

use actix_web::body::EitherBody;
use actix_web::dev::Service;
use actix_web::{App, HttpServer};
use api::AppState;
use futures::future::{ready, Either};
use futures::FutureExt;
use raft::MetaStore;
use std::net::TcpListener;

pub fn server(
    listener: TcpListener,
    meta: MetaStore,
    forwarded: AppState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_web::dev::Server> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = HttpServer::new(move || {
        let guard = meta.clone();
        let (meta, forwarded) = (meta.clone(), forwarded.clone());
        App::new()
            .wrap_fn(
                move |req, srv| match raft::server::refusal(req.headers(), &guard) {
                    Some(refused) => {
                        Either::Left(ready(Ok(req.into_response(refused).map_into_right_body())))
                    }
                    None => Either::Right(srv.call(req).map(|answer| {
                        answer.map(|response| response.map_body(|_, body| EitherBody::left(body)))
                    })),
                },
            )
            .configure(move |cfg| raft::server::configure(cfg, meta))
            .configure(move |cfg| api::configure(cfg, forwarded))
    })
    .workers(threads)
    .disable_signals()
    .tcp_nodelay(true)
    .shutdown_timeout(30);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}
