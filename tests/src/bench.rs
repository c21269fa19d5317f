//! `registry-bench`: drives any registry over the OCI API and measures the
//! workloads platform teams care about. Each workload reports throughput,
//! p50/p99 latency and errors; with the server's PID, its peak RSS.

use bytes::Bytes;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sizes and concurrency of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub blobs: usize,
    pub blob_size: usize,
    pub blob_clients: usize,
    pub big_blob: usize,
    pub big_chunk: usize,
    pub images: usize,
    pub manifest_clients: usize,
    pub manifest_gets: usize,
    pub repos: usize,
    pub tags_per_repo: usize,
    pub list_clients: usize,
    pub catalog_walks: usize,
    /// Bytes hashed to measure the single-core SHA-256 rate.
    pub sha256_sample: usize,
}

impl Sizes {
    /// The sizes the issue names.
    pub fn full() -> Self {
        Sizes {
            blobs: 512,
            blob_size: 1 << 20,
            blob_clients: 8,
            big_blob: 1 << 30,
            big_chunk: 8 << 20,
            images: 500,
            manifest_clients: 16,
            manifest_gets: 20_000,
            repos: 1000,
            tags_per_repo: 10,
            list_clients: 16,
            catalog_walks: 10,
            sha256_sample: 1 << 30,
        }
    }

