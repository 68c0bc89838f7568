//! The Prometheus alert rules shipped for Alertmanager users parse, are
//! complete, and name only series Keel exports.
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;

const RULES: &str = include_str!("../../../deploy/prometheus/keel-alerts.yml");

/// Series Keel nodes and gateways export (histograms by their base name).
const SERIES: &[&str] = &[
    "keel_http_requests_total",
    "keel_http_request_seconds",
    "keel_log_fsync_seconds",
    "keel_raft_leader_id",
    "keel_clock_ok",
    "keel_clock_offset_from_majority_ms",
    "keel_gateway_requests_total",
    "keel_gateway_request_seconds",
    "keel_gateway_node_up",
    "keel_process_cpu_seconds_total",
    "keel_host_memory_available_bytes",
    "keel_data_dir_free_bytes",
    "keel_raft_replication_lag_entries",
    "keel_orders_placed_total",
    "keel_orders_refused_total",
    "keel_alerts_active",
];

fn rules() -> Vec<Value> {
    let doc: Value = serde_yaml::from_str(RULES).unwrap();
    let groups = doc["groups"].as_sequence().unwrap();
    assert!(!groups.is_empty());
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

/// The `keel_...` names in an expression.
fn series_in(expr: &str) -> Vec<&str> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    expr.split(|c: char| !is_name(c))
        .filter(|w| w.starts_with("keel_"))
        .collect()
}

fn known(name: &str) -> bool {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    SERIES.contains(&name) || SERIES.contains(&base)
}

#[test]
fn every_rule_is_complete_and_uniquely_named() {
    let rules = rules();
    assert!(rules.len() >= 10);
    let mut names = std::collections::HashSet::new();
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        assert!(names.insert(name), "{name} twice");
        assert!(!r["expr"].as_str().unwrap().trim().is_empty(), "{name}");
        let severity = r["labels"]["severity"].as_str().unwrap();
        assert!(
            ["info", "warning", "critical"].contains(&severity),
            "{name}: {severity}"
        );
        assert!(
            !r["annotations"]["summary"].as_str().unwrap().is_empty(),
            "{name}"
        );
    }
}

#[test]
fn every_rule_names_only_exported_series() {
    for r in rules() {
        let expr = r["expr"].as_str().unwrap();
        let names = series_in(expr);
        assert!(!names.is_empty(), "{expr}");
        for n in names {
            assert!(known(n), "{n} is not a series Keel exports");
        }
    }
}

#[test]
fn the_series_check_catches_a_wrong_name() {
    assert_eq!(
        series_in("rate(keel_nope_total[5m]) > 1"),
        ["keel_nope_total"]
    );
    assert!(!known("keel_nope_total"));
    assert!(known("keel_log_fsync_seconds_bucket"));
}
