//! The actor that owns one upload: its running SHA-256, its offset and its
//! staged parts. Messages are `AtomicResponse`s, so one finishes before the
//! next starts even though each awaits storage.

use super::body::into_stream;
use super::commit::{commit_verified, CommitError, VerifiedBlob};
use super::messages::{Append, Cancel, Finish, Status, UploadError};
use super::Body;
use crate::state::now_ms;
use actix::prelude::*;
use futures::TryStreamExt;
use raft::{BlobSource, Command, MetaStore, Response};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{Algorithm, Digest, Hasher, Staging};
use uuid::Uuid;

/// A session that sees no request for this long stops; its state is in
/// metadata and staged parts, so the next request simply rebuilds it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub struct UploadSession {
    /// `None` while a message is being handled.
    worker: Option<Worker>,
    last_used: Instant,
    in_flight: prometheus::IntGauge,
}

impl UploadSession {
    /// A session for upload `id` of `repo`. `fresh` sessions start empty;
    /// others rebuild their digest from the staged parts on first use.
    pub fn new(
        id: Uuid,
        repo: String,
        staging: Staging,
        meta: MetaStore,
        fresh: bool,
        in_flight: prometheus::IntGauge,
    ) -> Self {
        let progress = fresh.then(|| Progress {
            hasher: Hasher::new(Algorithm::Sha256),
        });
        UploadSession {
            worker: Some(Worker {
                id,
                repo,
                staging,
                meta,
                progress,
            }),
            last_used: Instant::now(),
            in_flight,
        }
    }

    /// Runs `work` on the session's worker with exclusive access, then puts
    /// the worker back. `done` work stops the actor.
    fn exclusive<T, F, Fut>(&mut self, work: F) -> AtomicResponse<Self, Result<T, UploadError>>
    where
        T: 'static,
        F: FnOnce(Worker) -> Fut,
        Fut: std::future::Future<Output = (Worker, Result<T, UploadError>, bool)> + 'static,
    {
        self.last_used = Instant::now();
        let Some(worker) = self.worker.take() else {
            return AtomicResponse::new(Box::pin(
                async { Err(UploadError::Unknown) }.into_actor(self),
            ));
        };
        AtomicResponse::new(Box::pin(work(worker).into_actor(self).map(
            |(worker, result, done), act, ctx| {
                act.worker = Some(worker);
                act.last_used = Instant::now();
                if done {
                    ctx.stop();
                }
                result
            },
        )))
    }
}

impl Actor for UploadSession {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.in_flight.dec();
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.in_flight.inc();
        ctx.run_interval(IDLE_TIMEOUT / 4, |act, ctx| {
            if act.worker.is_some() && act.last_used.elapsed() >= IDLE_TIMEOUT {
                ctx.stop();
            }
        });
    }
}

impl Handler<Append> for UploadSession {
    type Result = AtomicResponse<Self, Result<u64, UploadError>>;

    fn handle(&mut self, msg: Append, _: &mut Context<Self>) -> Self::Result {
        self.exclusive(|mut w| async move {
            let result = w.append(msg.start, msg.body).await;
            (w, result, false)
        })
    }
}

impl Handler<Status> for UploadSession {
    type Result = AtomicResponse<Self, Result<u64, UploadError>>;

    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        self.exclusive(|mut w| async move {
            let result = w.progress().await.map(|p| p.hasher.bytes());
            (w, result, false)
        })
    }
}

impl Handler<Finish> for UploadSession {
    type Result = AtomicResponse<Self, Result<u64, UploadError>>;

    fn handle(&mut self, msg: Finish, _: &mut Context<Self>) -> Self::Result {
        self.exclusive(|mut w| async move {
            let result = w
                .finish(msg.digest, msg.start, msg.body, msg.notifier.as_ref())
                .await;
            let done = matches!(
                result,
                Ok(_) | Err(UploadError::Unknown | UploadError::CollectedMeanwhile(_))
            );
            (w, result, done)
        })
    }
}

impl Handler<Cancel> for UploadSession {
    type Result = AtomicResponse<Self, Result<(), UploadError>>;

