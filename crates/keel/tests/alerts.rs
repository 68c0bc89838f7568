//! Failure detection and alerting on a real cluster: a member that stops
//! answering raises a critical alert on the others, served at
//! `GET /v1/alerts`, printed by `keel admin alerts`, counted in
//! `keel_alerts_active` and POSTed to the configured webhook; it ends when
//! the member is back. Also the series an operator needs are on /metrics.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use keel_client::method_get;
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);
/// Two probes 2 s apart fail before the alert opens.
const DETECTED: Duration = Duration::from_secs(20);

/// A webhook receiver on a free local port: what it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

fn admin_alerts(c: &LocalCluster, endpoint: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["admin", "--endpoint", endpoint, "alerts"])
        .env("KEEL_ADMIN_TOKEN", c.admin_token())
        .env_remove("KEEL_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn alerts(c: &LocalCluster, id: u64) -> Option<Value> {
    let ep = c.addr(id).ok()?;
    c.node_client(id)
        .ok()?
        .call_at(&ep, method_get(), "/v1/alerts", None, None)
        .await
        .ok()
        .map(|r| r.body)
}

/// The `keel_…` series names in a rules file.
fn series_in(rules: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in rules.match_indices("keel_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    assert!(out.len() > 5, "no series found in the rules");
    out
}

fn names(list: &Value, name: &str, subject: &str) -> usize {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == name && a["subject"] == subject)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_stops_answering_is_alerted_and_the_alert_ends_when_it_is_back() {
    let (hook, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    spec.extra_args = vec!["--alert-webhook".into(), hook];
    let mut c = LocalCluster::start(spec).unwrap();
    let leader = c.wait_ready(READY).await.unwrap();
    let client = c.admin_client();
    keel_harness::seed_test_shop(&client, 1, 1_000, 1_000_000_000)
        .await
        .unwrap();
    client
        .place_order("c0", &[("SKU-1".to_string(), 1)], "a1")
        .await
        .unwrap();
    let down = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.kill(down).unwrap();
    let subject = down.to_string();
    c.wait_for(
        "a member_unreachable alert on the leader",
        DETECTED,
        || async {
            let a = alerts(&c, leader).await?;
            (names(&a["active"], "member_unreachable", &subject) == 1).then_some(())
        },
    )
    .await
    .unwrap();
    let ep = c.addr(leader).unwrap();
    let table = admin_alerts(&c, &ep);
    assert!(
        table
            .lines()
            .any(|l| l.contains("OPEN") && l.contains("member_unreachable")),
        "{table}"
    );
    let metrics = c
        .node_client(leader)
        .unwrap()
        .call_at(&ep, method_get(), "/metrics", None, None)
        .await
        .unwrap()
        .body;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for series in [
        "keel_alerts_active{severity=\"critical\"} 1",
        "keel_orders_placed_total 1",
        "keel_process_open_fds",
        "keel_data_dir_free_bytes",
        "keel_raft_replication_lag_entries{peer=",
        "keel_proposer_queued_commands",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    // Every series the shipped Prometheus rules use is one a node or a
    // gateway exports.
    let gateway = c.start_gateway_ready(0).await.unwrap();
    let gateway_metrics = c
        .admin_client()
        .call_at(&gateway, method_get(), "/metrics", None, None)
        .await
        .unwrap()
        .body;
    let exported = format!("{metrics}{}", gateway_metrics.as_str().unwrap_or_default());
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/keel-alerts.yml"
    ))
    .unwrap();
    for name in series_in(&rules) {
        let base = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_bucket"))
            .unwrap_or(&name);
        assert!(
            exported.contains(&format!("# TYPE {base} ")),
            "the rules use {name}, which nothing exports"
        );
    }
    c.wait_for("the webhook told of the alert", DETECTED, || async {
        let got = got.lock().unwrap();
        got.iter()
            .any(|t| t["change"] == "opened" && t["alert"]["name"] == "member_unreachable")
            .then_some(())
    })
    .await
    .unwrap();
    // The member is back: the alert ends, kept in the history.
    c.restart(down).unwrap();
    c.wait_for("the alert ended", DETECTED, || async {
        let a = alerts(&c, leader).await?;
        (names(&a["active"], "member_unreachable", &subject) == 0
            && names(&a["history"], "member_unreachable", &subject) >= 1)
            .then_some(())
    })
    .await
    .unwrap();
}
