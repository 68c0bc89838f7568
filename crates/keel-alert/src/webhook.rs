//! A webhook notifier: a task that POSTs each alert transition as JSON to
//! a configured URL.
//!
//! The caller hands transitions over with [`Webhook::notify`], which never
//! blocks: the queue is bounded and a transition that finds it full is
//! dropped and counted. The task sends one at a time, each POST bounded by
//! a timeout, retrying a failure with exponential backoff a bounded number
//! of times, and stops when the shutdown signal fires (a `watch` channel
//! turning `true`, or its sender going away), as the node's other
//! background tasks do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use keel_http_client::{error_chain, ConnPool};
use keel_tls::ClientTls;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::monitor::Transition;

/// Time one POST may take, connect included: a receiver slower than this
/// is down for our purpose, and the next transitions wait behind it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Retries after a failed POST before giving the transition up: with the
/// backoff below, about 4 seconds of waits, enough to ride over a
/// receiver's restart without holding the queue for long.
pub const RETRIES_MAX: u32 = 4;

/// The wait before the first retry; each later one doubles it.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);

/// The longest wait between two tries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Transitions waiting to be sent. Alerts come a few an hour; hundreds
/// waiting means the receiver is down, and the oldest are what matter.
pub const QUEUE_MAX: usize = 256;

/// Largest reply body read: the receiver's answer is only looked at for
/// its status.
pub const REPLY_BYTES_MAX: usize = 64 * 1024;

/// Where and how to send.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// `http://host[:port]/path` or `https://...` (the latter needs TLS).
    pub url: String,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`RETRIES_MAX`].
    pub retries_max: u32,
    /// See [`BACKOFF_FIRST`].
    pub backoff_first: Duration,
    /// See [`BACKOFF_MAX`].
    pub backoff_max: Duration,
}

impl WebhookConfig {
    /// Sends to `url` with the default limits.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            request_timeout: REQUEST_TIMEOUT,
            retries_max: RETRIES_MAX,
            backoff_first: BACKOFF_FIRST,
            backoff_max: BACKOFF_MAX,
        }
    }
}

/// Why a webhook cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not `http(s)://host[:port][/path]`.
    #[error("webhook URL {url:?}: {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An `https` URL without a TLS configuration to reach it with.
    #[error("webhook URL {0:?} is https but no TLS configuration was given")]
    TlsNeeded(String),
}

/// Counts of what the notifier did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Transitions the receiver took (a 2xx reply).
    pub delivered: u64,
    /// Tries that failed (each retry counts).
    pub failed_tries: u64,
    /// Transitions given up after the last retry, or refused for good.
    pub given_up: u64,
    /// Transitions dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_tries: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
}

/// The caller's end of a running notifier.
#[derive(Clone, Debug)]
pub struct Webhook {
    queue: mpsc::Sender<Bytes>,
    counters: Arc<Counters>,
}

/// Where the POSTs go.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// `host:port`, to connect to.
    addr: String,
    /// The `Host` header.
    host: String,
    path: String,
}

impl Webhook {
    /// Starts the notifier task; it runs until `shutdown` turns `true` or
    /// its sender is dropped. `tls` is needed for an `https` URL.
    pub fn spawn(
        config: WebhookConfig,
        tls: Option<Arc<ClientTls>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, JoinHandle<()>), WebhookError> {
        let target = parse_url(&config.url)?;
        if target.tls && tls.is_none() {
            return Err(WebhookError::TlsNeeded(config.url));
        }
        let tls = if target.tls { tls } else { None };
        let pool = ConnPool::new(1, Duration::from_secs(30), config.request_timeout).with_tls(tls);
        let (queue, rx) = mpsc::channel(QUEUE_MAX);
        let counters = Arc::new(Counters::default());
        let sender = Sender {
            config,
            target,
            pool,
            counters: counters.clone(),
        };
        let task = tokio::spawn(sender.run(rx, shutdown));
        Ok((Self { queue, counters }, task))
    }

    /// Queues `transition` to be sent; never blocks. A full queue (or a
    /// stopped notifier) drops it, counted and logged.
    pub fn notify(&self, transition: &Transition) {
        let body = match serde_json::to_vec(transition) {
            Ok(b) => Bytes::from(b),
            Err(e) => return self.drop_one(&e.to_string()),
        };
        if let Err(e) = self.queue.try_send(body) {
            self.drop_one(&e.to_string());
        }
    }

