//! A typed client for Keel's public API. It knows several endpoints, moves
//! to the next on a connection failure, timeout or 503, and retries a write
//! only when it carries an idempotency key (so a retry cannot apply twice).
#![deny(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use keel_http_client::ConnPool;
use keel_protocol::header as keel_header;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use keel_domain::{Account, Order, Summary};

mod access;
mod operate;
mod status;

pub use access::{audit_table, keys_table, CreatedKey, IssuedToken};
pub use operate::{alerts_table, leader_in, member_addr, LEADER_HOPS_MAX};
pub use status::status_table;

/// Timeout of one HTTP attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest wait to connect to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Largest reply body read; a longer one is a lost reply.
pub const REPLY_BYTES_MAX: usize = 64 << 20;
/// Idle kept-alive connections per node.
pub const IDLE_PER_NODE_MAX: usize = 64;
/// How long an idle connection is kept before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most attempts of one call across endpoints.
pub const ATTEMPTS_MAX: usize = 12;
/// Overall deadline of one call, retries included.
pub const CALL_DEADLINE: Duration = Duration::from_secs(15);
/// First backoff between attempts; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(20);
/// Largest backoff between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_millis(400);
/// Most times [`Client::batch`] sends one batch again because some of its
/// commands met a cluster that could not take them at that moment.
pub const BATCH_RESENDS_MAX: u32 = 8;
/// Wait before each of those resends.
pub const BATCH_RESEND_BACKOFF: Duration = Duration::from_millis(250);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem (4xx/5xx) that retrying will not fix.
    #[error("{status} {kind}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Problem `type`.
        kind: String,
        /// Problem `detail`.
        detail: String,
        /// The whole problem body (typed fields included).
        body: Value,
    },
    /// No node answered usefully within the attempts and deadline. For a
    /// keyed write, the outcome is unknown; retry with the same key.
    #[error("no node answered: {0}")]
    Unavailable(String),
    /// A success body did not decode as expected.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The request could not be made (see [`AttemptError::Invalid`]).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Some commands of a `/v1/batch` were refused for good: for what they
    /// are (a 4xx), or still for the moment after every resend.
    #[error("{refused} of {total} commands refused, the first with {first}")]
    BatchRefused {
        /// Commands refused.
        refused: usize,
        /// Commands in the batch.
        total: usize,
        /// The first refused command's status and body.
        first: String,
    },
}

impl ClientError {
    /// The problem type, if the server answered with one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Problem { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// True when the server replayed a stored result for the key.
    pub replayed: bool,
    /// The leader as the answering node knew it (`id=host:port`, from the
    /// `keel-leader` header), if it knew one.
    pub leader: Option<String>,
}

impl Reply {
    /// Decodes the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        // Straight from the parsed tree, without copying it first.
        T::deserialize(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// A client of a Keel cluster.
pub struct Client {
    pool: Arc<ConnPool>,
    endpoints: Vec<String>,
    /// `Bearer <token>` (none without a token), built once; or why the
    /// token cannot be a header value, which every call then reports.
    auth: Result<Option<HeaderValue>, String>,
    current: AtomicUsize,
}

impl Client {
    /// A client for `endpoints` (`host:port`), authenticating with `token`.
    pub fn new(endpoints: Vec<String>, token: Option<String>) -> Self {
        Self {
            pool: Arc::new(ConnPool::new(
                IDLE_PER_NODE_MAX,
                IDLE_TIMEOUT,
                CONNECT_TIMEOUT,
            )),
            endpoints,
            auth: bearer(token.as_deref()),
            current: AtomicUsize::new(0),
        }
    }

    /// A client for `endpoints` over TLS with `tls`: each endpoint must
    /// present a certificate from the cluster's CA naming the host dialled.
    pub fn with_tls(
        endpoints: Vec<String>,
        token: Option<String>,
        tls: Arc<keel_tls::ClientTls>,
    ) -> Self {
        Self {
            pool: Arc::new(
                ConnPool::new(IDLE_PER_NODE_MAX, IDLE_TIMEOUT, CONNECT_TIMEOUT).with_tls(Some(tls)),
            ),
            ..Self::new(endpoints, token)
        }
    }

    /// The same cluster with another token.
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            pool: self.pool.clone(),
            endpoints: self.endpoints.clone(),
            auth: bearer(token.as_deref()),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
        }
    }

