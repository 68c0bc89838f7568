//! What operators and monitors read: liveness and readiness, metrics, the
//! conservation summary, the state digest and the node's clock.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::auth::{admin, Api};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{consistency, ReadParams};
use crate::http::read::answer;

/// Largest applied-index lag at which `/readyz` still says ready.
pub const READY_LAG_MAX: u64 = 1_000;

type Shared = State<Arc<Api>>;

/// `GET /v1/summary`: counts and totals for conservation checks.
pub async fn summary(
    State(api): Shared,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let c = consistency(&q)?;
    let read = api.node.summary(c).await.map_err(read_problem)?;
    Ok(answer(&read))
}

/// `GET /v1/clock`: this node's wall clock and what it knows of its peers',
/// so an operator (or the chaos suite's clock nemesis) can see a skew and
/// why a node does not lead.
pub async fn clock(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    Ok(Json(api.node.clock_status()).into_response())
}

/// `GET /v1/digest`: this replica's state digest at its applied index.
pub async fn digest(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let d = api.node.digest().await.map_err(read_problem)?;
    Ok(Json(d).into_response())
}

/// `GET /healthz`: alive.
pub async fn healthz(State(api): Shared) -> Response {
    Json(json!({"status": "alive", "node_id": api.node.id()})).into_response()
}

/// `GET /readyz`: has a leader and has applied its log (503 otherwise).
pub async fn readyz(State(api): Shared) -> Response {
    let s = api.node.self_status();
    let lag = s
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(s.applied_index.unwrap_or(0));
    if s.leader_id.is_some() && lag <= READY_LAG_MAX {
        Json(json!({"status": "ready", "node_id": s.id, "leader_id": s.leader_id, "lag": lag}))
            .into_response()
    } else {
        Problem::unavailable(format!(
            "not ready: leader {:?}, apply lag {lag}",
            s.leader_id
        ))
        .into_response()
    }
}

/// `GET /metrics`: Prometheus' text format.
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
