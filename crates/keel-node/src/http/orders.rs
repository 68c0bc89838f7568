//! `/v1/orders`: placing orders, reading them and moving them through
//! their lifecycle.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use keel_domain::{AccountId, Command, LineRequest};

use crate::http::auth::{authed, owner_or_admin, Api};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{consistency, parse_order, Body, ReadParams};
use crate::http::read::answer;
use crate::http::submit::write;

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/orders`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceBody {
    customer: AccountId,
    lines: Vec<LineRequest>,
    ttl_seconds: Option<u32>,
}

/// `POST /v1/orders`: reserve stock and create a `reserved` order.
pub async fn place(State(api): Shared, h: HeaderMap, Body(b): Body<PlaceBody>) -> Response {
    let p = match authed(&api, &h) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let cmd = Command::PlaceOrder {
        customer: b.customer,
        lines: b.lines,
        ttl_seconds: b.ttl_seconds,
    };
    write(&api, &h, p, cmd, true).await
}

/// `GET /v1/orders/{id}`: one order.
pub async fn get(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = parse_order(&id)?;
    let p = authed(&api, &h)?;
    let c = consistency(&q)?;
    let read = api.node.read_order(c, id).await.map_err(read_problem)?;
    let o = read
        .value
        .as_ref()
        .ok_or_else(|| Problem::not_found(format!("order {id} not found")))?;
    owner_or_admin(&p, &o.customer)?;
    Ok(answer(&read))
}

/// The body of `POST /v1/orders/{id}/refund` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[serde(default)]
    restock: bool,
}

/// `POST /v1/orders/{id}/{action}`: pay, cancel, ship, deliver or refund.
pub async fn transition(
    State(api): Shared,
    Path((id, action)): Path<(String, String)>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let cmd = (|| {
        let p = authed(&api, &h)?;
        let order = parse_order(&id)?;
        let cmd = match action.as_str() {
            "pay" => Command::PayOrder { order },
            "cancel" => Command::CancelOrder { order },
            "ship" => Command::ShipOrder { order },
            "deliver" => Command::DeliverOrder { order },
            "refund" => {
                let b: RefundBody = if body.is_empty() {
                    RefundBody::default()
                } else {
                    serde_json::from_slice(&body)
                        .map_err(|e| Problem::validation("body", e.to_string()))?
                };
                Command::RefundOrder {
                    order,
                    restock: b.restock,
                }
            }
            other => return Err(Problem::not_found(format!("no order action {other:?}"))),
        };
        Ok((p, cmd))
    })();
    match cmd {
        Ok((p, cmd)) => write(&api, &h, p, cmd, false).await,
        Err(p) => p.into_response(),
    }
}
