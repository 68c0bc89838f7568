//! `keel bench compare`: Keel against its anchors, one system at a time on
//! the same loopback, disk and cores: a Keel 3-node cluster, an etcd
//! 3-member cluster (a put per order) and PostgreSQL with a synchronous
//! standby (one stock-checked transaction per order). Per system: the
//! uniform order workload at several client counts, the flash sale on one
//! SKU (etcd has no stock rule, so it has no row), and a failover round
//! that kills the leader/primary under load. Everything started is stopped
//! at the end of its round, and on an error or Ctrl-C by the guards' drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_harness::{ClusterSpec, LocalCluster};
use serde::Serialize;

use crate::driver::{drive, progress_bar, Measurement};
use crate::etcd::{ensure_etcd, EtcdCluster, EtcdPuts};
use crate::keel_target::{KeelLoad, KeelTarget};
use crate::machine::Machine;
use crate::postgres::{ensure_postgres, PgOrders, PgPair, PgSkus};
use crate::report::Report;
use crate::seed::{seed, Catalogue};
use crate::target::Target;
use crate::workload::{LoadSpec, Workload};
use crate::BenchError;

/// Longest the Keel cluster gets to elect a leader and answer.
pub const KEEL_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin token of the benchmark cluster.
pub const ADMIN_TOKEN: &str = "keel-admin-dev";
/// What PostgreSQL's failover row says, since nothing promotes the standby.
pub const PG_FAILOVER_NOTE: &str =
    "no automatic failover: writes stop until an operator promotes the standby";

/// What `keel bench compare` runs.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// The `keel` binary the Keel nodes run.
    pub keel_bin: PathBuf,
    /// Every system's data goes under here (wiped per system).
    pub data_dir: PathBuf,
    /// Client counts of the order workload.
    pub clients: Vec<u64>,
    /// Measured seconds per point (after a tenth of it of warm-up).
    pub duration_s: u64,
    /// SKUs orders spread over.
    pub skus: u64,
    /// Units of the flash-sale SKU.
    pub flash_stock: u64,
    /// Clients of the flash sale.
    pub flash_clients: u64,
    /// Clients of the failover round.
    pub failover_clients: u64,
    /// Node 1's port; nodes 2 and 3 follow.
    pub keel_port: u16,
    /// etcd member 0's client port; the others follow. Peer ports start
    /// 10 above.
    pub etcd_port: u16,
    /// The PostgreSQL primary's port; the standby uses the next.
    pub pg_port: u16,
    /// Run the etcd anchor.
    pub etcd: bool,
    /// Run the PostgreSQL anchor.
    pub postgres: bool,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

/// The flash sale against one system.
#[derive(Clone, Debug, Serialize)]
pub struct FlashRow {
    /// The run.
    pub report: Report,
    /// Units on sale.
    pub stock: u64,
    /// Units the system says it sold (reserved, for Keel), read after.
    pub sold: Option<u64>,
}

/// A leader/primary kill under load.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverRow {
    /// The system.
    pub system: String,
    /// What was killed.
    pub killed: String,
    /// The run (errors by type, longest gap).
    pub report: Report,
    /// When the longest gap ended, ms after the kill.
    pub gap_ended_after_kill_ms: f64,
    /// Whether writes succeeded again before the round ended.
    pub recovered: bool,
    /// What the figures mean for this system.
    pub note: String,
}

/// A system that was not measured, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// The system.
    pub system: String,
    /// Why.
    pub reason: String,
}

/// Everything `keel bench compare` measured.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Where it ran.
    pub machine: Machine,
    /// Versions of the anchors.
    pub versions: BTreeMap<String, String>,
    /// Measured seconds per point.
    pub duration_s: u64,
    /// SKUs of the order workload.
    pub skus: u64,
    /// The order workload, every system and client count.
    pub orders: Vec<Report>,
    /// The flash sale.
    pub flash: Vec<FlashRow>,
    /// The failover rounds.
    pub failover: Vec<FailoverRow>,
    /// Systems not measured.
    pub skipped: Vec<Skipped>,
    /// Seconds each system took to install (when needed), start and seed.
    pub setup_s: BTreeMap<String, f64>,
    /// Wall time of the whole comparison, s.
    pub wall_s: f64,
}

/// A unique tag for keys of this run (ms since the epoch).
pub fn run_tag() -> String {
    keel_protocol::wall_ms().to_string()
}

/// Runs `target` for `spec`; the row of `system`.
async fn point<T: Target>(
    system: &str,
    workload: &str,
    target: T,
    spec: &LoadSpec,
    progress: bool,
) -> Result<(Report, Measurement), BenchError> {
    let pb = progress_bar(
        &format!("{system} {workload} x{}", spec.clients),
        spec.warmup + spec.duration,
        progress,
    );
    let m = drive(Arc::new(target), spec, &pb).await?;
    Ok((
        Report::new(system, workload, spec.clients, &spec.mode_label(), &m),
        m,
    ))
}

