//! The live operations dashboard: a page served at `/dashboard` (its
//! assets embedded, [`assets`]) that polls `GET /gateway/dashboard`, which
//! this module answers by asking the nodes, each call under its own
//! timeout, and answering with what did answer:
//!
//! - the cluster from a node's `/v1/cluster` (the leader's, else another
//!   node's), every member's `/v1/alerts` and `/v1/clock`, all with the
//!   caller's own `Authorization`, so the page sees no more than its
//!   credential may;
//! - the gateway's own figures and the cluster's business series as a ring
//!   of points ([`crate::series`]), which a sampler task fills every
//!   [`SAMPLE_INTERVAL`] from the gateway's `/metrics` text and each node's;
//! - the availability report, and the backup panel ([`crate::backup_view`]) when the
//!   gateway is given a backup repository.

pub mod assets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::availability::AvailabilityReport;
use crate::backup_view::BackupsView;
use crate::dashboard_state::{detector_samples, DETECT_EVERY_SAMPLES};
use crate::series::{BusinessTotals, GatewayTotals, Point, Snapshot};
use crate::shared::{node_request, Shared};

/// How often the sampler reads the counters: fine enough to see a
/// failover of a few seconds on the charts, coarse enough that scraping
/// every node costs them nothing (the nodes' `/metrics` is a few KiB).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Longest the sampler waits for one node's `/metrics`: a node that takes
/// longer is left out of this point (its next reading catches up).
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/metrics` reply read from a node (a few tens of KiB today).
pub const METRICS_BYTES_MAX: usize = 4 << 20;
/// Longest the sampler waits for the backup repository's listing: a local
/// directory answers in milliseconds; a hung mount must not stall the
/// charts.
pub const BACKUP_LIST_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one node may take to answer `/v1/cluster`, `/v1/alerts` or
/// `/v1/clock` for a `/gateway/dashboard` request. The page polls every
/// 2 s; a node slower than this is shown as not answering.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_millis(800);
/// Largest reply read from `/v1/cluster`, `/v1/alerts` or `/v1/clock`.
pub const NODE_REPLY_BYTES_MAX: usize = 1 << 20;
/// Nodes asked for `/v1/cluster` before the dashboard gives up on the
/// cluster's own view (leader first): bounds one request's wait to this
/// many [`NODE_CALL_TIMEOUT`]s.
pub const CLUSTER_ASKS_MAX: usize = 3;
/// Members listed: a Keel cluster has a handful; the cap bounds the reply
/// and the calls one request makes (two per member) if a node lists more.
pub const MEMBERS_MAX: usize = 16;
/// Open alerts listed (all members together), and separately ended ones:
/// a screen's worth, newest first; the nodes' `/v1/alerts` has the rest.
pub const ALERTS_MAX: usize = 50;
/// Problems listed (a node that did not answer, and why): one per call at
/// most, so a handful; the cap bounds the reply regardless.
pub const PROBLEMS_MAX: usize = 32;

/// Every [`SAMPLE_INTERVAL`] until shutdown: reads the gateway's counters
/// and every known node's `/metrics` into the ring, and lists the backup
/// repository.
pub async fn sample(gw: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = sample_once(&gw) => {}
        }
    }
}

async fn sample_once(gw: &Arc<Shared>) {
    let nodes = scrape_nodes(gw).await;
    let snap = Snapshot {
        t_ms: keel_protocol::wall_ms(),
        gateway: GatewayTotals::from_metrics(&gw.metrics.render()),
        nodes,
    };
    let point = {
        let mut ring = gw.dashboard.ring();
        ring.push(snap);
        ring.last_point()
    };
    let n = gw
        .dashboard
        .samples
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(p) = point.filter(|_| n % DETECT_EVERY_SAMPLES == 0) {
        let out =
            keel_protocol::sync::lock(&gw.dashboard.monitor).observe(p.t_ms, &detector_samples(&p));
        for t in out {
            tracing::info!(
                alert = %t.alert.name, change = ?t.change, summary = %t.alert.summary,
                "gateway alert"
            );
        }
    }
    if let Some(repo) = &gw.dashboard.repo {
        let view = repo
            .view_within(BACKUP_LIST_TIMEOUT, keel_protocol::wall_ms())
            .await;
        *keel_protocol::sync::lock(&gw.dashboard.backups) = Some(view);
    }
}

/// Each known node's business counters, read concurrently; nodes that do
/// not answer within [`METRICS_TIMEOUT`] are left out.
async fn scrape_nodes(gw: &Arc<Shared>) -> BTreeMap<String, BusinessTotals> {
    let mut calls = JoinSet::new();
    for (_, addr) in gw.pool.addrs() {
        let gw = gw.clone();
        calls.spawn(async move {
            let text = get_text(
                &gw,
                &addr,
                "/metrics",
                None,
                METRICS_TIMEOUT,
                METRICS_BYTES_MAX,
            )
            .await
            .ok()?;
            Some((addr, BusinessTotals::from_metrics(&text)))
        });
    }
    let mut out = BTreeMap::new();
    while let Some(done) = calls.join_next().await {
        if let Ok(Some((addr, t))) = done {
            out.insert(addr, t);
        }
    }
    out
}

/// A GET of `path` on the node at `addr` within `timeout`, its body as
/// text if it answered 200.
async fn get_text(
    gw: &Shared,
    addr: &str,
    path: &str,
    auth: Option<&str>,
    timeout: Duration,
    bytes_max: usize,
) -> Result<String, String> {
    let req = node_request(addr, path, auth).map_err(|e| e.to_string())?;
    let resp = match tokio::time::timeout(timeout, gw.upstream.exchange(addr, req, bytes_max)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {timeout:?}")),
    };
    if resp.status() != StatusCode::OK {
        return Err(format!("answered {}", resp.status()));
    }
    String::from_utf8(resp.into_body().to_vec()).map_err(|e| e.to_string())
}

/// [`get_text`] read as JSON, within [`NODE_CALL_TIMEOUT`].
async fn get_json<T: DeserializeOwned>(
    gw: &Shared,
    addr: &str,
    path: &str,
    auth: &str,
) -> Result<T, String> {
    let text = get_text(
        gw,
        addr,
        path,
        Some(auth),
        NODE_CALL_TIMEOUT,
        NODE_REPLY_BYTES_MAX,
    )
    .await?;
    serde_json::from_str(&text).map_err(|e| format!("unreadable reply: {e}"))
}

/// The body of `GET /gateway/dashboard`.
#[derive(Clone, Debug, Serialize)]
pub struct DashboardReport {
    /// When it was put together (ms since the Unix epoch, the gateway's
    /// clock).
    pub generated_ms: u64,
    /// The cluster: members, roles, the leader, health, lag, clock offsets.
    pub cluster: ClusterView,
    /// Alerts of every member that answered.
    pub alerts: AlertsView,
    /// The gateway's and the cluster's rates, one point per
    /// [`SAMPLE_INTERVAL`], oldest first (at most
    /// [`series::RING_POINTS`]).
    pub series: Vec<Point>,
    /// The cluster's business counters at the last sample, summed over
    /// the nodes.
    pub business: BusinessTotals,
    /// Availability as the gateway's clients saw it.
    pub availability: AvailabilityReport,
    /// The backup panel; none when the gateway has no backup repository.
    pub backups: Option<BackupsView>,
    /// Calls that failed while putting this together (at most
    /// [`PROBLEMS_MAX`]), e.g. `node 2 (127.0.0.1:7102) /v1/clock: no
    /// answer within 800ms`.
    pub problems: Vec<String>,
}

