//! `registry cluster …`: the operator's commands, spoken to a running
//! node's debug listener (`recover` alone works on a stopped node's files).

use crate::cli::{ClusterCommand, Target};
use raft::ClusterStatus;
use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

/// Runs `command` and answers what to print.
pub async fn run(command: ClusterCommand, env: &HashMap<String, String>) -> Result<String, String> {
    match command {
        ClusterCommand::Status { target, json } => {
            let base = debug_url(&target, env)?;
            let client = debug_client(&target, Some(Duration::from_secs(60)))?;
            let answer = client
                .get(format!("{base}/cluster/status"))
                .send()
                .await
                .map_err(|e| format!("ask {base}: {e}"))?;
            if !answer.status().is_success() {
                return Err(format!("{base} answered {}", answer.status()));
            }
            let status: ClusterStatus = answer
                .json()
                .await
                .map_err(|e| format!("{base} answered no status: {e}"))?;
            if json {
                serde_json::to_string_pretty(&status)
                    .map(|s| s + "\n")
                    .map_err(|e| e.to_string())
            } else {
                Ok(render(&status))
            }
        }
        ClusterCommand::Recover { config, yes } => recover(config.as_deref(), yes, env).await,
        ClusterCommand::Remove { id, target } => {
            let base = debug_url(&target, env)?;
            let client = debug_client(&target, Some(Duration::from_secs(60)))?;
            let answer = client
                .post(format!("{base}/cluster/remove/{id}"))
                .send()
                .await
                .map_err(|e| format!("ask {base}: {e}"))?;
            let ok = answer.status().is_success();
            let text = answer.text().await.unwrap_or_default();
            if ok {
                Ok(text)
            } else {
                Err(text.trim().to_owned())
            }
        }
    }
}

/// `registry readonly on|off|status`, through the node's debug listener.
pub async fn read_only(
    mode: crate::cli::ReadOnlyMode,
    target: Target,
    env: &HashMap<String, String>,
) -> Result<String, String> {
    use crate::cli::ReadOnlyMode;
    let base = debug_url(&target, env)?;
    let client = debug_client(&target, Some(Duration::from_secs(30)))?;
    let request = match mode {
        ReadOnlyMode::On => client.post(format!("{base}/readonly/on")),
        ReadOnlyMode::Off => client.post(format!("{base}/readonly/off")),
        ReadOnlyMode::Status => client.get(format!("{base}/readonly")),
    };
    let status: crate::debug::ReadOnlyStatus = ask(request, &base, "status").await?;
    let mut out = format!(
        "read-only: {} (cluster mode {}",
        if status.read_only { "on" } else { "off" },
        if status.cluster { "on" } else { "off" }
    );
    if status.config {
        out.push_str("; this node's storage.maintenance.readonly.enabled is true");
    }
    out.push_str(")\n");
    Ok(out)
}

/// Sends `request` to the debug listener at `base` and decodes its JSON
/// answer (`what` names it in the error); a refusal answers its text.
async fn ask<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    base: &str,
    what: &str,
) -> Result<T, String> {
    let answer = request
        .send()
        .await
        .map_err(|e| format!("ask {base}: {e}"))?;
    if !answer.status().is_success() {
        let text = answer.text().await.unwrap_or_default();
        return Err(text.trim().to_owned());
    }
    answer
        .json()
        .await
        .map_err(|e| format!("{base} answered no {what}: {e}"))
}

/// `registry gc [--dry-run]`: one collection through the node's debug
/// listener, which answers when it is done.
pub async fn collect(
    dry_run: bool,
    target: Target,
    env: &HashMap<String, String>,
) -> Result<String, String> {
    let base = debug_url(&target, env)?;
    let client = debug_client(&target, None)?;
    let request = client.post(format!("{base}/gc?dryrun={dry_run}"));
    let report: crate::gc::GcReport = ask(request, &base, "report").await?;
    let rendered = render_gc(&report);
    if report.sweep_failures > 0 {
        return Err(format!(
            "{rendered}some condemned bytes could not be deleted"
        ));
    }
    Ok(rendered)
}

