//! The public router: the one module that names every handler, with the
//! middleware every answer goes through (leader hints, request metrics)
//! and the body limit.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use keel_protocol::header;

use crate::http::auth::Api;
use crate::http::errors::Problem;
use crate::http::extract::BODY_BYTES_MAX;
use crate::http::{accounts, backup, batch, cluster, openapi, ops, orders, products};

async fn openapi_json() -> Response {
    Json(openapi::spec()).into_response()
}

async fn fallback() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

/// Adds the leader hint to every answer and counts it by route and status.
async fn track(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let start = Instant::now();
    let mut resp = next.run(req).await;
    if let Some((id, addr)) = api.node.leader() {
        if let Ok(v) = HeaderValue::from_str(&header::leader_hint(id, &addr)) {
            resp.headers_mut().insert(header::LEADER, v);
        }
        resp.headers_mut()
            .insert(header::TERM, HeaderValue::from(api.node.term()));
    }
    api.node
        .observe_request(route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// The public router.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/products", post(products::upsert).get(products::list))
        .route("/v1/products/{sku}", get(products::get))
        .route("/v1/products/{sku}/restock", post(products::restock))
        .route("/v1/products/{sku}/stock", put(products::set_stock))
        .route("/v1/accounts", post(accounts::open))
        .route("/v1/accounts/{id}", get(accounts::get))
        .route("/v1/accounts/{id}/deposits", post(accounts::deposit))
        .route("/v1/accounts/{id}/token", post(accounts::token))
        .route("/v1/accounts/{id}/orders", get(accounts::orders))
        .route("/v1/orders", post(orders::place))
        .route("/v1/orders/{id}", get(orders::get))
        .route("/v1/orders/{id}/{action}", post(orders::transition))
        .route("/v1/batch", post(batch::batch))
        .route("/v1/summary", get(ops::summary))
        .route("/v1/digest", get(ops::digest))
        .route("/v1/clock", get(ops::clock))
        .route("/v1/backup/snapshot", get(backup::snapshot))
        .route("/v1/backup/log", get(backup::log))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/learners", post(cluster::add_learner))
        .route("/v1/cluster/members", post(cluster::promote))
        .route("/v1/cluster/members/{id}", delete(cluster::remove))
        .route("/v1/cluster/compact", post(cluster::compact))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(api.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(api)
}
