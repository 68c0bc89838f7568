//! Prometheus metrics of the gateway: counters and histograms are updated
//! where the work happens; per-node gauges are refreshed from the pool, and
//! the availability series from the availability tracker, at scrape time,
//! so they are never stale by more than one scrape. The process and host
//! series (`keel-host`) are sampled at scrape time too, and written under
//! the same names a node writes them (`keel_process_cpu_seconds_total`):
//! the registry's root has the prefix `keel`, the gateway's own series
//! live in its `gateway` sub-registry (`keel_gateway_requests_total`).

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

use keel_host::{HostMetrics, HostSampler};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::availability::{Availability, Window};

/// Labels: request class and the status the client got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassStatus {
    /// `write`, `linearizable_read`, `local_read` or `gateway`.
    pub class: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels: request class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// `write`, `linearizable_read` or `local_read`.
    pub class: &'static str,
}

/// Labels: a node and what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeEvent {
    /// The node's address.
    pub node: String,
    /// What happened (`ok`, `refused`, `timeout`, `lost`, `unavailable`,
    /// `up`, `down`, ...).
    pub event: &'static str,
}

/// Labels: a node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node's address.
    pub node: String,
}

/// Labels: a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why (`refused`, `timeout`, `unavailable`, `overloaded`, ...).
    pub reason: &'static str,
}

/// Labels: an availability window.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabel {
    /// `1m`, `5m`, `1h` or `all` ([`Window::label`]).
    pub window: &'static str,
}

