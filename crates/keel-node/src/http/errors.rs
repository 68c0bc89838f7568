//! `application/problem+json` (RFC 9457) errors with stable `type` codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use keel_domain::DomainError;

use crate::node::{ReadError, SubmitError};

/// The detail of every 500 `internal` on the wire; the cause is logged.
pub const INTERNAL_DETAIL: &str = "the node could not serve this request; its log says why";

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_S: u64 = 1;

/// A problem response: the shared body (`keel_protocol::problem`) and the
/// node's own problems and headers.
#[derive(Debug)]
pub struct Problem(pub keel_protocol::problem::Problem);

type Shared = keel_protocol::problem::Problem;

impl Problem {
    /// A problem with no extra fields.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Shared::new(status, kind, title, detail))
    }
    /// Adds a typed field.
    pub fn with(self, k: &str, v: Value) -> Self {
        Self(self.0.with(k, v))
    }
    /// 400 `validation` naming the field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        Self(Shared::validation(field, reason))
    }
    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self(Shared::not_found(what))
    }
    /// 401 `unauthorized`: no credential where one is needed.
    pub fn unauthorized() -> Self {
        Self::bad_credential("send Authorization: Bearer <token>")
    }
    /// 401 `unauthorized`: a credential this cluster does not accept, and
    /// why.
    pub fn bad_credential(detail: &str) -> Self {
        Self(Shared::unauthorized(detail))
    }
    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    /// 503 `unavailable`: nothing was applied; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self(Shared::unavailable(detail))
    }
    /// 504 `indeterminate`: the write may have been applied; retry with the
    /// same Idempotency-Key to learn its result.
    pub fn indeterminate(detail: impl Into<String>) -> Self {
        Self(Shared::indeterminate(detail))
    }
    /// 413 `payload_too_large`: the body is above
    /// [`BODY_BYTES_MAX`](crate::http::extract::BODY_BYTES_MAX).
    pub fn payload_too_large() -> Self {
        Self(Shared::payload_too_large(
            crate::http::extract::BODY_BYTES_MAX,
        ))
    }
    /// 500 `internal`: storage failure or corruption; nothing is served.
    /// The cause (file names, store errors) goes to the node's log, not on
    /// the wire: a client learns that the node failed, not its insides.
    pub fn internal(cause: impl Into<String>) -> Self {
        tracing::error!(cause = %cause.into(), "request failed inside the node");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            INTERNAL_DETAIL,
        )
    }
}

/// The HTTP status of a domain refusal.
pub fn domain_status(e: &DomainError) -> StatusCode {
    match e {
        DomainError::Validation(_) => StatusCode::BAD_REQUEST,
        DomainError::NotFound { .. } => StatusCode::NOT_FOUND,
        DomainError::Forbidden { .. } => StatusCode::FORBIDDEN,
        DomainError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        DomainError::Overflow { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::AlreadyExists { .. }
        | DomainError::OutOfStock { .. }
        | DomainError::InsufficientFunds { .. }
        | DomainError::InvalidTransition { .. }
        | DomainError::BelowReserved { .. }
        | DomainError::IdempotencyConflict { .. } => StatusCode::CONFLICT,
    }
}

impl From<&DomainError> for Problem {
    fn from(e: &DomainError) -> Self {
        let title = match e {
            DomainError::Validation(_) => "Invalid request",
            DomainError::NotFound { .. } => "Not found",
            DomainError::AlreadyExists { .. } => "Already exists",
            DomainError::OutOfStock { .. } => "Out of stock",
            DomainError::InsufficientFunds { .. } => "Insufficient funds",
            DomainError::InvalidTransition { .. } => "Invalid transition",
            DomainError::BelowReserved { .. } => "Stock below reserved",
            DomainError::IdempotencyConflict { .. } => "Idempotency key reused",
            DomainError::Forbidden { .. } => "Forbidden",
            DomainError::Unauthorized { .. } => "Authentication required",
            DomainError::Overflow { .. } => "Amount out of range",
        };
        let mut p = Problem::new(domain_status(e), e.code(), title, e.to_string());
        // The typed fields of the refusal, as the domain defines them.
        if let Ok(Value::Object(outer)) = serde_json::to_value(e) {
            for (_, inner) in outer {
                if let Value::Object(fields) = inner {
                    p.0.extra.extend(fields);
                }
            }
        }
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let mut resp = (status, self.0.body()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(keel_protocol::problem::CONTENT_TYPE),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        resp
    }
}

/// The problem a failed read answers with.
pub(crate) fn read_problem(e: ReadError) -> Problem {
    match e {
        ReadError::Unavailable(m) => Problem::unavailable(m),
        ReadError::Invalid(f) => Problem::validation(&f.field, f.reason),
        ReadError::Store(e) => Problem::internal(e.to_string()),
        ReadError::Table(e) => Problem::internal(e.to_string()),
        ReadError::Interrupted(m) => Problem::internal(m),
    }
}

/// The problem a write that was not applied answers with.
pub(crate) fn submit_problem(e: SubmitError) -> Problem {
    match e {
        SubmitError::Unavailable(m) => Problem::unavailable(m),
        SubmitError::Overloaded => Problem::unavailable("the leader's proposal queue is full"),
        SubmitError::Indeterminate(m) => Problem::indeterminate(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_keeps_its_cause_off_the_wire() {
        let p = Problem::internal("/var/lib/keel/state.redb: page 7 checksum mismatch");
        assert_eq!(p.0.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(p.0.kind, "internal");
        assert_eq!(p.0.detail, INTERNAL_DETAIL);
        assert!(!p.0.detail.contains("state.redb"));
    }
}
