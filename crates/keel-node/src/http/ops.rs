//! What operators and monitors read: liveness and readiness, metrics, the
//! conservation summary, the state digest and the node's clock.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use keel_domain::Summary;
use keel_store::NodeId;

use crate::http::auth::Api;
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{consistency, ConsistencyParam, QueryParams, ReadParams};
use crate::http::openapi::{AdminProblems, ReadProblems, Unavailable};
use crate::http::read::answer;
use crate::node::{ClockStatus, StateDigest};

/// Largest applied-index lag at which `/readyz` still says ready.
pub const READY_LAG_MAX: u64 = 1_000;

type Shared = State<Arc<Api>>;

/// Counts and totals for conservation checks.
#[utoipa::path(
    get, path = "/v1/summary", tag = "ops",
    params(ConsistencyParam),
    responses((status = 200, description = "The summary", body = Summary), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn summary(
    State(api): Shared,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let c = consistency(&q)?;
    let read = api.node.summary(c).await.map_err(read_problem)?;
    Ok(answer(&read))
}

/// The alerts this node's detectors opened: those open now and the latest
/// that ended, newest first. Each node judges its own series (its API's
/// latency and errors, its disk, its fsyncs, its clock, its view of the
/// other members; the shop's rates on the leader).
#[utoipa::path(
    get, path = "/v1/alerts", tag = "ops",
    responses((status = 200, description = "The alerts", body = keel_alert::AlertsResponse), AdminProblems),
    security(("bearer" = [])),
)]
pub async fn alerts(State(api): Shared) -> Result<Response, Problem> {
    Ok(Json(api.node.alerts()).into_response())
}

/// This node's wall clock, its peers' offsets, and whether its clock may
/// lead: so an operator (or the chaos suite's clock nemesis) can see a skew
/// and why a node does not lead.
#[utoipa::path(
    get, path = "/v1/clock", tag = "ops",
    responses((status = 200, description = "The clock", body = ClockStatus), AdminProblems),
    security(("bearer" = [])),
)]
pub async fn clock(State(api): Shared) -> Result<Response, Problem> {
    Ok(Json(api.node.clock_status()).into_response())
}

/// This replica's state digest at its applied index.
#[utoipa::path(
    get, path = "/v1/digest", tag = "ops",
    responses((status = 200, description = "The digest", body = StateDigest), AdminProblems),
    security(("bearer" = [])),
)]
pub async fn digest(State(api): Shared) -> Result<Response, Problem> {
    let d = api.node.digest().await.map_err(read_problem)?;
    Ok(Json(d).into_response())
}

/// `/healthz`: the process answers.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `alive`.
    #[schema(pattern = "^alive$")]
    pub status: &'static str,
    /// The answering node.
    pub node_id: NodeId,
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)),
)]
pub async fn healthz(State(api): Shared) -> Response {
    Json(Health {
        status: "alive",
        node_id: api.node.id(),
    })
    .into_response()
}

/// `/readyz`: the node knows a leader and has applied its log.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    #[schema(pattern = "^ready$")]
    pub status: &'static str,
    /// The answering node.
    pub node_id: NodeId,
    /// The leader it knows.
    pub leader_id: Option<NodeId>,
    /// Its last log index minus its applied index.
    pub lag: u64,
}

/// Readiness: has a leader and has applied its log (503 otherwise).
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Ready), Unavailable),
)]
pub async fn readyz(State(api): Shared) -> Response {
    let s = api.node.self_status();
    let lag = s
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(s.applied_index.unwrap_or(0));
    if s.leader_id.is_some() && lag <= READY_LAG_MAX {
        Json(Ready {
            status: "ready",
            node_id: s.id,
            leader_id: s.leader_id,
            lag,
        })
        .into_response()
    } else {
        Problem::unavailable(format!(
            "not ready: leader {:?}, apply lag {lag}",
            s.leader_id
        ))
        .into_response()
    }
}

/// Prometheus metrics, in its text format.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(api): Shared) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        api.node.render_metrics(),
    )
        .into_response()
}
