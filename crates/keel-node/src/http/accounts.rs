//! `/v1/accounts`: accounts, deposits, customer tokens and a customer's
//! orders.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use keel_domain::{AccountId, AccountKind, Command, Currency, Minor};

use crate::http::auth::{admin, authed, owner_or_admin, Api};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{consistency, parse_account, Body, ReadParams};
use crate::http::read::answer;
use crate::http::submit::admin_write;

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/accounts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    id: AccountId,
    kind: AccountKind,
    currency: Currency,
}

/// `POST /v1/accounts`: open an account.
pub async fn open(State(api): Shared, h: HeaderMap, Body(b): Body<AccountBody>) -> Response {
    admin_write(&api, &h, true, || {
        Ok(Command::OpenAccount {
            id: b.id,
            kind: b.kind,
            currency: b.currency,
        })
    })
    .await
}

/// The body of `POST /v1/accounts/{id}/deposits`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountBody {
    amount: Minor,
}

/// `POST /v1/accounts/{id}/deposits`: credit from the external account.
pub async fn deposit(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Body(b): Body<AmountBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::Deposit {
            account: parse_account(&id)?,
            amount: b.amount,
        })
    })
    .await
}

/// The account named in the path, once the caller is shown to be its
/// owner or an admin.
fn owned_account(api: &Api, h: &HeaderMap, id: &str) -> Result<AccountId, Problem> {
    let id = parse_account(id)?;
    owner_or_admin(&authed(api, h)?, &id)?;
    Ok(id)
}

/// `GET /v1/accounts/{id}`: the account with its balance.
pub async fn get(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = owned_account(&api, &h, &id)?;
    let c = consistency(&q)?;
    let read = api.node.read_account(c, &id).await.map_err(read_problem)?;
    if read.value.is_none() {
        return Err(Problem::not_found(format!("account {id} not found")));
    }
    Ok(answer(&read))
}

/// `POST /v1/accounts/{id}/token`: the customer's bearer token.
pub async fn token(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let id = parse_account(&id)?;
    Ok(Json(json!({"account": id, "token": api.customer_token(&id)})).into_response())
}

/// `GET /v1/accounts/{id}/orders`: a customer's orders, newest first.
pub async fn orders(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = owned_account(&api, &h, &id)?;
    let c = consistency(&q)?;
    let read = api
        .node
        .customer_orders(c, &id, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    Ok(answer(&read))
}
