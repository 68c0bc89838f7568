//! How a read answers: the value as JSON with the `Keel-Applied-Index` of
//! the read view it came from.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use keel_protocol::header;

use crate::node::ReadAt;

/// `value` as JSON, with the applied index of its read view in a header.
pub(crate) fn answer<T: Serialize>(read: &ReadAt<T>) -> Response {
    with_applied_index(Json(&read.value).into_response(), read.applied_index)
}

/// Adds the `Keel-Applied-Index` header, when the view had applied anything.
pub(crate) fn with_applied_index(mut resp: Response, applied: Option<u64>) -> Response {
    if let Some(index) = applied {
        if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
            resp.headers_mut().insert(header::APPLIED_INDEX, v);
        }
    }
    resp
}
