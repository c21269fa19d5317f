//! What every handler gets: handles to the metadata store, blob staging and
//! the upload actors. Handlers keep no state of their own between requests.

use crate::config::ApiConfig;
use crate::upload::UploadRegistry;
use actix::Addr;
use raft::MetaStore;
use std::sync::Arc;
use storage::{BlobStore, Staging};

#[derive(Clone)]
pub struct AppState {
    pub meta: MetaStore,
    pub staging: Staging,
    pub uploads: Addr<UploadRegistry>,
    pub config: Arc<ApiConfig>,
    pub metrics: crate::metrics::ApiMetrics,
    /// Manifest pulls served here, written to the log in batches.
    pub pulls: crate::pulls::PullLog,
    /// Logins and access rules; `None` lets everyone do everything.
    pub auth: Option<Arc<crate::auth::Authorizer>>,
    /// Per-client request and bandwidth limits; `None` for none.
    pub limits: Option<Arc<crate::ratelimit::RateLimiter>>,
    /// The requests arrive on the internal listener, forwarded by a peer to
    /// this node as the owner of what they touch: serve them here, never
    /// forward them again.
    pub forwarded: bool,
    /// Notifications: what this node's events say of it; `None` records none.
    pub events: Option<Arc<crate::events::EventsConfig>>,
    /// The pull-through cache's upstreams (`proxy`); `None` for none.
    pub cache: Option<Arc<crate::cache::PullThroughCache>>,
}

impl AppState {
    /// The state for the internal listener's copy of the API.
    pub fn forwarded_copy(&self) -> Self {
        AppState {
            forwarded: true,
            ..self.clone()
        }
    }

    /// Builds the events of `req`, when notifications are on.
    pub fn notifier(&self, req: &actix_web::HttpRequest) -> Option<crate::events::Notifier> {
        crate::events::Notifier::of(self.events.as_ref(), req, self.forwarded)
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        self.staging.store()
    }

    /// The pull-through cache and the upstream covering `repo`, if one does.
    pub fn covering(
        &self,
        repo: &str,
    ) -> Option<(&crate::cache::PullThroughCache, crate::cache::Covered)> {
        let cache = self.cache.as_deref()?;
        cache.covering(repo).map(|covered| (cache, covered))
    }
}

/// Milliseconds since the Unix epoch, stamped into commands by their proposer.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
