//! The Helm chart (`helm/registry`), tested without a Kubernetes cluster:
//! `helm lint --strict` and `helm template` of every values file under
//! `helm/registry/ci/`, each rendering validated offline and strictly by
//! kubernetes-validate; assertions on the rendered objects; values the
//! schema refuses; an upgrade that changes no immutable field; and the
//! rendered StatefulSet booted as three processes, one network namespace
//! per pod.
#![allow(clippy::unwrap_used)]

mod common;

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
    let shared = template(&[], &["replicaCount=3"])
        .expect_err("a ReadWriteOnce blob volume for three nodes");
    assert!(shared.contains("ReadWriteMany"), "{shared}");
    let nowhere =
        template(&[], &["persistence.blobs.enabled=false"]).expect_err("no blob storage at all");
    assert!(nowhere.contains("persistence.blobs"), "{nowhere}");
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
    let installed = immutable(&render(&["rwx-values.yaml"], &["replicaCount=3"]));
    for sets in [
        vec!["replicaCount=5"],
        vec!["image.tag=0.2.0", "resources.requests.cpu=1"],
        vec![
            "persistence.blobs.storageClass=other",
            "cluster.secret=changed",
        ],
        vec!["podLabels.team=a", "config.log.level=debug"],
    ] {
        assert_eq!(
            immutable(&render(&["rwx-values.yaml"], &sets)),
            installed,
            "{sets:?}"
        );
    }
}

/// The pods of a rendered StatefulSet, started the way the kubelet would
/// start them, minus the image: the container's command (its binary is
/// this build's), arguments and environment exactly as rendered, the
/// ConfigMap as the config file, fieldRef and secretKeyRef resolved as the
/// kubelet does. Each pod runs in a network namespace named like it, on a
/// bridge, and the pods' DNS names resolve to their addresses through a
/// private /etc/hosts. Volume mounts become directories: each mountPath is
/// replaced by its directory wherever the container's arguments,
/// environment and config name it. Then the chart is rendered for five
/// replicas and the two new pods start, as `helm upgrade` would have them:
/// they join as voters and serve what was pushed before.
#[test]
fn the_rendered_statefulset_boots_a_cluster_that_outlives_a_pod_and_scales_up() {
    if !common::rerun_inside_namespaces(
        "the_rendered_statefulset_boots_a_cluster_that_outlives_a_pod_and_scales_up",
        &["--net", "--mount"],
    ) {
        return;
    }
    let three = render(&["rwx-values.yaml"], &["replicaCount=3"]);
    let five = render(&["rwx-values.yaml"], &["replicaCount=5"]);
    let root = tempfile::tempdir().unwrap();
    let sts = one(&three, "StatefulSet");
    let mut pods = Pods::network(
        root.path(),
        sts["metadata"]["name"].as_str().unwrap(),
        sts["spec"]["serviceName"].as_str().unwrap(),
        5,
    );
    for i in 0..3 {
        pods.start_pod(&three, i);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(push_pull_and_lose_a_pod(&mut pods));
    // `helm upgrade --set replicaCount=5`: the two new pods join as members.
    for i in 3..5 {
        pods.start_pod(&five, i);
    }
    runtime.block_on(scaled_up_pods_join_and_serve());
}

const BRIDGE_NET: &str = "10.89.0";

fn pod_ip(i: usize) -> String {
    format!("{BRIDGE_NET}.{}", 10 + i)
}

struct Pods {
    children: Vec<Option<std::process::Child>>,
    root: PathBuf,
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pods {
    /// A bridge with `slots` pod network namespaces, named like the pods of
    /// StatefulSet `name` under Service `headless`, and their DNS names.
    fn network(root: &Path, name: &str, headless: &str, slots: usize) -> Pods {
        common::run("ip", &["link", "set", "lo", "up"]);
        // Private to this mount namespace: the pods' namespaces and hosts file.
        std::fs::create_dir_all("/run/netns").unwrap();
        common::run("mount", &["-t", "tmpfs", "netns", "/run/netns"]);
        common::run("ip", &["link", "add", "br0", "type", "bridge"]);
        common::run(
            "ip",
            &["addr", "add", &format!("{BRIDGE_NET}.1/24"), "dev", "br0"],
        );
        common::run("ip", &["link", "set", "br0", "up"]);
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for i in 0..slots {
            let pod_name = format!("{name}-{i}");
            common::run("ip", &["netns", "add", &pod_name]);
            let veth = format!("veth{i}");
            common::run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &pod_name,
                ],
            );
            common::run("ip", &["link", "set", &veth, "master", "br0", "up"]);
            let ip_in = |args: &[&str]| {
                let mut all = vec!["-n", pod_name.as_str()];
                all.extend_from_slice(args);
                common::run("ip", &all);
            };
            ip_in(&["addr", "add", &format!("{}/24", pod_ip(i)), "dev", "eth0"]);
            ip_in(&["link", "set", "eth0", "up"]);
            ip_in(&["link", "set", "lo", "up"]);
            hosts += &format!(
                "{} {pod_name}.{headless}.{NAMESPACE}.svc.cluster.local {pod_name}\n",
                pod_ip(i)
            );
        }
        let hosts_file = root.join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        common::run(
            "mount",
            &["--bind", hosts_file.to_str().unwrap(), "/etc/hosts"],
        );
        Pods {
            children: (0..slots).map(|_| None).collect(),
            root: root.to_owned(),
        }
    }

    /// Starts pod `i` of the StatefulSet in `docs` in its namespace.
    fn start_pod(&mut self, docs: &[Value], i: usize) {
        let sts = one(docs, "StatefulSet");
        let name = sts["metadata"]["name"].as_str().unwrap();
        let container = &sts["spec"]["template"]["spec"]["containers"][0];
        let config = one(docs, "ConfigMap")["data"]["config.yml"]
            .as_str()
            .unwrap();
        let pod_name = format!("{name}-{i}");
        let dir = self.root.join(&pod_name);
        // mountPath → directory, as the pod's volumes would mount.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for mount in container["volumeMounts"].as_sequence().unwrap() {
            let path = mount["mountPath"].as_str().unwrap().to_owned();
            let volume = mount["name"].as_str().unwrap();
            let host = if volume == "blobs" {
                self.root.join("blobs")
            } else {
                dir.join(volume)
            };
            std::fs::create_dir_all(&host).unwrap();
            mounts.push((path, host));
        }
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let translate = |text: &str| translate(text, &mounts);
        let config_mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "config")
            .unwrap();
        let config_dir = translate(config_mount["mountPath"].as_str().unwrap());
        std::fs::write(Path::new(&config_dir).join("config.yml"), translate(config)).unwrap();
        let command: Vec<String> = container["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(command, ["/usr/local/bin/registry"], "the image's binary");
        let args: Vec<String> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| translate(a.as_str().unwrap()))
            .collect();
        let mut spawn = Command::new("ip");
        spawn
            .args(["netns", "exec", &pod_name, env!("CARGO_BIN_EXE_registry")])
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOSTNAME", &pod_name)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null());
        for var in container["env"].as_sequence().unwrap() {
            let key = var["name"].as_str().unwrap();
            let value = resolve(docs, var, i);
            spawn.env(key, translate(&value));
        }
        self.children[i] = Some(spawn.spawn().expect("start a pod"));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

