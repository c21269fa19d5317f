//! The configuration: one typed tree, loaded from an optional YAML file with
//! `REGISTRY_…` environment overrides, validated before anything starts.
//!
//! The file is shaped like distribution's where the concepts match:
//!
//! ```yaml
//! log: { level: info }
//! http: { addr: 0.0.0.0:5000 }
//! storage:
//!   filesystem: { rootdirectory: ./data/blobs }   # or `inmemory:`
//!   delete: { enabled: true }
//! metadata: { dir: ./data/meta }
//! ```
//!
//! `REGISTRY_HTTP_ADDR=127.0.0.1:6000` overrides `http.addr`: the variable
//! name after `REGISTRY_`, lowercased and split on `_`, is the key path.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything a node needs, validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    /// TLS on the OCI API (`http.tls`); `None` serves plain HTTP.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Mutual TLS between nodes (`cluster.tls`): served on the internal
    /// listener, `client_cas` also the roots of peers' certificates.
    pub internal_tls: Option<crate::tls::TlsSettings>,
    /// Logins and access rules (`auth`); `None` lets everyone do everything.
    pub auth: Option<api::auth::AuthConfig>,
    /// Per-client limits (`http.ratelimit`); none by default.
    pub rate_limit: api::ratelimit::RateLimitConfig,
    /// The internal listener (Raft RPC, requests forwarded between nodes);
    /// `None` for a single node without a `cluster` section.
    pub internal_listen: Option<SocketAddr>,
    /// The operators' listener for metrics and health; `None` disables it.
    pub debug_listen: Option<SocketAddr>,
    /// TLS on the debug listener (`http.debug.tls`); `None` for plain HTTP.
    pub debug_tls: Option<crate::tls::TlsSettings>,
    pub blobs: storage::BackendConfig,
    pub raft: raft::RaftConfig,
    pub api: api::ApiConfig,
    pub log_level: String,
    pub log: crate::logging::LogFormat,
    pub purge: crate::purge::PurgeConfig,
    pub gc: crate::gc::GcConfig,
    /// Where events go (`notifications`); no endpoints records no events.
    pub notifications: crate::notify::NotifyConfig,
    /// Pull-through cache upstreams (`proxy`); none makes a plain registry.
    pub proxy: Vec<api::cache::UpstreamConfig>,
}

impl NodeConfig {
    /// The zero-config single node, with its data under `data`.
    pub fn single_node(data: &Path) -> Self {
        NodeConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            tls: None,
            internal_tls: None,
            auth: None,
            rate_limit: api::ratelimit::RateLimitConfig::default(),
            internal_listen: None,
            debug_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5001))),
            debug_tls: None,
            blobs: storage::BackendConfig::Filesystem {
                root: data.join("blobs"),
            },
            raft: raft::RaftConfig::single_node(data.join("meta")),
            api: api::ApiConfig::default(),
            log_level: "info".to_owned(),
            log: crate::logging::LogFormat::default(),
            purge: crate::purge::PurgeConfig::default(),
            gc: crate::gc::GcConfig::default(),
            notifications: crate::notify::NotifyConfig::default(),
            proxy: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Accepted for compatibility with distribution's files; only "0.1" exists.
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    metadata: MetadataSection,
    cluster: Option<ClusterSection>,
    /// Logins and access rules (docs/security.md).
    auth: Option<crate::auth::AuthSection>,
    /// Events to webhooks (docs/operations.md).
    #[serde(default)]
    notifications: crate::notify::config::NotificationsSection,
    /// A pull-through cache (docs/operations.md).
    proxy: Option<crate::proxy_config::ProxySection>,
}

