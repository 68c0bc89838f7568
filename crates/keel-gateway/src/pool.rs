//! The nodes the gateway balances over and everything it believes about
//! them: health, suspicion, ejections, breakers, the leader, and the
//! balancers of each request class. One mutex guards it all; every critical
//! section is a few pure-rule calls with no I/O and no await inside, so the
//! lock is held for microseconds.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::config::{GatewayConfig, NodeEntry, Target};
use crate::metrics::{Metrics, NodeEvent, NodeLabel};
use crate::{
    ActiveHealth, BackendSpec, Backoff, Balancer, BalancerConfig, BreakerDecision, BreakerState,
    CircuitBreaker, ConfigError, EligibleSet, HealthState, NodeIndex, OutlierEjection, PhiAccrual,
    Probe, RateDecision, RateLimiter, RetryBudget, NODES_MAX,
};

/// The classes of request the gateway routes differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// POST, PUT, PATCH, DELETE.
    Write,
    /// A read without `consistency=local`.
    LinearizableRead,
    /// A read with `consistency=local`.
    LocalRead,
}

impl Class {
    /// Every class, in [`slot`](Self::slot) order.
    pub const ALL: [Class; 3] = [Class::Write, Class::LinearizableRead, Class::LocalRead];

    /// Label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Class::Write => "write",
            Class::LinearizableRead => "linearizable_read",
            Class::LocalRead => "local_read",
        }
    }

    /// The class's index in [`ALL`](Self::ALL), and in per-class arrays.
    pub fn slot(self) -> usize {
        match self {
            Class::Write => 0,
            Class::LinearizableRead => 1,
            Class::LocalRead => 2,
        }
    }
}

/// How an attempt to a node ended, as far as the node's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The node answered (any status but 500): it is alive and serving.
    Answered,
    /// The connection was refused or could not be made: the process is not
    /// listening, so the node is taken down at once.
    Refused,
    /// Timed out, reset or broken mid-way, or a 500: counts toward ejection
    /// and the breaker.
    Failed,
    /// The client went away before the node answered: says nothing about
    /// the node.
    Abandoned,
}

struct NodeSlot {
    /// `host:port`; shared with the attempts that carry it, not copied.
    addr: Arc<str>,
    /// The address as the `Host` the node is sent, validated once.
    host: HeaderValue,
    weight: u32,
    /// False once discovery saw the node leave the cluster.
    member: bool,
    health: ActiveHealth,
    phi: PhiAccrual,
    breaker: CircuitBreaker,
    /// The last probe's answer, for `/status`.
    probe_last: Option<String>,
    /// Its `upstream_attempts{event="ok"}` counter, looked up once rather
    /// than by label on every attempt.
    answered: Counter,
}

struct Inner {
    nodes: Vec<NodeSlot>,
    outlier: OutlierEjection,
    balancers: [Balancer; 3],
    leader: Option<NodeIndex>,
    /// Highest term a leader hint carried: a hint of a lower term (a
    /// cut-off old leader naming itself) is stale and ignored.
    leader_term: u64,
    budget: RetryBudget,
    rng: SmallRng,
    rate: Option<RateLimiter<String>>,
}

/// A node chosen for one attempt. Hand it back with [`Pool::finish`]; if it
/// is dropped unfinished (the client went away) it is finished as
/// [`Verdict::Abandoned`], so in-flight counts never leak.
pub struct Attempt {
    pool: Arc<Pool>,
    /// The node.
    pub node: NodeIndex,
    /// Its address, `host:port`.
    pub addr: Arc<str>,
    /// The same address as a header value, for `Host`.
    pub host: HeaderValue,
    class: Class,
    /// When it was picked.
    pub started: Instant,
    finished: bool,
    answered: Counter,
    /// Whether the detectors trusted the node when it was picked.
    pub trusted: bool,
    /// Whether the node was the believed leader when it was picked.
    pub led: bool,
}

impl Attempt {
    /// Counts the attempt in `upstream_attempts` under `event`.
    pub fn count(&self, event: &'static str) {
        if event == EVENT_ANSWERED {
            self.answered.inc();
        } else {
            self.pool
                .metrics
                .attempts
                .get_or_create(&NodeEvent {
                    node: self.addr.to_string(),
                    event,
                })
                .inc();
        }
    }
}

/// The `upstream_attempts` event of an attempt the node answered normally.
pub const EVENT_ANSWERED: &str = "ok";

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            let pool = &self.pool;
            pool.end_attempt(&mut pool.lock(), self, Verdict::Abandoned, Instant::now());
        }
    }
}

