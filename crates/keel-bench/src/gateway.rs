//! `keel bench gateway`: the load-balancing gateway side by side with nginx
//! (from Debian) in front of the same local three-node cluster (fsync on),
//! under the same closed-loop load. Measures throughput and latency of
//! local reads and writes sent direct to a node, through `keel gateway` and
//! through nginx; the median latency each proxy adds to one sequential
//! client; and, through the gateway, a leader SIGKILL: the longest gap
//! between successful writes, client-visible errors, and how long the
//! gateway takes to stop routing to the dead node. A benchmark, not a test.
//!
//! Everything (nodes, both proxies, the load generator) runs on the same
//! machine, so a proxy that burns more CPU leaves less for the nodes: the
//! throughput columns compare whole systems, not proxies in isolation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_client::{Client, HttpMethod};
use keel_harness::LocalCluster;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::cluster::{measure_window, seed_catalogue};
use crate::compare::{ADMIN_TOKEN, KEEL_READY_TIMEOUT};
use crate::gap::GapTracker;
use crate::hist::{new_hist, record};
use crate::keel_target::{spread_sku, TASKS_PER_HTTP_CLIENT};
use crate::local::start_cluster;
use crate::procs::{apt_install, find_binary, free_port, is_root, Guard, POLL};
use crate::seed::sku;
use crate::BenchError;

/// Clients of the failover round (the issue's figure).
const FAILOVER_CLIENTS: u64 = 32;
/// How often the failover round polls the gateway's `/status` (the
/// detection time's resolution).
const STATUS_POLL: Duration = Duration::from_millis(10);
/// Longest the benchmark waits for the gateway to mark a killed node
/// ineligible before reporting "not detected".
const DETECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the gateway gets to start and learn the leader.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest nginx gets to start and proxy its first `/readyz`.
const NGINX_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections nginx keeps to the nodes, per worker (the
/// issue's setting; more than the 64 clients need).
const NGINX_UPSTREAM_KEEPALIVE: u32 = 64;
/// Connections one nginx worker may hold (clients plus upstreams).
const NGINX_WORKER_CONNECTIONS: u32 = 4_096;
/// Requests per keep-alive connection before nginx closes it, client and
/// upstream side. nginx's default (1,000) would make every client
/// reconnect every 1,000 requests; the gateway and the nodes never close a
/// busy connection, so this keeps the comparison about proxying.
const NGINX_KEEPALIVE_REQUESTS: u64 = 1_000_000;
/// Sequential requests per target discarded before the latency probe
/// records (connections opened, caches warm).
const PROBE_WARMUP: u64 = 200;
/// Bytes of nginx's error log quoted when it fails to start.
const LOG_TAIL_BYTES: usize = 2_000;
/// The issue's goal for the gateway's added median latency.
const ADDED_MEDIAN_GOAL_US: i64 = 100;
/// The issue's goal for detecting a killed node, and for the longest
/// client-visible gap through a leader kill.
const FAILOVER_GOAL_MS: f64 = 1_000.0;

/// What the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// `GET /v1/products/{sku}?consistency=local`: any replica answers from
    /// its own state, so this is nearly pure proxy overhead.
    LocalRead,
    /// `POST /v1/orders` (one line, qty 1) with an idempotency key.
    Write,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::LocalRead => "local-read",
            Workload::Write => "write",
        }
    }
}

/// Where the clients send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Straight to one node: a follower for reads, the leader for writes.
    Direct,
    /// Through `keel gateway` with default settings.
    Gateway,
    /// Through nginx round-robining over all nodes.
    Nginx,
}

/// One HTTP request of a workload.
struct Req {
    method: HttpMethod,
    path: String,
    body: Option<Value>,
    key: Option<String>,
}

/// The SKU client `t` uses for its `i`-th request: spread over the
/// catalogue, different per client (as `keel bench cluster` does).
fn sku_for(t: u64, i: u64, skus: u64) -> String {
    sku(spread_sku(t, i, skus))
}

fn request(w: Workload, skus: u64, t: u64, i: u64, tag: &str) -> Req {
    let sku = sku_for(t, i, skus);
    match w {
        Workload::LocalRead => Req {
            method: HttpMethod::GET,
            path: format!("/v1/products/{sku}?consistency=local"),
            body: None,
            key: None,
        },
        Workload::Write => Req {
            method: HttpMethod::POST,
            path: "/v1/orders".to_owned(),
            body: Some(json!({"customer": format!("c{t}"), "lines": [{"sku": sku, "qty": 1}]})),
            key: Some(format!("{tag}-{t}-{i}")),
        },
    }
}

/// What one closed-loop run measured.
#[derive(Clone)]
struct Outcome {
    ok: u64,
    errors: u64,
    seconds: f64,
    hist: Histogram<u64>,
}

impl Outcome {
    /// Requests answered per second.
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Adds another run of the same workload and target.
    fn merge(&mut self, other: &Outcome) -> Result<(), BenchError> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.hist
            .add(&other.hist)
            .map_err(|e| BenchError::Histogram(e.to_string()))
    }
}

/// Adds `o` to the accumulated outcome in `acc`, or makes it the first.
fn merge_into(acc: &mut Option<Outcome>, o: &Outcome) -> Result<(), BenchError> {
    match acc {
        Some(a) => a.merge(o),
        None => {
            *acc = Some(o.clone());
            Ok(())
        }
    }
}

/// The gateway's throughput over nginx's among `outcomes`, one per target
/// of `targets` in order (`None` when nginx did not run).
fn gateway_over_nginx(
    targets: &[(Target, String, String)],
    outcomes: &[Option<Outcome>],
) -> Option<f64> {
    let rate = |t: Target| {
        targets
            .iter()
            .position(|(tt, _, _)| *tt == t)
            .and_then(|j| outcomes.get(j)?.as_ref())
            .map_or(0.0, Outcome::rate)
    };
    ratio(rate(Target::Gateway), rate(Target::Nginx))
}

