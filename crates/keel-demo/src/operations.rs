//! What an operator saw of the run: the alerts the nodes raised (the
//! killed leader reported unreachable by the others), and the gateway's
//! own measure of availability and recovery time, from what it answered
//! the shoppers.

use keel_client::{method_get, Client};
use keel_harness::LocalCluster;
use serde_json::Value;

/// Most alerts the report lists.
pub const ALERTS_SHOWN_MAX: usize = 6;

/// The operator's view of the run.
#[derive(Debug, Default)]
pub struct Observed {
    /// Alerts opened since the shopping began, oldest first: `(node that
    /// raised it, alert)`.
    pub alerts: Vec<(u64, Value)>,
    /// The gateway's availability report, when the shoppers went through
    /// it.
    pub availability: Option<Value>,
}

/// Reads every node's alerts opened at or after `since_ms` (wall clock)
/// and, with a gateway, its availability report.
pub async fn observe(
    cluster: &LocalCluster,
    client: &Client,
    gateway: Option<&str>,
    since_ms: u64,
) -> Observed {
    let mut alerts = Vec::new();
    let asked = match cluster.running().first().map(|id| cluster.addr(*id)) {
        Some(Ok(ep)) => cluster.admin_client().cluster_alerts(&ep).await.ok(),
        _ => None,
    };
    for (id, answer) in asked.into_iter().flatten() {
        let Ok(body) = answer else { continue };
        for list in ["active", "history"] {
            for a in body[list].as_array().into_iter().flatten() {
                if a["started_ms"].as_u64().is_some_and(|t| t >= since_ms) {
                    alerts.push((id, a.clone()));
                }
            }
        }
    }
    alerts.sort_by_key(|(_, a)| a["started_ms"].as_u64());
    let availability = match gateway {
        Some(g) => client
            .call_at(g, method_get(), "/gateway/availability", None, None)
            .await
            .ok()
            .map(|r| r.body),
        None => None,
    };
    Observed {
        alerts,
        availability,
    }
}

/// The report's lines: the alerts (unreachable members first, then the
/// rest, at most [`ALERTS_SHOWN_MAX`]), then availability and recovery.
pub fn lines(o: &Observed, since_ms: u64) -> Vec<String> {
    let mut out = Vec::new();
    let at = |a: &Value| {
        a["started_ms"].as_u64().map_or("?".into(), |t| {
            format!("+{:.1}s", t.saturating_sub(since_ms) as f64 / 1e3)
        })
    };
    let mut shown: Vec<&(u64, Value)> = o
        .alerts
        .iter()
        .filter(|(_, a)| a["name"] == "member_unreachable")
        .collect();
    shown.extend(
        o.alerts
            .iter()
            .filter(|(_, a)| a["name"] != "member_unreachable"),
    );
    if shown.is_empty() {
        out.push("  alerts raised            none".into());
    }
    for (i, (node, a)) in shown.iter().take(ALERTS_SHOWN_MAX).enumerate() {
        let label = if i == 0 { "alerts raised" } else { "" };
        let ended = match a["ended_ms"].as_u64() {
            Some(t) => format!(", ended +{:.1}s", t.saturating_sub(since_ms) as f64 / 1e3),
            None => ", still open".into(),
        };
        out.push(format!(
            "  {label:<24} {} {} on node {node} at {}{ended}: {}",
            a["severity"].as_str().unwrap_or("?"),
            a["name"].as_str().unwrap_or("?"),
            at(a),
            a["subject"].as_str().unwrap_or("")
        ));
    }
    if o.alerts.len() > ALERTS_SHOWN_MAX {
        out.push(format!(
            "  {:<24} ... and {} more (keel admin alerts)",
            "",
            o.alerts.len() - ALERTS_SHOWN_MAX
        ));
    }
    if let Some(av) = &o.availability {
        out.extend(availability_lines(av));
    }
    out
}

fn availability_lines(av: &Value) -> Vec<String> {
    let all = &av["windows"]["all"];
    let mut out = vec![format!(
        "  availability (gateway)   {:.3}% of {} requests, {:.2} failures per 1000",
        all["availability"].as_f64().unwrap_or(1.0) * 100.0,
        all["requests"].as_u64().unwrap_or(0),
        all["failures_per_thousand"].as_f64().unwrap_or(0.0),
    )];
    let outages = av["outages"].as_array().cloned().unwrap_or_default();
    match outages
        .iter()
        .filter_map(|o| o["duration_ms"].as_u64())
        .max()
    {
        Some(longest) => out.push(format!(
            "  recovery time (gateway)  {} outage(s) seen by clients, longest {longest} ms \
             (first failed request to the first success after it)",
            outages.len()
        )),
        None => out.push(
            "  recovery time (gateway)  no outage seen by clients: every request was answered"
                .into(),
        ),
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use serde_json::json;

    use super::*;

    #[test]
    fn the_report_names_the_unreachable_leader_and_the_recovery() {
        let o = Observed {
            alerts: vec![
                (
                    2,
                    json!({"name": "new_log_signature", "severity": "info", "subject": "x",
                           "started_ms": 1_500}),
                ),
                (
                    2,
                    json!({"name": "member_unreachable", "severity": "critical", "subject": "1",
                           "started_ms": 5_000, "ended_ms": 9_000}),
                ),
            ],
            availability: Some(json!({
                "windows": {"all": {"availability": 0.999, "requests": 1000,
                                    "failures_per_thousand": 1.0}},
                "outages": [{"duration_ms": 480}],
            })),
        };
        let text = lines(&o, 1_000).join("\n");
        assert!(
            text.contains("critical member_unreachable on node 2 at +4.0s, ended +8.0s: 1"),
            "{text}"
        );
        assert!(text.contains("99.900% of 1000 requests"), "{text}");
        assert!(text.contains("longest 480 ms"), "{text}");
        let first = text.lines().next().unwrap();
        assert!(first.contains("member_unreachable"), "{text}");
    }
}
