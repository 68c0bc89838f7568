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
use keel_domain::{Account, AccountId, AccountKind, Command, Currency, Minor, Order, Outcome};

use crate::http::auth::{Api, Caller};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{
    consistency, parse_account, Body, ConsistencyParam, IdempotencyKey, PageParams, PathParams,
    QueryParams, ReadParams,
};
use crate::http::openapi::{ReadProblems, WriteProblems};
use crate::http::read::answer;
use crate::http::submit::{applied_response, build_write, submit};

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
pub async fn open(
    State(api): Shared,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<AccountBody>,
) -> Response {
    build_write(&api, &h, &caller, true, || {
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
    caller: Caller,
    Body(b): Body<AmountBody>,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        Ok(Command::Deposit {
            account: parse_account(&id)?,
            amount: b.amount,
        })
    })
    .await
}

/// The account named in the path, once the caller is shown to be its
/// owner or staff.
fn owned_account(caller: &Caller, id: &str) -> Result<AccountId, Problem> {
    let id = parse_account(id)?;
    caller.owner_or_staff(&id)?;
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
    caller: Caller,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let id = owned_account(&caller, &id)?;
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
    /// State time (ms since the Unix epoch) from which it is refused.
    pub expires_at_ms: u64,
}

/// The query of `POST /v1/accounts/{id}/token`.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenParams {
    /// Lifetime in seconds, 1 to 31536000 (365 days; default 30 days).
    #[param(minimum = 1, maximum = 31_536_000)]
    ttl_seconds: Option<u32>,
}

/// Issue a customer's bearer token: any node checks it without shared
/// state, until it expires or the account's tokens are revoked.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/token", tag = "accounts",
    description = "Recorded in the audit trail. The token names the account's \
                   token generation; `DELETE` on this path revokes every token \
                   issued so far.",
    params(("id" = AccountId, Path), TokenParams, IdempotencyKey),
    responses((status = 200, description = "The token", body = CustomerToken), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn token(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
    QueryParams(q): QueryParams<TokenParams>,
) -> Result<Response, Problem> {
    let command = Command::IssueCustomerToken {
        account: parse_account(&id)?,
        ttl_seconds: q.ttl_seconds,
    };
    let applied = submit(&api, &h, &caller, command).await?;
    match &applied.result {
        Ok(Outcome::CustomerToken {
            account,
            generation,
            expires_at_ms,
        }) => Ok(Json(CustomerToken {
            account: account.clone(),
            token: api.customer_token(account, *generation, *expires_at_ms),
            expires_at_ms: *expires_at_ms,
        })
        .into_response()),
        _ => Ok(applied_response(&applied, false)),
    }
}

/// What revoking a customer's tokens left.
#[derive(Serialize, ToSchema)]
pub struct TokensRevoked {
    /// The account.
    pub account: AccountId,
    /// Its new token generation: tokens of older ones are refused.
    pub generation: u32,
}

/// Revoke every token issued to a customer so far.
#[utoipa::path(
    delete, path = "/v1/accounts/{id}/token", tag = "accounts",
    description = "Every node refuses the older tokens once it has applied \
                   the revocation; every write with one is refused from the \
                   revocation's log position on. Recorded in the audit trail.",
    params(("id" = AccountId, Path), IdempotencyKey),
    responses((status = 200, description = "The new generation", body = TokensRevoked), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn revoke_tokens(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        Ok(Command::RevokeCustomerTokens {
            account: parse_account(&id)?,
        })
    })
    .await
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
    caller: Caller,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let id = owned_account(&caller, &id)?;
    let c = consistency(&q)?;
    let read = api
        .node
        .customer_orders(c, &id, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    Ok(answer(&read))
}
