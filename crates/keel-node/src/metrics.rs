//! Prometheus metrics of a node. Counters and histograms are updated where
//! the work happens; Raft gauges are read from openraft's metrics at scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a request counter: the route template and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    /// The matched route template, e.g. `/v1/orders/{id}`.
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a per-route histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// The matched route template.
    pub route: String,
}

/// Labels of the role gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Role {
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
}

/// Labels of a per-peer gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Peer {
    /// The peer's node id.
    pub peer: u64,
}

/// Labels of the alert gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// info, warning or critical.
    pub severity: &'static str,
}

/// All metrics of a node.
pub struct Metrics {
    /// Commands per proposed Raft entry.
    pub batch_commands: Histogram,
    /// Writes this node forwarded to the leader: one per forwarded request,
    /// so a `/v1/batch` counts once (retries count again).
    pub forwards: Counter,
    /// Requests by route and status.
    pub requests: Family<RouteStatus, Counter>,
    /// Request latency by route (seconds).
    pub request_seconds: Family<Route, Histogram>,
    /// Log fsync latency (seconds), from the log store.
    pub fsync_seconds: Histogram,
    /// State-machine apply latency per apply call (seconds).
    pub apply_seconds: Histogram,
    /// 1 for the current role, 0 for the others.
    pub role: Family<Role, Gauge>,
    /// Current term.
    pub term: Gauge,
    /// Last log index.
    pub last_log_index: Gauge,
    /// Last committed index known to this node (leader: commit index).
    pub commit_index: Gauge,
    /// Last applied index.
    pub applied_index: Gauge,
    /// Current leader id (0 when unknown).
    pub leader_id: Gauge,
    /// Each peer's wall clock minus this node's, at its latest reading (ms).
    pub clock_offset: Family<Peer, Gauge>,
    /// Median of this node's offset from the voters it measured, itself
    /// included (ms; positive when this node is ahead).
    pub clock_offset_from_majority_ms: Gauge,
    /// 1 while this node's clock agrees with a majority's (it may lead).
    pub clock_ok: Gauge,
    /// Snapshot chunks this node has received from a leader (counted as
    /// each arrives, before it is checked or installed).
    pub snapshot_chunks_received: Counter,
    /// Snapshots this node has installed from a leader.
    pub snapshots_installed: Counter,
    /// Each follower's distance behind the leader's last log index (on the
    /// leader only; entries).
    pub replication_lag: Family<Peer, Gauge>,
    /// Commands queued in the proposer, not yet proposed.
    pub proposer_queued: Gauge,
    /// Orders, payments and revenue (see [`crate::business`]).
    pub business: crate::business::BusinessMetrics,
    /// Process, host and data-directory figures.
    pub host: keel_host::HostMetrics,
    /// Latencies since the watch's last sample ([`crate::watch`]).
    pub windows: crate::windows::Windows,
    /// Alerts open now, by severity.
    pub alerts_active: Family<SeverityLabel, Gauge>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keel");
        let batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "batch_commands",
            "Commands per proposed Raft entry",
            batch_commands.clone(),
        );
        let forwards = Counter::default();
        registry.register(
            "forwarded_writes",
            "Write requests forwarded to the leader (a batch is one)",
            forwards.clone(),
        );
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_seconds = Family::<Route, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            request_seconds.clone(),
        );
        let fsync_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        registry.register(
            "log_fsync_seconds",
            "Raft log append+fsync latency",
            fsync_seconds.clone(),
        );
        let apply_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        registry.register(
            "apply_seconds",
            "State machine apply latency per apply call",
            apply_seconds.clone(),
        );
        let role = Family::<Role, Gauge>::default();
        registry.register(
            "raft_role",
            "1 for this node's current Raft role",
            role.clone(),
        );
        let term = Gauge::default();
        registry.register("raft_term", "Current Raft term", term.clone());
        let last_log_index = Gauge::default();
        registry.register(
            "raft_last_log_index",
            "Last log index",
            last_log_index.clone(),
        );
        let commit_index = Gauge::default();
        registry.register(
            "raft_commit_index",
            "Last log index this node knows committed (as its log store last saved it)",
            commit_index.clone(),
        );
        let applied_index = Gauge::default();
        registry.register("raft_applied_index", "Applied index", applied_index.clone());
        let leader_id = Gauge::default();
        registry.register(
            "raft_leader_id",
            "Current leader id, 0 if unknown",
            leader_id.clone(),
        );
        let clock_offset = Family::<Peer, Gauge>::default();
        registry.register(
            "clock_offset_ms",
            "Peer's wall clock minus this node's at the latest reading",
            clock_offset.clone(),
        );
        let clock_offset_from_majority_ms = Gauge::default();
        registry.register(
            "clock_offset_from_majority_ms",
            "Median offset of this node's clock from the voters' (positive: ahead)",
            clock_offset_from_majority_ms.clone(),
        );
        let clock_ok = Gauge::default();
        registry.register(
            "clock_ok",
            "1 while this node's clock agrees with a majority's and it may lead",
            clock_ok.clone(),
        );
        let snapshot_chunks_received = Counter::default();
        registry.register(
            "snapshot_chunks_received",
            "Snapshot chunks received from a leader, counted on arrival",
            snapshot_chunks_received.clone(),
        );
        let snapshots_installed = Counter::default();
        registry.register(
            "snapshots_installed",
            "Snapshots received from a leader and installed",
            snapshots_installed.clone(),
        );
        let replication_lag = Family::<Peer, Gauge>::default();
        registry.register(
            "raft_replication_lag_entries",
            "Leader's last log index minus what each follower holds (on the leader)",
            replication_lag.clone(),
        );
        let proposer_queued = Gauge::default();
        registry.register(
            "proposer_queued_commands",
            "Commands queued in the proposer, not yet proposed",
            proposer_queued.clone(),
        );
        let business = crate::business::BusinessMetrics::default();
        business.register(&mut registry);
        let host = keel_host::HostMetrics::new();
        host.register(&mut registry);
        let alerts_active = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "alerts_active",
            "Alerts open now, by severity (GET /v1/alerts)",
            alerts_active.clone(),
        );
        Self {
            windows: crate::windows::Windows::default(),
            alerts_active,
            replication_lag,
            proposer_queued,
            business,
            host,
            batch_commands,
            forwards,
            requests,
            request_seconds,
            fsync_seconds,
            apply_seconds,
            role,
            term,
            last_log_index,
            commit_index,
            applied_index,
            leader_id,
            clock_offset,
            clock_offset_from_majority_ms,
            clock_ok,
            snapshot_chunks_received,
            snapshots_installed,
            registry,
        }
    }

    /// The offset gauge of `peer`.
    pub fn clock_offset_ms(&self, peer: u64) -> Gauge {
        self.clock_offset.get_or_create(&Peer { peer }).clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
