//! Maps upload ids to their session actors, starting sessions on a small pool
//! of arbiters so the hashing of concurrent uploads spreads over the cores.

use super::UploadSession;
use actix::prelude::*;
use raft::MetaStore;
use std::collections::HashMap;
use storage::Staging;
use uuid::Uuid;

pub struct UploadRegistry {
    /// Each session with the ownership generation it was built for.
    sessions: HashMap<Uuid, (u64, Addr<UploadSession>)>,
    arbiters: Vec<Arbiter>,
    next: usize,
    staging: Staging,
    meta: MetaStore,
    in_flight: prometheus::IntGauge,
}

impl UploadRegistry {
    /// A registry whose sessions run on `threads` arbiters.
    pub fn new(
        staging: Staging,
        meta: MetaStore,
        threads: usize,
        in_flight: prometheus::IntGauge,
    ) -> Self {
        UploadRegistry {
            sessions: HashMap::new(),
            arbiters: (0..threads.max(1)).map(|_| Arbiter::new()).collect(),
            next: 0,
            staging,
            meta,
            in_flight,
        }
    }
}

impl Actor for UploadRegistry {
    type Context = Context<Self>;
}

/// Stops every session and joins the session threads, so nothing holds the
/// metadata store once it returns (a node restarted in the same process must
/// be able to reopen it). Staged parts and upload records stay, so open
/// uploads resume after a restart.
pub struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for UploadRegistry {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.sessions.clear();
        for arbiter in std::mem::take(&mut self.arbiters) {
            arbiter.stop();
            if arbiter.join().is_err() {
                tracing::error!("an upload session thread panicked");
            }
        }
        ctx.stop();
    }
}

/// The session of an upload the caller has checked exists in metadata.
/// `fresh` marks a session created just now, which has no staged bytes.
/// `generation` is the upload's ownership generation: a session cached for
/// an older one (this node owned the upload, lost it, and owns it again)
/// may have missed chunks appended elsewhere, so it is rebuilt.
pub struct Session {
    pub id: Uuid,
    pub repo: String,
    pub fresh: bool,
    pub generation: u64,
}

impl Message for Session {
    type Result = Addr<UploadSession>;
}

impl Handler<Session> for UploadRegistry {
    type Result = MessageResult<Session>;

    fn handle(&mut self, msg: Session, _: &mut Context<Self>) -> Self::Result {
        if let Some((generation, addr)) = self.sessions.get(&msg.id) {
            if addr.connected() && *generation == msg.generation {
                return MessageResult(addr.clone());
            }
        }
        self.sessions.remove(&msg.id);
        self.sessions.retain(|_, (_, addr)| addr.connected());
        // After Shutdown no arbiter is left; the session then runs here.
        let Some(arbiter) = self.arbiters.get(self.next % self.arbiters.len().max(1)) else {
            let (staging, meta, in_flight) = (
                self.staging.clone(),
                self.meta.clone(),
                self.in_flight.clone(),
            );
            let Session {
                id, repo, fresh, ..
            } = msg;
            return MessageResult(
                UploadSession::new(id, repo, staging, meta, fresh, in_flight).start(),
            );
        };
        self.next = self.next.wrapping_add(1);
        let (staging, meta, in_flight) = (
            self.staging.clone(),
            self.meta.clone(),
            self.in_flight.clone(),
        );
        let Session {
            id,
            repo,
            fresh,
            generation,
        } = msg;
        let addr = UploadSession::start_in_arbiter(&arbiter.handle(), move |_| {
            UploadSession::new(id, repo, staging, meta, fresh, in_flight)
        });
        self.sessions.insert(id, (generation, addr.clone()));
        MessageResult(addr)
    }
}