/// A member of a multi-node cluster (docs/cluster.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    /// This node's id, at least 1, unique in the cluster; or `ordinal`:
    /// 1 + the StatefulSet pod index (see [`ordinal_node_id`]).
    nodeid: NodeIdSetting,
    /// The internal listener: Raft RPC and requests forwarded between nodes.
    #[serde(default = "default_internal_addr")]
    addr: String,
    /// How peers reach this node (default: its entry in `peers`, else `addr`).
    advertise: Option<String>,
    /// The initial members, this node included, as `ID=HOST:PORT`: a list,
    /// or one comma-separated string (as `REGISTRY_CLUSTER_PEERS` gives it).
    #[serde(default)]
    peers: PeerList,
    /// Shared by all nodes; every internal request proves it.
    secret: Option<String>,
    /// Leader heartbeat interval, e.g. `200ms`.
    heartbeat: Option<String>,
    /// Lower bound of the election timeout (the upper is 1.5× it), e.g. `800ms`.
    electiontimeout: Option<String>,
    /// Mutual TLS on the internal listener and in calls to peers.
    #[serde(default)]
    tls: crate::tls::TlsSection,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NodeIdSetting {
    Number(u64),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum PeerList {
    #[default]
    None,
    List(Vec<String>),
    Joined(String),
}

fn default_internal_addr() -> String {
    "0.0.0.0:5101".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    /// error, warn, info, debug or trace.
    #[serde(default = "default_level")]
    level: String,
    /// `text` or `json` (distribution's key; its `logstash` is refused).
    formatter: Option<String>,
    /// Added to every line.
    #[serde(default)]
    fields: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    accesslog: AccessLogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogSection {
    /// No line per request.
    #[serde(default)]
    disabled: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_level(),
            formatter: None,
            fields: Default::default(),
            accesslog: AccessLogSection::default(),
        }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    /// Address the OCI API listens on.
    #[serde(default = "default_addr")]
    addr: String,
    /// TLS on the OCI API (docs/security.md).
    #[serde(default)]
    tls: crate::tls::TlsSection,
    /// Per-client request and bandwidth limits (docs/security.md).
    #[serde(default)]
    ratelimit: RateLimitSection,
    #[serde(default)]
    debug: DebugSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitSection {
    requests: Option<RateSection>,
    bandwidth: Option<RateSection>,
}

/// `rate` per second sustained, `burst` at once (default: one second's worth).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateSection {
    rate: Value,
    burst: Option<Value>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            addr: default_addr(),
            tls: crate::tls::TlsSection::default(),
            ratelimit: RateLimitSection::default(),
            debug: DebugSection::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebugSection {
    /// Address of `/metrics`, `/healthz` and `/readyz`; empty disables them.
    #[serde(default = "default_debug_addr")]
    addr: String,
    /// TLS on the debug listener (no client certificates: probes send none).
    #[serde(default)]
    tls: crate::tls::TlsSection,
}

impl Default for DebugSection {
    fn default() -> Self {
        DebugSection {
            addr: default_debug_addr(),
            tls: crate::tls::TlsSection::default(),
        }
    }
}

fn default_debug_addr() -> String {
    "127.0.0.1:5001".to_owned()
}

fn default_addr() -> String {
    "0.0.0.0:5000".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    /// Blobs as files under `rootdirectory`.
    filesystem: Option<FilesystemSection>,
    /// Blobs in memory, lost on exit.
    inmemory: Option<InMemorySection>,
    /// Amazon S3 or an S3-compatible store.
    s3: Option<S3Section>,
    /// Azure Blob Storage.
    azure: Option<AzureSection>,
    /// Google Cloud Storage.
    gcs: Option<GcsSection>,
    /// OpenStack Swift.
    swift: Option<SwiftSection>,
    /// Alibaba Cloud OSS.
    oss: Option<OssSection>,
    #[serde(default)]
    delete: DeleteSection,
    #[serde(default)]
    redirect: RedirectSection,
    #[serde(default)]
    maintenance: MaintenanceSection,
    #[serde(default)]
    gc: GcSection,
    /// Which tags each repository keeps; applied by every collection.
    #[serde(default)]
    retention: Vec<RetentionSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    /// Globs over repository names (`*` within a segment, `**` across).
    repositories: Vec<String>,
    #[serde(default)]
    keep: KeepSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepSection {
    /// Globs over tag names.
    #[serde(default)]
    tags: Vec<String>,
    mostrecent: Option<usize>,
    pushedwithin: Option<String>,
    pulledwithin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcSection {
    /// Collect on a schedule (default true).
    enabled: Option<bool>,
    /// How often, e.g. `1h` (the default).
    interval: Option<String>,
    /// Nothing pushed or mounted within this is collected, e.g. `1h` (the default).
    delay: Option<String>,
    /// How long a hidden blob stays revivable before its bytes go, e.g. `30m` (the default).
    grace: Option<String>,
    /// Also delete manifests no tag, index or stored subject keeps.
    #[serde(default)]
    untagged: bool,
    /// Scheduled collections only report.
    #[serde(default)]
    dryrun: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceSection {
    #[serde(default)]
    uploadpurging: UploadPurgingSection,
    #[serde(default)]
    readonly: ReadOnlySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadOnlySection {
    /// Refuse every write on this node (distribution's key); the cluster's
    /// runtime mode (`registry readonly on|off`) cannot lift it.
    #[serde(default)]
    enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadPurgingSection {
    /// Purge stale uploads (default true).
    enabled: Option<bool>,
    /// Age after which an upload is stale, e.g. `168h` (the default).
    age: Option<String>,
    /// How often to look, e.g. `24h` (the default).
    interval: Option<String>,
    /// Only log what would be purged.
    #[serde(default)]
    dryrun: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    bucket: String,
    region: Option<String>,
    /// Endpoint of an S3-compatible server.
    regionendpoint: Option<String>,
    #[serde(default)]
    forcepathstyle: bool,
    accesskey: Option<String>,
    secretkey: Option<String>,
    rootdirectory: Option<String>,
    storageclass: Option<String>,
    #[serde(default)]
    encrypt: bool,
    /// Multipart part size in bytes, at least 5 MiB.
    chunksize: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureSection {
    accountname: String,
    accountkey: Option<String>,
    container: String,
    /// Cloud domain; `core.windows.net` by default.
    realm: Option<String>,
    /// Full blob endpoint (e.g. Azurite's); overrides `realm`.
    endpoint: Option<String>,
    rootdirectory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcsSection {
    bucket: String,
    /// Path of a service-account key file.
    keyfile: Option<String>,
    /// A service-account key inline, as JSON.
    credentials: Option<String>,
    endpoint: Option<String>,
    rootdirectory: Option<String>,
    /// Unsigned requests, no credential lookup (public buckets, emulators).
    #[serde(default)]
    anonymous: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwiftSection {
    /// The auth endpoint, as in distribution: v1 (`.../auth/v1.0`, tempauth,
    /// swauth) or Keystone v3 (`.../v3`). The registry logs in with
    /// `username` and `password`, and again before each token expires.
    authurl: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// Keystone project (distribution's name).
    tenant: Option<String>,
    /// Keystone domain of the user and project (`Default` when absent).
    domain: Option<String>,
    /// Region of the object-store endpoint in Keystone's catalog.
    region: Option<String>,
    /// Storage URL of the account: with `authurl`, replaces the one the login
    /// answers; without, it is required along with `authtoken`.
    storageurl: Option<String>,
    container: String,
    /// A fixed token, instead of a login.
    authtoken: Option<String>,
    rootdirectory: Option<String>,
    /// The Temp-URL-Key set on the account or container (distribution's
    /// name): blob GETs redirect to TempURLs signed with it.
    secretkey: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OssSection {
    bucket: String,
    endpoint: String,
    accesskeyid: Option<String>,
    accesskeysecret: Option<String>,
    rootdirectory: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectSection {
    /// Serve blob bytes through the registry even when the backend can
    /// presign URLs (distribution's `storage.redirect.disable`).
    #[serde(default)]
    disable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesystemSection {
    rootdirectory: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InMemorySection {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSection {
    /// Allow deleting blobs and manifests (off by default, as in distribution).
    #[serde(default)]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataSection {
    /// Directory of the Raft log and state machine.
    #[serde(default = "default_meta_dir")]
    dir: PathBuf,
    /// Replaced by `cluster.nodeid`; refused, naming it.
    nodeid: Option<Value>,
    /// Build a metadata snapshot (and trim the Raft log) after this many
    /// log entries. Lower keeps the log and memory small; higher spends less
    /// time exporting a large state.
    #[serde(default = "default_snapshot_every")]
    snapshotevery: u64,
}

impl Default for MetadataSection {
    fn default() -> Self {
        MetadataSection {
            dir: default_meta_dir(),
            nodeid: None,
            snapshotevery: default_snapshot_every(),
        }
    }
}

fn default_meta_dir() -> PathBuf {
    PathBuf::from("./data/meta")
}

fn default_snapshot_every() -> u64 {
    raft::RaftConfig::single_node(PathBuf::new()).snapshot_every
}

const ENV_PREFIX: &str = "REGISTRY_";

/// Loads the config from `file` (if any) and the `REGISTRY_…` entries of `env`.
pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<NodeConfig, ConfigError> {
    let mut tree = match file {
        None => Value::Mapping(Mapping::new()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            match serde_yaml::from_str::<Value>(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            {
                Value::Null => Value::Mapping(Mapping::new()),
                v => v,
            }
        }
    };
    let mut overrides: Vec<_> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    overrides.sort();
    for (name, value) in overrides {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split('_')
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid(format!("{name} names no config key")));
        }
        let parsed = match serde_yaml::from_str::<Value>(value) {
            // An empty variable means an empty string (e.g. to disable a listener).
            Ok(Value::Null) if value.trim().is_empty() => Value::String(String::new()),
            Ok(parsed) => parsed,
            Err(_) => Value::String(value.clone()),
        };
        set_path(&mut tree, &path, parsed)
            .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
    }
    // `inmemory:` with no value means "on", as in distribution.
    if let Some(Value::Mapping(storage)) = tree.get_mut("storage") {
        if let Some(v @ Value::Null) = storage.get_mut("inmemory") {
            *v = Value::Mapping(Mapping::new());
        }
    }
    let file: FileConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid(format!("{key}: {}", e.into_inner()))
    })?;
    validate(file, env)
}

fn set_path(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Value::Mapping(map) = tree else {
        return Err("overrides a value that is not a section".to_owned());
    };
    let key = Value::String(path[0].clone());
    if path.len() == 1 {
        map.insert(key, value);
        return Ok(());
    }
    let child = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if child.is_null() {
        *child = Value::Mapping(Mapping::new());
    }
    set_path(child, &path[1..], value)
}

fn validate(file: FileConfig, env: &HashMap<String, String>) -> Result<NodeConfig, ConfigError> {
    if let Some(version) = &file.version {
        let ok = matches!(version, Value::String(s) if s == "0.1")
            || matches!(version, Value::Number(n) if n.as_f64() == Some(0.1));
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "version: {version:?} is not 0.1"
            )));
        }
    }
    let level = file.log.level.to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        return Err(ConfigError::Invalid(format!(
            "log.level: {:?} is not one of error, warn, info, debug, trace",
            file.log.level
        )));
    }
    let listen: SocketAddr = file
        .http
        .addr
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("http.addr: {:?}: {e}", file.http.addr)))?;
    let debug_tls = file
        .http
        .debug
        .tls
        .validate("http.debug.tls")
        .map_err(ConfigError::Invalid)?;
    if debug_tls
        .as_ref()
        .is_some_and(|tls| !tls.client_cas.is_empty())
    {
        return Err(ConfigError::Invalid(
            "http.debug.tls.clientcas: not supported: the kubelet's probes present no client \
             certificate; keep the debug port private instead"
                .to_owned(),
        ));
    }
    let debug_listen = match file.http.debug.addr.trim() {
        "" => None,
        raw => Some(
            raw.parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid(format!("http.debug.addr: {raw:?}: {e}")))?,
        ),
    };
    let auth = file
        .auth
        .map(crate::auth::AuthSection::validate)
        .transpose()
        .map_err(ConfigError::Invalid)?;
    let notifications = file
        .notifications
        .validate()
        .map_err(ConfigError::Invalid)?;
    let rate_limit = rate_limit_config(&file.http.ratelimit)?;
    let tls = file
        .http
        .tls
        .validate("http.tls")
        .map_err(ConfigError::Invalid)?;
    let redirect = !file.storage.redirect.disable;
    let purge = purge_config(&file.storage.maintenance.uploadpurging)?;
    let mut gc = gc_config(&file.storage.gc)?;
    gc.retention = retention_rules(&file.storage.retention)?;
    let proxy = match file.proxy {
        None => Vec::new(),
        Some(section) => section.validate().map_err(ConfigError::Invalid)?,
    };
    crate::proxy_config::expiry_rules(&proxy).map_err(ConfigError::Invalid)?;
    let delete_enabled = file.storage.delete.enabled;
    let read_only = file.storage.maintenance.readonly.enabled;
    let blobs = backend(file.storage)?;
    let presigns = !matches!(
        blobs,
        storage::BackendConfig::Filesystem { .. } | storage::BackendConfig::InMemory
    );
    if redirect && presigns && gc.grace < api::PRESIGN_EXPIRY {
        return Err(ConfigError::Invalid(format!(
            "storage.gc.grace: {} is shorter than the {}-minute life of the presigned URLs \
             pulls are redirected to; raise it or set storage.redirect.disable",
            humantime::format_duration(gc.grace),
            api::PRESIGN_EXPIRY.as_secs() / 60
        )));
    }
    if file.metadata.nodeid.is_some() {
        return Err(ConfigError::Invalid(
            "metadata.nodeid: replaced by cluster.nodeid (see docs/cluster.md)".to_owned(),
        ));
    }
    let mut raft = raft::RaftConfig::single_node(file.metadata.dir);
    let (internal_listen, internal_tls) = match file.cluster {
        None => (None, None),
        Some(mut cluster) => {
            let tls = internal_tls(std::mem::take(&mut cluster.tls))?;
            (Some(cluster_config(cluster, &mut raft, env)?), tls)
        }
    };
    if file.metadata.snapshotevery == 0 {
        return Err(ConfigError::Invalid(
            "metadata.snapshotevery: must be at least 1".to_owned(),
        ));
    }
    raft.snapshot_every = file.metadata.snapshotevery;
    Ok(NodeConfig {
        listen,
        tls,
        internal_tls,
        auth,
        rate_limit,
        internal_listen,
        debug_listen,
        debug_tls,
        blobs,
        raft,
        api: api::ApiConfig {
            delete_enabled,
            redirect,
            read_only,
            ..api::ApiConfig::default()
        },
        log_level: level,
        log: log_format(&file.log)?,
        purge,
        gc,
        notifications,
        proxy,
    })
}

fn log_format(log: &LogSection) -> Result<crate::logging::LogFormat, ConfigError> {
    let json = match log
        .formatter
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "log.formatter: {other:?} is not text or json"
            )))
        }
    };
    let mut fields = Vec::new();
    for (key, value) in &log.fields {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "log.fields.{key}: {other:?} is not a string, number or boolean"
                )))
            }
        };
        fields.push((key.clone(), value));
    }
    Ok(crate::logging::LogFormat {
        json,
        fields,
        access_log: !log.accesslog.disabled,
    })
}