/// `cluster` in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// The node whose `/v1/cluster` this is; none when no node answered
    /// (the members are then the gateway's own list).
    pub answered_by: Option<String>,
    /// The leader's id, if known.
    pub leader_id: Option<u64>,
    /// The leader's address as the gateway follows it.
    pub gateway_leader_addr: Option<String>,
    /// The answering node's term.
    pub term: Option<u64>,
    /// The members (at most [`MEMBERS_MAX`]).
    pub members: Vec<MemberView>,
}

/// One member of the cluster.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    /// Node id; none when only the gateway's list was available.
    pub id: Option<u64>,
    /// The address the gateway reaches it at.
    pub addr: String,
    /// `voter` or `learner`.
    pub membership: Option<String>,
    /// leader / follower / learner / candidate / unknown, as it says.
    pub role: Option<String>,
    /// Whether it is the leader.
    pub leader: bool,
    /// Its term.
    pub term: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// The leader's last log index minus its applied index.
    pub lag: Option<u64>,
    /// `up` when both the answering node and the gateway's probes found
    /// it healthy (as far as each knows it), else `down`.
    pub health: Health,
    /// Whether the answering node found it healthy.
    pub cluster_healthy: Option<bool>,
    /// Whether the gateway's probes find it healthy.
    pub gateway_healthy: Option<bool>,
    /// Its clock minus the leader's (ms), as the leader last read it (0
    /// for the leader itself).
    pub clock_offset_ms: Option<i64>,
    /// Whether its clock agrees with a majority's, so it may lead.
    pub may_lead: Option<bool>,
}

