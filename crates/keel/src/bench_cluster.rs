//! `keel bench cluster`: closed-loop load on a local three-node cluster with
//! fsync on: N concurrent HTTP clients placing orders, spread over all
//! nodes, for a fixed time. Reports throughput and latency percentiles for a
//! uniform catalogue and for one hot SKU. A benchmark, not a test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use keel_client::Client;
use keel_harness::LocalCluster;
use serde_json::{json, Value};

use crate::up::{local_spec, READY_TIMEOUT};

/// Commands per `/v1/batch` request while seeding the catalogue.
const SEED_CHUNK: usize = 1_000;
/// Stock of every SKU: far more than any run can order.
const SKU_STOCK: u64 = 1_000_000_000;
/// Highest latency the histogram records (60 s, in µs).
pub(crate) const LATENCY_MAX_US: u64 = 60_000_000;

/// Arguments of `keel bench cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients (closed loop: each waits for its answer).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of load per scenario (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: u64,
    /// SKUs of the uniform scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Port of node 1 of the benchmark cluster.
    #[arg(long, default_value_t = 7301)]
    base_port: u16,
    /// Where the benchmark cluster keeps its data (wiped at start).
    #[arg(long, default_value = "keel-data/bench")]
    data_dir: PathBuf,
    /// Send every request to the leader (as a leader-aware balancer does)
    /// instead of spreading them over all nodes (followers forward).
    #[arg(long)]
    leader_only: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Seeds accounts `shop` and `world`, customers `c0..`, SKUs `S0..` and
/// `HOT`, each with [`SKU_STOCK`] units, through `/v1/batch`.
pub(crate) async fn seed(admin: &Client, skus: u64, customers: u64) -> anyhow::Result<()> {
    let mut cmds: Vec<Value> = vec![
        json!({"open_account": {"id": "shop", "kind": "merchant", "currency": "EUR"}}),
        json!({"open_account": {"id": "world", "kind": "external", "currency": "EUR"}}),
        json!({"upsert_product": {"sku": "HOT", "name": "hot", "price": 100, "currency": "EUR"}}),
        json!({"restock": {"sku": "HOT", "qty": SKU_STOCK}}),
    ];
    for c in 0..customers {
        cmds.push(
            json!({"open_account": {"id": format!("c{c}"), "kind": "customer", "currency": "EUR"}}),
        );
    }
    for s in 0..skus {
        cmds.push(json!({"upsert_product": {"sku": format!("S{s}"), "name": "p", "price": 100, "currency": "EUR"}}));
        cmds.push(json!({"restock": {"sku": format!("S{s}"), "qty": SKU_STOCK}}));
    }
    for (i, chunk) in cmds.chunks(SEED_CHUNK).enumerate() {
        admin
            .batch(chunk, &format!("bench-seed-{i}"))
            .await
            .map_err(|e| anyhow::anyhow!("seeding chunk {i}: {e}"))?;
    }
    Ok(())
}

/// What one load phase measured.
pub(crate) struct Outcome {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) hist: Histogram<u64>,
}

/// `n` closed-loop clients placing one-line orders for `duration` (after a
/// tenth of it as warm-up), spread over `clients`.
pub(crate) async fn load(
    clients: &[Arc<Client>],
    n: u64,
    duration: Duration,
    sku_of: impl Fn(u64, u64) -> String + Send + Sync + 'static,
    tag: &str,
) -> anyhow::Result<Outcome> {
    let sku_of = Arc::new(sku_of);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_max(
        LATENCY_MAX_US,
        3,
    )?));
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
            let mut local = Histogram::<u64>::new_with_max(LATENCY_MAX_US, 3).ok();
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
                            let _ = h.record(us.min(LATENCY_MAX_US));
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
    tokio::time::sleep(duration / 10).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let hist = hist
        .lock()
        .map(|h| h.clone())
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?;
    Ok(Outcome {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        hist,
    })
}

pub(crate) fn row(name: &str, o: &Outcome) -> Value {
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
pub(crate) fn clients_per_node(endpoints: &[String]) -> Vec<Arc<Client>> {
    (0..endpoints.len())
        .map(|i| {
            let mut eps = endpoints.to_vec();
            eps.rotate_left(i);
            Arc::new(Client::new(eps, Some("keel-admin-dev".into())))
        })
        .collect()
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    crate::clear_dir(&args.data_dir)?;
    let spec = local_spec(3, args.base_port, args.data_dir.clone(), "keel-admin-dev")?;
    let mut cluster = LocalCluster::start(spec)?;
    cluster
        .wait_ready(READY_TIMEOUT)
        .await
        .context("cluster did not become ready")?;
    let admin = cluster.admin_client();
    seed(&admin, args.skus, args.clients)
        .await
        .context("seeding")?;
    // One client per node, each preferring its node: load enters everywhere
    // and followers forward writes to the leader, as behind a balancer.
    let endpoints = if args.leader_only {
        let leader = cluster.leader().await.context("no leader")?;
        vec![cluster.addr(leader)?]
    } else {
        cluster.endpoints()
    };
    let clients = clients_per_node(&endpoints);
    let d = Duration::from_secs(args.duration_s);
    let skus = args.skus;
    let uniform = load(
        &clients,
        args.clients,
        d,
        move |t, i| format!("S{}", (t * 7919 + i * 104_729) % skus),
        "u",
    )
    .await?;
    let hot = load(&clients, args.clients, d, |_, _| "HOT".to_owned(), "h").await?;
    cluster.stop_all();
    let rows = [
        row(&format!("uniform ({} SKUs)", args.skus), &uniform),
        row("hot (1 SKU)", &hot),
    ];
    if args.json {
        println!(
            "{}",
            json!({"clients": args.clients, "duration_s": args.duration_s, "nodes": 3, "leader_only": args.leader_only, "results": rows})
        );
        return Ok(());
    }
    println!(
        "keel bench cluster: 3 nodes on 127.0.0.1, fsync on, {} closed-loop clients placing orders ({}), {} s per scenario",
        args.clients,
        if args.leader_only { "all to the leader" } else { "spread over all nodes" },
        args.duration_s
    );
    println!(
        "{:<22} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "orders/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for r in &rows {
        println!(
            "{:<22} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            r["scenario"].as_str().unwrap_or(""),
            r["orders_per_s"].as_f64().unwrap_or(0.0),
            r["errors"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p90_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