/// A workload's gateway-to-nginx throughput ratio over the whole run and in
/// each round.
struct WorkloadRatios {
    workload: &'static str,
    total: Option<f64>,
    by_round: Vec<Option<f64>>,
}

/// The order in which `n` targets run: each once forward, then once
/// backward (`0 1 2 2 1 0`). Write throughput falls as the store grows
/// through a run, and a fixed order would charge that drift to the last
/// target; here every target's mean position is the same, so a linear
/// drift cancels.
fn palindrome(n: usize) -> Vec<usize> {
    (0..n).chain((0..n).rev()).collect()
}

/// HTTP clients for `tasks` closed-loop tasks against `addr`; see
/// [`TASKS_PER_HTTP_CLIENT`].
fn http_clients(addr: &str, tasks: u64) -> Vec<Arc<Client>> {
    let n = tasks.div_ceil(TASKS_PER_HTTP_CLIENT).max(1);
    (0..n)
        .map(|_| {
            Arc::new(Client::new(
                vec![addr.to_owned()],
                Some(ADMIN_TOKEN.to_owned()),
            ))
        })
        .collect()
}

/// `clients` closed-loop tasks send `workload` to `addr` for `duration`
/// after a warm-up of a tenth of it. One attempt per request (no client
/// retries), so every failure the target lets through is counted.
async fn load(
    addr: &str,
    workload: Workload,
    clients: u64,
    skus: u64,
    duration: Duration,
    tag: &str,
) -> Result<Outcome, BenchError> {
    let http = http_clients(addr, clients);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..clients {
        let client = http[(t / TASKS_PER_HTTP_CLIENT) as usize % http.len()].clone();
        let (stop, measuring) = (stop.clone(), measuring.clone());
        let (addr, tag) = (addr.to_owned(), tag.to_owned());
        let mut hist = new_hist()?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = request(workload, skus, t, i, &tag);
                let start = Instant::now();
                let res = client
                    .call_at(&addr, r.method, &r.path, r.body.as_ref(), r.key.as_deref())
                    .await;
                let us = start.elapsed().as_micros() as u64;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                if res.is_ok() {
                    ok += 1;
                    record(&mut hist, us);
                } else {
                    errors += 1;
                }
            }
            (ok, errors, hist)
        }));
    }
    let seconds = measure_window(duration, &measuring, &stop).await;
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        seconds,
        hist: new_hist()?,
    };
    for t in tasks {
        let (ok, errors, h) = t.await?;
        out.ok += ok;
        out.errors += errors;
        out.hist
            .add(&h)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    Ok(out)
}

/// One line of the results table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    workload: &'static str,
    target: String,
    req_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
}

impl Row {
    fn new(workload: Workload, target: String, o: &Outcome) -> Self {
        Self {
            workload: workload.label(),
            target,
            req_per_s: o.rate(),
            p50_us: o.hist.value_at_quantile(0.5),
            p99_us: o.hist.value_at_quantile(0.99),
            p999_us: o.hist.value_at_quantile(0.999),
            errors: o.errors,
        }
    }

    fn json(&self) -> Value {
        json!({
            "workload": self.workload, "target": self.target,
            "req_per_s": self.req_per_s.round(), "errors": self.errors,
            "p50_us": self.p50_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
        })
    }
}

/// A latency for humans: µs below a millisecond, ms above.
fn fmt_latency(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 10_000 {
        format!("{:.2} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.1} ms", us as f64 / 1_000.0)
    }
}

/// The results table, one line per workload and target.
fn format_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<11} {:<30} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "workload", "target", "req/s", "p50", "p99", "p99.9", "errors"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<11} {:<30} {:>9.0} {:>9} {:>9} {:>9} {:>7}\n",
            r.workload,
            r.target,
            r.req_per_s,
            fmt_latency(r.p50_us),
            fmt_latency(r.p99_us),
            fmt_latency(r.p999_us),
            r.errors,
        ));
    }
    s
}

/// `a / b`, or `None` when `b` measured nothing.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The one-client latency probe: sequential local reads, interleaved over
/// the targets (each round sends one request to every target, starting
/// with a different one each time), so drifts in machine load hit every
/// target alike. Returns one histogram per target, in `addrs` order.
async fn probe(
    addrs: &[String],
    requests: u64,
    skus: u64,
) -> Result<Vec<Histogram<u64>>, BenchError> {
    let clients: Vec<Client> = addrs
        .iter()
        .map(|a| Client::new(vec![a.clone()], Some(ADMIN_TOKEN.to_owned())))
        .collect();
    let mut hists = addrs
        .iter()
        .map(|_| new_hist())
        .collect::<Result<Vec<_>, _>>()?;
    let n = addrs.len();
    for i in 0..PROBE_WARMUP + requests {
        for k in 0..n {
            let j = (i as usize + k) % n;
            let r = request(Workload::LocalRead, skus, 0, i, "probe");
            let start = Instant::now();
            let res = clients[j]
                .call_at(&addrs[j], r.method, &r.path, None, None)
                .await;
            let us = start.elapsed().as_micros() as u64;
            res.map_err(|e| {
                BenchError::setup(format!("latency probe via {}", addrs[j]), format!("{e:?}"))
            })?;
            if i >= PROBE_WARMUP {
                record(&mut hists[j], us);
            }
        }
    }
    Ok(hists)
}

/// Whether the gateway's `/status` document says the node at `addr` gets
/// no requests (`eligible: false`).
fn node_ineligible(status: &Value, addr: &str) -> bool {
    status["nodes"].as_array().is_some_and(|nodes| {
        nodes
            .iter()
            .any(|n| n["addr"].as_str() == Some(addr) && n["eligible"].as_bool() == Some(false))
    })
}

