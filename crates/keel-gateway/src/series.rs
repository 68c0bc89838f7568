//! The dashboard's time series, as pure functions of text and numbers:
//! Prometheus text read into totals (the gateway's own request counters
//! and histogram; each node's business counters), two snapshots of totals
//! turned into one point of rates, and the bounded ring of points the page
//! charts. Nothing here does I/O or reads a clock: the sampler in
//! `super` scrapes, stamps and pushes.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Points the ring keeps: ten minutes at one point per
/// [`crate::dashboard::SAMPLE_INTERVAL`] (5 s), enough to see a failover and its
/// recovery on one chart while the whole ring stays a few tens of KiB in
/// every `/gateway/dashboard` reply.
pub const RING_POINTS: usize = 120;

/// Currencies whose revenue is kept: a shop sells in a handful; a node
/// answering with more (a bug, or a hostile scrape target) cannot grow the
/// gateway's memory or the reply without bound.
pub const CURRENCIES_MAX: usize = 16;

/// Request classes whose errors are kept apart: the gateway has three
/// (`write`, `linearizable_read`, `local_read`); the cap only guards the
/// reply should the metrics ever carry more.
pub const CLASSES_MAX: usize = 8;

/// Histogram buckets read from the gateway's latency histogram: it has 20
/// and `+Inf`; more would be a change to look at, not to follow blindly.
pub const BUCKETS_MAX: usize = 64;

/// One sample line of a Prometheus text exposition.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    /// The series name, e.g. `keel_orders_placed_total`.
    pub name: &'a str,
    /// Its labels, in the order written, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The sample lines of `text`; comments, blank lines and lines that do not
/// parse are skipped (one odd line must not hide the others).
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, rest) = s.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim(), value));
        s = &rest[end + 2..];
    }
}

/// A counter read as a whole number (counters are integral here; a
/// negative or non-finite value is a broken target and counts as 0).
fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

/// The cluster's business counters as one node (or the sum of several)
/// reports them: `keel_orders_*_total` and `keel_revenue_minor_total`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BusinessTotals {
    /// `keel_orders_placed_total`.
    pub orders_placed: u64,
    /// `keel_orders_paid_total`.
    pub orders_paid: u64,
    /// `keel_orders_refused_total`, every reason.
    pub orders_refused: u64,
    /// `keel_orders_cancelled_total`.
    pub orders_cancelled: u64,
    /// `keel_orders_expired_total`.
    pub orders_expired: u64,
    /// `keel_revenue_minor_total` by currency (at most
    /// [`CURRENCIES_MAX`]).
    pub revenue_minor: BTreeMap<String, u64>,
}

impl BusinessTotals {
    /// The business counters in a node's `/metrics` text.
    pub fn from_metrics(text: &str) -> Self {
        let mut t = Self::default();
        for s in samples(text) {
            let v = count(s.value);
            match s.name {
                "keel_orders_placed_total" => t.orders_placed += v,
                "keel_orders_paid_total" => t.orders_paid += v,
                "keel_orders_refused_total" => t.orders_refused += v,
                "keel_orders_cancelled_total" => t.orders_cancelled += v,
                "keel_orders_expired_total" => t.orders_expired += v,
                "keel_revenue_minor_total" => {
                    if let Some(c) = s.label("currency") {
                        t.add_revenue(c, v);
                    }
                }
                _ => {}
            }
        }
        t
    }

    fn add_revenue(&mut self, currency: &str, minor: u64) {
        if let Some(r) = self.revenue_minor.get_mut(currency) {
            *r = r.saturating_add(minor);
        } else if self.revenue_minor.len() < CURRENCIES_MAX {
            self.revenue_minor.insert(currency.to_owned(), minor);
        }
    }

    /// Adds `other` (another node's counters) into these.
    pub fn add(&mut self, other: &Self) {
        self.orders_placed += other.orders_placed;
        self.orders_paid += other.orders_paid;
        self.orders_refused += other.orders_refused;
        self.orders_cancelled += other.orders_cancelled;
        self.orders_expired += other.orders_expired;
        for (c, v) in &other.revenue_minor {
            self.add_revenue(c, *v);
        }
    }

    /// What was counted since `prev`, the same node's earlier reading. A
    /// counter lower than before means the node restarted and counts from
    /// 0 again, so all of its value is new (Prometheus's `rate` does the
    /// same).
    pub fn since(&self, prev: &Self) -> Self {
        let d = |now: u64, before: u64| if now >= before { now - before } else { now };
        Self {
            orders_placed: d(self.orders_placed, prev.orders_placed),
            orders_paid: d(self.orders_paid, prev.orders_paid),
            orders_refused: d(self.orders_refused, prev.orders_refused),
            orders_cancelled: d(self.orders_cancelled, prev.orders_cancelled),
            orders_expired: d(self.orders_expired, prev.orders_expired),
            revenue_minor: self
                .revenue_minor
                .iter()
                .map(|(c, v)| {
                    (
                        c.clone(),
                        d(*v, prev.revenue_minor.get(c).copied().unwrap_or(0)),
                    )
                })
                .collect(),
        }
    }
}

