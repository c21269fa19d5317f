//! `registry-bench`: measure a registry over the OCI API, or compare two runs.

use clap::{Parser, Subcommand};
use registry_tests::bench::{self, Report, Sizes, Workload};
use registry_tests::cache_bench::{self, CacheSizes};
use registry_tests::gc_bench;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "registry-bench", about = "Benchmark an OCI registry over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every workload against one registry and write the figures as JSON.
    Run {
        /// Base URL, e.g. http://127.0.0.1:5000
        #[arg(long)]
        url: String,
        /// Name for this registry in tables.
        #[arg(long, default_value = "registry")]
        label: String,
        /// The server's PID, to report its peak RSS.
        #[arg(long)]
        pid: Option<u32>,
        /// Where to write the JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
        /// A smoke run with tiny sizes.
        #[arg(long)]
        tiny: bool,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Run only these workloads (repeatable); every workload by default.
        #[arg(long, value_enum)]
        only: Vec<Workload>,
        /// PEM of the CA that signed an https registry's certificate.
        #[arg(long)]
        cacert: Option<PathBuf>,
    },
    /// Garbage collection on a store of many images, a tenth of them
    /// deleted: how long collections take, alone and under a push-and-pull
    /// load, and how much that load slows while one runs. The registry must
    /// run with storage.gc.delay: 0s, a grace under --grace-wait, and
    /// storage.gc.enabled: false.
    Gc {
        #[arg(long)]
        url: String,
        /// The registry's debug listener (POST /gc, /metrics).
        #[arg(long)]
        debug: String,
        #[arg(long)]
        tiny: bool,
        /// Manifests in the store (10 blobs each).
        #[arg(long)]
        manifests: Option<usize>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Pulls through a pull-through cache of `--upstream` (a registry that
    /// accepts pushes): cold, warm, and one image by many clients at once,
    /// against the same images pulled from the upstream directly.
    Cache {
        /// The upstream the cache fills from, without a prefix.
        #[arg(long)]
        upstream: String,
        /// The cache's base URL.
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "cache")]
        label: String,
        /// The cache's PID, to report its peak RSS.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        tiny: bool,
        #[arg(long)]
        quiet: bool,
    },
    /// Print two JSON reports side by side with the ratio ours/reference.
    Table { ours: PathBuf, reference: PathBuf },
    /// Kill the leader of a running cluster under a push load and report
    /// the time to the next acknowledged push. Give every node, in id order.
    Failover {
        /// Each node's API base URL.
        #[arg(long, required = true)]
        url: Vec<String>,
        /// Each node's debug listener base URL.
        #[arg(long, required = true)]
        debug: Vec<String>,
        /// Each node's process id.
        #[arg(long, required = true)]
        pid: Vec<u32>,
    },
}

fn read(path: &PathBuf) -> Report {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Prints the figures, writes them as JSON, and fails the process when
/// any request failed.
fn print_and_save(report: &Report, json: Option<PathBuf>) {
    for f in &report.figures {
        println!(
            "{:<44} {:>10.1} {:<5}  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}",
            f.workload, f.throughput, f.unit, f.p50_ms, f.p99_ms, f.errors
        );
    }
    if let Some(path) = json {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&path, serde_json::to_vec_pretty(report).expect("json"))
            .expect("write report");
    }
    if report.figures.iter().any(|f| f.errors > 0) {
        std::process::exit(1);
    }
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Run {
            url,
            label,
            pid,
            json,
            tiny,
            quiet,
            only,
            cacert,
        } => {
            let ca = cacert.map(|path| {
                let pem =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                reqwest::Certificate::from_pem(&pem)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            });
            let sizes = if tiny { Sizes::tiny() } else { Sizes::full() };
            let workloads = if only.is_empty() {
                Workload::ALL.to_vec()
            } else {
                only
            };
            let report =
                bench::run_workloads(&label, &url, pid, &sizes, !quiet, &workloads, ca).await;
            if let Some(rss) = report.peak_rss_bytes {
                println!("peak RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
            }
            println!("single-core SHA-256 {:.0} MB/s", report.sha256_mb_s);
            print_and_save(&report, json);
        }
        Command::Gc {
            url,
            debug,
            tiny,
            manifests,
            json,
        } => {
            let mut sizes = if tiny {
                gc_bench::GcSizes::tiny()
            } else {
                gc_bench::GcSizes::full()
            };
            if let Some(manifests) = manifests {
                sizes.manifests = manifests;
            }
            let f = gc_bench::run(&url, &debug, &sizes, true).await;
            println!(
                "store: {} manifests, {} blobs, {} garbage (populated in {:.0} s)",
                f.manifests, f.blobs, f.garbage_blobs, f.populate_seconds
            );
            println!(
                "collection that hides: {} blobs in {:.2} s, {} storage lists",
                f.hidden, f.hide_seconds, f.lists_during_collection
            );
            println!(
                "collection that deletes, under load: {} blobs ({} bytes) in {:.2} s",
                f.removed, f.bytes_reclaimed, f.sweep_seconds
            );
            println!(
                "pushes/s {:.1} -> {:.1} during ({:+.1} %), pulls/s {:.1} -> {:.1} during ({:+.1} %), load errors {}",
                f.pushes_per_s, f.pushes_per_s_during, -100.0 * f.push_drop(),
                f.pulls_per_s, f.pulls_per_s_during, -100.0 * f.pull_drop(), f.load_errors
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&f).expect("json"))
                    .expect("write report");
            }
            if f.load_errors > 0 || f.removed < f.garbage_blobs {
                std::process::exit(1);
            }
        }
        Command::Cache {
            upstream,
            url,
            label,
            pid,
            json,
            tiny,
            quiet,
        } => {
            let sizes = if tiny {
                CacheSizes::tiny()
            } else {
                CacheSizes::full()
            };
            let report = cache_bench::run(&label, &upstream, &url, pid, &sizes, !quiet).await;
            print_and_save(&report, json);
        }
        Command::Table { ours, reference } => {
            print!("{}", bench::table(&read(&ours), &read(&reference)))
        }
        Command::Failover { url, debug, pid } => {
            let (resumed, leader) = bench::failover(&url, &debug, &pid).await;
            println!(
                "failover: killed leader node {} (kill -9); next acknowledged push after {:.0} ms",
                leader + 1,
                resumed.as_secs_f64() * 1000.0
            );
        }
    }
}
