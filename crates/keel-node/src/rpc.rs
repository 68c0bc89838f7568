//! Internal RPC between nodes: Raft's append/vote/snapshot, forwarded writes
//! and read-index requests. HTTP/1.1 over pooled keep-alive connections,
//! bodies in postcard (compact binary), every call with an explicit timeout,
//! every request carrying the cluster secret and the caller's member id
//! (which, over TLS, the caller's certificate must name).

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

use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, Request};
use bytes::Bytes;
use http_body_util::Full;
use keel_http_client::ConnPool;
use keel_store::{NodeId, TypeConfig};

use crate::signals::ElectionSignals;

/// Longest wait to open a TCP connection to a peer: a live peer on a LAN
/// answers in well under a millisecond; longer means down or partitioned.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Idle pooled connections kept per peer.
pub const POOL_IDLE_PER_PEER_MAX: usize = 32;
/// Largest internal RPC body accepted (a snapshot chunk or an entry batch).
pub const RPC_BODY_BYTES_MAX: usize = 64 << 20;
/// Content type of internal RPC bodies.
pub const POSTCARD_CONTENT_TYPE: &str = "application/x-keel-postcard";

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
    /// A follower forwards a whole group of commands (a `/v1/batch`) to
    /// the leader, to be proposed as one unit in one entry.
    pub const FORWARD_BATCH: &str = "/internal/forward-batch";
    /// A follower asks the leader for a linearizable read index.
    pub const READ_INDEX: &str = "/internal/read-index";
    /// A node's own status, for health probes.
    pub const SELF: &str = "/internal/self";
    /// A node's wall clock (ms since the epoch), for clock offsets.
    pub const CLOCK: &str = "/internal/clock";
    /// The leader handing over asks its successor to stand for election.
    pub const STAND: &str = "/internal/stand";
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

/// How long an idle pooled connection to a peer is kept. Shorter than any
/// server-side idle close, so a connection is rarely found closed at use.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled HTTP client for calls to peers: kept-alive HTTP/1.1 connections,
/// each driven by the call that holds it (`keel_http_client`).
#[derive(Clone)]
pub struct PeerClient {
    pool: Arc<ConnPool>,
    secret: HeaderValue,
    member: HeaderValue,
}

impl PeerClient {
    /// A client of member `member` presenting `secret` on every call, over
    /// TLS with `tls` (this node's certificate, which names `member`) when
    /// given.
    pub fn new(secret: &str, member: NodeId, tls: Option<Arc<keel_tls::ClientTls>>) -> Self {
        Self {
            pool: Arc::new(
                ConnPool::new(POOL_IDLE_PER_PEER_MAX, POOL_IDLE_TIMEOUT, CONNECT_TIMEOUT)
                    .with_tls(tls),
            ),
            member: HeaderValue::from(member),
            // The secret comes from configuration, which refuses one that is
            // not a valid header value; an empty value then only fails the
            // peer's check, as a wrong secret would.
            secret: HeaderValue::from_str(secret).unwrap_or(HeaderValue::from_static("")),
        }
    }

    /// POSTs `req` in postcard to `http://{addr}{path}` and decodes the
    /// reply, all within `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = postcard::to_stdvec(req).map_err(|e| CallError::Network(e.to_string()))?;
        let request = Request::post(path)
            .header(HOST, addr)
            .header(keel_protocol::header::CLUSTER_SECRET, self.secret.clone())
            .header(keel_protocol::header::MEMBER, self.member.clone())
            .header(CONTENT_TYPE, POSTCARD_CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Network(format!("request: {e}")))?;
        let exchange = self.pool.exchange(addr, request, RPC_BODY_BYTES_MAX);
        let resp = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return Err(CallError::Timeout(timeout)),
            Ok(Err(e)) if e.not_sent() => return Err(CallError::Unreachable(e.to_string())),
            Ok(Err(e)) => return Err(CallError::Network(e.to_string())),
            Ok(Ok(r)) => r,
        };
        if !resp.status().is_success() {
            return Err(CallError::Network(format!(
                "peer answered {}",
                resp.status()
            )));
        }
        postcard::from_bytes(resp.body()).map_err(|e| CallError::Network(format!("bad reply: {e}")))
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

/// The `corrupt-snapshot-send` fault injector of `keel_domain::test_bugs`:
/// flips one byte of the first non-empty snapshot chunk this process sends.
fn corrupt_first_snapshot_chunk(data: &mut [u8]) {
    use keel_domain::test_bugs::{on, TestBug};
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !on(TestBug::CorruptSnapshotSend) || data.is_empty() {
        return;
    }
    if !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let mid = data.len() / 2;
        data[mid] ^= 0xFF;
        tracing::warn!("test fault: flipped a byte of an outgoing snapshot chunk");
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
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        corrupt_first_snapshot_chunk(&mut rpc.data);
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
