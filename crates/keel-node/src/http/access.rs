//! `/v1/keys`, `/v1/audit` and `/v1/whoami`: API keys with roles, the
//! replicated audit trail, and who a credential stands for.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_domain::identity::{secret_hash, KEY_TTL_MAX_S};
use keel_domain::query::Page;
use keel_domain::{AccountId, AuditRecord, Command, KeyId, KeyInfo, Outcome, Principal, Role};
use keel_protocol::hex;

use crate::http::auth::{key_token, Api, Caller};
use crate::http::errors::{read_problem, Problem};
use crate::http::extract::{
    consistency, Body, ConsistencyParam, IdempotencyKey, PageParams, PathParams, QueryParams,
    ReadParams,
};
use crate::http::openapi::{ReadProblems, WriteProblems};
use crate::http::read::answer;
use crate::http::submit::{applied_response, build_write, submit};

type Shared = State<Arc<Api>>;

/// Random bytes in a key's id (hex, after `k-`): not secret, only unique.
const KEY_ID_BYTES: usize = 8;
/// Random bytes in a key's secret (hex): 256 bits.
const KEY_SECRET_BYTES: usize = 32;

fn random_hex(n: usize) -> Result<String, Problem> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Problem::internal(format!("the system's random source failed: {e}")))?;
    Ok(hex::encode(&bytes))
}

/// The body of `POST /v1/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// What the key is for: 1 to 100 characters, no control character.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    name: String,
    /// What it may do.
    role: Role,
    /// For the `customer` role: the account it acts for.
    account: Option<AccountId>,
    /// Lifetime in seconds (up to 5 years); none never expires.
    #[serde(default, deserialize_with = "keel_domain::whole::option_u64")]
    #[schema(minimum = 1, maximum = 157_680_000)]
    ttl_seconds: Option<u64>,
}

/// A new key and its token, shown once.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key.
    pub key: KeyInfo,
    /// `Authorization: Bearer {token}`. Only its hash is stored: it cannot
    /// be shown again.
    pub token: String,
}

/// Create an API key with a role; its token is shown once.
#[utoipa::path(
    post, path = "/v1/keys", tag = "access",
    description = "The node draws the key's id and secret; the replicated \
                   state holds the secret's hash only. Recorded in the audit \
                   trail. A retry with the same Idempotency-Key is refused \
                   (409 `idempotency_conflict`): the secret is new each time.",
    params(IdempotencyKey),
    request_body = KeyBody,
    responses((status = 201, description = "The key and its token", body = CreatedKey), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn create(
    State(api): Shared,
    h: HeaderMap,
    caller: Caller,
    Body(b): Body<KeyBody>,
) -> Result<Response, Problem> {
    if b.ttl_seconds.is_some_and(|t| t == 0 || t > KEY_TTL_MAX_S) {
        return Err(Problem::validation(
            "ttl_seconds",
            format!("must be 1 to {KEY_TTL_MAX_S}"),
        ));
    }
    let id = KeyId::new(format!("k-{}", random_hex(KEY_ID_BYTES)?))
        .map_err(|e| Problem::internal(e.to_string()))?;
    let secret = random_hex(KEY_SECRET_BYTES)?;
    let command = Command::CreateKey {
        id: id.clone(),
        name: b.name,
        role: b.role,
        account: b.account,
        secret_hash: secret_hash(&secret),
        ttl_seconds: b.ttl_seconds,
    };
    let applied = submit(&api, &h, &caller, command).await?;
    match &applied.result {
        Ok(Outcome::KeyCreated(key)) if !applied.replayed => Ok((
            axum::http::StatusCode::CREATED,
            Json(CreatedKey {
                key: key.clone(),
                token: key_token(&id, &secret),
            }),
        )
            .into_response()),
        _ => Ok(applied_response(&applied, true)),
    }
}

/// The API keys, in id order (no secrets, no hashes).
#[utoipa::path(
    get, path = "/v1/keys", tag = "access",
    params(ConsistencyParam, PageParams),
    responses((status = 200, description = "A page of keys", body = Page<KeyInfo>), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn list(
    State(api): Shared,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let c = consistency(&q)?;
    let read = api
        .node
        .list_keys(c, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    Ok(answer(&read))
}

/// Revoke an API key: every write with it is refused from the revocation's
/// log position on, and every node refuses it once it has applied that far.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "access",
    description = "Recorded in the audit trail.",
    params(("id" = KeyId, Path), IdempotencyKey),
    responses((status = 200, description = "The revoked key", body = KeyInfo), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(api): Shared,
    PathParams(id): PathParams<String>,
    h: HeaderMap,
    caller: Caller,
) -> Response {
    build_write(&api, &h, &caller, false, || {
        let id = KeyId::new(id).map_err(|e| Problem::validation("id", e.reason))?;
        Ok(Command::RevokeKey { id })
    })
    .await
}

/// The audit trail, newest first: every staff action (who, what, when,
/// from where, and how it ended).
#[utoipa::path(
    get, path = "/v1/audit", tag = "access",
    description = "Staff writes (catalogue, accounts, money, fulfilment, keys, \
                   tokens) and operations (membership, compaction, snapshot \
                   exports). Orders placed, paid or cancelled are shop traffic, \
                   not audited. The last 100000 records are kept.",
    params(ConsistencyParam, PageParams),
    responses((status = 200, description = "A page of records", body = Page<AuditRecord>), ReadProblems),
    security(("bearer" = [])),
)]
pub async fn audit(
    State(api): Shared,
    QueryParams(q): QueryParams<ReadParams>,
) -> Result<Response, Problem> {
    let c = consistency(&q)?;
    let read = api
        .node
        .audit(c, q.cursor.as_deref(), q.limit)
        .await
        .map_err(read_problem)?;
    Ok(answer(&read))
}

/// Who a credential stands for.
#[derive(Serialize, ToSchema)]
pub struct Whoami {
    /// `anonymous`, `admin-token`, `key:<id>` or `customer:<account>`.
    pub principal: String,
    /// The role, absent for an anonymous caller.
    pub role: Option<Role>,
    /// The account a customer acts for.
    pub account: Option<AccountId>,
}

/// Who the request's credential stands for (401 for one this cluster does
/// not accept): lets a gateway or a tool check a credential.
#[utoipa::path(
    get, path = "/v1/whoami", tag = "access",
    responses(
        (status = 200, description = "The caller", body = Whoami),
        (status = 401, description = "Problem: unauthorized", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn whoami(caller: Caller) -> Response {
    let principal = match &caller.principal {
        None => "anonymous".to_owned(),
        Some(Principal::Admin) => "admin-token".to_owned(),
        Some(Principal::Key(id)) => format!("key:{id}"),
        Some(Principal::Customer { account, .. }) => format!("customer:{account}"),
        Some(Principal::System) => "system".to_owned(),
    };
    Json(Whoami {
        principal,
        role: caller.role,
        account: caller.account,
    })
    .into_response()
}
