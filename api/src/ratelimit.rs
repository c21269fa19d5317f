//! Per-client limits on requests and bytes (`http.ratelimit`): a token
//! bucket per user who logged in, or per address for anonymous callers.
//! Over the limit, a request is answered 429 `TOOMANYREQUESTS` with the
//! seconds until it would pass in `Retry-After`; nothing else is done.
//!
//! Bytes are charged after the request, by its `Content-Length` and its
//! answer's, so a bucket may go into debt: the next request waits until
//! the debt is paid back. (governor, the usual crate, cannot charge after
//! the fact; this bucket is twenty lines.) Limits are per node.
//!
//! A request refused by authentication is charged to its address, and an
//! address out of requests is answered 429 before its credentials are
//! checked: failed logins from one address run out like any request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before the full (idle) ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitConfig {
    pub requests: Option<Rate>,
    /// Bytes received plus bytes sent.
    pub bandwidth: Option<Rate>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
    }

    /// How long until `cost` tokens are there (zero: now).
    fn wait_for(&self, rate: Rate, cost: f64) -> Duration {
        let missing = cost - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / rate.per_second)
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Bandwidth,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Bandwidth => "bandwidth",
        }
    }
}

#[derive(Default)]
struct Buckets {
    requests: HashMap<String, Bucket>,
    bandwidth: HashMap<String, Bucket>,
}

pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<Buckets>,
    refused: prometheus::IntCounterVec,
}

impl RateLimiter {
    pub fn new(
        config: RateLimitConfig,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "registry_ratelimit_refused_total",
                "Requests answered 429, by the limit they were over (requests or bandwidth)",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        Ok(RateLimiter {
            config,
            buckets: Mutex::new(Buckets::default()),
            refused,
        })
    }

    /// Takes one request from `client`'s budget, or answers which limit it
    /// is over and how long until it would pass.
    pub fn admit(&self, client: &str) -> Result<(), (Limit, Duration)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rate) = self.config.bandwidth {
            let bucket = buckets
                .bandwidth
                .entry(client.to_owned())
                .or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            // In debt from earlier transfers: wait until it is paid back.
            let wait = bucket.wait_for(rate, 0.0);
            if !wait.is_zero() {
                self.refused
                    .with_label_values(&[Limit::Bandwidth.name()])
                    .inc();
                return Err((Limit::Bandwidth, wait));
            }
        }
        if let Some(rate) = self.config.requests {
            let bucket = buckets
                .requests
                .entry(client.to_owned())
                .or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            let wait = bucket.wait_for(rate, 1.0);
            if !wait.is_zero() {
                self.refused
                    .with_label_values(&[Limit::Requests.name()])
                    .inc();
                return Err((Limit::Requests, wait));
            }
            bucket.tokens -= 1.0;
        }
        prune(&mut buckets, &self.config, now);
        Ok(())
    }

    /// Whether `client` is out of requests, without taking one: checked
    /// for an address before its credentials are (so repeated failed
    /// logins are answered 429 before any password check).
    pub fn exhausted(&self, client: &str) -> Result<(), (Limit, Duration)> {
        let Some(rate) = self.config.requests else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = buckets.requests.get_mut(client) else {
            return Ok(());
        };
        bucket.refill(rate, now);
        let wait = bucket.wait_for(rate, 1.0);
        if wait.is_zero() {
            Ok(())
        } else {
            self.refused
                .with_label_values(&[Limit::Requests.name()])
                .inc();
            Err((Limit::Requests, wait))
        }
    }

    /// Charges `bytes` moved by a finished request to `client`.
    pub fn charge(&self, client: &str, bytes: u64) {
        let Some(rate) = self.config.bandwidth else {
            return;
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .bandwidth
            .entry(client.to_owned())
            .or_insert_with(|| Bucket::full(rate, now));
        bucket.refill(rate, now);
        bucket.tokens -= bytes as f64;
    }
}

/// Drops the buckets that refilled (idle clients) once too many are kept.
fn prune(buckets: &mut Buckets, config: &RateLimitConfig, now: Instant) {
    for (map, rate) in [
        (&mut buckets.requests, config.requests),
        (&mut buckets.bandwidth, config.bandwidth),
    ] {
        let Some(rate) = rate else { continue };
        if map.len() > MAX_TRACKED {
            map.retain(|_, bucket| {
                bucket.refill(rate, now);
                bucket.tokens < rate.burst
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: Option<Rate>, bandwidth: Option<Rate>) -> RateLimiter {
        RateLimiter::new(
            RateLimitConfig {
                requests,
                bandwidth,
            },
            &prometheus::Registry::new(),
        )
        .unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_and_others_are_unaffected() {
        let limits = limiter(
            Some(Rate {
                per_second: 1.0,
                burst: 3.0,
            }),
            None,
        );
        for _ in 0..3 {
            assert!(limits.admit("alice").is_ok());
        }
        let (limit, wait) = limits.admit("alice").unwrap_err();
        assert_eq!(limit, Limit::Requests);
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limits.admit("bob").is_ok());
    }

    #[test]
    fn bytes_beyond_the_burst_put_the_client_in_debt_until_paid_back() {
        let limits = limiter(
            None,
            Some(Rate {
                per_second: 1000.0,
                burst: 1000.0,
            }),
        );
        assert!(limits.admit("alice").is_ok());
        limits.charge("alice", 3000);
        let (limit, wait) = limits.admit("alice").unwrap_err();
        assert_eq!(limit, Limit::Bandwidth);
        assert!(
            wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert!(limits.admit("bob").is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten_once_many_are_tracked() {
        let limits = limiter(
            Some(Rate {
                per_second: 1e9,
                burst: 1.0,
            }),
            None,
        );
        for i in 0..=MAX_TRACKED + 1 {
            assert!(limits.admit(&format!("client-{i}")).is_ok());
        }
        let kept = limits.buckets.lock().unwrap().requests.len();
        assert!(kept < MAX_TRACKED, "{kept}");
    }
}
