//! The internal RPC server: the endpoints of [`crate::rpc::path`] that peers
//! call (Raft's append, vote and snapshot chunks, forwarded writes, read
//! indexes, status and clock probes). Every call must present the cluster
//! secret; bodies are postcard. The client side is [`crate::rpc`].
//!
//! Over TLS a call must also come over a connection whose client
//! certificate (from the cluster's CA, checked by the handshake) names the
//! member the call's `keel-member` header claims, and a Raft message must
//! be that member's own (its vote's leader or candidate): a node holding
//! one member's certificate cannot speak for another, and a process with
//! no member certificate cannot speak at all.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use openraft::Raft;
use serde::{de::DeserializeOwned, Serialize};

use keel_domain::Envelope;
use keel_store::{NodeId, StateMachineStore, TypeConfig};

use crate::metrics::Metrics;
use crate::node::Node;
use crate::rpc::{path, RPC_BODY_BYTES_MAX};
use crate::signals::ElectionSignals;

/// What the internal endpoints act on: the node for writes, read indexes
/// and status, and below it the Raft instance and the state machine for
/// the Raft messages, which only peers may send.
pub struct RpcState {
    /// The replica.
    pub node: Arc<Node>,
    /// Its Raft instance.
    pub raft: Raft<TypeConfig>,
    /// Its state machine store (an incoming snapshot is checked there).
    pub sm: StateMachineStore,
    /// What the RPC layer tells the election clock.
    pub election: Arc<ElectionSignals>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

type Shared = State<Arc<RpcState>>;

/// The client certificate of the connection a request came over (none
/// over plaintext, or from a client that presented none).
#[derive(Clone, Debug)]
pub struct ConnectedPeer(pub Option<keel_tls::PeerCert>);

/// Checks an internal call's credentials and says which member it comes
/// from, when TLS proves it (`None` over plaintext, where only the secret
/// is checked).
fn check_caller(
    rpc: &RpcState,
    h: &HeaderMap,
    peer: Option<&ConnectedPeer>,
) -> Result<Option<NodeId>, Response> {
    let config = rpc.node.config();
    if !presents_secret(h, &config.cluster_secret) {
        return Err(forbidden("bad cluster secret".to_owned()));
    }
    if config.tls.is_none() {
        return Ok(None);
    }
    let claimed = h
        .get(keel_protocol::header::MEMBER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok())
        .ok_or_else(|| forbidden("an internal call must name its member".to_owned()))?;
    let cert = peer
        .and_then(|p| p.0.as_ref())
        .ok_or_else(|| forbidden("an internal call needs a member certificate".to_owned()))?;
    if !keel_tls::presents_member(&cert.0, claimed) {
        tracing::warn!(
            claimed,
            "refused an internal call whose certificate names another member"
        );
        return Err(forbidden(format!(
            "the certificate presented does not name member {claimed}"
        )));
    }
    Ok(Some(claimed))
}

/// Checks that a Raft message from a proven member `caller` carries that
/// member's own vote (as leader or candidate).
fn check_sender(caller: Option<NodeId>, vote: &openraft::Vote<NodeId>) -> Result<(), Response> {
    match caller {
        Some(c) if vote.leader_id().voted_for() != Some(c) => Err(forbidden(format!(
            "member {c} sent a message on behalf of {:?}",
            vote.leader_id().voted_for()
        ))),
        _ => Ok(()),
    }
}

fn forbidden(why: String) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// Whether an internal call's headers carry the cluster secret `secret`,
/// compared in constant time: how long a refusal takes must not tell a
/// caller how much of a guess was right.
fn presents_secret(h: &HeaderMap, secret: &str) -> bool {
    h.get(keel_protocol::header::CLUSTER_SECRET)
        .is_some_and(|v| keel_protocol::constant_time_eq(v.as_bytes(), secret.as_bytes()))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    postcard::from_bytes(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad rpc body: {e}")).into_response())
}

fn encode<T: Serialize>(v: &T) -> Response {
    match postcard::to_stdvec(v) {
        Ok(b) => b.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// An internal endpoint: the caller checked, the body decoded, the reply
/// encoded. With `vote_of`, the decoded message's vote must be the proven
/// caller's own (see [`check_sender`]).
macro_rules! rpc_handler {
    ($name:ident, |$rpc:ident, $req:ident : $ty:ty| vote_of($vote:expr) $body:expr) => {
        async fn $name(
            State($rpc): Shared,
            peer: Option<Extension<ConnectedPeer>>,
            h: HeaderMap,
            body: Bytes,
        ) -> Response {
            let caller = match check_caller(&$rpc, &h, peer.as_ref().map(|p| &p.0)) {
                Ok(c) => c,
                Err(r) => return r,
            };
            let $req: $ty = match decode(&body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let vote: Option<openraft::Vote<NodeId>> = $vote(&$req);
            if let Some(v) = vote {
                if let Err(r) = check_sender(caller, &v) {
                    return r;
                }
            }
            encode(&$body)
        }
    };
    ($name:ident, |$rpc:ident, $req:ident : $ty:ty| $body:expr) => {
        rpc_handler!($name, |$rpc, $req: $ty| vote_of(|_r: &$ty| None) $body);
    };
}

// Accepted AppendEntries and InstallSnapshot come from the current leader,
// and a granted vote defers this node's own candidacy: each resets the
// election clock, as openraft's own timer would.
type AppendRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;

rpc_handler!(rpc_append, |rpc, req: AppendRequest| vote_of(|r: &AppendRequest| Some(r.vote)) {
    let at = std::time::Instant::now();
    let r = rpc.raft.append_entries(req).await;
    if matches!(&r, Ok(a) if !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
        rpc.election.heard_from_leader(at);
    }
    r
});
type VoteRequest = openraft::raft::VoteRequest<NodeId>;

rpc_handler!(rpc_vote, |rpc, req: VoteRequest| vote_of(|r: &VoteRequest| Some(r.vote)) {
    let at = std::time::Instant::now();
    let r = rpc.raft.vote(req).await;
    if matches!(&r, Ok(v) if v.vote_granted) {
        rpc.election.heard_from_leader(at);
    }
    r
});
rpc_handler!(rpc_snapshot, |rpc, req: SnapshotChunk| vote_of(|r: &SnapshotChunk| Some(r.vote)) {
    install_snapshot_chunk(&rpc, req).await
});

type SnapshotChunk = openraft::raft::InstallSnapshotRequest<TypeConfig>;
type SnapshotReply = Result<
    openraft::raft::InstallSnapshotResponse<NodeId>,
    openraft::error::RaftError<NodeId, openraft::error::InstallSnapshotError>,
>;

/// One chunk of a snapshot from the leader. The last one is checked with
/// the bytes before it as a whole snapshot before openraft sees it
/// (`StateMachineStore::verify_incoming`): a snapshot damaged on the way is
/// refused as a mismatch, which makes the leader send it again from the
/// start, instead of failing openraft's install, which would stop it.
async fn install_snapshot_chunk(rpc: &RpcState, req: SnapshotChunk) -> SnapshotReply {
    use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::SnapshotSegmentId;
    let at = std::time::Instant::now();
    let done = req.done;
    rpc.metrics.snapshot_chunks_received.inc();
    if done {
        let id = req.meta.snapshot_id.clone();
        if let Err(e) = rpc
            .sm
            .verify_incoming(&id, req.offset, req.data.clone())
            .await
        {
            tracing::warn!(snapshot = %id, error = %e, "refusing a damaged snapshot; the leader sends it again");
            return Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
                SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: id.clone(),
                        offset: 0,
                    },
                    got: SnapshotSegmentId {
                        id,
                        offset: req.offset,
                    },
                },
            )));
        }
    }
    let r = rpc.raft.install_snapshot(req).await;
    if r.is_ok() {
        rpc.election.heard_from_leader(at);
        if done {
            rpc.metrics.snapshots_installed.inc();
        }
    }
    r
}
rpc_handler!(rpc_forward, |rpc, req: Envelope| rpc
    .node
    .propose_forwarded(req)
    .await);
