//! What TLS costs: the same cluster with TLS on every link (mutual TLS
//! between nodes, the client and the gateway dialling TLS) and with none,
//! measured in alternating rounds on one machine, pooled connections
//! throughout (every client keeps its connections alive, as the gateway
//! and the nodes do).
//!
//! Each round starts a fresh cluster of each kind in turn (the order
//! alternates between rounds so neither always runs on a warmer machine)
//! and measures orders/s and latency with closed-loop clients spread over
//! the nodes, then reads/s through a gateway in front of them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use serde_json::{json, Value};

use crate::cluster::{load, measure_window, seed_catalogue, uniform_sku};
use crate::compare::ADMIN_TOKEN;
use crate::local::start_cluster_with;
use crate::BenchError;

/// What `keel bench tls` runs.
#[derive(Clone, Debug)]
pub struct TlsBenchConfig {
    /// The `keel` binary the nodes and gateway run.
    pub keel_bin: PathBuf,
    /// Concurrent closed-loop clients.
    pub clients: u64,
    /// Seconds of load per phase (after a warm-up of a tenth of it).
    pub duration_s: u64,
    /// Rounds; each measures both kinds once.
    pub rounds: u64,
    /// SKUs orders are spread over.
    pub skus: u64,
    /// Port of node 1.
    pub base_port: u16,
    /// Where the clusters keep their data (wiped at start).
    pub data_dir: PathBuf,
}

/// One cluster's figures in one round.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Whether TLS was on.
    pub tls: bool,
    /// Orders acknowledged per second.
    pub orders_per_s: f64,
    /// Median order latency, ms.
    pub p50_ms: f64,
    /// 99th-percentile order latency, ms.
    pub p99_ms: f64,
    /// Reads per second through the gateway.
    pub gateway_reads_per_s: f64,
    /// Requests that failed, orders and reads together.
    pub errors: u64,
}

/// Runs the rounds; returns every measurement in the order taken.
pub async fn tls(cfg: &TlsBenchConfig) -> Result<Vec<Measured>, BenchError> {
    let mut out = Vec::new();
    for round in 0..cfg.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for on in order {
            out.push(measure(cfg, on).await?);
        }
    }
    Ok(out)
}

async fn measure(cfg: &TlsBenchConfig, tls: bool) -> Result<Measured, BenchError> {
    let dir = cfg.data_dir.join(if tls { "tls-on" } else { "tls-off" });
    let mut cluster = start_cluster_with(&cfg.keel_bin, dir, cfg.base_port, tls).await?;
    let admin = cluster.admin_client();
    seed_catalogue(&admin, cfg.skus, cfg.clients).await?;
    let endpoints = cluster.endpoints();
    let clients: Vec<Arc<Client>> = (0..endpoints.len())
        .map(|i| {
            let mut eps = endpoints.clone();
            eps.rotate_left(i);
            Arc::new(cluster.client(eps, Some(ADMIN_TOKEN.into())))
        })
        .collect();
    let d = Duration::from_secs(cfg.duration_s);
    let skus = cfg.skus;
    let tag = if tls { "tls" } else { "plain" };
    let orders = load(
        &clients,
        cfg.clients,
        d,
        move |t, i| uniform_sku(t, i, skus),
        tag,
    )
    .await?;
    let gateway = cluster.start_gateway_ready(0).await?;
    let via = Arc::new(cluster.client(vec![gateway], Some(ADMIN_TOKEN.into())));
    let (reads, read_errors) = read_load(via, cfg.clients, d, cfg.skus).await;
    cluster.stop_all();
    let ms = |q: f64| orders.hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Measured {
        tls,
        orders_per_s: orders.ok as f64 / orders.seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        gateway_reads_per_s: reads,
        errors: orders.errors + read_errors,
    })
}

