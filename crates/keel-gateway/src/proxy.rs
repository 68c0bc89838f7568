//! The request path: admit, classify, pick a node, send, and retry where it
//! is safe. Bodies are buffered (bounded by `limits.body_bytes_max`; the
//! API's bodies are small JSON) so a request can be sent again, and
//! responses are buffered (bounded by `limits.response_bytes_max`) so a
//! node dying mid-reply can still be retried for reads and keyed writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::metrics::Reason;
use crate::pool::{Attempt, AttemptEnd, Class, Pool, Verdict, EVENT_ANSWERED};
use crate::problem::Problem;
use crate::shared::{PendingSlot, Shared};
use crate::{EligibleSet, RateDecision};
use keel_http_client::ConnPool;
use keel_protocol::header as keel_header;

/// The leader hint and its term in a node's response headers.
pub fn leader_hint(h: &hyper::HeaderMap) -> Option<(&str, Option<u64>)> {
    let hint = h.get(keel_header::LEADER).and_then(|v| v.to_str().ok())?;
    let term = h
        .get(keel_header::TERM)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.parse().ok());
    Some((hint, term))
}

/// Headers that belong to one connection, not to the message (RFC 9110
/// §7.6.1), plus those the gateway recomputes for the new hop.
const HOP_HEADERS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// What one attempt produced.
enum Outcome {
    /// A response to pass to the client, or to retry past when its status
    /// says the cluster could not serve it.
    Reply(Response<Bytes>),
    /// The connection could not be made: the request never left.
    NotSent(String),
    /// Sent, but no complete reply: timed out, reset or cut off.
    Lost(&'static str, String),
    /// Abandoned because the node stopped being the leader; not its fault.
    Moved(String),
}

/// A client connection as the proxy sees it: its address, and its IP as the
/// value appended to `X-Forwarded-For`, made once per connection rather than
/// once per request.
#[derive(Clone, Debug)]
pub struct Client {
    addr: SocketAddr,
    /// `None` only if an IP address's text were not a valid header value,
    /// which it always is.
    ip: Option<HeaderValue>,
}

impl Client {
    /// The client connected from `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ip: HeaderValue::from_str(&addr.ip().to_string()).ok(),
        }
    }
}

/// Handles one proxied request.
pub async fn handle(gw: Arc<Shared>, client: &Client, req: Request<Incoming>) -> Response {
    let started = Instant::now();
    let class = classify(req.method(), req.uri().query());
    let response = match admit_and_forward(&gw, client, class, req, started).await {
        Ok(r) | Err(r) => r,
    };
    let status = response.status().as_u16();
    gw.series[class.slot()].record(status, started.elapsed().as_secs_f64());
    gw.availability.record(status);
    response
}

fn classify(method: &Method, query: Option<&str>) -> Class {
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Class::Write;
    }
    let local = query.is_some_and(|q| q.split('&').any(|kv| kv == "consistency=local"));
    if local {
        Class::LocalRead
    } else {
        Class::LinearizableRead
    }
}

/// Whether a write to `path` honours an `Idempotency-Key`. Membership
/// changes do not: they are never given a key nor retried once sent.
fn keyable(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/cluster")
}

