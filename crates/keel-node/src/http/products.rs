//! `/v1/products`: the catalogue and its stock.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use keel_domain::{Command, Currency, Minor, ProductName, Sku};

use crate::http::auth::Api;
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{consistency, parse_sku, Body, ReadParams};
use crate::http::read::with_applied_index;
use crate::http::submit::{admin_write, ProductView};

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/products`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductBody {
    sku: Sku,
    name: ProductName,
    price: Minor,
    currency: Currency,
    #[serde(default = "yes")]
    active: bool,
}
fn yes() -> bool {
    true
}

/// `POST /v1/products`: create or update a product.
pub async fn upsert(State(api): Shared, h: HeaderMap, Body(b): Body<ProductBody>) -> Response {
    admin_write(&api, &h, false, || {
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

/// `GET /v1/products`: a page of the catalogue.
pub async fn list(State(api): Shared, Query(q): Query<ReadParams>) -> Result<Response, Problem> {
    let c = consistency(&q)?;
    let read = api
        .node
        .list_products(c, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    let items: Vec<ProductView<'_>> = read.value.items.iter().map(ProductView::of).collect();
    let resp = Json(json!({"items": items, "next_cursor": read.value.next_cursor}));
    Ok(with_applied_index(resp.into_response(), read.applied_index))
}

/// `GET /v1/products/{sku}`: one product with its available stock.
pub async fn get(
    State(api): Shared,
    Path(sku): Path<String>,
    Query(q): Query<ReadParams>,
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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QtyBody {
    qty: u64,
}

/// `POST /v1/products/{sku}/restock`: add stock.
pub async fn restock(
    State(api): Shared,
    Path(sku): Path<String>,
    h: HeaderMap,
    Body(b): Body<QtyBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::Restock {
            sku: parse_sku(&sku)?,
            qty: b.qty,
        })
    })
    .await
}

/// The body of `PUT /v1/products/{sku}/stock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockBody {
    on_hand: u64,
}

/// `PUT /v1/products/{sku}/stock`: set stock, refused below reserved.
pub async fn set_stock(
    State(api): Shared,
    Path(sku): Path<String>,
    h: HeaderMap,
    Body(b): Body<StockBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::SetStock {
            sku: parse_sku(&sku)?,
            on_hand: b.on_hand,
        })
    })
    .await
}
