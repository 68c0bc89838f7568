//! The gateway's availability measurements against what a client saw:
//! a writer orders through the gateway while the leader is killed
//! (SIGKILL), and the gateway's counts of requests, failures and outages
//! must be the writer's own, whether its retries hid the failover or not.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use keel_domain::Role;
use keel_gateway::{AvailabilityReport, OUTAGES_KEPT};
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::json;

const READY: Duration = Duration::from_secs(30);
/// The admin token the harness gives the nodes and the gateway.
const TOKEN: &str = "keel-admin-dev";
/// Longest the writer may take to succeed again after the kill: an
/// election plus the gateway following the new leader, with room for a
/// slow machine.
const RECOVER: Duration = Duration::from_secs(20);
/// Orders the writer places before the kill, and again after the new
/// leader is known, so both sides of the failover have traffic.
const ORDERS_AROUND_KILL: u64 = 20;
/// The writer's own timeout: longer than the gateway's request deadline
/// (10 s), so the gateway always answers first and every request it
/// finished is one the writer saw.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the writer saw.
#[derive(Default)]
struct Seen {
    sent: AtomicU64,
    served: AtomicU64,
    /// Answers of 500 and above: failures of availability.
    failed: AtomicU64,
    /// No answer at all (the connection broke, or the writer timed out).
    lost: AtomicU64,
    last_ok: AtomicBool,
}

impl Seen {
    fn get(n: &AtomicU64) -> u64 {
        n.load(Ordering::SeqCst)
    }
}

/// Orders through the gateway until `stop`, one at a time, each with a
/// key of its own if `keyed`, tallying what came back.
async fn write_until(
    http: reqwest::Client,
    gw: String,
    keyed: bool,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        seen.sent.fetch_add(1, Ordering::SeqCst);
        let mut req = http
            .post(format!("http://{gw}/v1/orders"))
            .bearer_auth(TOKEN)
            .json(&json!({"customer": "c0", "lines": [{"sku": "SKU-1", "qty": n}]}));
        if keyed {
            req = req.header("Idempotency-Key", format!("avail-{n}"));
        }
        let r = req.send().await;
        let ok = match r {
            Ok(r) if r.status().as_u16() >= 500 => {
                seen.failed.fetch_add(1, Ordering::SeqCst);
                false
            }
            Ok(_) => {
                seen.served.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(_) => {
                seen.lost.fetch_add(1, Ordering::SeqCst);
                false
            }
        };
        seen.last_ok.store(ok, Ordering::SeqCst);
    }
}

