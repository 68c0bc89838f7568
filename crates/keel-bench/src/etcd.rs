//! The etcd anchor: three members on loopback, each with its own data
//! directory on the same disk (etcd fsyncs its WAL by default), installed
//! from Debian's `etcd-server` when missing. One put per order through
//! etcd's HTTP/JSON gateway (`/v3/kv/put`), so no gRPC stack is needed.
//! etcd has no stock rule: a put cannot refuse an order for want of stock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::keel_target::spread_sku;
use crate::procs::{apt_install, find_binary, wait_until, Guard};
use crate::target::{OpResult, Target};
use crate::BenchError;

/// Members of the cluster (as Keel's 3 nodes).
pub const MEMBERS: u16 = 3;
/// Longest the members get to elect a leader and answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one put, as Keel's client attempt timeout (6 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest wait to connect to a member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Timeout of a status query (finding the leader).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle keep-alive connections kept per member: one per client task.
const POOL_IDLE_PER_HOST: usize = 4_096;
/// Longest error type kept from an etcd message (they carry no ids).
const ERROR_TYPE_CHARS_MAX: usize = 48;

/// The etcd binary, installing Debian's `etcd-server` when missing.
pub fn ensure_etcd() -> Result<PathBuf, BenchError> {
    if let Some(p) = find_binary("etcd") {
        return Ok(p);
    }
    apt_install(&["etcd-server"])?;
    find_binary("etcd").ok_or_else(|| BenchError::setup("etcd", "installed but not found"))
}

/// A running member.
struct Member {
    client_addr: String,
    guard: Guard,
}

/// A running 3-member etcd cluster; dropping it stops every member.
pub struct EtcdCluster {
    members: Vec<Member>,
    http: reqwest::Client,
}

/// An HTTP client for etcd's gateway.
fn http_client() -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .build()
        .map_err(|e| BenchError::setup("etcd http client", e))
}

/// A uint64 id as etcd's gateway writes it (a string, sometimes a number).
fn id_of(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v.as_u64().map(|n| n.to_string()))
}

/// Whether a `/v3/maintenance/status` reply comes from the leader.
pub fn status_is_leader(status: &Value) -> bool {
    match (
        id_of(&status["header"]["member_id"]),
        id_of(&status["leader"]),
    ) {
        (Some(me), Some(leader)) => me == leader && leader != "0",
        _ => false,
    }
}

impl EtcdCluster {
    /// Starts the members under `dir` (wiped first): client ports
    /// `client_base..`, peer ports `peer_base..`; waits for a leader.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        client_base: u16,
        peer_base: u16,
    ) -> Result<Self, BenchError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let peer = |i: u16| format!("http://127.0.0.1:{}", peer_base + i);
        let initial = (0..MEMBERS)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let client = format!("http://127.0.0.1:{}", client_base + i);
            let mut cmd = Command::new(bin);
            cmd.arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer(i),
                    "--initial-advertise-peer-urls",
                    &peer(i),
                ])
                .args([
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ])
                .args(["--initial-cluster-token", "keel-bench"])
                .args(["--logger", "zap", "--log-level", "warn"]);
            let log = dir.join(format!("m{i}.log"));
            members.push(Member {
                client_addr: format!("127.0.0.1:{}", client_base + i),
                guard: Guard::spawn(&format!("etcd m{i}"), &mut cmd, &log, Signal::SIGTERM)?,
            });
        }
        let c = Self {
            members,
            http: http_client()?,
        };
        wait_until("etcd members electing a leader", READY_TIMEOUT, || {
            c.leader()
        })
        .await?;
        Ok(c)
    }

    /// Client addresses (`host:port`) of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_addr.clone()).collect()
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.guard.pid()).collect()
    }

    async fn status(&self, i: usize) -> Option<Value> {
        let url = format!(
            "http://{}/v3/maintenance/status",
            self.members[i].client_addr
        );
        let r = self
            .http
            .post(url)
            .json(&json!({}))
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// The index of the member that says it is the leader, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].guard.pid().is_none() {
                continue;
            }
            if let Some(s) = self.status(i).await {
                if status_is_leader(&s) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            m.guard.kill();
        }
    }

    /// Stops every member (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        for m in &mut self.members {
            m.guard.stop();
        }
    }
}

/// One put per order, keys unique per run, spread over the members.
pub struct EtcdPuts {
    http: reqwest::Client,
    endpoints: Vec<String>,
    skus: u64,
    tag: String,
}

impl EtcdPuts {
    /// Puts to `endpoints`; orders name SKUs `S0..S{skus-1}`.
    pub fn new(endpoints: Vec<String>, skus: u64, tag: &str) -> Result<Self, BenchError> {
        Ok(Self {
            http: http_client()?,
            endpoints,
            skus,
            tag: tag.to_owned(),
        })
    }
}

/// Per-client state: the member it talks to.
#[derive(Clone, Copy, Debug)]
pub struct EtcdConn {
    ep: usize,
}

/// The error type of a non-200 gateway answer: its message without the
/// `etcdserver: ` prefix.
pub fn error_type(status: u16, body: &Value) -> String {
    let msg = body["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or("");
    let msg = msg.strip_prefix("etcdserver: ").unwrap_or(msg);
    if msg.is_empty() {
        format!("http {status}")
    } else {
        msg.chars().take(ERROR_TYPE_CHARS_MAX).collect()
    }
}

impl Target for EtcdPuts {
    type Conn = EtcdConn;

    fn conn(&self, client: u64) -> EtcdConn {
        EtcdConn {
            ep: client as usize % self.endpoints.len().max(1),
        }
    }

    async fn op(&self, conn: &mut EtcdConn, client: u64, seq: u64) -> OpResult {
        let key = format!("order/{}/{client}/{seq}", self.tag);
        let value = json!({"customer": format!("c{client}"), "sku": format!("S{}", spread_sku(client, seq, self.skus)), "qty": 1});
        let body = json!({"key": B64.encode(key), "value": B64.encode(value.to_string())});
        let ep = &self.endpoints[conn.ep % self.endpoints.len()];
        let res = self
            .http
            .post(format!("http://{ep}/v3/kv/put"))
            .json(&body)
            .send()
            .await;
        let r = match res {
            Ok(r) => r,
            Err(e) => {
                conn.ep = (conn.ep + 1) % self.endpoints.len();
                let kind = if e.is_connect() {
                    "connect"
                } else if e.is_timeout() {
                    "timeout"
                } else {
                    "lost reply"
                };
                return OpResult::Error(kind.into());
            }
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 200 && body.get("header").is_some() {
            return OpResult::Ok;
        }
        if status == 503 {
            conn.ep = (conn.ep + 1) % self.endpoints.len();
        }
        OpResult::Error(error_type(status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_is_the_member_naming_itself() {
        let me = json!({"header": {"member_id": "123"}, "leader": "123"});
        let other = json!({"header": {"member_id": "123"}, "leader": "456"});
        let none = json!({"header": {"member_id": "123"}, "leader": "0"});
        assert!(status_is_leader(&me));
        assert!(!status_is_leader(&other));
        assert!(!status_is_leader(&none));
        assert!(!status_is_leader(&json!({})));
        assert!(status_is_leader(
            &json!({"header": {"member_id": 7}, "leader": 7})
        ));
    }

    #[test]
    fn error_types_drop_the_server_prefix() {
        let b = json!({"error": "etcdserver: request timed out", "code": 14, "message": "etcdserver: request timed out"});
        assert_eq!(error_type(503, &b), "request timed out");
        assert_eq!(error_type(502, &Value::Null), "http 502");
    }
}
