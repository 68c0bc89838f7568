//! The gateway's lifecycle: bind, serve (its own routes and the proxy),
//! probe every node, follow the membership, and stop it all on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put, MethodRouter};
use axum::{Json, Router};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::availability::AvailabilityReport;
use crate::backup_view::{BackupRepo, BackupRepoError};
use crate::config::GatewayConfig;
use crate::dashboard::{self, assets};
use crate::dashboard_state::DashboardState;
use crate::metrics::Metrics;
use crate::pool::{Class, Pool, ProbeFailure, WeightError};
use crate::problem::Problem;
use crate::proxy::{self, Client};
use crate::shared::{node_request, GatewayTls, KeyMaker, LiveAvailability, PendingCap, Shared};
use crate::{ConfigError, NodeIndex};
use keel_http_client::ConnPool;
use keel_http_server::{ConnectionSlots, ServeLimits};

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How much longer than [`SHUTDOWN_GRACE`] shutdown waits for the worker
/// threads to wind down before leaving them behind.
pub const WORKER_STOP_MARGIN: Duration = Duration::from_secs(1);
/// How long idle pooled connections to nodes are kept.
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a membership poll may take.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/v1/cluster` reply the discovery poll reads.
pub const DISCOVERY_BYTES_MAX: usize = 1 << 20;
/// Largest probe reply read (a `/readyz` document is a few hundred bytes).
pub const PROBE_BYTES_MAX: usize = 64 << 10;
/// Longest wait for a node to say who a credential stands for.
pub const WHOAMI_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/v1/whoami` answer read.
pub const WHOAMI_BYTES_MAX: usize = 4 << 10;
/// Longest a client connection may sit between requests, or take to send a
/// request's head, before the gateway closes it: nginx's `keepalive_timeout`
/// (75 s). With the connection cap it bounds what idle or slow-loris
/// clients hold; the body has `limits.body_timeout_ms`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The TLS files could not be read.
    #[error("TLS: {0}")]
    Tls(#[from] keel_tls::TlsError),
    /// The dashboard's backup repository cannot be opened.
    #[error(transparent)]
    BackupRepo(#[from] BackupRepoError),
    /// The gateway's alert watches do not check.
    #[error("alert watches: {0}")]
    Alerts(#[from] keel_alert::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Most connections a listening socket queues before they are accepted.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// One per worker thread, completed when it has stopped serving.
    workers: Vec<oneshot::Receiver<()>>,
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
        let repo = match &config.dashboard.backup_repo {
            Some(dir) => Some(BackupRepo::open(
                dir.clone(),
                config.dashboard.backup_key_file.as_deref(),
            )?),
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some(GatewayTls {
                server: Arc::new(keel_tls::ServerTls::load(t.clone())?),
                client: Arc::new(keel_tls::ClientTls::anonymous(t.ca.clone())?),
            }),
            None => None,
        };
        let shared = Arc::new(Shared {
            tls: tls.clone(),
            pending: Arc::new(PendingCap::new(config.limits.pending_max)),
            keys: Arc::new(KeyMaker::new(seed.rotate_left(17))),
            series: Arc::new(Class::ALL.map(|c| metrics.class_series(c.label()))),
            config: config.clone(),
            pool,
            metrics,
            upstream: upstream_pool(&config, tls.as_ref()),
            availability: Arc::new(LiveAvailability::default()),
            dashboard: Arc::new(DashboardState::new(repo)?),
        });
        let (stop, stopped) = watch::channel(false);
        let slots = ConnectionSlots::new(config.limits.connections_max);
        // The first worker binds the asked address (maybe port 0); the
        // others bind the address it got, sharing it by SO_REUSEPORT.
        let mut addr = config.listen;
        let mut workers = Vec::new();
        for i in 0..config.worker_count() {
            let started = spawn_worker(i, addr, &shared, slots.clone(), stopped.clone());
            match started.await {
                Ok((bound, done)) => {
                    addr = bound;
                    workers.push(done);
                }
                Err(e) => {
                    // Stops the workers already serving.
                    let _ = stop.send(true);
                    return Err(e);
                }
            }
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(probe_supervisor(shared.clone(), stopped.clone()));
        tasks.spawn(dashboard::sample(shared.clone(), stopped.clone()));
        if config.discovery.enabled && config.admin_token.is_some() {
            tasks.spawn(discover(shared.clone(), stopped));
        }
        tracing::info!(%addr, nodes = config.nodes.len(), workers = workers.len(), "gateway listening");
        Ok(Self {
            addr,
            shared,
            stop,
            workers,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether clients are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The `/status` document (for embedding and tests).
    pub fn status(&self) -> serde_json::Value {
        self.shared.pool.status(Instant::now())
    }

    /// The `/gateway/availability` document as of now (for embedding and
    /// tests).
    pub fn availability(&self) -> AvailabilityReport {
        self.shared
            .availability
            .lock()
            .report(keel_protocol::wall_ms())
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
        // Each worker drops its connections itself once SHUTDOWN_GRACE has
        // passed; the margin covers its runtime winding down.
        let workers = all_stopped(std::mem::take(&mut self.workers));
        if tokio::time::timeout(SHUTDOWN_GRACE + WORKER_STOP_MARGIN, workers)
            .await
            .is_err()
        {
            tracing::warn!("a gateway worker did not stop in time");
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("gateway stopped");
    }
}

/// Waits for every worker's completion signal (a dropped sender counts).
async fn all_stopped(workers: Vec<oneshot::Receiver<()>>) {
    for w in workers {
        let _ = w.await;
    }
}

/// The node connections of one runtime.
fn upstream_pool(config: &GatewayConfig, tls: Option<&GatewayTls>) -> ConnPool {
    ConnPool::new(
        config.limits.idle_connections_per_node,
        UPSTREAM_IDLE_TIMEOUT,
        Duration::from_millis(config.limits.connect_timeout_ms),
    )
    .with_tls(tls.map(|t| t.client.clone()))
}

/// A listening socket on `addr` that other workers may bind too.
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Starts worker `i`: a thread with a single-threaded runtime that binds
/// `addr` and serves clients until `stopped`, proxying with node
/// connections of its own. Resolves to the bound address and a receiver
/// completed once the worker has stopped.
fn spawn_worker(
    i: usize,
    addr: SocketAddr,
    shared: &Arc<Shared>,
    slots: ConnectionSlots,
    stopped: watch::Receiver<bool>,
) -> impl Future<Output = Result<(SocketAddr, oneshot::Receiver<()>), GatewayError>> {
    let gw = Arc::new(Shared {
        config: shared.config.clone(),
        pool: shared.pool.clone(),
        metrics: shared.metrics.clone(),
        upstream: upstream_pool(&shared.config, shared.tls.as_ref()),
        tls: shared.tls.clone(),
        pending: shared.pending.clone(),
        keys: shared.keys.clone(),
        series: shared.series.clone(),
        availability: shared.availability.clone(),
        dashboard: shared.dashboard.clone(),
    });
    let (bound_tx, bound_rx) = oneshot::channel::<std::io::Result<SocketAddr>>();
    let (done_tx, done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("keel-gateway-{i}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind_shared(addr).and_then(|l| Ok((l.local_addr()?, l))) {
                    Ok((bound, l)) => {
                        let _ = bound_tx.send(Ok(bound));
                        l
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                serve(listener, slots, gw, stopped).await;
            });
            let _ = done_tx.send(());
        });
    async move {
        let bind_error = |source| GatewayError::Bind { addr, source };
        spawned.map_err(bind_error)?;
        match bound_rx.await {
            Ok(Ok(bound)) => Ok((bound, done_rx)),
            Ok(Err(e)) => Err(bind_error(e)),
            Err(_) => Err(bind_error(std::io::Error::other(
                "the worker thread ended before binding",
            ))),
        }
    }
}

/// Serves clients until shutdown (`keel_http_server`): each connection on a
/// task of its own that also proxies its requests, at most
/// `limits.connections_max` at once across all workers (`slots`).
async fn serve(
    listener: TcpListener,
    slots: ConnectionSlots,
    gw: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    let own = Arc::new(OwnRoutes::new(gw.clone()));
    let gw_tls = gw.tls.as_ref().map(|t| t.server.clone());
    let limits = ServeLimits {
        connections: slots,
        header_read_timeout: HEADER_READ_TIMEOUT,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let make = move |peer: keel_http_server::Peer| {
        let (gw, own, client) = (gw.clone(), own.clone(), Client::new(peer.addr));
        service_fn(move |req: Request<Incoming>| {
            // The gateway's own routes go to its router; everything else is
            // proxied.
            let own = own.paths.contains(&req.uri().path()).then(|| own.clone());
            let (gw, client) = (gw.clone(), client.clone());
            async move {
                Ok::<_, Infallible>(match own {
                    Some(own) => own.router.clone().oneshot(req.map(Body::new)).await?,
                    None => proxy::handle(gw, &client, req).await,
                })
            }
        })
    };
    let tls = gw_tls;
    keel_http_server::serve(listener, limits, tls, make, stopped).await;
}

/// The gateway's own routes: a router, and the paths it serves (every other
/// path is proxied), built from one table so they cannot drift apart.
struct OwnRoutes {
    router: Router,
    paths: Vec<&'static str>,
}

impl OwnRoutes {
    fn new(shared: Arc<Shared>) -> Self {
        let routes: [(&'static str, MethodRouter<Arc<Shared>>); 13] = [
            ("/healthz", get(healthz)),
            ("/readyz", get(readyz)),
            ("/metrics", get(metrics)),
            ("/status", get(status)),
            ("/gateway/weights", put(set_weight)),
            ("/gateway/availability", get(availability)),
            ("/gateway/alerts", get(gateway_alerts)),
            ("/gateway/dashboard", get(dashboard_data)),
            ("/dashboard", get(assets::page)),
            ("/dashboard/app.js", get(assets::app_js)),
            ("/dashboard/app.css", get(assets::app_css)),
            ("/dashboard/uplot.js", get(assets::uplot_js)),
            ("/dashboard/uplot.css", get(assets::uplot_css)),
        ];
        let paths = routes.iter().map(|(path, _)| *path).collect();
        let router = routes
            .into_iter()
            .fold(Router::new(), |r, (path, handler)| r.route(path, handler));
        Self {
            router: router.with_state(shared),
            paths,
        }
    }
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
    gw.metrics.sample_host();
    gw.metrics
        .availability
        .refresh(&gw.availability.lock(), keel_protocol::wall_ms());
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
    if !may_operate(&gw, &headers).await {
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

async fn availability(State(gw): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !may_observe(&gw, &headers).await {
        return Problem::unauthorized().into_response();
    }
    let report = gw.availability.lock().report(keel_protocol::wall_ms());
    Json(report).into_response()
}

/// The gateway's own alerts: what its clients see (p99 latency, 5xx
/// share) and the cluster's order rate, judged by `keel-alert`.
async fn gateway_alerts(State(gw): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !may_observe(&gw, &headers).await {
        return Problem::unauthorized().into_response();
    }
    Json(gw.dashboard.alerts()).into_response()
}

async fn dashboard_data(State(gw): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !may_observe(&gw, &headers).await {
        return Problem::unauthorized().into_response();
    }
    // may_observe found a readable Authorization header.
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let report = dashboard::report(&gw, auth).await;
    ([(header::CACHE_CONTROL, "no-store")], Json(report)).into_response()
}

/// Roles that may change the gateway's own settings (weights).
const OPERATE_ROLES: &[&str] = &["admin", "operator"];
/// Roles that may read what the gateway measured (availability, the
/// dashboard's data): those
/// who operate it, and support staff, who answer customers asking whether
/// the shop was down and change nothing here.
const OBSERVE_ROLES: &[&str] = &["admin", "operator", "support"];

/// Whether the caller may change the gateway's own settings (weights).
async fn may_operate(gw: &Shared, headers: &HeaderMap) -> bool {
    caller_has_role(gw, headers, OPERATE_ROLES).await
}

/// Whether the caller may read the gateway's measurements (availability).
async fn may_observe(gw: &Shared, headers: &HeaderMap) -> bool {
    caller_has_role(gw, headers, OBSERVE_ROLES).await
}

/// Whether the caller presents the gateway's admin token, or a credential
/// the cluster's nodes say stands for one of `roles` (an API key), asked of
/// the leader (or the first node) through `/v1/whoami` within
/// [`WHOAMI_TIMEOUT`].
async fn caller_has_role(gw: &Shared, headers: &HeaderMap, roles: &[&str]) -> bool {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let own = gw.config.admin_token.as_deref().is_some_and(|token| {
        auth.strip_prefix("Bearer ")
            .is_some_and(|t| keel_protocol::constant_time_eq(t.as_bytes(), token.as_bytes()))
    });
    if own {
        return true;
    }
    let Some(addr) = gw
        .pool
        .leader_addr()
        .or_else(|| gw.pool.addrs().first().map(|(_, a)| a.clone()))
    else {
        return false;
    };
    let Ok(req) = node_request(&addr, "/v1/whoami", Some(auth)) else {
        return false;
    };
    let ask = gw.upstream.exchange(&addr, req, WHOAMI_BYTES_MAX);
    let Ok(Ok(resp)) = tokio::time::timeout(WHOAMI_TIMEOUT, ask).await else {
        return false;
    };
    if resp.status() != StatusCode::OK {
        return false;
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.into_body()).unwrap_or_default();
    v["role"].as_str().is_some_and(|r| roles.contains(&r))
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
    loop {
        let next = tokio::time::Instant::now() + interval;
        let answer = probe(&gw, &addr, timeout).await;
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
    gw: &Shared,
    addr: &str,
    timeout: Duration,
) -> Result<(u16, Option<(String, Option<u64>)>), ProbeFailure> {
    let req = node_request(addr, &gw.config.health.path, None)
        .map_err(|e| ProbeFailure::Other(format!("bad probe address: {e}")))?;
    match tokio::time::timeout(timeout, gw.upstream.exchange(addr, req, PROBE_BYTES_MAX)).await {
        Ok(Ok(resp)) => {
            let hint = proxy::leader_hint(resp.headers()).map(|(h, t)| (h.to_owned(), t));
            Ok((resp.status().as_u16(), hint))
        }
        Ok(Err(e)) if e.refused() => Err(ProbeFailure::Refused(e.to_string())),
        Ok(Err(e)) => Err(ProbeFailure::Other(e.to_string())),
        Err(_) => Err(ProbeFailure::Other(format!("no answer within {timeout:?}"))),
    }
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
    let req = node_request(&addr, "/v1/cluster", Some(&format!("Bearer {token}")))
        .map_err(|e| format!("bad membership request: {e}"))?;
    let exchange = async {
        let resp = gw
            .upstream
            .exchange(&addr, req, DISCOVERY_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("{addr} answered {}", resp.status()));
        }
        let body = resp.into_body();
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
