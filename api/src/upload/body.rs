//! Request bodies cross from the HTTP worker to an upload actor through a
//! bounded channel: actix-web's `Payload` cannot leave its thread, and the
//! channel's bound keeps a fast client from filling memory.

use actix_web::web;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use storage::{ByteStream, ErrorKind, StorageError};
use tokio::sync::mpsc;

/// The receiving half: the body's chunks, or the error that cut it short.
pub type Body = mpsc::Receiver<Result<Bytes, StorageError>>;

const IN_FLIGHT_CHUNKS: usize = 16;

/// Splits a request payload into a future that forwards it and the receiving
/// end. Poll the future alongside whatever consumes the body.
pub fn pump(
    mut payload: web::Payload,
    received: prometheus::IntCounter,
) -> (impl std::future::Future<Output = ()>, Body) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT_CHUNKS);
    let forward = async move {
        while let Some(chunk) = payload.next().await {
            if let Ok(bytes) = &chunk {
                received.inc_by(bytes.len() as u64);
            }
            let item = chunk.map_err(|e| {
                StorageError::new(ErrorKind::Unavailable, "request body interrupted")
                    .with_source(e.to_string())
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    (forward, rx)
}

/// The body as a byte stream for a blob store.
pub fn into_stream(body: Body) -> ByteStream {
    receiver_stream(body).boxed()
}

fn receiver_stream(body: Body) -> impl Stream<Item = Result<Bytes, StorageError>> {
    futures::stream::unfold(body, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
