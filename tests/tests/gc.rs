//! Online garbage collection against real nodes (one, or a cluster with
//! `TEST_CLUSTER`; the filesystem or S3 with `TEST_BLOB_BACKEND`): what no
//! manifest references loses its bytes, what any manifest references pulls
//! whole, and pushes racing collections never get a 201 with a missing layer.

use registry_tests::oci::{self, image_manifest, sha256, Client, OCI_MANIFEST};
use registry_tests::TestNode;
use reqwest::StatusCode;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// The grace the tests give hidden blobs: long enough that a test sees a
/// hidden blob, short enough to wait out.
const GRACE: Duration = Duration::from_millis(300);

fn collecting_node() -> TestNode {
    collecting_node_with_delay(Duration::ZERO)
}

fn collecting_node_with_delay(delay: Duration) -> TestNode {
    TestNode::start_with(move |config| {
        config.api.delete_enabled = true;
        config.gc.enabled = false;
        config.gc.delay = delay;
        config.gc.grace = GRACE;
    })
}

/// Runs one collection through node 0's debug listener; answers the report.
async fn collect(node: &TestNode, dry_run: bool) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{}/gc?dryrun={dry_run}", node.debug_url()))
        .send()
        .await
        .expect("POST /gc");
    assert_eq!(response.status(), StatusCode::OK, "POST /gc");
    response.json().await.expect("a JSON report")
}

/// Waits until a dry run sees nothing waiting on the delay or the grace:
/// the next collection then acts on everything collectable.
async fn wait_until_due(node: &TestNode) {
    let due = registry_tests::eventually(Duration::from_secs(30), || async {
        let dry = collect(node, true).await;
        dry["hidden_in_grace"] == 0 && dry["manifests_in_delay"] == 0 && dry["blobs_in_delay"] == 0
    })
    .await;
    assert!(
        due,
        "still waiting after 30 s: {}",
        collect(node, true).await
    );
}

/// Waits out the delay, hides what is unreferenced, waits out the grace, and
/// collects again, so the bytes of everything unreferenced at the start are
/// deleted.
async fn collect_fully(node: &TestNode) -> serde_json::Value {
    wait_until_due(node).await;
    collect(node, false).await;
    wait_until_due(node).await;
    collect(node, false).await
}

