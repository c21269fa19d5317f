//! The storage section of the configuration, typed. `node` parses the YAML
//! (distribution's key names) into these; this crate turns them into stores.

use std::path::PathBuf;

/// Which blob backend to use and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// Blobs as files under `root`.
    Filesystem {
        root: PathBuf,
    },
    /// Blobs in process memory; lost on exit. For tests and trials.
    InMemory,
    S3(S3Config),
    Azure(AzureConfig),
    Gcs(GcsConfig),
    Swift(SwiftConfig),
    Oss(OssConfig),
}

impl BackendConfig {
    /// The backend's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Filesystem { .. } => "filesystem",
            BackendConfig::InMemory => "inmemory",
            BackendConfig::S3(_) => "s3",
            BackendConfig::Azure(_) => "azure",
            BackendConfig::Gcs(_) => "gcs",
            BackendConfig::Swift(_) => "swift",
            BackendConfig::Oss(_) => "oss",
        }
    }
}

/// Smallest multipart part S3 (and its clones) accept.
pub const MIN_CHUNK_SIZE: usize = 5 << 20;
/// Default multipart part size.
pub const DEFAULT_CHUNK_SIZE: usize = 10 << 20;

/// Amazon S3 or an S3-compatible store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    /// AWS region; may come from the environment instead.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server (distribution's `regionendpoint`).
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    pub force_path_style: bool,
    /// Static credentials; without them the usual AWS environment, profile
    /// and instance-role chain applies.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Prefix of every object in the bucket.
    pub root: Option<String>,
    pub storage_class: Option<String>,
    /// Server-side encryption with S3-managed keys.
    pub encrypt: bool,
    /// Multipart part size in bytes (at least 5 MiB).
    pub chunk_size: usize,
}

/// Azure Blob Storage (or Azurite).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureConfig {
    pub account_name: String,
    pub account_key: Option<String>,
    pub container: String,
    /// Endpoint; defaults to `https://<account>.blob.<realm>`.
    pub endpoint: Option<String>,
    /// Domain of the cloud (`core.windows.net` unless a sovereign cloud).
    pub realm: String,
    pub root: Option<String>,
}

/// Google Cloud Storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcsConfig {
    pub bucket: String,
    /// Path of a service-account key file.
    pub key_file: Option<String>,
    /// A service-account key, inline (JSON).
    pub credentials: Option<String>,
    pub endpoint: Option<String>,
    pub root: Option<String>,
    /// Unsigned requests and no credential lookup: public buckets and
    /// emulators such as fake-gcs-server.
    pub anonymous: bool,
}

/// OpenStack Swift: a login (`auth`), or a storage URL and a fixed token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwiftConfig {
    /// Storage URL of the account, e.g. `https://swift.example/v1/AUTH_x`;
    /// with `auth`, it replaces the URL the login answers.
    pub endpoint: Option<String>,
    pub container: String,
    /// A fixed token (without `auth`).
    pub token: Option<String>,
    /// Log in with these credentials, and again before the token expires.
    pub auth: Option<SwiftAuth>,
    pub root: Option<String>,
    /// The account's or container's `Temp-URL-Key`: blob GETs then redirect
    /// to TempURLs.
    pub temp_url_key: Option<String>,
}

/// Credentials for a Swift login: v1 (`tempauth`, `swauth`), or Keystone v3
/// when `url` ends in `/v3`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwiftAuth {
    pub url: String,
    pub username: String,
    pub password: String,
    /// Keystone project to scope the token to.
    pub tenant: Option<String>,
    /// Keystone domain of the user and project (`Default` when absent).
    pub domain: Option<String>,
    /// Region of the object-store endpoint in Keystone's catalog.
    pub region: Option<String>,
}

/// Alibaba Cloud OSS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OssConfig {
    pub bucket: String,
    pub endpoint: String,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub root: Option<String>,
}