/// `n` closed-loop clients reading products (`consistency=local`, spread
/// over the nodes by the gateway) for `duration`; reads/s and errors.
async fn read_load(client: Arc<Client>, n: u64, duration: Duration, skus: u64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for t in 0..n {
        let (client, stop, measuring, ok, errors) = (
            client.clone(),
            stop.clone(),
            measuring.clone(),
            ok.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = format!("/v1/products/{}?consistency=local", uniform_sku(t, i, skus));
                let r = client.get(&path).await;
                if measuring.load(Ordering::Relaxed) {
                    let counter = if r.is_ok() { &ok } else { &errors };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let seconds = measure_window(duration, &measuring, &stop).await;
    for t in tasks {
        let _ = t.await;
    }
    (
        ok.load(Ordering::Relaxed) as f64 / seconds,
        errors.load(Ordering::Relaxed),
    )
}

/// The median of `xs` (0 for none).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Each kind's medians over the rounds, and TLS on against off.
pub fn summary(cfg: &TlsBenchConfig, runs: &[Measured]) -> Value {
    let kind = |on: bool| {
        let of =
            |f: fn(&Measured) -> f64| median(runs.iter().filter(|m| m.tls == on).map(f).collect());
        json!({
            "orders_per_s": of(|m| m.orders_per_s),
            "p50_ms": of(|m| m.p50_ms),
            "p99_ms": of(|m| m.p99_ms),
            "gateway_reads_per_s": of(|m| m.gateway_reads_per_s),
            "errors": runs.iter().filter(|m| m.tls == on).map(|m| m.errors).sum::<u64>(),
        })
    };
    let (off, on) = (kind(false), kind(true));
    let ratio = |k: &str| {
        let (a, b) = (
            on[k].as_f64().unwrap_or(0.0),
            off[k].as_f64().unwrap_or(0.0),
        );
        if b > 0.0 {
            a / b
        } else {
            0.0
        }
    };
    json!({
        "clients": cfg.clients, "duration_s": cfg.duration_s, "rounds": cfg.rounds,
        "tls_off": off, "tls_on": on,
        "on_over_off": {
            "orders_per_s": ratio("orders_per_s"),
            "p99_ms": ratio("p99_ms"),
            "gateway_reads_per_s": ratio("gateway_reads_per_s"),
        },
        "runs": runs.iter().map(|m| json!({
            "tls": m.tls, "orders_per_s": m.orders_per_s, "p50_ms": m.p50_ms,
            "p99_ms": m.p99_ms, "gateway_reads_per_s": m.gateway_reads_per_s, "errors": m.errors,
        })).collect::<Vec<_>>(),
    })
}

/// The table of `keel bench tls`.
pub fn table(s: &Value) -> String {
    let mut t = format!(
        "keel bench tls: 3 nodes on 127.0.0.1, fsync on, {} closed-loop clients, {} s per phase, {} alternating rounds (medians)\n",
        s["clients"], s["duration_s"], s["rounds"]
    );
    t.push_str(&format!(
        "{:<10} {:>10} {:>9} {:>9} {:>14} {:>7}\n",
        "", "orders/s", "p50 ms", "p99 ms", "gw reads/s", "errors"
    ));
    for (name, k) in [("TLS off", "tls_off"), ("TLS on", "tls_on")] {
        let v = &s[k];
        t.push_str(&format!(
            "{:<10} {:>10.0} {:>9.2} {:>9.2} {:>14.0} {:>7}\n",
            name,
            v["orders_per_s"].as_f64().unwrap_or(0.0),
            v["p50_ms"].as_f64().unwrap_or(0.0),
            v["p99_ms"].as_f64().unwrap_or(0.0),
            v["gateway_reads_per_s"].as_f64().unwrap_or(0.0),
            v["errors"],
        ));
    }
    let r = &s["on_over_off"];
    t.push_str(&format!(
        "TLS on / off: orders/s {:.3}x, p99 {:.3}x, gateway reads/s {:.3}x\n",
        r["orders_per_s"].as_f64().unwrap_or(0.0),
        r["p99_ms"].as_f64().unwrap_or(0.0),
        r["gateway_reads_per_s"].as_f64().unwrap_or(0.0),
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
