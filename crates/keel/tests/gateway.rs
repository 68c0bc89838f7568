//! The gateway in front of a real cluster: real `keel node` and `keel
//! gateway` processes, real sockets, real signals. Each test reads as a
//! story: start, act, fault, check.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(30);
const DETECT: Duration = Duration::from_secs(10);
const TOKEN: &str = "keel-admin-dev";
/// Concurrent writers in the leader-kill tests.
const WRITERS: u64 = 8;

struct Setup {
    _dir: tempfile::TempDir,
    cluster: LocalCluster,
    gw: String,
    http: reqwest::Client,
}

async fn setup(gateway_args: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    let mut cluster = LocalCluster::start(spec).unwrap();
    cluster.wait_ready(READY).await.unwrap();
    let args: Vec<String> = gateway_args.iter().map(|s| s.to_string()).collect();
    cluster.start_gateway(0, &args).unwrap();
    let gw = cluster.wait_gateway_ready(READY).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    Setup {
        _dir: dir,
        cluster,
        gw,
        http,
    }
}

impl Setup {
    fn admin(&self) -> Client {
        Client::new(vec![self.gw.clone()], Some(TOKEN.into()))
    }

    async fn status(&self) -> Value {
        self.http
            .get(format!("http://{}/status", self.gw))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The gateway's view of node `id`.
    async fn node_status(&self, id: u64) -> Value {
        let addr = self.cluster.addr(id).unwrap();
        let s = self.status().await;
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["addr"] == addr.as_str())
            .cloned()
            .unwrap()
    }

    async fn wait_node(&self, id: u64, what: &str, want: impl Fn(&Value) -> bool) {
        self.cluster
            .wait_for(what, DETECT, || async {
                want(&self.node_status(id).await).then_some(())
            })
            .await
            .unwrap();
    }

