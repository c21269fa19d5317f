//! Raft RPC to peers: openraft's network traits over [`PeerClient`].
//!
//! openraft asks for a client per replication stream, per vote round and per
//! read, so [`HttpNetwork::new_client`] only clones the shared pooled client.
//! A peer that accepts no connection is `Unreachable` (openraft backs off, see
//! [`PeerNetwork::backoff`]); any other failure is a `Network` error, retried
//! at once; a remote Raft error is passed through as the peer's answer.

use crate::rpc::{path, CallError, PeerClient};
use crate::types::{NodeInfo, TypeConfig};
use crate::NodeId;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use std::time::Duration;

/// The factory openraft gets: one shared client for all peers.
#[derive(Debug, Clone)]
pub struct HttpNetwork {
    client: PeerClient,
}

impl HttpNetwork {
    pub fn new(client: PeerClient) -> Self {
        HttpNetwork { client }
    }
}

/// Calls to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    client: PeerClient,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerNetwork {
            client: self.client.clone(),
            target,
            addr: node.raft_addr.clone(),
        }
    }
}

impl PeerNetwork {
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .client
            .call(self.target, &self.addr, path, request, option.soft_ttl())
            .await
            .map_err(|e| match e {
                // A peer that refuses the call (not yet formed, another
                // cluster) is treated like one that is down: back off.
                CallError::Connect(_) | CallError::Refused { .. } => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.send(path::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(path::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.send(path::VOTE, &rpc, &option).await
    }

    /// Exponential from 100 ms, capped at 2 s: a restarted peer is found
    /// quickly, a dead one costs little.
    fn backoff(&self) -> Backoff {
        let mut next = Duration::from_millis(100);
        Backoff::new(std::iter::from_fn(move || {
            let now = next;
            next = (next * 2).min(Duration::from_secs(2));
            Some(now)
        }))
    }
}