/// The gateway's own request counters, read from its `/metrics` text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayTotals {
    /// `keel_gateway_requests_total`, every class and status.
    pub requests: u64,
    /// Requests answered with a status of 500 or more (failures of
    /// availability, as `crate::availability` counts them), by class.
    pub errors_by_class: BTreeMap<String, u64>,
    /// `keel_gateway_request_seconds_bucket` summed over the classes:
    /// (upper bound in seconds, cumulative count), ascending, `+Inf` last.
    pub latency_buckets: Vec<(f64, u64)>,
}

impl GatewayTotals {
    /// The totals in the gateway's `/metrics` text.
    pub fn from_metrics(text: &str) -> Self {
        let mut t = Self::default();
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for s in samples(text) {
            match s.name {
                "keel_gateway_requests_total" => {
                    let v = count(s.value);
                    t.requests += v;
                    let failed = s
                        .label("status")
                        .and_then(|st| st.parse::<u16>().ok())
                        .is_some_and(crate::availability::status_is_failure);
                    if let (true, Some(class)) = (failed, s.label("class")) {
                        if let Some(e) = t.errors_by_class.get_mut(class) {
                            *e += v;
                        } else if t.errors_by_class.len() < CLASSES_MAX {
                            t.errors_by_class.insert(class.to_owned(), v);
                        }
                    }
                }
                "keel_gateway_request_seconds_bucket" => {
                    let Some(le) = s.label("le").and_then(|le| le.parse::<f64>().ok()) else {
                        continue;
                    };
                    if let Some(b) = buckets.iter_mut().find(|(b, _)| *b == le) {
                        b.1 += count(s.value);
                    } else if buckets.len() < BUCKETS_MAX {
                        buckets.push((le, count(s.value)));
                    }
                }
                _ => {}
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        t.latency_buckets = buckets;
        t
    }
}

/// The `q` quantile (0 to 1) of what `now`'s cumulative buckets counted
/// since `before`'s, interpolated linearly inside its bucket as
/// Prometheus's `histogram_quantile` does; `None` without observations.
/// A quantile in the `+Inf` bucket is the highest finite bound.
pub fn quantile(before: &[(f64, u64)], now: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, u64)> = now
        .iter()
        .map(|(le, c)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, c)| *c);
            (*le, c.saturating_sub(was))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, c) in &delta {
        if c as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let span = (c - lower.1) as f64;
            let into = if span > 0.0 {
                (rank - lower.1 as f64) / span
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * into);
        }
        lower = (le, c);
    }
    Some(lower.0)
}

/// What the sampler read at one instant: the gateway's counters and each
/// node's business counters, by node address.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When it was taken (ms since the Unix epoch).
    pub t_ms: u64,
    /// The gateway's own counters.
    pub gateway: GatewayTotals,
    /// Each node's business counters, by address: those that answered
    /// this time, and the last reading of those that did not (so a node
    /// that comes back is compared with what it said last).
    pub nodes: BTreeMap<String, BusinessTotals>,
}

/// One point of the charts: rates over the interval ending at `t_ms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// End of the interval (ms since the Unix epoch).
    pub t_ms: u64,
    /// Client requests the gateway answered, per second.
    pub requests_per_s: f64,
    /// Of those, answered with a status of 500 or more, per second.
    pub errors_per_s: f64,
    /// The same by request class (`write`, `linearizable_read`,
    /// `local_read`).
    pub errors_per_s_by_class: BTreeMap<String, f64>,
    /// Median request latency, every class (ms); none without requests.
    pub latency_ms_p50: Option<f64>,
    /// 99th percentile request latency, every class (ms).
    pub latency_ms_p99: Option<f64>,
    /// Orders placed in the cluster, per second.
    pub orders_placed_per_s: f64,
    /// Orders paid, per second.
    pub orders_paid_per_s: f64,
    /// Orders refused, per second.
    pub orders_refused_per_s: f64,
    /// Orders cancelled, per second.
    pub orders_cancelled_per_s: f64,
    /// Orders expired unpaid, per second.
    pub orders_expired_per_s: f64,
    /// Revenue in minor units per second, by currency.
    pub revenue_minor_per_s: BTreeMap<String, f64>,
}

