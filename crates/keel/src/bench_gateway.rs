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
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_bench::gap::GapTracker;
use keel_client::{Client, HttpMethod};
use keel_harness::LocalCluster;
use serde_json::{json, Value};

use crate::up::{local_spec, READY_TIMEOUT};
use keel_bench::cluster::seed_catalogue as seed;
use keel_bench::hist::LATENCY_MAX_US;

/// Admin token of the benchmark cluster (the load generator authenticates
/// with it so it may place orders for any customer).
const ADMIN_TOKEN: &str = "keel-admin-dev";
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
/// Longest nginx gets to exit after SIGTERM before it is killed.
const NGINX_STOP_GRACE: Duration = Duration::from_secs(5);
/// How often readiness conditions are polled.
const READY_POLL: Duration = Duration::from_millis(50);
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
/// Load-generator tasks sharing one HTTP client: `keel_client::Client`
/// keeps 64 idle connections per host, so each client serves at most 64
/// closed-loop tasks without reconnecting.
const TASKS_PER_HTTP_CLIENT: u64 = 64;
/// Bytes of nginx's error log quoted when it fails to start.
const LOG_TAIL_BYTES: usize = 2_000;
/// The issue's goal for the gateway's added median latency.
const ADDED_MEDIAN_GOAL_US: i64 = 100;
/// The issue's goal for detecting a killed node, and for the longest
/// client-visible gap through a leader kill.
const FAILOVER_GOAL_MS: f64 = 1_000.0;

/// Arguments of `keel bench gateway`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients of the throughput workloads (closed loop).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of load per workload and target (run in two halves: direct,
    /// gateway, nginx, then back), and of the failover round; each run
    /// after a warm-up of a tenth of it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    duration_s: u64,
    /// Times each workload's sequence of targets runs, `duration_s` per
    /// target each time. Each round's gateway-to-nginx ratio is printed
    /// beside the ratio of the totals, so a comparison shows its
    /// run-to-run spread on a noisy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Sequential local reads per target in the one-client latency probe.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    probe_requests: u64,
    /// SKUs read and ordered.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// nginx worker processes (default: as many as the gateway's worker
    /// threads, i.e. the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    nginx_workers: Option<u32>,
    /// Port of node 1 of the benchmark cluster.
    #[arg(long, default_value_t = 7401)]
    base_port: u16,
    /// Where the cluster, the gateway's log and nginx's files go (wiped at
    /// start).
    #[arg(long, default_value = "keel-data/bench-gateway")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

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
    format!(
        "S{}",
        (t.wrapping_mul(7_919).wrapping_add(i.wrapping_mul(104_729))) % skus.max(1)
    )
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
    fn merge(&mut self, other: &Outcome) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.hist.add(&other.hist)?;
        Ok(())
    }
}