/// Polls the gateway's `/status` every [`STATUS_POLL`] until it marks
/// `addr` ineligible; returns when it first saw that (an upper bound: the
/// moment the answer arrived), or `None` after [`DETECTION_TIMEOUT`].
async fn wait_ineligible(gateway: String, addr: String) -> Option<Instant> {
    let c = Client::new(vec![gateway.clone()], None);
    let deadline = Instant::now() + DETECTION_TIMEOUT;
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        if let Ok(r) = c
            .call_at(&gateway, HttpMethod::GET, "/status", None, None)
            .await
        {
            if node_ineligible(&r.body, &addr) {
                return Some(Instant::now());
            }
        }
    }
    None
}

/// What the failover round measured.
struct Failover {
    killed: u64,
    ok: u64,
    errors: u64,
    error_sample: Option<String>,
    gap: GapTracker,
    /// When the leader was killed, µs from the start of measurement.
    kill_us: u64,
    detection_ms: Option<f64>,
    detection_idle_ms: Option<f64>,
}

/// [`FAILOVER_CLIENTS`] clients write through the gateway; the leader is
/// SIGKILLed halfway through measurement.
async fn failover(
    cluster: &mut LocalCluster,
    gateway: &str,
    skus: u64,
    duration: Duration,
) -> Result<Failover, BenchError> {
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| BenchError::setup("failover round", "no leader before the kill"))?;
    let leader_addr = cluster.addr(leader)?;
    let http = http_clients(gateway, FAILOVER_CLIENTS);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let gaps = Arc::new(Mutex::new(GapTracker::new(0)));
    let mut tasks = Vec::new();
    for t in 0..FAILOVER_CLIENTS {
        let client = http[(t / TASKS_PER_HTTP_CLIENT) as usize % http.len()].clone();
        let (stop, measuring, gaps) = (stop.clone(), measuring.clone(), gaps.clone());
        let addr = gateway.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut sample) = (0u64, 0u64, None);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = request(Workload::Write, skus, t, i, "failover");
                let res = client
                    .call_at(&addr, r.method, &r.path, r.body.as_ref(), r.key.as_deref())
                    .await;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match res {
                    Ok(_) => {
                        ok += 1;
                        let at = t0.elapsed().as_micros() as u64;
                        if let Ok(mut g) = gaps.lock() {
                            g.observe(at);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        sample.get_or_insert_with(|| format!("{e:?}"));
                    }
                }
            }
            (ok, errors, sample)
        }));
    }
    tokio::time::sleep(duration / 10).await;
    if let Ok(mut g) = gaps.lock() {
        *g = GapTracker::new(t0.elapsed().as_micros() as u64);
    }
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(duration / 2).await;
    let poller = tokio::spawn(wait_ineligible(gateway.to_owned(), leader_addr.clone()));
    let kill_at = Instant::now();
    let kill_us = kill_at.duration_since(t0).as_micros() as u64;
    cluster.kill(leader)?;
    tokio::time::sleep(duration - duration / 2).await;
    measuring.store(false, Ordering::Relaxed);
    let end_us = t0.elapsed().as_micros() as u64;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut errors, mut error_sample) = (0, 0, None);
    for t in tasks {
        let (o, e, s) = t.await?;
        ok += o;
        errors += e;
        error_sample = error_sample.or(s);
    }
    let detected = poller.await?;
    let mut gap = gaps
        .lock()
        .map(|g| *g)
        .map_err(|_| BenchError::Task("gap tracker lock poisoned".into()))?;
    // A gap still open when measurement ended counts up to its end.
    gap.observe(end_us);
    Ok(Failover {
        killed: leader,
        ok,
        errors,
        error_sample,
        gap,
        kill_us,
        detection_ms: detected.map(|d| d.duration_since(kill_at).as_secs_f64() * 1_000.0),
        detection_idle_ms: None,
    })
}

/// The leader and the first other node among `nodes`; `what` names the
/// step in an error.
async fn leader_and_follower(
    cluster: &LocalCluster,
    nodes: Vec<u64>,
    what: &str,
) -> Result<(u64, u64), BenchError> {
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| BenchError::setup(what, "no leader"))?;
    let follower = nodes
        .into_iter()
        .find(|id| *id != leader)
        .ok_or_else(|| BenchError::setup(what, "no follower"))?;
    Ok((leader, follower))
}

/// Detection without traffic, from the gateway's probes alone: restarts
/// `killed`, waits until the gateway routes to every node again, then
/// SIGKILLs a follower with no requests in flight.
async fn detection_idle(
    cluster: &mut LocalCluster,
    gateway: &str,
    killed: u64,
) -> Result<Option<f64>, BenchError> {
    cluster.restart(killed)?;
    cluster.wait_ready(KEEL_READY_TIMEOUT).await.map_err(|e| {
        BenchError::setup("cluster not ready after restarting the killed leader", e)
    })?;
    let c = Client::new(vec![gateway.to_owned()], None);
    let nodes = cluster.ids().len() as u64;
    cluster
        .wait_for(
            "the gateway routing to every node",
            KEEL_READY_TIMEOUT,
            || async {
                let r = c
                    .call_at(gateway, HttpMethod::GET, "/status", None, None)
                    .await
                    .ok()?;
                (r.body["eligible"].as_u64()? == nodes).then_some(())
            },
        )
        .await?;
    let (_, follower) =
        leader_and_follower(cluster, cluster.running(), "idle detection after restart").await?;
    let addr = cluster.addr(follower)?;
    let poller = tokio::spawn(wait_ineligible(gateway.to_owned(), addr));
    let kill_at = Instant::now();
    cluster.kill(follower)?;
    let detected = poller.await?;
    Ok(detected.map(|d| d.duration_since(kill_at).as_secs_f64() * 1_000.0))
}

