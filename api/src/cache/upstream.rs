//! One upstream registry, spoken to with the `oci-client` crate (which does
//! the token dance registries such as Docker Hub ask for).

use super::UpstreamConfig;
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use std::time::Duration;
use storage::Digest;

const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

pub struct Upstream {
    prefix: String,
    url: String,
    /// `host[:port]`, as references name the registry.
    registry: String,
    client: oci_client::Client,
    /// For the calls `oci-client` has no faithful form of (referrers: its
    /// index entries drop `artifactType`), with the token it negotiated.
    http: reqwest::Client,
    auth: RegistryAuth,
    ttl: Option<Duration>,
}

/// Why the upstream gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream has no such {0}")]
    NotFound(&'static str),
    #[error("the upstream refused the cache's credentials: {0}")]
    Refused(String),
    #[error("the upstream failed: {0}")]
    Failed(String),
}

impl UpstreamError {
    fn of(what: &'static str, e: OciDistributionError) -> Self {
        let unknown = |code: &OciErrorCode| {
            matches!(
                code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
            )
        };
        let refused =
            |code: &OciErrorCode| matches!(code, OciErrorCode::Unauthorized | OciErrorCode::Denied);
        match &e {
            OciDistributionError::ServerError { code: 404, .. } => UpstreamError::NotFound(what),
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|err| unknown(&err.code)) =>
            {
                UpstreamError::NotFound(what)
            }
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|err| refused(&err.code)) =>
            {
                UpstreamError::Refused(e.to_string())
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => UpstreamError::Refused(e.to_string()),
            _ => UpstreamError::Failed(e.to_string()),
        }
    }

    /// The result label of a lookup that failed so.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::NotFound(_) => "not_found",
            UpstreamError::Refused(_) => "refused",
            UpstreamError::Failed(_) => "failed",
        }
    }

    /// What the client is told when nothing cached can stand in.
    pub fn to_api(&self, not_found: crate::error::ErrorCode) -> crate::error::ApiError {
        let code = match self {
            UpstreamError::NotFound(_) => not_found,
            _ => crate::error::ErrorCode::Unavailable,
        };
        crate::error::ApiError::new(code, self.to_string())
    }
}

/// A blob body as the upstream streams it.
pub struct BlobStream {
    pub length: Option<u64>,
    pub stream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, String> {
        let url = config.remote_url.trim_end_matches('/').to_owned();
        let (protocol, registry) = if let Some(host) = url.strip_prefix("https://") {
            (ClientProtocol::Https, host)
        } else if let Some(host) = url.strip_prefix("http://") {
            (ClientProtocol::Http, host)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        if registry.is_empty() || registry.contains('/') || registry.contains('@') {
            return Err(format!(
                "{url:?} must be the root of a registry: scheme, host and port only"
            ));
        }
        let auth = match (&config.username, &config.password) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            (None, None) => RegistryAuth::Anonymous,
            _ => return Err("username and password go together".to_owned()),
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(5)),
            // A stalled upstream fails the fetch (and frees its waiters)
            // instead of holding them forever.
            read_timeout: Some(Duration::from_secs(30)),
            user_agent: concat!("registry-pull-through-cache/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!(
                "registry-pull-through-cache/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("an HTTP client for {url}: {e}"))?;
        Ok(Upstream {
            prefix: config.prefix.trim_matches('/').to_owned(),
            http,
            registry: registry.to_owned(),
            url,
            client,
            auth,
            ttl: config.ttl,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    fn tagged(&self, repo: &str, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), repo.to_owned(), tag.to_owned())
    }

    fn digested(&self, repo: &str, digest: &Digest) -> Reference {
        Reference::with_digest(self.registry.clone(), repo.to_owned(), digest.to_string())
    }

    /// What `tag` of `repo` points at upstream, asked with a `HEAD`.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Result<Digest, UpstreamError> {
        let digest = self
            .client
            .fetch_manifest_digest(&self.tagged(repo, tag), &self.auth)
            .await
            .map_err(|e| UpstreamError::of("tag", e))?;
        digest
            .parse()
            .map_err(|e| UpstreamError::Failed(format!("digest {digest:?}: {e}")))
    }

    /// The bytes of manifest `digest` of `repo`, verified against it.
    pub async fn manifest(&self, repo: &str, digest: &Digest) -> Result<Bytes, UpstreamError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&self.digested(repo, digest), &self.auth, ACCEPTED)
            .await
            .map_err(|e| UpstreamError::of("manifest", e))?;
        let mut hasher = storage::Hasher::new(digest.algorithm());
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(UpstreamError::Failed(format!(
                "sent a manifest with digest {actual} for {digest}"
            )));
        }
        Ok(bytes)
    }

    /// Up to `n` tags of `repo` after `last`, as the upstream lists them.
    pub async fn tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Vec<String>, UpstreamError> {
        let listed = self
            .client
            .list_tags(&self.tagged(repo, "latest"), &self.auth, n, last)
            .await
            .map_err(|e| UpstreamError::of("repository", e))?;
        Ok(listed.tags)
    }

    /// Whether `repo` has blob `digest` upstream, asked with a `HEAD`.
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool, UpstreamError> {
        self.client
            .store_auth_if_needed(&self.registry, &self.auth)
            .await;
        self.client
            .blob_exists(&self.digested(repo, digest), &digest.to_string())
            .await
            .map_err(|e| UpstreamError::of("blob", e))
    }

    /// The descriptors of the manifests whose subject is `subject` in
    /// `repo`, through the upstream's referrers API, filtered by
    /// `artifact_type` (here when the upstream did not); `None` when the
    /// upstream has no referrers API (a 404, as the spec has it).
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<serde_json::Value>>, UpstreamError> {
        let token = self
            .client
            .auth(
                &self.digested(repo, subject),
                &self.auth,
                RegistryOperation::Pull,
            )
            .await
            .map_err(|e| UpstreamError::of("referrers", e))?;
        let mut request = self
            .http
            .get(format!("{}/v2/{repo}/referrers/{subject}", self.url))
            .header(reqwest::header::ACCEPT, OCI_INDEX);
        if let Some(artifact_type) = artifact_type {
            request = request.query(&[("artifactType", artifact_type)]);
        }
        request = match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        };
        let failed = |e: reqwest::Error| UpstreamError::Failed(format!("referrers: {e}"));
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(UpstreamError::Refused(format!(
                "referrers: answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(UpstreamError::Failed(format!(
                "referrers: answered {status}"
            )));
        }
        let filtered = response
            .headers()
            .get("OCI-Filters-Applied")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
        let body = response.bytes().await.map_err(failed)?;
        let index: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Failed(format!("referrers: not an index: {e}")))?;
        let Some(manifests) = index.get("manifests").and_then(|m| m.as_array()) else {
            return Err(UpstreamError::Failed(
                "referrers: an index without manifests".to_owned(),
            ));
        };
        Ok(Some(
            manifests
                .iter()
                .filter(|d| {
                    filtered || artifact_type.is_none_or(|t| d["artifactType"].as_str() == Some(t))
                })
                .cloned()
                .collect(),
        ))
    }

    /// Blob `digest` of `repo`, streamed (the caller verifies it).
    pub async fn blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream, UpstreamError> {
        self.client
            .store_auth_if_needed(&self.registry, &self.auth)
            .await;
        let digest_str = digest.to_string();
        let sized = self
            .client
            .pull_blob_stream(&self.digested(repo, digest), digest_str.as_str())
            .await
            .map_err(|e| UpstreamError::of("blob", e))?;
        Ok(BlobStream {
            length: sized.content_length,
            stream: sized.stream,
        })
    }
}
