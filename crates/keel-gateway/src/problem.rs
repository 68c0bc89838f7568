//! The gateway's own `application/problem+json` (RFC 9457) errors. Their
//! `type` codes are stable and, where the meaning is the same
//! (`payload_too_large`, `unavailable`, `indeterminate`, `unauthorized`,
//! `validation`, `not_found`), built by `keel_protocol::problem` as the
//! nodes build them.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A problem the gateway answers itself: the shared body
/// (`keel_protocol::problem`) and its `Retry-After`, if any.
#[derive(Debug)]
pub struct Problem {
    body: Shared,
    retry_after_s: Option<u64>,
}

type Shared = keel_protocol::problem::Problem;

impl From<Shared> for Problem {
    fn from(body: Shared) -> Self {
        Self {
            body,
            retry_after_s: None,
        }
    }
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Shared::new(status, kind, title, detail).into()
    }

    fn with(mut self, k: &str, v: Value) -> Self {
        self.body = self.body.with(k, v);
        self
    }

    fn retry_after(mut self, d: Duration) -> Self {
        // Retry-After is whole seconds; round up so a client that obeys it
        // finds a token waiting.
        let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        self.retry_after_s = Some(s.max(1));
        self
    }

    /// 429 `rate_limited`: this client sent more than its rate.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            format!(
                "this client is over its request rate; retry in {} ms",
                retry_after.as_millis()
            ),
        )
        .with("retry_after_ms", json!(retry_after.as_millis() as u64))
        .retry_after(retry_after)
    }

    /// 413 `payload_too_large`.
    pub fn body_too_large(limit: usize) -> Self {
        Shared::payload_too_large(limit).into()
    }

    /// 408 `body_timeout`: the client was too slow sending its body.
    pub fn body_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request body too slow",
            format!("the request body did not arrive within {after:?}"),
        )
    }

    /// 400 `validation`: the body could not be read.
    pub fn bad_body(why: &str) -> Self {
        Shared::validation("body", why).into()
    }

    /// 400 `validation` on a named field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        Shared::validation(field, reason).into()
    }

    /// 503 `overloaded`: the gateway is at its pending-request cap.
    pub fn overloaded(pending_max: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Gateway overloaded",
            format!("{pending_max} requests are already in progress"),
        )
        .retry_after(Duration::from_secs(1))
    }

    /// 503 `unavailable`: no node could be tried.
    pub fn no_backend() -> Self {
        Problem::from(Shared::unavailable("the gateway knows no cluster node"))
            .retry_after(Duration::from_secs(1))
    }

    /// 502 `upstream_unavailable`: no node could be reached in time; nothing
    /// was applied by this request's last attempt.
    pub fn upstream_unavailable(why: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "No node reachable",
            why.to_owned(),
        )
    }

    /// 504 `indeterminate`: a write reached a node but its reply did not
    /// come back; it may have been applied.
    pub fn indeterminate(why: &str) -> Self {
        Shared::indeterminate(why).into()
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Shared::unauthorized("send Authorization: Bearer <gateway admin token>").into()
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Shared::not_found(what).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut resp = (self.body.status, self.body.body()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(keel_protocol::problem::CONTENT_TYPE),
        );
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = Problem::rate_limited(Duration::from_millis(1200)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let r = Problem::rate_limited(Duration::from_millis(10)).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
