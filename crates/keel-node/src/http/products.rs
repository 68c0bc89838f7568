//! `/v1/products`: the catalogue and its stock.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use keel_domain::query::Page;
use keel_domain::{Command, Currency, Minor, ProductName, Sku};

use crate::http::auth::{Api, Caller};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{
    consistency, parse_sku, Body, ConsistencyParam, IdempotencyKey, PageParams, PathParams,
    QueryParams, ReadParams,
};
use crate::http::openapi::{PublicReadProblems, WriteProblems};
use crate::http::read::with_applied_index;
use crate::http::submit::{build_write, ProductView};

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/products`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductBody {
    sku: Sku,
    name: ProductName,
    /// Unit price in minor units, 1 to 10^12.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    price: Minor,
    currency: Currency,
    /// Whether it can be ordered (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    active: bool,
}
fn yes() -> bool {
    true
}

/// Create or update a product.
#[utoipa::path(
    post, path = "/v1/products", tag = "products",
    description = "A product's currency cannot change while units are reserved.",
    params(IdempotencyKey),
    request_body = ProductBody,
    responses((status = 200, description = "The product", body = ProductView), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn upsert(
    State(api): Shared,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<ProductBody>,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        Ok(Command::UpsertProduct {
            sku: b.sku,
            name: b.name,
            price: b.price,
            currency: b.currency,
            active: b.active,
        })
    })
    .await
}

/// The catalogue in SKU order, with available stock.
#[utoipa::path(
    get, path = "/v1/products", tag = "products",
    params(ConsistencyParam, PageParams),
    responses((status = 200, description = "A page of products", body = Page<ProductView>), PublicReadProblems),
)]
pub async fn list(
    State(api): Shared,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let c = consistency(&q)?;
    let read = api
        .node
        .list_products(c, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    let page = Page {
        items: read.value.items.iter().map(ProductView::of).collect(),
        next_cursor: read.value.next_cursor,
    };
    Ok(with_applied_index(
        Json(page).into_response(),
        read.applied_index,
    ))
}

/// One product with its available stock.
#[utoipa::path(
    get, path = "/v1/products/{sku}", tag = "products",
    params(("sku" = Sku, Path), ConsistencyParam),
    responses((status = 200, description = "The product", body = ProductView), PublicReadProblems),
)]
pub async fn get(
    State(api): Shared,
    PathParams(sku): PathParams<String>,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let sku = parse_sku(&sku)?;
    let c = consistency(&q)?;
    let read = api.node.read_product(c, &sku).await.map_err(read_problem)?;
    let p = read
        .value
        .as_ref()
        .ok_or_else(|| Problem::not_found(format!("product {sku} not found")))?;
    Ok(with_applied_index(
        Json(ProductView::of(p)).into_response(),
        read.applied_index,
    ))
}

/// The body of `POST /v1/products/{sku}/restock`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QtyBody {
    /// Units to add, 1 to 10^12.
    #[serde(deserialize_with = "keel_domain::whole::u64")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    qty: u64,
}

/// Add stock.
#[utoipa::path(
    post, path = "/v1/products/{sku}/restock", tag = "products",
    params(("sku" = Sku, Path), IdempotencyKey),
    request_body = QtyBody,
    responses((status = 200, description = "The product", body = ProductView), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn restock(
    State(api): Shared,
    PathParams(sku): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<QtyBody>,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        Ok(Command::Restock {
            sku: parse_sku(&sku)?,
            qty: b.qty,
        })
    })
    .await
}

/// The body of `PUT /v1/products/{sku}/stock`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockBody {
    /// The counted units, 0 to 10^12.
    #[serde(deserialize_with = "keel_domain::whole::u64")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    on_hand: u64,
}

/// Set stock to a counted number; refused below what is reserved.
#[utoipa::path(
    put, path = "/v1/products/{sku}/stock", tag = "products",
    description = "409 `below_reserved` below the reserved units.",
    params(("sku" = Sku, Path), IdempotencyKey),
    request_body = StockBody,
    responses((status = 200, description = "The product", body = ProductView), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn set_stock(
    State(api): Shared,
    PathParams(sku): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<StockBody>,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        Ok(Command::SetStock {
            sku: parse_sku(&sku)?,
            on_hand: b.on_hand,
        })
    })
    .await
}
