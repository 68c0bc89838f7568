//! What handlers take from a request: JSON bodies (problem+json on every
//! rejection), the idempotency key, the read parameters and path values,
//! each parsed into its typed form or refused as 400 `validation`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

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
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("request bodies are limited to {BODY_BYTES_MAX} bytes"),
        )
        .with("limit_bytes", json!(BODY_BYTES_MAX));
    }
    Problem::validation("body", e.body_text())
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

/// The query parameters of a read.
#[derive(Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `local`.
    pub consistency: Option<String>,
    /// Page size of a list.
    pub limit: Option<usize>,
    /// Where a list continues.
    pub cursor: Option<String>,
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