async fn report(http: &reqwest::Client, gw: &str, token: &str) -> AvailabilityReport {
    let r = http
        .get(format!("http://{gw}/gateway/availability"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The samples of the gateway's `/metrics`, by series name and labels.
async fn metrics(http: &reqwest::Client, gw: &str) -> BTreeMap<String, f64> {
    let text = http
        .get(format!("http://{gw}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, v)| (series.to_owned(), v.parse().unwrap()))
        .collect()
}

/// Waits until the writer has been served `more` times more than now.
async fn wait_served(cluster: &LocalCluster, seen: &Seen, more: u64, what: &str) {
    let target = Seen::get(&seen.served) + more;
    cluster
        .wait_for(what, RECOVER, || async {
            (Seen::get(&seen.served) >= target).then_some(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_writes_through_a_leader_kill_are_counted_as_the_client_saw_them() {
    // The gateway retries keyed writes on the new leader: most runs show
    // the client no failure at all, and the gateway must count none.
    leader_kill_under_a_writer(&[], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyless_writes_through_a_leader_kill_are_counted_as_the_client_saw_them() {
    // Without keys, a write lost with the leader cannot be sent again: the
    // client sees 504s, and the gateway must count each one, in outages.
    leader_kill_under_a_writer(&["--no-idempotency-key"], false).await;
}

/// Starts a cluster and a gateway (with `gateway_args`), kills the leader
/// while a writer (keyed or not) orders through the gateway, and checks the
/// gateway's availability report and metrics against what the writer saw.
async fn leader_kill_under_a_writer(gateway_args: &[&str], keyed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    let mut cluster = LocalCluster::start(spec).unwrap();
    cluster.wait_ready(READY).await.unwrap();
    let args: Vec<String> = gateway_args.iter().map(|a| a.to_string()).collect();
    cluster.start_gateway(0, &args).unwrap();
    let gw = cluster.wait_gateway_ready(READY).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let admin = Client::new(vec![gw.clone()], Some(TOKEN.into()));
    keel_harness::seed_test_shop(&admin, 1, 1_000_000, 0)
        .await
        .unwrap();

    // Who may read it: operators and support staff, not a merchant, not
    // an anonymous caller.
    let url = format!("http://{gw}/gateway/availability");
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let support = admin
        .create_key("helpdesk", Role::Support, None, None, "avail-k1")
        .await
        .unwrap();
    let merchant = admin
        .create_key("seller", Role::Merchant, None, None, "avail-k2")
        .await
        .unwrap();
    let denied = http
        .get(&url)
        .bearer_auth(&merchant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let before = report(&http, &gw, &support.token).await;

    // Act: a writer keeps ordering while the leader dies.
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(
        http.clone(),
        gw.clone(),
        keyed,
        seen.clone(),
        stop.clone(),
    ));
    wait_served(
        &cluster,
        &seen,
        ORDERS_AROUND_KILL,
        "orders before the kill",
    )
    .await;
    let leader = cluster.leader().await.unwrap();
    cluster.kill_shared(leader).unwrap();
    cluster.wait_new_leader(leader, RECOVER).await.unwrap();
    wait_served(
        &cluster,
        &seen,
        ORDERS_AROUND_KILL,
        "orders through the new leader",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let after = report(&http, &gw, TOKEN).await;
    let m = metrics(&http, &gw).await;

    // Check: the writer's requests are exactly the new ones counted, and
    // its failures exactly the new failures.
    let (sent, failed) = (Seen::get(&seen.sent), Seen::get(&seen.failed));
    assert_eq!(
        Seen::get(&seen.lost),
        0,
        "the gateway answers every request"
    );
    let all = &after.windows.all;
    assert_eq!(all.requests - before.windows.all.requests, sent);
    assert_eq!(all.failures - before.windows.all.failures, failed);
    let minutes: u64 = after.per_minute.iter().map(|m| m.requests).sum();
    assert_eq!(minutes, all.requests, "the test fits in the hour kept");
    assert!(after.windows.five_minutes.requests >= sent);

    // Every failure belongs to exactly one outage; none is open once the
    // writer's last order went through.
    let new_outages = after.outages_total - before.outages_total;
    assert!(after.outages_total <= OUTAGES_KEPT as u64);
    let open = after.open_outage.as_ref();
    let in_outages: u64 = after.outages.iter().map(|o| o.failed_requests).sum::<u64>()
        + open.map_or(0, |o| o.failed_requests);
    assert_eq!(in_outages, all.failures);
    assert_eq!(open.is_none(), seen.last_ok.load(Ordering::SeqCst));
    if failed == 0 {
        // The gateway's retries hid the failover from the client entirely.
        assert_eq!(new_outages, 0);
    } else {
        assert!(new_outages >= 1, "{failed} failures but no outage");
        let last = after.outages.last().unwrap();
        assert_eq!(last.recovered_ms - last.started_ms, last.duration_ms);
        assert!(last.started_ms >= before.now_ms && last.recovered_ms <= after.now_ms);
        assert_eq!(after.last_recovery_ms, Some(last.duration_ms));
    }
    eprintln!(
        "writer: {sent} sent, {failed} failed; gateway: {} outages, last recovery {:?} ms",
        new_outages, after.last_recovery_ms
    );

    // The metrics say the same, computed at scrape time.
    let series = |s: &str| *m.get(s).unwrap_or_else(|| panic!("no {s} in {m:?}"));
    assert_eq!(
        series("keel_gateway_outages_total"),
        after.outages_total as f64
    );
    assert_eq!(
        series("keel_gateway_outage_open"),
        f64::from(u8::from(open.is_some()))
    );
    let ratio = series("keel_gateway_availability_ratio{window=\"all\"}");
    assert!((ratio - all.availability).abs() < 1e-12, "{ratio}");
    let per_thousand = series("keel_gateway_failures_per_thousand{window=\"all\"}");
    assert!((per_thousand - all.failures_per_thousand).abs() < 1e-9);
    let recovery_s = series("keel_gateway_last_recovery_seconds");
    let recovery_ms = after.last_recovery_ms.unwrap_or(0) as f64;
    assert!((recovery_s * 1000.0 - recovery_ms).abs() < 1e-6);
    for w in ["1m", "5m", "1h"] {
        series(&format!(
            "keel_gateway_availability_ratio{{window=\"{w}\"}}"
        ));
    }
}
