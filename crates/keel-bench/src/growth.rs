//! `keel bench growth`: does the cost of an order grow with the data? A
//! Keel 3-node cluster is preloaded through `/v1/batch` to each size in
//! turn (10k, 100k, 1M orders by default), and at each size the uniform
//! order workload runs and every node's resident memory (`VmRSS`) and data
//! size are read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use keel_client::Client;
use keel_harness::{ClusterSpec, LocalCluster};
use serde::Serialize;
use serde_json::{json, Value};

use crate::compare::{run_tag, ADMIN_TOKEN, KEEL_READY_TIMEOUT};
use crate::driver::{drive, progress_bar};
use crate::keel_target::{spread_sku, KeelLoad, KeelTarget, ORDER_TTL_S};
use crate::procs::{dir_bytes, vm_rss_kib};
use crate::report::{cells, render, Report, CELL_NAMES};
use crate::seed::{customer, seed, sku, Catalogue, SEED_CHUNK};
use crate::workload::{LoadSpec, Workload};
use crate::BenchError;

/// `/v1/batch` requests in flight while preloading: enough to keep the
/// leader's batches full, few enough that each answers well within the
/// client's attempt timeout.
pub const PRELOAD_IN_FLIGHT: usize = 4;
/// Largest size accepted (100M orders): a typo should not fill the disk.
pub const SIZE_MAX: u64 = 100_000_000;

/// What `keel bench growth` runs.
#[derive(Clone, Debug)]
pub struct GrowthConfig {
    /// The `keel` binary the nodes run.
    pub keel_bin: PathBuf,
    /// The cluster's data directory (wiped first).
    pub data_dir: PathBuf,
    /// Orders in the store at each measurement, ascending.
    pub sizes: Vec<u64>,
    /// Clients and duration of each measurement.
    pub spec: LoadSpec,
    /// SKUs orders spread over.
    pub skus: u64,
    /// Node 1's port.
    pub keel_port: u16,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// The figures at one size.
#[derive(Clone, Debug, Serialize)]
pub struct GrowthRow {
    /// Orders in the store when the measurement started.
    pub orders: u64,
    /// Seconds the preload to this size took.
    pub preload_s: f64,
    /// Orders per second of that preload (batches of 1,000).
    pub preload_orders_per_s: f64,
    /// The measurement.
    pub report: Report,
    /// Resident memory of each node after the measurement, KiB.
    pub rss_kib: Vec<u64>,
    /// Bytes under the cluster's data directory after it.
    pub data_bytes: u64,
}

/// Checks the sizes: ascending, at least 1, at most [`SIZE_MAX`].
pub fn check_sizes(sizes: &[u64]) -> Result<(), BenchError> {
    if sizes.is_empty() {
        return Err(BenchError::Arg("no sizes given".into()));
    }
    if sizes.iter().any(|s| *s == 0 || *s > SIZE_MAX) {
        return Err(BenchError::Arg(format!("sizes must be 1 to {SIZE_MAX}")));
    }
    if sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BenchError::Arg("sizes must be ascending".into()));
    }
    Ok(())
}

/// Orders in the store, from the summary's counts by status.
async fn order_count(admin: &Client) -> Result<u64, BenchError> {
    let s = admin.get("/v1/summary").await?;
    Ok(s.body["orders_by_status"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()))
}