/// A member's health as the page marks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Answering and healthy.
    Up,
    /// Not answering, or not healthy.
    Down,
}

/// `alerts` in the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AlertsView {
    /// Alerts open now, newest first (at most [`ALERTS_MAX`]).
    pub active: Vec<NodeAlert>,
    /// Alerts that ended, latest end first (at most [`ALERTS_MAX`]).
    pub history: Vec<NodeAlert>,
}

/// One alert of one node, as its `/v1/alerts` gives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeAlert {
    /// The node that raised it (set by the gateway).
    #[serde(default)]
    pub node_id: Option<u64>,
    /// Its id on that node.
    pub id: u64,
    /// What is wrong, e.g. `p99_latency_up`.
    pub name: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// What it is about.
    pub subject: String,
    /// A sentence for a human.
    pub summary: String,
    /// When it opened (ms since the Unix epoch).
    pub started_ms: u64,
    /// When it ended; none while open.
    pub ended_ms: Option<u64>,
    /// The value that opened it.
    pub value: f64,
    /// What the value was compared with.
    pub baseline: f64,
}

/// A node's `/v1/alerts`.
#[derive(Deserialize)]
struct AlertsReply {
    #[serde(default)]
    active: Vec<NodeAlert>,
    #[serde(default)]
    history: Vec<NodeAlert>,
}

/// A node's `/v1/cluster`, the fields the dashboard reads.
#[derive(Deserialize)]
struct ClusterReply {
    leader_id: Option<u64>,
    term: u64,
    members: Vec<MemberReply>,
}

#[derive(Deserialize)]
struct MemberReply {
    id: u64,
    addr: String,
    membership: String,
    role: String,
    term: Option<u64>,
    applied_index: Option<u64>,
    lag: Option<u64>,
    healthy: bool,
}

/// A node's `/v1/clock`, the fields the dashboard reads.
#[derive(Deserialize)]
struct ClockReply {
    may_lead: bool,
    peers: BTreeMap<String, PeerClockReply>,
}

#[derive(Deserialize)]
struct PeerClockReply {
    offset_ms: i64,
}

/// Bounded list of what went wrong.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, p: String) {
        if self.0.len() < PROBLEMS_MAX {
            self.0.push(p);
        }
    }
}

