//! The `registry` binary as a process: help, config refusal, SIGTERM, and
//! `kill -9` in the middle of pushes.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
mod common;

use common::{free_port, sha256};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("serve")
        .current_dir(dir)
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", "")
        .env("REGISTRY_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start registry")
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(format!("{base}/v2/")).send().await {
            if response.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "registry at {base} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn help_explains_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("serve"));
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("REGISTRY_HTTP_ADDR"),
        "{text}"
    );
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    std::fs::write(&file, "http:\n  addr: 127.0.0.1:0\n  tls: yes\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("serve")
        .env("REGISTRY_HTTP_DEBUG_ADDR", "")
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "sometimes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.delete.enabled"));
}

#[tokio::test]
async fn sigterm_stops_the_registry_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start(dir.path(), port);
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    // The zero-config default keeps its data under ./data.
    assert!(dir.path().join("data/meta").is_dir() && dir.path().join("data/blobs").is_dir());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "registry ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One image whose manifest push was acknowledged.
struct Acked {
    repo: String,
    tag: String,
    manifest_digest: String,
    blobs: Vec<(String, usize)>,
}

async fn push_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    n: usize,
) -> Result<Acked, String> {
    let config = format!("{{\"n\":{n}}}").into_bytes();
    let layer: Vec<u8> = (0..(50_000 + n * 7_919 % 400_000))
        .map(|i| (i * 31 + n) as u8)
        .collect();
    let mut blobs = Vec::new();
    for data in [&config, &layer] {
        let digest = sha256(data);
        let start = client
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if start.status() != StatusCode::ACCEPTED {
            return Err(format!("start upload: {}", start.status()));
        }
        let location = start.headers()["Location"].to_str().unwrap().to_owned();
        let put = client
            .put(format!("{base}{location}?digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if put.status() != StatusCode::CREATED {
            return Err(format!("finish upload: {}", put.status()));
        }
        blobs.push((digest, data.len()));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0].0, "size": blobs[0].1 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[1].0, "size": blobs[1].1 }],
    }))
    .unwrap();
    let tag = format!("t{n}");
    let response = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::CREATED {
        return Err(format!("manifest: {}", response.status()));
    }
    Ok(Acked {
        repo: repo.to_owned(),
        tag,
        manifest_digest: sha256(&manifest),
        blobs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_pushes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(dir.path(), port);
    wait_ready(&base).await;

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut pushers = Vec::new();
    for worker in 0..4usize {
        let (acked, base) = (acked.clone(), base.clone());
        pushers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                match push_image(&client, &base, &format!("crash/w{worker}"), i * 4 + worker).await
                {
                    Ok(image) => acked.lock().unwrap().push(image),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            Instant::now() < deadline,
            "pushes too slow to reach the kill point"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    let mut child = start(dir.path(), port);
    wait_ready(&base).await;
    let client = reqwest::Client::new();
    for image in &acked {
        let response = client
            .get(format!("{base}/v2/{}/manifests/{}", image.repo, image.tag))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}:{} lost",
            image.repo,
            image.tag
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(sha256(&body), image.manifest_digest);
        for (digest, size) in &image.blobs {
            let body = client
                .get(format!("{base}/v2/{}/blobs/{digest}", image.repo))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(body.len(), *size);
            assert_eq!(&sha256(&body), digest, "blob bytes hash to their digest");
        }
    }
    // Every stored blob, acknowledged or not, hashes to its name.
    let mut pending = vec![dir.path().join("data/blobs/blobs")];
    let mut checked = 0;
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert_eq!(
                    sha256(&std::fs::read(&path).unwrap()),
                    format!("sha256:{name}")
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= acked.len() * 2);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Starts s3s-fs on a free port and waits until it listens. Another test may
/// take the port between `free_port` and the bind; s3s-fs then exits, and
/// the next port is tried.
async fn start_s3s_fs(tools: &Path, root: &Path) -> (Child, u16) {
    for _attempt in 0..3 {
        let port = free_port();
        let mut s3 = Command::new(tools)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "env-key", "--secret-key", "env-secret"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("s3s-fs is installed (scripts/setup)");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (s3, port);
            }
            if s3.try_wait().expect("s3s-fs status").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "s3s-fs never listened on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        }
    }
    panic!("s3s-fs exited at start on three ports (see its stderr above)");
}

/// The S3 backend takes credentials from the usual AWS environment when the
/// config names none. The server (s3s-fs, installed by scripts/setup)
/// verifies signatures, so a push only succeeds with the right secret.
#[tokio::test]
async fn s3_credentials_come_from_the_aws_environment() {
    let tools = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .expect("HOME")
        .join(".cache/registry-tools/s3s/bin/s3s-fs");
    let bucket_root = tempfile::tempdir().unwrap();
    std::fs::create_dir(bucket_root.path().join("images")).unwrap();
    let (mut s3, s3_port) = start_s3s_fs(&tools, bucket_root.path()).await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut registry = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("serve")
        .current_dir(dir.path())
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_HTTP_DEBUG_ADDR", "")
        .env("REGISTRY_LOG_LEVEL", "warn")
        .env("REGISTRY_STORAGE_S3_BUCKET", "images")
        .env("REGISTRY_STORAGE_S3_REGION", "us-east-1")
        .env(
            "REGISTRY_STORAGE_S3_REGIONENDPOINT",
            format!("http://127.0.0.1:{s3_port}"),
        )
        .env("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true")
        .env("AWS_ACCESS_KEY_ID", "env-key")
        .env("AWS_SECRET_ACCESS_KEY", "env-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_ready(&base).await;
    let data = b"signed with credentials from the environment".to_vec();
    let digest = sha256(&data);
    let response = reqwest::Client::new()
        .post(format!(
            "{base}/v2/env/creds/blobs/uploads/?digest={digest}"
        ))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored = bucket_root
        .path()
        .join("images/blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..]);
    assert!(
        std::fs::metadata(&stored).is_ok(),
        "the blob is in the bucket at {}",
        stored.display()
    );
    registry.kill().unwrap();
    registry.wait().unwrap();
    s3.kill().unwrap();
    s3.wait().unwrap();
}
