//! `keel bench cluster`: closed-loop load on a local three-node cluster with
//! fsync on: N concurrent HTTP clients placing orders, spread over all
//! nodes, for a fixed time. Reports throughput and latency percentiles for a
//! uniform catalogue and for one hot SKU. A benchmark, not a test.
//!
//! [`load`], [`Outcome`] and [`row`] also serve `keel bench backup`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_client::Client;
use serde_json::{json, Value};

use crate::compare::ADMIN_TOKEN;
use crate::hist::{new_hist, record};
use crate::local::{start_cluster, NODES};
use crate::seed::{seed, Catalogue, SKU_STOCK};
use crate::BenchError;

/// The one SKU every order of the hot scenario buys.
pub const HOT_SKU: &str = "HOT";

/// What `keel bench cluster` runs.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The `keel` binary the nodes run.
    pub keel_bin: PathBuf,
    /// Concurrent closed-loop clients.
    pub clients: u64,
    /// Seconds of load per scenario (after a warm-up of a tenth of it).
    pub duration_s: u64,
    /// SKUs of the uniform scenario.
    pub skus: u64,
    /// Port of node 1.
    pub base_port: u16,
    /// The cluster's data directory (wiped at start).
    pub data_dir: PathBuf,
    /// Send every request to the leader instead of spreading them over all
    /// nodes (followers forward).
    pub leader_only: bool,
}

/// Seeds the catalogue of a cluster benchmark: accounts `shop` and `world`,
/// customers `c0..`, SKUs `S0..` and [`HOT_SKU`], each with [`SKU_STOCK`]
/// units.
pub async fn seed_catalogue(admin: &Client, skus: u64, customers: u64) -> Result<(), BenchError> {
    seed(
        admin,
        &Catalogue {
            skus,
            customers,
            flash: Some((HOT_SKU.to_owned(), SKU_STOCK)),
        },
    )
    .await
}

/// What one load phase measured.
pub struct Outcome {
    /// Orders acknowledged while measuring.
    pub ok: u64,
    /// Orders that failed while measuring.
    pub errors: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Latency of the acknowledged orders, µs.
    pub hist: Histogram<u64>,
}

/// `n` closed-loop clients placing one-line orders for `duration` (after a
/// tenth of it as warm-up), spread over `clients`; `sku_of(client, seq)`
/// picks each order's SKU and `tag` makes the idempotency keys unique.
pub async fn load(
    clients: &[Arc<Client>],
    n: u64,
    duration: Duration,
    sku_of: impl Fn(u64, u64) -> String + Send + Sync + 'static,
    tag: &str,
) -> Result<Outcome, BenchError> {
    let sku_of = Arc::new(sku_of);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(new_hist()?));
    let mut tasks = Vec::new();
    for t in 0..n {
        let client = clients[(t as usize) % clients.len()].clone();
        let (stop, measuring, ok, errors, hist, sku_of) = (
            stop.clone(),
            measuring.clone(),
            ok.clone(),
            errors.clone(),
            hist.clone(),
            sku_of.clone(),
        );
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut local = new_hist().ok();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let lines = vec![(sku_of(t, i), 1)];
                let start = Instant::now();
                let r = client
                    .place_order(&format!("c{t}"), &lines, &format!("{tag}-{t}-{i}"))
                    .await;
                let us = start.elapsed().as_micros() as u64;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match r {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if let Some(h) = local.as_mut() {
                            record(h, us);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let (Some(l), Ok(mut h)) = (local, hist.lock()) {
                let _ = h.add(&l);
            }
        }));
    }
    let seconds = measure_window(duration, &measuring, &stop).await;
    for t in tasks {
        let _ = t.await;
    }
    let hist = hist
        .lock()
        .map(|h| h.clone())
        .map_err(|_| BenchError::Histogram("histogram lock poisoned".into()))?;
    Ok(Outcome {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        hist,
    })
}

