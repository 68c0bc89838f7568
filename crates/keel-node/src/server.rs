//! Node lifecycle: open storage, start Raft, serve HTTP (the public API of
//! [`crate::http`] and the internal RPC of [`crate::rpc_server`] on one
//! port), run the leader's expiry ticker, and stop every task on shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::sync::watch;
use tower::ServiceExt;

use keel_domain::{Command, Envelope, Principal, RequestId};
use keel_store::NodeId;

use crate::clock::ClockGuard;
use crate::config::{ConfigError, NodeConfig};
use crate::http::auth::Api;
use crate::metrics::Metrics;
use crate::node::{Node, NodeParts};
use crate::proposer::Proposer;
use crate::rpc::{NetworkFactory, PeerClient};
use crate::rpc_server::{ConnectedPeer, RpcState};
use crate::signals::ElectionSignals;

/// How often the leader looks for reservations due to expire.
pub const EXPIRE_TICK: Duration = Duration::from_millis(250);
/// How far the state clock may lag the leader's before the leader ticks it
/// forward with an entry of its own (ms). Deadlines count from the leader's
/// time, not the lagging clock (`keel_domain::apply::StateClock`), so a lag
/// delays expiries and pruning but never brings them early; this keeps the
/// delay and the times stamped on new orders within ten seconds in an idle
/// cluster, at one entry per ten idle seconds.
pub const CLOCK_TICK_LAG_MS: u64 = 10_000;
/// Most clock ticks the leader proposes per [`EXPIRE_TICK`] while catching
/// up after an outage: with a minute per entry, about an hour of lag per
/// second.
pub const CLOCK_CATCH_UP_TICKS_MAX: u32 = 16;
/// Longest a snapshot install may take on a follower.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;
/// Most log entries in one AppendEntries. openraft 0.9 bounds every
/// AppendEntries by the heartbeat interval, so a follower catching up must
/// receive, fsync and acknowledge one such message within it: 32 batched
/// entries are a few hundred KiB under load, not the megabytes of the
/// default 300.
pub const APPEND_ENTRIES_MAX: u64 = 32;
/// Longest graceful shutdown waits for in-flight HTTP requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Most HTTP connections a node serves at once (clients, gateways and
/// peers together); more wait in the kernel's listen backlog.
pub const HTTP_CONNECTIONS_MAX: usize = 4_096;
/// Longest a connection may sit between requests, or take to send a
/// request's head, before the node closes it (nginx's keepalive_timeout).
/// Peers and the gateway keep their idle connections for less.
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be opened or is corrupt.
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    /// openraft refused the Raft configuration.
    #[error("raft: {0}")]
    RaftConfig(#[source] openraft::ConfigError),
    /// openraft stopped on a fatal error (a storage failure, or a panic in
    /// its core) while starting or being asked about its state.
    #[error("raft: {0}")]
    RaftFatal(#[source] openraft::error::Fatal<NodeId>),
    /// The cluster could not be initialised with the bootstrap members.
    #[error("raft: {0}")]
    RaftInitialize(
        #[source]
        openraft::error::RaftError<NodeId, openraft::error::InitializeError<NodeId, BasicNode>>,
    ),
    /// openraft's core task ended in a panic when asked to shut down.
    #[error("raft: {0}")]
    RaftShutdown(#[source] tokio::task::JoinError),
    /// Storage failed while running (a failed fsync, a full disk): the node
    /// stopped; restarted once the disk works, it recovers from disk.
    #[error("storage failed, node stopped: {0}")]
    Storage(String),
    /// The TLS files could not be read, or the certificate names another
    /// member.
    #[error("TLS: {0}")]
    Tls(#[from] keel_tls::TlsError),
    /// The listen address could not be bound or the server failed.
    #[error("http server on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A node's TLS: what its listener serves with and what it calls its peers
/// with (its own certificate, naming its member id).
struct NodeTls {
    server: Arc<keel_tls::ServerTls>,
    client: Arc<keel_tls::ClientTls>,
}

/// Checks that the members' list a new cluster is founded with names this
/// node by the address it advertises: that address is what its peers,
/// gateways and clients will be told, and a node listening on `0.0.0.0`
/// cannot be reached there.
fn check_advertised(
    config: &NodeConfig,
    members: &BTreeMap<NodeId, String>,
) -> Result<(), NodeError> {
    let advertised = config.advertised();
    match members.get(&config.id) {
        Some(addr) if *addr == advertised => Ok(()),
        Some(addr) => Err(ConfigError(format!(
            "the members' list names node {} as {addr}, but it advertises {advertised}: set --advertise {addr} (the address the others reach it at)",
            config.id
        ))
        .into()),
        None => Err(ConfigError(format!(
            "the members' list does not name this node ({}); a new cluster's founders must include it",
            config.id
        ))
        .into()),
    }
}

/// Reads the node's TLS files, if it has any, and checks that its
/// certificate names its member id.
fn load_tls(config: &NodeConfig) -> Result<Option<NodeTls>, NodeError> {
    let Some(paths) = &config.tls else {
        if !config.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.listen,
                "serving plaintext outside loopback (--insecure-plaintext): tokens and the cluster secret cross the network in clear"
            );
        }
        return Ok(None);
    };
    keel_tls::check_member_certificate(&paths.cert, config.id)?;
    Ok(Some(NodeTls {
        server: Arc::new(keel_tls::ServerTls::load(paths.clone())?),
        client: Arc::new(keel_tls::ClientTls::with_identity(paths.clone())?),
    }))
}

/// Runs a node until `shutdown` completes. With `bootstrap`, a node whose
/// log is empty initialises a new cluster of exactly those members.
pub async fn run(
    config: NodeConfig,
    bootstrap: Option<BTreeMap<NodeId, String>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.validate()?;
    if let Some(members) = &bootstrap {
        check_advertised(&config, members)?;
    }
    let tls = load_tls(&config)?;
    let (log, sm) = keel_store::open(&config.data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let apply_h = metrics.apply_seconds.clone();
    sm.set_apply_observer(Arc::new(move |d: Duration| {
        apply_h.observe(d.as_secs_f64())
    }));
    let fsync_m = metrics.clone();
    log.set_fsync_observer(Arc::new(move |d: Duration| {
        fsync_m.fsync_seconds.observe(d.as_secs_f64());
        keel_protocol::sync::lock(&fsync_m.windows.fsync).record(d.as_secs_f64(), false);
    }));

    let r = &config.raft;
    let raft_config = openraft::Config {
        cluster_name: "keel".into(),
        heartbeat_interval: r.heartbeat_ms,
        election_timeout_min: r.election_min_ms,
        election_timeout_max: r.election_max_ms,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        // Elections are started by `crate::election`, which draws a fresh
        // timeout every round; openraft's own timer draws one for life.
        enable_elect: false,
        max_payload_entries: APPEND_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries),
        max_in_snapshot_log_to_keep: r.keep_entries_behind_snapshot,
        snapshot_max_chunk_size: r.snapshot_chunk_bytes,
        ..Default::default()
    }
    .validate()
    .map_err(NodeError::RaftConfig)?;

    let peers = PeerClient::new(
        &config.cluster_secret,
        config.id,
        tls.as_ref().map(|t| t.client.clone()),
    );
    let election = ElectionSignals::new();
    let clock = ClockGuard::new(config.clock_offset_max_ms);
    let network = NetworkFactory {
        id: config.id,
        client: peers.clone(),
        election: election.clone(),
    };
    // The node keeps a handle on the log for backups (reads only); openraft
    // owns every write to it.
    let log_reader = log.clone();
    let raft = Raft::new(config.id, Arc::new(raft_config), network, log, sm.clone())
        .await
        .map_err(NodeError::RaftFatal)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (proposer, proposer_task) = Proposer::start(
        raft.clone(),
        config.batch.clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    let node = Arc::new(Node::new(NodeParts {
        config: config.clone(),
        raft: raft.clone(),
        sm: sm.clone(),
        log: log_reader,
        proposer,
        peers: peers.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        election: election.clone(),
        alerts: Arc::new(std::sync::Mutex::new(
            keel_alert::Monitor::new(crate::watch::watches(config.clock_offset_max_ms))
                .map_err(|e| NodeError::Config(crate::config::ConfigError(e.to_string())))?,
        )),
    }));
    let rpc = Arc::new(RpcState {
        node: node.clone(),
        raft: raft.clone(),
        sm,
        election: election.clone(),
        metrics: metrics.clone(),
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Http {
            addr: config.listen.to_string(),
            source,
        })?;
    let app =
        crate::http::router::router(Api::new(node.clone())).merge(crate::rpc_server::router(rpc));
    let limits = keel_http_server::ServeLimits {
        connections: keel_http_server::ConnectionSlots::new(HTTP_CONNECTIONS_MAX),
        header_read_timeout: HTTP_HEADER_READ_TIMEOUT,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    let server = tokio::spawn(keel_http_server::serve(
        listener,
        limits,
        tls.as_ref().map(|t| t.server.clone()),
        move |peer: keel_http_server::Peer| {
            // Each request learns whom its connection is with: the
            // internal endpoints' member check, the public API's client
            // certificate identities and the audit trail's origin.
            let caller = ConnectedPeer(peer.cert);
            let remote = crate::http::auth::RemoteAddr(peer.addr);
            TowerToHyperService::new(app.clone().map_request(
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(caller.clone());
                    req.extensions_mut().insert(remote);
                    req
                },
            ))
        },
        stop_rx.clone(),
    ));
    tracing::info!(
        id = config.id,
        listen = %config.listen,
        advertise = %config.advertised(),
        tls = config.tls.is_some(),
        "node serving"
    );

    if let Some(members) = bootstrap {
        bootstrap_cluster(&raft, members).await?;
    }
    let ticker = tokio::spawn(expiry_ticker(node.clone(), stop_rx.clone()));
    let notify = match &config.alert_webhook {
        Some(url) => {
            let (hook, task) = keel_alert::Webhook::spawn(
                keel_alert::WebhookConfig::new(url),
                tls.as_ref().map(|t| t.client.clone()),
                stop_rx.clone(),
            )
            .map_err(|e| {
                NodeError::Config(crate::config::ConfigError(format!("alert_webhook: {e}")))
            })?;
            Some((hook, task))
        }
        None => None,
    };
    let (notify, notify_task) = match notify {
        Some((h, t)) => (Some(h), Some(t)),
        None => (None, None),
    };
    let watcher = tokio::spawn(crate::watch::run(node.clone(), notify, stop_rx.clone()));
    let elector = tokio::spawn(crate::election::run(
        config.id,
        raft.clone(),
        election,
        clock.clone(),
        (r.election_min_ms, r.election_max_ms),
        stop_rx.clone(),
    ));
    let clock_prober = tokio::spawn(crate::clock::run(
        config.id,
        raft.clone(),
        peers,
        clock,
        metrics,
        stop_rx.clone(),
    ));

    // A storage failure (a failed fsync, a full disk) stops openraft for
    // good, and redb refuses every later write to a database whose commit
    // failed: after a failed fsync nothing says what reached the disk (the
    // kernel may have dropped the pages). So the node stops and says why; a
    // restart (its supervisor's) recovers from what is durable, once the
    // disk works again. Nothing unpersisted was acknowledged: only a
    // completed fsync lets openraft count this node.
    let fatal = tokio::select! {
        () = shutdown => None,
        f = raft_fatal(&raft) => Some(f),
    };
    match &fatal {
        None => tracing::info!(id = config.id, "shutting down"),
        Some(why) => tracing::error!(
            id = config.id,
            error = %why,
            "storage failed: the node stops; restart it once the disk works, and it recovers from what is on disk"
        ),
    }
    let _ = stop_tx.send(true);
    // The server itself gives requests in flight SHUTDOWN_GRACE.
    let _ = server.await;
    let _ = ticker.await;
    let _ = elector.await;
    let _ = clock_prober.await;
    let _ = watcher.await;
    if let Some(t) = notify_task {
        let _ = t.await;
    }
    let _ = proposer_task.await;
    let stopped = raft.shutdown().await;
    if let Some(why) = fatal {
        return Err(NodeError::Storage(why));
    }
    stopped.map_err(NodeError::RaftShutdown)?;
    Ok(())
}

/// Completes with the reason once openraft has stopped on a fatal error
/// (a storage failure, or a panic in its core).
async fn raft_fatal(raft: &Raft<keel_store::TypeConfig>) -> String {
    let mut rx = raft.metrics();
    loop {
        if let Err(f) = &rx.borrow_and_update().running_state {
            return f.to_string();
        }
        if rx.changed().await.is_err() {
            return "raft stopped".into();
        }
    }
}

async fn bootstrap_cluster(
    raft: &Raft<keel_store::TypeConfig>,
    members: BTreeMap<NodeId, String>,
) -> Result<(), NodeError> {
    if raft.is_initialized().await.map_err(NodeError::RaftFatal)? {
        return Ok(());
    }
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect();
    match raft.initialize(nodes).await {
        Ok(()) => Ok(()),
        // Another start already initialised this log: nothing to do.
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => Ok(()),
        Err(e) => Err(NodeError::RaftInitialize(e)),
    }
}

/// The leader proposes `ExpireDue` with its own time when a reservation is
/// due; every replica then expires exactly the same orders at the same log
/// position. Followers do nothing: their clocks decide nothing.
///
/// The same command is the leader's clock tick: when the state clock lags
/// the leader's by more than [`CLOCK_TICK_LAG_MS`] (an idle cluster, or one
/// back from an outage, whose clock moves at most
/// `keel_domain::apply::CLOCK_STEP_MAX_MS` per entry), it is proposed even
/// with nothing due, up to [`CLOCK_CATCH_UP_TICKS_MAX`] times per tick.
async fn expiry_ticker(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRE_TICK) => {}
            _ = stop.changed() => return,
        }
        if !node.leads_with_agreed_clock() {
            continue;
        }
        let mut ticks = 0;
        loop {
            let now = keel_protocol::wall_ms();
            let (due, clock) = node.expiry_view().await;
            let lagging = clock != 0 && now > clock.saturating_add(CLOCK_TICK_LAG_MS);
            let is_due = matches!(due, Some(t) if t <= now);
            let tick = lagging && ticks < CLOCK_CATCH_UP_TICKS_MAX;
            if !(is_due || tick) {
                break;
            }
            ticks += 1;
            n += 1;
            let Ok(request_id) = RequestId::new(format!("expire-{}-{now}-{n}", node.id())) else {
                break;
            };
            let env = Envelope {
                request_id,
                principal: Principal::System,
                origin: None,
                command: Command::ExpireDue { now_ms: now },
            };
            let more = match node.submit(env).await {
                Ok(a) => matches!(
                    a.result,
                    Ok(keel_domain::Outcome::Expired { more_due: true, .. })
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "expire_due not applied; will retry");
                    break;
                }
            };
            if !(more || lagging) || *stop.borrow() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_founder_must_be_named_by_the_address_it_advertises() {
        let members: BTreeMap<NodeId, String> = [
            (1, "keel-1.shop.example:7101".to_owned()),
            (2, "keel-2.shop.example:7101".to_owned()),
        ]
        .into();
        let wildcard = NodeConfig {
            listen: "0.0.0.0:7101".parse().unwrap(),
            insecure_plaintext: true,
            ..NodeConfig::default()
        };
        let e = check_advertised(&wildcard, &members)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--advertise keel-1.shop.example:7101"), "{e}");
        let advertised = NodeConfig {
            advertise: Some("keel-1.shop.example:7101".into()),
            ..wildcard.clone()
        };
        check_advertised(&advertised, &members).unwrap();
        let stranger = NodeConfig {
            id: 3,
            ..advertised
        };
        assert!(check_advertised(&stranger, &members).is_err());
    }
}
