//! The gateway's caps against a node that accepts connections and never
//! answers (what a paused process looks like from outside): the gateway
//! under test is the real one, on real sockets; only the stalled node is a
//! bare listener standing in for the fault.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use keel_gateway::config::NodeEntry;
use keel_gateway::{Gateway, GatewayConfig};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A "node" that accepts every connection and reads forever, never replying.
async fn stalled_node() -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

fn config(node: &str) -> GatewayConfig {
    let mut c = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nodes: vec![NodeEntry::parse(node).unwrap()],
        ..GatewayConfig::default()
    };
    c.discovery.enabled = false;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_pending_cap_requests_are_refused_at_once_with_overloaded() {
    let (node, _n) = stalled_node().await;
    let mut c = config(&node);
    c.limits.pending_max = 1;
    c.retry.attempt_timeout_ms = 3_000;
    c.retry.request_timeout_ms = 3_000;
    let gw = Gateway::start(c).await.unwrap();
    let url = format!("http://{}/v1/products/X?consistency=local", gw.local_addr());
    let http = reqwest::Client::new();
    // The first request occupies the only slot, waiting on the stalled node.
    let first = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    });
    // Wait until it is in flight: the node has it outstanding.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.status()["nodes"][0]["outstanding"] != 1 {
        assert!(
            Instant::now() < deadline,
            "first request never reached the node"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused without waiting"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "overloaded");
    // The stalled attempt ends at its deadline as a gateway timeout: a read
    // is safe to retry, but the deadline leaves no time for it.
    let status = first.await.unwrap();
    assert!(status == 502 || status == 504, "got {status}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_costs_a_request_its_deadline_not_more() {
    let (node, _n) = stalled_node().await;
    let mut c = config(&node);
    c.retry.attempt_timeout_ms = 300;
    c.retry.request_timeout_ms = 1_000;
    let gw = Gateway::start(c).await.unwrap();
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/orders", gw.local_addr()))
        .body("{}")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    // A keyed write (the gateway added the key) whose outcome is unknown:
    // 504 indeterminate, with the key to ask again.
    assert_eq!(r.status(), 504);
    assert!(r.headers().contains_key("idempotency-key"));
    assert!(
        took < Duration::from_secs(3),
        "bounded by the deadline: {took:?}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "indeterminate");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_for_a_slot() {
    let (node, _n) = stalled_node().await;
    let mut c = config(&node);
    c.limits.connections_max = 1;
    let gw = Gateway::start(c).await.unwrap();
    let addr = gw.local_addr();
    // One client holds the only connection open.
    let held = tokio::net::TcpStream::connect(addr).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let r = http.get(format!("http://{addr}/healthz")).send().await;
    assert!(r.is_err(), "served past the cap: {r:?}");
    // Once it closes, the next client gets the slot.
    drop(held);
    let r = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}