/// Puts the report together for a caller presenting `auth` (already
/// checked to be allowed to observe), forwarding it to the nodes.
pub async fn report(gw: &Arc<Shared>, auth: &str) -> DashboardReport {
    let mut problems = Problems::default();
    let now = Instant::now();
    // The gateway's own view, by address: health and who leads.
    let status = gw.pool.status(now);
    let gateway_health: BTreeMap<String, bool> = status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["addr"].as_str()?.to_owned(), n["health"] == "up")))
        .collect();
    let gateway_leader_addr = gw.pool.leader_addr();

    let cluster = ask_cluster(gw, auth, &gateway_health, &mut problems).await;
    let mut view = match cluster {
        Some((by, c)) => cluster_view(by, c, &gateway_health),
        None => ClusterView {
            answered_by: None,
            leader_id: None,
            term: None,
            gateway_leader_addr: None,
            members: gateway_health
                .iter()
                .take(MEMBERS_MAX)
                .map(|(addr, up)| gateway_only_member(addr, *up))
                .collect(),
        },
    };
    view.gateway_leader_addr = gateway_leader_addr.clone();
    if view.answered_by.is_none() {
        for m in &mut view.members {
            m.leader = gateway_leader_addr.as_deref() == Some(m.addr.as_str());
        }
    }
    let mut alerts = ask_members(gw, auth, &mut view, &mut problems).await;
    add_gateway_alerts(&mut alerts, gw.dashboard.alerts());

    let (series, business) = {
        let ring = gw.dashboard.ring();
        (ring.points(), ring.business_totals())
    };
    let now_ms = keel_protocol::wall_ms();
    DashboardReport {
        generated_ms: now_ms,
        cluster: view,
        alerts,
        series,
        business,
        availability: gw.availability.lock().report(now_ms),
        backups: keel_protocol::sync::lock(&gw.dashboard.backups).clone(),
        problems: problems.0,
    }
}

/// `/v1/cluster` from the leader the gateway follows, else from the
/// healthy nodes, else any: at most [`CLUSTER_ASKS_MAX`] asked.
async fn ask_cluster(
    gw: &Shared,
    auth: &str,
    gateway_health: &BTreeMap<String, bool>,
    problems: &mut Problems,
) -> Option<(String, ClusterReply)> {
    let mut order: Vec<String> = gw.pool.leader_addr().into_iter().collect();
    let mut rest: Vec<(&String, &bool)> = gateway_health.iter().collect();
    // Healthy first; `false` sorts before `true`.
    rest.sort_by_key(|(_, up)| !**up);
    order.extend(rest.into_iter().map(|(a, _)| a.clone()));
    let mut asked = Vec::new();
    for addr in order {
        if asked.contains(&addr) || asked.len() == CLUSTER_ASKS_MAX {
            continue;
        }
        asked.push(addr.clone());
        match get_json::<ClusterReply>(gw, &addr, "/v1/cluster", auth).await {
            Ok(c) => return Some((addr, c)),
            Err(e) => problems.push(format!("{addr} /v1/cluster: {e}")),
        }
    }
    None
}

fn cluster_view(
    by: String,
    c: ClusterReply,
    gateway_health: &BTreeMap<String, bool>,
) -> ClusterView {
    let members = c
        .members
        .into_iter()
        .take(MEMBERS_MAX)
        .map(|m| {
            let gateway_healthy = gateway_health.get(&m.addr).copied();
            let up = m.healthy && gateway_healthy != Some(false);
            MemberView {
                leader: c.leader_id == Some(m.id),
                id: Some(m.id),
                addr: m.addr,
                membership: Some(m.membership),
                role: Some(m.role),
                term: m.term,
                applied_index: m.applied_index,
                lag: m.lag,
                health: if up { Health::Up } else { Health::Down },
                cluster_healthy: Some(m.healthy),
                gateway_healthy,
                clock_offset_ms: None,
                may_lead: None,
            }
        })
        .collect();
    ClusterView {
        answered_by: Some(by),
        leader_id: c.leader_id,
        gateway_leader_addr: None,
        term: Some(c.term),
        members,
    }
}

fn gateway_only_member(addr: &str, up: bool) -> MemberView {
    MemberView {
        id: None,
        addr: addr.to_owned(),
        membership: None,
        role: None,
        leader: false,
        term: None,
        applied_index: None,
        lag: None,
        health: if up { Health::Up } else { Health::Down },
        cluster_healthy: None,
        gateway_healthy: Some(up),
        clock_offset_ms: None,
        may_lead: None,
    }
}