/// Fills `raft` from the cluster section; answers the internal listener's address.
/// `cluster.tls`: always mutual, since only nodes call the internal
/// listener; `clientcas` names the CAs every node's certificate chains to.
fn internal_tls(
    section: crate::tls::TlsSection,
) -> Result<Option<crate::tls::TlsSettings>, ConfigError> {
    let Some(settings) = section
        .validate("cluster.tls")
        .map_err(ConfigError::Invalid)?
    else {
        return Ok(None);
    };
    if settings.client_cas.is_empty() {
        return Err(ConfigError::Invalid(
            "cluster.tls.clientcas: required: the CAs of the nodes' certificates, which peers \
             are verified against both ways"
                .to_owned(),
        ));
    }
    if settings.client_auth != crate::tls::ClientAuth::Require {
        return Err(ConfigError::Invalid(
            "cluster.tls.clientauth: the internal listener always requires a node's certificate"
                .to_owned(),
        ));
    }
    Ok(Some(settings))
}

fn cluster_config(
    cluster: ClusterSection,
    raft: &mut raft::RaftConfig,
    env: &HashMap<String, String>,
) -> Result<SocketAddr, ConfigError> {
    let invalid = |key: &str, what: String| ConfigError::Invalid(format!("cluster.{key}: {what}"));
    let nodeid = match &cluster.nodeid {
        NodeIdSetting::Number(0) => return Err(invalid("nodeid", "must be at least 1".to_owned())),
        NodeIdSetting::Number(n) => *n,
        NodeIdSetting::Word(word) if word == "ordinal" => {
            ordinal_node_id(env).map_err(|why| invalid("nodeid", why))?
        }
        NodeIdSetting::Word(word) => {
            return Err(invalid(
                "nodeid",
                format!("{word:?} is neither a number nor `ordinal`"),
            ))
        }
    };
    let addr: SocketAddr = cluster
        .addr
        .parse()
        .map_err(|e| invalid("addr", format!("{:?}: {e}", cluster.addr)))?;
    let entries: Vec<String> = match cluster.peers {
        PeerList::None => Vec::new(),
        PeerList::List(list) => list,
        PeerList::Joined(joined) => joined.split(',').map(str::to_owned).collect(),
    };
    let mut peers = std::collections::BTreeMap::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (id, peer) = entry
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("{entry:?} is not ID=HOST:PORT")))?;
        let id: u64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
            invalid(
                "peers",
                format!("{entry:?}: the id must be a number above 0"),
            )
        })?;
        let peer = peer.trim();
        if peer
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(invalid(
                "peers",
                format!("{entry:?}: the address needs a port"),
            ));
        }
        if peers.insert(id, peer.to_owned()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    if peers.is_empty() {
        peers.insert(nodeid, String::new());
    }
    let Some(own_entry) = peers.get(&nodeid).cloned() else {
        return Err(invalid(
            "peers",
            format!("must list this node ({}) among the initial members", nodeid),
        ));
    };
    let advertise = match cluster.advertise {
        Some(advertise) => advertise,
        None if !own_entry.is_empty() => own_entry.clone(),
        None => cluster.addr.clone(),
    };
    if advertise.starts_with("0.0.0.0:") || advertise.starts_with("[::]:") {
        return Err(invalid(
            "advertise",
            format!(
                "{advertise:?} is not an address peers can reach; set it to this node's host:port"
            ),
        ));
    }
    if !own_entry.is_empty() && own_entry != advertise {
        return Err(invalid(
            "advertise",
            format!(
                "{advertise:?} differs from this node's entry in cluster.peers ({own_entry:?})"
            ),
        ));
    }
    peers.insert(nodeid, advertise.clone());
    let secret = cluster.secret.filter(|s| !s.is_empty());
    if peers.len() > 1 && secret.is_none() {
        return Err(invalid(
            "secret",
            "is required when the cluster has more than one peer".to_owned(),
        ));
    }
    let duration = |key: &str, raw: &Option<String>, default| match raw {
        None => Ok(default),
        Some(raw) => {
            humantime::parse_duration(raw).map_err(|e| invalid(key, format!("{raw:?}: {e}")))
        }
    };
    raft.heartbeat = duration("heartbeat", &cluster.heartbeat, raft.heartbeat)?;
    raft.election_timeout = duration(
        "electiontimeout",
        &cluster.electiontimeout,
        raft.election_timeout,
    )?;
    if raft.election_timeout < raft.heartbeat * 3 {
        return Err(invalid(
            "electiontimeout",
            "must be at least three heartbeats".to_owned(),
        ));
    }
    raft.node_id = nodeid;
    raft.peers = peers;
    raft.advertise = Some(advertise);
    raft.secret = secret;
    raft.source_ip = Some(addr.ip()).filter(|ip| !ip.is_unspecified());
    Ok(addr)
}