/// The business counted by the nodes between two snapshots: each node's
/// own difference ([`BusinessTotals::since`]), summed. A node seen for the
/// first time adds nothing: its counters hold what it counted before the
/// gateway watched.
pub fn business_since(before: &Snapshot, now: &Snapshot) -> BusinessTotals {
    let mut sum = BusinessTotals::default();
    for (addr, t) in &now.nodes {
        if let Some(prev) = before.nodes.get(addr) {
            sum.add(&t.since(prev));
        }
    }
    sum
}

/// The point of rates between `before` and `now`; `None` unless time went
/// forward between them.
pub fn point(before: &Snapshot, now: &Snapshot) -> Option<Point> {
    let secs = now.t_ms.checked_sub(before.t_ms).filter(|d| *d > 0)? as f64 / 1000.0;
    let per_s = |n: u64| n as f64 / secs;
    let (g0, g1) = (&before.gateway, &now.gateway);
    let errors = |t: &GatewayTotals| t.errors_by_class.values().sum::<u64>();
    let by_class = g1
        .errors_by_class
        .iter()
        .map(|(c, n)| {
            let was = g0.errors_by_class.get(c).copied().unwrap_or(0);
            (c.clone(), per_s(n.saturating_sub(was)))
        })
        .collect();
    let ms = |q| quantile(&g0.latency_buckets, &g1.latency_buckets, q).map(|s| s * 1000.0);
    let b = business_since(before, now);
    Some(Point {
        t_ms: now.t_ms,
        requests_per_s: per_s(g1.requests.saturating_sub(g0.requests)),
        errors_per_s: per_s(errors(g1).saturating_sub(errors(g0))),
        errors_per_s_by_class: by_class,
        latency_ms_p50: ms(0.5),
        latency_ms_p99: ms(0.99),
        orders_placed_per_s: per_s(b.orders_placed),
        orders_paid_per_s: per_s(b.orders_paid),
        orders_refused_per_s: per_s(b.orders_refused),
        orders_cancelled_per_s: per_s(b.orders_cancelled),
        orders_expired_per_s: per_s(b.orders_expired),
        revenue_minor_per_s: b
            .revenue_minor
            .iter()
            .map(|(c, v)| (c.clone(), per_s(*v)))
            .collect(),
    })
}

/// The last [`RING_POINTS`] points and the snapshot the next one starts
/// from.
#[derive(Debug, Default)]
pub struct Ring {
    points: VecDeque<Point>,
    last: Option<Snapshot>,
}

impl Ring {
    /// Takes `snap` in: makes a point from the previous snapshot to it
    /// (dropping the oldest point past [`RING_POINTS`]), and keeps it as
    /// the start of the next. Nodes missing from `snap` keep their last
    /// reading.
    pub fn push(&mut self, mut snap: Snapshot) {
        if let Some(last) = self.last.take() {
            for (addr, t) in &last.nodes {
                snap.nodes.entry(addr.clone()).or_insert_with(|| t.clone());
            }
            if let Some(p) = point(&last, &snap) {
                if self.points.len() == RING_POINTS {
                    self.points.pop_front();
                }
                self.points.push_back(p);
            }
        }
        self.last = Some(snap);
    }

    /// The newest point, if there is one.
    pub fn last_point(&self) -> Option<Point> {
        self.points.back().cloned()
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }

