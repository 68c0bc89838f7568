//! Failure and anomaly detection on a node: every [`WATCH_TICK`] it probes
//! the other members (a failure detector by heartbeat), and every
//! [`DETECT_EVERY_TICKS`] ticks it samples its own series (p99 latency and
//! error rate of its API, log fsync latency, replication lag, free disk,
//! clock offset, the shop's order, refusal and payment-failure rates, its
//! log's warning and error rates) into a [`keel_alert::Monitor`]. Alerts
//! are served at `GET /v1/alerts`, counted in `keel_alerts_active`, logged,
//! and sent to the configured webhook. A log message of a kind never seen
//! before is an event of its own.

use std::sync::Arc;
use std::time::Duration;

use keel_alert::{Change, LogNews, LogWatch, NewAlert, Severity, Transition, Watch};
use tokio::sync::watch;

use crate::node::Node;

/// How often members are probed.
pub const WATCH_TICK: Duration = Duration::from_secs(2);

/// Ticks between two samples of the series: 10 s, what the detectors'
/// presets are tuned for ([`keel_alert::monitor::SAMPLE_INTERVAL_MS`]).
pub const DETECT_EVERY_TICKS: u32 = 5;

/// The node's watches: what is sampled and how it is judged.
pub fn watches(clock_offset_max_ms: u64) -> Vec<Watch> {
    vec![
        Watch::member_unreachable("unreachable:*", ""),
        Watch::p99_latency("api_p99_s", "api"),
        Watch::error_rate("api_error_ratio", "api"),
        Watch::fsync_latency("fsync_p99_s", "log"),
        Watch::replication_lag("lag:*", ""),
        Watch::disk_time_to_full("data_dir_free_bytes", "data directory"),
        Watch::clock_offset("clock_offset_ms", "clock", clock_offset_max_ms),
        Watch::order_rate_down("orders_per_s", "orders"),
        Watch::refusal_rate("order_refusal_ratio", "orders"),
        Watch::payment_failure_rate("payment_failure_ratio", "payments"),
        Watch::log_warn_rate("log_warns_per_s", "log"),
        Watch::log_error_rate("log_errors_per_s", "log"),
    ]
}

/// Counters whose rates are sampled: their values at the last sample.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    warns: u64,
    errors: u64,
    placed: u64,
    refused: u64,
    paid: u64,
    payments_refused: u64,
}

/// Consecutive failed probes per member.
type Misses = std::collections::BTreeMap<u64, u32>;

/// Runs the watch until `stop` turns true.
pub async fn run(
    node: Arc<Node>,
    notify: Option<keel_alert::Webhook>,
    mut stop: watch::Receiver<bool>,
) {
    // What a node logs while it starts and elects its first leader is
    // learned, not news: the warm-up ends at the first sample.
    let logs = LogWatch::process();
    let mut misses = Misses::new();
    let mut totals: Option<Totals> = None;
    let mut tick = 0u32;
    let mut led = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_TICK) => {}
            _ = stop.changed() => return,
        }
        let now_ms = keel_protocol::wall_ms();
        let mut out = probe(&node, &mut misses, now_ms).await;
        out.extend(log_news(&node, logs, now_ms));
        tick = tick.wrapping_add(1);
        if tick == DETECT_EVERY_TICKS {
            logs.end_warmup();
        }
        if tick % DETECT_EVERY_TICKS == 0 {
            let leads = node.leads_with_agreed_clock();
            if led && !leads {
                // The shop's rates are counted where proposed: a former
                // leader's fall to zero is not the shop's.
                out.extend(node.forget_series(now_ms, LEADER_SERIES));
            }
            led = leads;
            let samples = sample(&node, logs, &mut totals, leads);
            out.extend(node.observe_series(now_ms, &samples));
        }
        for t in out {
            report(&t, notify.as_ref());
        }
        node.refresh_alert_gauges();
    }
}

/// Series only the leader samples.
const LEADER_SERIES: &[&str] = &[
    "orders_per_s",
    "order_refusal_ratio",
    "payment_failure_ratio",
];

