//! `/v1/cluster`: the cluster's status, membership changes and log
//! compaction.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::{admin, Api};
use crate::http::errors::Problem;
use crate::http::extract::Body;
use crate::node::{CompactError, MembershipError};

type Shared = State<Arc<Api>>;

/// `GET /v1/cluster`: members, roles, term, leader, indexes, lag, health.
pub async fn status(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

fn membership_problem(e: MembershipError) -> Problem {
    match e {
        MembershipError::Refused(m) => Problem::new(
            StatusCode::CONFLICT,
            "membership_refused",
            "Membership change refused",
            m,
        ),
        MembershipError::NotLeader(l) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            "Not the leader",
            "membership changes are made on the leader",
        )
        .with("leader_id", json!(l.as_ref().map(|l| l.0)))
        .with("leader_addr", json!(l.map(|l| l.1))),
        MembershipError::Failed(m) => Problem::unavailable(m),
    }
}

/// The body of `POST /v1/cluster/learners`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerBody {
    id: u64,
    addr: String,
}

/// `POST /v1/cluster/learners`: add a learner (on the leader).
pub async fn add_learner(
    State(api): Shared,
    h: HeaderMap,
    Body(b): Body<LearnerBody>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    if b.addr.is_empty() || b.addr.len() > 255 || b.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(Problem::validation(
            "addr",
            "must be host:port of the new node, e.g. 127.0.0.1:7104",
        ));
    }
    api.node
        .add_learner(b.id, b.addr)
        .await
        .map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// The body of `POST /v1/cluster/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    id: u64,
}

/// `POST /v1/cluster/members`: promote a learner to voter (on the leader).
pub async fn promote(
    State(api): Shared,
    h: HeaderMap,
    Body(b): Body<MemberBody>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    api.node.promote(b.id).await.map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// `DELETE /v1/cluster/members/{id}`: remove a member, refused when the
/// rest would have no healthy quorum.
pub async fn remove(
    State(api): Shared,
    h: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    api.node.remove(id).await.map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// `POST /v1/cluster/compact`: snapshot this node's state and purge its log
/// up to the snapshot.
pub async fn compact(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    match api.node.compact().await {
        Ok(c) => Ok(Json(json!(c)).into_response()),
        Err(e @ CompactError::NothingApplied) => Err(Problem::new(
            StatusCode::CONFLICT,
            "nothing_to_compact",
            "Nothing to compact",
            e.to_string(),
        )),
        Err(e @ CompactError::Unavailable(_)) => Err(Problem::unavailable(e.to_string())),
    }
}