/// `drive` with `kill` run halfway through the measured window; the row
/// and when the longest gap ended after the kill.
async fn under_kill<T: Target>(
    system: &str,
    target: T,
    spec: &LoadSpec,
    progress: bool,
    kill: impl std::future::Future<Output = ()>,
) -> Result<(Report, f64, bool), BenchError> {
    let killer = async {
        tokio::time::sleep(spec.warmup + spec.duration / 2).await;
        let at = Instant::now();
        kill.await;
        at
    };
    let (m, killed_at) = tokio::join!(point(system, "failover", target, spec, progress), killer);
    let (report, m) = m?;
    let gap_end = m.started + Duration::from_micros(m.gap.longest_end_us);
    let after_ms = gap_end.saturating_duration_since(killed_at).as_secs_f64() * 1_000.0;
    // The gap tracker closes an open gap at the end of measurement.
    let recovered = m.gap.longest_end_us < spec.duration.as_micros() as u64;
    Ok((report, after_ms, recovered))
}

struct Rounds {
    orders: Vec<Report>,
    flash: Option<FlashRow>,
    failover: FailoverRow,
}

fn specs(cfg: &CompareConfig) -> Result<(Vec<LoadSpec>, LoadSpec, LoadSpec), BenchError> {
    let orders = cfg
        .clients
        .iter()
        .map(|n| LoadSpec::new(*n, cfg.duration_s, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        orders,
        LoadSpec::new(cfg.flash_clients, cfg.duration_s, None)?,
        LoadSpec::new(cfg.failover_clients, cfg.duration_s, None)?,
    ))
}

async fn keel_rounds(cfg: &CompareConfig, tag: &str) -> Result<Rounds, BenchError> {
    let (order_specs, flash_spec, failover_spec) = specs(cfg)?;
    let dir = cfg.data_dir.join("keel");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mut spec = ClusterSpec::new(cfg.keel_bin.clone(), dir, 3);
    spec.base_port = cfg.keel_port;
    spec.admin_token = ADMIN_TOKEN.to_owned();
    let mut cluster = LocalCluster::start(spec)?;
    cluster.wait_ready(KEEL_READY_TIMEOUT).await?;
    let customers = cfg
        .clients
        .iter()
        .copied()
        .chain([cfg.flash_clients, cfg.failover_clients])
        .max()
        .unwrap_or(1);
    let flash_sku = format!("FLASH-{tag}");
    seed(
        &cluster.admin_client(),
        &Catalogue {
            skus: cfg.skus,
            customers,
            flash: Some((flash_sku.clone(), cfg.flash_stock)),
        },
    )
    .await?;
    let endpoints = cluster.endpoints();
    let target = |workload, clients, t: &str| {
        KeelTarget::new(
            endpoints.clone(),
            Some(ADMIN_TOKEN.to_owned()),
            clients,
            KeelLoad {
                workload,
                skus: cfg.skus,
                customers,
                flash_sku: flash_sku.clone(),
                batch_size: 1,
                tag: format!("{tag}-{t}"),
            },
        )
    };
    let mut orders = Vec::new();
    for s in &order_specs {
        let t = target(Workload::Uniform, s.clients, &format!("u{}", s.clients));
        orders.push(point("keel", "orders", t, s, cfg.progress).await?.0);
    }
    let t = target(Workload::FlashSale, flash_spec.clients, "flash");
    let (flash, _) = point("keel", "flash-sale", t, &flash_spec, cfg.progress).await?;
    let product = cluster
        .admin_client()
        .get(&format!("/v1/products/{flash_sku}"))
        .await?;
    let sold = product.body["stock"]["reserved"].as_u64();
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| BenchError::setup("keel", "no leader before the failover round"))?;
    let t = target(Workload::Uniform, failover_spec.clients, "failover");
    let kill = async {
        let _ = cluster.kill_shared(leader);
    };
    let (report, after, recovered) =
        under_kill("keel", t, &failover_spec, cfg.progress, kill).await?;
    cluster.stop_all();
    Ok(Rounds {
        orders,
        flash: Some(FlashRow {
            report: flash,
            stock: cfg.flash_stock,
            sold,
        }),
        failover: FailoverRow {
            system: "keel".into(),
            killed: format!("leader (node {leader}), SIGKILL"),
            report,
            gap_ended_after_kill_ms: after,
            recovered,
            note: "clients move to the next node after a refused connection; followers hold writes through the election".into(),
        },
    })
}

