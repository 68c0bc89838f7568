//! `/v1/orders`: placing orders, reading them and moving them through
//! their lifecycle.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use keel_domain::{AccountId, Command, LineRequest, Order, OrderId};

use crate::http::auth::{Api, Caller};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{
    consistency, parse_order, Body, ConsistencyParam, IdempotencyKey, PathParams, QueryParams,
    ReadParams,
};
use crate::http::openapi::{ReadProblems, WriteProblems};
use crate::http::read::answer;
use crate::http::submit::write;

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/orders`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceBody {
    /// The buying customer (a customer's token may name only itself).
    customer: AccountId,
    /// 1 to 100 lines.
    #[schema(value_type = Vec<PlaceLine>, min_items = 1, max_items = 100)]
    lines: Vec<LineRequest>,
    /// Reservation lifetime in seconds, 1 to 604800 (default 900).
    #[serde(default, deserialize_with = "keel_domain::whole::option_u32")]
    #[schema(minimum = 1, maximum = 604_800)]
    ttl_seconds: Option<u32>,
}

/// One line of `POST /v1/orders` (documentation only: the body reads a
/// [`LineRequest`], whose schema states the type's range, which a batch
/// answers per command; an order's own request is refused whole).
#[derive(ToSchema)]
#[allow(dead_code)] // Read by the schema derive only.
pub struct PlaceLine {
    sku: keel_domain::Sku,
    /// Units, 1 to 10,000.
    #[schema(minimum = 1, maximum = 10_000)]
    qty: u64,
}

/// Reserve every line's units, all or none, and create a `reserved` order.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    description = "409 `out_of_stock` lists the short lines; \\
                   nothing is reserved then.",
    params(IdempotencyKey),
    request_body = PlaceBody,
    responses((status = 201, description = "The order", body = Order), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn place(
    State(api): Shared,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<PlaceBody>,
) -> Response {
    let cmd = Command::PlaceOrder {
        customer: b.customer,
        lines: b.lines,
        ttl_seconds: b.ttl_seconds,
    };
    write(&api, &h, &caller, cmd, true).await
}

/// One order.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = OrderId, Path), ConsistencyParam),
    responses((status = 200, description = "The order", body = Order), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn get(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    caller: Caller,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let id = parse_order(&id)?;
    let c = consistency(&q)?;
    let read = api.node.read_order(c, id).await.map_err(read_problem)?;
    let o = read
        .value
        .as_ref()
        .ok_or_else(|| Problem::not_found(format!("order {id} not found")))?;
    caller.owner_or_staff(&o.customer)?;
    Ok(answer(&read))
}

/// Moves order `id` on by the command `build` makes of it, once the caller
/// is known; the state machine checks the status and who may do it.
async fn transition(
    api: &Api,
    id: &str,
    h: &HeaderMap,
    caller: &Caller,
    build: impl FnOnce(OrderId) -> Result<Command, Problem>,
) -> Response {
    match parse_order(id).and_then(build) {
        Ok(cmd) => write(api, h, caller, cmd, false).await,
        Err(p) => p.into_response(),
    }
}

/// A transition route whose command is the order id alone: its contract
/// and its handler, which differ only in path, description and command
/// (their roles are in [`crate::http::roles::ROUTE_ROLES`]).
macro_rules! transition_route {
    ($(#[$doc:meta])* $name:ident, $path:literal, $desc:literal, $cmd:ident) => {
        $(#[$doc])*
        #[utoipa::path(
            post, path = $path, tag = "orders",
            description = $desc,
            params(("id" = OrderId, Path), IdempotencyKey),
            responses((status = 200, description = "The order", body = Order), WriteProblems),
            security(("bearer" = [])),
        )]
        pub async fn $name(
            State(api): Shared,
            PathParams(id): PathParams<String>,
            h: HeaderMap,
            caller: Caller,
        ) -> Response {
            transition(&api, &id, &h, &caller, |order| Ok(Command::$cmd { order })).await
        }
    };
}

transition_route!(
    /// Pay a reserved order: customer to merchant; the reserved units are sold.
    pay,
    "/v1/orders/{id}/pay",
    "409 `insufficient_funds` or `invalid_transition`.",
    PayOrder
);
transition_route!(
    /// Cancel a reserved order and release its units.
    cancel,
    "/v1/orders/{id}/cancel",
    "",
    CancelOrder
);
transition_route!(
    /// Mark a paid order shipped.
    ship,
    "/v1/orders/{id}/ship",
    "",
    ShipOrder
);
transition_route!(
    /// Mark a shipped order delivered.
    deliver,
    "/v1/orders/{id}/deliver",
    "",
    DeliverOrder
);

/// The body of `POST /v1/orders/{id}/refund` (optional: no body is
/// `{"restock": false}`).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Return the units to stock.
    #[serde(default)]
    #[schema(default = false)]
    restock: bool,
}

/// The optional refund body, read whatever its content type (as before
/// the route was annotated).
fn refund_body(body: Result<Bytes, BytesRejection>) -> Result<RefundBody, Problem> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::payload_too_large()
        } else {
            Problem::validation("body", e.body_text())
        }
    })?;
    if body.is_empty() {
        return Ok(RefundBody::default());
    }
    // JSON `null` is no options, as no body is.
    serde_json::from_slice::<Option<RefundBody>>(&body)
        .map(Option::unwrap_or_default)
        .map_err(|e| Problem::validation("body", e.to_string()))
}

/// Return a paid or shipped order's money; optionally its units to stock.
#[utoipa::path(
    post, path = "/v1/orders/{id}/refund", tag = "orders",
    params(("id" = OrderId, Path), IdempotencyKey),
    request_body(content = Option<RefundBody>, description = "Optional"),
    responses((status = 200, description = "The order", body = Order), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn refund(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    transition(&api, &id, &h, &caller, |order| {
        let b = refund_body(body)?;
        Ok(Command::RefundOrder {
            order,
            restock: b.restock,
        })
    })
    .await
}
