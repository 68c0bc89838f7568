//! The gateway's lifecycle: bind, serve (its own routes and the proxy),
//! probe every node, follow the membership, and stop it all on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::pool::{Pool, ProbeFailure, WeightError};
use crate::problem::Problem;
use crate::proxy::{self, KeyMaker, Upstream};
use crate::{ConfigError, NodeIndex};

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long idle pooled connections to nodes are kept.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a membership poll may take.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/v1/cluster` reply the discovery poll reads.
pub const DISCOVERY_BYTES_MAX: usize = 1 << 20;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// State every request handler shares.
pub struct Shared {
    /// The configuration.
    pub config: Arc<GatewayConfig>,
    /// What the gateway believes of the cluster.
    pub pool: Arc<Pool>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Pooled HTTP/1.1 connections to the nodes.
    pub upstream: Upstream,
    /// Permits for requests in progress (`limits.pending_max`).
    pub pending: Arc<Semaphore>,
    /// Keys for keyless writes.
    pub keys: KeyMaker,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Validates `config`, binds, and starts serving and probing.
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        // The only OS entropy the gateway draws: one seed at start for P2C,
        // backoff jitter and the key prefix.
        let seed: u64 = rand::rngs::SmallRng::from_os_rng().random();
        let pool = Pool::new(config.clone(), metrics.clone(), seed)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(
            config.limits.connect_timeout_ms,
        )));
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            .pool_max_idle_per_host(config.limits.idle_connections_per_node)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let shared = Arc::new(Shared {
            pending: Arc::new(Semaphore::new(config.limits.pending_max)),
            keys: KeyMaker::new(seed.rotate_left(17)),
            config: config.clone(),
            pool,
            metrics,
            upstream,
        });
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
        let listener = CappedListener {
            inner: listener,
            permits: Arc::new(Semaphore::new(config.limits.connections_max)),
        };
        let (stop, stopped) = watch::channel(false);
        let app = router(shared.clone()).into_make_service_with_connect_info::<ClientAddr>();
        let mut stop_rx = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "gateway server failed");
            }
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(probe_supervisor(shared.clone(), stopped.clone()));
        if config.discovery.enabled && config.admin_token.is_some() {
            tasks.spawn(discover(shared.clone(), stopped));
        }
        tracing::info!(%addr, nodes = config.nodes.len(), "gateway listening");
        Ok(Self {
            addr,
            shared,
            stop,
            server,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `/status` document (for embedding and tests).
    pub fn status(&self) -> serde_json::Value {
        self.shared.pool.status(Instant::now())
    }

    /// Runs until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops accepting, lets requests in flight finish (up to
    /// [`SHUTDOWN_GRACE`]), and stops every background task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await;
        self.server.abort();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("gateway stopped");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/gateway/weights", put(set_weight))
        .fallback(forward)
        .with_state(shared)
}

async fn forward(
    State(gw): State<Arc<Shared>>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    req: Request<Body>,
) -> Response {
    proxy::handle(gw, peer, req).await
}

async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(gw): State<Arc<Shared>>) -> Response {
    let eligible = gw.pool.eligible_count(Instant::now());
    if eligible > 0 {
        Json(json!({"status": "ready", "eligible_nodes": eligible})).into_response()
    } else {
        Problem::no_backend().into_response()
    }
}

async fn metrics(State(gw): State<Arc<Shared>>) -> Response {
    gw.pool.refresh_gauges(Instant::now());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}

async fn status(State(gw): State<Arc<Shared>>) -> Response {
    Json(gw.pool.status(Instant::now())).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    node: String,
    weight: u32,
}

async fn set_weight(State(gw): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_admin(&gw.config, &headers) {
        return Problem::unauthorized().into_response();
    }
    let b: WeightBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Problem::validation("body", e.to_string()).into_response(),
    };
    match gw.pool.set_weight(&b.node, b.weight) {
        Ok(()) => Json(gw.pool.status(Instant::now())).into_response(),
        Err(WeightError::UnknownNode) => {
            Problem::not_found(format!("no node {}", b.node)).into_response()
        }
        Err(WeightError::Invalid(e)) => {
            Problem::validation("weight", e.to_string()).into_response()
        }
    }
}

fn is_admin(config: &GatewayConfig, headers: &HeaderMap) -> bool {
    let Some(token) = config.admin_token.as_deref() else {
        return false;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Starts a prober for every node, including nodes discovered later.
async fn probe_supervisor(gw: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_millis(gw.config.health.interval_ms);
    let mut probers = JoinSet::new();
    let mut started = 0;
    loop {
        let nodes = gw.pool.addrs();
        for (node, addr) in nodes.into_iter().skip(started) {
            probers.spawn(probe_node(gw.clone(), node, addr, stopped.clone()));
            started += 1;
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    probers.abort_all();
    while probers.join_next().await.is_some() {}
}

/// Probes one node every `health.interval_ms` until shutdown.
async fn probe_node(
    gw: Arc<Shared>,
    node: NodeIndex,
    addr: String,
    mut stopped: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(gw.config.health.interval_ms);
    let timeout = Duration::from_millis(gw.config.health.timeout_ms);
    // Parsed once: the address and path do not change while it runs.
    let uri = format!("http://{addr}{}", gw.config.health.path)
        .parse::<hyper::Uri>()
        .map_err(|e| format!("bad probe address: {e}"));
    loop {
        let next = tokio::time::Instant::now() + interval;
        let answer = match &uri {
            Ok(uri) => probe(&gw.upstream, uri.clone(), timeout).await,
            Err(e) => Err(ProbeFailure::Other(e.clone())),
        };
        let status = answer.as_ref().map(|(s, _)| *s).map_err(Clone::clone);
        if let Ok((_, Some((hint, term)))) = &answer {
            gw.pool.observe_leader(hint, *term, Instant::now());
        }
        gw.pool.record_probe(node, status, Instant::now());
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

async fn probe(
    upstream: &Upstream,
    uri: hyper::Uri,
    timeout: Duration,
) -> Result<(u16, Option<(String, Option<u64>)>), ProbeFailure> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    let exchange = async {
        let resp = upstream.request(req).await.map_err(|e| {
            if e.is_connect() && refused(&e) {
                ProbeFailure::Refused(format!("connect: {e}"))
            } else {
                ProbeFailure::Other(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let hint = proxy::leader_hint(resp.headers()).map(|(h, t)| (h.to_owned(), t));
        // Drain the small body so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        Ok((status, hint))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ProbeFailure::Other(format!("no answer within {timeout:?}"))),
    }
}

/// Whether an error was caused by a refused connection (not a connect
/// timeout, which a partition also gives and which counts toward `fall`).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Follows the cluster's membership through `/v1/cluster`.
async fn discover(gw: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_millis(gw.config.discovery.interval_ms);
    loop {
        if let Err(e) = discover_once(&gw).await {
            tracing::debug!(error = %e, "membership poll failed");
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn discover_once(gw: &Shared) -> Result<(), String> {
    let token = gw.config.admin_token.as_deref().unwrap_or_default();
    let addr = match gw.pool.leader_addr() {
        Some(a) => a,
        None => gw
            .pool
            .addrs()
            .first()
            .map(|(_, a)| a.clone())
            .ok_or("no node")?,
    };
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = format!("http://{addr}/v1/cluster")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| "admin token is not a valid header value".to_owned())?;
    req.headers_mut().insert(header::AUTHORIZATION, auth);
    let exchange = async {
        let resp = gw.upstream.request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("{addr} answered {}", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), DISCOVERY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let members: Vec<String> = v["members"]
            .as_array()
            .ok_or("no members in /v1/cluster")?
            .iter()
            .filter_map(|m| m["addr"].as_str().map(str::to_owned))
            .collect();
        if members.is_empty() {
            return Err("empty membership".to_owned());
        }
        gw.pool.sync_members(&members);
        Ok(())
    };
    tokio::time::timeout(DISCOVERY_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// The peer address of a client connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, CappedListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// A listener that holds at most `limits.connections_max` client
/// connections: past that, new ones wait in the kernel's listen backlog.
pub struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self.permits.clone().acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        CappedStream {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: back off briefly
                // rather than spin, as axum's own listener does.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A client connection holding its slot under the connection cap.
pub struct CappedStream {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
