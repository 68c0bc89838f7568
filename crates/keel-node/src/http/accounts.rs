//! `/v1/accounts`: accounts, deposits, customer tokens and a customer's
//! orders.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_domain::query::Page;
use keel_domain::{Account, AccountId, AccountKind, Command, Currency, Minor, Order};

use crate::http::auth::{admin, authed, owner_or_admin, Api};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{
    consistency, parse_account, Body, ConsistencyParam, IdempotencyKey, PageParams, PathParams,
    QueryParams, ReadParams,
};
use crate::http::openapi::{AdminPathProblems, ReadProblems, WriteProblems};
use crate::http::read::answer;
use crate::http::submit::admin_write;

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/accounts`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    id: AccountId,
    kind: AccountKind,
    currency: Currency,
}

/// Open an account with a zero balance.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    description = "One merchant and one external account per currency.",
    params(IdempotencyKey),
    request_body = AccountBody,
    responses((status = 201, description = "The account", body = Account), WriteProblems),
    security(("bearer" = [])),
)]
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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountBody {
    /// Minor units, 1 to 10^15.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    amount: Minor,
}

/// Credit an account from its currency's external account.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/deposits", tag = "accounts",
    description = "Credits customer or merchant accounts, not the external one.",
    params(("id" = AccountId, Path), IdempotencyKey),
    request_body = AmountBody,
    responses((status = 200, description = "The account", body = Account), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn deposit(
    State(api): Shared,
    PathParams(id): PathParams<String>,
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

/// The account with its balance.
#[utoipa::path(
    get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = AccountId, Path), ConsistencyParam),
    responses((status = 200, description = "The account", body = Account), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn get(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let id = owned_account(&api, &h, &id)?;
    let c = consistency(&q)?;
    let read = api.node.read_account(c, &id).await.map_err(read_problem)?;
    if read.value.is_none() {
        return Err(Problem::not_found(format!("account {id} not found")));
    }
    Ok(answer(&read))
}

/// A customer's bearer token.
#[derive(Serialize, ToSchema)]
pub struct CustomerToken {
    /// The account it speaks for.
    pub account: AccountId,
    /// `Authorization: Bearer {token}`.
    pub token: String,
}

/// Issue the customer's bearer token (any node can check it).
#[utoipa::path(
    post, path = "/v1/accounts/{id}/token", tag = "accounts",
    description = "The token is derived from the cluster secret, so it needs \
                   no write and the account need not exist yet.",
    params(("id" = AccountId, Path)),
    responses((status = 200, description = "The token", body = CustomerToken), AdminPathProblems),
    security(("bearer" = [])),
)]
pub async fn token(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let id = parse_account(&id)?;
    let token = api.customer_token(&id);
    Ok(Json(CustomerToken { account: id, token }).into_response())
}

/// A customer's orders, newest first.
#[utoipa::path(
    get, path = "/v1/accounts/{id}/orders", tag = "accounts",
    params(("id" = AccountId, Path), ConsistencyParam, PageParams),
    responses((status = 200, description = "A page of orders", body = Page<Order>), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn orders(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    QueryParams(q): QueryParams<ReadParams>,
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