async fn etcd_rounds(
    cfg: &CompareConfig,
    tag: &str,
    versions: &mut BTreeMap<String, String>,
) -> Result<Rounds, BenchError> {
    let (order_specs, _, failover_spec) = specs(cfg)?;
    let bin = ensure_etcd()?;
    versions.insert("etcd".into(), crate::procs::version_line(&bin));
    let mut cluster = EtcdCluster::start(
        &bin,
        &cfg.data_dir.join("etcd"),
        cfg.etcd_port,
        cfg.etcd_port + 10,
    )
    .await?;
    let mut orders = Vec::new();
    for s in &order_specs {
        let t = EtcdPuts::new(
            cluster.endpoints(),
            cfg.skus,
            &format!("{tag}-u{}", s.clients),
        )?;
        orders.push(point("etcd", "orders", t, s, cfg.progress).await?.0);
    }
    let leader = cluster
        .leader()
        .await
        .ok_or_else(|| BenchError::setup("etcd", "no leader before the failover round"))?;
    let t = EtcdPuts::new(cluster.endpoints(), cfg.skus, &format!("{tag}-failover"))?;
    let kill = async {
        cluster.kill(leader);
    };
    let (report, after, recovered) =
        under_kill("etcd", t, &failover_spec, cfg.progress, kill).await?;
    cluster.stop();
    Ok(Rounds {
        orders,
        flash: None,
        failover: FailoverRow {
            system: "etcd".into(),
            killed: format!("leader (member m{leader}, found via /v3/maintenance/status), SIGKILL"),
            report,
            gap_ended_after_kill_ms: after,
            recovered,
            note: "clients move to the next member after an error; etcd defaults (heartbeat 100 ms, election 1,000 ms)".into(),
        },
    })
}

async fn pg_rounds(
    cfg: &CompareConfig,
    versions: &mut BTreeMap<String, String>,
) -> Result<Rounds, BenchError> {
    let (order_specs, flash_spec, failover_spec) = specs(cfg)?;
    let bin_dir = ensure_postgres()?;
    let mut pair = PgPair::start(
        &bin_dir,
        &cfg.data_dir.join("postgres"),
        cfg.pg_port,
        cfg.pg_port + 1,
        cfg.skus,
        cfg.flash_stock,
    )
    .await?;
    versions.insert("postgres".into(), pair.version.clone());
    let port = pair.primary_port;
    let mut orders = Vec::new();
    for s in &order_specs {
        let t = PgOrders::new(port, PgSkus::Uniform(cfg.skus));
        orders.push(point("postgres", "orders", t, s, cfg.progress).await?.0);
    }
    let t = PgOrders::new(port, PgSkus::Flash);
    let (flash, _) = point("postgres", "flash-sale", t, &flash_spec, cfg.progress).await?;
    let sold = pair
        .flash_left()
        .await
        .and_then(|left| cfg.flash_stock.checked_sub(u64::try_from(left).ok()?));
    let t = PgOrders::new(port, PgSkus::Uniform(cfg.skus));
    let kill = async {
        pair.kill_primary();
    };
    let (report, after, recovered) =
        under_kill("postgres", t, &failover_spec, cfg.progress, kill).await?;
    pair.stop();
    Ok(Rounds {
        orders,
        flash: Some(FlashRow {
            report: flash,
            stock: cfg.flash_stock,
            sold,
        }),
        failover: FailoverRow {
            system: "postgres".into(),
            killed: "primary (postmaster and backends), SIGKILL".into(),
            report,
            gap_ended_after_kill_ms: after,
            recovered,
            note: PG_FAILOVER_NOTE.into(),
        },
    })
}

/// Runs the comparison.
pub async fn compare(cfg: &CompareConfig) -> Result<CompareReport, BenchError> {
    let start = Instant::now();
    let tag = run_tag();
    let machine = Machine::detect();
    let mut versions = BTreeMap::new();
    let mut out = CompareReport {
        machine,
        versions: BTreeMap::new(),
        duration_s: cfg.duration_s,
        skus: cfg.skus,
        orders: Vec::new(),
        flash: Vec::new(),
        failover: Vec::new(),
        skipped: Vec::new(),
        setup_s: BTreeMap::new(),
        wall_s: 0.0,
    };
    let t = Instant::now();
    let keel = keel_rounds(cfg, &tag).await?;
    out.setup_s
        .insert("keel (whole round)".into(), t.elapsed().as_secs_f64());
    absorb(&mut out, keel);
    if cfg.etcd {
        let t = Instant::now();
        match etcd_rounds(cfg, &tag, &mut versions).await {
            Ok(r) => absorb(&mut out, r),
            Err(e) => skip(&mut out, "etcd", e),
        }
        out.setup_s
            .insert("etcd (whole round)".into(), t.elapsed().as_secs_f64());
    }
    if cfg.postgres {
        let t = Instant::now();
        match pg_rounds(cfg, &mut versions).await {
            Ok(r) => absorb(&mut out, r),
            Err(e) => skip(&mut out, "postgres", e),
        }
        out.setup_s
            .insert("postgres (whole round)".into(), t.elapsed().as_secs_f64());
    }
    out.versions = versions;
    out.wall_s = start.elapsed().as_secs_f64();
    Ok(out)
}

fn absorb(out: &mut CompareReport, r: Rounds) {
    out.orders.extend(r.orders);
    out.flash.extend(r.flash);
    out.failover.push(r.failover);
}

fn skip(out: &mut CompareReport, system: &str, e: BenchError) {
    eprintln!("keel bench compare: {system} skipped: {e}");
    out.skipped.push(Skipped {
        system: system.into(),
        reason: e.to_string(),
    });
}