// ---------------------------------------------------------------- nginx --

/// What nginx.conf is rendered from.
struct NginxConf<'a> {
    /// `worker_processes`.
    workers: u32,
    /// Loopback port nginx listens on.
    port: u16,
    /// `host:port` of every node.
    upstreams: &'a [String],
    /// Absolute directory for the pid file, the error log and temp files.
    dir: &'a Path,
    /// Temp-path directives of optional modules compiled into this nginx
    /// (`fastcgi`, `uwsgi`, `scgi`): naming one that is not is an error.
    optional_temp_modules: &'a [&'a str],
    /// Whether to keep the workers as root (only valid when nginx starts
    /// as root; see [`render_nginx_conf`]).
    user_root: bool,
}

/// Whether nginx can take `p` unquoted in its configuration.
fn nginx_safe(p: &str) -> bool {
    !p.is_empty()
        && !p.chars().any(|c| {
            c.is_whitespace() || matches!(c, ';' | '{' | '}' | '"' | '\'' | '\\' | '$' | '#')
        })
}

/// The nginx.conf of the benchmark: a reverse proxy over the nodes with
/// keep-alive on both sides, nothing written outside `dir`, no access log
/// (the gateway keeps none either).
fn render_nginx_conf(c: &NginxConf<'_>) -> Result<String, BenchError> {
    let dir = c
        .dir
        .to_str()
        .ok_or_else(|| BenchError::setup("nginx.conf", "nginx directory is not UTF-8"))?;
    if !nginx_safe(dir) {
        return Err(BenchError::setup(
            "nginx.conf",
            format!("nginx directory {dir:?} has characters nginx.conf cannot take unquoted"),
        ));
    }
    if let Some(u) = c.upstreams.iter().find(|u| !nginx_safe(u)) {
        return Err(BenchError::setup(
            "nginx.conf",
            format!("node address {u:?} is not usable in nginx.conf"),
        ));
    }
    let mut s = String::new();
    s.push_str("# Written by `keel bench gateway`.\n");
    if c.user_root {
        // As root, nginx drops its workers to `nobody`, whose group name
        // differs between distributions; a loopback benchmark needs no
        // privilege drop.
        s.push_str("user root root;\n");
    }
    s.push_str(&format!("worker_processes {};\n", c.workers));
    s.push_str("daemon off;\n");
    s.push_str(&format!("error_log {dir}/error.log warn;\n"));
    s.push_str(&format!("pid {dir}/nginx.pid;\n"));
    s.push_str(&format!(
        "events {{\n    worker_connections {NGINX_WORKER_CONNECTIONS};\n}}\n"
    ));
    s.push_str("http {\n    access_log off;\n");
    s.push_str(&format!(
        "    client_body_temp_path {dir}/temp/client_body;\n    proxy_temp_path {dir}/temp/proxy;\n"
    ));
    for m in c.optional_temp_modules {
        s.push_str(&format!("    {m}_temp_path {dir}/temp/{m};\n"));
    }
    s.push_str(&format!(
        "    keepalive_requests {NGINX_KEEPALIVE_REQUESTS};\n"
    ));
    s.push_str("    upstream keel {\n");
    for u in c.upstreams {
        s.push_str(&format!("        server {u};\n"));
    }
    s.push_str(&format!(
        "        keepalive {NGINX_UPSTREAM_KEEPALIVE};\n        keepalive_requests {NGINX_KEEPALIVE_REQUESTS};\n    }}\n"
    ));
    s.push_str(&format!(
        "    server {{\n        listen 127.0.0.1:{};\n        location / {{\n            proxy_pass http://keel;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n",
        c.port
    ));
    Ok(s)
}

/// The optional modules with temp paths that `nginx -V` does not list as
/// left out.
fn optional_temp_modules(nginx_v: &str) -> Vec<&'static str> {
    ["fastcgi", "uwsgi", "scgi"]
        .into_iter()
        .filter(|m| !nginx_v.contains(&format!("--without-http_{m}_module")))
        .collect()
}

/// The nginx binary, installing Debian's nginx-light (or nginx) when it is
/// missing and we are root; otherwise why the nginx column is skipped.
fn nginx_binary() -> Result<PathBuf, String> {
    if let Some(p) = find_binary("nginx") {
        return Ok(p);
    }
    if !is_root() {
        return Err(
            "nginx is not installed and this is not root: install it (apt-get install nginx-light) to get the nginx column"
                .to_owned(),
        );
    }
    apt_install(&["nginx-light"])
        .or_else(|_| apt_install(&["nginx"]))
        .map_err(|_| "apt-get install nginx-light (and nginx) failed".to_owned())?;
    find_binary("nginx")
        .ok_or_else(|| "nginx installed but not found on PATH or in /usr/sbin".to_owned())
}

/// A running nginx, stopped by its guard (SIGTERM to its process group,
/// then SIGKILL) when dropped, also on an error path.
struct Nginx {
    process: Guard,
    addr: String,
    dir: PathBuf,
}

impl Nginx {
    /// The last [`LOG_TAIL_BYTES`] of nginx's error log and its output.
    fn log_tail(&self) -> String {
        let mut s = String::new();
        for f in ["error.log", "stderr.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let from = t
                    .char_indices()
                    .rev()
                    .nth(LOG_TAIL_BYTES)
                    .map_or(0, |(i, _)| i);
                s.push_str(&t[from..]);
            }
        }
        s
    }
}