    fn drop_one(&self, why: &str) {
        let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Logged at the first drop and each power of two after it: a
        // receiver down for hours must not flood the log it is watched by.
        if n.is_power_of_two() {
            tracing::warn!(dropped = n, why, "alert webhook: transition dropped");
        }
    }

    /// What the notifier did so far.
    pub fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_tries: c.failed_tries.load(Ordering::Relaxed),
            given_up: c.given_up.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The task's side.
struct Sender {
    config: WebhookConfig,
    target: Target,
    pool: ConnPool,
    counters: Arc<Counters>,
}

/// How one try ended.
enum Try {
    Delivered,
    /// Worth another try (a timeout, a lost connection, a 5xx, 408, 429).
    Retry(String),
    /// Another try would get the same answer (any other 4xx).
    Refused(String),
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Bytes>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let body = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => return },
                _ = stopped(&mut shutdown) => return,
            };
            tokio::select! {
                _ = self.deliver(body) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Sends one transition, retrying with backoff; counts the outcome.
    async fn deliver(&self, body: Bytes) {
        let mut wait = self.config.backoff_first;
        for attempt in 0..=self.config.retries_max {
            let why = match self.try_once(body.clone()).await {
                Try::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Try::Refused(why) => {
                    self.give_up(attempt, &why);
                    return;
                }
                Try::Retry(why) => why,
            };
            self.counters.failed_tries.fetch_add(1, Ordering::Relaxed);
            if attempt == self.config.retries_max {
                self.give_up(attempt, &why);
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.config.backoff_max);
        }
    }

    fn give_up(&self, attempt: u32, why: &str) {
        self.counters.given_up.fetch_add(1, Ordering::Relaxed);
        let tries = attempt + 1;
        tracing::warn!(url = %self.config.url, tries, why, "alert webhook: transition given up");
    }

    async fn try_once(&self, body: Bytes) -> Try {
        let req = hyper::Request::post(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.host.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Try::Refused(e.to_string()),
        };
        let exchange = self.pool.exchange(&self.target.addr, req, REPLY_BYTES_MAX);
        let resp = match tokio::time::timeout(self.config.request_timeout, exchange).await {
            Err(_) => {
                return Try::Retry(format!("no reply within {:?}", self.config.request_timeout))
            }
            Ok(Err(e)) => return Try::Retry(error_chain(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            Try::Delivered
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Try::Retry(format!("status {status}"))
        } else {
            Try::Refused(format!("status {status}"))
        }
    }
}

/// Returns once `shutdown` is `true` or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Splits `http(s)://host[:port][/path]`.
fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let bad = |why| WebhookError::BadUrl {
        url: url.to_owned(),
        why,
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad("not http:// or https://"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host, or user info (not supported)"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let addr = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    keel_protocol::addr::parse_host_port(&addr).map_err(|e| bad(e.why))?;
    Ok(Target {
        tls,
        addr,
        host: authority.to_owned(),
        path,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::book::{Alert, Severity};
    use crate::monitor::Change;
    use axum::extract::State;
    use axum::http::StatusCode;
    use std::sync::Mutex;
    use std::time::Instant;

    #[test]
    fn urls_are_split_into_address_host_and_path() {
        let t = parse_url("http://127.0.0.1:9000/hooks/keel?x=1").unwrap();
        assert_eq!(
            (t.tls, t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            (false, "127.0.0.1:9000", "127.0.0.1:9000", "/hooks/keel?x=1")
        );
        let t = parse_url("https://alerts.example").unwrap();
        assert_eq!(
            (t.tls, t.addr.as_str(), t.path.as_str()),
            (true, "alerts.example:443", "/")
        );
        let t = parse_url("http://[::1]/x").unwrap();
        assert_eq!(t.addr, "[::1]:80");
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@x/",
            "http://x:0/",
            "http://x:99999",
            "http://a b/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_without_tls_is_refused() {
        let (_stop, rx) = watch::channel(false);
        let r = Webhook::spawn(WebhookConfig::new("https://alerts.example/"), None, rx);
        assert!(matches!(r, Err(WebhookError::TlsNeeded(_))));
    }

    fn transition(id: u64) -> Transition {
        Transition {
            change: Change::Opened,
            alert: Alert {
                id,
                name: "p99_latency_up".to_owned(),
                severity: Severity::Warning,
                subject: "/v1/orders".to_owned(),
                summary: "p99 latency is 0.5 s".to_owned(),
                started_ms: 1000,
                ended_ms: None,
                value: 0.5,
                baseline: 0.05,
            },
        }
    }

    /// A receiver answering each POST with the next status of `script`
    /// (the last one once the script runs out), keeping the bodies.
    #[derive(Clone, Default)]
    struct Receiver {
        script: Arc<Mutex<Vec<u16>>>,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    async fn hook(State(r): State<Receiver>, body: axum::body::Bytes) -> StatusCode {
        r.bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        let mut script = r.script.lock().unwrap();
        let code = if script.len() > 1 {
            script.remove(0)
        } else {
            script[0]
        };
        StatusCode::from_u16(code).unwrap()
    }

    async fn receiver(script: Vec<u16>) -> (String, Receiver) {
        let r = Receiver {
            script: Arc::new(Mutex::new(script)),
            ..Receiver::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, r)
    }

    fn fast(url: &str) -> WebhookConfig {
        WebhookConfig {
            request_timeout: Duration::from_millis(300),
            backoff_first: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            ..WebhookConfig::new(url)
        }
    }

    /// Waits until `done` holds, failing after 10 s.
    async fn until(hook: &Webhook, done: impl Fn(WebhookStats) -> bool) -> WebhookStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = hook.stats();
            if done(s) {
                return s;
            }
            assert!(Instant::now() < deadline, "no outcome in time: {s:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn delivers_each_transition_as_json() {
        let (url, r) = receiver(vec![200]).await;
        let (_stop, rx) = watch::channel(false);
        let (hook, _task) = Webhook::spawn(fast(&url), None, rx).unwrap();
        hook.notify(&transition(1));
        hook.notify(&transition(2));
        let s = until(&hook, |s| s.delivered == 2).await;
        assert_eq!(s.failed_tries, 0);
        let bodies = r.bodies.lock().unwrap().clone();
        assert_eq!(bodies[0]["change"], "opened");
        assert_eq!(bodies[1]["alert"]["id"], 2);
        assert_eq!(bodies[0]["alert"]["severity"], "warning");
    }

    #[tokio::test]
    async fn retries_after_a_server_error() {
        let (url, r) = receiver(vec![500, 503, 200]).await;
        let (_stop, rx) = watch::channel(false);
        let (hook, _task) = Webhook::spawn(fast(&url), None, rx).unwrap();
        hook.notify(&transition(1));
        let s = until(&hook, |s| s.delivered == 1).await;
        assert_eq!((s.failed_tries, s.given_up), (2, 0));
        assert_eq!(r.bodies.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_limit_and_on_a_refusal() {
        let (url, r) = receiver(vec![500]).await;
        let (_stop, rx) = watch::channel(false);
        let (hook, _task) = Webhook::spawn(fast(&url), None, rx).unwrap();
        hook.notify(&transition(1));
        let s = until(&hook, |s| s.given_up == 1).await;
        assert_eq!(s.failed_tries, u64::from(RETRIES_MAX) + 1);
        assert_eq!(r.bodies.lock().unwrap().len(), RETRIES_MAX as usize + 1);
        // A 400 is not retried: the same body would be refused again.
        let (url, r) = receiver(vec![400]).await;
        let (_stop, rx) = watch::channel(false);
        let (hook, _task) = Webhook::spawn(fast(&url), None, rx).unwrap();
        hook.notify(&transition(1));
        until(&hook, |s| s.given_up == 1).await;
        assert_eq!(r.bodies.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn times_out_on_a_server_that_never_answers() {
        // Accepts connections and reads nothing back: a hung receiver.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let (_stop, rx) = watch::channel(false);
        let config = WebhookConfig {
            retries_max: 1,
            ..fast(&url)
        };
        let started = Instant::now();
        let (hook, _task) = Webhook::spawn(config, None, rx).unwrap();
        hook.notify(&transition(1));
        let s = until(&hook, |s| s.given_up == 1).await;
        assert_eq!(s.failed_tries, 2);
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "two tries of 300 ms each"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_without_blocking_and_shutdown_stops_the_task() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let _hold = listener;
        let (stop, rx) = watch::channel(false);
        let config = WebhookConfig {
            request_timeout: Duration::from_secs(60),
            ..WebhookConfig::new(&url)
        };
        let (hook, task) = Webhook::spawn(config, None, rx).unwrap();
        // One in flight (never answered), QUEUE_MAX waiting, the rest dropped.
        for i in 0..QUEUE_MAX as u64 + 20 {
            hook.notify(&transition(i));
        }
        let s = hook.stats();
        assert!((19..=20).contains(&s.dropped), "{s:?}");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