async fn admit_and_forward(
    gw: &Arc<Shared>,
    client: &Client,
    class: Class,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response, Response> {
    let _pending = admit(gw, client, &req, started).map_err(IntoResponse::into_response)?;
    let (parts, body) = req.into_parts();
    check_declared_length(gw, &parts.headers).map_err(IntoResponse::into_response)?;
    let body = read_body(gw, body).await?;
    let fwd = prepare_forward(gw, client, class, parts, body);
    forward_with_retries(gw, class, fwd, started).await
}

/// A request ready for the nodes: what each attempt sends, and what the
/// answer needs.
struct Forward {
    method: Method,
    /// Origin form for the next hop: the path and query, no scheme or host.
    target: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The value of `routing.hash_header`, if the request has one.
    hash_key: Option<Vec<u8>>,
    /// Safe to send again after it may have reached a node: reads, and
    /// writes the node will recognise by key.
    resend_ok: bool,
    is_write: bool,
    /// The idempotency key the gateway added, if it did.
    key_added: Option<HeaderValue>,
}

/// Takes a pending slot and passes the rate limit, or answers why not.
fn admit<'g>(
    gw: &'g Shared,
    client: &Client,
    req: &Request<Incoming>,
    started: Instant,
) -> Result<PendingSlot<'g>, Problem> {
    let limits = &gw.config.limits;
    let pending = gw.pending.try_take().ok_or_else(|| {
        reject(gw, "overloaded");
        Problem::overloaded(limits.pending_max)
    })?;
    if gw.pool.rate_limited() {
        let client = client_key(
            req.headers(),
            &gw.config.rate_limit.client_header,
            client.addr,
        );
        if let RateDecision::Limited { retry_after } = gw.pool.rate_check(&client, started) {
            reject(gw, "rate_limited");
            return Err(Problem::rate_limited(retry_after));
        }
    }
    Ok(pending)
}

/// Refuses a body whose declared length is over `limits.body_bytes_max`
/// before reading it.
fn check_declared_length(gw: &Shared, headers: &HeaderMap) -> Result<(), Problem> {
    let limits = &gw.config.limits;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body_bytes_max as u64) {
        reject(gw, "body_too_large");
        return Err(Problem::body_too_large(limits.body_bytes_max));
    }
    Ok(())
}

/// Adds an idempotency key to a keyable write without one (if configured)
/// and makes the request's form for the next hop.
fn prepare_forward(
    gw: &Shared,
    client: &Client,
    class: Class,
    mut parts: Parts,
    body: Bytes,
) -> Forward {
    let mut key_added = None;
    let is_write = class == Class::Write;
    let has_key = parts.headers.contains_key(keel_header::IDEMPOTENCY_KEY);
    if is_write && !has_key && gw.config.retry.add_idempotency_key && keyable(parts.uri.path()) {
        let key = gw.keys.make();
        // The key is printable ASCII by construction.
        if let Ok(v) = HeaderValue::from_str(&key) {
            parts
                .headers
                .insert(keel_header::IDEMPOTENCY_KEY, v.clone());
            key_added = Some(v);
        }
    }
    let resend_ok = !is_write || parts.headers.contains_key(keel_header::IDEMPOTENCY_KEY);
    let hash_key = parts
        .headers
        .get(gw.config.routing.hash_header.as_str())
        .map(|v| v.as_bytes().to_vec());
    let target = match parts.uri.path_and_query() {
        Some(p) if parts.uri.scheme().is_some() => Uri::from(p.clone()),
        Some(_) => parts.uri.clone(),
        None => Uri::from_static("/"),
    };
    let headers = forward_headers(parts.headers, client);
    Forward {
        method: parts.method,
        target,
        headers,
        body,
        hash_key,
        resend_ok,
        is_write,
        key_added,
    }
}