/// `nginx -V` (version and configure arguments; nginx prints it on stderr).
fn nginx_version(bin: &Path) -> Result<String, BenchError> {
    let out = Command::new(bin)
        .arg("-V")
        .output()
        .map_err(|e| BenchError::setup(format!("running {} -V", bin.display()), e))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// Writes nginx.conf into `dir` and starts nginx in the foreground; returns
/// once it proxies `/readyz`.
async fn start_nginx(
    bin: &Path,
    dir: &Path,
    upstreams: &[String],
    workers: u32,
    version: &str,
) -> Result<Nginx, BenchError> {
    std::fs::create_dir_all(dir.join("temp"))
        .map_err(|e| BenchError::setup(format!("creating {}", dir.display()), e))?;
    let dir = std::fs::canonicalize(dir)?;
    let port = free_port()?;
    let conf = render_nginx_conf(&NginxConf {
        workers,
        port,
        upstreams,
        dir: &dir,
        optional_temp_modules: &optional_temp_modules(version),
        user_root: is_root(),
    })?;
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)
        .map_err(|e| BenchError::setup(format!("writing {}", conf_path.display()), e))?;
    let process = Guard::spawn(
        "nginx",
        Command::new(bin)
            // -e: the error log before nginx.conf is read (else Debian's
            // /var/log/nginx/error.log).
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path),
        &dir.join("stderr.log"),
        Signal::SIGTERM,
    )?;
    let mut nginx = Nginx {
        process,
        addr: format!("127.0.0.1:{port}"),
        dir,
    };
    let c = Client::new(vec![nginx.addr.clone()], None);
    let deadline = Instant::now() + NGINX_READY_TIMEOUT;
    loop {
        if nginx.process.exited() {
            return Err(BenchError::setup(
                "nginx",
                format!("exited: {}", nginx.log_tail()),
            ));
        }
        if c.call_at(&nginx.addr, HttpMethod::GET, "/readyz", None, None)
            .await
            .is_ok()
        {
            return Ok(nginx);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::setup(
                "nginx",
                format!(
                    "did not proxy /readyz within {NGINX_READY_TIMEOUT:?}: {}",
                    nginx.log_tail()
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------------ the bench --

/// The nginx column: nginx's version line, or why there is none.
type NginxColumn = Result<String, String>;

/// What `keel bench gateway` runs.
#[derive(Clone, Debug)]
pub struct GatewayBenchConfig {
    /// The `keel` binary the nodes and the gateway run.
    pub keel_bin: PathBuf,
    /// Concurrent clients of the throughput workloads (closed loop).
    pub clients: u64,
    /// Seconds of load per workload and target in each round, and of the
    /// failover round; each run after a warm-up of a tenth of it.
    pub duration_s: u64,
    /// Times each workload's sequence of targets runs.
    pub rounds: u32,
    /// Sequential local reads per target in the one-client latency probe.
    pub probe_requests: u64,
    /// SKUs read and ordered.
    pub skus: u64,
    /// nginx worker processes (`None`: as many as the gateway's worker
    /// threads).
    pub nginx_workers: Option<u32>,
    /// Port of node 1.
    pub base_port: u16,
    /// Where the cluster, the gateway's log and nginx's files go (wiped at
    /// start).
    pub data_dir: PathBuf,
}

/// Everything `keel bench gateway` measured, for [`gateway_json`] and
/// [`gateway_text`].
pub struct GatewayFigures {
    cores: u32,
    gateway_workers: u32,
    nginx_workers: u32,
    column: NginxColumn,
    rows: Vec<Row>,
    ratios: Vec<WorkloadRatios>,
    /// Median of the latency probe per target: direct, gateway, nginx.
    p50: Vec<u64>,
    failover: Failover,
}

impl GatewayFigures {
    /// Median latency the probe's target `i` adds over direct, µs.
    fn added(&self, i: usize) -> Option<i64> {
        let direct = *self.p50.first()? as i64;
        self.p50.get(i).map(|p| *p as i64 - direct)
    }

    /// The longest gap between successful writes through the kill, ms.
    fn gap_ms(&self) -> f64 {
        self.failover.gap.longest_us as f64 / 1_000.0
    }

    /// When the longest gap ended, ms after the kill.
    fn gap_end_after_kill_ms(&self) -> f64 {
        (self.failover.gap.longest_end_us as f64 - self.failover.kill_us as f64) / 1_000.0
    }
}

/// Starts nginx in front of `upstreams` with `bin`; the column is nginx's
/// version line, or why nginx did not start.
async fn nginx_column(
    bin: &Path,
    dir: &Path,
    upstreams: &[String],
    workers: u32,
) -> (Option<Nginx>, NginxColumn) {
    let started = match nginx_version(bin) {
        Ok(version) => start_nginx(bin, dir, upstreams, workers, &version)
            .await
            .map(|n| (n, version)),
        Err(e) => Err(e),
    };
    match started {
        Ok((n, version)) => (
            Some(n),
            Ok(version.lines().next().unwrap_or("").trim().to_owned()),
        ),
        Err(e) => (None, Err(format!("nginx did not start: {e}"))),
    }
}

/// Runs the benchmark: each workload through every target in rounds, the
/// latency probe, then the failover round and the idle detection.
pub async fn gateway(cfg: &GatewayBenchConfig) -> Result<GatewayFigures, BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    // The gateway runs with its defaults: one worker thread per core.
    let gateway_workers = keel_gateway::GatewayConfig::default().worker_count() as u32;
    let nginx_workers = cfg.nginx_workers.unwrap_or(gateway_workers);
    // Before anything starts, so an install does not compete with the load.
    let nginx_bin = nginx_binary();

    let mut cluster = start_cluster(&cfg.keel_bin, cfg.data_dir.clone(), cfg.base_port).await?;
    let admin = cluster.admin_client();
    seed_catalogue(&admin, cfg.skus, cfg.clients.max(FAILOVER_CLIENTS)).await?;
    let gateway = cluster.start_gateway(0, &[])?;
    cluster
        .wait_gateway_ready(GATEWAY_READY_TIMEOUT)
        .await
        .map_err(|e| BenchError::setup("gateway did not become ready", e))?;

    let (nginx, column) = match nginx_bin {
        Err(why) => (None, Err(why)),
        Ok(bin) => {
            nginx_column(
                &bin,
                &cfg.data_dir.join("nginx"),
                &cluster.endpoints(),
                nginx_workers,
            )
            .await
        }
    };
    if let Err(why) = &column {
        eprintln!("keel bench gateway: no nginx column: {why}");
    }
    let nginx_addr = nginx.as_ref().map(|n| n.addr.clone());

    let (leader, follower) = leader_and_follower(&cluster, cluster.ids(), "cluster").await?;
    let d = Duration::from_secs(cfg.duration_s);
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for workload in [Workload::LocalRead, Workload::Write] {
        let direct = match workload {
            Workload::LocalRead => (follower, "follower"),
            Workload::Write => (leader, "leader"),
        };
        let mut targets = vec![
            (
                Target::Direct,
                cluster.addr(direct.0)?,
                format!("direct ({} {})", direct.1, direct.0),
            ),
            (Target::Gateway, gateway.clone(), "keel gateway".to_owned()),
        ];
        if let Some(addr) = &nginx_addr {
            targets.push((
                Target::Nginx,
                addr.clone(),
                format!("nginx ({nginx_workers} workers)"),
            ));
        }
        let mut outcomes: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
        let mut ratios_by_round = Vec::new();
        for round in 0..cfg.rounds {
            let mut this_round: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
            for (slot, j) in palindrome(targets.len()).into_iter().enumerate() {
                let (target, addr, _) = &targets[j];
                let tag = format!("{}-{target:?}-{round}-{slot}", workload.label());
                let o = load(addr, workload, cfg.clients, cfg.skus, d / 2, &tag).await?;
                merge_into(&mut this_round[j], &o)?;
                merge_into(&mut outcomes[j], &o)?;
            }
            ratios_by_round.push(gateway_over_nginx(&targets, &this_round));
        }
        ratios.push(WorkloadRatios {
            workload: workload.label(),
            total: gateway_over_nginx(&targets, &outcomes),
            by_round: ratios_by_round,
        });
        for ((_, _, label), o) in targets.into_iter().zip(outcomes) {
            // Every target runs in the palindrome schedule of every round.
            let o = o.ok_or_else(|| BenchError::Arg("--rounds must be at least 1".into()))?;
            rows.push(Row::new(workload, label, &o));
        }
    }

    let mut probe_addrs = vec![cluster.addr(follower)?, gateway.clone()];
    probe_addrs.extend(nginx_addr.clone());
    let probes = probe(&probe_addrs, cfg.probe_requests, cfg.skus).await?;
    let p50: Vec<u64> = probes.iter().map(|h| h.value_at_quantile(0.5)).collect();

    let mut failover = failover(&mut cluster, &gateway, cfg.skus, d).await?;
    failover.detection_idle_ms = detection_idle(&mut cluster, &gateway, failover.killed).await?;
    drop(nginx);
    cluster.stop_all();
    Ok(GatewayFigures {
        cores,
        gateway_workers,
        nginx_workers,
        column,
        rows,
        ratios,
        p50,
        failover,
    })
}

/// How nginx ran, or why it did not, for the JSON and the text.
fn nginx_note(f: &GatewayFigures) -> (Value, String) {
    match &f.column {
        Ok(version) => (
            json!({"version": version, "worker_processes": f.nginx_workers}),
            format!("{version}, worker_processes {}, upstream keepalive {NGINX_UPSTREAM_KEEPALIVE}, round robin", f.nginx_workers),
        ),
        Err(why) => (json!({"skipped": why}), format!("skipped: {why}")),
    }
}

/// The `--json` object of `keel bench gateway`.
pub fn gateway_json(cfg: &GatewayBenchConfig, f: &GatewayFigures) -> Value {
    let fo = &f.failover;
    let (nginx_json, _) = nginx_note(f);
    json!({
        "cores": f.cores,
        "clients": cfg.clients,
        "duration_s": cfg.duration_s,
        "skus": cfg.skus,
        "order": "each workload, each round: direct, gateway, nginx, nginx, gateway, direct; duration_s / 2 each",
        "rounds": cfg.rounds,
        "gateway": {"worker_threads": f.gateway_workers, "settings": "defaults"},
        "nginx": nginx_json,
        "results": f.rows.iter().map(Row::json).collect::<Vec<_>>(),
        "probe": {
            "requests_per_target": cfg.probe_requests,
            "direct_p50_us": f.p50.first(),
            "gateway_p50_us": f.p50.get(1),
            "nginx_p50_us": f.p50.get(2),
            "gateway_added_median_us": f.added(1),
            "nginx_added_median_us": f.added(2),
        },
        "throughput_gateway_over_nginx": f.ratios.iter().map(|r| (r.workload.to_owned(), json!(r.total))).collect::<serde_json::Map<_, _>>(),
        "throughput_gateway_over_nginx_by_round": f.ratios.iter().map(|r| (r.workload.to_owned(), json!(r.by_round))).collect::<serde_json::Map<_, _>>(),
        "failover": {
            "clients": FAILOVER_CLIENTS,
            "killed_node": fo.killed,
            "ok": fo.ok,
            "errors": fo.errors,
            "error_sample": fo.error_sample,
            "longest_gap_ms": f.gap_ms(),
            "longest_gap_ended_after_kill_ms": f.gap_end_after_kill_ms(),
            "detection_under_load_ms": fo.detection_ms,
            "detection_idle_ms": fo.detection_idle_ms,
        },
    })
}

/// The text report of `keel bench gateway`: the setup, the table, the
/// throughput ratios, the added latency and the failover figures.
pub fn gateway_text(cfg: &GatewayBenchConfig, f: &GatewayFigures) -> String {
    let fo = &f.failover;
    let (_, nginx_note) = nginx_note(f);
    let mut s = format!(
        "keel bench gateway: 3 nodes on 127.0.0.1 (fsync on), {} cores shared by nodes, proxies and load generator; \
         {} closed-loop clients, {} s per workload and target in each of {} round(s) (two halves, order direct-gateway-nginx-nginx-gateway-direct, \
         each after a {} s warm-up)\n",
        f.cores,
        cfg.clients,
        cfg.duration_s,
        cfg.rounds,
        cfg.duration_s as f64 / 20.0
    );
    s.push_str(&format!("gateway: keel gateway, default settings: {} worker threads, each a single-threaded tokio runtime\n", f.gateway_workers));
    s.push_str(&format!("nginx:   {nginx_note}\n"));
    s.push('\n');
    s.push_str(&format_table(&f.rows));
    s.push_str(
        "(write: direct and the gateway send every write to the leader; nginx round-robins over all three nodes and \
         followers forward to the leader, one more hop for two writes in three)\n",
    );
    s.push('\n');
    let fmt_ratio = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    for r in &f.ratios {
        let by_round = if cfg.rounds > 1 {
            let each: Vec<String> = r.by_round.iter().map(|x| fmt_ratio(*x)).collect();
            format!(" (rounds: {})", each.join(", "))
        } else {
            String::new()
        };
        s.push_str(&format!(
            "throughput gateway / nginx, {}: {}{by_round}\n",
            r.workload,
            fmt_ratio(r.total)
        ));
    }
    s.push('\n');
    s.push_str(&format!(
        "added median latency over direct (1 client, {} sequential local reads per target, interleaved):\n",
        cfg.probe_requests
    ));
    let p50 = |i: usize| f.p50.get(i).copied().unwrap_or(0);
    s.push_str(&format!("  direct p50 {}\n", fmt_latency(p50(0))));
    let goal = |us: i64| {
        if us < ADDED_MEDIAN_GOAL_US {
            "met"
        } else {
            "NOT met"
        }
    };
    if let Some(a) = f.added(1) {
        s.push_str(&format!(
            "  keel gateway p50 {} -> +{a} µs (goal < {ADDED_MEDIAN_GOAL_US} µs: {})\n",
            fmt_latency(p50(1)),
            goal(a)
        ));
    }
    if let Some(a) = f.added(2) {
        s.push_str(&format!(
            "  nginx        p50 {} -> +{a} µs\n",
            fmt_latency(p50(2))
        ));
    }
    s.push('\n');
    let goal_ms = |ms: Option<f64>| match ms {
        Some(ms) if ms < FAILOVER_GOAL_MS => format!("{ms:.0} ms (goal < 1 s: met)"),
        Some(ms) => format!("{ms:.0} ms (goal < 1 s: NOT met)"),
        None => format!("not detected within {DETECTION_TIMEOUT:?}"),
    };
    s.push_str(&format!(
        "failover through the gateway ({FAILOVER_CLIENTS} clients writing with Idempotency-Keys, leader node {} SIGKILLed halfway):\n",
        fo.killed
    ));
    s.push_str(&format!(
        "  writes acknowledged {}, client-visible errors {}{}\n",
        fo.ok,
        fo.errors,
        fo.error_sample
            .as_deref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    ));
    s.push_str(&format!(
        "  longest gap between successful writes {} (ended {:.0} ms after the kill)\n",
        goal_ms(Some(f.gap_ms())),
        f.gap_end_after_kill_ms()
    ));
    s.push_str(&format!(
        "  detection (kill to eligible:false in /status, polled every {} ms), under load: {}\n",
        STATUS_POLL.as_millis(),
        goal_ms(fo.detection_ms)
    ));
    s.push_str(&format!(
        "  detection, no traffic (probes only, a follower killed): {}\n",
        goal_ms(fo.detection_idle_ms)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(dir: &Path, modules: &[&str], root: bool) -> String {
        let ups = vec!["127.0.0.1:7401".to_owned(), "127.0.0.1:7402".to_owned()];
        render_nginx_conf(&NginxConf {
            workers: 2,
            port: 8080,
            upstreams: &ups,
            dir,
            optional_temp_modules: modules,
            user_root: root,
        })
        .expect("renders")
    }

    #[test]
    fn nginx_conf_has_the_issue_settings() {
        let c = conf(Path::new("/tmp/b/nginx"), &["uwsgi"], false);
        for needle in [
            "worker_processes 2;",
            "daemon off;",
            "error_log /tmp/b/nginx/error.log warn;",
            "pid /tmp/b/nginx/nginx.pid;",
            "server 127.0.0.1:7401;",
            "server 127.0.0.1:7402;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "listen 127.0.0.1:8080;",
            "proxy_temp_path /tmp/b/nginx/temp/proxy;",
            "uwsgi_temp_path /tmp/b/nginx/temp/uwsgi;",
            "keepalive_requests 1000000;",
        ] {
            assert!(c.contains(needle), "missing {needle:?} in\n{c}");
        }
        assert!(!c.contains("fastcgi"));
        assert!(!c.contains("user "));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn nginx_conf_keeps_root_workers_only_when_asked() {
        assert!(conf(Path::new("/d"), &[], true).contains("user root root;\n"));
    }

    #[test]
    fn nginx_conf_refuses_unsafe_paths() {
        let ups = vec!["127.0.0.1:1".to_owned()];
        for dir in ["/tmp/a b", "/tmp/a;b", "/tmp/$x"] {
            let r = render_nginx_conf(&NginxConf {
                workers: 1,
                port: 1,
                upstreams: &ups,
                dir: Path::new(dir),
                optional_temp_modules: &[],
                user_root: false,
            });
            assert!(r.is_err(), "{dir} accepted");
        }
    }

    #[test]
    fn optional_modules_follow_nginx_v() {
        let v = "configure arguments: --with-cc-opt=-O2 --without-http_fastcgi_module --without-http_scgi_module";
        assert_eq!(optional_temp_modules(v), vec!["uwsgi"]);
        assert_eq!(
            optional_temp_modules("nginx version: nginx/1.22.1"),
            vec!["fastcgi", "uwsgi", "scgi"]
        );
    }

    #[test]
    fn latency_switches_units_at_a_millisecond() {
        assert_eq!(fmt_latency(0), "0 µs");
        assert_eq!(fmt_latency(999), "999 µs");
        assert_eq!(fmt_latency(1_000), "1.00 ms");
        assert_eq!(fmt_latency(12_345), "12.3 ms");
    }

    #[test]
    fn table_has_a_header_and_a_line_per_row() {
        let row = Row {
            workload: "write",
            target: "keel gateway".into(),
            req_per_s: 1234.4,
            p50_us: 850,
            p99_us: 2_500,
            p999_us: 25_000,
            errors: 3,
        };
        let t = format_table(&[row.clone(), row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("workload"));
        assert!(lines[1].contains("keel gateway"));
        assert!(lines[1].contains(" 1234 "));
        assert!(lines[1].contains("850 µs"));
        assert!(lines[1].contains("2.50 ms"));
        assert!(lines[1].contains("25.0 ms"));
        assert!(lines[1].trim_end().ends_with('3'));
        // Columns line up: every line is as wide as the header.
        let width = |l: &str| l.chars().count();
        assert_eq!(width(lines[0]), width(lines[1]));
    }

    #[test]
    fn every_target_has_the_same_mean_position() {
        let order = palindrome(3);
        assert_eq!(order, vec![0, 1, 2, 2, 1, 0]);
        for t in 0..3 {
            let sum: usize = order
                .iter()
                .enumerate()
                .filter(|(_, j)| **j == t)
                .map(|(i, _)| i)
                .sum();
            assert_eq!(sum, order.len() - 1, "target {t}");
        }
        assert!(palindrome(0).is_empty());
    }

    #[test]
    fn merged_outcomes_add_up() {
        let mut a = Outcome {
            ok: 2,
            errors: 1,
            seconds: 1.0,
            hist: new_hist().expect("hist"),
        };
        a.hist.record(100).expect("record");
        let mut b = Outcome {
            ok: 3,
            errors: 0,
            seconds: 1.5,
            hist: new_hist().expect("hist"),
        };
        b.hist.record(300).expect("record");
        a.merge(&b).expect("merge");
        assert_eq!((a.ok, a.errors, a.seconds), (5, 1, 2.5));
        assert_eq!(a.hist.len(), 2);
    }

    #[test]
    fn merging_into_nothing_starts_the_total() {
        let one = |ok| Outcome {
            ok,
            errors: 0,
            seconds: 2.0,
            hist: new_hist().expect("hist"),
        };
        let mut acc = None;
        merge_into(&mut acc, &one(10)).expect("merge");
        merge_into(&mut acc, &one(30)).expect("merge");
        let acc = acc.expect("a total");
        assert_eq!((acc.ok, acc.seconds, acc.rate()), (40, 4.0, 10.0));
        assert_eq!(one(0).rate(), 0.0);
    }

    #[test]
    fn the_gateway_is_compared_with_nginx_only_when_nginx_ran() {
        let run = |ok| {
            Some(Outcome {
                ok,
                errors: 0,
                seconds: 1.0,
                hist: new_hist().expect("hist"),
            })
        };
        let target = |t| (t, String::new(), String::new());
        let all = [
            target(Target::Direct),
            target(Target::Gateway),
            target(Target::Nginx),
        ];
        assert_eq!(
            gateway_over_nginx(&all, &[run(9), run(3), run(4)]),
            Some(0.75)
        );
        assert_eq!(gateway_over_nginx(&all[..2], &[run(9), run(3)]), None);
    }

    #[test]
    fn ratio_of_nothing_is_none() {
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
    }

    #[test]
    fn ineligible_node_is_found_by_address() {
        let s = json!({"nodes": [
            {"addr": "127.0.0.1:1", "eligible": true},
            {"addr": "127.0.0.1:2", "eligible": false},
        ]});
        assert!(!node_ineligible(&s, "127.0.0.1:1"));
        assert!(node_ineligible(&s, "127.0.0.1:2"));
        assert!(!node_ineligible(&s, "127.0.0.1:3"));
        assert!(!node_ineligible(&json!({}), "127.0.0.1:2"));
    }

    #[test]
    fn requests_spread_and_key_writes() {
        assert_eq!(sku_for(0, 0, 10), "S0");
        assert_ne!(sku_for(1, 1, 1_000), sku_for(1, 2, 1_000));
        assert_eq!(sku_for(5, 5, 1), "S0");
        let w = request(Workload::Write, 10, 3, 7, "t");
        assert_eq!(w.method, HttpMethod::POST);
        assert_eq!(w.key.as_deref(), Some("t-3-7"));
        assert_eq!(w.body.expect("body")["customer"], "c3");
        let r = request(Workload::LocalRead, 10, 3, 7, "t");
        assert!(r.path.ends_with("?consistency=local"));
        assert!(r.key.is_none() && r.body.is_none());
    }
}
