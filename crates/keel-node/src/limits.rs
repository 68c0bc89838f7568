//! Limits of the public HTTP API, in a module of their own: the handlers
//! (`api`) enforce them and the spec (`openapi`) documents them.

/// Largest request body the public API accepts (docs/API.md).
pub const BODY_BYTES_MAX: usize = 1 << 20;