    /// A smoke run that finishes in seconds (CI).
    pub fn tiny() -> Self {
        Sizes {
            blobs: 16,
            blob_size: 64 << 10,
            blob_clients: 4,
            big_blob: 3 << 20,
            big_chunk: 1 << 20,
            images: 10,
            manifest_clients: 4,
            manifest_gets: 100,
            repos: 5,
            tags_per_repo: 3,
            list_clients: 2,
            catalog_walks: 2,
            sha256_sample: 4 << 20,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub workload: String,
    /// `MB/s` or `req/s`.
    pub unit: String,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
}

/// Everything one run measured against one registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub figures: Vec<Figure>,
    /// The server's peak resident set (VmHWM), when its PID was given.
    pub peak_rss_bytes: Option<u64>,
    /// This machine's single-core SHA-256 rate, MB/s.
    pub sha256_mb_s: f64,
}

/// Latencies and errors of concurrent requests.
#[derive(Default)]
pub(crate) struct Samples {
    latencies: Mutex<Vec<Duration>>,
    errors: AtomicU64,
}

impl Samples {
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn record(&self, started: Instant, ok: bool) {
        if ok {
            self.latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(started.elapsed());
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn figure(
        &self,
        workload: &str,
        unit: &str,
        amount: f64,
        elapsed: Duration,
    ) -> Figure {
        let mut latencies = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        latencies.sort();
        let pct = |p: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[i].as_secs_f64() * 1000.0
        };
        Figure {
            workload: workload.to_owned(),
            unit: unit.to_owned(),
            throughput: amount / elapsed.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            requests: latencies.len() as u64,
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Deterministic bytes, distinct per seed (xorshift64*).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Single-core SHA-256 rate of this machine, MB/s (the limit of hashing one upload).
pub fn sha256_rate(bytes: usize) -> f64 {
    let block = pseudo_random(7, bytes.min(64 << 20));
    let rounds = bytes.div_ceil(block.len());
    let started = Instant::now();
    let mut hasher = Sha256::new();
    for _ in 0..rounds {
        hasher.update(&block);
    }
    std::hint::black_box(hasher.finalize());
    (rounds as f64 * block.len() as f64 / 1e6) / started.elapsed().as_secs_f64()
}

/// Peak resident set of a process, from `/proc/<pid>/status`.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(crate) struct Bench {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) progress: bool,
    pub(crate) prefix: String,
}

impl Bench {
    pub(crate) fn bar(&self, len: usize, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        bar
    }

    /// Runs `work(i)` for `i in 0..count` on `clients` concurrent workers.
    pub(crate) async fn concurrently<F, Fut>(
        &self,
        count: usize,
        clients: usize,
        what: &str,
        work: F,
    ) -> (Arc<Samples>, Duration)
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let samples = Arc::new(Samples::default());
        let next = Arc::new(AtomicUsize::new(0));
        let bar = self.bar(count, what);
        let work = Arc::new(work);
        let started = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (samples, next, bar, work) =
                    (samples.clone(), next.clone(), bar.clone(), work.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let began = Instant::now();
                        let ok = work(i).await;
                        samples.record(began, ok);
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.await;
        }
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        (samples, elapsed)
    }

    /// A monolithic push as every registry supports it: `POST` opens a
    /// session, one `PUT ?digest=` carries the whole blob. (The single-request
    /// `POST ?digest=` form is optional in the spec; distribution 2.8 lacks it.)
    pub(crate) async fn push_blob(
        http: &reqwest::Client,
        url: &str,
        repo: &str,
        data: Bytes,
    ) -> bool {
        let digest = sha256(&data);
        let Ok(started) = http
            .post(format!("{url}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
        else {
            return false;
        };
        let Some(location) = started
            .headers()
            .get("Location")
            .and_then(|l| l.to_str().ok())
        else {
            return false;
        };
        let location = absolute(url, location);
        let sep = if location.contains('?') { '&' } else { '?' };
        http.put(format!("{location}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
    }

    pub(crate) async fn get_len(
        http: &reqwest::Client,
        url: String,
        accept: Option<&str>,
    ) -> Option<u64> {
        let mut request = http.get(url);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let mut body = response.bytes_stream();
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            len += chunk.ok()?.len() as u64;
        }
        Some(len)
    }

    /// Workloads 1 and 2: small blobs pushed, then pulled.
    async fn blobs(&self, sizes: &Sizes) -> Vec<Figure> {
        let blobs: Arc<Vec<Bytes>> = Arc::new(
            (0..sizes.blobs)
                .map(|i| Bytes::from(pseudo_random(1000 + i as u64, sizes.blob_size)))
                .collect(),
        );
        let digests: Arc<Vec<String>> = Arc::new(blobs.iter().map(|b| sha256(b)).collect());
        let total_mb = (sizes.blobs * sizes.blob_size) as f64 / 1e6;
        let repo = format!("{}/blobs", self.prefix);
        let (http, url) = (self.http.clone(), self.url.clone());
        let (samples, elapsed) = {
            let (blobs, repo) = (blobs.clone(), repo.clone());
            self.concurrently(
                sizes.blobs,
                sizes.blob_clients,
                "1 MiB blob push",
                move |i| {
                    let (http, url, repo, data) =
                        (http.clone(), url.clone(), repo.clone(), blobs[i].clone());
                    async move { Self::push_blob(&http, &url, &repo, data).await }
                },
            )
            .await
        };
        let push = samples.figure("blob push (1 MiB, 8 clients)", "MB/s", total_mb, elapsed);
        let (http, url, size) = (self.http.clone(), self.url.clone(), sizes.blob_size as u64);
        let (samples, elapsed) = self
            .concurrently(
                sizes.blobs,
                sizes.blob_clients,
                "1 MiB blob pull",
                move |i| {
                    let (http, target) = (
                        http.clone(),
                        format!("{url}/v2/{repo}/blobs/{}", digests[i]),
                    );
                    async move { Self::get_len(&http, target, None).await == Some(size) }
                },
            )
            .await;
        let pull = samples.figure("blob pull (1 MiB, 8 clients)", "MB/s", total_mb, elapsed);
        vec![push, pull]
    }

    /// Workload 3: one large blob in chunks, then pulled back.
    async fn big_blob(&self, sizes: &Sizes) -> Vec<Figure> {
        let data = Bytes::from(pseudo_random(42, sizes.big_blob));
        let digest = sha256(&data);
        let repo = format!("{}/big", self.prefix);
        let bar = self.bar(
            sizes.big_blob.div_ceil(sizes.big_chunk),
            "1 GiB chunked push",
        );
        let samples = Samples::default();
        let started = Instant::now();
        let pushed: Option<()> = async {
            let start = self
                .http
                .post(format!("{}/v2/{repo}/blobs/uploads/", self.url))
                .send()
                .await
                .ok()?;
            let mut location = start.headers().get("Location")?.to_str().ok()?.to_owned();
            let mut offset = 0;
            while offset < data.len() {
                let end = (offset + sizes.big_chunk).min(data.len());
                let began = Instant::now();
                let response = self
                    .http
                    .patch(absolute(&self.url, &location))
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{}", end - 1))
                    .body(data.slice(offset..end))
                    .send()
                    .await
                    .ok()?;
                samples.record(began, response.status() == reqwest::StatusCode::ACCEPTED);
                location = response
                    .headers()
                    .get("Location")?
                    .to_str()
                    .ok()?
                    .to_owned();
                offset = end;
                bar.inc(1);
            }
            let sep = if location.contains('?') { '&' } else { '?' };
            let done = self
                .http
                .put(format!(
                    "{}{sep}digest={digest}",
                    absolute(&self.url, &location)
                ))
                .send()
                .await
                .ok()?;
            (done.status() == reqwest::StatusCode::CREATED).then_some(())
        }
        .await;
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        if pushed.is_none() {
            samples.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mb = sizes.big_blob as f64 / 1e6;
        let push = samples.figure("1 GiB push (8 MiB chunks)", "MB/s", mb, elapsed);
        let samples = Samples::default();
        let began = Instant::now();
        let len = Self::get_len(
            &self.http,
            format!("{}/v2/{repo}/blobs/{digest}", self.url),
            None,
        )
        .await;
        samples.record(began, len == Some(sizes.big_blob as u64));
        let pull = samples.figure("1 GiB pull", "MB/s", mb, began.elapsed());
        vec![push, pull]
    }

    /// Workload 4: small images pushed, then manifests fetched by tag.
    async fn images(&self, sizes: &Sizes) -> Vec<Figure> {
        let (http, url, prefix) = (self.http.clone(), self.url.clone(), self.prefix.clone());
        let (samples, elapsed) = self
            .concurrently(
                sizes.images,
                sizes.manifest_clients,
                "small image push",
                move |i| {
                    let (http, url, repo) = (http.clone(), url.clone(), format!("{prefix}/images"));
                    async move { push_image(&http, &url, &repo, &format!("v{i}"), i as u64).await }
                },
            )
            .await;
        let push = samples.figure(
            "small image push (config + 2 layers + tag)",
            "req/s",
            sizes.images as f64,
            elapsed,
        );
        let (http, url, prefix, images) = (
            self.http.clone(),
            self.url.clone(),
            self.prefix.clone(),
            sizes.images,
        );
        let (samples, elapsed) = self
            .concurrently(
                sizes.manifest_gets,
                sizes.manifest_clients,
                "manifest GET by tag",
                move |i| {
                    let (http, target) = (
                        http.clone(),
                        format!("{url}/v2/{prefix}/images/manifests/v{}", i % images),
                    );
                    async move {
                        Self::get_len(&http, target, Some(OCI_MANIFEST))
                            .await
                            .is_some()
                    }
                },
            )
            .await;
        let get = samples.figure(
            "manifest GET by tag (16 clients)",
            "req/s",
            sizes.manifest_gets as f64,
            elapsed,
        );
        let digests: Vec<String> = (0..images as u64)
            .map(|seed| sha256(image(seed).1.as_bytes()))
            .collect();
        let (http, url, prefix) = (self.http.clone(), self.url.clone(), self.prefix.clone());
        let digests = std::sync::Arc::new(digests);
        let (samples, elapsed) = self
            .concurrently(
                sizes.manifest_gets,
                sizes.manifest_clients,
                "manifest GET by digest",
                move |i| {
                    let (http, target) = (
                        http.clone(),
                        format!(
                            "{url}/v2/{prefix}/images/manifests/{}",
                            digests[i % digests.len()]
                        ),
                    );
                    async move {
                        Self::get_len(&http, target, Some(OCI_MANIFEST))
                            .await
                            .is_some()
                    }
                },
            )
            .await;
        let by_digest = samples.figure(
            "manifest GET by digest (16 clients)",
            "req/s",
            sizes.manifest_gets as f64,
            elapsed,
        );
        vec![push, get, by_digest]
    }

    /// Workload 5: tags lists and catalog pages over many repositories.
    async fn listings(&self, sizes: &Sizes) -> Vec<Figure> {
        let (http, url, prefix, tags) = (
            self.http.clone(),
            self.url.clone(),
            self.prefix.clone(),
            sizes.tags_per_repo,
        );
        self.concurrently(
            sizes.repos,
            sizes.list_clients,
            "listing setup (repos × tags)",
            move |i| {
                let (http, url, repo) =
                    (http.clone(), url.clone(), format!("{prefix}/lists/r{i:05}"));
                async move {
                    let mut ok = true;
                    for t in 0..tags {
                        ok &= push_image(&http, &url, &repo, &format!("t{t:03}"), 0).await;
                    }
                    ok
                }
            },
        )
        .await;
        let (http, url, prefix) = (self.http.clone(), self.url.clone(), self.prefix.clone());
        let (samples, elapsed) = self
            .concurrently(sizes.repos, sizes.list_clients, "tags list", move |i| {
                let (http, target) = (
                    http.clone(),
                    format!("{url}/v2/{prefix}/lists/r{i:05}/tags/list"),
                );
                async move { Self::get_len(&http, target, None).await.is_some() }
            })
            .await;
        let tags_list = samples.figure("tags list", "req/s", sizes.repos as f64, elapsed);
        let (http, url) = (self.http.clone(), self.url.clone());
        let pages = Arc::new(AtomicU64::new(0));
        let counted = pages.clone();
        let (samples, elapsed) = self
            .concurrently(sizes.catalog_walks, 1, "catalog walk (n=100)", move |_| {
                let (http, url, counted) = (http.clone(), url.clone(), counted.clone());
                async move {
                    let mut next = Some(format!("{url}/v2/_catalog?n=100"));
                    while let Some(page) = next.take() {
                        let Ok(response) = http.get(&page).send().await else {
                            return false;
                        };
                        if !response.status().is_success() {
                            return false;
                        }
                        counted.fetch_add(1, Ordering::Relaxed);
                        next = response
                            .headers()
                            .get("Link")
                            .and_then(|l| l.to_str().ok())
                            .and_then(|l| l.split(['<', '>']).nth(1))
                            .map(|path| absolute(&url, path));
                        let _ = response.bytes().await;
                    }
                    true
                }
            })
            .await;
        let mut catalog = samples.figure(
            "catalog pages (n=100)",
            "req/s",
            pages.load(Ordering::Relaxed) as f64,
            elapsed,
        );
        // Latency here is per full walk; report it per page like the others.
        let per_walk =
            (pages.load(Ordering::Relaxed) as f64 / sizes.catalog_walks.max(1) as f64).max(1.0);
        catalog.p50_ms /= per_walk;
        catalog.p99_ms /= per_walk;
        vec![tags_list, catalog]
    }
}

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// The blobs and manifest bytes of benchmark image `seed` (deterministic,
/// so a reader can name the manifest by digest without asking).
fn image(seed: u64) -> (Vec<Bytes>, String) {
    let config = Bytes::from(format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}"
    ));
    let layers = [
        Bytes::from(pseudo_random(seed * 2 + 1, 4096)),
        Bytes::from(pseudo_random(seed * 2 + 2, 4096)),
    ];
    image_of(config, &layers)
}

/// An image of `config` and `layers`: its blobs, config first, and its
/// manifest.
pub(crate) fn image_of(config: Bytes, layers: &[Bytes]) -> (Vec<Bytes>, String) {
    let descriptor = |media: &str, b: &Bytes| serde_json::json!({"mediaType": media, "digest": sha256(b), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    });
    let mut blobs = vec![config];
    blobs.extend_from_slice(layers);
    (blobs, manifest.to_string())
}

/// Pushes config, two layers and a manifest tagged `tag`; true on success.
async fn push_image(http: &reqwest::Client, url: &str, repo: &str, tag: &str, seed: u64) -> bool {
    push_blobs_and_manifest(http, url, repo, tag, image(seed)).await
}

/// Pushes an image's blobs, then its manifest tagged `tag`; true on success.
pub(crate) async fn push_blobs_and_manifest(
    http: &reqwest::Client,
    url: &str,
    repo: &str,
    tag: &str,
    (blobs, manifest): (Vec<Bytes>, String),
) -> bool {
    for blob in blobs {
        if !Bench::push_blob(http, url, repo, blob).await {
            return false;
        }
    }
    http.put(format!("{url}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
}

/// A namespace of its own for each run, so runs against one registry do
/// not collide.
pub(crate) fn fresh_namespace() -> String {
    format!(
        "bench{}",
        std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
    )
}

/// Runs every workload against the registry at `url`.
pub async fn run(
    label: &str,
    url: &str,
    pid: Option<u32>,
    sizes: &Sizes,
    progress: bool,
) -> Report {
    run_workloads(label, url, pid, sizes, progress, &Workload::ALL, None).await
}

/// The groups of workloads, to run one alone (when profiling one figure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 1 MiB blobs pushed and pulled by concurrent clients.
    Blobs,
    /// One big blob pushed in chunks and pulled back.
    BigBlob,
    /// Small images pushed, then manifest GETs by tag.
    Images,
    /// Tags lists and catalog pages.
    Listings,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Blobs,
        Workload::BigBlob,
        Workload::Images,
        Workload::Listings,
    ];
}

/// [`run`], restricted to `workloads`; an `https` URL is trusted through
/// `ca` alone when one is given.
pub async fn run_workloads(
    label: &str,
    url: &str,
    pid: Option<u32>,
    sizes: &Sizes,
    progress: bool,
    workloads: &[Workload],
    ca: Option<reqwest::Certificate>,
) -> Report {
    let mut http = reqwest::Client::builder().pool_max_idle_per_host(64);
    if let Some(ca) = ca {
        http = http.tls_certs_only([ca]);
    }
    let bench = Bench {
        url: url.trim_end_matches('/').to_owned(),
        http: http.build().expect("http client"),
        progress,
        prefix: fresh_namespace(),
    };
    let mut figures = Vec::new();
    for workload in workloads {
        figures.extend(match workload {
            Workload::Blobs => bench.blobs(sizes).await,
            Workload::BigBlob => bench.big_blob(sizes).await,
            Workload::Images => bench.images(sizes).await,
            Workload::Listings => bench.listings(sizes).await,
        });
    }
    Report {
        label: label.to_owned(),
        url: url.to_owned(),
        figures,
        peak_rss_bytes: pid.and_then(peak_rss),
        sha256_mb_s: sha256_rate(sizes.sha256_sample),
    }
}

/// The side-by-side table of two reports: every figure with ours/reference.
pub fn table(ours: &Report, reference: &Report) -> String {
    let mut out = format!(
        "{:<44} {:>7} {:>12} {:>12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}\n",
        "workload",
        "unit",
        ours.label,
        reference.label,
        "ratio",
        "p50 ours",
        "p50 ref",
        "p99 ours",
        "p99 ref",
        "errors"
    );
    for mine in &ours.figures {
        let Some(theirs) = reference
            .figures
            .iter()
            .find(|f| f.workload == mine.workload)
        else {
            continue;
        };
        out.push_str(&format!(
            "{:<44} {:>7} {:>12.1} {:>12.1} {:>6.2}x {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>3}/{:<3}\n",
            mine.workload,
            mine.unit,
            mine.throughput,
            theirs.throughput,
            mine.throughput / theirs.throughput.max(f64::MIN_POSITIVE),
            mine.p50_ms,
            theirs.p50_ms,
            mine.p99_ms,
            theirs.p99_ms,
            mine.errors,
            theirs.errors,
        ));
    }
    let mib = |b: Option<u64>| {
        b.map_or("n/a".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
        })
    };
    out.push_str(&format!(
        "peak RSS: {} {}, {} {}\n",
        ours.label,
        mib(ours.peak_rss_bytes),
        reference.label,
        mib(reference.peak_rss_bytes),
    ));
    if ours.sha256_mb_s > 0.0 {
        out.push_str(&format!(
            "single-core SHA-256: {:.0} MB/s\n",
            ours.sha256_mb_s
        ));
    }
    out
}

/// Failover under load: pushes small blobs through the followers of the
/// cluster whose nodes serve `urls` (node `i + 1` at `urls[i]`, its debug
/// listener at `debugs[i]`, its process `pids[i]`), kills the leader with
/// SIGKILL, and answers how long after the kill the next push was
/// acknowledged, and the index of the node it killed.
pub async fn failover(urls: &[String], debugs: &[String], pids: &[u32]) -> (Duration, usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client");
    let status: serde_json::Value = http
        .get(format!("{}/cluster/status", debugs[0]))
        .send()
        .await
        .expect("cluster status")
        .json()
        .await
        .expect("status JSON");
    let leader = status["leader"].as_u64().expect("a leader") as usize - 1;
    let followers: Vec<String> = (0..urls.len())
        .filter(|i| *i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pushers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (http, followers, acknowledged, stop) = (
                http.clone(),
                followers.clone(),
                acknowledged.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let url = &followers[(worker + n) as usize % followers.len()];
                    let blob = Bytes::from(pseudo_random(worker << 32 | n, 1024));
                    if Bench::push_blob(&http, url, "bench/failover", blob).await {
                        acknowledged
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Instant::now());
                    }
                }
            })
        })
        .collect();
    // The load is under way once the followers have acknowledged some pushes.
    let warm = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap_or_else(|p| p.into_inner()).len() < 50 {
        assert!(
            Instant::now() < warm,
            "the followers acknowledged no pushes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval
    }
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &pids[leader].to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "could not kill the leader");
    let deadline = killed + Duration::from_secs(60);
    let resumed = loop {
        let next = acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .find(|t| *t > killed);
        if let Some(t) = next {
            break t - killed;
        }
        assert!(Instant::now() < deadline, "pushes never resumed");
        tokio::time::sleep(Duration::from_millis(5)).await; // poll interval
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for pusher in pushers {
        let _ = pusher.await;
    }
    (resumed, leader)
}
