//! `/v1/cluster`: the cluster's status, membership changes and log
//! compaction.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::http::auth::{Api, Caller};
use crate::http::errors::Problem;
use crate::http::extract::{Body, PathParams, QueryParams};
use crate::http::openapi::{AdminProblems, MembershipProblems};
use crate::http::submit::record_done;
use crate::node::{
    ClusterStatus, CompactError, Compaction, MembershipError, Transfer, TransferError,
};
use keel_store::NodeId;

type Shared = State<Arc<Api>>;

/// Members, roles, term, leader, log, applied, snapshot and purged
/// indexes, lag and health, as this node sees them.
#[utoipa::path(
    get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "The cluster", body = ClusterStatus), AdminProblems),
    security(("bearer" = [])),
)]
pub async fn status(State(api): Shared) -> Result<Response, Problem> {
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
        MembershipError::NotLeader(l) => not_leader(l, "membership changes"),
        MembershipError::AtRisk(m) => Problem::new(
            StatusCode::CONFLICT,
            "membership_at_risk",
            "Membership change puts the cluster at risk",
            m,
        ),
        MembershipError::Failed(m) => Problem::unavailable(m),
    }
}

fn not_leader(l: Option<(NodeId, String)>, what: &str) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_leader",
        "Not the leader",
        format!("{what} are made on the leader"),
    )
    .with("leader_id", json!(l.as_ref().map(|l| l.0)))
    .with("leader_addr", json!(l.map(|l| l.1)))
}

/// The body of `POST /v1/cluster/learners`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnerBody {
    /// The new node's id (not 0, not a member yet).
    #[serde(deserialize_with = "keel_domain::whole::u64")]
    #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    id: u64,
    /// The new node's `host:port` as its peers reach it (its advertised
    /// address): an IP address or a DNS name, e.g. `10.0.0.5:7104`,
    /// `[::1]:7104` or `keel-4.shop.example:7104`.
    #[schema(min_length = 1, max_length = 255, examples("127.0.0.1:7104"))]
    addr: String,
}

/// Add a learner and wait until it has caught up (on the leader).
#[utoipa::path(
    post, path = "/v1/cluster/learners", tag = "cluster",
    description = "On the leader only (503 `not_leader` elsewhere).",
    request_body = LearnerBody,
    responses((status = 200, description = "The cluster", body = ClusterStatus), MembershipProblems),
    security(("bearer" = [])),
)]
pub async fn add_learner(
    State(api): Shared,
    caller: Caller,
    Body(b): Body<LearnerBody>,
) -> Result<Response, Problem> {
    if keel_protocol::addr::parse_host_port(&b.addr).is_err() {
        return Err(Problem::validation(
            "addr",
            "must be host:port of the new node, the host an IP address or a DNS name, e.g. 10.0.0.5:7104 or keel-4.shop.example:7104",
        ));
    }
    let detail = format!("node={} addr={}", b.id, b.addr);
    api.node
        .add_learner(b.id, b.addr)
        .await
        .map_err(membership_problem)?;
    record_done(&api, &caller, "add_learner", detail).await;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// The body of `POST /v1/cluster/members`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// The learner to promote.
    #[serde(deserialize_with = "keel_domain::whole::u64")]
    #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    id: u64,
}

/// Promote a learner to voter (on the leader).
#[utoipa::path(
    post, path = "/v1/cluster/members", tag = "cluster",
    description = "On the leader only (503 `not_leader` elsewhere).",
    request_body = MemberBody,
    responses((status = 200, description = "The cluster", body = ClusterStatus), MembershipProblems),
    security(("bearer" = [])),
)]
pub async fn promote(
    State(api): Shared,
    caller: Caller,
    Body(b): Body<MemberBody>,
) -> Result<Response, Problem> {
    api.node.promote(b.id).await.map_err(membership_problem)?;
    record_done(&api, &caller, "promote", format!("node={}", b.id)).await;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// The query of `DELETE /v1/cluster/members/{id}`.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// Remove even though the voters left could not survive one more
    /// failure (409 `membership_at_risk` without it).
    force: Option<bool>,
}

