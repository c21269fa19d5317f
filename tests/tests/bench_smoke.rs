//! The benchmark at a tiny size against our registry, so it cannot rot.

use registry_tests::bench::{self, Sizes};
use registry_tests::TestNode;

#[tokio::test(flavor = "multi_thread")]
async fn the_benchmark_runs_every_workload_without_errors() {
    let node = TestNode::start();
    let report = bench::run(
        "ours",
        &node.base_url(),
        Some(std::process::id()),
        &Sizes::tiny(),
        false,
    )
    .await;
    let workloads: Vec<_> = report.figures.iter().map(|f| f.workload.as_str()).collect();
    assert_eq!(workloads.len(), 9, "{workloads:?}");
    for figure in &report.figures {
        assert_eq!(figure.errors, 0, "{figure:?}");
        assert!(figure.requests > 0 && figure.throughput > 0.0, "{figure:?}");
        assert!(figure.p50_ms <= figure.p99_ms, "{figure:?}");
    }
    assert!(report.peak_rss_bytes.unwrap() > 0);
    assert!(report.sha256_mb_s > 0.0);
    let table = bench::table(&report, &report);
    assert!(table.contains("1.00x"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gc_benchmark_collects_exactly_the_garbage_without_listing_storage() {
    let node = TestNode::start_with(|config| {
        config.api.delete_enabled = true;
        config.gc.enabled = false;
        config.gc.delay = std::time::Duration::ZERO;
        config.gc.grace = std::time::Duration::from_millis(300);
    });
    let sizes = registry_tests::gc_bench::GcSizes::tiny();
    let f = registry_tests::gc_bench::run(&node.base_url(), &node.debug_url(), &sizes, false).await;
    assert_eq!(f.garbage_blobs, 12, "{f:?}");
    // Blobs a load client pushed when the load stopped, before its
    // manifest, are garbage too.
    assert!(f.hidden >= f.garbage_blobs, "{f:?}");
    assert!(f.removed >= f.garbage_blobs, "{f:?}");
    assert_eq!(f.load_errors, 0, "{f:?}");
    assert_eq!(
        f.lists_during_collection, 0,
        "a collection lists no storage prefix: {f:?}"
    );
    assert!(f.pushes_per_s > 0.0 && f.pulls_per_s_during > 0.0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_benchmark_pulls_through_a_cache_without_errors() {
    let upstream = TestNode::start();
    let remote_url = upstream.base_url();
    let cache = TestNode::start_with(move |config| {
        config.proxy = vec![api::cache::UpstreamConfig {
            prefix: String::new(),
            remote_url: remote_url.clone(),
            username: None,
            password: None,
            ttl: Some(std::time::Duration::from_secs(3600)),
        }];
    });
    let sizes = registry_tests::cache_bench::CacheSizes::tiny();
    let report = registry_tests::cache_bench::run(
        "ours",
        &upstream.base_url(),
        &cache.base_url(),
        Some(std::process::id()),
        &sizes,
        false,
    )
    .await;
    assert_eq!(report.figures.len(), 4, "{:?}", report.figures);
    for figure in &report.figures {
        assert_eq!(figure.errors, 0, "{figure:?}");
        assert!(figure.requests > 0 && figure.throughput > 0.0, "{figure:?}");
    }
    assert!(!bench::table(&report, &report).contains("SHA-256"));
}