/// How an attempt ended, for [`Pool::finish`].
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    /// What the attempt says about the node.
    pub verdict: Verdict,
    /// When it ended.
    pub now: Instant,
    /// The leader hint and term its reply carried, if any.
    pub leader_hint: Option<(&'a str, Option<u64>)>,
    /// Whether it was the request's last attempt, which ends the request
    /// for the retry budget.
    pub last: bool,
}

/// The gateway's view of the cluster.
pub struct Pool {
    inner: Mutex<Inner>,
    config: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    /// Woken whenever another node is named leader.
    leader_named: tokio::sync::Notify,
}

impl Pool {
    /// A pool over the configured nodes; the rule settings were validated
    /// with the configuration, so errors here are only a second guard.
    pub fn new(
        config: Arc<GatewayConfig>,
        metrics: Arc<Metrics>,
        seed: u64,
    ) -> Result<Arc<Self>, ConfigError> {
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for entry in &config.nodes {
            nodes.push(new_slot(&config, &metrics, entry)?);
        }
        let outlier = OutlierEjection::new(config.outlier.rule(), nodes.len())?;
        let balancers = build_balancers(&config, &nodes, seed)?;
        let rate = match config.rate_limit.bucket() {
            Some(b) => Some(RateLimiter::new(b, config.rate_limit.clients_max)?),
            None => None,
        };
        let inner = Inner {
            nodes,
            outlier,
            balancers,
            leader: None,
            leader_term: 0,
            budget: RetryBudget::new(config.retry.budget())?,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            rate,
        };
        Ok(Arc::new(Self {
            inner: Mutex::new(inner),
            backoff: Backoff::new(config.retry.backoff())?,
            leader_named: tokio::sync::Notify::new(),
            config,
            metrics,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in the pure rules;
        // their state is still consistent (every call is all-or-nothing),
        // so carry on rather than take the whole gateway down.
        keel_protocol::sync::lock(&self.inner)
    }

    /// Chooses a node for an attempt of a `class` request, avoiding `avoid`
    /// (nodes this request already failed on) while others remain. `None`
    /// only when the pool has no member at all. For a request's `first`
    /// attempt, a pick also starts counting the request as live for the
    /// retry budget, until a [`finish`](Self::finish) that is its last or
    /// [`request_ended`](Self::request_ended): under the same lock, as the
    /// pool's lock is the one line every worker's requests contend for.
    pub fn pick(
        self: &Arc<Self>,
        class: Class,
        key: Option<&[u8]>,
        avoid: EligibleSet,
        now: Instant,
        first: bool,
    ) -> Option<Attempt> {
        let mut g = self.lock();
        let inner = &mut *g;
        let count = inner.nodes.len();
        let members = EligibleSet::from_fn(count, |n| inner.nodes[n.0].member);
        let healthy = EligibleSet::from_fn(count, |n| self.eligible(inner, n, now));
        // Prefer healthy nodes this request has not failed on; then any
        // healthy node; then, as Envoy's panic mode, any member: with no
        // node believed healthy, trying one beats refusing outright.
        let candidates = [
            subtract(healthy, avoid),
            healthy,
            subtract(members, avoid),
            members,
        ];
        let target = match class {
            Class::Write => self.config.routing.writes,
            Class::LinearizableRead => self.config.routing.linearizable_reads,
            Class::LocalRead => self.config.routing.local_reads,
        };
        for (tier, set) in candidates.into_iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let panic_mode = tier >= 2;
            let leader = inner.leader.filter(|l| set.contains(*l));
            let node = match (target, leader) {
                (Target::Leader, Some(l)) => Some(l),
                _ => inner.balancers[class.slot()].pick(set, key, now),
            };
            let Some(node) = node else { continue };
            // In panic mode the breaker is bypassed too: every node failed
            // its checks, and one attempt is how we learn it is back.
            if !panic_mode {
                if let BreakerDecision::Rejected { .. } =
                    inner.nodes[node.0].breaker.try_acquire(now)
                {
                    continue;
                }
            }
            inner.balancers[class.slot()].on_request_start(node);
            if first {
                inner.budget.on_request_start();
            }
            return Some(Attempt {
                pool: Arc::clone(self),
                node,
                addr: inner.nodes[node.0].addr.clone(),
                host: inner.nodes[node.0].host.clone(),
                class,
                started: now,
                finished: false,
                answered: inner.nodes[node.0].answered.clone(),
                // A healthy tier's node is eligible, so trusted.
                trusted: !panic_mode || self.trusted(inner, node, now),
                led: inner.leader == Some(node),
            });
        }
        None
    }

    /// Records how an attempt ended (`end`): the node's verdict, the leader
    /// hint its reply carried (as [`observe_leader`](Self::observe_leader)
    /// takes one) and, if it was the request's last attempt, the request's
    /// end for the retry budget. All under one lock.
    pub fn finish(&self, mut attempt: Attempt, end: AttemptEnd<'_>) {
        attempt.finished = true;
        let mut g = self.lock();
        self.end_attempt(&mut g, &attempt, end.verdict, end.now);
        if let Some((hint, term)) = end.leader_hint {
            self.observe_leader_locked(&mut g, hint, term, end.now);
        }
        if end.last {
            g.budget.on_request_end();
        }
    }

    fn end_attempt(&self, inner: &mut Inner, attempt: &Attempt, verdict: Verdict, now: Instant) {
        let (node, class, started) = (attempt.node, attempt.class, attempt.started);
        inner.balancers[class.slot()].on_request_end(
            node,
            now.saturating_duration_since(started),
            now,
        );
        let Some(slot) = inner.nodes.get_mut(node.0) else {
            return;
        };
        match verdict {
            Verdict::Answered => {
                slot.breaker.record_success();
                inner.outlier.record_success(node);
            }
            Verdict::Refused | Verdict::Failed => {
                if let Some(BreakerState::Open { .. }) = slot.breaker.record_failure(now) {
                    tracing::warn!(node = %slot.addr, "circuit breaker opened");
                    self.metrics
                        .breaker_opens
                        .get_or_create(&label(&slot.addr))
                        .inc();
                }
                if let Some(until) = inner.outlier.record_failure(node, now) {
                    tracing::warn!(node = %slot.addr, ejected_for = ?until.saturating_duration_since(now), "node ejected after consecutive failures");
                    self.metrics
                        .ejections
                        .get_or_create(&label(&slot.addr))
                        .inc();
                }
                if verdict == Verdict::Refused {
                    if slot.health.mark_down().is_some() {
                        self.health_changed(&slot.addr, HealthState::Down, "connection refused");
                    }
                    if inner.leader == Some(node) {
                        inner.leader = None;
                    }
                }
            }
            Verdict::Abandoned => {}
        }
    }

    /// Records a health probe of `node` at `now`: `Ok(status)` when the node
    /// answered (any answer proves it alive and feeds phi; only 200 counts
    /// as healthy), `Err` when it did not.
    pub fn record_probe(&self, node: NodeIndex, answer: Result<u16, ProbeFailure>, now: Instant) {
        let mut g = self.lock();
        let Some(slot) = g.nodes.get_mut(node.0) else {
            return;
        };
        let probe = match &answer {
            Ok(status) => {
                slot.phi.heartbeat(now);
                if *status == 200 {
                    Probe::Success
                } else {
                    Probe::Failure
                }
            }
            Err(_) => Probe::Failure,
        };
        slot.probe_last = Some(match &answer {
            Ok(status) => format!("HTTP {status}"),
            Err(ProbeFailure::Refused(e) | ProbeFailure::Other(e)) => e.clone(),
        });
        // A refused connection means no process listens: down at once, as
        // a refused request does, instead of after `fall` probes.
        if let Err(ProbeFailure::Refused(_)) = &answer {
            if slot.health.mark_down().is_some() {
                let why = slot.probe_last.clone().unwrap_or_default();
                self.health_changed(&slot.addr, HealthState::Down, &why);
            }
            return;
        }
        if let Some(state) = slot.health.record(probe) {
            let why = slot.probe_last.clone().unwrap_or_default();
            self.health_changed(&slot.addr, state, &why);
        }
    }

    fn health_changed(&self, addr: &str, state: HealthState, why: &str) {
        let event = match state {
            HealthState::Up => "up",
            HealthState::Down => "down",
        };
        match state {
            HealthState::Up => tracing::info!(node = %addr, "node is up"),
            HealthState::Down => tracing::warn!(node = %addr, why, "node is down"),
        }
        self.metrics
            .health_transitions
            .get_or_create(&NodeEvent {
                node: addr.to_owned(),
                event,
            })
            .inc();
    }

    /// Takes in a leader hint (`id=host:port`, from a node's `keel-leader`
    /// header) and the term it is of (`keel-term`), if the node sent one.
    /// A hint of a lower term than one already seen is ignored. An unknown
    /// address is added as a node when discovery is on.
    ///
    /// A node newly named leader has its breaker closed and its ejection
    /// lifted: a quorum elected it moments ago, so it is alive, and it is
    /// the only node that can take a write. Left open, a breaker or an
    /// ejection earned while it was killed, paused or cut off would keep
    /// writes on nodes that can only forward them or, if deposed, hang
    /// until the heal. Probes and phi-accrual still judge it as before.
    pub fn observe_leader(&self, hint: &str, term: Option<u64>, now: Instant) {
        self.observe_leader_locked(&mut self.lock(), hint, term, now);
    }

    fn observe_leader_locked(&self, g: &mut Inner, hint: &str, term: Option<u64>, now: Instant) {
        let Some(addr) = keel_protocol::header::leader_hint_addr(hint) else {
            return;
        };
        if let Some(t) = term {
            if t < g.leader_term {
                return;
            }
            g.leader_term = t;
        }
        let index = match g.nodes.iter().position(|n| *n.addr == *addr) {
            Some(i) => NodeIndex(i),
            None if self.config.discovery.enabled => match self.add_locked(g, addr) {
                Some(i) => i,
                None => return,
            },
            None => return,
        };
        if g.leader != Some(index) {
            g.leader = Some(index);
            tracing::info!(leader = %addr, "leader changed");
            self.metrics.leader_changes.inc();
            self.leader_named.notify_waiters();
            if g.outlier.reinstate(index, now) {
                tracing::info!(node = %addr, "ejection lifted: elected leader");
            }
            if let Some(slot) = g.nodes.get_mut(index.0) {
                if slot.breaker.close() {
                    tracing::info!(node = %addr, "circuit breaker closed: elected leader");
                }
            }
        }
    }

    /// Completes when a node is next named leader (by a hint or a probe).
    /// A retry waiting out its backoff while the cluster elects goes as
    /// soon as the new leader is known rather than up to a backoff later.
    pub async fn leader_named(&self) {
        self.leader_named.notified().await;
    }

    /// Makes the membership `addrs` (from `/v1/cluster`): unknown nodes are
    /// added, nodes no longer listed stop receiving traffic.
    pub fn sync_members(&self, addrs: &[String]) {
        let mut g = self.lock();
        for addr in addrs {
            if !g.nodes.iter().any(|n| *n.addr == **addr) {
                self.add_locked(&mut g, addr);
            }
        }
        for slot in g.nodes.iter_mut() {
            let member = addrs.iter().any(|a| **a == *slot.addr);
            if member != slot.member {
                tracing::info!(node = %slot.addr, member, "membership changed");
                slot.member = member;
            }
        }
    }

    fn add_locked(&self, g: &mut Inner, addr: &str) -> Option<NodeIndex> {
        if g.nodes.len() >= NODES_MAX {
            tracing::warn!(node = %addr, "not added: the gateway balances at most NODES_MAX nodes");
            return None;
        }
        let entry = NodeEntry {
            addr: addr.to_owned(),
            weight: 1,
        };
        let slot = match new_slot(&self.config, &self.metrics, &entry) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %addr, error = %e, "not added");
                return None;
            }
        };
        g.nodes.push(slot);
        // The balancers and the ejection table are sized to the node list;
        // rebuilding them forgets in-flight counts and latency estimates,
        // which is harmless for a change that happens once per new node.
        let seed = rand::Rng::random(&mut g.rng);
        match (
            build_balancers(&self.config, &g.nodes, seed),
            OutlierEjection::new(self.config.outlier.rule(), g.nodes.len()),
        ) {
            (Ok(b), Ok(o)) => {
                g.balancers = b;
                g.outlier = o;
            }
            (Err(e), _) | (_, Err(e)) => {
                g.nodes.pop();
                tracing::warn!(node = %addr, error = %e, "not added");
                return None;
            }
        }
        tracing::info!(node = %addr, "node discovered");
        Some(NodeIndex(g.nodes.len() - 1))
    }

    /// Sets a node's weight for weighted round robin in every class.
    pub fn set_weight(&self, addr: &str, weight: u32) -> Result<(), WeightError> {
        let mut g = self.lock();
        let node = g
            .nodes
            .iter()
            .position(|n| *n.addr == *addr)
            .ok_or(WeightError::UnknownNode)?;
        for b in g.balancers.iter_mut() {
            b.set_weight(NodeIndex(node), weight)
                .map_err(WeightError::Invalid)?;
        }
        g.nodes[node].weight = weight;
        tracing::info!(node = %addr, weight, "weight changed");
        Ok(())
    }

    /// Every node's index and address, for the probers.
    pub fn addrs(&self) -> Vec<(NodeIndex, String)> {
        let g = self.lock();
        g.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeIndex(i), n.addr.to_string()))
            .collect()
    }

    /// The believed leader.
    pub fn leader_node(&self) -> Option<NodeIndex> {
        self.lock().leader
    }

    /// The believed leader's address.
    pub fn leader_addr(&self) -> Option<String> {
        let g = self.lock();
        g.leader.map(|l| g.nodes[l.0].addr.to_string())
    }

    /// Nodes that may receive traffic now.
    pub fn eligible_count(&self, now: Instant) -> usize {
        let g = self.lock();
        (0..g.nodes.len())
            .filter(|&i| self.eligible(&g, NodeIndex(i), now))
            .count()
    }

    fn eligible(&self, g: &Inner, n: NodeIndex, now: Instant) -> bool {
        let s = &g.nodes[n.0];
        s.member
            && self.trusted(g, n, now)
            && !g.outlier.is_ejected(n, now)
            && s.breaker.allows_request(now)
    }

    /// Whether the detectors still believe `node` alive: up by its probes
    /// and not suspected by phi-accrual (ejection and the breaker are about
    /// new requests, not ones in flight).
    pub fn is_trusted(&self, node: NodeIndex, now: Instant) -> bool {
        self.trusted(&self.lock(), node, now)
    }

    fn trusted(&self, g: &Inner, node: NodeIndex, now: Instant) -> bool {
        g.nodes.get(node.0).is_some_and(|s| {
            s.health.is_up() && s.phi.is_available(now, self.config.health.phi_threshold)
        })
    }

    /// Whether clients are rate limited at all (so a request that is not
    /// need not name its client).
    pub fn rate_limited(&self) -> bool {
        self.config.rate_limit.bucket().is_some()
    }

    /// Takes a token for `client`, when rate limiting is on.
    pub fn rate_check(&self, client: &str, now: Instant) -> RateDecision {
        let mut g = self.lock();
        match g.rate.as_mut() {
            Some(r) => r.check(&client.to_owned(), now),
            None => RateDecision::Allowed,
        }
    }

    /// A client request counted live by its first [`pick`](Self::pick)
    /// ended without a last [`finish`](Self::finish).
    pub fn request_ended(&self) {
        self.lock().budget.on_request_end();
    }

    /// Asks the retry budget for a retry; pair a `true` with
    /// [`retry_ended`](Self::retry_ended).
    pub fn try_retry(&self) -> bool {
        self.lock().budget.try_start_retry()
    }

    /// A retry ended.
    pub fn retry_ended(&self) {
        self.lock().budget.on_retry_end();
    }

    /// The wait before retry `attempt`, or `None` once retries are used up.
    pub fn backoff(&self, attempt: u32) -> Option<Duration> {
        let mut g = self.lock();
        self.backoff.delay(attempt, &mut g.rng)
    }

    /// The shortest backoff ceiling: how long to wait for retry budget.
    pub fn backoff_floor(&self) -> Duration {
        self.backoff.ceiling(0)
    }

    /// Refreshes the per-node gauges (at scrape time).
    pub fn refresh_gauges(&self, now: Instant) {
        let g = self.lock();
        for (i, s) in g.nodes.iter().enumerate() {
            let n = NodeIndex(i);
            let l = label(&s.addr);
            self.metrics
                .node_eligible
                .get_or_create(&l)
                .set(i64::from(self.eligible(&g, n, now)));
            self.metrics
                .node_up
                .get_or_create(&l)
                .set(i64::from(s.health.is_up()));
            self.metrics.node_phi.get_or_create(&l).set(s.phi.phi(now));
            let outstanding: u32 = g.balancers.iter().map(|b| b.outstanding(n)).sum();
            self.metrics
                .node_outstanding
                .get_or_create(&l)
                .set(i64::from(outstanding));
            self.metrics
                .node_leader
                .get_or_create(&l)
                .set(i64::from(g.leader == Some(n)));
        }
    }

    /// The `/status` document: every node and what the gateway believes of it.
    pub fn status(&self, now: Instant) -> Value {
        let g = self.lock();
        let nodes: Vec<Value> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = NodeIndex(i);
                // Clamped: the formula gives -0.0 for a fresh heartbeat.
                let phi = s.phi.phi(now).max(0.0) + 0.0;
                let breaker = match s.breaker.state(now) {
                    BreakerState::Closed => "closed",
                    BreakerState::Open { .. } => "open",
                    BreakerState::HalfOpen => "half_open",
                };
                let outstanding: u32 = g.balancers.iter().map(|b| b.outstanding(n)).sum();
                json!({
                    "addr": &*s.addr,
                    "member": s.member,
                    "weight": s.weight,
                    "health": if s.health.is_up() { "up" } else { "down" },
                    "phi": if phi.is_finite() { json!((phi * 100.0).round() / 100.0) } else { json!("inf") },
                    "suspected": !s.phi.is_available(now, self.config.health.phi_threshold),
                    "ejected": g.outlier.is_ejected(n, now),
                    "breaker": breaker,
                    "eligible": self.eligible(&g, n, now),
                    "leader": g.leader == Some(n),
                    "outstanding": outstanding,
                    "latency_ms": g.balancers[Class::LocalRead.slot()]
                        .latency_estimate(n)
                        .map(|d| d.as_secs_f64() * 1000.0),
                    "last_probe": s.probe_last,
                })
            })
            .collect();
        json!({
            "leader": g.leader.map(|l| g.nodes[l.0].addr.to_string()),
            "eligible": (0..g.nodes.len()).filter(|&i| self.eligible(&g, NodeIndex(i), now)).count(),
            "nodes": nodes,
            "routing": {
                "writes": self.config.routing.writes,
                "linearizable_reads": self.config.routing.linearizable_reads,
                "local_reads": self.config.routing.local_reads,
            },
            "retry_budget": {
                "retries_active": g.budget.retries_active(),
                "retries_allowed": g.budget.retries_allowed(),
            },
        })
    }
}