/// `cluster.nodeid: ordinal` on Kubernetes: 1 + the StatefulSet pod's
/// index, from `POD_INDEX` (the chart sets it from the pod's
/// `apps.kubernetes.io/pod-index` label) or else the number after the last
/// `-` of `HOSTNAME` (the pod's name).
fn ordinal_node_id(env: &HashMap<String, String>) -> Result<u64, String> {
    let from_label = env.get("POD_INDEX").filter(|v| !v.trim().is_empty());
    let (source, raw) = match from_label {
        Some(index) => ("POD_INDEX", index.trim().to_owned()),
        None => {
            let host = env.get("HOSTNAME").map(String::as_str).unwrap_or_default();
            let suffix = host.rsplit_once('-').map_or("", |(_, s)| s);
            ("the suffix of HOSTNAME", suffix.to_owned())
        }
    };
    raw.parse::<u64>()
        .map(|index| index + 1)
        .map_err(|_| format!("`ordinal` needs a pod index: {source} is {raw:?}, not a number"))
}

fn purge_config(section: &UploadPurgingSection) -> Result<crate::purge::PurgeConfig, ConfigError> {
    let defaults = crate::purge::PurgeConfig::default();
    let duration = |key: &str, raw: &Option<String>, default| match raw {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw).map_err(|e| {
            ConfigError::Invalid(format!(
                "storage.maintenance.uploadpurging.{key}: {raw:?}: {e}"
            ))
        }),
    };
    let config = crate::purge::PurgeConfig {
        enabled: section.enabled.unwrap_or(defaults.enabled),
        age: duration("age", &section.age, defaults.age)?,
        interval: duration("interval", &section.interval, defaults.interval)?,
        dry_run: section.dryrun,
    };
    if config.enabled && config.interval.is_zero() {
        return Err(ConfigError::Invalid(
            "storage.maintenance.uploadpurging.interval: must be above zero".to_owned(),
        ));
    }
    Ok(config)
}

fn retention_rules(
    sections: &[RetentionSection],
) -> Result<Vec<raft::gc::RetentionRule>, ConfigError> {
    sections
        .iter()
        .enumerate()
        .map(|(i, section)| {
            let invalid =
                |what: String| ConfigError::Invalid(format!("storage.retention[{i}].{what}"));
            if section.repositories.is_empty() {
                return Err(invalid(
                    "repositories: name at least one pattern".to_owned(),
                ));
            }
            let window = |key: &str, raw: &Option<String>| match raw {
                None => Ok(None),
                Some(raw) => humantime::parse_duration(raw)
                    .map(|d| Some(d.as_millis() as u64))
                    .map_err(|e| invalid(format!("keep.{key}: {raw:?}: {e}"))),
            };
            let keep = raft::gc::Keep {
                tags: section.keep.tags.clone(),
                most_recent: section.keep.mostrecent,
                pushed_within_ms: window("pushedwithin", &section.keep.pushedwithin)?,
                pulled_within_ms: window("pulledwithin", &section.keep.pulledwithin)?,
            };
            raft::gc::RetentionRule::new(section.repositories.clone(), keep)
                .map_err(|e| invalid(format!("a pattern: {e}")))
        })
        .collect()
}

