//! `keel bench apply`: throughput of the state machine for batches of
//! place and pay. On in-memory tables (the default) there is no disk, no network and
//! no consensus: this is the ceiling the replicated path is measured
//! against. With `--tables redb` every batch goes through a replica's real
//! state-machine store (`keel_store::StateMachineStore`: one redb write
//! transaction per entry, committed as a node commits it) on a file, still
//! without Raft or network: what one replica pays to apply. It is a
//! benchmark (figures), not a test; it does check that every timed command
//! succeeded and that the invariants hold afterwards, so a figure can never
//! come from a run that was quietly refusing its orders.
//!
//! Two scenarios: "uniform" spreads the orders over many SKUs, "hot" puts
//! every order on one SKU (the contended product of a flash sale). Each batch
//! is one Raft entry's worth: half placements, then the payments of exactly
//! those orders (order ids are dense, so they are known in advance). Only
//! `apply_batch` is timed; setup and building the commands are not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_domain::command::{BATCH_COMMANDS_MAX, DEPOSIT_MAX};
use keel_domain::{
    apply_batch, check_invariants, AccountId, AccountKind, Applied, Batch, Command, Currency,
    Envelope, LineRequest, MemTables, Minor, OrderId, Principal, ProductName, RequestId, Sku,
    Summary, Violation,
};
use keel_harness::clear_dir;
use keel_store::{StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use serde_json::{json, Value};

use crate::BenchError;

/// Unit price of every product in the benchmark (minor units).
const PRICE: i64 = 100;
/// Leader time of the first batch (ms). Each batch advances it by 1 ms, far
/// less than the reservation lifetime, so nothing expires during a run.
const T0_MS: u64 = 1_700_000_000_000;

/// Where the state machine keeps its tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// `keel_domain::MemTables`: no disk.
    Memory,
    /// A replica's state-machine store on redb.
    Redb,
}

impl Tables {
    /// The name the figures are labelled with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redb => "redb",
        }
    }
}

/// What `keel bench apply` runs.
#[derive(Clone, Debug)]
pub struct ApplyConfig {
    /// Orders placed and paid per scenario and run.
    pub orders: u64,
    /// Commands per batch (one Raft entry): half placements, half payments.
    pub batch: u64,
    /// SKUs of the uniform scenario.
    pub skus: u64,
    /// Customers placing the orders, round robin.
    pub customers: u64,
    /// Timed runs per scenario; the median run is reported.
    pub runs: u32,
    /// Where the state machine keeps its tables.
    pub tables: Tables,
    /// With [`Tables::Redb`]: the directory of the scratch database (wiped
    /// before each run and removed after).
    pub data_dir: PathBuf,
}

/// A refusal of the domain, its tables or the replica's store, as a
/// [`BenchError::Domain`].
fn domain(e: impl std::fmt::Display) -> BenchError {
    BenchError::Domain(e.to_string())
}

/// The tables a run applies to.
trait RunTables {
    /// Applies one batch (one Raft entry) and returns its results.
    fn apply(&mut self, batch: Batch) -> Result<Vec<Applied>, BenchError>;
    /// The domain summary now.
    fn summary(&self) -> Result<Summary, BenchError>;
    /// What `check_invariants` finds now.
    fn violations(&self) -> Result<Vec<Violation>, BenchError>;
}

impl RunTables for MemTables {
    fn apply(&mut self, batch: Batch) -> Result<Vec<Applied>, BenchError> {
        apply_batch(self, &batch).map_err(domain)
    }
    fn summary(&self) -> Result<Summary, BenchError> {
        keel_domain::query::summary(self).map_err(domain)
    }
    fn violations(&self) -> Result<Vec<Violation>, BenchError> {
        check_invariants(self).map_err(domain)
    }
}

/// A replica's state-machine store, fed entries as openraft feeds them.
struct RedbRun {
    sm: StateMachineStore,
    rt: tokio::runtime::Runtime,
    dir: PathBuf,
    next_index: u64,
}

