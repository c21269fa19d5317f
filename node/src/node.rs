//! Starting and stopping a node. [`Node::start`] runs inside an actix System
//! (actors need one); [`Node::spawn`] gives a node its own System on its own
//! thread, which is how tests run several nodes in one process.

use crate::config::NodeConfig;
use crate::metrics::{GcMetrics, PurgeMetrics};
use actix_web::{dev::ServerHandle, App, HttpServer};
use api::upload::UploadRegistry;
use api::ApiMetrics;
use api::AppState;
use raft::MetaStore;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use storage::instrumented::Instrumented;
use storage::{BlobStore, Staging, StorageMetrics};

/// How long a single node waits to lead its one-member cluster at start.
const LEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("blob storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("metadata: {0}")]
    Meta(#[from] raft::MetaError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Auth(String),
    #[error("notifications: {0}")]
    Notifications(String),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("{listener}: {source}")]
    Tls {
        listener: &'static str,
        source: crate::tls::TlsError,
    },
}

/// The sockets a node serves on, bound by the caller (the binary from its
/// config, tests on free loopback ports).
pub struct Listeners {
    /// The OCI API.
    pub api: TcpListener,
    /// Metrics and health (`http.debug.addr`); none disables it.
    pub debug: Option<TcpListener>,
    /// Raft RPC and forwarded requests (`cluster.addr`); none for a single
    /// node without a cluster section.
    pub internal: Option<TcpListener>,
}

/// A running node.
pub struct Node {
    addr: SocketAddr,
    debug_addr: Option<SocketAddr>,
    server: actix_web::dev::Server,
    debug_server: Option<actix_web::dev::Server>,
    internal_server: Option<actix_web::dev::Server>,
    /// Fails if formation refuses this node (a wiped disk, another cluster).
    formation: Option<tokio::task::JoinHandle<Result<(), raft::MetaError>>>,
    meta: MetaStore,
    uploads: actix::Addr<UploadRegistry>,
    purger: Option<tokio::task::JoinHandle<()>>,
    collector: Option<tokio::task::JoinHandle<()>>,
    pull_recorder: tokio::task::JoinHandle<()>,
    /// One per notification endpoint.
    notifiers: Vec<tokio::task::JoinHandle<()>>,
    certificate_watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Opens storage and metadata, and starts serving. Must be called inside
    /// an actix System. `handle_signals` lets SIGINT/SIGTERM stop the node
    /// gracefully (the binary wants it; in-process tests do not).
    pub async fn start(
        config: NodeConfig,
        listeners: Listeners,
        handle_signals: bool,
    ) -> Result<Node, NodeError> {
        let blobs = storage::backends::open(&config.blobs).await?;
        Self::start_with_store(config, listeners, handle_signals, blobs).await
    }