    /// The endpoints this client knows.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// One call to one specific endpoint, no retries.
    pub async fn call_at(
        &self,
        endpoint: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Reply, AttemptError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, endpoint);
        match &self.auth {
            Ok(Some(a)) => req = req.header(AUTHORIZATION, a.clone()),
            Ok(None) => {}
            Err(why) => return Err(AttemptError::Invalid(why.clone())),
        }
        if let Some(k) = key {
            req = req.header(keel_header::IDEMPOTENCY_KEY, k);
        }
        let payload = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                serde_json::to_vec(b).map_err(|e| AttemptError::Invalid(format!("body: {e}")))?
            }
            None => Vec::new(),
        };
        // A path or key that is not a valid URI or header value.
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| AttemptError::Invalid(format!("request: {e}")))?;
        let exchange = self.pool.exchange(endpoint, req, REPLY_BYTES_MAX);
        let resp = match tokio::time::timeout(ATTEMPT_TIMEOUT, exchange).await {
            Err(_) => {
                return Err(AttemptError::Lost(format!(
                    "timed out: no reply within {ATTEMPT_TIMEOUT:?}"
                )))
            }
            Ok(Err(e)) if e.not_sent() => return Err(AttemptError::NotSent(e.to_string())),
            Ok(Err(e)) => return Err(AttemptError::Lost(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .contains_key(keel_header::IDEMPOTENT_REPLAYED);
        let leader = resp
            .headers()
            .get(keel_header::LEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.into_body();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        if status < 400 {
            return Ok(Reply {
                status,
                body,
                replayed,
                leader,
            });
        }
        let kind = body["type"].as_str().unwrap_or("unknown").to_owned();
        let detail = body["detail"].as_str().unwrap_or("").to_owned();
        Err(AttemptError::Problem(ClientError::Problem {
            status,
            kind,
            detail,
            body,
        }))
    }

    /// A call with failover: tries endpoints in turn. Reads and keyed writes
    /// are retried after a lost reply, 503 or 504; an unkeyed write only when
    /// the request provably never reached a node.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let retry_lost = method == Method::GET || key.is_some();
        let deadline = Instant::now() + CALL_DEADLINE;
        let mut backoff = BACKOFF_FIRST;
        let mut last = String::new();
        let n = self.endpoints.len().max(1);
        for _ in 0..ATTEMPTS_MAX {
            let i = self.current.load(Ordering::Relaxed) % n;
            let Some(ep) = self.endpoints.get(i) else {
                return Err(ClientError::Unavailable("no endpoints configured".into()));
            };
            match self.call_at(ep, method.clone(), path, body, key).await {
                Ok(r) => return Ok(r),
                Err(AttemptError::Problem(p)) => {
                    let retryable = matches!(p.kind(), Some("unavailable") | Some("indeterminate"));
                    if !(retryable && (retry_lost || p.kind() == Some("unavailable"))) {
                        return Err(p);
                    }
                    last = p.to_string();
                }
                Err(AttemptError::Invalid(m)) => return Err(ClientError::Invalid(m)),
                Err(AttemptError::NotSent(m)) => last = m,
                Err(AttemptError::Lost(m)) => {
                    if !retry_lost {
                        return Err(ClientError::Unavailable(format!(
                            "reply lost, not retried without a key: {m}"
                        )));
                    }
                    last = m;
                }
            }
            // Move on to the next node.
            let _ =
                self.current
                    .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            if Instant::now() + backoff > deadline {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        Err(ClientError::Unavailable(last))
    }

    /// POST with an idempotency key.
    pub async fn post(&self, path: &str, body: &Value, key: &str) -> Result<Reply, ClientError> {
        self.call(Method::POST, path, Some(body), Some(key)).await
    }

    /// Runs `/v1/batch` until every command is applied. A node applies a
    /// batch's commands as one unit, in order, but a leader change it
    /// cannot ride out refuses them for the moment (a 5xx); the batch is
    /// then sent again with the same key, at most [`BATCH_RESENDS_MAX`]
    /// times. That is safe because each command's key derives from the
    /// batch's: the ones already applied answer from their stored result
    /// instead of applying twice.
    pub async fn batch(&self, cmds: &[Value], key: &str) -> Result<Reply, ClientError> {
        let body = Value::Array(cmds.to_vec());
        let mut resends = 0;
        loop {
            let r = self.post("/v1/batch", &body, key).await?;
            let Some(results) = r.body["results"].as_array() else {
                return Err(ClientError::Decode(format!(
                    "not a batch result: {}",
                    r.body
                )));
            };
            let status = |x: &Value| x["status"].as_u64().unwrap_or(500);
            let refused: Vec<&Value> = results.iter().filter(|x| status(x) >= 300).collect();
            let Some(first) = refused.first() else {
                return Ok(r);
            };
            let for_now = refused.iter().all(|x| status(x) >= 500 || status(x) == 429);
            if !for_now || resends >= BATCH_RESENDS_MAX {
                return Err(ClientError::BatchRefused {
                    refused: refused.len(),
                    total: results.len(),
                    first: format!("{}: {}", status(first), first["body"]),
                });
            }
            resends += 1;
            tokio::time::sleep(BATCH_RESEND_BACKOFF).await;
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.call(Method::GET, path, None, None).await
    }

    /// Creates or updates a product.
    pub async fn upsert_product(
        &self,
        sku: &str,
        name: &str,
        price: i64,
        currency: &str,
        key: &str,
    ) -> Result<Reply, ClientError> {
        self.post(
            "/v1/products",
            &json!({"sku": sku, "name": name, "price": price, "currency": currency}),
            key,
        )
        .await
    }

    /// Adds stock.
    pub async fn restock(&self, sku: &str, qty: u64, key: &str) -> Result<Reply, ClientError> {
        self.post(
            &format!("/v1/products/{sku}/restock"),
            &json!({"qty": qty}),
            key,
        )
        .await
    }

    /// Opens an account.
    pub async fn open_account(
        &self,
        id: &str,
        kind: &str,
        currency: &str,
        key: &str,
    ) -> Result<Account, ClientError> {
        self.post(
            "/v1/accounts",
            &json!({"id": id, "kind": kind, "currency": currency}),
            key,
        )
        .await?
        .json()
    }

    /// Deposits from the external account.
    pub async fn deposit(&self, id: &str, amount: i64, key: &str) -> Result<Account, ClientError> {
        self.post(
            &format!("/v1/accounts/{id}/deposits"),
            &json!({"amount": amount}),
            key,
        )
        .await?
        .json()
    }

    /// Places an order of `(sku, qty)` lines.
    pub async fn place_order(
        &self,
        customer: &str,
        lines: &[(String, u64)],
        key: &str,
    ) -> Result<(Order, bool), ClientError> {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({"sku": s, "qty": q}))
            .collect();
        let r = self
            .post(
                "/v1/orders",
                &json!({"customer": customer, "lines": lines}),
                key,
            )
            .await?;
        Ok((r.json()?, r.replayed))
    }

    /// Runs an order transition (`pay`, `cancel`, `ship`, `deliver`, `refund`).
    pub async fn transition(
        &self,
        order: u64,
        action: &str,
        key: &str,
    ) -> Result<Order, ClientError> {
        self.post(&format!("/v1/orders/{order}/{action}"), &json!({}), key)
            .await?
            .json()
    }

    /// One order (linearizable).
    pub async fn order(&self, id: u64) -> Result<Order, ClientError> {
        self.get(&format!("/v1/orders/{id}")).await?.json()
    }

    /// The summary (linearizable).
    pub async fn summary(&self) -> Result<Summary, ClientError> {
        self.get("/v1/summary").await?.json()
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The request never reached the node (connection refused or timed out).
    NotSent(String),
    /// The request may have reached the node; no reply came back.
    Lost(String),
    /// The request could not be made (a path, key or token that HTTP cannot
    /// carry): nothing was sent, and sending again would not help.
    Invalid(String),
    /// The node answered with a problem.
    Problem(ClientError),
}

/// `Authorization: Bearer <token>`, none for no token, or why the token
/// cannot be a header value.
fn bearer(token: Option<&str>) -> Result<Option<HeaderValue>, String> {
    token
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
        .transpose()
        .map_err(|_| "the token is not a valid header value".to_owned())
}

/// `GET`, for callers of [`Client::call_at`].
pub fn method_get() -> Method {
    Method::GET
}

/// `POST`, for callers of [`Client::call_at`].
pub fn method_post() -> Method {
    Method::POST
}

/// `DELETE`, for callers of [`Client::call_at`].
pub fn method_delete() -> Method {
    Method::DELETE
}

pub use hyper::Method as HttpMethod;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_http_cannot_carry_fails_at_once_and_is_not_retried() {
        // Nothing listens on port 9 here; an attempt would be refused and
        // retried. An invalid request must fail before any attempt.
        let c = Client::new(vec!["127.0.0.1:9".into()], Some("bad\ntoken".into()));
        let started = Instant::now();
        match c.get("/v1/summary").await {
            Err(ClientError::Invalid(m)) => assert!(m.contains("token"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(started.elapsed() < BACKOFF_FIRST, "no backoff, no retry");
        let c = Client::new(vec!["127.0.0.1:9".into()], None);
        match c.post("/v1/orders", &json!({}), "key\r\nx").await {
            Err(ClientError::Invalid(_)) => {}
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