/// Every member's `/v1/alerts` and `/v1/clock`, concurrently; sets each
/// member's clock fields in `view` and returns the alerts.
async fn ask_members(
    gw: &Arc<Shared>,
    auth: &str,
    view: &mut ClusterView,
    problems: &mut Problems,
) -> AlertsView {
    let mut calls = JoinSet::new();
    for (i, m) in view.members.iter().enumerate() {
        // A member the gateway's probes find down is not asked: its
        // absence is already on the page, and the call would only wait.
        if m.gateway_healthy == Some(false) && m.cluster_healthy != Some(true) {
            continue;
        }
        let (gw, addr, auth) = (gw.clone(), m.addr.clone(), auth.to_owned());
        calls.spawn(async move {
            let (alerts, clock) = tokio::join!(
                get_json::<AlertsReply>(&gw, &addr, "/v1/alerts", &auth),
                get_json::<ClockReply>(&gw, &addr, "/v1/clock", &auth),
            );
            (i, addr, alerts, clock)
        });
    }
    let mut clocks: BTreeMap<usize, ClockReply> = BTreeMap::new();
    let mut out = AlertsView::default();
    while let Some(done) = calls.join_next().await {
        let Ok((i, addr, alerts, clock)) = done else {
            continue;
        };
        let node_id = view.members[i].id;
        match alerts {
            Ok(a) => {
                for mut alert in a.active.into_iter().chain(a.history) {
                    alert.node_id = node_id;
                    match alert.ended_ms {
                        None => out.active.push(alert),
                        Some(_) => out.history.push(alert),
                    }
                }
            }
            Err(e) => problems.push(format!("{addr} /v1/alerts: {e}")),
        }
        match clock {
            Ok(c) => {
                clocks.insert(i, c);
            }
            Err(e) => problems.push(format!("{addr} /v1/clock: {e}")),
        }
    }
    newest_first(&mut out);
    set_clocks(view, &clocks);
    out
}

/// Puts the gateway's own alerts (no `node_id`) among the nodes', newest
/// first, within [`ALERTS_MAX`].
fn add_gateway_alerts(view: &mut AlertsView, own: keel_alert::AlertsResponse) {
    let convert = |a: keel_alert::Alert| NodeAlert {
        node_id: None,
        id: a.id,
        name: a.name,
        severity: a.severity.as_str().to_owned(),
        subject: a.subject,
        summary: a.summary,
        started_ms: a.started_ms,
        ended_ms: a.ended_ms,
        value: a.value,
        baseline: a.baseline,
    };
    view.active.extend(own.active.into_iter().map(convert));
    view.history.extend(own.history.into_iter().map(convert));
    newest_first(view);
}

/// Orders open alerts by start and ended ones by end, newest first, and
/// keeps [`ALERTS_MAX`] of each.
fn newest_first(view: &mut AlertsView) {
    view.active
        .sort_by_key(|a| std::cmp::Reverse((a.started_ms, a.node_id, a.id)));
    view.active.truncate(ALERTS_MAX);
    view.history
        .sort_by_key(|a| std::cmp::Reverse((a.ended_ms, a.node_id, a.id)));
    view.history.truncate(ALERTS_MAX);
}

