//! In-process clusters: every node started the way the binary starts it
//! (`Node::spawn` on listeners bound first), sharing one blob store, each
//! with its own metadata directory, and a per-connection round-robin
//! balancer in front so a client's requests land on different nodes.

use crate::balancer::Balancer;
use crate::{poll_until, s3};
use node::{Node, NodeConfig, SpawnedNode};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use storage::faulty::{FaultSwitch, FaultyStore};

pub const SECRET: &str = "test-cluster-secret";

struct Member {
    node: Option<SpawnedNode>,
    config: NodeConfig,
    api: SocketAddr,
    debug: SocketAddr,
    internal: Option<SocketAddr>,
}

/// `n` nodes on loopback; node `i` (0-based) has Raft id `i + 1`.
pub struct TestCluster {
    members: Vec<Member>,
    /// The S3 server behind the nodes, when the blobs are on S3.
    pub s3: Option<s3::S3Server>,
    /// Makes every node's blob store fail while set.
    pub faults: FaultSwitch,
    /// Cuts links between nodes (ids, not indexes) to partition the cluster.
    pub links: raft::LinkFaults,
    balancer: Option<Balancer>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes (with an internal listener each when `n > 1`) on
    /// S3 when `s3` is given, else on one shared directory, with `adjust`
    /// applied to every node's config; returns once every node is ready.
    pub fn start(n: usize, s3: Option<s3::S3Server>, adjust: impl Fn(&mut NodeConfig)) -> Self {
        let cluster = Self::launch(n, s3, adjust);
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// [`TestCluster::start`] without waiting for readiness.
    pub fn launch(n: usize, s3: Option<s3::S3Server>, adjust: impl Fn(&mut NodeConfig)) -> Self {
        crate::init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = match &s3 {
            Some(server) => storage::BackendConfig::S3(server.config()),
            None => storage::BackendConfig::Filesystem {
                root: dir.path().join("blobs"),
            },
        };
        let bind = || TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut listeners: Vec<_> = (0..n)
            .map(|_| (bind(), bind(), (n > 1).then(bind)))
            .collect();
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .filter_map(|(i, (_, _, internal))| {
                let addr = internal.as_ref()?.local_addr().ok()?;
                Some((i as u64 + 1, addr.to_string()))
            })
            .collect();
        let faults = FaultSwitch::default();
        let links = raft::LinkFaults::default();
        let mut members = Vec::new();
        for (i, (api, debug, internal)) in listeners.drain(..).enumerate() {
            let mut config = NodeConfig::single_node(&dir.path().join(format!("node{}", i + 1)));
            config.blobs = blobs.clone();
            config.listen = api.local_addr().expect("addr");
            config.debug_listen = Some(debug.local_addr().expect("addr"));
            if let Some(internal) = &internal {
                let addr = internal.local_addr().expect("addr");
                config.internal_listen = Some(addr);
                config.raft.node_id = i as u64 + 1;
                config.raft.peers = peers.clone();
                config.raft.advertise = Some(addr.to_string());
                config.raft.secret = Some(SECRET.to_owned());
                config.raft.links = links.clone();
            }
            adjust(&mut config);
            let member = Member {
                api: config.listen,
                debug: config.debug_listen.expect("debug"),
                internal: config.internal_listen,
                node: Some(spawn(&config, api, debug, internal, &faults)),
                config,
            };
            members.push(member);
        }
        let balancer = (n > 1).then(|| Balancer::start(members.iter().map(|m| m.api).collect()));
        TestCluster {
            members,
            s3,
            faults,
            links,
            balancer,
            dir,
        }
    }

    /// Adds node `id` (configured like the others, listing them and itself
    /// as peers) to a running cluster; it joins as a learner, then a voter.
    /// Answers its index.
    pub fn add_node(&mut self, id: u64) -> usize {
        let bind = || TcpListener::bind("127.0.0.1:0").expect("bind");
        let (api, debug, internal) = (bind(), bind(), bind());
        let mut config = self.members[0].config.clone();
        config.raft.data_dir = self.dir.path().join(format!("node{id}/meta"));
        config.listen = api.local_addr().expect("addr");
        config.debug_listen = Some(debug.local_addr().expect("addr"));
        let addr = internal.local_addr().expect("addr");
        config.internal_listen = Some(addr);
        config.raft.node_id = id;
        config.raft.advertise = Some(addr.to_string());
        config.raft.peers.insert(id, addr.to_string());
        self.members.push(Member {
            api: config.listen,
            debug: config.debug_listen.expect("debug"),
            internal: Some(addr),
            node: Some(spawn(&config, api, debug, Some(internal), &self.faults)),
            config,
        });
        self.members.len() - 1
    }

    /// Why node `i` stopped by itself (it refused to join), once it has.
    pub fn failure(&self, i: usize) -> Option<String> {
        self.members[i].node.as_ref().and_then(|n| n.failure())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The balancer's URL (each connection to the next node), or the one node's.
    pub fn base_url(&self) -> String {
        match &self.balancer {
            Some(balancer) => format!("http://{}", balancer.addr()),
            None => self.node_url(0),
        }
    }

    pub fn host(&self) -> String {
        self.base_url().trim_start_matches("http://").to_owned()
    }

    pub fn node_url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].api)
    }

    /// Node `i`'s internal listener, if it has one.
    pub fn internal_addr(&self, i: usize) -> Option<SocketAddr> {
        self.members[i].internal
    }

    /// Node `i`'s OCI API address.
    pub fn api_addr(&self, i: usize) -> SocketAddr {
        self.members[i].api
    }

    pub fn debug_addr(&self, i: usize) -> SocketAddr {
        self.members[i].debug
    }

    /// The value of one metric series (`name{labels}` exactly as `/metrics`
    /// prints it) summed over the nodes; a node without the series counts 0.
    pub fn metric_sum(&self, series: &str) -> u64 {
        let prefix = format!("{series} ");
        (0..self.len())
            .map(|i| {
                let (_, metrics) = http_get(self.debug_addr(i), "/metrics").expect("metrics");
                metrics
                    .lines()
                    .find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    pub fn debug_url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].debug)
    }

    /// An OCI client of node `i` alone.
    pub fn client(&self, i: usize) -> crate::oci::Client {
        crate::oci::Client::new(self.node_url(i))
    }

    /// An OCI client of the balancer that opens a new connection per
    /// request, so consecutive requests go to different nodes.
    pub fn balanced_client(&self) -> crate::oci::Client {
        match &self.balancer {
            Some(_) => crate::oci::Client::without_pooling(self.base_url()),
            None => self.client(0),
        }
    }

    pub fn blobs_dir(&self) -> PathBuf {
        match &self.s3 {
            Some(server) => server.bucket_dir(),
            None => self.dir.path().join("blobs"),
        }
    }

    /// Node `i`'s metadata directory.
    pub fn meta_dir(&self, i: usize) -> PathBuf {
        self.members[i].config.raft.data_dir.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].node.is_some()
    }

    /// Stops node `i` gracefully (drains requests, flushes Raft).
    pub fn stop(&mut self, i: usize) {
        if let Some(node) = self.members[i].node.take() {
            node.stop();
        }
    }

    /// Starts node `i` again on its data and ports, with `adjust` applied
    /// to its config; does not wait for readiness.
    pub fn start_node_with(&mut self, i: usize, adjust: impl FnOnce(&mut NodeConfig)) {
        self.stop(i);
        let member = &mut self.members[i];
        adjust(&mut member.config);
        // A stopped node's threads (actix's HTTP workers keep their own
        // copies of its state) can hold its metadata store's file lock for
        // a moment after it stopped; a process that exits has no such moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let api = TcpListener::bind(member.api).expect("rebind the api port");
            let debug = TcpListener::bind(member.debug).expect("rebind the debug port");
            let internal = member
                .internal
                .map(|addr| TcpListener::bind(addr).expect("rebind the internal port"));
            match try_spawn(&member.config, api, debug, internal, &self.faults) {
                Ok(node) => {
                    member.node = Some(node);
                    return;
                }
                Err(e)
                    if e.contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50)); // poll interval
                }
                Err(e) => panic!("node starts: {e}"),
            }
        }
    }

    pub fn start_node(&mut self, i: usize) {
        self.start_node_with(i, |_| {});
    }

    /// Restarts every node, one at a time, each ready before the next stops.
    pub fn rolling_restart(&mut self) {
        self.rolling_restart_with(|_| {});
    }

    /// [`TestCluster::rolling_restart`], each node's config changed by `adjust`.
    pub fn rolling_restart_with(&mut self, adjust: impl Fn(&mut NodeConfig)) {
        for i in 0..self.members.len() {
            self.start_node_with(i, &adjust);
            self.wait_ready(i);
        }
    }

    /// Waits until node `i` answers `/readyz` with 200; panics after 60 s.
    pub fn wait_ready(&self, i: usize) {
        let ready = poll_until(Duration::from_secs(60), || {
            http_get(self.members[i].debug, "/readyz").is_some_and(|(status, _)| status == 200)
        });
        assert!(
            ready,
            "node {} never became ready: {:?}",
            i + 1,
            http_get(self.members[i].debug, "/readyz")
        );
    }

    /// `/readyz` of node `i`: its status and body.
    pub fn readiness(&self, i: usize) -> Option<(u16, String)> {
        http_get(self.members[i].debug, "/readyz")
    }

    /// `registry cluster status` as node `i` answers it.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (status, body) = http_get(self.members[i].debug, "/cluster/status")?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The index of the node every running node agrees leads; waits up to 30 s.
    pub fn leader(&self) -> usize {
        let mut found = None;
        let agreed = poll_until(Duration::from_secs(30), || {
            let leaders: Vec<Option<u64>> = (0..self.members.len())
                .filter(|i| self.is_running(*i))
                .map(|i| self.status(i).and_then(|s| s["leader"].as_u64()))
                .collect();
            found = leaders.first().copied().flatten();
            found.is_some() && leaders.iter().all(|l| *l == found)
        });
        assert!(agreed, "the running nodes never agreed on a leader");
        found.expect("a leader") as usize - 1
    }
}

fn spawn(
    config: &NodeConfig,
    api: TcpListener,
    debug: TcpListener,
    internal: Option<TcpListener>,
    faults: &FaultSwitch,
) -> SpawnedNode {
    try_spawn(config, api, debug, internal, faults).unwrap_or_else(|e| panic!("node starts: {e}"))
}

fn try_spawn(
    config: &NodeConfig,
    api: TcpListener,
    debug: TcpListener,
    internal: Option<TcpListener>,
    faults: &FaultSwitch,
) -> Result<SpawnedNode, String> {
    // Opened on a thread of its own: callers may be inside a tokio runtime.
    let inner = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(storage::backends::open(&config.blobs))
        })
        .join()
        .expect("open thread")
    })
    .expect("open blob store");
    let blobs = Arc::new(FaultyStore::new(inner, faults.clone()));
    let listeners = node::Listeners {
        api,
        debug: Some(debug),
        internal,
    };
    Node::spawn_with_store(config.clone(), listeners, blobs).map_err(|e| format!("{e:?}"))
}

/// A blocking `GET` of `path` on `addr`: status and body, `None` when
/// nothing answers. Blocking on purpose: the harness polls it from tests
/// whose runtime must not be needed to answer it.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}