/// Why a health probe got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The connection was refused: nothing listens at the address.
    Refused(String),
    /// A timeout, a reset or a lost reply.
    Other(String),
}

/// Why a weight change was refused.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// No node has that address.
    #[error("no node with that address")]
    UnknownNode,
    /// The weight is out of range.
    #[error(transparent)]
    Invalid(ConfigError),
}

fn new_slot(
    config: &GatewayConfig,
    metrics: &Metrics,
    entry: &NodeEntry,
) -> Result<NodeSlot, ConfigError> {
    let host = HeaderValue::from_str(&entry.addr).map_err(|_| ConfigError::Invalid {
        field: "nodes.addr",
        reason: "a node address must be a valid Host header (host:port)",
    })?;
    Ok(NodeSlot {
        addr: Arc::from(entry.addr.as_str()),
        host,
        weight: entry.weight,
        member: true,
        health: ActiveHealth::new(config.health.active())?,
        phi: PhiAccrual::new(config.health.phi())?,
        breaker: CircuitBreaker::new(config.breaker.rule())?,
        probe_last: None,
        answered: metrics
            .attempts
            .get_or_create(&NodeEvent {
                node: entry.addr.clone(),
                event: EVENT_ANSWERED,
            })
            .clone(),
    })
}

fn build_balancers(
    config: &GatewayConfig,
    nodes: &[NodeSlot],
    seed: u64,
) -> Result<[Balancer; 3], ConfigError> {
    let specs: Vec<BackendSpec> = nodes
        .iter()
        .map(|n| BackendSpec {
            hash_id: fnv1a(n.addr.as_bytes()),
            weight: n.weight,
        })
        .collect();
    let make = |target: Target, salt: u64| {
        Balancer::new(
            BalancerConfig {
                policy: target.policy(),
                seed: seed ^ salt,
                ..BalancerConfig::default()
            },
            &specs,
        )
    };
    Ok([
        make(config.routing.writes, 1)?,
        make(config.routing.linearizable_reads, 2)?,
        make(config.routing.local_reads, 3)?,
    ])
}