/// Sends `fwd` to a node picked for `class`, and again to others while the
/// outcome allows a retry, the retry budget a slot and the deadline the time.
async fn forward_with_retries(
    gw: &Shared,
    class: Class,
    fwd: Forward,
    started: Instant,
) -> Result<Response, Response> {
    let mut live = LiveRequest {
        pool: &gw.pool,
        counted: false,
    };
    let deadline = started + Duration::from_millis(gw.config.retry.request_timeout_ms);
    let attempt_timeout = Duration::from_millis(gw.config.retry.attempt_timeout_ms);
    let mut avoid = EligibleSet::empty();
    let mut retries = 0u32;
    let mut retry_guard: Option<RetryGuard<'_>> = None;
    // Whether an attempt so far may have applied the write. A later
    // attempt's "nothing was applied" speaks only for itself: once this is
    // set, the request's answer can no longer be a definite failure.
    let mut maybe_applied = false;
    loop {
        let now = Instant::now();
        let first = !live.counted;
        let Some(attempt) = gw
            .pool
            .pick(class, fwd.hash_key.as_deref(), avoid, now, first)
        else {
            return Err(unknown_if(
                maybe_applied,
                Problem::no_backend().into_response(),
            ));
        };
        live.counted = true;
        let remaining = deadline.saturating_duration_since(now);
        let budget = attempt_timeout.min(remaining);
        let outcome = attempt_once(gw, &fwd, &attempt, now + budget).await;
        drop(retry_guard.take());
        maybe_applied |= fwd.is_write && may_have_applied(&outcome);
        let (verdict, event, retry_reason) = judge(&outcome, fwd.resend_ok);
        let node = attempt.node;
        let host = attempt.host.clone();
        attempt.count(event);
        let last = retry_reason.is_none();
        gw.pool.finish(
            attempt,
            AttemptEnd {
                verdict,
                now: Instant::now(),
                leader_hint: match &outcome {
                    Outcome::Reply(r) => leader_hint(r.headers()),
                    _ => None,
                },
                last,
            },
        );
        // The request's end was counted with its last attempt.
        live.counted &= !last;
        let Some(reason) = retry_reason else {
            return Ok(unknown_if(
                maybe_applied,
                finish(outcome, &host, retries + 1, fwd.key_added, fwd.is_write),
            ));
        };
        // Retry: on another node first, after a jittered backoff, within
        // the retry budget and the request's deadline.
        avoid.insert(node);
        let Some(guard) = wait_to_retry(&gw.pool, retries, deadline).await else {
            return Err(unknown_if(
                maybe_applied,
                finish(outcome, &host, retries + 1, fwd.key_added, fwd.is_write),
            ));
        };
        retry_guard = Some(guard);
        gw.metrics.retries.get_or_create(&Reason { reason }).inc();
        retries += 1;
    }
}

/// One attempt of `fwd` on `attempt`'s node, ended at `give_up_at` at the
/// latest.
async fn attempt_once(
    gw: &Shared,
    fwd: &Forward,
    attempt: &Attempt,
    give_up_at: Instant,
) -> Outcome {
    let exchange = send(
        &gw.upstream,
        &attempt.addr,
        &attempt.host,
        &fwd.method,
        &fwd.target,
        &fwd.headers,
        fwd.body.clone(),
        gw.config.limits.response_bytes_max,
    );
    // An attempt ends at its timeout; and sooner when it is stuck on a
    // node the detectors have since given up on (a paused or cut-off
    // leader), so the request moves on within the detection time;
    // likewise an attempt that may go again, sent to a leader that has
    // since been deposed (a cut-off leader still answers probes): the
    // new leader, named at a higher term, gets it now.
    tokio::select! {
        biased;
        o = exchange => o,
        o = abandon_when(&gw.pool, attempt, fwd.resend_ok, give_up_at) => o,
    }
}

/// Waits out the backoff after `retries` retries, then takes a retry-budget
/// slot; `None` when out of retries or when waiting would pass `deadline`.
async fn wait_to_retry(pool: &Pool, retries: u32, deadline: Instant) -> Option<RetryGuard<'_>> {
    let delay = pool.backoff(retries)?;
    if Instant::now() + delay >= deadline {
        return None;
    }
    // A leader named meanwhile ends the wait: most retries are waiting
    // for exactly that (no leader, a deposed one), and a backoff of up
    // to its cap after the election would be pure unavailability.
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = pool.leader_named() => {}
    }
    // Over budget, a retry waits for a slot rather than failing: the
    // budget bounds the extra load retries add, the deadline bounds the
    // wait.
    loop {
        if pool.try_retry() {
            return Some(RetryGuard(pool));
        }
        let wait = pool.backoff_floor();
        if Instant::now() + wait >= deadline {
            return None;
        }
        tokio::time::sleep(wait).await;
    }
}

/// How often an attempt in flight checks that its node is still trusted.
pub const DISTRUST_POLL: Duration = Duration::from_millis(50);

