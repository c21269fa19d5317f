//! `registry-bench cache`: images pulled through a pull-through cache, cold
//! (every blob fetched from the upstream) and warm (served as cached), and
//! one cold image pulled by many clients at once, against the same images
//! pulled from the upstream directly. Run against two caches of one
//! upstream (ours and distribution's `proxy`), the reports compare in a
//! table like any other.

use crate::bench::{
    fresh_namespace, image_of, pseudo_random, push_blobs_and_manifest, Bench, Report, OCI_MANIFEST,
};
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct CacheSizes {
    /// Images, each a config and one layer.
    pub images: usize,
    pub layer: usize,
    /// Clients pulling different images at once.
    pub clients: usize,
    /// Clients pulling the same cold image at once.
    pub same_image_clients: usize,
}

impl CacheSizes {
    pub fn full() -> Self {
        CacheSizes {
            images: 32,
            layer: 8 << 20,
            clients: 8,
            same_image_clients: 16,
        }
    }

    pub fn tiny() -> Self {
        CacheSizes {
            images: 4,
            layer: 256 << 10,
            clients: 2,
            same_image_clients: 4,
        }
    }
}

/// The config and layer of image `seed`, and its manifest.
fn image(seed: u64, layer: usize) -> (Vec<Bytes>, String) {
    let config = Bytes::from(format!("{{\"os\":\"linux\",\"cache-bench\":{seed}}}"));
    image_of(config, &[Bytes::from(pseudo_random(7_000 + seed, layer))])
}

async fn push(http: &reqwest::Client, url: &str, repo: &str, seed: u64, layer: usize) -> bool {
    push_blobs_and_manifest(http, url, repo, "v1", image(seed, layer)).await
}

/// Pulls `repo:v1` as a client does (manifest by tag, then its blobs) and
/// checks every length; the bytes pulled, or `None` on any failure.
async fn pull(http: &reqwest::Client, url: &str, repo: &str) -> Option<u64> {
    let response = http
        .get(format!("{url}/v2/{repo}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let manifest: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    let mut pulled = 0;
    let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array()?);
    for blob in blobs {
        let (digest, size) = (blob["digest"].as_str()?, blob["size"].as_u64()?);
        let got = Bench::get_len(http, format!("{url}/v2/{repo}/blobs/{digest}"), None).await?;
        if got != size {
            return None;
        }
        pulled += got;
    }
    Some(pulled)
}

/// Pushes the images into `upstream`, then pulls them from it directly,
/// through the cache at `cache` cold, and again warm; then one more image
/// by many clients at once through the cache.
/// With the cache's `pid`, its peak RSS is reported too.
pub async fn run(
    label: &str,
    upstream: &str,
    cache: &str,
    pid: Option<u32>,
    sizes: &CacheSizes,
    progress: bool,
) -> Report {
    let bench = Bench {
        url: upstream.trim_end_matches('/').to_owned(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client"),
        progress,
        prefix: fresh_namespace(),
    };
    let cache = cache.trim_end_matches('/').to_owned();
    let layer = sizes.layer;
    let repo = {
        let prefix = bench.prefix.clone();
        Arc::new(move |i: usize| format!("{prefix}/app{i}"))
    };
    let image_mb = (sizes.images as f64) * (layer as f64) / 1e6;
    let (http, url) = (bench.http.clone(), bench.url.clone());
    let named = repo.clone();
    let (samples, _) = bench
        .concurrently(
            sizes.images + 1,
            sizes.clients,
            "push into the upstream",
            move |i| {
                let (http, url, repo) = (http.clone(), url.clone(), named(i));
                async move { push(&http, &url, &repo, i as u64, layer).await }
            },
        )
        .await;
    let mut figures = Vec::new();
    let pulls = |target: String, what: &'static str| {
        let (http, repo) = (bench.http.clone(), repo.clone());
        bench.concurrently(sizes.images, sizes.clients, what, move |i| {
            let (http, target, repo) = (http.clone(), target.clone(), repo(i));
            async move { pull(&http, &target, &repo).await.is_some() }
        })
    };
    let clients = sizes.clients;
    let passes = [
        (bench.url.clone(), "direct pull"),
        (cache.clone(), "cold pull through the cache"),
        (cache.clone(), "warm pull through the cache"),
    ];
    for (target, what) in passes {
        let (samples, elapsed) = pulls(target, what).await;
        let workload = format!("{what} ({clients} clients)");
        figures.push(samples.figure(&workload, "MB/s", image_mb, elapsed));
    }

    let together = sizes.same_image_clients;
    let (http, last) = (bench.http.clone(), Arc::new(repo(sizes.images)));
    let (same, elapsed) = bench
        .concurrently(
            together,
            together,
            "one cold image, many clients",
            move |_| {
                let (http, cache, last) = (http.clone(), cache.clone(), last.clone());
                async move { pull(&http, &cache, &last).await.is_some() }
            },
        )
        .await;
    figures.push(same.figure(
        &format!("one cold image, {together} clients at once"),
        "MB/s",
        (together as f64) * (layer as f64) / 1e6,
        elapsed,
    ));
    if let Some(first) = figures.first_mut() {
        // A failed push shows as the direct pull's errors.
        first.errors += samples.errors();
    }
    Report {
        label: label.to_owned(),
        url: bench.url,
        figures,
        peak_rss_bytes: pid.and_then(crate::bench::peak_rss),
        // Not measured: the table leaves it out.
        sha256_mb_s: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sha256;

    #[test]
    fn an_image_names_its_blobs_by_digest() {
        let (blobs, manifest) = image(3, 1000);
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], sha256(&blobs[0]));
        assert_eq!(manifest["layers"][0]["digest"], sha256(&blobs[1]));
        assert_eq!(manifest["layers"][0]["size"], 1000);
        assert_ne!(image(4, 1000).0[1], blobs[1], "each image its own layer");
    }
}