/// The clock of a closed-loop phase whose tasks are already running: a
/// warm-up of a tenth of `duration`, then `duration` with `measuring` set,
/// then `stop` set. Returns the seconds measured.
pub async fn measure_window(duration: Duration, measuring: &AtomicBool, stop: &AtomicBool) -> f64 {
    tokio::time::sleep(duration / 10).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    seconds
}

/// One scenario's figures as a JSON row: orders/s, errors and latency
/// percentiles in ms (the row of the table and of `--json`).
pub fn row(name: &str, o: &Outcome) -> Value {
    let ms = |q: f64| o.hist.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "scenario": name,
        "orders_per_s": o.ok as f64 / o.seconds,
        "orders": o.ok,
        "errors": o.errors,
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": o.hist.max() as f64 / 1000.0,
    })
}

/// One admin client per endpoint, each trying its own node first: load
/// enters everywhere and followers forward writes, as behind a balancer.
pub fn clients_per_node(endpoints: &[String]) -> Vec<Arc<Client>> {
    (0..endpoints.len())
        .map(|i| {
            let mut eps = endpoints.to_vec();
            eps.rotate_left(i);
            Arc::new(Client::new(eps, Some(ADMIN_TOKEN.into())))
        })
        .collect()
}

/// The SKU client `t` orders in its `i`-th request of the uniform
/// scenario: spread over `skus`, different per client.
pub fn uniform_sku(t: u64, i: u64, skus: u64) -> String {
    format!("S{}", (t * 7919 + i * 104_729) % skus)
}

/// Runs the benchmark: the uniform scenario, then the hot one; returns
/// one [`row`] per scenario.
pub async fn cluster(cfg: &ClusterConfig) -> Result<Vec<Value>, BenchError> {
    let mut cluster = start_cluster(&cfg.keel_bin, cfg.data_dir.clone(), cfg.base_port).await?;
    let admin = cluster.admin_client();
    seed_catalogue(&admin, cfg.skus, cfg.clients).await?;
    // One client per node, each preferring its node: load enters everywhere
    // and followers forward writes to the leader, as behind a balancer.
    let endpoints = if cfg.leader_only {
        let leader = cluster
            .leader()
            .await
            .ok_or_else(|| BenchError::setup("cluster", "no leader"))?;
        vec![cluster.addr(leader)?]
    } else {
        cluster.endpoints()
    };
    let clients = clients_per_node(&endpoints);
    let d = Duration::from_secs(cfg.duration_s);
    let skus = cfg.skus;
    let uniform = load(
        &clients,
        cfg.clients,
        d,
        move |t, i| uniform_sku(t, i, skus),
        "u",
    )
    .await?;
    let hot = load(&clients, cfg.clients, d, |_, _| HOT_SKU.to_owned(), "h").await?;
    cluster.stop_all();
    Ok(vec![
        row(&format!("uniform ({} SKUs)", cfg.skus), &uniform),
        row("hot (1 SKU)", &hot),
    ])
}

/// The `--json` object of `keel bench cluster`.
pub fn cluster_json(cfg: &ClusterConfig, rows: &[Value]) -> Value {
    json!({"clients": cfg.clients, "duration_s": cfg.duration_s, "nodes": NODES, "leader_only": cfg.leader_only, "results": rows})
}

/// The table of `keel bench cluster`: a line saying what ran, a header and
/// one line per scenario.
pub fn cluster_table(cfg: &ClusterConfig, rows: &[Value]) -> String {
    let mut s = format!(
        "keel bench cluster: 3 nodes on 127.0.0.1, fsync on, {} closed-loop clients placing orders ({}), {} s per scenario\n",
        cfg.clients,
        if cfg.leader_only { "all to the leader" } else { "spread over all nodes" },
        cfg.duration_s
    );
    s.push_str(&format!(
        "{:<22} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
        "scenario", "orders/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<22} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
            r["scenario"].as_str().unwrap_or(""),
            r["orders_per_s"].as_f64().unwrap_or(0.0),
            r["errors"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p90_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
        ));
    }
    s
}