/// Remove a member; refused when the rest would have no healthy quorum,
/// and, without `force`, when they could not survive one more failure.
#[utoipa::path(
    delete, path = "/v1/cluster/members/{id}", tag = "cluster",
    description = "On the leader only (503 `not_leader` elsewhere). 409 \
                   `membership_at_risk` when the voters left could not survive \
                   one more failure, unless `force=true`.",
    params(("id" = u64, Path, minimum = 0, maximum = 18_446_744_073_709_551_615_u64), RemoveParams),
    responses((status = 200, description = "The cluster", body = ClusterStatus), MembershipProblems),
    security(("bearer" = [])),
)]
pub async fn remove(
    State(api): Shared,
    caller: Caller,
    PathParams(id): PathParams<u64>,
    QueryParams(q): QueryParams<RemoveParams>,
) -> Result<Response, Problem> {
    let force = q.force.unwrap_or(false);
    api.node
        .remove(id, force)
        .await
        .map_err(membership_problem)?;
    let detail = format!("node={id}{}", if force { " force" } else { "" });
    record_done(&api, &caller, "remove_member", detail).await;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// The body of `POST /v1/cluster/leader`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderBody {
    /// The voter to hand leadership to; by default the one holding most of
    /// the log.
    #[serde(default, deserialize_with = "keel_domain::whole::option_u64")]
    #[schema(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    to: Option<u64>,
}

/// Hand leadership to another voter (on the leader), for maintenance:
/// writes pause for the hand-over and are not refused.
#[utoipa::path(
    post, path = "/v1/cluster/leader", tag = "cluster",
    description = "On the leader only (503 `not_leader` elsewhere). The leader \
                   stops proposing, waits until the successor holds its whole log \
                   and asks it to stand; writes arriving meanwhile wait and then \
                   go to the new leader. 409 `transfer_refused` for a successor \
                   that cannot lead, 503 `transfer_failed` when the hand-over did \
                   not finish in time.",
    request_body = LeaderBody,
    responses(
        (status = 200, description = "The transfer", body = Transfer),
        (status = 409, description = "Problem: transfer_refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        MembershipProblems,
    ),
    security(("bearer" = [])),
)]
pub async fn transfer_leader(
    State(api): Shared,
    caller: Caller,
    Body(b): Body<LeaderBody>,
) -> Result<Response, Problem> {
    let t = api.node.transfer_leader(b.to).await.map_err(|e| match e {
        TransferError::NotLeader(l) => not_leader(l, "leadership transfers"),
        TransferError::Refused(m) => Problem::new(
            StatusCode::CONFLICT,
            "transfer_refused",
            "Leadership transfer refused",
            m,
        ),
        TransferError::Failed(m) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transfer_failed",
            "Leadership transfer did not finish",
            m,
        ),
    })?;
    let detail = format!("from={} to={} paused_ms={}", t.from, t.to, t.paused_ms);
    record_done(&api, &caller, "transfer_leader", detail).await;
    Ok(Json(json!(t)).into_response())
}

/// Snapshot this node's state now and purge its log up to the snapshot.
#[utoipa::path(
    post, path = "/v1/cluster/compact", tag = "cluster",
    description = "409 `nothing_to_compact` before anything was applied.",
    responses(
        (status = 200, description = "What was compacted", body = Compaction),
        (status = 409, description = "Problem: nothing_to_compact", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        AdminProblems,
    ),
    security(("bearer" = [])),
)]
pub async fn compact(State(api): Shared, caller: Caller) -> Result<Response, Problem> {
    match api.node.compact().await {
        Ok(c) => {
            record_done(&api, &caller, "compact", format!("node={}", api.node.id())).await;
            Ok(Json(json!(c)).into_response())
        }
        Err(e @ CompactError::NothingApplied) => Err(Problem::new(
            StatusCode::CONFLICT,
            "nothing_to_compact",
            "Nothing to compact",
            e.to_string(),
        )),
        Err(e @ CompactError::Unavailable(_)) => Err(Problem::unavailable(e.to_string())),
    }
}