fn gc_config(section: &GcSection) -> Result<crate::gc::GcConfig, ConfigError> {
    let defaults = crate::gc::GcConfig::default();
    let duration = |key: &str, raw: &Option<String>, default| match raw {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw)
            .map_err(|e| ConfigError::Invalid(format!("storage.gc.{key}: {raw:?}: {e}"))),
    };
    let config = crate::gc::GcConfig {
        enabled: section.enabled.unwrap_or(defaults.enabled),
        interval: duration("interval", &section.interval, defaults.interval)?,
        delay: duration("delay", &section.delay, defaults.delay)?,
        grace: duration("grace", &section.grace, defaults.grace)?,
        untagged: section.untagged,
        dry_run: section.dryrun,
        ..defaults
    };
    if config.enabled && config.interval.is_zero() {
        return Err(ConfigError::Invalid(
            "storage.gc.interval: must be above zero".to_owned(),
        ));
    }
    Ok(config)
}

/// Swift takes a login (`authurl`, `username`, `password`) or a fixed
/// `storageurl` and `authtoken`, never half of either.
fn swift_config(swift: SwiftSection) -> Result<storage::config::SwiftConfig, ConfigError> {
    let invalid = |what: &str| ConfigError::Invalid(format!("storage.swift: {what}"));
    let auth = match (swift.authurl, swift.username, swift.password) {
        (Some(url), Some(username), Some(password)) => {
            if swift.authtoken.is_some() {
                return Err(invalid("authtoken and authurl exclude each other"));
            }
            if url.trim_end_matches('/').ends_with("/v2.0") {
                return Err(invalid(
                    "authurl: Keystone v2.0 is not supported; use its /v3 endpoint",
                ));
            }
            Some(storage::config::SwiftAuth {
                url,
                username,
                password,
                tenant: swift.tenant,
                domain: swift.domain,
                region: swift.region,
            })
        }
        (None, None, None) => {
            if swift.storageurl.is_none() || swift.authtoken.is_none() {
                return Err(invalid(
                    "name authurl, username and password, or storageurl and authtoken",
                ));
            }
            None
        }
        _ => return Err(invalid("authurl, username and password go together")),
    };
    Ok(storage::config::SwiftConfig {
        endpoint: swift.storageurl,
        container: swift.container,
        token: swift.authtoken,
        auth,
        root: swift.rootdirectory,
        temp_url_key: swift.secretkey,
    })
}

/// The one backend the storage section names.
fn backend(storage: StorageSection) -> Result<storage::BackendConfig, ConfigError> {
    use storage::BackendConfig as B;
    let mut named: Vec<(&str, B)> = Vec::new();
    if let Some(fs) = storage.filesystem {
        named.push((
            "filesystem",
            B::Filesystem {
                root: fs.rootdirectory,
            },
        ));
    }
    if storage.inmemory.is_some() {
        named.push(("inmemory", B::InMemory));
    }
    if let Some(s3) = storage.s3 {
        let chunk_size = s3.chunksize.unwrap_or(storage::config::DEFAULT_CHUNK_SIZE);
        if chunk_size < storage::config::MIN_CHUNK_SIZE {
            return Err(ConfigError::Invalid(format!(
                "storage.s3.chunksize: {chunk_size} is below S3's 5 MiB minimum part size"
            )));
        }
        named.push((
            "s3",
            B::S3(storage::config::S3Config {
                bucket: s3.bucket,
                region: s3.region,
                endpoint: s3.regionendpoint,
                force_path_style: s3.forcepathstyle,
                access_key: s3.accesskey,
                secret_key: s3.secretkey,
                root: s3.rootdirectory,
                storage_class: s3.storageclass,
                encrypt: s3.encrypt,
                chunk_size,
            }),
        ));
    }
    if let Some(az) = storage.azure {
        named.push((
            "azure",
            B::Azure(storage::config::AzureConfig {
                account_name: az.accountname,
                account_key: az.accountkey,
                container: az.container,
                endpoint: az.endpoint,
                realm: az.realm.unwrap_or_else(|| "core.windows.net".to_owned()),
                root: az.rootdirectory,
            }),
        ));
    }
    if let Some(gcs) = storage.gcs {
        named.push((
            "gcs",
            B::Gcs(storage::config::GcsConfig {
                bucket: gcs.bucket,
                key_file: gcs.keyfile,
                credentials: gcs.credentials,
                endpoint: gcs.endpoint,
                root: gcs.rootdirectory,
                anonymous: gcs.anonymous,
            }),
        ));
    }
    if let Some(swift) = storage.swift {
        named.push(("swift", B::Swift(swift_config(swift)?)));
    }
    if let Some(oss) = storage.oss {
        named.push((
            "oss",
            B::Oss(storage::config::OssConfig {
                bucket: oss.bucket,
                endpoint: oss.endpoint,
                access_key_id: oss.accesskeyid,
                access_key_secret: oss.accesskeysecret,
                root: oss.rootdirectory,
            }),
        ));
    }
    match named.len() {
        0 => Ok(B::Filesystem {
            root: PathBuf::from("./data/blobs"),
        }),
        1 => Ok(named.remove(0).1),
        _ => {
            let names: Vec<_> = named.iter().map(|(n, _)| *n).collect();
            Err(ConfigError::Invalid(format!(
                "storage: name one backend, not {}",
                names.join(" and ")
            )))
        }
    }
}

/// `http.ratelimit`: requests per second, and bytes per second (`100MiB`).
fn rate_limit_config(
    section: &RateLimitSection,
) -> Result<api::ratelimit::RateLimitConfig, ConfigError> {
    let rate = |key: &str, rate: &RateSection, bytes: bool| {
        let read = |which: &str, value: &Value| {
            let amount = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(text) if bytes => parse_bytes(text),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            };
            amount.filter(|a| *a > 0.0).ok_or_else(|| {
                let unit = if bytes {
                    "a byte size such as 100MiB"
                } else {
                    "a number of requests"
                };
                ConfigError::Invalid(format!(
                    "http.ratelimit.{key}.{which}: {value:?} is not {unit} above zero"
                ))
            })
        };
        let per_second = read("rate", &rate.rate)?;
        let burst = rate
            .burst
            .as_ref()
            .map(|b| read("burst", b))
            .transpose()?
            .unwrap_or(per_second);
        Ok::<_, ConfigError>(api::ratelimit::Rate { per_second, burst })
    };
    Ok(api::ratelimit::RateLimitConfig {
        requests: section
            .requests
            .as_ref()
            .map(|r| rate("requests", r, false))
            .transpose()?,
        bandwidth: section
            .bandwidth
            .as_ref()
            .map(|r| rate("bandwidth", r, true))
            .transpose()?,
    })
}

