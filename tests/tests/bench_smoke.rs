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
