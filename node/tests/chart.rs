//! The Helm chart (`helm/registry`), tested without a Kubernetes cluster:
//! `helm lint --strict` and `helm template` of every values file under
//! `helm/registry/ci/`, each rendering validated offline and strictly by
//! kubernetes-validate; assertions on the rendered objects; values the
//! schema refuses; and an upgrade that changes no immutable field.
#![allow(clippy::unwrap_used)]

use serde::Deserialize as _;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RELEASE: &str = "rel";
const NAMESPACE: &str = "reg";

fn tool_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set")
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/registry")
}

fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(tool_cache().join("registry-tools/helm"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .args(args)
        .output()
        .expect("helm is installed (scripts/setup installs it)")
}

/// `helm template` with values files (under ci/) and `--set`s: the
/// rendered text, or helm's complaint.
fn template(files: &[&str], sets: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let mut args = vec![
        "template".to_owned(),
        RELEASE.to_owned(),
        chart.display().to_string(),
        "--namespace".to_owned(),
        NAMESPACE.to_owned(),
    ];
    for file in files {
        args.push("-f".to_owned());
        args.push(chart.join("ci").join(file).display().to_string());
    }
    for set in sets {
        args.push("--set".to_owned());
        args.push((*set).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The rendered objects of `template`.
fn render(files: &[&str], sets: &[&str]) -> Vec<Value> {
    let text = template(files, sets).unwrap_or_else(|e| panic!("helm template failed: {e}"));
    parse(&text)
}

fn parse(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn objects<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = objects(docs, kind);
    assert_eq!(found.len(), 1, "one {kind} expected, got {}", found.len());
    found[0]
}

fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn ci_values_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with("-values.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn each_ci_values_file_lints_and_renders_objects_kubernetes_accepts() {
    let files = ci_values_files();
    assert!(files.len() >= 3, "{files:?}");
    let chart = chart_dir();
    for file in &files {
        let values = chart.join("ci").join(file);
        let lint = helm(&[
            "lint",
            "--strict",
            "-f",
            values.to_str().unwrap(),
            chart.to_str().unwrap(),
        ]);
        assert!(
            lint.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );
        let rendered = template(&[file], &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rendered.yaml");
        std::fs::write(&path, &rendered).unwrap();
        let validate = Command::new(tool_cache().join("registry-venv/bin/kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .arg(&path)
            .output()
            .expect("kubernetes-validate is installed (scripts/setup installs it)");
        let report = String::from_utf8_lossy(&validate.stdout).into_owned()
            + &String::from_utf8_lossy(&validate.stderr);
        assert!(validate.status.success(), "{file}: {report}");
        assert!(!report.contains("ERROR"), "{file}: {report}");
    }
}

#[test]
fn three_nodes_on_s3_are_wired_as_one_cluster_with_secrets_by_reference() {
    let docs = render(&["ha-s3-values.yaml"], &[]);
    let sts = one(&docs, "StatefulSet");
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    let headless = objects(&docs, "Service")
        .into_iter()
        .find(|s| s["spec"]["clusterIP"] == "None")
        .expect("a headless Service");
    assert_eq!(spec["serviceName"], headless["metadata"]["name"]);
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        env_var(container, "POD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(
        env_var(container, "REGISTRY_CLUSTER_NODEID")["value"],
        "ordinal"
    );
    let peers: Vec<String> = (0..3)
        .map(|i| format!("{}={RELEASE}-registry-{i}.{RELEASE}-registry-headless.{NAMESPACE}.svc.cluster.local:5101", i + 1))
        .collect();
    assert_eq!(
        env_var(container, "REGISTRY_CLUSTER_PEERS")["value"],
        peers.join(",").as_str()
    );
    let secret_of = |name: &str| &env_var(container, name)["valueFrom"]["secretKeyRef"]["name"];
    assert_eq!(*secret_of("REGISTRY_CLUSTER_SECRET"), "registry-cluster");
    assert_eq!(*secret_of("REGISTRY_STORAGE_S3_ACCESSKEY"), "registry-s3");
    assert_eq!(*secret_of("REGISTRY_STORAGE_S3_SECRETKEY"), "registry-s3");
    assert!(
        objects(&docs, "Secret").is_empty(),
        "existing Secrets are referenced, never rendered inline"
    );
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64() > Some(0));
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    assert_eq!(
        one(&docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/registry"
    );
    let config: Value = serde_yaml::from_str(
        one(&docs, "ConfigMap")["data"]["config.yml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["storage"]["s3"]["bucket"], "registry-blobs");
    assert!(objects(&docs, "PersistentVolumeClaim").is_empty());
}

#[test]
fn one_node_needs_no_budget_and_five_keep_a_quorum_of_three() {
    let single = render(&["single-values.yaml"], &[]);
    assert_eq!(one(&single, "StatefulSet")["spec"]["replicas"], 1);
    assert!(objects(&single, "PodDisruptionBudget").is_empty());
    let five = render(&["rwx-values.yaml"], &[]);
    assert_eq!(
        one(&five, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        2
    );
    let claim = one(&five, "PersistentVolumeClaim");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteMany");
    assert_eq!(claim["spec"]["storageClassName"], "nfs");
    let secret = one(&five, "Secret");
    assert_eq!(
        secret["data"]["secret"], "YS1sb25nLXNoYXJlZC1zZWNyZXQtZm9yLXRoZS10ZXN0",
        "the given cluster secret, base64"
    );
    let mounts =
        &one(&five, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    assert!(mounts
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"] == "/var/lib/registry/blobs"));
}

#[test]
fn misspelt_or_mistyped_values_are_refused_naming_them() {
    for (set, named) in [
        ("replcaCount=3", "replcaCount"),
        ("replicaCount=4", "replicaCount"),
        ("persistence.metadata.size=lots", "size"),
        ("service.port=http", "port"),
        ("cluster.heartbeat=fast", "heartbeat"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
    ] {
        let refused = template(&[], &[set]).expect_err(set);
        assert!(refused.contains(named), "{set}: {refused}");
    }
    let shared = template(
        &[],
        &[
            "persistence.blobs.enabled=true",
            "persistence.blobs.accessModes={ReadWriteOnce}",
        ],
    )
    .expect_err("a ReadWriteOnce blob volume for three nodes");
    assert!(shared.contains("ReadWriteMany"), "{shared}");
}

#[test]
fn an_upgrade_changes_no_immutable_statefulset_field() {
    let immutable = |docs: &[Value]| {
        let spec = &one(docs, "StatefulSet")["spec"];
        (
            spec["serviceName"].clone(),
            spec["selector"].clone(),
            spec["podManagementPolicy"].clone(),
            spec["volumeClaimTemplates"].clone(),
        )
    };
    let installed = immutable(&render(&[], &[]));
    for sets in [
        vec!["replicaCount=5"],
        vec!["image.tag=0.2.0", "resources.requests.cpu=1"],
        vec!["persistence.blobs.enabled=true", "cluster.secret=changed"],
        vec!["podLabels.team=a", "config.log.level=debug"],
    ] {
        assert_eq!(immutable(&render(&[], &sets)), installed, "{sets:?}");
    }
}