/// The node's identity for consistent hashing: its address, so a key stays
/// on the same node whatever order nodes are listed or discovered in.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn subtract(a: EligibleSet, b: EligibleSet) -> EligibleSet {
    EligibleSet::from_fn(NODES_MAX, |n| a.contains(n) && !b.contains(n))
}

fn label(addr: &str) -> NodeLabel {
    NodeLabel {
        node: addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(nodes: &[&str]) -> Arc<Pool> {
        let config = GatewayConfig {
            nodes: nodes.iter().map(|a| NodeEntry::parse(a).unwrap()).collect(),
            ..GatewayConfig::default()
        };
        config.validate().unwrap();
        Pool::new(Arc::new(config), Arc::new(Metrics::new()), 7).unwrap()
    }

    /// The end of an attempt that is not its request's last, with no hint.
    fn ended(verdict: Verdict) -> AttemptEnd<'static> {
        AttemptEnd {
            verdict,
            now: Instant::now(),
            leader_hint: None,
            last: false,
        }
    }

    #[test]
    fn a_request_is_live_from_its_first_pick_to_its_last_finish() {
        let p = pool(&[A, B, C]);
        let now = Instant::now();
        let live = |p: &Pool| p.lock().budget.requests_active();
        let first = p
            .pick(Class::LocalRead, None, EligibleSet::empty(), now, true)
            .unwrap();
        assert_eq!(live(&p), 1);
        p.finish(first, ended(Verdict::Failed));
        let retry = p
            .pick(Class::LocalRead, None, EligibleSet::empty(), now, false)
            .unwrap();
        assert_eq!(
            live(&p),
            1,
            "a retry's pick does not count the request again"
        );
        let hint = format!("3={C}");
        p.finish(
            retry,
            AttemptEnd {
                leader_hint: Some((&hint, Some(2))),
                last: true,
                ..ended(Verdict::Answered)
            },
        );
        assert_eq!(live(&p), 0);
        assert_eq!(
            p.leader_addr().as_deref(),
            Some(C),
            "the reply's hint was taken"
        );
        // A request left between its picks and its last finish ends apart.
        let _ = p.pick(Class::LocalRead, None, EligibleSet::empty(), now, true);
        assert_eq!(live(&p), 1);
        p.request_ended();
        assert_eq!(live(&p), 0);
    }

    const A: &str = "127.0.0.1:7101";
    const B: &str = "127.0.0.1:7102";
    const C: &str = "127.0.0.1:7103";

    #[test]
    fn writes_go_to_the_leader_once_known() {
        let p = pool(&[A, B, C]);
        let now = Instant::now();
        p.observe_leader(&format!("2={B}"), None, now);
        for _ in 0..5 {
            let a = p
                .pick(Class::Write, None, EligibleSet::empty(), now, false)
                .unwrap();
            assert_eq!(&*a.addr, B);
            p.finish(a, ended(Verdict::Answered));
        }
    }

    #[test]
    fn a_refused_leader_is_forgotten_and_taken_down() {
        let p = pool(&[A, B, C]);
        let now = Instant::now();
        p.observe_leader(&format!("1={A}"), None, now);
        let a = p
            .pick(Class::Write, None, EligibleSet::empty(), now, false)
            .unwrap();
        assert_eq!(&*a.addr, A);
        p.finish(a, ended(Verdict::Refused));
        assert_eq!(p.leader_addr(), None);
        let mut avoid = EligibleSet::empty();
        avoid.insert(NodeIndex(0));
        for _ in 0..6 {
            let a = p
                .pick(Class::Write, None, EligibleSet::empty(), now, false)
                .unwrap();
            assert_ne!(&*a.addr, A, "a refused node is down until it passes probes");
        }
        assert_eq!(p.eligible_count(now), 2);
    }

    #[test]
    fn with_every_node_down_panic_mode_still_picks_one() {
        let p = pool(&[A, B]);
        let now = Instant::now();
        for i in 0..2 {
            for _ in 0..3 {
                p.record_probe(
                    NodeIndex(i),
                    Err(ProbeFailure::Other("timeout".into())),
                    now,
                );
            }
        }
        assert_eq!(p.eligible_count(now), 0);
        assert!(p
            .pick(Class::LocalRead, None, EligibleSet::empty(), now, false)
            .is_some());
    }

    #[tokio::test]
    async fn a_newly_named_leader_wakes_whoever_waits_for_one() {
        let p = pool(&[A, B, C]);
        p.observe_leader(&format!("1={A}"), Some(4), Instant::now());
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.leader_named().await }
        });
        // The same leader again, or a stale one, is no news.
        tokio::task::yield_now().await;
        p.observe_leader(&format!("1={A}"), Some(4), Instant::now());
        p.observe_leader(&format!("3={C}"), Some(3), Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken with no new leader");
        p.observe_leader(&format!("2={B}"), Some(5), Instant::now());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a new leader woke nobody")
            .unwrap();
    }

    #[test]
    fn a_leader_hint_of_a_lower_term_is_stale() {
        let p = pool(&[A, B, C]);
        p.observe_leader(&format!("1={A}"), Some(4), Instant::now());
        p.observe_leader(&format!("2={B}"), Some(5), Instant::now());
        assert_eq!(p.leader_addr().as_deref(), Some(B));
        // The cut-off old leader still names itself, at term 4.
        p.observe_leader(&format!("1={A}"), Some(4), Instant::now());
        assert_eq!(p.leader_addr().as_deref(), Some(B));
        p.observe_leader(&format!("3={C}"), Some(6), Instant::now());
        assert_eq!(p.leader_addr().as_deref(), Some(C));
    }

    #[test]
    fn a_newly_elected_leader_takes_writes_despite_its_breaker_and_ejection() {
        let p = pool(&[A, B, C]);
        let now = Instant::now();
        p.observe_leader(&format!("3={C}"), Some(3), now);
        // B was killed: its requests failed until its breaker opened and
        // it was ejected (both last far longer than an election).
        let mut opened = false;
        for _ in 0..10 {
            let mut avoid = EligibleSet::empty();
            avoid.insert(NodeIndex(0));
            avoid.insert(NodeIndex(2));
            let Some(a) = p.pick(Class::LocalRead, None, avoid, now, false) else {
                break;
            };
            if &*a.addr != B {
                p.finish(a, ended(Verdict::Answered));
                opened = true;
                break;
            }
            p.finish(a, ended(Verdict::Failed));
        }
        assert!(opened, "B's failures open its breaker and eject it");
        assert_eq!(p.eligible_count(now), 2);
        // B is back, and a quorum elects it while C is cut off.
        p.observe_leader(&format!("2={B}"), Some(4), now);
        assert_eq!(p.eligible_count(now), 3);
        let a = p
            .pick(Class::Write, None, EligibleSet::empty(), now, false)
            .unwrap();
        assert_eq!(&*a.addr, B, "writes go to the new leader at once");
        p.finish(a, ended(Verdict::Answered));
        // The same hint again changes nothing: a breaker that opens on
        // the leader afterwards stays open.
        for _ in 0..5 {
            let a = p
                .pick(Class::Write, None, EligibleSet::empty(), now, false)
                .unwrap();
            p.finish(a, ended(Verdict::Failed));
        }
        p.observe_leader(&format!("2={B}"), Some(4), now);
        assert_eq!(p.eligible_count(now), 2);
    }

    #[test]
    fn a_refused_probe_takes_the_node_down_at_once() {
        let p = pool(&[A, B]);
        let now = Instant::now();
        p.record_probe(
            NodeIndex(0),
            Err(ProbeFailure::Other("timeout".into())),
            now,
        );
        assert_eq!(p.eligible_count(now), 2, "one timeout is below fall");
        p.record_probe(
            NodeIndex(0),
            Err(ProbeFailure::Refused("refused".into())),
            now,
        );
        assert_eq!(p.eligible_count(now), 1);
        for k in 1..=2 {
            p.record_probe(NodeIndex(0), Ok(200), now + Duration::from_millis(100 * k));
        }
        assert_eq!(p.eligible_count(now + Duration::from_millis(200)), 2);
    }

    #[test]
    fn probes_take_a_node_down_after_fall_and_back_after_rise() {
        let p = pool(&[A, B]);
        let t0 = Instant::now();
        for k in 0..3 {
            p.record_probe(NodeIndex(0), Ok(503), t0 + Duration::from_millis(100 * k));
        }
        assert_eq!(p.eligible_count(t0 + Duration::from_millis(300)), 1);
        for k in 3..5 {
            p.record_probe(NodeIndex(0), Ok(200), t0 + Duration::from_millis(100 * k));
        }
        assert_eq!(p.eligible_count(t0 + Duration::from_millis(500)), 2);
    }

    #[test]
    fn silence_raises_phi_until_the_node_is_not_eligible() {
        let p = pool(&[A, B]);
        let t0 = Instant::now();
        for k in 0..20 {
            let at = t0 + Duration::from_millis(100 * k);
            p.record_probe(NodeIndex(0), Ok(200), at);
            p.record_probe(NodeIndex(1), Ok(200), at);
        }
        let last = t0 + Duration::from_millis(1900);
        assert_eq!(p.eligible_count(last + Duration::from_millis(200)), 2);
        // Node 1 keeps answering, node 0 falls silent (paused): phi alone
        // takes it out within a second, before three probes time out.
        for k in 20..30 {
            p.record_probe(NodeIndex(1), Ok(200), t0 + Duration::from_millis(100 * k));
        }
        assert_eq!(p.eligible_count(last + Duration::from_millis(1000)), 1);
    }

    #[test]
    fn discovery_adds_a_node_named_as_leader_and_sync_drops_leavers() {
        let p = pool(&[A]);
        p.observe_leader(&format!("3={C}"), None, Instant::now());
        assert_eq!(p.addrs().len(), 2);
        assert_eq!(p.leader_addr().as_deref(), Some(C));
        p.sync_members(&[C.to_owned(), B.to_owned()]);
        let now = Instant::now();
        assert_eq!(p.addrs().len(), 3);
        assert_eq!(p.eligible_count(now), 2, "A left the cluster");
    }

    #[test]
    fn weights_change_at_run_time_and_bad_ones_are_refused() {
        let p = pool(&[A, B]);
        p.set_weight(A, 5).unwrap();
        assert!(matches!(p.set_weight(C, 1), Err(WeightError::UnknownNode)));
        assert!(matches!(
            p.set_weight(A, 1_000_000),
            Err(WeightError::Invalid(_))
        ));
        assert_eq!(p.status(Instant::now())["nodes"][0]["weight"], 5);
    }

    #[test]
    fn an_abandoned_attempt_releases_its_in_flight_count() {
        let p = pool(&[A]);
        let now = Instant::now();
        let a = p
            .pick(Class::LocalRead, None, EligibleSet::empty(), now, false)
            .unwrap();
        assert_eq!(p.status(now)["nodes"][0]["outstanding"], 1);
        drop(a);
        assert_eq!(p.status(now)["nodes"][0]["outstanding"], 0);
    }
}
