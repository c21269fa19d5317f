//! The backends, and the one place a backend is chosen from config.

pub mod fs;
pub mod memory;
pub mod object;
mod swift_auth;

use crate::config::{
    AzureConfig, BackendConfig, GcsConfig, OssConfig, S3Config, SwiftConfig, DEFAULT_CHUNK_SIZE,
};
use crate::error::{ErrorKind, Result, StorageError};
use crate::BlobStore;
use base64::Engine as _;
use object::{ObjectStore, Renew as _};
use opendal::{services, Operator};
use std::sync::Arc;
use std::time::Duration;

/// How long the start-up reachability check may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// Opens the backend the config names. Object stores are checked for
/// reachability (credentials, bucket, network) before this returns.
pub async fn open(config: &BackendConfig) -> Result<Arc<dyn BlobStore>> {
    let (operator, chunk_size) = match config {
        BackendConfig::Filesystem { root } => return Ok(Arc::new(fs::FsStore::open(root).await?)),
        BackendConfig::InMemory => return Ok(Arc::new(memory::MemoryStore::default())),
        BackendConfig::S3(c) => (s3(c)?, c.chunk_size),
        BackendConfig::Azure(c) => (azure(c)?, DEFAULT_CHUNK_SIZE),
        BackendConfig::Gcs(c) => (gcs(c)?, DEFAULT_CHUNK_SIZE),
        BackendConfig::Swift(c) => return open_swift(c).await,
        BackendConfig::Oss(c) => (oss(c)?, DEFAULT_CHUNK_SIZE),
    };
    let store = ObjectStore::new(operator, config.name(), chunk_size);
    Ok(checked(store).await?)
}

/// The store, once it has answered within [`CHECK_DEADLINE`].
async fn checked(store: ObjectStore) -> Result<Arc<ObjectStore>> {
    match tokio::time::timeout(CHECK_DEADLINE, store.check()).await {
        Ok(checked) => checked?,
        Err(_) => {
            return Err(StorageError::new(
                ErrorKind::Unavailable,
                format!(
                    "{} storage did not answer within {CHECK_DEADLINE:?}",
                    store.backend()
                ),
            ))
        }
    }
    Ok(Arc::new(store))
}

/// Swift with a fixed token, or logged in and logging in again before each
/// token expires.
async fn open_swift(c: &SwiftConfig) -> Result<Arc<dyn BlobStore>> {
    let Some(auth) = c.auth.clone() else {
        let endpoint = c.endpoint.clone().unwrap_or_default();
        let operator = swift(c, &endpoint, c.token.as_deref())?;
        return Ok(checked(ObjectStore::new(operator, "swift", DEFAULT_CHUNK_SIZE)).await?);
    };
    let login = SwiftLogin {
        config: c.clone(),
        auth,
    };
    let (operator, next) = login.renew().await?;
    let store =
        ObjectStore::new(operator, "swift", DEFAULT_CHUNK_SIZE).with_renewal(Box::new(login), next);
    Ok(checked(store).await?)
}

/// Logs in to Swift for a new token.
#[derive(Debug)]
struct SwiftLogin {
    config: SwiftConfig,
    auth: crate::config::SwiftAuth,
}

#[async_trait::async_trait]
impl object::Renew for SwiftLogin {
    async fn renew(&self) -> Result<(Operator, Duration)> {
        let session = swift_auth::login(&self.auth).await?;
        // The configured storage URL wins over the one the login answers.
        let endpoint = self
            .config
            .endpoint
            .as_deref()
            .unwrap_or(&session.storage_url);
        let operator = swift(&self.config, endpoint, Some(&session.token))?;
        let next = swift_auth::refresh_after(&session);
        tracing::info!(url = %self.auth.url, storage_url = %endpoint, next_in = ?next, "logged in to swift");
        Ok((operator, next))
    }
}

fn config_error(backend: &str, e: opendal::Error) -> StorageError {
    StorageError::new(ErrorKind::Internal, format!("{backend} configuration")).with_source(e)
}

fn s3(c: &S3Config) -> Result<Operator> {
    let mut b = services::S3::default().bucket(&c.bucket);
    if let Some(region) = &c.region {
        b = b.region(region);
    }
    if let Some(endpoint) = &c.endpoint {
        b = b.endpoint(endpoint);
    }
    if !c.force_path_style {
        b = b.enable_virtual_host_style();
    }
    if let (Some(key), Some(secret)) = (&c.access_key, &c.secret_key) {
        b = b.access_key_id(key).secret_access_key(secret);
    }
    if let Some(root) = &c.root {
        b = b.root(root);
    }
    if let Some(class) = &c.storage_class {
        b = b.default_storage_class(class);
    }
    if c.encrypt {
        b = b.server_side_encryption_with_s3_key();
    }
    Operator::new(b).map_err(|e| config_error("s3", e))
}

fn azure(c: &AzureConfig) -> Result<Operator> {
    let endpoint = c
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}.blob.{}", c.account_name, c.realm));
    let mut b = services::Azblob::default()
        .container(&c.container)
        .account_name(&c.account_name)
        .endpoint(&endpoint);
    if let Some(key) = &c.account_key {
        b = b.account_key(key);
    }
    if let Some(root) = &c.root {
        b = b.root(root);
    }
    Operator::new(b).map_err(|e| config_error("azure", e))
}

fn gcs(c: &GcsConfig) -> Result<Operator> {
    let mut b = services::Gcs::default().bucket(&c.bucket);
    if let Some(path) = &c.key_file {
        b = b.credential_path(path);
    }
    if let Some(json) = &c.credentials {
        b = b.credential(&base64::engine::general_purpose::STANDARD.encode(json));
    }
    if let Some(endpoint) = &c.endpoint {
        b = b.endpoint(endpoint);
    }
    if let Some(root) = &c.root {
        b = b.root(root);
    }
    if c.anonymous {
        b = b
            .skip_signature()
            .disable_vm_metadata()
            .disable_config_load();
    }
    Operator::new(b).map_err(|e| config_error("gcs", e))
}

fn swift(c: &SwiftConfig, endpoint: &str, token: Option<&str>) -> Result<Operator> {
    let mut b = services::Swift::default()
        .endpoint(endpoint)
        .container(&c.container);
    if let Some(token) = token {
        b = b.token(token);
    }
    if let Some(root) = &c.root {
        b = b.root(root);
    }
    if let Some(key) = &c.temp_url_key {
        b = b.temp_url_key(key);
    }
    Operator::new(b).map_err(|e| config_error("swift", e))
}

fn oss(c: &OssConfig) -> Result<Operator> {
    let mut b = services::Oss::default()
        .bucket(&c.bucket)
        .endpoint(&c.endpoint);
    if let (Some(id), Some(secret)) = (&c.access_key_id, &c.access_key_secret) {
        b = b.access_key_id(id).access_key_secret(secret);
    }
    if let Some(root) = &c.root {
        b = b.root(root);
    }
    Operator::new(b).map_err(|e| config_error("oss", e))
}
