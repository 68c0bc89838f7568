//! Internal RPC between nodes: Raft's append/vote/snapshot, forwarded writes
//! and read-index requests. HTTP/1.1 over pooled keep-alive connections,
//! bodies in postcard (compact binary), every call with an explicit timeout,
//! every request carrying the cluster secret.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{de::DeserializeOwned, Serialize};

use keel_store::{NodeId, TypeConfig};

use crate::election::ElectionSignals;

/// Header carrying the shared cluster secret on internal calls.
pub const CLUSTER_SECRET_HEADER: &str = "keel-cluster-secret";
/// Longest wait to open a TCP connection to a peer: a live peer on a LAN
/// answers in well under a millisecond; longer means down or partitioned.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Idle pooled connections kept per peer.
pub const POOL_IDLE_PER_PEER_MAX: usize = 32;
/// Largest internal RPC body accepted (a snapshot chunk or an entry batch).
pub const RPC_BODY_BYTES_MAX: usize = 64 << 20;

/// Paths of the internal RPC endpoints.
pub mod path {
    /// AppendEntries.
    pub const APPEND: &str = "/internal/raft/append";
    /// RequestVote.
    pub const VOTE: &str = "/internal/raft/vote";
    /// InstallSnapshot (chunked).
    pub const SNAPSHOT: &str = "/internal/raft/snapshot";
    /// A follower forwards a client command to the leader.
    pub const FORWARD: &str = "/internal/forward";
    /// A follower asks the leader for a linearizable read index.
    pub const READ_INDEX: &str = "/internal/read-index";
    /// A node's own status, for health probes.
    pub const SELF: &str = "/internal/self";
}

/// Why an internal call failed, before any Raft semantics.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made (peer down or partitioned).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The call did not complete within its deadline; it may or may not
    /// have taken effect.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection broke, bad status, or a body that does not decode.
    #[error("network: {0}")]
    Network(String),
}

/// A pooled HTTP client for calls to peers.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: String,
}

impl PeerClient {
    /// A client presenting `secret` on every call.
    pub fn new(secret: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_PEER_MAX)
            .tcp_nodelay(true)
            .http1_only()
            .build()
            // Building a client only fails when the TLS backend cannot
            // initialise; this client has no TLS backend compiled in.
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            secret: secret.to_owned(),
        }
    }

    /// POSTs `req` in postcard to `http://{addr}{path}` and decodes the reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = postcard::to_stdvec(req).map_err(|e| CallError::Network(e.to_string()))?;
        let sent = self
            .http
            .post(format!("http://{addr}{path}"))
            .header(CLUSTER_SECRET_HEADER, &self.secret)
            .header("content-type", "application/x-keel-postcard")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(CallError::Timeout(timeout)),
            Err(e) if e.is_connect() => return Err(CallError::Unreachable(e.to_string())),
            Err(e) => return Err(CallError::Network(e.to_string())),
        };
        if !resp.status().is_success() {
            return Err(CallError::Network(format!(
                "peer answered {}",
                resp.status()
            )));
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return Err(CallError::Timeout(timeout)),
            Err(e) => return Err(CallError::Network(e.to_string())),
        };
        postcard::from_bytes(&bytes).map_err(|e| CallError::Network(format!("bad reply: {e}")))
    }
}

/// Creates a [`PeerNetwork`] per target for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    /// This node's id (for timeout errors).
    pub id: NodeId,
    /// The shared client.
    pub client: PeerClient,
    /// Where replies to this node's vote requests are reported, for the
    /// election clock (see [`ElectionSignals::vote_reply`]).
    pub election: Arc<ElectionSignals>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            id: self.id,
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
            election: self.election.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    addr: String,
    client: PeerClient,
    election: Arc<ElectionSignals>,
}

type RaftResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl PeerNetwork {
    async fn raft_call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let reply: RaftResult<Resp, E> = self
            .client
            .call(&self.addr, path, req, timeout)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
                CallError::Timeout(t) => RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: t,
                }),
                CallError::Network(m) => RPCError::Network(NetworkError::new(&Msg(m))),
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug)]
struct Msg(String);
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Msg {}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_call(path::APPEND, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call(path::SNAPSHOT, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let reply: VoteResponse<NodeId> = self
            .raft_call(path::VOTE, RPCTypes::Vote, &rpc, &option)
            .await?;
        self.election.vote_reply(&rpc, &reply);
        Ok(reply)
    }
}
