//! `registry-bench gc`: a store of many small images, a tenth of them
//! deleted, then collections timed, alone and under a push-and-pull load,
//! against the same load without a collection. The registry runs with
//! `storage.gc.delay: 0s`, a short `grace` and scheduled collections off,
//! so the garbage is due at once.

use crate::bench::{pseudo_random, sha256};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The store and the load.
#[derive(Debug, Clone)]
pub struct GcSizes {
    pub manifests: usize,
    pub blobs_per_manifest: usize,
    pub blob_size: usize,
    /// One manifest in this many is deleted, with every blob it has.
    pub garbage_every: usize,
    pub clients: usize,
    /// Pushes and pulls the load completes without a collection, for the baseline.
    pub baseline_operations: u64,
}

impl GcSizes {
    /// The store: 10,000 manifests, 100,000 blobs, a tenth garbage.
    pub fn full() -> Self {
        GcSizes {
            manifests: 10_000,
            blobs_per_manifest: 10,
            blob_size: 1024,
            garbage_every: 10,
            clients: 32,
            baseline_operations: 4000,
        }
    }

    pub fn tiny() -> Self {
        GcSizes {
            manifests: 40,
            blobs_per_manifest: 3,
            blob_size: 256,
            garbage_every: 10,
            clients: 4,
            baseline_operations: 100,
        }
    }
}

/// What the workload measured.
#[derive(Debug, Clone, Serialize)]
pub struct GcFigures {
    pub manifests: usize,
    pub blobs: usize,
    pub garbage_blobs: usize,
    pub populate_seconds: f64,
    /// The collection that plans over the whole store and hides the garbage.
    pub hide_seconds: f64,
    pub hidden: usize,
    /// The collection that condemns and deletes it, run under the load.
    pub sweep_seconds: f64,
    pub removed: usize,
    pub bytes_reclaimed: u64,
    /// Image pushes and pulls per second without a collection, and while
    /// the sweeping collection ran.
    pub pushes_per_s: f64,
    pub pulls_per_s: f64,
    pub pushes_per_s_during: f64,
    pub pulls_per_s_during: f64,
    pub load_errors: u64,
    /// Storage `list` operations while the hiding collection ran alone.
    pub lists_during_collection: u64,
}

impl GcFigures {
    pub fn push_drop(&self) -> f64 {
        1.0 - self.pushes_per_s_during / self.pushes_per_s
    }

    pub fn pull_drop(&self) -> f64 {
        1.0 - self.pulls_per_s_during / self.pulls_per_s
    }
}

fn image(seed: u64, blobs: usize, size: usize) -> (Vec<Bytes>, Vec<u8>) {
    let blobs: Vec<Bytes> = (0..blobs as u64)
        .map(|n| Bytes::from(pseudo_random(seed * 1000 + n + 1, size)))
        .collect();
    let descriptor = |media: &str, b: &Bytes| serde_json::json!({"mediaType": media, "digest": sha256(b), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &blobs[0]),
        "layers": blobs[1..].iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    });
    (blobs, serde_json::to_vec(&manifest).expect("json"))
}

struct Target {
    http: reqwest::Client,
    url: String,
    debug: String,
}