/// `512`, `64KiB`, `100MiB`, `1GiB` (or KB/MB/GB, powers of ten).
fn parse_bytes(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn no_file_is_the_embedded_single_node() {
        let c = load(None, &env(&[("HOME", "/root")])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(
            c.blobs,
            storage::BackendConfig::Filesystem {
                root: "./data/blobs".into()
            }
        );
        assert_eq!(c.raft.data_dir, PathBuf::from("./data/meta"));
        assert_eq!(c.debug_listen, Some("127.0.0.1:5001".parse().unwrap()));
        assert!(!c.api.delete_enabled);
        assert_eq!(c.purge, crate::purge::PurgeConfig::default());
    }

    #[test]
    fn distribution_shaped_file() {
        let f = write(
            "version: 0.1\nlog:\n  level: warn\nhttp:\n  addr: 127.0.0.1:6000\nstorage:\n  filesystem:\n    rootdirectory: /srv/blobs\n  delete:\n    enabled: true\n",
        );
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(
            c.blobs,
            storage::BackendConfig::Filesystem {
                root: "/srv/blobs".into()
            }
        );
        assert!(c.api.delete_enabled);
        assert_eq!(c.log_level, "warn");
        let f = write("storage:\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 2h\n      interval: 30m\n      dryrun: true\n");
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        assert_eq!(c.purge.age, std::time::Duration::from_secs(7200));
        assert_eq!(c.purge.interval, std::time::Duration::from_secs(1800));
        assert!(c.purge.dry_run);
    }

    #[test]
    fn tls_keys_from_the_file_and_the_environment() {
        let f = write("http:\n  tls:\n    certificate: /tls/tls.crt\n    key: /tls/tls.key\n    minimumtls: tls1.3\n");
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.certificate, PathBuf::from("/tls/tls.crt"));
        assert_eq!(tls.minimum, crate::tls::MinimumTls::Tls13);
        let c = load(
            None,
            &env(&[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
                ("REGISTRY_HTTP_TLS_KEY", "/k.pem"),
                ("REGISTRY_HTTP_TLS_CLIENTCAS", "/a.pem,/b.pem"),
            ]),
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            tls.client_cas,
            [PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
        assert_eq!(tls.client_auth, crate::tls::ClientAuth::Require);
        assert!(load(None, &HashMap::new()).unwrap().tls.is_none());
        let f = write("http:\n  tls:\n    certificate: /c\n    key: /k\n    minimumtls: tls1.1\n");
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.tls.minimumtls"), "{err}");
        let debug = "http:\n  debug:\n    tls: { certificate: /c, key: /k }\n";
        let c = load(Some(write(debug).path()), &HashMap::new()).unwrap();
        assert_eq!(c.debug_tls.unwrap().key, PathBuf::from("/k"));
        let mutual = "http:\n  debug:\n    tls: { certificate: /c, key: /k, clientcas: /ca }\n";
        let err = load(Some(write(mutual).path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.debug.tls.clientcas"), "{err}");
    }

    #[test]
    fn auth_sections_are_read_and_bad_ones_name_the_key() {
        let f = write(
            "auth:\n  htpasswd: { realm: registry, path: /etc/registry/htpasswd }\n  access:\n    \
             - repositories: [\"team-a/**\"]\n      users: [alice]\n      actions: [pull, push]\n    \
             - repositories: [\"**\"]\n      anonymous: [pull]\n  admins: [ops]\n",
        );
        let Some(api::auth::AuthConfig::Htpasswd(auth)) =
            load(Some(f.path()), &HashMap::new()).unwrap().auth
        else {
            panic!("htpasswd logins");
        };
        assert_eq!(auth.realm, "registry");
        assert_eq!(auth.rules.len(), 2);
        assert_eq!(auth.admins, ["ops"]);
        let err = |yaml: &str| {
            load(Some(write(yaml).path()), &HashMap::new())
                .unwrap_err()
                .to_string()
        };
        let token = "auth:\n  token: { realm: https://auth/token, service: registry, issuer: auth, rootcertbundle: /ca.pem }\n";
        let f = write(token);
        let Some(api::auth::AuthConfig::Token(token)) =
            load(Some(f.path()), &HashMap::new()).unwrap().auth
        else {
            panic!("token logins");
        };
        assert_eq!(token.service, "registry");
        assert!(
            err("auth:\n  token: { realm: x, service: s, issuer: i, autoredirect: true }\n")
                .contains("auth.token.autoredirect")
        );
        assert!(err("auth:\n  access: []\n").contains("name htpasswd or token"));
        let tokens = "auth:\n  htpasswd: { realm: r, path: /p }\n  tokenservice: { key: /k.pem }\n";
        let Some(api::auth::AuthConfig::Htpasswd(auth)) =
            load(Some(write(tokens).path()), &HashMap::new())
                .unwrap()
                .auth
        else {
            panic!("htpasswd logins");
        };
        let service = auth.token_service.expect("a token service");
        assert_eq!(
            (service.service.as_str(), service.issuer.as_str()),
            ("registry", "registry")
        );
        assert_eq!(service.expiration, std::time::Duration::from_secs(300));
        assert!(err("auth:\n  htpasswd: { realm: r, path: /p }\n  tokenservice: { key: /k, expiration: 10s }\n")
            .contains("auth.tokenservice.expiration"));
        assert!(err("auth:\n  token: { realm: x, service: s, issuer: i, jwks: /j }\n  tokenservice: { key: /k }\n")
            .contains("auth.tokenservice"));
        let bad_action = "auth:\n  htpasswd: { realm: r, path: /p }\n  access:\n    - { repositories: [a], users: [u], actions: [pul] }\n";
        assert!(err(bad_action).contains("auth.access[0].actions"));
        let no_actions = "auth:\n  htpasswd: { realm: r, path: /p }\n  access:\n    - { repositories: [a], users: [u] }\n";
        assert!(err(no_actions).contains("name what the users may do"));
    }

    #[test]
    fn rate_limits_are_read_with_units_and_bad_ones_name_the_key() {
        let f = write("http:\n  ratelimit:\n    requests: { rate: 50, burst: 200 }\n    bandwidth: { rate: 100MiB }\n");
        let limits = load(Some(f.path()), &HashMap::new()).unwrap().rate_limit;
        let requests = limits.requests.unwrap();
        assert_eq!((requests.per_second, requests.burst), (50.0, 200.0));
        let bandwidth = limits.bandwidth.unwrap();
        assert_eq!(
            (bandwidth.per_second, bandwidth.burst),
            (104_857_600.0, 104_857_600.0)
        );
        assert_eq!(
            load(None, &HashMap::new()).unwrap().rate_limit,
            api::ratelimit::RateLimitConfig::default()
        );
        let f = write("http:\n  ratelimit:\n    bandwidth: { rate: 100 furlongs }\n");
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.ratelimit.bandwidth.rate"), "{err}");
        let f = write("http:\n  ratelimit:\n    requests: { rate: 0 }\n");
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.ratelimit.requests.rate"), "{err}");
    }

    #[test]
    fn collection_settings_and_their_bounds() {
        let c = load(None, &HashMap::new()).unwrap();
        assert_eq!(c.gc, crate::gc::GcConfig::default());
        let f = write(
            "storage:\n  gc:\n    interval: 10m\n    delay: 2h\n    grace: 45m\n    untagged: true\n    dryrun: true\n",
        );
        let c = load(
            Some(f.path()),
            &env(&[("REGISTRY_STORAGE_GC_ENABLED", "false")]),
        )
        .unwrap();
        assert!(!c.gc.enabled && c.gc.dry_run && c.gc.untagged);
        assert_eq!(c.gc.interval, std::time::Duration::from_secs(600));
        assert_eq!(c.gc.delay, std::time::Duration::from_secs(7200));
        assert_eq!(c.gc.grace, std::time::Duration::from_secs(2700));
        let f = write("storage:\n  gc:\n    grace: 5m\n  s3:\n    bucket: b\n    region: r\n");
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.gc.grace"), "{err}");
        let f = write("storage:\n  gc:\n    grace: 5m\n  redirect:\n    disable: true\n  s3:\n    bucket: b\n    region: r\n");
        assert!(
            load(Some(f.path()), &HashMap::new()).is_ok(),
            "no presigned URLs, no bound"
        );
        let f = write("storage:\n  gc:\n    interval: 0s\n");
        assert!(load(Some(f.path()), &HashMap::new()).is_err());
        let f = write("storage:\n  retention:\n    - repositories: [\"ci/**\"]\n      keep: { tags: [\"v*\"], mostrecent: 3, pulledwithin: 720h }\n");
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        assert_eq!(c.gc.retention.len(), 1);
        assert!(c.gc.retention[0].applies_to("ci/app/x"));
        assert!(!c.gc.retention[0].applies_to("prod/app"));
        assert_eq!(c.gc.retention[0].keep.most_recent, Some(3));
        let f = write("storage:\n  retention:\n    - repositories: [\"a\"]\n      keep: { pushedwithin: soon }\n");
        let err = load(Some(f.path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("storage.retention[0].keep.pushedwithin"),
            "{err}"
        );
    }

    #[test]
    fn a_pull_through_cache_from_the_file_and_its_password_from_the_environment() {
        let f = write(
            "proxy:\n  remoteurl: https://registry-1.docker.io\n  username: mirror\n  \
             upstreams:\n    - prefix: quay\n      remoteurl: https://quay.io\n      ttl: 24h\n",
        );
        let c = load(
            Some(f.path()),
            &env(&[("REGISTRY_PROXY_PASSWORD", "s3cret")]),
        )
        .unwrap();
        assert_eq!(c.proxy.len(), 2);
        assert_eq!(c.proxy[0].password.as_deref(), Some("s3cret"));
        assert_eq!(c.proxy[1].prefix, "quay");
        assert_eq!(
            c.proxy[1].ttl,
            Some(std::time::Duration::from_secs(24 * 3600))
        );
        let err = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("proxy: username and password go together"),
            "{err}"
        );
        assert!(load(None, &env(&[])).unwrap().proxy.is_empty());
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = write("http:\n  addr: 127.0.0.1:6000\nstorage:\n  inmemory:\n");
        let c = load(
            Some(f.path()),
            &env(&[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:7000"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("REGISTRY_METADATA_DIR", "/tmp/m"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.blobs, storage::BackendConfig::InMemory);
        assert!(c.api.delete_enabled);
        assert_eq!(c.raft.data_dir, PathBuf::from("/tmp/m"));
        let c = load(None, &env(&[("REGISTRY_HTTP_DEBUG_ADDR", "")])).unwrap();
        assert_eq!(
            c.debug_listen, None,
            "an empty address disables the debug listener"
        );
        let c = load(
            None,
            &env(&[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/x")]),
        )
        .unwrap();
        assert_eq!(
            c.blobs,
            storage::BackendConfig::Filesystem { root: "/x".into() }
        );
    }

    #[test]
    fn object_store_sections() {
        let c = load(
            None,
            &env(&[
                ("REGISTRY_STORAGE_S3_BUCKET", "images"),
                (
                    "REGISTRY_STORAGE_S3_REGIONENDPOINT",
                    "http://127.0.0.1:9000",
                ),
                ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
                ("REGISTRY_STORAGE_S3_ACCESSKEY", "AK"),
                ("REGISTRY_STORAGE_S3_SECRETKEY", "SK"),
                ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
            ]),
        )
        .unwrap();
        let storage::BackendConfig::S3(s3) = c.blobs else {
            panic!("not s3: {:?}", c.blobs)
        };
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.force_path_style);
        assert_eq!(s3.chunk_size, storage::config::DEFAULT_CHUNK_SIZE);
        assert!(!c.api.redirect);
        let f =
            write("storage:\n  azure:\n    accountname: a\n    accountkey: k\n    container: c\n");
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        let storage::BackendConfig::Azure(az) = c.blobs else {
            panic!()
        };
        assert_eq!(az.realm, "core.windows.net");
        assert!(c.api.redirect);
        let f = write("storage:\n  gcs:\n    bucket: b\n    endpoint: http://127.0.0.1:1\n");
        let gcs_env = env(&[("REGISTRY_STORAGE_GCS_ANONYMOUS", "true")]);
        let c = load(Some(f.path()), &gcs_env).unwrap();
        let storage::BackendConfig::Gcs(gcs) = c.blobs else {
            panic!()
        };
        assert_eq!(gcs.bucket, "b");
        assert!(gcs.anonymous);
    }

    #[test]
    fn swift_logs_in_or_takes_a_fixed_token() {
        let f = write(
            "storage:\n  swift:\n    authurl: https://keystone.example/v3\n    \
             username: registry\n    container: images\n    tenant: ci\n",
        );
        let password = env(&[("REGISTRY_STORAGE_SWIFT_PASSWORD", "secret")]);
        let c = load(Some(f.path()), &password).unwrap();
        let storage::BackendConfig::Swift(swift) = c.blobs else {
            panic!("not swift: {:?}", c.blobs)
        };
        let auth = swift.auth.expect("a login");
        assert_eq!(auth.url, "https://keystone.example/v3");
        assert_eq!(auth.password, "secret");
        assert_eq!(auth.tenant.as_deref(), Some("ci"));
        assert_eq!(swift.endpoint, None);

        let err = |text: &str| {
            let f = write(text);
            load(Some(f.path()), &HashMap::new())
                .unwrap_err()
                .to_string()
        };
        let half_login = "storage:\n  swift:\n    authurl: http://a/auth/v1.0\n    container: c\n";
        assert!(err(half_login).contains("authurl, username and password"));
        let no_token = "storage:\n  swift:\n    storageurl: http://a/v1/AUTH_x\n    container: c\n";
        assert!(err(no_token).contains("storageurl and authtoken"));
        let v2 = "storage:\n  swift:\n    authurl: http://k/v2.0\n    username: u\n    \
                  password: p\n    container: c\n";
        assert!(err(v2).contains("v2.0"));
    }

    #[test]
    fn cluster_section() {
        let f = write(
            "cluster:\n  nodeid: 2\n  addr: 0.0.0.0:5101\n  secret: s3cret\n  peers:\n    \
             - 1=a:5101\n    - 2=b:5101\n    - 3=c:5101\n",
        );
        let c = load(Some(f.path()), &HashMap::new()).unwrap();
        assert_eq!(c.raft.node_id, 2);
        assert_eq!(c.internal_listen, Some("0.0.0.0:5101".parse().unwrap()));
        assert_eq!(c.raft.advertise.as_deref(), Some("b:5101"));
        assert_eq!(c.raft.peers.len(), 3);
        assert_eq!(c.raft.secret.as_deref(), Some("s3cret"));
        let c = load(
            None,
            &env(&[
                ("REGISTRY_CLUSTER_NODEID", "1"),
                ("REGISTRY_CLUSTER_PEERS", "1=a:5101,2=b:5101,3=c:5101"),
                ("REGISTRY_CLUSTER_SECRET", "x"),
                ("REGISTRY_CLUSTER_HEARTBEAT", "100ms"),
            ]),
        )
        .unwrap();
        assert_eq!(c.raft.peers[&3], "c:5101");
        assert_eq!(c.raft.advertise.as_deref(), Some("a:5101"));
        assert_eq!(c.raft.heartbeat, std::time::Duration::from_millis(100));
        let alone = load(
            None,
            &env(&[
                ("REGISTRY_CLUSTER_NODEID", "4"),
                ("REGISTRY_CLUSTER_ADVERTISE", "d:5101"),
            ]),
        )
        .unwrap();
        assert_eq!(
            alone.raft.peers.len(),
            1,
            "a one-node cluster needs no secret"
        );
        let tls = "cluster:\n  nodeid: 1\n  advertise: a:5101\n  tls:\n    certificate: /c\n    key: /k\n";
        let refused = load(Some(write(tls).path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cluster.tls.clientcas"), "{refused}");
        let with_cas = format!("{tls}    clientcas: /ca.pem\n");
        let c = load(Some(write(&with_cas).path()), &HashMap::new()).unwrap();
        let internal = c.internal_tls.expect("cluster.tls");
        assert_eq!(internal.client_cas, [PathBuf::from("/ca.pem")]);
        let if_given = format!("{with_cas}    clientauth: verify-client-cert-if-given\n");
        let refused = load(Some(write(&if_given).path()), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cluster.tls.clientauth"), "{refused}");
        let no_cluster = load(None, &HashMap::new()).unwrap();
        assert_eq!(no_cluster.internal_listen, None);
        assert!(no_cluster.internal_tls.is_none());
        assert!(no_cluster.raft.peers.is_empty());
    }

    #[test]
    fn read_only_at_start_is_distributions_key() {
        let on = load(
            None,
            &env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")]),
        )
        .unwrap();
        assert!(on.api.read_only);
        assert!(!load(None, &HashMap::new()).unwrap().api.read_only);
    }

    #[test]
    fn the_shipped_configs_load() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut files = vec![deploy.join("config.yml")];
        for entry in std::fs::read_dir(deploy.join("examples")).unwrap() {
            files.push(entry.unwrap().path());
        }
        assert!(files.len() >= 3, "{files:?}");
        for file in files {
            let config = load(Some(&file), &HashMap::new())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(config.listen.port(), 5000, "{}", file.display());
        }
        let cluster = load(
            Some(&deploy.join("examples/cluster-s3.yml")),
            &env(&[("REGISTRY_CLUSTER_NODEID", "3")]),
        )
        .unwrap();
        assert_eq!(cluster.raft.node_id, 3);
        assert_eq!(
            cluster.raft.advertise.as_deref(),
            Some("registry-3.example.internal:5101")
        );
    }

    #[test]
    fn an_ordinal_node_id_comes_from_the_pod_index_or_the_pod_name() {
        let peers = (
            "REGISTRY_CLUSTER_PEERS",
            "1=r-0.peers:5101,2=r-1.peers:5101,3=r-2.peers:5101",
        );
        let with = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("REGISTRY_CLUSTER_NODEID", "ordinal"),
                ("REGISTRY_CLUSTER_SECRET", "s"),
                peers,
            ];
            pairs.extend_from_slice(extra);
            load(None, &env(&pairs))
        };
        let by_label = with(&[("POD_INDEX", "2"), ("HOSTNAME", "r-0")]).unwrap();
        assert_eq!(by_label.raft.node_id, 3, "the label wins over the name");
        assert_eq!(by_label.raft.advertise.as_deref(), Some("r-2.peers:5101"));
        let by_name = with(&[("HOSTNAME", "registry-ha-1")]).unwrap();
        assert_eq!(by_name.raft.node_id, 2);
        let no_index = with(&[("HOSTNAME", "laptop")]).unwrap_err().to_string();
        assert!(
            no_index.contains("cluster.nodeid") && no_index.contains("HOSTNAME"),
            "{no_index}"
        );
        let word = load(None, &env(&[("REGISTRY_CLUSTER_NODEID", "two")]))
            .unwrap_err()
            .to_string();
        assert!(word.contains("neither a number nor `ordinal`"), "{word}");
    }

    #[test]
    fn bad_cluster_sections_name_the_key() {
        let err = |e: &[(&str, &str)]| load(None, &env(e)).unwrap_err().to_string();
        let three = ("REGISTRY_CLUSTER_PEERS", "1=a:1,2=b:1,3=c:1");
        assert!(err(&[("REGISTRY_METADATA_NODEID", "2")]).contains("cluster.nodeid"));
        assert!(err(&[("REGISTRY_CLUSTER_NODEID", "1"), three]).contains("cluster.secret"));
        assert!(err(&[
            ("REGISTRY_CLUSTER_NODEID", "4"),
            three,
            ("REGISTRY_CLUSTER_SECRET", "s")
        ])
        .contains("cluster.peers"));
        assert!(err(&[("REGISTRY_CLUSTER_NODEID", "1")]).contains("cluster.advertise"));
        assert!(err(&[
            ("REGISTRY_CLUSTER_NODEID", "1"),
            ("REGISTRY_CLUSTER_PEERS", "1=a,2=b:1")
        ])
        .contains("port"));
        assert!(err(&[
            ("REGISTRY_CLUSTER_NODEID", "1"),
            three,
            ("REGISTRY_CLUSTER_SECRET", "s"),
            ("REGISTRY_CLUSTER_ADVERTISE", "z:1")
        ])
        .contains("cluster.advertise"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = |text: &str, e: &[(&str, &str)]| {
            let f = write(text);
            load(Some(f.path()), &env(e)).unwrap_err().to_string()
        };
        assert!(err("http:\n  adr: x\n", &[]).contains("adr"));
        assert!(err("", &[("REGISTRY_HTTP_PORT", "1")]).contains("port"));
        assert!(err("http:\n  addr: nowhere\n", &[]).contains("http.addr"));
        assert!(err("log:\n  level: loud\n", &[]).contains("log.level"));
        assert!(err("storage:\n  delete:\n    enabled: maybe\n", &[])
            .contains("storage.delete.enabled"));
        assert!(err(
            "storage:\n  inmemory:\n  filesystem:\n    rootdirectory: /x\n",
            &[]
        )
        .contains("storage"));
    }
}