fn digests(report: &serde_json::Value, field: &str) -> BTreeSet<String> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("report has no {field}: {report}"))
        .iter()
        .map(|c| c["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The digests whose bytes are in blob storage, of any generation.
fn stored_blobs(blobs_dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![blobs_dir.join("blobs")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else if !name.starts_with('.') {
                let hex = name.split('.').next().unwrap_or_default();
                if hex.len() == 64 {
                    found.insert(format!("sha256:{hex}"));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn unreferenced_blobs_lose_their_bytes_and_referenced_ones_pull_whole() {
    let node = collecting_node();
    let client = node.client();
    let shared = b"layer both images use".to_vec();
    let only_a = b"layer only image a uses".to_vec();
    let a = client
        .push_image("gc/a", "v1", b"config a", &[&shared, &only_a])
        .await;
    client
        .push_image("gc/b", "v1", b"config b", &[&shared])
        .await;
    let loose = client.push_blob("gc/a", b"pushed without a manifest").await;
    let unlinked = client.push_blob("gc/b", b"unlinked by the API").await;
    assert_eq!(
        client
            .delete(&format!("/v2/gc/b/blobs/{unlinked}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        client
            .delete(&format!("/v2/gc/a/manifests/{a}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let garbage: BTreeSet<String> = [
        sha256(b"config a"),
        sha256(&only_a),
        loose.clone(),
        unlinked.clone(),
    ]
    .into();

    let first = collect(&node, false).await;
    assert_eq!(digests(&first, "hidden"), garbage, "{first}");
    assert!(
        digests(&first, "removed").is_empty(),
        "nothing goes before the grace"
    );
    let hidden = client.head(&format!("/v2/gc/a/blobs/{loose}")).await;
    assert_eq!(
        hidden.status(),
        StatusCode::NOT_FOUND,
        "a hidden blob is not served"
    );
    assert!(
        garbage.is_subset(&stored_blobs(&node.blobs_dir())),
        "hidden blobs keep their bytes through the grace"
    );

    wait_until_due(&node).await;
    let second = collect(&node, false).await;
    assert_eq!(digests(&second, "removed"), garbage, "{second}");
    let reclaimed = second["bytes_reclaimed"].as_u64().unwrap();
    let expected: usize = [
        b"config a".len(),
        only_a.len(),
        b"pushed without a manifest".len(),
        b"unlinked by the API".len(),
    ]
    .iter()
    .sum();
    assert_eq!(reclaimed, expected as u64);
    let stored = stored_blobs(&node.blobs_dir());
    assert!(
        stored.is_disjoint(&garbage),
        "garbage bytes remain: {stored:?}"
    );

    // Image b is whole, its shared layer included.
    let manifest = client.manifest("gc/b", "v1").await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(client.blob_bytes("gc/b", &sha256(&shared)).await, shared);
    assert_eq!(
        client.blob_bytes("gc/b", &sha256(b"config b")).await,
        b"config b"
    );
    assert_eq!(
        stored,
        [sha256(&shared), sha256(b"config b")].into(),
        "exactly the referenced blobs are stored"
    );
    let metrics = reqwest::get(format!("{}/metrics", node.debug_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("registry_gc_bytes_reclaimed_total {expected}")),
        "{metrics}"
    );
    assert!(metrics.contains("registry_gc_runs_total{result=\"success\"} 2"));
}

/// distribution #1803 and friends: after a collection, a re-push must not be
/// told "layer already exists" for bytes that are gone.
#[tokio::test]
async fn a_collected_blob_is_pushed_afresh_and_a_hidden_one_revived() {
    let node = collecting_node();
    let client = node.client();
    let revived = b"hidden, then pushed again".to_vec();
    let afresh = b"condemned, then pushed again".to_vec();
    let revived_digest = client.push_blob("gc/r", &revived).await;
    let afresh_digest = client.push_blob("gc/r", &afresh).await;
    collect(&node, false).await;
    wait_until_due(&node).await;
    // `afresh` goes now; `revived` is pushed again first, so it stays.
    let head = client
        .head(&format!("/v2/gc/r/blobs/{revived_digest}"))
        .await;
    assert_eq!(
        head.status(),
        StatusCode::NOT_FOUND,
        "clients re-upload a hidden blob"
    );
    client.push_blob("gc/r", &revived).await;
    let report = collect(&node, false).await;
    assert_eq!(
        digests(&report, "removed"),
        [afresh_digest.clone()].into(),
        "{report}"
    );
    // With no delay, the same collection hid the revived blob again.
    assert!(stored_blobs(&node.blobs_dir()).contains(&revived_digest));

    let head = client
        .head(&format!("/v2/gc/r/blobs/{afresh_digest}"))
        .await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    client.push_blob("gc/r", &afresh).await;
    assert_eq!(client.blob_bytes("gc/r", &afresh_digest).await, afresh);
    let manifest = image_manifest(&revived, &[&afresh]);
    let put = client
        .put_manifest("gc/r", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        put.status(),
        StatusCode::CREATED,
        "the manifest revives the hidden blob"
    );
    let report = collect_fully(&node).await;
    assert!(digests(&report, "removed").is_empty(), "{report}");
    assert_eq!(client.blob_bytes("gc/r", &afresh_digest).await, afresh);
    assert_eq!(client.blob_bytes("gc/r", &revived_digest).await, revived);
    let counted = registry_tests::eventually(Duration::from_secs(10), || async {
        let metrics = reqwest::get(format!("{}/metrics", node.debug_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.contains("registry_gc_blobs_revived_total 2")
    })
    .await;
    assert!(
        counted,
        "the push and the manifest that revived blobs are counted"
    );
    let generations: Vec<_> = std::fs::read_dir(
        node.blobs_dir()
            .join("blobs/sha256")
            .join(&afresh_digest[7..9]),
    )
    .unwrap()
    .flatten()
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .filter(|name| name.starts_with(&afresh_digest[7..]))
    .collect();
    assert_eq!(
        generations,
        vec![format!("{}.g1", &afresh_digest[7..])],
        "the re-push wrote a new generation's key"
    );
}

#[tokio::test]
async fn a_dry_run_reports_what_the_next_run_does_and_changes_nothing() {
    let node = collecting_node();
    let client = node.client();
    let old = client.push_blob("gc/d", b"hidden by the first run").await;
    collect(&node, false).await;
    wait_until_due(&node).await;
    let young = client
        .push_blob("gc/d", b"unreferenced, not yet hidden")
        .await;

    let dry = collect(&node, true).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(digests(&dry, "removed"), [old.clone()].into(), "{dry}");
    assert_eq!(digests(&dry, "hidden"), [young.clone()].into(), "{dry}");
    let again = collect(&node, true).await;
    assert_eq!(digests(&again, "removed"), digests(&dry, "removed"), "pure");
    assert_eq!(digests(&again, "hidden"), digests(&dry, "hidden"), "pure");
    assert_eq!(
        client
            .head(&format!("/v2/gc/d/blobs/{young}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(stored_blobs(&node.blobs_dir()).contains(&old));

    let real = collect(&node, false).await;
    assert_eq!(digests(&real, "removed"), digests(&dry, "removed"));
    assert_eq!(digests(&real, "hidden"), digests(&dry, "hidden"));
    assert_eq!(real["bytes_reclaimed"], dry["bytes_reclaimed"]);
}

#[tokio::test]
async fn collections_pause_while_the_registry_is_read_only() {
    let node = collecting_node();
    let client = node.client();
    let blob = client.push_blob("gc/ro", b"kept while read-only").await;
    let http = reqwest::Client::new();
    let on = http
        .post(format!("{}/readonly/on", node.debug_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), StatusCode::OK);
    let refused = http
        .post(format!("{}/gc", node.debug_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(refused.text().await.unwrap().contains("read-only"));
    assert_eq!(
        client
            .head(&format!("/v2/gc/ro/blobs/{blob}"))
            .await
            .status(),
        StatusCode::OK
    );
    http.post(format!("{}/readonly/off", node.debug_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        digests(&collect(&node, false).await, "hidden"),
        [blob].into()
    );
}

/// How many refused manifest PUTs in a row a pusher retries.
const MAX_MANIFEST_RETRIES: usize = 5;

/// An image as a pusher acknowledged it.
struct Pushed {
    repo: String,
    tag: String,
    blobs: Vec<Vec<u8>>,
}

/// Pushes the way docker does: HEAD each blob, upload only what is missing,
/// then PUT the manifest; a manifest refused for a blob collected meanwhile
/// (`MANIFEST_BLOB_UNKNOWN`) is pushed again from the start, as docker's
/// retry does. A slow pusher (`slow_until_gone` names the blob store)
/// waits, before its first manifest PUT, until collections deleted its
/// config's bytes. Answers how many manifest PUTs were refused; gives up,
/// as docker does, after a few refusals in a row.
async fn push_like_docker(
    client: &Client,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
    slow_until_gone: Option<&Path>,
) -> usize {
    let mut refused = 0;
    loop {
        for blob in blobs {
            let head = client
                .head(&format!("/v2/{repo}/blobs/{}", sha256(blob)))
                .await;
            if head.status() != StatusCode::OK {
                client.push_blob(repo, blob).await;
            }
        }
        if let (0, Some(store)) = (refused, slow_until_gone) {
            let config = sha256(&blobs[0]);
            let gone = registry_tests::eventually(Duration::from_secs(30), || async {
                !stored_blobs(store).contains(&config)
            })
            .await;
            assert!(
                gone,
                "collections never deleted {config}, which nothing references"
            );
        }
        let layers: Vec<&[u8]> = blobs[1..].iter().map(Vec::as_slice).collect();
        let manifest = image_manifest(&blobs[0], &layers);
        let put = client
            .put_manifest(repo, tag, OCI_MANIFEST, &manifest)
            .await;
        match put.status() {
            StatusCode::CREATED => return refused,
            StatusCode::BAD_REQUEST => {
                assert_eq!(oci::error_code(put).await, "MANIFEST_BLOB_UNKNOWN");
                refused += 1;
                assert!(
                    refused <= MAX_MANIFEST_RETRIES,
                    "{repo}:{tag} refused {refused} times: re-uploaded blobs are collected \
                     before the manifest arrives"
                );
            }
            other => panic!("PUT manifest {repo}:{tag}: {other}"),
        }
    }
}

#[tokio::test]
async fn pushes_racing_back_to_back_collections_never_lose_a_layer() {
    // With no delay, a config re-uploaded after a refusal is garbage again at
    // once, and back-to-back collections on a loaded machine can refuse every
    // retry (it hung a TEST_CLUSTER=3 S3 run). A second of delay protects the
    // retry, as `delay` does in production; the slow pushes still wait until
    // their config is deleted, so the race is still exercised.
    let node = collecting_node_with_delay(Duration::from_secs(1));
    let client = node.client();
    // A small pool of layers, so pushes keep reusing what collections remove.
    let pool: Vec<Vec<u8>> = (0..6u8)
        .map(|i| vec![i; 2000 + usize::from(i) * 100])
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let collector = {
        let (url, stop, runs) = (node.debug_url(), stop.clone(), runs.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let response = http
                    .post(format!("{url}/gc"))
                    .send()
                    .await
                    .expect("POST /gc");
                assert_eq!(response.status(), StatusCode::OK);
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let mut pushers = Vec::new();
    for p in 0..3usize {
        let (client, pool, runs) = (node.client(), pool.clone(), runs.clone());
        let store = node.blobs_dir();
        pushers.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut refused = 0;
            for round in 0..8usize {
                let repo = format!("gc/race{p}");
                let tag = format!("r{round}");
                let config = format!("config {p} {round}").into_bytes();
                let mut blobs = vec![config];
                blobs.push(pool[(p + round) % pool.len()].clone());
                blobs.push(pool[(p * 2 + round + 1) % pool.len()].clone());
                // Every third push is slow enough that collections delete its
                // unreferenced config before its manifest arrives.
                let slow = (round % 3 == 2).then_some(store.as_path());
                refused += push_like_docker(&client, &repo, &tag, &blobs, slow).await;
                // Every other image is deleted again, which makes garbage of
                // its config and, at times, of pool layers.
                if round % 2 == 1 {
                    let digest = sha256(&image_manifest(
                        &blobs[0],
                        &[blobs[1].as_slice(), blobs[2].as_slice()],
                    ));
                    let deleted = client
                        .delete(&format!("/v2/{repo}/manifests/{digest}"))
                        .await;
                    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
                } else {
                    kept.push(Pushed { repo, tag, blobs });
                }
                // A whole collection runs between two pushes.
                let seen = runs.load(std::sync::atomic::Ordering::Relaxed);
                let ran = registry_tests::eventually(Duration::from_secs(30), || async {
                    runs.load(std::sync::atomic::Ordering::Relaxed) >= seen + 2
                })
                .await;
                assert!(ran, "collections stopped running");
            }
            (kept, refused)
        }));
    }
    let mut kept = Vec::new();
    let mut refused = 0;
    for pusher in pushers {
        let (images, refusals) = pusher.await.expect("pusher");
        kept.extend(images);
        refused += refusals;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    collector.await.expect("collector");
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(runs >= 2, "collections ran while pushing: {runs}");
    assert!(
        refused > 0,
        "no slow push was refused: the race was not exercised ({runs} collections)"
    );

    let mut live = BTreeSet::new();
    for image in &kept {
        let manifest = client.manifest(&image.repo, &image.tag).await;
        assert_eq!(
            manifest.status(),
            StatusCode::OK,
            "{}:{}",
            image.repo,
            image.tag
        );
        for blob in &image.blobs {
            let digest = sha256(blob);
            assert_eq!(
                &client.blob_bytes(&image.repo, &digest).await,
                blob,
                "{}:{} lost {digest} ({refused} manifest PUTs refused and retried over {runs} collections)",
                image.repo,
                image.tag
            );
            live.insert(digest);
        }
    }
    collect_fully(&node).await;
    let stored = stored_blobs(&node.blobs_dir());
    assert_eq!(
        stored, live,
        "exactly what acknowledged images use is stored"
    );
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for image in &kept {
        *counts.entry(&image.repo).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 4), "{counts:?}");
}

/// The delay the manifest tests give: long enough to see a marked manifest
/// stay, short enough to wait out.
const DELAY: Duration = Duration::from_millis(400);

fn collecting_manifests(untagged: bool) -> TestNode {
    TestNode::start_with(move |config| {
        config.api.delete_enabled = true;
        config.gc.enabled = false;
        config.gc.delay = DELAY;
        config.gc.grace = GRACE;
        config.gc.untagged = untagged;
    })
}

/// Pushes an image of `config` and `layers` under `reference` (by digest
/// when `None`); answers the manifest's bytes.
async fn push_image_as(
    client: &Client,
    repo: &str,
    reference: Option<&str>,
    config: &[u8],
    layers: &[&[u8]],
) -> Vec<u8> {
    let manifest = image_manifest(config, layers);
    let reference = reference.map_or_else(|| sha256(&manifest), str::to_owned);
    client.push_image(repo, &reference, config, layers).await;
    manifest
}

/// Pushes an image's blobs and its manifest under `reference`; answers the
/// manifest's digest.
async fn push_manifest(
    client: &Client,
    repo: &str,
    reference: &str,
    manifest: &[u8],
    media_type: &str,
    blobs: &[&[u8]],
) -> String {
    for blob in blobs {
        client.push_blob(repo, blob).await;
    }
    let put = client
        .put_manifest(repo, reference, media_type, manifest)
        .await;
    assert_eq!(put.status(), StatusCode::CREATED, "PUT {repo}:{reference}");
    sha256(manifest)
}

fn signature_of(subject: &[u8], payload: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": oci::descriptor(oci::EMPTY_CONFIG, b"{}"),
        "layers": [oci::descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
        "subject": oci::descriptor(OCI_MANIFEST, subject),
    }))
    .unwrap()
}

/// Runs `rounds` collections, each once nothing waits on the delay or the
/// grace.
async fn collect_rounds(node: &TestNode, rounds: usize) -> Vec<serde_json::Value> {
    let mut reports = Vec::new();
    for _ in 0..rounds {
        wait_until_due(node).await;
        reports.push(collect(node, false).await);
    }
    reports
}

fn removed_manifests(reports: &[serde_json::Value]) -> BTreeSet<String> {
    reports
        .iter()
        .flat_map(|r| r["manifests_removed"].as_array().unwrap().clone())
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn untagged_manifests_go_while_tags_indexes_and_referrers_keep_theirs() {
    let node = collecting_manifests(true);
    let client = node.client();
    let repo = "gc/multi";
    // A tagged index whose two children are untagged, and a signature of it.
    let amd64 = push_image_as(&client, repo, None, b"config amd64", &[b"layer amd64"]).await;
    let arm64 = push_image_as(&client, repo, None, b"config arm64", &[b"layer arm64"]).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [oci::descriptor(OCI_MANIFEST, &amd64), oci::descriptor(OCI_MANIFEST, &arm64)],
    }))
    .unwrap();
    push_manifest(&client, repo, "latest", &index, oci::OCI_INDEX, &[]).await;
    let signature = signature_of(&amd64, b"signed amd64");
    push_manifest(
        &client,
        repo,
        &sha256(&signature),
        &signature,
        OCI_MANIFEST,
        &[b"{}", b"signed amd64"],
    )
    .await;
    // Garbage: an image pushed by digest only, and one whose tag was deleted.
    let lone = push_image_as(&client, repo, None, b"config lone", &[b"layer lone"]).await;
    let untagged = push_image_as(
        &client,
        repo,
        Some("old"),
        b"config untagged",
        &[b"layer untagged"],
    )
    .await;
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/old"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let marking = collect(&node, false).await;
    assert!(
        digests(&marking, "hidden").is_empty(),
        "nothing is older than the delay yet: {marking}"
    );
    let reports = collect_rounds(&node, 3).await;
    assert_eq!(
        removed_manifests(&reports),
        [sha256(&lone), sha256(&untagged)].into(),
        "{reports:?}"
    );
    let removed: BTreeSet<String> = reports.iter().flat_map(|r| digests(r, "removed")).collect();
    let garbage: BTreeSet<String> = [
        b"config lone".as_slice(),
        b"layer lone",
        b"config untagged",
        b"layer untagged",
    ]
    .iter()
    .map(|b| sha256(b))
    .collect();
    assert_eq!(removed, garbage, "{reports:?}");
    assert!(stored_blobs(&node.blobs_dir()).is_disjoint(&garbage));
    for gone in [&lone, &untagged] {
        assert_eq!(
            client.manifest(repo, &sha256(gone)).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    for kept in [&amd64, &arm64, &signature] {
        assert_eq!(
            client.manifest(repo, &sha256(kept)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        client.blob_bytes(repo, &sha256(b"layer arm64")).await,
        b"layer arm64"
    );
    assert_eq!(
        client.blob_bytes(repo, &sha256(b"signed amd64")).await,
        b"signed amd64"
    );

    // Untagging the index unroots all of it, level by level.
    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/latest"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let reports = collect_rounds(&node, 6).await;
    assert_eq!(
        removed_manifests(&reports),
        [
            sha256(&index),
            sha256(&amd64),
            sha256(&arm64),
            sha256(&signature)
        ]
        .into(),
        "{reports:?}"
    );
    assert!(
        stored_blobs(&node.blobs_dir()).is_empty(),
        "{:?}",
        stored_blobs(&node.blobs_dir())
    );
}

#[tokio::test]
async fn without_untagged_only_referrers_and_cosign_tags_of_a_deleted_subject_go() {
    let node = collecting_manifests(false);
    let client = node.client();
    let repo = "gc/sig";
    let image = push_image_as(
        &client,
        repo,
        Some("v1"),
        b"config signed",
        &[b"layer signed"],
    )
    .await;
    let signature = signature_of(&image, b"the signature");
    push_manifest(
        &client,
        repo,
        &sha256(&signature),
        &signature,
        OCI_MANIFEST,
        &[b"{}", b"the signature"],
    )
    .await;
    let by_digest = push_image_as(&client, repo, None, b"config pinned", &[b"layer pinned"]).await;
    // A cosign-style signature tag follows its subject like a referrer.
    let cosign_tag = format!("sha256-{}.sig", &sha256(&image)[7..]);
    let cosign = push_image_as(
        &client,
        repo,
        Some(&cosign_tag),
        b"cosign config",
        &[b"cosign signature"],
    )
    .await;
    // An SBOM pushed before its subject, which arrives within the delay.
    let later = image_manifest(b"config later", &[b"layer later"]);
    let sbom = signature_of(&later, b"the sbom");
    push_manifest(
        &client,
        repo,
        &sha256(&sbom),
        &sbom,
        OCI_MANIFEST,
        &[b"{}", b"the sbom"],
    )
    .await;
    let first = collect_rounds(&node, 1).await;
    assert_eq!(first[0]["manifests_marked"], 1, "the early SBOM: {first:?}");
    push_image_as(
        &client,
        repo,
        Some("v2"),
        b"config later",
        &[b"layer later"],
    )
    .await;

    let reports = collect_rounds(&node, 2).await;
    assert!(removed_manifests(&reports).is_empty(), "{reports:?}");
    assert_eq!(
        client.manifest(repo, &sha256(&sbom)).await.status(),
        StatusCode::OK,
        "its subject arrived: the SBOM stays"
    );
    assert_eq!(
        client.manifest(repo, &sha256(&by_digest)).await.status(),
        StatusCode::OK,
        "untagged stays"
    );

    assert_eq!(
        client
            .delete(&format!("/v2/{repo}/manifests/{}", sha256(&image)))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let reports = collect_rounds(&node, 4).await;
    assert_eq!(
        removed_manifests(&reports),
        [sha256(&signature), sha256(&cosign)].into(),
        "{reports:?}"
    );
    let tags_removed: Vec<_> = reports
        .iter()
        .flat_map(|r| r["tags_removed"].as_array().unwrap().clone())
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags_removed, vec![cosign_tag], "{reports:?}");
    assert_eq!(
        client.manifest(repo, &sha256(&signature)).await.status(),
        StatusCode::NOT_FOUND
    );
    let stored = stored_blobs(&node.blobs_dir());
    let kept: BTreeSet<String> = [
        b"config pinned".as_slice(),
        b"layer pinned",
        b"config later",
        b"layer later",
        b"{}",
        b"the sbom",
    ]
    .iter()
    .map(|b| sha256(b))
    .collect();
    assert_eq!(
        stored, kept,
        "the image's, its signature's and its cosign tag's blobs are gone"
    );
}

#[tokio::test]
async fn retention_keeps_matching_recent_and_pulled_tags_and_collects_the_rest() {
    let node = TestNode::start_with(|config| {
        config.api.delete_enabled = true;
        config.gc.enabled = false;
        config.gc.delay = DELAY;
        config.gc.grace = GRACE;
        config.gc.pull_flush = Duration::from_millis(100);
        let keep = raft::gc::Keep {
            tags: vec!["v*".into(), "latest".into()],
            most_recent: Some(2),
            pulled_within_ms: Some(3_600_000),
            ..Default::default()
        };
        config.gc.retention =
            vec![raft::gc::RetentionRule::new(vec!["ci/**".into()], keep).unwrap()];
    });
    let client = node.client();
    let image = |name: &str| {
        let config = format!("config {name}").into_bytes();
        let layer = format!("layer {name}").into_bytes();
        (image_manifest(&config, &[&layer]), config, layer)
    };
    let tags = [
        "v1", "latest", "build-1", "build-2", "build-3", "build-4", "build-5",
    ];
    for tag in tags {
        let (_, config, layer) = image(tag);
        push_image_as(&client, "ci/app", Some(tag), &config, &[&layer]).await;
    }
    let (_, config, layer) = image("prod");
    push_image_as(&client, "prod/app", Some("build-1"), &config, &[&layer]).await;
    // A pull keeps build-1; the nodes write pulls to the log in batches.
    assert_eq!(
        client.manifest("ci/app", "build-1").await.status(),
        StatusCode::OK
    );
    let expected: BTreeSet<String> = ["build-2".to_owned(), "build-3".to_owned()].into();
    let tags_in = |report: &serde_json::Value| -> BTreeSet<String> {
        report["tags_removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap().to_owned())
            .collect()
    };
    let planned = registry_tests::eventually(Duration::from_secs(30), || async {
        tags_in(&collect(&node, true).await) == expected
    })
    .await;
    assert!(
        planned,
        "the dry run never settled on {expected:?}: {}",
        collect(&node, true).await
    );

    let report = collect(&node, false).await;
    assert_eq!(tags_in(&report), expected, "{report}");
    for tag in ["build-2", "build-3"] {
        let gone = client.manifest("ci/app", tag).await;
        assert_eq!(oci::error_code(gone).await, "MANIFEST_UNKNOWN");
    }
    for tag in ["v1", "latest", "build-1", "build-4", "build-5"] {
        assert_eq!(
            client.manifest("ci/app", tag).await.status(),
            StatusCode::OK,
            "{tag}"
        );
    }
    assert_eq!(
        client.manifest("prod/app", "build-1").await.status(),
        StatusCode::OK
    );

    // Their manifests go after the delay without storage.gc.untagged, and
    // their blobs after the grace.
    let reports = collect_rounds(&node, 3).await;
    let dropped: BTreeSet<String> = ["build-2", "build-3"]
        .iter()
        .map(|t| sha256(&image(t).0))
        .collect();
    assert_eq!(removed_manifests(&reports), dropped, "{reports:?}");
    let stored = stored_blobs(&node.blobs_dir());
    for tag in ["build-2", "build-3"] {
        let (_, config, layer) = image(tag);
        assert!(!stored.contains(&sha256(&config)) && !stored.contains(&sha256(&layer)));
    }
    for tag in ["v1", "build-1", "build-5"] {
        let (_, _, layer) = image(tag);
        assert_eq!(client.blob_bytes("ci/app", &sha256(&layer)).await, layer);
    }
}

/// A sweep cut short, at each step: deletes refused after the condemn (and
/// the node restarted there), deletes done whose answers were lost; the next
/// collection finishes, and a re-push writes a fresh generation.
#[tokio::test]
async fn a_sweep_cut_short_at_any_step_is_finished_by_the_next_collection() {
    let mut node = collecting_node();
    let client = node.client();
    let garbage: Vec<Vec<u8>> = (0..3).map(|n| format!("swept {n}").into_bytes()).collect();
    let mut pushed = BTreeSet::new();
    for blob in &garbage {
        pushed.insert(client.push_blob("gc/cut", blob).await);
    }
    collect(&node, false).await;
    wait_until_due(&node).await;

    node.faults
        .fail_deletes(storage::faulty::DeleteFault::Refuse);
    let refused = collect(&node, false).await;
    assert_eq!(refused["sweep_failures"], 3, "{refused}");
    assert!(
        pushed.is_subset(&stored_blobs(&node.blobs_dir())),
        "nothing deleted"
    );
    node.restart();
    let client = node.client();
    for digest in &pushed {
        let head = client.head(&format!("/v2/gc/cut/blobs/{digest}")).await;
        assert_eq!(
            head.status(),
            StatusCode::NOT_FOUND,
            "condemned stays condemned"
        );
    }

    node.faults
        .fail_deletes(storage::faulty::DeleteFault::LoseAnswer);
    let lost = collect(&node, false).await;
    assert_eq!(lost["sweep_failures"], 3, "{lost}");
    assert!(
        stored_blobs(&node.blobs_dir()).is_disjoint(&pushed),
        "deleted all the same"
    );

    node.faults.fail_deletes(storage::faulty::DeleteFault::None);
    let finished = collect(&node, false).await;
    assert_eq!(digests(&finished, "removed"), pushed, "{finished}");
    assert_eq!(finished["sweep_failures"], 0);
    let again = collect(&node, false).await;
    assert!(digests(&again, "removed").is_empty(), "swept once: {again}");

    client.push_blob("gc/cut", &garbage[0]).await;
    assert_eq!(
        client.blob_bytes("gc/cut", &sha256(&garbage[0])).await,
        garbage[0]
    );
}
