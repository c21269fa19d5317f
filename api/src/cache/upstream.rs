//! One upstream registry, spoken to with the `oci-client` crate (which does
//! the token dance registries such as Docker Hub ask for).

use super::UpstreamConfig;
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use std::time::Duration;
use storage::Digest;

const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

pub struct Upstream {
    prefix: String,
    url: String,
    /// `host[:port]`, as references name the registry.
    registry: String,
    client: oci_client::Client,
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
        Ok(Upstream {
            prefix: config.prefix.trim_matches('/').to_owned(),
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