impl RedbRun {
    fn open(dir: &Path) -> Result<Self, BenchError> {
        clear_dir(dir)?;
        let sm = StateMachineStore::open(&dir.join("state.redb"), &dir.join("snapshots"))
            .map_err(domain)?;
        // The store hands each apply to a blocking thread, as on a node.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            sm,
            rt,
            dir: dir.to_path_buf(),
            next_index: 1,
        })
    }
}

impl Drop for RedbRun {
    fn drop(&mut self) {
        let _ = clear_dir(&self.dir);
    }
}

impl RunTables for RedbRun {
    fn apply(&mut self, batch: Batch) -> Result<Vec<Applied>, BenchError> {
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next_index),
            payload: EntryPayload::Normal(batch),
        };
        self.next_index += 1;
        let mut out = self.rt.block_on(self.sm.apply([entry])).map_err(domain)?;
        out.pop()
            .ok_or_else(|| BenchError::Check("no result list for the entry".into()))
    }
    fn summary(&self) -> Result<Summary, BenchError> {
        keel_domain::query::summary(&self.sm.reader().map_err(domain)?).map_err(domain)
    }
    fn violations(&self) -> Result<Vec<Violation>, BenchError> {
        check_invariants(&self.sm.reader().map_err(domain)?).map_err(domain)
    }
}

/// One scenario's shape.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// "uniform" or "hot".
    pub name: &'static str,
    /// SKUs the orders spread over.
    pub skus: u64,
}

/// What one timed run measured.
#[derive(Clone, Debug)]
pub struct Run {
    /// Commands applied (placements and payments).
    pub commands: u64,
    /// Orders placed and paid.
    pub orders: u64,
    /// Time spent in `apply_batch` alone.
    pub apply: Duration,
    /// Apply time of every batch, sorted ascending.
    pub batch_times: Vec<Duration>,
}

impl Run {
    /// Commands applied per second of apply time.
    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.apply.as_secs_f64()
    }
    /// Orders placed and paid per second of apply time.
    pub fn orders_per_s(&self) -> f64 {
        self.orders as f64 / self.apply.as_secs_f64()
    }
    /// The `q`-quantile (0..=1) of per-batch apply time, in µs.
    pub fn batch_us(&self, q: f64) -> f64 {
        let n = self.batch_times.len();
        if n == 0 {
            return 0.0;
        }
        // Nearest rank: q * n rounded up, as a 0-based index.
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.batch_times[rank].as_secs_f64() * 1e6
    }
}

/// Builds envelopes with fresh request ids.
struct Ids(u64);

impl Ids {
    fn env(&mut self, principal: Principal, command: Command) -> Result<Envelope, BenchError> {
        self.0 += 1;
        Ok(Envelope {
            request_id: RequestId::new(format!("bench-{}", self.0)).map_err(domain)?,
            principal,
            origin: None,
            command,
        })
    }
}

fn sku_of(i: u64) -> Result<Sku, BenchError> {
    Sku::new(format!("SKU-{i}")).map_err(domain)
}

fn customer_of(i: u64) -> Result<AccountId, BenchError> {
    AccountId::new(format!("buyer-{i}")).map_err(domain)
}