rpc_handler!(rpc_forward_batch, |rpc, req: crate::proposer::Group| rpc
    .node
    .propose_forwarded_group(req)
    .await);
rpc_handler!(rpc_read_index, |rpc, _req: ()| rpc.node.read_index().await);
rpc_handler!(rpc_self, |rpc, _req: ()| rpc.node.self_status());
rpc_handler!(rpc_clock, |_rpc, _req: ()| keel_protocol::wall_ms());
rpc_handler!(rpc_stand, |rpc, req: crate::node::StandRequest| rpc
    .node
    .stand(req)
    .await);

/// The internal router.
pub fn router(state: Arc<RpcState>) -> Router {
    Router::new()
        .route(path::APPEND, post(rpc_append))
        .route(path::VOTE, post(rpc_vote))
        .route(path::SNAPSHOT, post(rpc_snapshot))
        .route(path::FORWARD, post(rpc_forward))
        .route(path::FORWARD_BATCH, post(rpc_forward_batch))
        .route(path::READ_INDEX, post(rpc_read_index))
        .route(path::SELF, post(rpc_self))
        .route(path::CLOCK, post(rpc_clock))
        .route(path::STAND, post(rpc_stand))
        .layer(axum::extract::DefaultBodyLimit::max(RPC_BODY_BYTES_MAX))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const SECRET: &str = "keel-cluster-dev";

    fn presenting(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            keel_protocol::header::CLUSTER_SECRET,
            HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    #[test]
    fn an_internal_call_with_the_cluster_secret_is_let_in() {
        assert!(presents_secret(&presenting(SECRET.as_bytes()), SECRET));
    }

    #[test]
    fn an_internal_call_without_the_cluster_secret_is_refused() {
        assert!(!presents_secret(&HeaderMap::new(), SECRET));
        for wrong in [
            "",
            "keel-cluster-deV",
            "Keel-cluster-dev",
            "keel-cluster-de",
            "keel-cluster-dev ",
            "keel-cluster-devx",
        ] {
            assert!(
                !presents_secret(&presenting(wrong.as_bytes()), SECRET),
                "{wrong:?} was taken for the secret"
            );
        }
        // A header value need not be UTF-8; it is refused, not a panic.
        assert!(!presents_secret(
            &presenting(b"keel-cluster-d\xe9v"),
            SECRET
        ));
    }
}
