//! What the gateway answers for a write it tried more than once. The gateway
//! under test is the real one, on real sockets; the two "nodes" are bare
//! listeners standing in for faults: one takes the request and drops the
//! connection without a reply (a node killed mid-write: the write may have
//! been applied), the other answers every write 503 `unavailable` (a node
//! that finds no leader: nothing applied by that attempt).
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use keel_gateway::config::NodeEntry;
use keel_gateway::{Gateway, GatewayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a stub node treats a request other than the health probe.
#[derive(Clone, Copy)]
enum Fault {
    /// Reads the request, then closes the connection without a reply.
    DropsTheReply,
    /// Answers 503 `unavailable`, as a node does that proposed nothing.
    Unavailable,
}

/// Reads one request head and its body (by `content-length`); returns its
/// request line, or None when the client closed the connection.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    head.lines().next().map(str::to_owned)
}

/// A listener at a new loopback address, and that address.
async fn listener() -> (String, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (l.local_addr().unwrap().to_string(), l)
}

/// Serves `l` as a node that is healthy to probes, names `leader_hint` as
/// the leader (term 5) in every reply, and treats every other request
/// with `fault`.
fn serve(l: TcpListener, fault: Fault, leader_hint: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let hint = leader_hint.clone();
            tokio::spawn(async move {
                while let Some(line) = read_request(&mut s).await {
                    let (status, body) = if line.contains("/readyz") {
                        ("200 OK", "{}".to_owned())
                    } else {
                        match fault {
                            Fault::DropsTheReply => return,
                            Fault::Unavailable => (
                                "503 Service Unavailable",
                                r#"{"type":"unavailable","title":"Service unavailable","status":503,"detail":"no leader"}"#
                                    .to_owned(),
                            ),
                        }
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\n\
                         keel-leader: {hint}\r\nkeel-term: 5\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_an_earlier_attempt_may_have_applied_is_never_answered_nothing_applied() {
    let (lost, lost_l) = listener().await;
    let (down, down_l) = listener().await;
    // Both name the dropping node leader: the gateway sends the write
    // there first, then retries on the other.
    let hint = format!("1={lost}");
    let _a = serve(lost_l, Fault::DropsTheReply, hint.clone());
    let _b = serve(down_l, Fault::Unavailable, hint);
    let mut c = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nodes: vec![
            NodeEntry::parse(&lost).unwrap(),
            NodeEntry::parse(&down).unwrap(),
        ],
        ..GatewayConfig::default()
    };
    c.discovery.enabled = false;
    c.retry.attempt_timeout_ms = 1_000;
    c.retry.request_timeout_ms = 3_000;
    let gw = Gateway::start(c).await.unwrap();
    // One write: the dropping node is tried (first, as the named leader,
    // or after the other's 503), and it stays on the gateway's mind.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/orders", gw.local_addr()))
        .header("idempotency-key", "order-1")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let attempts: u32 = r.headers()["keel-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(attempts >= 2, "the write was tried {attempts} time(s)");
    // Before: the last attempt's 503 went to the client, which takes it
    // as "nothing applied" and may place the order again under a new key.
    assert_eq!(
        (status, body["type"].as_str()),
        (504, Some("indeterminate")),
        "{attempts} attempts: {body}"
    );
    gw.shutdown().await;
}