/// Completes when `attempt` should no longer be waited for: `deadline` has
/// passed; its node failed its health checks or phi-accrual suspects it, if
/// it was trusted when picked (an attempt in panic mode, on a node believed
/// down, is how the gateway learns it is back); or another node is known to
/// lead, if the node led when picked and the request may be sent again. One
/// timer per attempt: most attempts end long before the first check.
async fn abandon_when(
    pool: &Pool,
    attempt: &Attempt,
    resend_ok: bool,
    deadline: Instant,
) -> Outcome {
    let (node, addr) = (attempt.node, &attempt.addr);
    let watch_trust = attempt.trusted;
    let watch_leader = resend_ok && attempt.led;
    // The attempt was picked at `attempt.started`: no clock read before the
    // first wait, which most attempts never finish.
    let mut now = attempt.started;
    loop {
        if now >= deadline {
            let budget = deadline.saturating_duration_since(attempt.started);
            return Outcome::Lost("timeout", format!("{addr}: no reply within {budget:?}"));
        }
        let wake = if watch_trust || watch_leader {
            deadline.min(now + DISTRUST_POLL)
        } else {
            deadline
        };
        tokio::time::sleep_until(wake.into()).await;
        now = Instant::now();
        if watch_trust && !pool.is_trusted(node, now) {
            return Outcome::Lost(
                "suspected",
                format!("{addr}: abandoned, the node stopped answering probes"),
            );
        }
        if watch_leader && pool.leader_node().is_some_and(|l| l != node) {
            return Outcome::Moved(format!(
                "{addr}: abandoned, another node leads at a higher term"
            ));
        }
    }
}

/// Decides what an attempt says about the node, how to label it, and
/// whether (and why) the request should be tried again.
fn judge(outcome: &Outcome, resend_ok: bool) -> (Verdict, &'static str, Option<&'static str>) {
    match outcome {
        Outcome::NotSent(_) => (Verdict::Refused, "refused", Some("refused")),
        Outcome::Moved(_) => (Verdict::Abandoned, "deposed", Some("leader_changed")),
        Outcome::Lost(what, _) => (Verdict::Failed, what, resend_ok.then_some(*what)),
        Outcome::Reply(r) => match r.status() {
            // The node is alive but the cluster could not serve: nothing
            // was applied (the API's promise for 503), so any request may
            // go again; not the node's fault.
            StatusCode::SERVICE_UNAVAILABLE => (
                Verdict::Answered,
                "unavailable",
                resend_ok.then_some("unavailable"),
            ),
            // Outcome unknown: only a keyed write learns its result by
            // asking again.
            StatusCode::GATEWAY_TIMEOUT => (
                Verdict::Answered,
                "indeterminate",
                resend_ok.then_some("indeterminate"),
            ),
            // The node's own storage failed: try a healthy replica.
            StatusCode::INTERNAL_SERVER_ERROR => {
                (Verdict::Failed, "internal", resend_ok.then_some("internal"))
            }
            _ => (Verdict::Answered, EVENT_ANSWERED, None),
        },
    }
}

/// Whether an attempt of a write may have applied it: the request went out
/// and no answer came back (lost, or abandoned for a new leader), or the
/// node answered that the outcome is unknown (504) or that its own storage
/// failed (500).
fn may_have_applied(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::NotSent(_) => false,
        Outcome::Lost(..) | Outcome::Moved(_) => true,
        Outcome::Reply(r) => matches!(
            r.status(),
            StatusCode::GATEWAY_TIMEOUT | StatusCode::INTERNAL_SERVER_ERROR
        ),
    }
}

