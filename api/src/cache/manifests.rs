//! Manifests of covered repositories: brought into the local state from
//! the upstream before the ordinary manifest `GET`/`HEAD` serves them.

use super::flight::Joined;
use super::{Covered, PullThroughCache, UpstreamError};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::names::{Reference, RepoName};
use crate::state::{now_ms, AppState};
use raft::{Command, ManifestRecord, Response};
use storage::Digest;

/// Makes the local state hold `reference` of `name` as the cache wants it:
/// a digest once fetched, a tag fetched within the upstream's `ttl`. Fails
/// only when there is nothing to serve; an upstream failure with a cached
/// tag to fall back on is logged and counted, and the cached tag served.
pub async fn refresh(
    state: &AppState,
    cache: &PullThroughCache,
    covered: &Covered,
    name: &RepoName,
    reference: &Reference,
) -> ApiResult<()> {
    let upstream = covered.upstream.url();
    let key = format!("manifest {name} {reference}");
    match reference {
        Reference::Digest(digest) => {
            let (_, found) =
                crate::handlers::by_digest(state, |v| v.manifest(name.as_str(), digest)).await?;
            if found.is_some() {
                cache.metrics.lookup(upstream, "manifest", "hit");
                return Ok(());
            }
            if crate::refuses_writes(state.config.read_only, &state.meta) {
                return Err(super::read_only());
            }
            once(cache, key, || async {
                let result = fetch(state, covered, name, digest, None).await;
                let label = result
                    .as_ref()
                    .map_or_else(UpstreamError::label, |_| "fetched");
                cache.metrics.lookup(upstream, "manifest", label);
                result.map_err(|e| e.to_api(ErrorCode::ManifestUnknown))?
            })
            .await
        }
        Reference::Tag(tag) => {
            let view = state.meta.read().await?;
            let cached = match view.tag(name.as_str(), tag.as_str())? {
                Some(digest) => {
                    let at = view.tag_pushed_at(name.as_str(), &digest, tag.as_str())?;
                    Some((digest, at.unwrap_or(0)))
                }
                None => None,
            };
            let fresh = |at: u64| {
                covered
                    .upstream
                    .ttl()
                    .is_some_and(|ttl| now_ms().saturating_sub(at) < ttl.as_millis() as u64)
            };
            if cached.as_ref().is_some_and(|(_, at)| fresh(*at)) {
                cache.metrics.lookup(upstream, "manifest", "hit");
                return Ok(());
            }
            if crate::refuses_writes(state.config.read_only, &state.meta) {
                // Nothing new is stored while read-only: serve what is cached.
                return match cached {
                    Some(_) => {
                        cache.metrics.lookup(upstream, "manifest", "stale");
                        Ok(())
                    }
                    None => Err(super::read_only()),
                };
            }
            once(cache, key, || async {
                let cached_digest = cached.as_ref().map(|(digest, _)| digest);
                let result = revalidate(state, covered, name, tag.as_str(), cached_digest).await;
                match (result, cached_digest) {
                    (Ok(changed), _) => {
                        let result = if changed { "fetched" } else { "revalidated" };
                        cache.metrics.lookup(upstream, "manifest", result);
                        Ok(())
                    }
                    (Err(Fetch::Upstream(e)), Some(digest)) => {
                        tracing::warn!(repository = %name, tag = tag.as_str(), %digest, upstream,
                            error = %e, "serving the cached tag: the upstream failed");
                        cache.metrics.lookup(upstream, "manifest", "stale");
                        Ok(())
                    }
                    (Err(Fetch::Local(e)), Some(digest)) => {
                        tracing::warn!(repository = %name, tag = tag.as_str(), %digest, upstream,
                            error = %e.detail, "serving the cached tag: storing the upstream's answer failed");
                        cache.metrics.lookup(upstream, "manifest", "stale");
                        Ok(())
                    }
                    (Err(Fetch::Upstream(e)), None) => {
                        cache.metrics.lookup(upstream, "manifest", e.label());
                        Err(e.to_api(ErrorCode::ManifestUnknown))
                    }
                    (Err(Fetch::Local(e)), None) => Err(e),
                }
            })
            .await
        }
    }
}