    /// The cluster's business totals at the last snapshot: every node's
    /// latest reading, summed.
    pub fn business_totals(&self) -> BusinessTotals {
        let mut sum = BusinessTotals::default();
        for t in self.last.iter().flat_map(|s| s.nodes.values()) {
            sum.add(t);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    const NODE_A: &str = "\
# HELP keel_orders_placed Orders placed.
# TYPE keel_orders_placed counter
keel_orders_placed_total 10
keel_orders_paid_total 4
keel_orders_refused_total{reason=\"out_of_stock\"} 2
keel_orders_refused_total{reason=\"insufficient_funds\"} 1
keel_orders_cancelled_total 1
keel_orders_expired_total 0
keel_revenue_minor_total{currency=\"EUR\"} 1000
keel_api_requests_total{route=\"/v1/orders\"} 99
";
    const NODE_B: &str = "\
keel_orders_placed_total 5 1700000000000
keel_orders_paid_total 5
keel_orders_expired_total 3
keel_revenue_minor_total{currency=\"EUR\"} 250
keel_revenue_minor_total{currency=\"USD\"} 7
";

    #[test]
    fn business_series_of_two_nodes_sum() {
        let mut sum = BusinessTotals::from_metrics(NODE_A);
        sum.add(&BusinessTotals::from_metrics(NODE_B));
        assert_eq!(
            sum,
            BusinessTotals {
                orders_placed: 15,
                orders_paid: 9,
                orders_refused: 3,
                orders_cancelled: 1,
                orders_expired: 3,
                revenue_minor: [("EUR".into(), 1250), ("USD".into(), 7)].into(),
            }
        );
    }

    #[test]
    fn labels_unescape_and_odd_lines_are_skipped() {
        let text = "a{x=\"q\\\"uo,te\",y=\"b\\\\\"} 2\nnot a sample\nb 1\n{broken 3\n";
        let s: Vec<Sample<'_>> = samples(text).collect();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].label("x"), Some("q\"uo,te"));
        assert_eq!(s[0].label("y"), Some("b\\"));
        assert_eq!((s[1].name, s[1].value), ("b", 1.0));
    }

    #[test]
    fn a_restarted_node_counts_from_zero_and_a_new_node_adds_nothing() {
        let t = |placed| BusinessTotals {
            orders_placed: placed,
            ..BusinessTotals::default()
        };
        let before = Snapshot {
            t_ms: 0,
            nodes: [("a".into(), t(100)), ("b".into(), t(50))].into(),
            ..Snapshot::default()
        };
        let now = Snapshot {
            t_ms: 5_000,
            nodes: [
                ("a".into(), t(110)),
                ("b".into(), t(3)),
                ("c".into(), t(900)),
            ]
            .into(),
            ..Snapshot::default()
        };
        assert_eq!(business_since(&before, &now).orders_placed, 13);
        let p = point(&before, &now).unwrap();
        assert!((p.orders_placed_per_s - 2.6).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn gateway_rates_and_latency_quantiles() {
        let text = |ok: u64, failed: u64, fast: u64, slow: u64| {
            format!(
                "keel_gateway_requests_total{{class=\"write\",status=\"200\"}} {ok}\n\
                 keel_gateway_requests_total{{class=\"write\",status=\"503\"}} {failed}\n\
                 keel_gateway_requests_total{{class=\"local_read\",status=\"429\"}} 1\n\
                 keel_gateway_request_seconds_bucket{{le=\"0.001\",class=\"write\"}} {fast}\n\
                 keel_gateway_request_seconds_bucket{{le=\"0.01\",class=\"write\"}} {}\n\
                 keel_gateway_request_seconds_bucket{{le=\"+Inf\",class=\"write\"}} {}\n",
                fast + slow,
                fast + slow
            )
        };
        let before = Snapshot {
            t_ms: 1_000,
            gateway: GatewayTotals::from_metrics(&text(0, 0, 0, 0)),
            ..Snapshot::default()
        };
        let now = Snapshot {
            t_ms: 3_000,
            gateway: GatewayTotals::from_metrics(&text(90, 10, 90, 10)),
            ..Snapshot::default()
        };
        let p = point(&before, &now).unwrap();
        assert_eq!(p.requests_per_s, 50.0);
        assert_eq!(p.errors_per_s, 5.0);
        assert_eq!(p.errors_per_s_by_class, [("write".into(), 5.0)].into());
        // The median is inside the first bucket, the 99th in the second.
        let p50 = p.latency_ms_p50.unwrap();
        let p99 = p.latency_ms_p99.unwrap();
        assert!(p50 > 0.0 && p50 <= 1.0, "{p50}");
        assert!(p99 > 1.0 && p99 <= 10.0, "{p99}");
        assert_eq!(quantile(&[], &[(1.0, 0), (f64::INFINITY, 0)], 0.5), None);
    }

    #[test]
    fn the_ring_keeps_its_bound_and_remembers_silent_nodes() {
        let mut ring = Ring::default();
        let t = |placed| BusinessTotals {
            orders_placed: placed,
            ..BusinessTotals::default()
        };
        for i in 0..(RING_POINTS as u64 + 10) {
            // Node b answers only the first time, then falls silent.
            let mut nodes: BTreeMap<String, BusinessTotals> = [("a".into(), t(i))].into();
            if i == 0 {
                nodes.insert("b".into(), t(7));
            }
            ring.push(Snapshot {
                t_ms: i * 5_000,
                nodes,
                ..Snapshot::default()
            });
        }
        let points = ring.points();
        assert_eq!(points.len(), RING_POINTS);
        assert_eq!(
            points.last().unwrap().t_ms,
            (RING_POINTS as u64 + 9) * 5_000
        );
        assert!(points.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
        assert!((points[0].orders_placed_per_s - 0.2).abs() < 1e-9);
        assert_eq!(
            ring.business_totals().orders_placed,
            RING_POINTS as u64 + 9 + 7
        );
    }
}