/// `resp`, unless an earlier attempt may have applied the write and `resp`
/// claims that nothing was (503, or 502 when no node could be reached):
/// then 504 `indeterminate`, with `resp`'s Keel headers (the upstream, the
/// attempts, the key to ask again with). A client told "nothing applied"
/// would place the order again under a new key.
fn unknown_if(maybe_applied: bool, resp: Response) -> Response {
    let nothing_applied = matches!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
    );
    if !maybe_applied || !nothing_applied {
        return resp;
    }
    let mut unknown = Problem::indeterminate(&format!(
        "an earlier attempt may have applied it; the last answered {}",
        resp.status()
    ))
    .into_response();
    for name in [
        keel_header::UPSTREAM,
        keel_header::ATTEMPTS,
        keel_header::IDEMPOTENCY_KEY,
    ] {
        if let Some(v) = resp.headers().get(name) {
            unknown.headers_mut().insert(name, v.clone());
        }
    }
    unknown
}

/// The client's response for an attempt's outcome.
fn finish(
    outcome: Outcome,
    upstream: &HeaderValue,
    attempts: u32,
    key_added: Option<HeaderValue>,
    is_write: bool,
) -> Response {
    let mut resp = match outcome {
        Outcome::Reply(r) => r.map(Body::from),
        Outcome::NotSent(e) => Problem::upstream_unavailable(&e).into_response(),
        Outcome::Lost(_, e) | Outcome::Moved(e) if is_write => {
            Problem::indeterminate(&e).into_response()
        }
        Outcome::Lost(_, e) | Outcome::Moved(e) => {
            Problem::upstream_unavailable(&e).into_response()
        }
    };
    let h = resp.headers_mut();
    h.insert(keel_header::UPSTREAM, upstream.clone());
    h.insert(keel_header::ATTEMPTS, HeaderValue::from(attempts));
    // The key the gateway chose, so the client can ask again for the result
    // of a write whose outcome it did not learn.
    if let Some(k) = key_added {
        h.insert(keel_header::IDEMPOTENCY_KEY, k);
    }
    resp
}

/// One attempt: `target` (origin form) with `headers` and `body` to the
/// node at `addr` (`host` as a header value), its reply read whole. The
/// caller bounds its time.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn send(
    upstream: &ConnPool,
    addr: &str,
    host: &HeaderValue,
    method: &Method,
    target: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    response_bytes_max: usize,
) -> Outcome {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method.clone();
    *req.uri_mut() = target.clone();
    *req.headers_mut() = headers.clone();
    // The node sees its own address as Host, as nginx's default
    // `proxy_set_header Host $proxy_host`.
    req.headers_mut().insert(header::HOST, host.clone());
    match upstream.exchange(addr, req, response_bytes_max).await {
        Ok(resp) => {
            let (mut parts, bytes) = resp.into_parts();
            remove_hop_headers(&mut parts.headers);
            Outcome::Reply(Response::from_parts(parts, bytes))
        }
        Err(e) if e.not_sent() => Outcome::NotSent(format!("{addr}: {e}")),
        Err(e) => Outcome::Lost("lost", format!("{addr}: {e}")),
    }
}

async fn read_body(gw: &Shared, body: Incoming) -> Result<Bytes, Response> {
    // Most requests are bodiless reads: nothing to wait for.
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    let limits = &gw.config.limits;
    let timeout = Duration::from_millis(limits.body_timeout_ms);
    match tokio::time::timeout(timeout, Limited::new(body, limits.body_bytes_max).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            reject(gw, "body_too_large");
            Err(Problem::body_too_large(limits.body_bytes_max).into_response())
        }
        Ok(Err(e)) => {
            reject(gw, "bad_body");
            Err(Problem::bad_body(&e.to_string()).into_response())
        }
        Err(_) => {
            reject(gw, "body_timeout");
            Err(Problem::body_timeout(timeout).into_response())
        }
    }
}