    fn handle(&mut self, _: Cancel, _: &mut Context<Self>) -> Self::Result {
        self.exclusive(|mut w| async move {
            let result = w.cancel().await;
            (w, result, true)
        })
    }
}

struct Progress {
    /// SHA-256 of every byte staged so far; its byte count is the offset.
    hasher: Hasher,
}

/// The session's state and the work on it, outside the actor so it can be
/// moved into a future.
struct Worker {
    id: Uuid,
    repo: String,
    staging: Staging,
    meta: MetaStore,
    progress: Option<Progress>,
}

impl Worker {
    /// The progress, rebuilt from the staged parts after a restart.
    async fn progress(&mut self) -> Result<&mut Progress, UploadError> {
        if self.progress.is_none() {
            let parts = self.staging.parts(&self.id).await?;
            let mut hasher = Hasher::new(Algorithm::Sha256);
            let mut bytes = self.staging.read_parts(parts);
            while let Some(chunk) = bytes.try_next().await? {
                hasher.update(&chunk);
            }
            tracing::info!(upload = %self.id, offset = hasher.bytes(), "resumed upload from staged parts");
            self.progress = Some(Progress { hasher });
        }
        Ok(self.progress.get_or_insert_with(|| Progress {
            hasher: Hasher::new(Algorithm::Sha256),
        }))
    }

    async fn append(&mut self, start: Option<u64>, body: Body) -> Result<u64, UploadError> {
        let id = self.id;
        let staging = self.staging.clone();
        let progress = self.progress().await?;
        let offset = progress.hasher.bytes();
        if let Some(start) = start {
            if start != offset {
                return Err(UploadError::OutOfOrder { start, offset });
            }
        }
        // Hash a copy while the part streams in; keep it only if the part landed.
        let tentative = Arc::new(Mutex::new(progress.hasher.clone()));
        let hashing = tentative.clone();
        let stream = into_stream(body).inspect_ok(move |chunk| {
            hashing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .update(chunk)
        });
        staging.write_part(&id, offset, Box::pin(stream)).await?;
        let hasher = tentative
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        progress.hasher = hasher;
        Ok(progress.hasher.bytes())
    }

    async fn finish(
        &mut self,
        digest: Digest,
        start: Option<u64>,
        body: Option<Body>,
        notifier: Option<&crate::events::Notifier>,
    ) -> Result<u64, UploadError> {
        if let Some(body) = body {
            self.append(start, body).await?;
        }
        let running = self.progress().await?.hasher.clone();
        let size = running.bytes();
        let parts = self.staging.parts(&self.id).await?;
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => running.finish(),
            // The running hash is SHA-256; other algorithms re-read the parts.
            other => {
                let mut hasher = Hasher::new(other);
                let mut bytes = self.staging.read_parts(parts.clone());
                while let Some(chunk) = bytes.try_next().await? {
                    hasher.update(&chunk);
                }
                hasher.finish()
            }
        };
        if actual != digest {
            return Err(UploadError::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        let blob = VerifiedBlob {
            upload: &self.id,
            parts,
            repo: &self.repo,
            digest: &digest,
            size,
            source: BlobSource::Upload(self.id.to_string()),
            notifier,
        };
        match commit_verified(&self.meta, &self.staging, blob, now_ms()).await {
            Ok(Response::Done) => Ok(size),
            Ok(_) => Err(UploadError::Unknown),
            Err(CommitError::Storage(e)) => Err(e.into()),
            Err(CommitError::Meta(e)) => Err(e.into()),
            Err(CommitError::CollectedMeanwhile(digest)) => {
                // The staged bytes are gone with the collected generation:
                // the session cannot finish, so it ends here.
                self.cancel().await?;
                Err(UploadError::CollectedMeanwhile(digest))
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), UploadError> {
        let answer = self
            .meta
            .propose(Command::CancelUpload {
                id: self.id.to_string(),
            })
            .await?;
        self.staging.discard(&self.id).await?;
        match answer {
            Response::Done => Ok(()),
            _ => Err(UploadError::Unknown),
        }
    }
}
