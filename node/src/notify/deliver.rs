//! Delivers recorded events to one endpoint, from the node that leads.
//!
//! Events are read from the replicated state (never held in memory beyond
//! one batch), sent one POST at a time in log order (so in order per
//! repository), and the endpoint's cursor is written through the log every
//! few deliveries: a new leader resumes from it, so an event may arrive
//! twice (same `id`) but is never skipped. What a dead endpoint keeps
//! waiting is bounded by its `backlog`; beyond, the oldest are dropped.

use super::config::EndpointConfig;
use super::metrics::NotifyMetrics;
use raft::{Command, EventRecord, MetaStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// distribution's envelope media type.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";

/// Events read from the state per batch.
const BATCH: usize = 64;
/// How often a delivering leader writes its cursor to the log at most.
const CURSOR_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts at a failing endpoint.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle endpoint looks for new events at least (it also wakes
/// on every entry this node applies).
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What became of one event.
enum Outcome {
    Delivered,
    /// Ignored by the endpoint's filters, or refused by it `threshold` times.
    Skipped,
    /// This node stopped leading, or the backlog overflowed past the event:
    /// start over from the state.
    Interrupted,
}

pub struct Deliverer {
    meta: MetaStore,
    endpoint: EndpointConfig,
    /// Every endpoint's name: events all of them received are pruned.
    all_endpoints: Arc<Vec<String>>,
    http: reqwest::Client,
    metrics: NotifyMetrics,
}

impl Deliverer {
    pub fn new(
        meta: MetaStore,
        endpoint: EndpointConfig,
        all_endpoints: Arc<Vec<String>>,
        metrics: NotifyMetrics,
    ) -> Result<Self, reqwest::Error> {
        // 3xx counts as delivered, as in distribution: never follow it.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(endpoint.timeout)
            .build()?;
        Ok(Deliverer {
            meta,
            endpoint,
            all_endpoints,
            http,
            metrics,
        })
    }

    fn leads(&self) -> bool {
        self.meta
            .leader()
            .is_some_and(|(id, _)| id == self.meta.node_id())
    }

    fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// Delivers until the node stops.
    pub async fn run_forever(self) {
        tracing::debug!(endpoint = self.name(), url = %self.endpoint.url, "notifications: delivering");
        // The cursor this node delivered to while it leads, ahead of what
        // the log has until the next write.
        let mut delivered: Option<u64> = None;
        let mut written_at = Instant::now();
        loop {
            let view = self.meta.local_view();
            let mut recorded = view.events_recorded().unwrap_or(0);
            let logged = view.event_cursor(self.name()).ok().flatten().unwrap_or(0);
            if !self.leads() {
                // Only the leader delivers, so only it has anything pending:
                // summed over the nodes, the gauge is the cluster's backlog.
                delivered = None;
                self.metrics.set_pending(self.name(), 0);
                tokio::time::sleep(IDLE_POLL).await; // poll interval
                continue;
            }
            let mut cursor = delivered.unwrap_or(0).max(logged);
            let oldest_kept = recorded.saturating_sub(self.endpoint.backlog);
            if cursor < oldest_kept {
                let dropped = oldest_kept - cursor;
                self.metrics.dropped(self.name(), "overflow", dropped);
                tracing::warn!(
                    endpoint = self.name(),
                    dropped,
                    backlog = self.endpoint.backlog,
                    "notifications: backlog full, the oldest events were dropped"
                );
                cursor = oldest_kept;
                // A new leader must not send them either.
                self.write_cursor(cursor).await;
                written_at = Instant::now();
            }
            // The view is live, not a snapshot: an event recorded after the
            // count was read may already be in the batch.
            let batch = view.events_after(cursor, BATCH).unwrap_or_default();
            if let Some((last, _)) = batch.last() {
                recorded = recorded.max(*last);
            }
            self.metrics
                .set_pending(self.name(), recorded.saturating_sub(cursor));
            if batch.is_empty() {
                if cursor > logged {
                    self.write_cursor(cursor).await;
                    written_at = Instant::now();
                }
                delivered = Some(cursor);
                self.meta.moved_within(IDLE_POLL).await;
                continue;
            }
            for (ordinal, event) in batch {
                match self.deliver(ordinal, &event).await {
                    Outcome::Delivered | Outcome::Skipped => cursor = ordinal,
                    Outcome::Interrupted => break,
                }
                self.metrics
                    .set_pending(self.name(), recorded.saturating_sub(cursor));
                if written_at.elapsed() >= CURSOR_EVERY {
                    self.write_cursor(cursor).await;
                    written_at = Instant::now();
                }
            }
            delivered = Some(cursor);
        }
    }

    fn ignores(&self, event: &EventRecord) -> bool {
        self.endpoint.ignored_actions.contains(&event.action)
            || event
                .media_type
                .as_ref()
                .is_some_and(|t| self.endpoint.ignored_media_types.contains(t))
    }

    /// Sends one event until the endpoint takes it, refuses it
    /// `threshold` times, or this node can no longer deliver it.
    async fn deliver(&self, ordinal: u64, event: &EventRecord) -> Outcome {
        if self.ignores(event) {
            return Outcome::Skipped;
        }
        let mut envelope = b"{\"events\":[".to_vec();
        envelope.extend_from_slice(&event.body);
        envelope.extend_from_slice(b"]}");
        // Each retry sends the same bytes without copying them.
        let envelope = bytes::Bytes::from(envelope);
        let mut failures = 0u32;
        loop {
            let mut request = self
                .http
                .post(&self.endpoint.url)
                .header(reqwest::header::CONTENT_TYPE, ENVELOPE_MEDIA_TYPE);
            for (name, value) in &self.endpoint.headers {
                request = request.header(name, value);
            }
            let answer = request.body(envelope.clone()).send().await;
            let refused_outright = match &answer {
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    self.metrics.delivered(self.name(), event.at_ms);
                    if failures > 0 {
                        tracing::info!(
                            endpoint = self.name(),
                            failures,
                            "notifications: endpoint recovered"
                        );
                    }
                    return Outcome::Delivered;
                }
                Ok(response) => {
                    let status = response.status();
                    status.is_client_error()
                        && status != reqwest::StatusCode::REQUEST_TIMEOUT
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(_) => false,
            };
            failures += 1;
            self.metrics.failed(self.name());
            let error = match answer {
                Ok(response) => format!("answered {}", response.status()),
                Err(e) => e.to_string(),
            };
            if refused_outright && failures >= self.endpoint.threshold {
                self.metrics.dropped(self.name(), "refused", 1);
                tracing::warn!(endpoint = self.name(), ordinal, %error, attempts = failures,
                    "notifications: the endpoint refused an event; dropped");
                return Outcome::Skipped;
            }
            if failures == 1 || failures == self.endpoint.threshold {
                tracing::warn!(endpoint = self.name(), ordinal, %error, failures,
                    "notifications: delivery failed; retrying");
            } else {
                tracing::debug!(endpoint = self.name(), ordinal, %error, failures,
                    "notifications: delivery failed; retrying");
            }
            tokio::time::sleep(self.wait_after(failures)).await;
            let recorded = self.meta.local_view().events_recorded().unwrap_or(0);
            // Events recorded while this one is retried join the backlog.
            self.metrics.set_pending(
                self.name(),
                recorded
                    .max(ordinal)
                    .saturating_sub(ordinal.saturating_sub(1)),
            );
            let overflowed = recorded.saturating_sub(self.endpoint.backlog) >= ordinal;
            if !self.leads() || overflowed {
                return Outcome::Interrupted;
            }
        }
    }

    /// `backoff` until `threshold` failures in a row, then doubling.
    fn wait_after(&self, failures: u32) -> Duration {
        let backoff = self.endpoint.backoff;
        match failures.checked_sub(self.endpoint.threshold) {
            None => backoff,
            Some(beyond) => backoff
                .saturating_mul(2u32.saturating_pow(beyond.saturating_add(1).min(16)))
                .min(MAX_BACKOFF.max(backoff)),
        }
    }

    /// Writes through the log that this endpoint received everything up to
    /// `through`, pruning what every endpoint received.
    async fn write_cursor(&self, through: u64) {
        let view = self.meta.local_view();
        let prune_through = self
            .all_endpoints
            .iter()
            .map(|name| {
                if name == self.name() {
                    through
                } else {
                    view.event_cursor(name).ok().flatten().unwrap_or(0)
                }
            })
            .min()
            .unwrap_or(0);
        let command = Command::EventsDelivered {
            endpoint: self.name().to_owned(),
            through,
            prune_through,
        };
        if let Err(e) = self.meta.propose(command).await {
            // Harmless: the events after the logged cursor are sent again.
            tracing::debug!(endpoint = self.name(), error = %e, "notifications: cursor not written");
        }
    }
}