/// Accounts, products, stock and deposits for one run; untimed. Every
/// setup command must succeed.
fn setup(s: Scenario, args: &ApplyConfig, ids: &mut Ids) -> Result<Box<dyn RunTables>, BenchError> {
    let eur = Currency::new("EUR").map_err(domain)?;
    let mut cmds = vec![
        ids.env(
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("shop").map_err(domain)?,
                kind: AccountKind::Merchant,
                currency: eur,
            },
        )?,
        ids.env(
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("world").map_err(domain)?,
                kind: AccountKind::External,
                currency: eur,
            },
        )?,
    ];
    // Enough money for every order a customer places, in one deposit.
    let per_customer = args.orders.div_ceil(args.customers);
    let deposit = i64::try_from(per_customer)
        .ok()
        .and_then(|n| n.checked_mul(PRICE))
        .filter(|d| *d <= DEPOSIT_MAX)
        .ok_or_else(|| {
            BenchError::Arg("orders per customer exceed one deposit; use more --customers".into())
        })?;
    for c in 0..args.customers {
        cmds.push(ids.env(
            Principal::Admin,
            Command::OpenAccount {
                id: customer_of(c)?,
                kind: AccountKind::Customer,
                currency: eur,
            },
        )?);
        cmds.push(ids.env(
            Principal::Admin,
            Command::Deposit {
                account: customer_of(c)?,
                amount: Minor(deposit),
            },
        )?);
    }
    // Enough stock for every order on its SKU (round robin).
    let per_sku = args.orders.div_ceil(s.skus);
    for i in 0..s.skus {
        cmds.push(ids.env(
            Principal::Admin,
            Command::UpsertProduct {
                sku: sku_of(i)?,
                name: ProductName::new(format!("product {i}")).map_err(domain)?,
                price: Minor(PRICE),
                currency: eur,
                active: true,
            },
        )?);
        cmds.push(ids.env(
            Principal::Admin,
            Command::Restock {
                sku: sku_of(i)?,
                qty: per_sku,
            },
        )?);
    }
    let mut t: Box<dyn RunTables> = match args.tables {
        Tables::Memory => Box::new(MemTables::new()),
        Tables::Redb => Box::new(RedbRun::open(&args.data_dir)?),
    };
    for chunk in cmds.chunks(BATCH_COMMANDS_MAX) {
        let out = t.apply(Batch {
            leader_time_ms: T0_MS,
            commands: chunk.to_vec(),
        })?;
        for (env, a) in chunk.iter().zip(out) {
            if let Err(e) = a.result {
                return Err(BenchError::Check(format!(
                    "setup command {} refused: {e}",
                    env.command.name()
                )));
            }
        }
    }
    Ok(t)
}

/// One timed run of a scenario.
fn run_once(s: Scenario, args: &ApplyConfig) -> Result<Run, BenchError> {
    let mut ids = Ids(0);
    let mut t = setup(s, args, &mut ids)?;
    let mut next_order = t.summary()?.next_order_id;
    let half = args.batch / 2;
    let mut placed = 0u64;
    let mut time_ms = T0_MS;
    let mut run = Run {
        commands: 0,
        orders: 0,
        apply: Duration::ZERO,
        batch_times: Vec::new(),
    };
    while placed < args.orders {
        let k = half.min(args.orders - placed);
        let mut commands = Vec::with_capacity(2 * k as usize);
        for i in 0..k {
            let n = placed + i;
            let customer = customer_of(n % args.customers)?;
            commands.push(ids.env(
                Principal::customer(customer.clone()),
                Command::PlaceOrder {
                    customer,
                    lines: vec![LineRequest {
                        sku: sku_of(n % s.skus)?,
                        qty: 1,
                    }],
                    ttl_seconds: None,
                },
            )?);
        }
        for i in 0..k {
            let customer = customer_of((placed + i) % args.customers)?;
            commands.push(ids.env(
                Principal::customer(customer),
                Command::PayOrder {
                    order: OrderId(next_order + i),
                },
            )?);
        }
        time_ms += 1;
        let batch = Batch {
            leader_time_ms: time_ms,
            commands,
        };
        let names: Vec<&'static str> = batch.commands.iter().map(|e| e.command.name()).collect();
        let start = Instant::now();
        let out = t.apply(batch)?;
        let took = start.elapsed();
        run.apply += took;
        run.batch_times.push(took);
        for (name, a) in names.iter().zip(&out) {
            if let Err(e) = &a.result {
                return Err(BenchError::Check(format!(
                    "timed command {name} refused: {e}"
                )));
            }
        }
        run.commands += 2 * k;
        run.orders += k;
        next_order += k;
        placed += k;
    }
    run.batch_times.sort_unstable();
    let summary = t.summary()?;
    if summary.units_sold != args.orders {
        return Err(BenchError::Check(format!(
            "benchmark sold {} of {} units",
            summary.units_sold, args.orders
        )));
    }
    let violations = t.violations()?;
    if !violations.is_empty() {
        return Err(BenchError::Check(format!(
            "invariants broken: {violations:?}"
        )));
    }
    Ok(run)
}