/// Adds `o` to the accumulated outcome in `acc`, or makes it the first.
fn merge_into(acc: &mut Option<Outcome>, o: &Outcome) -> anyhow::Result<()> {
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

fn new_hist() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_max(LATENCY_MAX_US, 3)?)
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
) -> anyhow::Result<Outcome> {
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
                    let _ = hist.record(us.min(LATENCY_MAX_US));
                } else {
                    errors += 1;
                }
            }
            (ok, errors, hist)
        }));
    }
    tokio::time::sleep(duration / 10).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        seconds,
        hist: new_hist()?,
    };
    for t in tasks {
        let (ok, errors, h) = t.await.context("load task panicked")?;
        out.ok += ok;
        out.errors += errors;
        out.hist.add(&h)?;
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
async fn probe(addrs: &[String], requests: u64, skus: u64) -> anyhow::Result<Vec<Histogram<u64>>> {
    let clients: Vec<Client> = addrs
        .iter()
        .map(|a| Client::new(vec![a.clone()], Some(ADMIN_TOKEN.to_owned())))
        .collect();
    let mut hists = addrs
        .iter()
        .map(|_| new_hist())
        .collect::<anyhow::Result<Vec<_>>>()?;
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
            res.map_err(|e| anyhow::anyhow!("probe via {}: {e:?}", addrs[j]))?;
            if i >= PROBE_WARMUP {
                let _ = hists[j].record(us.min(LATENCY_MAX_US));
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
) -> anyhow::Result<Failover> {
    let leader = cluster
        .leader()
        .await
        .context("no leader before the kill")?;
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
        let (o, e, s) = t.await.context("failover task panicked")?;
        ok += o;
        errors += e;
        error_sample = error_sample.or(s);
    }
    let detected = poller.await.context("status poller panicked")?;
    let mut gap = gaps
        .lock()
        .map(|g| *g)
        .map_err(|_| anyhow::anyhow!("gap tracker lock poisoned"))?;
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

/// Detection without traffic, from the gateway's probes alone: restarts
/// `killed`, waits until the gateway routes to every node again, then
/// SIGKILLs a follower with no requests in flight.
async fn detection_idle(
    cluster: &mut LocalCluster,
    gateway: &str,
    killed: u64,
) -> anyhow::Result<Option<f64>> {
    cluster.restart(killed)?;
    cluster
        .wait_ready(READY_TIMEOUT)
        .await
        .context("cluster not ready after restarting the killed leader")?;
    let c = Client::new(vec![gateway.to_owned()], None);
    let nodes = cluster.ids().len() as u64;
    cluster
        .wait_for(
            "the gateway routing to every node",
            READY_TIMEOUT,
            || async {
                let r = c
                    .call_at(gateway, HttpMethod::GET, "/status", None, None)
                    .await
                    .ok()?;
                (r.body["eligible"].as_u64()? == nodes).then_some(())
            },
        )
        .await?;
    let leader = cluster.leader().await.context("no leader after restart")?;
    let follower = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .context("no follower to kill")?;
    let addr = cluster.addr(follower)?;
    let poller = tokio::spawn(wait_ineligible(gateway.to_owned(), addr));
    let kill_at = Instant::now();
    cluster.kill(follower)?;
    let detected = poller.await.context("status poller panicked")?;
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
fn render_nginx_conf(c: &NginxConf<'_>) -> anyhow::Result<String> {
    let dir = c.dir.to_str().context("nginx directory is not UTF-8")?;
    anyhow::ensure!(
        nginx_safe(dir),
        "nginx directory {dir:?} has characters nginx.conf cannot take unquoted"
    );
    for u in c.upstreams {
        anyhow::ensure!(
            nginx_safe(u),
            "node address {u:?} is not usable in nginx.conf"
        );
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

/// `name` in the directories of `path` (a `PATH` value), then in `extra`
/// (Debian puts nginx in /usr/sbin, which a user's PATH may lack).
fn find_in_path(name: &str, path: &str, extra: &[&str]) -> Option<PathBuf> {
    std::env::split_paths(path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    find_in_path("nginx", &path, &["/usr/sbin", "/sbin"])
}

/// Runs a command with its output on our stderr (stdout may carry JSON).
fn run_quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::from(std::io::stderr()))
        .status()
        .is_ok_and(|s| s.success())
}

/// The nginx binary, installing Debian's nginx-light (or nginx) when it is
/// missing and we are root; otherwise why the nginx column is skipped.
fn nginx_binary() -> Result<PathBuf, String> {
    if let Some(p) = find_nginx() {
        return Ok(p);
    }
    if !keel_bench::procs::is_root() {
        return Err(
            "nginx is not installed and this is not root: install it (apt-get install nginx-light) to get the nginx column"
                .to_owned(),
        );
    }
    eprintln!("keel bench gateway: nginx not found; installing Debian's nginx-light with apt-get (running as root)");
    let apt = |args: &[&str]| {
        run_quiet(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if !apt(&["update"]) {
        eprintln!("keel bench gateway: apt-get update failed; trying the install anyway");
    }
    if !apt(&["install", "-y", "nginx-light"]) && !apt(&["install", "-y", "nginx"]) {
        return Err("apt-get install nginx-light (and nginx) failed".to_owned());
    }
    find_nginx().ok_or_else(|| "nginx installed but not found on PATH or in /usr/sbin".to_owned())
}

/// A running nginx, stopped (SIGTERM, then SIGKILL) when dropped, also on
/// an error path.
struct Nginx {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Nginx {
    /// The last [`LOG_TAIL_BYTES`] of nginx's error log and stderr.
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

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan
        // them. std offers only SIGKILL, and this crate does not link nix.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + NGINX_STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(READY_POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// `nginx -V` (version and configure arguments; nginx prints it on stderr).
fn nginx_version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("-V")
        .output()
        .with_context(|| format!("running {} -V", bin.display()))?;
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
) -> anyhow::Result<Nginx> {
    std::fs::create_dir_all(dir.join("temp"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let port = free_port()?;
    let conf = render_nginx_conf(&NginxConf {
        workers,
        port,
        upstreams,
        dir: &dir,
        optional_temp_modules: &optional_temp_modules(version),
        user_root: keel_bench::procs::is_root(),
    })?;
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
    let stderr = std::fs::File::create(dir.join("stderr.log"))?;
    let child = Command::new(bin)
        // -e: the error log before nginx.conf is read (else Debian's
        // /var/log/nginx/error.log).
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut nginx = Nginx {
        child,
        addr: format!("127.0.0.1:{port}"),
        dir,
    };
    let c = Client::new(vec![nginx.addr.clone()], None);
    let deadline = Instant::now() + NGINX_READY_TIMEOUT;
    loop {
        if let Ok(Some(st)) = nginx.child.try_wait() {
            anyhow::bail!("nginx exited ({st}): {}", nginx.log_tail());
        }
        if c.call_at(&nginx.addr, HttpMethod::GET, "/readyz", None, None)
            .await
            .is_ok()
        {
            return Ok(nginx);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "nginx did not proxy /readyz within {NGINX_READY_TIMEOUT:?}: {}",
                nginx.log_tail()
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

// ------------------------------------------------------------ the bench --

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(args))
}

/// The nginx column: nginx's version line, or why there is none.
type NginxColumn = Result<String, String>;

async fn bench(args: Args) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    // The gateway runs with its defaults: one worker thread per core.
    let gateway_workers = keel_gateway::GatewayConfig::default().worker_count() as u32;
    let nginx_workers = args.nginx_workers.unwrap_or(gateway_workers);
    // Before anything starts, so an install does not compete with the load.
    let nginx_bin = nginx_binary();

    crate::clear_dir(&args.data_dir)?;
    let spec = local_spec(3, args.base_port, args.data_dir.clone(), ADMIN_TOKEN)?;
    let mut cluster = LocalCluster::start(spec)?;
    cluster
        .wait_ready(READY_TIMEOUT)
        .await
        .context("cluster did not become ready")?;
    let admin = cluster.admin_client();
    seed(&admin, args.skus, args.clients.max(FAILOVER_CLIENTS))
        .await
        .context("seeding")?;
    let gateway = cluster.start_gateway(0, &[])?;
    cluster
        .wait_gateway_ready(GATEWAY_READY_TIMEOUT)
        .await
        .context("gateway did not become ready")?;

    let (nginx, column): (Option<Nginx>, NginxColumn) = match nginx_bin {
        Err(why) => (None, Err(why)),
        Ok(bin) => {
            let started = match nginx_version(&bin) {
                Ok(version) => start_nginx(
                    &bin,
                    &args.data_dir.join("nginx"),
                    &cluster.endpoints(),
                    nginx_workers,
                    &version,
                )
                .await
                .map(|n| (n, version)),
                Err(e) => Err(e),
            };
            match started {
                Ok((n, version)) => (
                    Some(n),
                    Ok(version.lines().next().unwrap_or("").trim().to_owned()),
                ),
                Err(e) => (None, Err(format!("nginx did not start: {e:#}"))),
            }
        }
    };
    if let Err(why) = &column {
        eprintln!("keel bench gateway: no nginx column: {why}");
    }
    let nginx_addr = nginx.as_ref().map(|n| n.addr.clone());

    let leader = cluster.leader().await.context("no leader")?;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .context("no follower")?;
    let d = Duration::from_secs(args.duration_s);
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
        for round in 0..args.rounds {
            let mut this_round: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
            for (slot, j) in palindrome(targets.len()).into_iter().enumerate() {
                let (target, addr, label) = &targets[j];
                let tag = format!("{}-{target:?}-{round}-{slot}", workload.label());
                let o = load(addr, workload, args.clients, args.skus, d / 2, &tag)
                    .await
                    .with_context(|| format!("{} via {label}", workload.label()))?;
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
            let o = o.context("every target runs in the schedule")?;
            rows.push(Row::new(workload, label, &o));
        }
    }

    let mut probe_addrs = vec![cluster.addr(follower)?, gateway.clone()];
    probe_addrs.extend(nginx_addr.clone());
    let probes = probe(&probe_addrs, args.probe_requests, args.skus)
        .await
        .context("latency probe")?;
    let p50: Vec<u64> = probes.iter().map(|h| h.value_at_quantile(0.5)).collect();
    let added = |i: usize| p50.get(i).map(|p| *p as i64 - p50[0] as i64);

    let mut fo = failover(&mut cluster, &gateway, args.skus, d)
        .await
        .context("failover round")?;
    fo.detection_idle_ms = detection_idle(&mut cluster, &gateway, fo.killed)
        .await
        .context("idle detection")?;
    drop(nginx);
    cluster.stop_all();

    let gap_ms = fo.gap.longest_us as f64 / 1_000.0;
    let gap_end_after_kill_ms = (fo.gap.longest_end_us as f64 - fo.kill_us as f64) / 1_000.0;
    let (nginx_json, nginx_note) = match &column {
        Ok(version) => (
            json!({"version": version, "worker_processes": nginx_workers}),
            format!("{version}, worker_processes {nginx_workers}, upstream keepalive {NGINX_UPSTREAM_KEEPALIVE}, round robin"),
        ),
        Err(why) => (json!({"skipped": why}), format!("skipped: {why}")),
    };

    if args.json {
        println!(
            "{}",
            json!({
                "cores": cores,
                "clients": args.clients,
                "duration_s": args.duration_s,
                "skus": args.skus,
                "order": "each workload, each round: direct, gateway, nginx, nginx, gateway, direct; duration_s / 2 each",
                "rounds": args.rounds,
                "gateway": {"worker_threads": gateway_workers, "settings": "defaults"},
                "nginx": nginx_json,
                "results": rows.iter().map(Row::json).collect::<Vec<_>>(),
                "probe": {
                    "requests_per_target": args.probe_requests,
                    "direct_p50_us": p50.first(),
                    "gateway_p50_us": p50.get(1),
                    "nginx_p50_us": p50.get(2),
                    "gateway_added_median_us": added(1),
                    "nginx_added_median_us": added(2),
                },
                "throughput_gateway_over_nginx": ratios.iter().map(|r| (r.workload.to_owned(), json!(r.total))).collect::<serde_json::Map<_, _>>(),
                "throughput_gateway_over_nginx_by_round": ratios.iter().map(|r| (r.workload.to_owned(), json!(r.by_round))).collect::<serde_json::Map<_, _>>(),
                "failover": {
                    "clients": FAILOVER_CLIENTS,
                    "killed_node": fo.killed,
                    "ok": fo.ok,
                    "errors": fo.errors,
                    "error_sample": fo.error_sample,
                    "longest_gap_ms": gap_ms,
                    "longest_gap_ended_after_kill_ms": gap_end_after_kill_ms,
                    "detection_under_load_ms": fo.detection_ms,
                    "detection_idle_ms": fo.detection_idle_ms,
                },
            })
        );
        return Ok(());
    }

    println!(
        "keel bench gateway: 3 nodes on 127.0.0.1 (fsync on), {cores} cores shared by nodes, proxies and load generator; \
         {} closed-loop clients, {} s per workload and target in each of {} round(s) (two halves, order direct-gateway-nginx-nginx-gateway-direct, \
         each after a {} s warm-up)",
        args.clients,
        args.duration_s,
        args.rounds,
        d.as_secs_f64() / 20.0
    );
    println!("gateway: keel gateway, default settings: {gateway_workers} worker threads, each a single-threaded tokio runtime");
    println!("nginx:   {nginx_note}");
    println!();
    print!("{}", format_table(&rows));
    println!(
        "(write: direct and the gateway send every write to the leader; nginx round-robins over all three nodes and \
         followers forward to the leader, one more hop for two writes in three)"
    );
    println!();
    let fmt_ratio = |r: Option<f64>| r.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    for r in &ratios {
        let by_round = if args.rounds > 1 {
            let each: Vec<String> = r.by_round.iter().map(|x| fmt_ratio(*x)).collect();
            format!(" (rounds: {})", each.join(", "))
        } else {
            String::new()
        };
        println!(
            "throughput gateway / nginx, {}: {}{by_round}",
            r.workload,
            fmt_ratio(r.total)
        );
    }
    println!();
    println!(
        "added median latency over direct (1 client, {} sequential local reads per target, interleaved):",
        args.probe_requests
    );
    println!("  direct p50 {}", fmt_latency(p50[0]));
    let goal = |us: i64| {
        if us < ADDED_MEDIAN_GOAL_US {
            "met"
        } else {
            "NOT met"
        }
    };
    if let Some(a) = added(1) {
        println!(
            "  keel gateway p50 {} -> +{a} µs (goal < {ADDED_MEDIAN_GOAL_US} µs: {})",
            fmt_latency(p50[1]),
            goal(a)
        );
    }
    if let Some(a) = added(2) {
        println!("  nginx        p50 {} -> +{a} µs", fmt_latency(p50[2]));
    }
    println!();
    let goal_ms = |ms: Option<f64>| match ms {
        Some(ms) if ms < FAILOVER_GOAL_MS => format!("{ms:.0} ms (goal < 1 s: met)"),
        Some(ms) => format!("{ms:.0} ms (goal < 1 s: NOT met)"),
        None => format!("not detected within {DETECTION_TIMEOUT:?}"),
    };
    println!(
        "failover through the gateway ({FAILOVER_CLIENTS} clients writing with Idempotency-Keys, leader node {} SIGKILLed halfway):",
        fo.killed
    );
    println!(
        "  writes acknowledged {}, client-visible errors {}{}",
        fo.ok,
        fo.errors,
        fo.error_sample
            .as_deref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    println!(
        "  longest gap between successful writes {} (ended {gap_end_after_kill_ms:.0} ms after the kill)",
        goal_ms(Some(gap_ms))
    );
    println!(
        "  detection (kill to eligible:false in /status, polled every {} ms), under load: {}",
        STATUS_POLL.as_millis(),
        goal_ms(fo.detection_ms)
    );
    println!(
        "  detection, no traffic (probes only, a follower killed): {}",
        goal_ms(fo.detection_idle_ms)
    );
    Ok(())
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
    fn finds_a_binary_in_path_then_extra() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        std::fs::write(b.path().join("tool"), "").expect("write");
        let path = a.path().to_str().expect("utf-8");
        let extra = b.path().to_str().expect("utf-8");
        assert_eq!(find_in_path("tool", path, &[]), None);
        assert_eq!(
            find_in_path("tool", path, &[extra]),
            Some(b.path().join("tool"))
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