/// All metrics of a gateway.
pub struct Metrics {
    /// Client requests by class and final status.
    pub requests: Family<ClassStatus, Counter>,
    /// Client request latency by class, all attempts included (seconds).
    pub request_seconds: Family<ClassLabel, Histogram>,
    /// Attempts sent to nodes by node and outcome.
    pub attempts: Family<NodeEvent, Counter>,
    /// Retries by the reason of the failed attempt.
    pub retries: Family<Reason, Counter>,
    /// Requests refused by the gateway itself, by reason.
    pub rejected: Family<Reason, Counter>,
    /// Health state changes by node and new state (`up`, `down`).
    pub health_transitions: Family<NodeEvent, Counter>,
    /// Outlier ejections by node.
    pub ejections: Family<NodeLabel, Counter>,
    /// Circuit breaker openings by node.
    pub breaker_opens: Family<NodeLabel, Counter>,
    /// Times the gateway learnt of a different leader.
    pub leader_changes: Counter,
    /// 1 when the node may receive traffic (healthy, trusted, not ejected,
    /// breaker not open).
    pub node_eligible: Family<NodeLabel, Gauge>,
    /// 1 when the node passes its active health checks.
    pub node_up: Family<NodeLabel, Gauge>,
    /// The node's phi-accrual suspicion level.
    pub node_phi: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    /// Requests in flight to the node.
    pub node_outstanding: Family<NodeLabel, Gauge>,
    /// 1 for the node the gateway believes leads.
    pub node_leader: Family<NodeLabel, Gauge>,
    /// The availability series, refreshed at scrape time.
    pub availability: AvailabilitySeries,
    host: HostMetrics,
    /// Reads `/proc`; its previous CPU reading gives the busy ratio.
    host_sampler: Mutex<HostSampler>,
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
        let mut root = Registry::with_prefix(keel_host::REGISTRY_PREFIX);
        let host = HostMetrics::new();
        host.register(&mut root);
        let r = root.sub_registry_with_prefix("gateway");
        let requests = Family::<ClassStatus, Counter>::default();
        r.register(
            "requests",
            "Client requests by class and status",
            requests.clone(),
        );
        let request_seconds = Family::<ClassLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
        });
        r.register(
            "request_seconds",
            "Client request latency by class, retries included",
            request_seconds.clone(),
        );
        let attempts = Family::<NodeEvent, Counter>::default();
        r.register(
            "upstream_attempts",
            "Attempts sent to nodes by outcome",
            attempts.clone(),
        );
        let retries = Family::<Reason, Counter>::default();
        r.register("retries", "Retries by reason", retries.clone());
        let rejected = Family::<Reason, Counter>::default();
        r.register(
            "rejected",
            "Requests refused by the gateway by reason",
            rejected.clone(),
        );
        let health_transitions = Family::<NodeEvent, Counter>::default();
        r.register(
            "health_transitions",
            "Node health changes by new state",
            health_transitions.clone(),
        );
        let ejections = Family::<NodeLabel, Counter>::default();
        r.register("ejections", "Outlier ejections", ejections.clone());
        let breaker_opens = Family::<NodeLabel, Counter>::default();
        r.register(
            "breaker_opens",
            "Circuit breaker openings",
            breaker_opens.clone(),
        );
        let leader_changes = Counter::default();
        r.register(
            "leader_changes",
            "Times a different leader was learnt",
            leader_changes.clone(),
        );
        let node_eligible = Family::<NodeLabel, Gauge>::default();
        r.register(
            "node_eligible",
            "1 if the node may receive traffic",
            node_eligible.clone(),
        );
        let node_up = Family::<NodeLabel, Gauge>::default();
        r.register(
            "node_up",
            "1 if the node passes health checks",
            node_up.clone(),
        );
        let node_phi = Family::<NodeLabel, Gauge<f64, AtomicU64>>::default();
        r.register(
            "node_phi",
            "Phi-accrual suspicion of the node",
            node_phi.clone(),
        );
        let node_outstanding = Family::<NodeLabel, Gauge>::default();
        r.register(
            "node_outstanding",
            "Requests in flight to the node",
            node_outstanding.clone(),
        );
        let node_leader = Family::<NodeLabel, Gauge>::default();
        r.register(
            "node_leader",
            "1 for the believed leader",
            node_leader.clone(),
        );
        let availability = AvailabilitySeries::register(r);
        Self {
            requests,
            request_seconds,
            attempts,
            retries,
            rejected,
            health_transitions,
            ejections,
            breaker_opens,
            leader_changes,
            node_eligible,
            node_up,
            node_phi,
            node_outstanding,
            node_leader,
            availability,
            host,
            // A gateway has no data directory.
            host_sampler: Mutex::new(HostSampler::new(None)),
            registry: root,
        }
    }

    /// The per-request series of the request class labelled `class`.
    pub fn class_series(&self, class: &'static str) -> ClassSeries {
        ClassSeries {
            class,
            requests: self.requests.clone(),
            seconds: self
                .request_seconds
                .get_or_create(&ClassLabel { class })
                .clone(),
            by_status: (STATUS_MIN..=STATUS_MAX).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Reads the process and host figures for the next scrape.
    pub fn sample_host(&self) {
        let sample = keel_protocol::sync::lock(&self.host_sampler).sample();
        self.host.update(&sample);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Availability as clients saw it (`crate::availability`), set from the
/// tracker at scrape time.
pub struct AvailabilitySeries {
    /// `1 - failures / requests` by window.
    pub ratio: Family<WindowLabel, Gauge<f64, AtomicU64>>,
    /// Failures per thousand requests by window.
    pub failures_per_thousand: Family<WindowLabel, Gauge<f64, AtomicU64>>,
    /// Outages started (`keel_gateway_outages_total`).
    pub outages: Counter,
    /// The latest closed outage's time to recover; 0 before the first.
    pub last_recovery_seconds: Gauge<f64, AtomicU64>,
    /// 1 while an outage is going on.
    pub outage_open: Gauge,
}

impl AvailabilitySeries {
    fn register(r: &mut Registry) -> Self {
        let s = Self {
            ratio: Family::default(),
            failures_per_thousand: Family::default(),
            outages: Counter::default(),
            last_recovery_seconds: Gauge::default(),
            outage_open: Gauge::default(),
        };
        r.register(
            "availability_ratio",
            "Share of client requests not failed server-side, by window",
            s.ratio.clone(),
        );
        r.register(
            "failures_per_thousand",
            "Client requests failed server-side per thousand, by window",
            s.failures_per_thousand.clone(),
        );
        r.register(
            "outages",
            "Outages seen by clients: from a failed request to the next success",
            s.outages.clone(),
        );
        r.register(
            "last_recovery_seconds",
            "Time to recover of the latest ended outage",
            s.last_recovery_seconds.clone(),
        );
        r.register(
            "outage_open",
            "1 while an outage is going on",
            s.outage_open.clone(),
        );
        s
    }

    /// Sets every series from `a` as of `now_ms`. The caller holds the
    /// tracker's lock, so concurrent scrapes bring the outage counter up
    /// to the tracker's count one after the other, never past it.
    pub fn refresh(&self, a: &Availability, now_ms: u64) {
        for w in Window::ALL {
            let c = a.counts(w, now_ms);
            let label = WindowLabel { window: w.label() };
            self.ratio.get_or_create(&label).set(c.availability());
            self.failures_per_thousand
                .get_or_create(&label)
                .set(c.failures_per_thousand());
        }
        let behind = a.outages_total().saturating_sub(self.outages.get());
        self.outages.inc_by(behind);
        let last_ms = a.last_recovery_ms().unwrap_or(0);
        self.last_recovery_seconds.set(last_ms as f64 / 1000.0);
        self.outage_open
            .set(i64::from(a.open_outage(now_ms).is_some()));
    }
}

/// The lowest and highest status a [`ClassSeries`] keeps a counter of at
/// hand: every status HTTP defines. Others are looked up in the family.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 599;

/// The per-request series of one request class (`requests` by status and
/// `request_seconds`), looked up once: recording a request then costs the
/// metrics' own atomic adds, not a read lock and a hash lookup in each
/// family, on a path every request of every worker takes.
pub struct ClassSeries {
    class: &'static str,
    requests: Family<ClassStatus, Counter>,
    seconds: Histogram,
    /// `requests{class, status}`, indexed by `status - STATUS_MIN`, each
    /// looked up in the family the first time that status is recorded (so a
    /// status never answered has no series, as before).
    by_status: Box<[OnceLock<Counter>]>,
}

impl ClassSeries {
    /// Records a request of this class answered with `status` after
    /// `seconds`.
    pub fn record(&self, status: u16, seconds: f64) {
        self.seconds.observe(seconds);
        let label = || ClassStatus {
            class: self.class,
            status,
        };
        let at_hand = status
            .checked_sub(STATUS_MIN)
            .and_then(|i| self.by_status.get(usize::from(i)));
        match at_hand {
            Some(c) => c
                .get_or_init(|| self.requests.get_or_create(&label()).clone())
                .inc(),
            None => self.requests.get_or_create(&label()).inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_series_count_into_the_families_by_status() {
        let m = Metrics::new();
        let s = m.class_series("local_read");
        for status in [200, 200, 404, 99, 600] {
            s.record(status, 0.001);
        }
        let count = |status| {
            m.requests
                .get_or_create(&ClassStatus {
                    class: "local_read",
                    status,
                })
                .get()
        };
        assert_eq!(
            [count(200), count(404), count(99), count(600), count(503)],
            [2, 1, 1, 1, 0]
        );
        let text = m.render();
        assert!(
            text.contains("keel_gateway_request_seconds_count{class=\"local_read\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn host_series_sit_beside_the_gateways_own_under_their_names() {
        let m = Metrics::new();
        m.leader_changes.inc();
        m.sample_host();
        let text = m.render();
        for name in [
            "keel_gateway_leader_changes_total 1",
            "# TYPE keel_gateway_requests counter",
            "keel_process_cpu_seconds_total ",
            "keel_process_resident_memory_bytes ",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
        assert!(!text.contains("keel_gateway_process_"), "{text}");
    }

    #[test]
    fn availability_series_follow_the_tracker() {
        let m = Metrics::new();
        let mut a = Availability::new();
        let t0 = 1_000 * crate::availability::MINUTE_MS;
        for (t, ok) in [
            (0, true),
            (10, false),
            (20, false),
            (1_510, true),
            (1_600, false),
        ] {
            a.record(t0 + t, ok);
        }
        m.availability.refresh(&a, t0 + 2_000);
        // A second scrape adds nothing to the counter.
        m.availability.refresh(&a, t0 + 2_000);
        let text = m.render();
        for line in [
            "keel_gateway_availability_ratio{window=\"all\"} 0.4",
            "keel_gateway_availability_ratio{window=\"1m\"} 0.4",
            "keel_gateway_failures_per_thousand{window=\"5m\"} 600.0",
            "keel_gateway_outages_total 2",
            "keel_gateway_last_recovery_seconds 1.5",
            "keel_gateway_outage_open 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