/// All runs of a scenario; returns the median run by total apply time.
fn measure(s: Scenario, args: &ApplyConfig) -> Result<Run, BenchError> {
    let mut runs = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        runs.push(run_once(s, args)?);
    }
    runs.sort_by_key(|r| r.apply);
    let mid = runs.len() / 2;
    runs.into_iter()
        .nth(mid)
        .ok_or_else(|| BenchError::Arg("at least one run is required".into()))
}

/// Runs the benchmark: the uniform scenario, then the hot one, each
/// [`ApplyConfig::runs`] times; returns each scenario's median run.
pub fn apply(cfg: &ApplyConfig) -> Result<Vec<(Scenario, Run)>, BenchError> {
    let scenarios = [
        Scenario {
            name: "uniform",
            skus: cfg.skus,
        },
        Scenario {
            name: "hot",
            skus: 1,
        },
    ];
    let mut results = Vec::with_capacity(scenarios.len());
    for s in scenarios {
        results.push((s, measure(s, cfg)?));
    }
    Ok(results)
}

/// The `--json` object of `keel bench apply`.
pub fn apply_json(cfg: &ApplyConfig, results: &[(Scenario, Run)]) -> Value {
    let rows: Vec<_> = results
        .iter()
        .map(|(s, r)| {
            json!({
                "scenario": s.name,
                "skus": s.skus,
                "commands": r.commands,
                "orders": r.orders,
                "apply_seconds": r.apply.as_secs_f64(),
                "commands_per_s": r.commands_per_s(),
                "orders_per_s": r.orders_per_s(),
                "batch_us_p50": r.batch_us(0.50),
                "batch_us_p99": r.batch_us(0.99),
            })
        })
        .collect();
    json!({
        "bench": "apply",
        "tables": cfg.tables.name(),
        "orders": cfg.orders,
        "batch_commands": cfg.batch,
        "customers": cfg.customers,
        "runs": cfg.runs,
        "scenarios": rows,
    })
}

/// The table of `keel bench apply`: a line saying what ran, a header and
/// one line per scenario.
pub fn apply_table(cfg: &ApplyConfig, results: &[(Scenario, Run)]) -> String {
    let mut s = format!(
        "keel bench apply: {} orders placed and paid per run, {} commands per batch \
         ({} place + {} pay), {} customers, {} tables, median of {} runs\n",
        cfg.orders,
        cfg.batch / 2 * 2,
        cfg.batch / 2,
        cfg.batch / 2,
        cfg.customers,
        cfg.tables.name(),
        cfg.runs
    );
    s.push_str(&format!(
        "{:<22} {:>12} {:>12} {:>14} {:>14}\n",
        "scenario", "commands/s", "orders/s", "batch p50 µs", "batch p99 µs"
    ));
    for (sc, r) in results {
        let label = if sc.skus == 1 {
            format!("{} (1 SKU)", sc.name)
        } else {
            format!("{} ({} SKUs)", sc.name, sc.skus)
        };
        s.push_str(&format!(
            "{:<22} {:>12.0} {:>12.0} {:>14.0} {:>14.0}\n",
            label,
            r.commands_per_s(),
            r.orders_per_s(),
            r.batch_us(0.50),
            r.batch_us(0.99)
        ));
    }
    s
}