async fn probe(node: &Node, misses: &mut Misses, now_ms: u64) -> Vec<Transition> {
    let status = node.cluster_status().await;
    let mut samples = Vec::new();
    let members: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    misses.retain(|id, _| members.contains(id));
    for m in status.members.iter().filter(|m| m.id != node.id()) {
        let n = misses.entry(m.id).or_insert(0);
        *n = if m.healthy { 0 } else { n.saturating_add(1) };
        samples.push((format!("unreachable:{}", m.id), f64::from(*n)));
    }
    node.observe_series(now_ms, &samples)
}

fn log_news(node: &Node, logs: &LogWatch, now_ms: u64) -> Vec<Transition> {
    let mut out = Vec::new();
    for news in logs.drain() {
        let LogNews::New {
            level,
            signature,
            example,
        } = news
        else {
            continue;
        };
        let severity = if level == tracing::Level::ERROR {
            Severity::Warning
        } else {
            Severity::Info
        };
        out.extend(node.record_event(
            now_ms,
            NewAlert {
                name: "new_log_signature".into(),
                severity,
                subject: signature,
                summary: format!("a {level} of a kind not logged before: {example}"),
                started_ms: now_ms,
                value: 1.0,
                baseline: 0.0,
            },
        ));
    }
    out
}

fn sample(
    node: &Node,
    logs: &LogWatch,
    last: &mut Option<Totals>,
    leads: bool,
) -> Vec<(String, f64)> {
    let mut s: Vec<(String, f64)> = Vec::new();
    let m = node.metrics();
    if let Some(w) = keel_protocol::sync::lock(&m.windows.requests).take() {
        s.push(("api_p99_s".into(), w.p99_s));
        s.push(("api_error_ratio".into(), w.failed_ratio));
    }
    if let Some(w) = keel_protocol::sync::lock(&m.windows.fsync).take() {
        s.push(("fsync_p99_s".into(), w.p99_s));
    }
    for (peer, lag) in node.replication_lags() {
        s.push((format!("lag:{peer}"), lag as f64));
    }
    if let Some(free) = node.host_sample().data_dir_free_bytes {
        s.push(("data_dir_free_bytes".into(), free as f64));
    }
    s.push((
        "clock_offset_ms".into(),
        m.clock_offset_from_majority_ms.get() as f64,
    ));
    let b = m.business.totals();
    let now = Totals {
        warns: logs.warns(),
        errors: logs.errors(),
        placed: b.placed,
        refused: b.refused,
        paid: b.paid,
        payments_refused: b.payments_refused,
    };
    if let Some(before) = last.replace(now) {
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / SAMPLE_S;
        s.push(("log_warns_per_s".into(), per_s(now.warns, before.warns)));
        s.push(("log_errors_per_s".into(), per_s(now.errors, before.errors)));
        if leads {
            let placed = now.placed.saturating_sub(before.placed);
            let refused = now.refused.saturating_sub(before.refused);
            let paid = now.paid.saturating_sub(before.paid);
            let failed = now.payments_refused.saturating_sub(before.payments_refused);
            s.push(("orders_per_s".into(), placed as f64 / SAMPLE_S));
            s.push((
                "order_refusal_ratio".into(),
                ratio(refused, placed + refused),
            ));
            s.push(("payment_failure_ratio".into(), ratio(failed, paid + failed)));
        }
    }
    s
}

/// Seconds between two samples.
const SAMPLE_S: f64 = (WATCH_TICK.as_secs() * DETECT_EVERY_TICKS as u64) as f64;

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn report(t: &Transition, notify: Option<&keel_alert::Webhook>) {
    let a = &t.alert;
    match t.change {
        // Logged at INFO: an alert logged as a warning would itself feed
        // the warning-rate watch.
        Change::Opened => tracing::info!(
            alert = %a.name, severity = a.severity.as_str(), subject = %a.subject,
            summary = %a.summary, "alert opened"
        ),
        Change::Closed => tracing::info!(
            alert = %a.name, subject = %a.subject, "alert closed"
        ),
    }
    if let Some(w) = notify {
        w.notify(t);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn the_watches_are_valid() {
        keel_alert::Monitor::new(watches(500)).unwrap();
    }
}
