//! The backends, and the one place a backend is chosen from config.

pub mod fs;
pub mod memory;
pub mod object;

use crate::config::{
    AzureConfig, BackendConfig, GcsConfig, OssConfig, S3Config, SwiftConfig, DEFAULT_CHUNK_SIZE,
};
use crate::error::{ErrorKind, Result, StorageError};
use crate::BlobStore;
use base64::Engine as _;
use object::ObjectStore;
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
        BackendConfig::Swift(c) => (swift(c)?, DEFAULT_CHUNK_SIZE),
        BackendConfig::Oss(c) => (oss(c)?, DEFAULT_CHUNK_SIZE),
    };
    let store = ObjectStore::new(operator, config.name(), chunk_size);
    match tokio::time::timeout(CHECK_DEADLINE, store.check()).await {
        Ok(checked) => checked?,
        Err(_) => {
            return Err(StorageError::new(
                ErrorKind::Unavailable,
                format!(
                    "{} storage did not answer within {CHECK_DEADLINE:?}",
                    config.name()
                ),
            ))
        }
    }
    Ok(Arc::new(store))
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

fn swift(c: &SwiftConfig) -> Result<Operator> {
    let mut b = services::Swift::default()
        .endpoint(&c.endpoint)
        .container(&c.container);
    if let Some(token) = &c.token {
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
