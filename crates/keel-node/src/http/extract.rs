//! What handlers take from a request: JSON bodies (problem+json on every
//! rejection), the idempotency key, the read parameters and path values,
//! each parsed into its typed form or refused as 400 `validation`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use keel_domain::{AccountId, OrderId, RequestId, Sku};
use keel_protocol::header;

use crate::http::auth::Api;
use crate::http::errors::Problem;
use crate::node::Consistency;

/// Largest request body the public API accepts (docs/API.md).
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// A JSON body whose every rejection is a problem+json (413 above
/// [`BODY_BYTES_MAX`], 400 `validation` otherwise).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_problem(e)),
        }
    }
}

fn json_problem(e: JsonRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::payload_too_large();
    }
    Problem::validation("body", e.body_text())
}

/// A query string whose rejection is a problem+json (400 `validation`,
/// `field` "query"), not axum's plain text.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(QueryParams(v)),
            Err(e) => Err(Problem::validation("query", e.body_text())),
        }
    }
}

/// Path values whose rejection (a segment that is not UTF-8 once decoded,
/// a number that does not parse) is a problem+json (400 `validation`,
/// `field` "path"), not axum's plain text.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParams(v)),
            Err(e) => Err(Problem::validation("path", e.body_text())),
        }
    }
}

/// The request's idempotency key, or one the node makes when it has none.
pub(crate) fn request_id(api: &Api, headers: &HeaderMap) -> Result<RequestId, Problem> {
    match headers.get(header::IDEMPOTENCY_KEY) {
        None => Ok(api.generated_key()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| Problem::validation("Idempotency-Key", "must be printable ASCII"))?;
            RequestId::new(s).map_err(|e| Problem::validation("Idempotency-Key", e.reason))
        }
    }
}

/// The query parameters of a read. A read of one item ignores `limit`
/// and `cursor`, so its contract names [`ConsistencyParam`] alone.
#[derive(Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `local`.
    pub consistency: Option<String>,
    /// Page size of a list.
    pub limit: Option<usize>,
    /// Where a list continues.
    pub cursor: Option<String>,
}

/// How fresh a read must be (the contract of [`ReadParams::consistency`]).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParam {
    /// `linearizable` (the default: every write acknowledged before the read
    /// began) or `local` (this replica's state, which may lag).
    #[param(inline)]
    pub consistency: Option<ConsistencyName>,
}

/// The values of `?consistency=`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyName {
    /// Reflects every write acknowledged before the read began.
    Linearizable,
    /// This replica's current state.
    Local,
}

/// A page of a list (the contract of [`ReadParams::limit`] and
/// [`ReadParams::cursor`]).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: hex, at most 512 digits.
    #[param(pattern = "^([0-9A-Fa-f]{2})*$", max_length = 512)]
    pub cursor: Option<String>,
}

/// The optional `Idempotency-Key` header of a write.
pub struct IdempotencyKey;

impl IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::Required;
        use utoipa::PartialSchema;
        vec![ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "1 to 128 printable ASCII characters. The same key with the same body \
                 answers the original response with `Idempotent-Replayed: true`; with \
                 another body, 409 `idempotency_conflict`. Client retries need a key.",
            ))
            .schema(Some(RequestId::schema()))
            .build()]
    }
}

/// The consistency a read asks for.
pub(crate) fn consistency(p: &ReadParams) -> Result<Consistency, Problem> {
    match p.consistency.as_deref() {
        None | Some("linearizable") => Ok(Consistency::Linearizable),
        Some("local") => Ok(Consistency::Local),
        Some(other) => Err(Problem::validation(
            "consistency",
            format!("must be linearizable or local, got {other:?}"),
        )),
    }
}

/// A SKU from the path.
pub(crate) fn parse_sku(s: &str) -> Result<Sku, Problem> {
    Sku::new(s).map_err(|e| Problem::validation("sku", e.reason))
}

/// An account id from the path.
pub(crate) fn parse_account(s: &str) -> Result<AccountId, Problem> {
    AccountId::new(s).map_err(|e| Problem::validation("account", e.reason))
}

/// An order id from the path: a positive integer.
pub(crate) fn parse_order(s: &str) -> Result<OrderId, Problem> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(OrderId)
        .ok_or_else(|| {
            Problem::validation("order", format!("must be a positive integer, got {s:?}"))
        })
}