impl Target {
    async fn push(&self, repo: &str, tag: &str, blobs: &[Bytes], manifest: &[u8]) -> bool {
        for blob in blobs {
            let url = format!(
                "{}/v2/{repo}/blobs/uploads/?digest={}",
                self.url,
                sha256(blob)
            );
            let pushed = self.http.post(url).body(blob.clone()).send().await;
            if !pushed.is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED) {
                return false;
            }
        }
        self.http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.url))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.to_vec())
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
    }

    async fn pull(&self, repo: &str, tag: &str, blob: &str) -> bool {
        let manifest = self
            .http
            .get(format!("{}/v2/{repo}/manifests/{tag}", self.url))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await;
        if !manifest.is_ok_and(|r| r.status().is_success()) {
            return false;
        }
        let blob = self
            .http
            .get(format!("{}/v2/{repo}/blobs/{blob}", self.url))
            .send()
            .await;
        match blob {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        }
    }

    async fn collect(&self, dry_run: bool) -> serde_json::Value {
        let answer = self
            .http
            .post(format!("{}/gc?dryrun={dry_run}", self.debug))
            .send()
            .await
            .expect("POST /gc");
        assert!(
            answer.status().is_success(),
            "POST /gc: {}",
            answer.status()
        );
        answer.json().await.expect("a JSON report")
    }

    /// Storage `list` operations so far, over every backend.
    async fn lists(&self) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.debug))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("registry_storage_operations_total")
                    && l.contains("operation=\"list\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// What the load has done so far.
#[derive(Default)]
struct Done {
    pushes: AtomicU64,
    pulls: AtomicU64,
    errors: AtomicU64,
}

impl Done {
    fn operations(&self) -> u64 {
        self.pushes.load(Ordering::Relaxed) + self.pulls.load(Ordering::Relaxed)
    }
}

/// Pushes and pulls until `stop`: half the clients push fresh small images,
/// half pull kept ones, counting into `done`.
async fn load(
    target: Arc<Target>,
    sizes: GcSizes,
    kept: Arc<Vec<(String, String, String)>>,
    stop: Arc<AtomicBool>,
    done: Arc<Done>,
) {
    let mut workers = Vec::new();
    for worker in 0..sizes.clients {
        let (target, kept, stop, done) = (target.clone(), kept.clone(), stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (ok, counter) = if worker % 2 == 0 {
                    let seed = 1_000_000 + (worker as u64) * 1_000_000 + n;
                    let (blobs, manifest) = image(seed, 2, 4096);
                    let tag = format!("w{worker}-{n}");
                    (
                        target.push("gcbench/load", &tag, &blobs, &manifest).await,
                        &done.pushes,
                    )
                } else {
                    let (repo, tag, blob) = &kept[(n as usize * 7919 + worker) % kept.len()];
                    (target.pull(repo, tag, blob).await, &done.pulls)
                };
                let counter = if ok { counter } else { &done.errors };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
}

/// Runs the load while `during` runs (it sees what the load has done);
/// answers pushes/s, pulls/s, errors, and what `during` answered.
async fn under_load<F, Fut, T>(
    target: &Arc<Target>,
    sizes: &GcSizes,
    kept: &Arc<Vec<(String, String, String)>>,
    during: F,
) -> (f64, f64, u64, T)
where
    F: FnOnce(Arc<Done>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Done::default());
    let running = tokio::spawn(load(
        target.clone(),
        sizes.clone(),
        kept.clone(),
        stop.clone(),
        done.clone(),
    ));
    let started = Instant::now();
    let answer = during(done.clone()).await;
    let window = started.elapsed().as_secs_f64();
    let (pushes, pulls) = (
        done.pushes.load(Ordering::Relaxed),
        done.pulls.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    running.await.expect("load");
    (
        pushes as f64 / window,
        pulls as f64 / window,
        done.errors.load(Ordering::Relaxed),
        answer,
    )
}

pub async fn run(url: &str, debug: &str, sizes: &GcSizes, progress: bool) -> GcFigures {
    let target = Arc::new(Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client"),
        url: url.trim_end_matches('/').to_owned(),
        debug: debug.trim_end_matches('/').to_owned(),
    });
    let say = |what: String| {
        if progress {
            eprintln!("{what}");
        }
    };
    let started = Instant::now();
    let pushed: Vec<_> = futures::stream::iter(0..sizes.manifests)
        .map(|i| {
            let target = target.clone();
            let sizes = sizes.clone();
            async move {
                let (blobs, manifest) = image(i as u64, sizes.blobs_per_manifest, sizes.blob_size);
                let repo = format!("gcbench/r{}", i % 100);
                let tag = format!("m{i}");
                assert!(
                    target.push(&repo, &tag, &blobs, &manifest).await,
                    "push {repo}:{tag}"
                );
                (repo, tag, sha256(&blobs[1]), sha256(&manifest))
            }
        })
        .buffer_unordered(sizes.clients)
        .collect()
        .await;
    let mut kept = Vec::new();
    let mut garbage_blobs = 0;
    for (n, (repo, tag, blob, digest)) in pushed.into_iter().enumerate() {
        if n % sizes.garbage_every == 0 {
            let deleted = target
                .http
                .delete(format!("{}/v2/{repo}/manifests/{digest}", target.url))
                .send()
                .await
                .expect("DELETE manifest");
            assert!(deleted.status().is_success(), "DELETE {repo}@{digest}");
            garbage_blobs += sizes.blobs_per_manifest;
        } else {
            kept.push((repo, tag, blob));
        }
    }
    let populate_seconds = started.elapsed().as_secs_f64();
    say(format!(
        "populated {} manifests in {populate_seconds:.1} s",
        sizes.manifests
    ));
    let kept = Arc::new(kept);

    let operations = sizes.baseline_operations;
    let (pushes_per_s, pulls_per_s, baseline_errors, counted) =
        under_load(&target, sizes, &kept, |done| async move {
            crate::eventually(Duration::from_secs(600), || {
                let done = done.clone();
                async move { done.operations() >= operations }
            })
            .await
        })
        .await;
    assert!(
        counted,
        "the load did not complete {operations} operations in 10 minutes"
    );
    say(format!(
        "baseline: {pushes_per_s:.0} pushes/s, {pulls_per_s:.0} pulls/s"
    ));

    let lists_before = target.lists().await;
    let hide_started = Instant::now();
    let hiding = target.collect(false).await;
    let hide_seconds = hide_started.elapsed().as_secs_f64();
    let lists_during_collection = target.lists().await - lists_before;
    let hidden = hiding["hidden"].as_array().map_or(0, Vec::len);
    say(format!("hide: {hidden} blobs in {hide_seconds:.2} s"));

    let past_grace = crate::eventually(Duration::from_secs(600), || async {
        target.collect(true).await["hidden_in_grace"] == 0
    })
    .await;
    assert!(past_grace, "the hidden blobs never passed storage.gc.grace");
    let sweep_started = Instant::now();
    let sweeper = target.clone();
    let (pushes_per_s_during, pulls_per_s_during, errors, sweeping) =
        under_load(&target, sizes, &kept, |done| async move {
            // The collection starts once the load is under way (a push and
            // a pull done), so even a tiny store's sweep, over in
            // milliseconds, has load in its window.
            let under_way = crate::eventually(Duration::from_secs(60), || async {
                done.pushes.load(Ordering::Relaxed) > 0 && done.pulls.load(Ordering::Relaxed) > 0
            })
            .await;
            assert!(under_way, "the load did not start");
            sweeper.collect(false).await
        })
        .await;
    let sweep_seconds = sweep_started.elapsed().as_secs_f64();
    let removed = sweeping["removed"].as_array().map_or(0, Vec::len);
    say(format!("sweep: {removed} blobs in {sweep_seconds:.2} s"));
    GcFigures {
        manifests: sizes.manifests,
        blobs: sizes.manifests * sizes.blobs_per_manifest,
        garbage_blobs,
        populate_seconds,
        hide_seconds,
        hidden,
        sweep_seconds,
        removed,
        bytes_reclaimed: sweeping["bytes_reclaimed"].as_u64().unwrap_or(0),
        pushes_per_s,
        pulls_per_s,
        pushes_per_s_during,
        pulls_per_s_during,
        load_errors: baseline_errors + errors,
        lists_during_collection,
    }
}