    /// [`Node::start`] with a blob store built by the caller (tests wrap
    /// backends, e.g. to inject faults) instead of the one `config` names.
    pub async fn start_with_store(
        config: NodeConfig,
        listeners: Listeners,
        handle_signals: bool,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<Node, NodeError> {
        let registry = prometheus::Registry::new();
        let addr = listeners.api.local_addr()?;
        let blobs: Arc<dyn BlobStore> =
            Arc::new(Instrumented::new(blobs, StorageMetrics::new(&registry)?));
        let tls_metrics = crate::tls::TlsMetrics::new(&registry)?;
        // cluster.tls: the internal listener serves the node's certificate
        // and requires a peer's; calls to peers present the same one.
        let mut certificate_watches = Vec::new();
        let internal_tls = server_tls(
            "cluster.tls",
            config.internal_tls.as_ref(),
            &tls_metrics,
            &mut certificate_watches,
        )?;
        let mut raft_config = config.raft.clone();
        if let (Some(settings), Some(tls)) = (&config.internal_tls, &internal_tls) {
            let client = settings
                .peer_client(tls.certificate.clone())
                .map_err(|source| NodeError::Tls {
                    listener: "cluster.tls",
                    source,
                })?;
            raft_config.peer_tls = Some(raft::rpc::PeerTls(Arc::new(client)));
        }
        let meta = MetaStore::open(&raft_config, addr.to_string(), &registry).await?;
        let staging = Staging::new(blobs.clone());
        let api_metrics = ApiMetrics::new(&registry)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let uploads = actix::Actor::start(UploadRegistry::new(
            staging.clone(),
            meta.clone(),
            threads,
            api_metrics.uploads_in_flight.clone(),
        ));
        let (events, notifiers, pull_events_dropped) =
            start_notifications(&config, &meta, addr, &registry)?;
        let pulls = api::pulls::PullLog::counting_dropped_events(pull_events_dropped);
        let pull_recorder = tokio::spawn(crate::gc::record_pulls_forever(
            meta.clone(),
            pulls.clone(),
            config.gc.pull_flush,
        ));
        let auth = config
            .auth
            .as_ref()
            .map(|auth| api::auth::Authorizer::new(auth, &registry).map(Arc::new))
            .transpose()
            .map_err(NodeError::Auth)?;
        let limits = &config.rate_limit;
        let limits = (limits.requests.is_some() || limits.bandwidth.is_some())
            .then(|| api::ratelimit::RateLimiter::new(*limits, &registry).map(Arc::new))
            .transpose()?;
        let cache = if config.proxy.is_empty() {
            None
        } else {
            let metrics = api::cache::CacheMetrics::new(&registry)?;
            let cache = api::cache::PullThroughCache::new(&config.proxy, metrics)
                .map_err(NodeError::Proxy)?;
            for upstream in &config.proxy {
                tracing::info!(prefix = upstream.prefix, upstream = upstream.remote_url,
                    "pull-through cache: repositories under the prefix are filled from the upstream");
            }
            Some(Arc::new(cache))
        };
        let state = AppState {
            cache,
            auth,
            limits,
            meta: meta.clone(),
            staging: staging.clone(),
            uploads: uploads.clone(),
            config: Arc::new(config.api.clone()),
            metrics: api_metrics,
            pulls: pulls.clone(),
            forwarded: false,
            events,
        };
        let internal_server = listeners
            .internal
            .map(|listener| {
                crate::internal::server(
                    listener,
                    meta.clone(),
                    state.forwarded_copy(),
                    internal_tls.map(|tls| tls.config),
                )
            })
            .transpose()?;
        let internal_addr = config.raft.advertise.clone();
        // A node alone forms at once; a member of a larger cluster forms in
        // the background while its listeners already answer its peers.
        let formation = if config.raft.peers.len() <= 1 {
            crate::cluster::form(&meta).await?;
            meta.await_leader(LEADER_DEADLINE).await?;
            tokio::time::timeout(
                LEADER_DEADLINE,
                crate::cluster::ensure_named(&meta, &*blobs),
            )
            .await
            .map_err(|_| NodeError::Cluster("the cluster was not named in time".to_owned()))?;
            None
        } else {
            let (meta, blobs) = (meta.clone(), blobs.clone());
            Some(tokio::spawn(async move {
                crate::cluster::form(&meta).await?;
                tokio::spawn(async move { crate::cluster::ensure_named(&meta, &*blobs).await });
                Ok(())
            }))
        };
        // Started once a single node leads, so its first pass runs at once.
        let purger = if config.purge.enabled {
            let metrics = PurgeMetrics::new(&registry)?;
            Some(tokio::spawn(crate::purge::run_forever(
                meta.clone(),
                staging.clone(),
                config.purge.clone(),
                metrics,
                config.api.read_only,
            )))
        } else {
            None
        };
        // Expiry of cached content: rules ahead of the operator's, for the
        // repositories only upstreams fill.
        let mut gc_config = config.gc.clone();
        let expiry = crate::proxy_config::expiry_rules(&config.proxy).map_err(NodeError::Proxy)?;
        gc_config.retention.splice(0..0, expiry);
        gc_config.cache_expiry.extend(
            config
                .proxy
                .iter()
                .filter_map(|upstream| Some((upstream.prefix.clone(), upstream.ttl?))),
        );
        let collector = Arc::new(crate::gc::Collector::new(
            meta.clone(),
            blobs.clone(),
            gc_config,
            GcMetrics::new(&registry)?,
            config.api.read_only,
        ));
        let scheduled_collections = config
            .gc
            .enabled
            .then(|| tokio::spawn(crate::gc::run_forever(collector.clone())));
        let api_tls = server_tls(
            "http.tls",
            config.tls.as_ref(),
            &tls_metrics,
            &mut certificate_watches,
        )?;
        let server = HttpServer::new(move || {
            let state = state.clone();
            App::new().configure(move |cfg| api::configure(cfg, state))
        })
        .workers(threads)
        // Without it, HTTP/2 over TLS writes a response as several small
        // segments and Nagle holds the second until the client's delayed
        // ACK: 40 ms per manifest GET (scripts/bench --tls measured it).
        .tcp_nodelay(true)
        .shutdown_timeout(30);
        let mut server = match api_tls {
            Some(tls) => server.listen_rustls_0_23(listeners.api, tls.config)?,
            None => server.listen(listeners.api)?,
        };
        if !handle_signals {
            server = server.disable_signals();
        }
        let server = server.run();
        let debug_tls = server_tls(
            "http.debug.tls",
            config.debug_tls.as_ref(),
            &tls_metrics,
            &mut certificate_watches,
        )?;
        let (debug_addr, debug_server) = match listeners.debug {
            Some(listener) => (
                Some(listener.local_addr()?),
                Some(crate::debug::server(
                    listener,
                    registry,
                    meta.clone(),
                    blobs,
                    config.api.read_only,
                    collector,
                    debug_tls.map(|tls| tls.config),
                )?),
            ),
            None => (None, None),
        };
        tracing::info!(
            %addr,
            tls = config.tls.is_some(),
            auth = config.auth.is_some(),
            notifications = config.notifications.endpoints.len(),
            debug = %debug_addr.map_or("off".to_owned(), |a| a.to_string()),
            internal = internal_addr.as_deref().unwrap_or("off"),
            node = config.raft.node_id,
            blobs = config.blobs.name(),
            meta = %config.raft.data_dir.display(),
            "registry listening"
        );
        Ok(Node {
            addr,
            debug_addr,
            server,
            debug_server,
            internal_server,
            formation,
            meta,
            uploads,
            purger,
            collector: scheduled_collections,
            pull_recorder,
            notifiers,
            certificate_watches,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn debug_addr(&self) -> Option<SocketAddr> {
        self.debug_addr
    }

    /// A handle that stops the node from anywhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the API server stops (a signal or [`ServerHandle::stop`]),
    /// draining in-flight requests, then stops the debug listener, the
    /// background tasks, the upload sessions and Raft.
    pub async fn run(self) -> Result<(), NodeError> {
        let debug = self.debug_server.as_ref().map(|s| s.handle());
        let debug_task = self.debug_server.map(tokio::spawn);
        let internal = self.internal_server.as_ref().map(|s| s.handle());
        let internal_task = self.internal_server.map(tokio::spawn);
        let api = self.server.handle();
        let mut server = self.server;
        let mut refused = None;
        let served = match self.formation {
            None => server.await,
            Some(mut formation) => {
                tokio::select! {
                    served = &mut server => {
                        formation.abort();
                        served
                    }
                    formed = &mut formation => {
                        if let Ok(Err(e)) = formed {
                            tracing::error!(error = %e, "this node cannot join its cluster");
                            refused = Some(e);
                            // Sends the stop; the server future below carries it out
                            // (awaiting here, with that future unpolled, would hang).
                            drop(api.stop(false));
                        }
                        server.await
                    }
                }
            }
        };
        if let Some(debug) = debug {
            debug.stop(true).await;
        }
        if let Some(task) = debug_task {
            let _ = task.await;
        }
        // The internal listener stops last: peers may still be forwarding
        // to this node while its API drains.
        if let Some(internal) = internal {
            internal.stop(true).await;
        }
        if let Some(task) = internal_task {
            let _ = task.await;
        }
        for task in [&self.purger, &self.collector].into_iter().flatten() {
            task.abort();
        }
        self.pull_recorder.abort();
        for notifier in &self.notifiers {
            notifier.abort();
        }
        for watch in &self.certificate_watches {
            watch.abort();
        }
        if let Err(e) = self.uploads.send(api::upload::Shutdown).await {
            tracing::warn!(error = %e, "upload sessions did not stop cleanly");
        }
        self.meta.shutdown().await;
        tracing::info!(addr = %self.addr, "registry stopped");
        if let Some(e) = refused {
            return Err(NodeError::Meta(e));
        }
        Ok(served?)
    }

    /// Starts a node on a thread of its own, with its own actix System.
    pub fn spawn(config: NodeConfig, listeners: Listeners) -> Result<SpawnedNode, NodeError> {
        Self::spawn_inner(config, listeners, None)
    }

    /// [`Node::spawn`] with a blob store built by the caller.
    pub fn spawn_with_store(
        config: NodeConfig,
        listeners: Listeners,
        blobs: Arc<dyn BlobStore>,
    ) -> Result<SpawnedNode, NodeError> {
        Self::spawn_inner(config, listeners, Some(blobs))
    }

    fn spawn_inner(
        config: NodeConfig,
        listeners: Listeners,
        blobs: Option<Arc<dyn BlobStore>>,
    ) -> Result<SpawnedNode, NodeError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let failed = failure.clone();
        let thread = std::thread::Builder::new()
            .name(format!("node-{}", config.raft.node_id))
            .spawn(move || {
                let system = actix::System::with_tokio_rt(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime")
                });
                system.block_on(async move {
                    let started = match blobs {
                        Some(blobs) => {
                            Node::start_with_store(config, listeners, false, blobs).await
                        }
                        None => Node::start(config, listeners, false).await,
                    };
                    match started {
                        Ok(node) => {
                            let _ = ready_tx.send(Ok((node.addr(), node.handle())));
                            if let Err(e) = node.run().await {
                                tracing::error!(error = %e, "node stopped with an error");
                                *failed
                                    .lock()
                                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                                    Some(e.to_string());
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let (addr, handle) = ready_rx.recv().map_err(|_| {
            NodeError::Io(std::io::Error::other("node thread died while starting"))
        })??;
        Ok(SpawnedNode {
            addr,
            handle,
            thread: Some(thread),
            failure,
        })
    }
}

/// A node running on its own thread; stopped (gracefully) on drop.
pub struct SpawnedNode {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl SpawnedNode {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Why the node stopped by itself, once it has (e.g. it refused to join
    /// its cluster).
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops the node and waits until its storage is closed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let handle = self.handle.clone();
            // The handle's future completes once the server has drained.
            let stopper = std::thread::spawn(move || futures_block_on(handle.stop(true)));
            let _ = stopper.join();
            let _ = thread.join();
        }
    }
}

impl Drop for SpawnedNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// What the API needs to record events, one delivery task per endpoint,
/// and the counter of pull events dropped; nothing without endpoints.
#[allow(clippy::type_complexity)]
fn start_notifications(
    node: &NodeConfig,
    meta: &MetaStore,
    addr: SocketAddr,
    registry: &prometheus::Registry,
) -> Result<
    (
        Option<Arc<api::events::EventsConfig>>,
        Vec<tokio::task::JoinHandle<()>>,
        Option<prometheus::IntCounter>,
    ),
    NodeError,
> {
    let config = &node.notifications;
    if config.endpoints.is_empty() {
        return Ok((None, Vec::new(), None));
    }
    let metrics = crate::notify::NotifyMetrics::new(registry)?;
    let names: Arc<Vec<String>> =
        Arc::new(config.endpoints.iter().map(|e| e.name.clone()).collect());
    let mut tasks = Vec::new();
    for endpoint in &config.endpoints {
        metrics.register_endpoint(&endpoint.name);
        let deliverer = crate::notify::Deliverer::new(
            meta.clone(),
            endpoint.clone(),
            names.clone(),
            metrics.clone(),
        )
        .map_err(|e| NodeError::Notifications(e.to_string()))?;
        tasks.push(tokio::spawn(deliverer.run_forever()));
    }
    // Receivers tell nodes apart by `source.addr`: the name peers know this
    // node by, with the API's port, rather than a wildcard bind address.
    let source_addr = match node
        .raft
        .advertise
        .as_deref()
        .and_then(|a| a.rsplit_once(':'))
    {
        Some((host, _)) => format!("{host}:{}", addr.port()),
        None => addr.to_string(),
    };
    let events = api::events::EventsConfig {
        include_references: config.include_references,
        source_addr,
        instance: uuid::Uuid::new_v4().to_string(),
    };
    Ok((
        Some(Arc::new(events)),
        tasks,
        Some(metrics.pull_events_dropped),
    ))
}

/// The rustls config of a listener with TLS settings, its certificate's
/// reload watch added to `watches`; a certificate, key or CA bundle that does
/// not load stops the start, naming the listener's keys.
fn server_tls(
    listener: &'static str,
    settings: Option<&crate::tls::TlsSettings>,
    metrics: &crate::tls::TlsMetrics,
    watches: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<crate::tls::ServerTls>, NodeError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let tls = settings
        .server(listener, metrics.clone())
        .map_err(|source| NodeError::Tls { listener, source })?;
    watches.push(tokio::spawn(tls.certificate.clone().watch()));
    Ok(Some(tls))
}