/// Runs `fetch` unless a fetch of `key` runs already, then waits for that
/// (and runs it after all if that one's request went away unfinished).
async fn once<F, Fut>(cache: &PullThroughCache, key: String, fetch: F) -> ApiResult<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ApiResult<()>>,
{
    loop {
        match cache.flights.join(key.clone()) {
            Joined::Lead(lead) => {
                let outcome = fetch().await;
                lead.finish(outcome.clone());
                return outcome;
            }
            Joined::Follow(follow) => {
                if let Some(outcome) = follow.outcome().await {
                    return outcome;
                }
            }
        }
    }
}

/// A fetch's failure: the upstream's, or this registry's own in storing it.
enum Fetch {
    Upstream(UpstreamError),
    Local(ApiError),
}

/// Asks the upstream what `tag` points at and stores it (again, when it is
/// `cached` already, which starts its `ttl` anew); answers whether the tag
/// moved.
async fn revalidate(
    state: &AppState,
    covered: &Covered,
    name: &RepoName,
    tag: &str,
    cached: Option<&Digest>,
) -> Result<bool, Fetch> {
    let digest = covered
        .upstream
        .tag_digest(&covered.remote_repo, tag)
        .await
        .map_err(Fetch::Upstream)?;
    let view = state
        .meta
        .read()
        .await
        .map_err(|e| Fetch::Local(e.into()))?;
    let stored = view
        .manifest(name.as_str(), &digest)
        .map_err(|e| Fetch::Local(e.into()))?;
    match stored {
        Some(record) => {
            let record = ManifestRecord {
                at_ms: now_ms(),
                ..record
            };
            store(state, name, &digest, Some(tag), record)
                .await
                .map_err(Fetch::Local)?;
        }
        None => fetch(state, covered, name, &digest, Some(tag))
            .await
            .map_err(Fetch::Upstream)?
            .map_err(Fetch::Local)?,
    }
    Ok(cached != Some(&digest))
}

/// Fetches manifest `digest` from the upstream and stores it, tagged `tag`.
/// The outer error is the upstream's, the inner one the local store's.
async fn fetch(
    state: &AppState,
    covered: &Covered,
    name: &RepoName,
    digest: &Digest,
    tag: Option<&str>,
) -> Result<ApiResult<()>, UpstreamError> {
    let bytes = covered
        .upstream
        .manifest(&covered.remote_repo, digest)
        .await?;
    if bytes.len() > state.config.max_manifest_bytes {
        return Err(UpstreamError::Failed(format!(
            "sent a manifest of {} bytes, over the limit of {}",
            bytes.len(),
            state.config.max_manifest_bytes
        )));
    }
    let parsed = crate::manifest::parse(None, &bytes)
        .map_err(|e| UpstreamError::Failed(format!("sent an invalid manifest: {}", e.detail)))?;
    let record = parsed.into_record(bytes.to_vec(), now_ms());
    tracing::info!(repository = %name, %digest, tag, upstream = covered.upstream.url(),
        "cached a manifest from the upstream");
    Ok(store(state, name, digest, tag, record).await)
}

async fn store(
    state: &AppState,
    name: &RepoName,
    digest: &Digest,
    tag: Option<&str>,
    manifest: ManifestRecord,
) -> ApiResult<()> {
    let command = Command::CacheManifest {
        repo: name.to_string(),
        digest: digest.clone(),
        tag: tag.map(str::to_owned),
        manifest,
    };
    match state.meta.propose(command).await? {
        Response::Done => Ok(()),
        Response::ReadOnly => Err(super::read_only()),
        other => Err(ApiError::new(
            ErrorCode::Unknown,
            format!("cache manifest: {other:?}"),
        )),
    }
}
