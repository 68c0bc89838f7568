//! The `application/problem+json` (RFC 9457) errors nodes and the gateway
//! answer with: one body shape, and one `type`, title and detail for each
//! problem both of them answer. A client branches on `type`, so these codes
//! are stable; each server keeps only its adapter to its HTTP framework
//! (headers such as `Retry-After` are its own policy).

use http::StatusCode;
use serde_json::{json, Map, Value};

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem: status, stable `type` code, title, detail and typed extra
/// fields.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable short code (`out_of_stock`, `validation`, ...), the body's
    /// `type`.
    pub kind: &'static str,
    /// Short human summary of the kind.
    pub title: &'static str,
    /// What happened in this case.
    pub detail: String,
    /// Typed extra fields; they never replace the four above.
    pub extra: Map<String, Value>,
}

impl Problem {
    /// A problem with no extra fields.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// Adds a typed field.
    pub fn with(mut self, k: &str, v: Value) -> Self {
        self.extra.insert(k.to_owned(), v);
        self
    }

    /// 400 `validation` naming the field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid request",
            format!("{field}: {}", reason.into()),
        )
        .with("field", json!(field))
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", what)
    }

    /// 401 `unauthorized`; `how` says which credentials to send.
    pub fn unauthorized(how: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            how,
        )
    }

    /// 503 `unavailable`: nothing was applied; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 504 `indeterminate`: the write may have been applied; retry with the
    /// same Idempotency-Key to learn its result.
    pub fn indeterminate(why: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "indeterminate",
            "Outcome unknown",
            format!(
                "{}; retry with the same Idempotency-Key to get the result",
                why.into()
            ),
        )
    }

    /// 413 `payload_too_large`: the body is above `limit_bytes`.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("request bodies are limited to {limit_bytes} bytes"),
        )
        .with("limit_bytes", json!(limit_bytes))
    }

    /// The JSON body: `type`, `title`, `status`, `detail` and the extra
    /// fields.
    pub fn body(&self) -> String {
        let mut body = self.extra.clone();
        body.insert("type".into(), json!(self.kind));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        Value::Object(body).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_holds_the_four_fields_and_extras_never_replace_them() {
        let p = Problem::payload_too_large(10)
            .with("type", json!("spoofed"))
            .with("hint", json!(1));
        let v: Value = serde_json::from_str(&p.body()).unwrap();
        assert_eq!(v["type"], "payload_too_large");
        assert_eq!(v["title"], "Payload too large");
        assert_eq!(v["status"], 413);
        assert_eq!(v["detail"], "request bodies are limited to 10 bytes");
        assert_eq!(v["limit_bytes"], 10);
        assert_eq!(v["hint"], 1);
    }

    #[test]
    fn validation_names_its_field() {
        let p = Problem::validation("sku", "empty");
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(p.detail, "sku: empty");
        assert_eq!(p.extra["field"], "sku");
    }
}