/// The client's headers as the next hop gets them: without those of this
/// connection, and with the client appended to `X-Forwarded-For`. `Host`
/// is set per attempt to the node's address.
fn forward_headers(mut h: HeaderMap, client: &Client) -> HeaderMap {
    remove_hop_headers(&mut h);
    h.remove(header::HOST);
    let Some(ip) = &client.ip else {
        return h;
    };
    let xff = match h.get(X_FORWARDED_FOR).map(|prev| prev.to_str()) {
        Some(Ok(prev)) => HeaderValue::from_str(&format!("{prev}, {}", client.addr.ip())).ok(),
        // Not text: replaced, as a value no proxy could append to.
        Some(Err(_)) | None => Some(ip.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    h
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Removes [`HOP_HEADERS`]. Messages rarely carry one beyond
/// `content-length`, so one pass over the names present decides whether
/// any lookup is needed.
fn remove_hop_headers(h: &mut HeaderMap) {
    let hop = |n: &HeaderName| HOP_HEADERS.contains(&n.as_str());
    if h.keys().any(|n| *n != header::CONTENT_LENGTH && hop(n)) {
        for name in HOP_HEADERS {
            h.remove(name);
        }
    } else {
        h.remove(header::CONTENT_LENGTH);
    }
}

/// Who a client is for rate limiting: the configured header's value, else
/// its IP address.
fn client_key(headers: &HeaderMap, header_name: &str, peer: SocketAddr) -> String {
    match headers.get(header_name).and_then(|v| v.to_str().ok()) {
        Some(v) => v.to_owned(),
        None => peer.ip().to_string(),
    }
}

fn reject(gw: &Shared, reason: &'static str) {
    gw.metrics.rejected.get_or_create(&Reason { reason }).inc();
}

/// Whether a request counts as live for the retry budget: its first pick
/// starts the count and its last attempt's finish ends it, each under the
/// lock that call takes anyway; a request left between the two (out of
/// retries, past its deadline, or its client gone) ends it when dropped.
struct LiveRequest<'a> {
    pool: &'a Pool,
    /// Whether the pool counts the request live now.
    counted: bool,
}

impl Drop for LiveRequest<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.pool.request_ended();
        }
    }
}

/// Holds a retry-budget slot until dropped.
struct RetryGuard<'a>(&'a Pool);

impl Drop for RetryGuard<'_> {
    fn drop(&mut self) {
        self.0.retry_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_method_and_consistency() {
        assert_eq!(classify(&Method::POST, None), Class::Write);
        assert_eq!(classify(&Method::DELETE, None), Class::Write);
        assert_eq!(classify(&Method::GET, None), Class::LinearizableRead);
        assert_eq!(
            classify(&Method::GET, Some("consistency=linearizable")),
            Class::LinearizableRead
        );
        assert_eq!(
            classify(&Method::GET, Some("limit=5&consistency=local")),
            Class::LocalRead
        );
    }

    #[test]
    fn membership_changes_are_not_keyable() {
        assert!(keyable("/v1/orders"));
        assert!(keyable("/v1/orders/3/pay"));
        assert!(!keyable("/v1/cluster/members"));
        assert!(!keyable("/metrics"));
    }

    fn reply(status: u16) -> Outcome {
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Outcome::Reply(r)
    }

    #[test]
    fn only_safe_requests_are_retried_after_bytes_were_sent() {
        // Never sent: always safe.
        assert!(judge(&Outcome::NotSent("x".into()), false).2.is_some());
        // Sent and lost: only reads and keyed writes.
        assert!(judge(&Outcome::Lost("timeout", "x".into()), true)
            .2
            .is_some());
        assert!(judge(&Outcome::Lost("timeout", "x".into()), false)
            .2
            .is_none());
        assert!(judge(&reply(503), false).2.is_none());
        assert!(judge(&reply(504), true).2.is_some());
        // Answers are final.
        for s in [200, 201, 400, 404, 409, 422] {
            assert!(judge(&reply(s), true).2.is_none(), "{s}");
        }
        assert_eq!(judge(&reply(500), true).0, Verdict::Failed);
        assert_eq!(judge(&reply(503), true).0, Verdict::Answered);
    }

    #[test]
    fn forwarded_headers_drop_hop_by_hop_and_append_the_client() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("host", HeaderValue::from_static("gw"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        let out = forward_headers(h, &Client::new("127.0.0.2:5000".parse().unwrap()));
        assert!(out.get("connection").is_none());
        assert!(out.get("host").is_none());
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(out["authorization"], "Bearer t");
    }
}