fn render_gc(report: &crate::gc::GcReport) -> String {
    let verb = |done: &'static str, would: &'static str| if report.dry_run { would } else { done };
    let mut out = String::new();
    // A heading line, then one indented line per item.
    let mut section = |heading: String, items: Vec<String>| {
        out.push_str(&heading);
        out.push('\n');
        for item in items {
            out.push_str(&format!("  {item}\n"));
        }
    };
    if report.dry_run {
        section("dry run: nothing was changed".to_owned(), vec![]);
    }
    section(
        format!(
            "tags {} by retention: {}",
            verb("removed", "to remove"),
            report.tags_removed.len()
        ),
        report
            .tags_removed
            .iter()
            .map(|t| {
                format!(
                    "{} {}:{} ({})",
                    verb("removed", "remove"),
                    t.repository,
                    t.tag,
                    t.digest
                )
            })
            .collect(),
    );
    section(
        format!(
            "manifests {}: {}",
            verb("removed", "to remove"),
            report.manifests_removed.len()
        ),
        report
            .manifests_removed
            .iter()
            .map(|m| {
                format!(
                    "{} {}@{}",
                    verb("removed", "remove"),
                    m.repository,
                    m.digest
                )
            })
            .collect(),
    );
    section(
        format!(
            "manifests found unrooted: {} newly, {} within storage.gc.delay (removed after it unless tagged or listed meanwhile)",
            report.manifests_marked, report.manifests_in_delay
        ),
        vec![],
    );
    // Blob lists can be long: only a dry run, which someone reads, prints them.
    let blobs = |verb: &str, blobs: &[raft::gc::Candidate]| -> Vec<String> {
        if !report.dry_run {
            return vec![];
        }
        blobs
            .iter()
            .map(|b| format!("{verb} {} ({} bytes)", b.digest, b.size))
            .collect()
    };
    section(
        format!(
            "blobs {}: {} ({} bytes)",
            verb("removed", "to remove"),
            report.removed.len(),
            report.bytes_reclaimed
        ),
        blobs("remove", &report.removed),
    );
    section(
        format!(
            "blobs {}: {} (their bytes go at the first collection after storage.gc.grace)",
            verb("hidden", "to hide"),
            report.hidden.len()
        ),
        blobs("hide", &report.hidden),
    );
    section(
        format!(
            "blobs hidden earlier, within their grace: {}",
            report.hidden_in_grace
        ),
        vec![],
    );
    section(
        format!(
            "blobs unreferenced, pushed within storage.gc.delay: {}",
            report.blobs_in_delay
        ),
        vec![],
    );
    if report.sweep_failures > 0 {
        section(
            format!(
                "deletes failed: {} (the next collection retries them)",
                report.sweep_failures
            ),
            vec![],
        );
    }
    section(format!("took {} ms", report.took_ms), vec![]);
    out
}

/// Recovers the stopped node `config` describes (see `raft::recovery`):
/// the new cluster's marker goes into blob storage first, so a failure
/// there leaves the metadata directory untouched.
async fn recover(
    config: Option<&std::path::Path>,
    yes: bool,
    env: &HashMap<String, String>,
) -> Result<String, String> {
    let config = crate::load(config, env).map_err(|e| e.to_string())?;
    let dir = &config.raft.data_dir;
    let mut recovery =
        raft::recovery::Recovery::open(dir, config.raft.node_id).map_err(|e| e.to_string())?;
    let plan = recovery.plan().await.map_err(|e| e.to_string())?;
    if !yes {
        return Ok(format!(
            "{plan}\nNothing was written. Stop every other member for good, then run again \
             with --yes.\n"
        ));
    }
    let blobs = storage::backends::open(&config.blobs)
        .await
        .map_err(|e| format!("open blob storage: {e}"))?;
    crate::cluster::write_marker(blobs.as_ref(), &plan.new_cluster_id).await?;
    recovery.carry_out(&plan).await.map_err(|e| e.to_string())?;
    Ok(format!(
        "{plan}\nRecovered. Start this node: it leads cluster {} alone. Then start each other \
         member with an empty metadata directory; it joins as a new member.\n",
        plan.new_cluster_id
    ))
}

/// The debug listener to talk to: `--addr`, else the config's
/// `http.debug.addr` (an unspecified host means this machine); HTTPS with
/// `--cacert`.
fn debug_url(target: &Target, env: &HashMap<String, String>) -> Result<String, String> {
    let scheme = if target.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(addr) = &target.addr {
        return Ok(format!("{scheme}://{addr}"));
    }
    let config = crate::load(target.config.as_deref(), env).map_err(|e| e.to_string())?;
    if config.debug_tls.is_some() && target.cacert.is_none() {
        return Err(
            "the debug listener speaks TLS (http.debug.tls): pass --cacert with the CA of its \
             certificate"
                .to_owned(),
        );
    }
    let mut addr = config
        .debug_listen
        .ok_or("the config disables the debug listener (http.debug.addr); pass --addr")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("{scheme}://{addr}"))
}

/// A client of the debug listener: trusting only `--cacert` when given.
fn debug_client(target: &Target, timeout: Option<Duration>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(path) = &target.cacert {
        let pem = std::fs::read(path).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
        builder = builder.tls_certs_only(roots);
    }
    builder.build().map_err(|e| e.to_string())
}

fn render(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let dash = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "cluster {}  leader {}  term {}{}  (asked node {}: last log {}, applied {})",
        status.cluster_id.as_deref().unwrap_or("(unnamed)"),
        dash(status.leader),
        status.term,
        if status.read_only { "  READ-ONLY" } else { "" },
        status.node_id,
        dash(status.last_log_index),
        dash(status.applied_index),
    );
    let _ = writeln!(
        out,
        "{:<6} {:<8} {:<24} {:<24} {:>9} {:>6}  REACHABLE",
        "ID", "ROLE", "INTERNAL", "API", "APPLIED", "LAG"
    );
    for m in &status.members {
        let reach = match (&m.error, m.reachable) {
            (_, true) => "yes".to_owned(),
            (Some(e), false) => format!("no ({e})"),
            (None, false) => "no".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<6} {:<8} {:<24} {:<24} {:>9} {:>6}  {}",
            m.id,
            m.role,
            m.raft_addr,
            m.api_addr,
            dash(m.applied_index),
            dash(m.lag),
            reach
        );
    }
    out
}