    /// One local read through the gateway: status and the node that answered.
    async fn local_read(&self) -> (u16, String) {
        let r = self
            .http
            .get(format!(
                "http://{}/v1/products/SKU-1?consistency=local",
                self.gw
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let upstream = r.headers()["keel-upstream"].to_str().unwrap().to_owned();
        (r.status().as_u16(), upstream)
    }

    /// One order through the gateway, with or without a key; `Ok(status)`
    /// for any answer, `Err` when no answer came back.
    /// `qty` tells the orders of one customer apart.
    async fn order(&self, customer: &str, qty: u64, key: Option<&str>) -> Result<u16, String> {
        let mut req = self
            .http
            .post(format!("http://{}/v1/orders", self.gw))
            .bearer_auth(TOKEN)
            .json(&json!({"customer": customer, "lines": [{"sku": "SKU-1", "qty": qty}]}));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        match req.send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn orders_placed(&self) -> u64 {
        self.admin().summary().await.unwrap().next_order_id - 1
    }

    /// The quantities of every order `customer` has, in order of placing.
    async fn order_qtys(&self, customer: &str) -> Vec<u64> {
        let mut qtys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("http://{}/v1/accounts/{customer}/orders?limit=100", self.gw);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self
                .http
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for o in page["items"].as_array().unwrap() {
                qtys.push(o["lines"][0]["qty"].as_u64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return qtys,
            }
        }
    }

    /// Asserts that no request of the writers took effect twice: every
    /// request carried a quantity unique to its writer.
    async fn assert_no_duplicates(&self, writers: u64) {
        for w in 0..writers {
            let mut qtys = self.order_qtys(&format!("c{w}")).await;
            let n = qtys.len();
            qtys.sort_unstable();
            qtys.dedup();
            assert_eq!(qtys.len(), n, "a request of writer {w} took effect twice");
        }
    }
}

fn follower_of(c: &LocalCluster, leader: u64) -> u64 {
    c.ids().into_iter().find(|i| *i != leader).unwrap()
}

/// Outcomes of writers placing orders through the gateway until stopped.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

async fn write_until(
    s: Arc<Setup>,
    writers: u64,
    keyed: bool,
    stop: Arc<AtomicBool>,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (s, stop, tally) = (s.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("w{w}-{n}");
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let r = s
                    .order(&format!("c{w}"), n, keyed.then_some(key.as_str()))
                    .await;
                match r {
                    Ok(201) | Ok(200) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    _ => tally.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_reads_spread_and_a_killed_follower_is_taken_out_while_reads_continue() {
    let mut s = setup(&["--local-reads", "round_robin"]).await;
    keel_harness::seed_test_shop(&s.admin(), 1, 1_000_000, 0)
        .await
        .unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let (status, upstream) = s.local_read().await;
        assert_eq!(status, 200);
        *seen.entry(upstream).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "round robin uses every node: {seen:?}");
    assert!(seen.values().all(|n| *n == 10), "evenly: {seen:?}");

    let leader = s.cluster.leader().await.unwrap();
    let victim = follower_of(&s.cluster, leader);
    let victim_addr = s.cluster.addr(victim).unwrap();
    s.cluster.kill(victim).unwrap();
    // Every read succeeds: one that meets the dead node is retried on
    // another, and the dead node is taken out on its first refusal.
    for _ in 0..30 {
        let (status, upstream) = s.local_read().await;
        assert_eq!(status, 200);
        assert_ne!(upstream, victim_addr);
    }
    s.wait_node(victim, "killed node not eligible", |n| {
        n["eligible"] == false && n["health"] == "down"
    })
    .await;
    let metrics = s
        .http
        .get(format!("http://{}/metrics", s.gw))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "keel_gateway_health_transitions_total{{node=\"{victim_addr}\",event=\"down\"}} 1"
        )),
        "{metrics}"
    );

    // Back after a restart, once it passes its probes again.
    s.cluster.restart(victim).unwrap();
    s.wait_node(victim, "restarted node healthy again", |n| {
        n["health"] == "up"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_is_suspected_by_phi_accrual_and_readmitted_after_resume() {
    let mut s = setup(&[]).await;
    keel_harness::seed_test_shop(&s.admin(), 1, 1_000_000, 0)
        .await
        .unwrap();
    let leader = s.cluster.leader().await.unwrap();
    let victim = follower_of(&s.cluster, leader);
    let history = s.node_status(victim).await;
    assert_eq!(history["suspected"], false);
    s.cluster.pause(victim).unwrap();
    // A stopped process still completes TCP handshakes in the kernel, so
    // only silence gives it away: phi climbs past the threshold.
    s.wait_node(victim, "paused node suspected", |n| {
        n["suspected"] == true && n["eligible"] == false
    })
    .await;
    for _ in 0..20 {
        let (status, upstream) = s.local_read().await;
        assert_eq!(status, 200);
        assert_ne!(upstream, s.cluster.addr(victim).unwrap());
    }
    s.cluster.resume(victim).unwrap();
    s.wait_node(victim, "resumed node trusted again", |n| {
        n["suspected"] == false && n["eligible"] == true
    })
    .await;
}

/// [`WRITERS`] writers order through the gateway while the leader is killed
/// (SIGKILL) and a new one elected; returns what they saw and how many
/// orders the cluster placed meanwhile.
async fn write_through_leader_kill(gateway_args: &[&str], keyed: bool) -> (Arc<Tally>, u64) {
    let s = Arc::new(setup(gateway_args).await);
    keel_harness::seed_test_shop(&s.admin(), WRITERS, 1_000_000, 0)
        .await
        .unwrap();
    let before = s.orders_placed().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = tokio::spawn(write_until(s.clone(), WRITERS, keyed, stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let leader = s.cluster.leader().await.unwrap();
    s.cluster.kill_shared(leader).unwrap();
    s.cluster.wait_new_leader(leader, READY).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = writers.await.unwrap();
    let placed = s.orders_placed().await - before;
    s.assert_no_duplicates(WRITERS).await;
    (tally, placed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_writes_through_the_gateway_survive_a_leader_kill_exactly_once() {
    let (tally, placed) = write_through_leader_kill(&[], true).await;
    let ok = tally.ok.load(Ordering::Relaxed);
    assert_eq!(
        tally.errors.load(Ordering::Relaxed),
        0,
        "no client-visible error through the gateway"
    );
    assert!(ok > 0);
    // Each acknowledged write took effect once: retries with the same key
    // did not place a second order.
    assert_eq!(placed, ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyless_writes_are_never_duplicated_by_retries() {
    // Without the gateway's keys, a keyless write is retried only when it
    // provably never reached a node.
    let (tally, placed) = write_through_leader_kill(&["--no-idempotency-key"], false).await;
    let ok = tally.ok.load(Ordering::Relaxed);
    let sent = tally.sent.load(Ordering::Relaxed);
    assert!(placed >= ok, "every acknowledged write exists");
    assert!(
        placed <= sent,
        "no write took effect twice: {placed} orders from {sent} requests"
    );
    // With keys added by the gateway (the default), the same storm is
    // exactly once and invisible to clients.
    let (tally, placed) = write_through_leader_kill(&[], false).await;
    assert_eq!(tally.errors.load(Ordering::Relaxed), 0);
    assert_eq!(placed, tally.ok.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_body_limits_and_admin_routes_answer_problem_json() {
    let s = setup(&[
        "--rate-per-s",
        "5",
        "--rate-burst",
        "5",
        "--body-bytes-max",
        "2000",
    ])
    .await;
    // Over the rate: 429 with Retry-After and a stable type.
    let mut limited = None;
    for _ in 0..20 {
        let r = s
            .http
            .get(format!("http://{}/v1/products/NOPE", s.gw))
            .bearer_auth("customer-a")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the sixth request in a burst of 5 is limited");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "rate_limited");
    // Another client has its own bucket.
    let r = s
        .http
        .get(format!("http://{}/v1/products/NOPE", s.gw))
        .bearer_auth("customer-b")
        .send()
        .await
        .unwrap();
    // Passed through to the node (not limited), which refuses a bearer
    // token it did not issue, even on a public route.
    assert_eq!(r.status(), 401, "passed through to the node");

    // A body over the limit: 413 before any node sees it.
    let r = s
        .http
        .post(format!("http://{}/v1/orders", s.gw))
        .bearer_auth("customer-c")
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "payload_too_large");
    assert_eq!(body["limit_bytes"], 2000);

    // Weights change at run time, for admins only.
    let node = s.cluster.addr(1).unwrap();
    let url = format!("http://{}/gateway/weights", s.gw);
    let body = json!({"node": node, "weight": 5});
    let r = s.http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"node": node, "weight": 100_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.node_status(1).await["weight"], 5);
}