/// `text` with every path under a mountPath (longest first, starting
/// where a path can start) moved to that mount's directory, in one pass.
fn translate(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_path_start = previous.is_none_or(|p| !(p.is_alphanumeric() || p == '/' || p == '.'));
        let mount = mounts
            .iter()
            .find(|(path, _)| at_path_start && rest.starts_with(path.as_str()));
        if let Some((path, host)) = mount {
            out.push_str(host.to_str().unwrap());
            rest = &rest[path.len()..];
            previous = path.chars().last();
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            previous = Some(c);
        }
    }
    out
}

/// An env entry's value as the kubelet gives it to pod `index`.
fn resolve(docs: &[Value], var: &Value, index: usize) -> String {
    if let Some(value) = var["value"].as_str() {
        return value.to_owned();
    }
    let from = &var["valueFrom"];
    if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
        assert_eq!(field, "metadata.labels['apps.kubernetes.io/pod-index']");
        return index.to_string();
    }
    let secret = &from["secretKeyRef"];
    let name = secret["name"]
        .as_str()
        .expect("a value, fieldRef or secretKeyRef");
    let key = secret["key"].as_str().unwrap();
    let object = objects(docs, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart renders Secret {name}"));
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(object["data"][key].as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

async fn push_pull_and_lose_a_pod(pods: &mut Pods) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let api = |i: usize| format!("http://{}:5000", pod_ip(i));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    for i in 0..3 {
        loop {
            let ready = client
                .get(format!("http://{}:5001/readyz", pod_ip(i)))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pod {i} never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await; // poll interval
        }
    }
    let push = |through: usize, body: Vec<u8>| {
        let client = client.clone();
        let url = format!(
            "{}/v2/chart/app/blobs/uploads/?digest={}",
            api(through),
            common::sha256(&body)
        );
        async move { client.post(url).body(body).send().await.unwrap().status() }
    };
    let pull = |through: usize, body: &[u8]| {
        let client = client.clone();
        let url = format!(
            "{}/v2/chart/app/blobs/{}",
            api(through),
            common::sha256(body)
        );
        async move {
            let answer = client.get(url).send().await.unwrap();
            (answer.status(), answer.bytes().await.unwrap().to_vec())
        }
    };
    let first = b"pushed through pod 0".to_vec();
    assert_eq!(push(0, first.clone()).await, reqwest::StatusCode::CREATED);
    assert_eq!(
        pull(1, &first).await,
        (reqwest::StatusCode::OK, first.clone())
    );
    pods.kill(0);
    let second = b"pushed after pod 0 died".to_vec();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while push(2, second.clone()).await != reqwest::StatusCode::CREATED {
        assert!(
            std::time::Instant::now() < deadline,
            "the other two stopped taking pushes"
        );
    }
    assert_eq!(
        pull(1, &second).await,
        (reqwest::StatusCode::OK, second.clone())
    );
    assert_eq!(pull(2, &first).await, (reqwest::StatusCode::OK, first));
}

async fn scaled_up_pods_join_and_serve() {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status: Option<serde_json::Value> = match client
            .get(format!("http://{}:5001/cluster/status", pod_ip(1)))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let voters = status.as_ref().map_or(0, |s| {
            s["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["role"] != "learner").count())
        });
        if voters == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new pods never became voters: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await; // poll interval
    }
    let first = b"pushed through pod 0".to_vec();
    let answer = client
        .get(format!(
            "http://{}:5000/v2/chart/app/blobs/{}",
            pod_ip(4),
            common::sha256(&first)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    assert_eq!(answer.bytes().await.unwrap().to_vec(), first);
}

#[test]
fn tls_and_logins_come_from_mounted_secrets_the_registry_config_accepts() {
    let sets = [
        "tls.existingSecret=api-tls",
        "cluster.tls.existingSecret=peer-tls",
        "auth.htpasswd.existingSecret=users",
        "auth.tokenService.existingSecret=token-key",
        "metrics.tls.existingSecret=metrics-cert",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.tlsConfig.serverName=registry",
    ];
    let docs = render(&[], &sets);
    let pod = &one(&docs, "StatefulSet")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for (volume, secret) in [
        ("tls", "api-tls"),
        ("cluster-tls", "peer-tls"),
        ("htpasswd", "users"),
        ("token", "token-key"),
        ("metrics-tls", "metrics-cert"),
    ] {
        let volumes = pod["volumes"].as_sequence().unwrap();
        let found = volumes.iter().find(|v| v["name"] == volume).expect(volume);
        assert_eq!(found["secret"]["secretName"], secret);
        let mounts = container["volumeMounts"].as_sequence().unwrap();
        let mount = mounts.iter().find(|m| m["name"] == volume).expect(volume);
        assert_eq!(
            mount["mountPath"].as_str(),
            Some(format!("/etc/registry-secrets/{volume}").as_str())
        );
        assert!(
            mount["subPath"].is_null(),
            "a subPath mount never sees the Secret's updates"
        );
    }
    // The registry reads the rendered config and environment as it will in
    // the pod: every path lands on the key it is meant for.
    let env: std::collections::HashMap<String, String> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|var| {
            (
                var["name"].as_str().unwrap().to_owned(),
                resolve(&docs, var, 0),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("config.yml");
    let rendered = one(&docs, "ConfigMap")["data"]["config.yml"]
        .as_str()
        .unwrap();
    std::fs::write(&config_file, rendered).unwrap();
    let config = node::load(Some(&config_file), &env).unwrap();
    let tls = config.tls.expect("http.tls");
    assert_eq!(
        tls.certificate,
        Path::new("/etc/registry-secrets/tls/tls.crt")
    );
    let internal = config.internal_tls.expect("cluster.tls");
    assert_eq!(
        internal.client_cas,
        [PathBuf::from("/etc/registry-secrets/cluster-tls/ca.crt")]
    );
    let Some(api::auth::AuthConfig::Htpasswd(logins)) = config.auth else {
        panic!("htpasswd logins");
    };
    assert_eq!(
        logins.path,
        Path::new("/etc/registry-secrets/htpasswd/htpasswd")
    );
    let service = logins.token_service.expect("the token service");
    assert_eq!(
        service.key,
        Path::new("/etc/registry-secrets/token/token-key.pem")
    );

    let debug = config.debug_tls.expect("http.debug.tls");
    assert_eq!(
        debug.key,
        Path::new("/etc/registry-secrets/metrics-tls/tls.key")
    );
    // The probes and Prometheus follow the port to HTTPS.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let endpoint = &one(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["tlsConfig"]["serverName"], "registry");

    let refused = template(&[], &["auth.tokenService.existingSecret=token-key"]).unwrap_err();
    assert!(
        refused.contains("auth.htpasswd.existingSecret"),
        "{refused}"
    );
}