/// Places `n` orders through `/v1/batch`, [`SEED_CHUNK`] per request.
async fn preload(
    admin: &Arc<Client>,
    n: u64,
    skus: u64,
    customers: u64,
    tag: &str,
) -> Result<(), BenchError> {
    let chunks = n.div_ceil(SEED_CHUNK as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..chunks {
        if tasks.len() >= PRELOAD_IN_FLIGHT {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
        let size = (n - c * SEED_CHUNK as u64).min(SEED_CHUNK as u64);
        let cmds: Vec<Value> = (0..size)
            .map(|j| {
                let i = c * SEED_CHUNK as u64 + j;
                json!({"place_order": {
                    "customer": customer(i % customers),
                    "lines": [{"sku": sku(spread_sku(i, i, skus)), "qty": 1}],
                    "ttl_seconds": ORDER_TTL_S,
                }})
            })
            .collect();
        let (admin, key) = (admin.clone(), format!("growth-{tag}-{c}"));
        tasks.spawn(async move {
            match admin.batch(&cmds, &key).await {
                Ok(_) => Ok(()),
                Err(e) => Err(BenchError::setup("preload", format!("{key}: {e}"))),
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Runs the growth benchmark.
pub async fn growth(cfg: &GrowthConfig) -> Result<Vec<GrowthRow>, BenchError> {
    check_sizes(&cfg.sizes)?;
    if cfg.data_dir.exists() {
        std::fs::remove_dir_all(&cfg.data_dir)?;
    }
    let mut spec = ClusterSpec::new(cfg.keel_bin.clone(), cfg.data_dir.clone(), 3);
    spec.base_port = cfg.keel_port;
    spec.admin_token = ADMIN_TOKEN.to_owned();
    let mut cluster = LocalCluster::start(spec)?;
    cluster.wait_ready(KEEL_READY_TIMEOUT).await?;
    let admin = Arc::new(cluster.admin_client());
    let customers = cfg.spec.clients;
    seed(
        &admin,
        &Catalogue {
            skus: cfg.skus,
            customers,
            flash: None,
        },
    )
    .await?;
    let tag = run_tag();
    let mut rows = Vec::new();
    for (k, size) in cfg.sizes.iter().enumerate() {
        let have = order_count(&admin).await?;
        let t = Instant::now();
        let add = size.saturating_sub(have);
        eprintln!("keel bench growth: preloading {add} orders to reach {size}");
        preload(&admin, add, cfg.skus, customers, &format!("{tag}-{k}")).await?;
        let preload_s = t.elapsed().as_secs_f64();
        let orders = order_count(&admin).await?;
        let target = KeelTarget::new(
            cluster.endpoints(),
            Some(ADMIN_TOKEN.to_owned()),
            cfg.spec.clients,
            KeelLoad {
                workload: Workload::Uniform,
                skus: cfg.skus,
                customers,
                flash_sku: String::new(),
                batch_size: 1,
                tag: format!("{tag}-run{k}"),
            },
        );
        let pb = progress_bar(
            &format!("keel at {orders} orders"),
            cfg.spec.warmup + cfg.spec.duration,
            cfg.progress,
        );
        let m = drive(Arc::new(target), &cfg.spec, &pb).await?;
        let rss_kib = cluster
            .ids()
            .into_iter()
            .filter_map(|id| cluster.process_id(id).and_then(vm_rss_kib))
            .collect();
        rows.push(GrowthRow {
            orders,
            preload_s,
            preload_orders_per_s: if preload_s > 0.0 {
                add as f64 / preload_s
            } else {
                0.0
            },
            report: Report::new(
                "keel",
                "orders",
                cfg.spec.clients,
                &cfg.spec.mode_label(),
                &m,
            ),
            rss_kib,
            data_bytes: dir_bytes(&cfg.data_dir),
        });
    }
    cluster.stop_all();
    Ok(rows)
}

/// What `keel bench growth` prints: a line saying what was measured, then
/// [`growth_table`].
pub fn growth_text(cfg: &GrowthConfig, rows: &[GrowthRow]) -> String {
    format!(
        "keel bench growth: 3 nodes on 127.0.0.1 (fsync on), {} closed-loop clients placing orders for {} s at each size\n{}",
        cfg.spec.clients,
        cfg.spec.duration.as_secs(),
        growth_table(rows)
    )
}

/// The growth table.
pub fn growth_table(rows: &[GrowthRow]) -> String {
    let mut header = vec!["orders in store", "preload orders/s"];
    header.extend(CELL_NAMES);
    header.extend(["node RSS MiB", "data MiB"]);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|g| {
            let mut row = vec![
                g.orders.to_string(),
                format!("{:.0}", g.preload_orders_per_s),
            ];
            row.extend(cells(&g.report));
            row.push(
                g.rss_kib
                    .iter()
                    .map(|k| format!("{:.0}", *k as f64 / 1_024.0))
                    .collect::<Vec<_>>()
                    .join("/"),
            );
            row.push(format!("{:.0}", g.data_bytes as f64 / 1_048_576.0));
            row
        })
        .collect();
    render(&header, &body, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_ascend_and_be_positive() {
        assert!(check_sizes(&[10_000, 100_000]).is_ok());
        assert!(check_sizes(&[]).is_err());
        assert!(check_sizes(&[0]).is_err());
        assert!(check_sizes(&[100, 100]).is_err());
        assert!(check_sizes(&[SIZE_MAX + 1]).is_err());
    }
}