/// Each member's offset from the leader's clock, as the leader last read
/// it (the answering node's reading when the leader did not answer).
fn set_clocks(view: &mut ClusterView, clocks: &BTreeMap<usize, ClockReply>) {
    let reference = view
        .members
        .iter()
        .position(|m| m.leader)
        .filter(|i| clocks.contains_key(i))
        .or_else(|| {
            view.members
                .iter()
                .position(|m| Some(&m.addr) == view.answered_by.as_ref())
        })
        .and_then(|i| Some((i, clocks.get(&i)?)));
    for (i, m) in view.members.iter_mut().enumerate() {
        m.may_lead = clocks.get(&i).map(|c| c.may_lead);
        m.clock_offset_ms = match reference {
            Some((r, _)) if r == i => Some(0),
            Some((_, c)) => {
                m.id.and_then(|id| c.peers.get(&id.to_string()))
                    .map(|p| p.offset_ms)
            }
            None => None,
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn the_gateway_judges_its_clients_latency_errors_and_the_clusters_orders() {
        let mut m = keel_alert::Monitor::new(crate::dashboard_state::gateway_watches()).unwrap();
        let point = |t_ms: u64, p99_ms: f64| Point {
            t_ms,
            requests_per_s: 100.0,
            errors_per_s: 1.0,
            latency_ms_p99: Some(p99_ms),
            orders_placed_per_s: 40.0,
            ..Point::default()
        };
        let samples = detector_samples(&point(0, 20.0));
        assert!(samples.contains(&("client_p99_s", 0.02)), "{samples:?}");
        assert!(
            samples.contains(&("client_error_ratio", 0.01)),
            "{samples:?}"
        );
        assert!(
            samples.contains(&("cluster_orders_per_s", 40.0)),
            "{samples:?}"
        );
        // Steady for an hour of 10 s samples, then p99 ten times higher.
        let mut opened = Vec::new();
        for i in 0..400u64 {
            let p99 = if i < 360 {
                20.0 + (i % 3) as f64
            } else {
                200.0
            };
            opened.extend(m.observe(i * 10_000, &detector_samples(&point(i * 10_000, p99))));
        }
        assert_eq!(opened.len(), 1, "{opened:?}");
        assert_eq!(opened[0].alert.name, "p99_latency_up");
        let mut view = AlertsView::default();
        add_gateway_alerts(&mut view, m.book().response());
        assert_eq!(view.active.len(), 1);
        assert_eq!(view.active[0].node_id, None);
    }

    fn cluster_reply() -> ClusterReply {
        serde_json::from_value(serde_json::json!({
            "node_id": 1, "leader_id": 2, "term": 7, "last_log_index": 10,
            "applied_index": 10, "snapshot_index": null, "purged_index": null,
            "members": [
                {"id": 1, "addr": "a:1", "membership": "voter", "role": "follower",
                 "term": 7, "applied_index": 10, "lag": 0, "healthy": true},
                {"id": 2, "addr": "a:2", "membership": "voter", "role": "leader",
                 "term": 7, "applied_index": 10, "lag": 0, "healthy": true},
                {"id": 3, "addr": "a:3", "membership": "voter", "role": "unknown",
                 "term": null, "applied_index": null, "lag": null, "healthy": false},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn members_are_down_when_either_view_says_so_and_the_leader_is_marked() {
        let health = [("a:1".to_owned(), false), ("a:2".to_owned(), true)].into();
        let v = cluster_view("a:2".into(), cluster_reply(), &health);
        let by_id = |id| v.members.iter().find(|m| m.id == Some(id)).unwrap();
        assert_eq!(v.leader_id, Some(2));
        assert!(by_id(2).leader && !by_id(1).leader);
        // 1: the cluster says healthy, the gateway's probes do not.
        assert_eq!(by_id(1).health, Health::Down);
        assert_eq!(by_id(2).health, Health::Up);
        // 3: the gateway does not know it, the cluster finds it unhealthy.
        assert_eq!(by_id(3).health, Health::Down);
    }

    #[test]
    fn clock_offsets_are_the_leaders_readings() {
        let mut v = cluster_view("a:2".into(), cluster_reply(), &BTreeMap::new());
        let clock = |may_lead, peers: &[(&str, i64)]| ClockReply {
            may_lead,
            peers: peers
                .iter()
                .map(|(id, o)| (id.to_string(), PeerClockReply { offset_ms: *o }))
                .collect(),
        };
        let clocks = [
            (0, clock(true, &[("2", 5)])),
            (1, clock(true, &[("1", -4), ("3", 250)])),
        ]
        .into();
        set_clocks(&mut v, &clocks);
        let offsets: Vec<_> = v.members.iter().map(|m| m.clock_offset_ms).collect();
        assert_eq!(offsets, [Some(-4), Some(0), Some(250)]);
        assert_eq!(v.members[2].may_lead, None);
    }

    #[test]
    fn an_alert_reply_reads_as_nodes_write_it() {
        let a: AlertsReply = serde_json::from_value(serde_json::json!({
            "active": [{"id": 1, "name": "member_unreachable", "severity": "critical",
                        "subject": "3", "summary": "node 3 does not answer",
                        "started_ms": 5, "ended_ms": null, "value": 1.0, "baseline": 0.0}],
            "history": [],
        }))
        .unwrap();
        assert_eq!(a.active[0].severity, "critical");
    }
}
