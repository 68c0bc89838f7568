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

use anyhow::{ensure, Context};
use keel_domain::command::{BATCH_COMMANDS_MAX, DEPOSIT_MAX};
use keel_domain::{
    apply_batch, check_invariants, AccountId, AccountKind, Applied, Batch, Command, Currency,
    Envelope, LineRequest, MemTables, Minor, OrderId, Principal, ProductName, RequestId, Sku,
    Summary, Violation,
};
use keel_store::{StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use serde_json::json;

/// Unit price of every product in the benchmark (minor units).
const PRICE: i64 = 100;
/// Leader time of the first batch (ms). Each batch advances it by 1 ms, far
/// less than the reservation lifetime, so nothing expires during a run.
const T0_MS: u64 = 1_700_000_000_000;

/// Arguments of `keel bench apply`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Orders placed and paid per scenario and run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    orders: u64,
    /// Commands per batch (one Raft entry): half placements, half payments.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(2..=BATCH_COMMANDS_MAX as u64))]
    batch: u64,
    /// SKUs of the uniform scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Customers placing the orders, round robin.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    customers: u64,
    /// Timed runs per scenario; the median run is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Where the state machine keeps its tables.
    #[arg(long, value_enum, default_value_t = TablesKind::Memory)]
    tables: TablesKind,
    /// With `--tables redb`: the directory of the scratch database (wiped
    /// before each run and removed after).
    #[arg(long, default_value = "keel-data/bench-apply")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where the state machine keeps its tables.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TablesKind {
    /// `keel_domain::MemTables`: no disk.
    Memory,
    /// A replica's state-machine store on redb.
    Redb,
}

impl TablesKind {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redb => "redb",
        }
    }
}

/// The tables a run applies to.
trait RunTables {
    /// Applies one batch (one Raft entry) and returns its results.
    fn apply(&mut self, batch: Batch) -> anyhow::Result<Vec<Applied>>;
    /// The domain summary now.
    fn summary(&self) -> anyhow::Result<Summary>;
    /// What `check_invariants` finds now.
    fn violations(&self) -> anyhow::Result<Vec<Violation>>;
}

impl RunTables for MemTables {
    fn apply(&mut self, batch: Batch) -> anyhow::Result<Vec<Applied>> {
        Ok(apply_batch(self, &batch)?)
    }
    fn summary(&self) -> anyhow::Result<Summary> {
        Ok(keel_domain::query::summary(self)?)
    }
    fn violations(&self) -> anyhow::Result<Vec<Violation>> {
        Ok(check_invariants(self)?)
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
    fn open(dir: &Path) -> anyhow::Result<Self> {
        crate::clear_dir(dir)?;
        let sm = StateMachineStore::open(&dir.join("state.redb"), &dir.join("snapshots"))?;
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
        let _ = crate::clear_dir(&self.dir);
    }
}

impl RunTables for RedbRun {
    fn apply(&mut self, batch: Batch) -> anyhow::Result<Vec<Applied>> {
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next_index),
            payload: EntryPayload::Normal(batch),
        };
        self.next_index += 1;
        let mut out = self.rt.block_on(self.sm.apply([entry]))?;
        out.pop().context("one result list per entry")
    }
    fn summary(&self) -> anyhow::Result<Summary> {
        Ok(keel_domain::query::summary(&self.sm.reader()?)?)
    }
    fn violations(&self) -> anyhow::Result<Vec<Violation>> {
        Ok(check_invariants(&self.sm.reader()?)?)
    }
}

/// One scenario's shape.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    skus: u64,
}

/// What one timed run measured.
struct Run {
    commands: u64,
    orders: u64,
    apply: Duration,
    /// Apply time of every batch, sorted ascending.
    batch_times: Vec<Duration>,
}

impl Run {
    fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.apply.as_secs_f64()
    }
    fn orders_per_s(&self) -> f64 {
        self.orders as f64 / self.apply.as_secs_f64()
    }
    /// The `q`-quantile (0..=1) of per-batch apply time, in µs.
    fn batch_us(&self, q: f64) -> f64 {
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
    fn env(&mut self, principal: Principal, command: Command) -> anyhow::Result<Envelope> {
        self.0 += 1;
        Ok(Envelope {
            request_id: RequestId::new(format!("bench-{}", self.0))?,
            principal,
            command,
        })
    }
}

fn sku_of(i: u64) -> anyhow::Result<Sku> {
    Ok(Sku::new(format!("SKU-{i}"))?)
}

fn customer_of(i: u64) -> anyhow::Result<AccountId> {
    Ok(AccountId::new(format!("buyer-{i}"))?)
}

/// Accounts, products, stock and deposits for one run; untimed. Every
/// setup command must succeed.
fn setup(s: Scenario, args: &Args, ids: &mut Ids) -> anyhow::Result<Box<dyn RunTables>> {
    let eur = Currency::new("EUR")?;
    let mut cmds = vec![
        ids.env(
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("shop")?,
                kind: AccountKind::Merchant,
                currency: eur,
            },
        )?,
        ids.env(
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("world")?,
                kind: AccountKind::External,
                currency: eur,
            },
        )?,
    ];
    // Enough money for every order a customer places, in one deposit.
    let per_customer = args.orders.div_ceil(args.customers);
    let deposit = i64::try_from(per_customer)?
        .checked_mul(PRICE)
        .filter(|d| *d <= DEPOSIT_MAX)
        .context("orders per customer exceed one deposit; use more --customers")?;
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
                name: ProductName::new(format!("product {i}"))?,
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
        TablesKind::Memory => Box::new(MemTables::new()),
        TablesKind::Redb => Box::new(RedbRun::open(&args.data_dir)?),
    };
    for chunk in cmds.chunks(BATCH_COMMANDS_MAX) {
        let out = t.apply(Batch {
            leader_time_ms: T0_MS,
            commands: chunk.to_vec(),
        })?;
        for (env, a) in chunk.iter().zip(out) {
            if let Err(e) = a.result {
                anyhow::bail!("setup command {} refused: {e}", env.command.name());
            }
        }
    }
    Ok(t)
}

/// One timed run of a scenario.
fn run_once(s: Scenario, args: &Args) -> anyhow::Result<Run> {
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
                Principal::Customer(customer.clone()),
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
                Principal::Customer(customer),
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
                anyhow::bail!("timed command {name} refused: {e}");
            }
        }
        run.commands += 2 * k;
        run.orders += k;
        next_order += k;
        placed += k;
    }
    run.batch_times.sort_unstable();
    let summary = t.summary()?;
    ensure!(
        summary.units_sold == args.orders,
        "benchmark sold {} of {} units",
        summary.units_sold,
        args.orders
    );
    let violations = t.violations()?;
    ensure!(violations.is_empty(), "invariants broken: {violations:?}");
    Ok(run)
}

/// All runs of a scenario; returns the median run by total apply time.
fn measure(s: Scenario, args: &Args) -> anyhow::Result<Run> {
    let mut runs = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        runs.push(run_once(s, args)?);
    }
    runs.sort_by_key(|r| r.apply);
    let mid = runs.len() / 2;
    runs.into_iter()
        .nth(mid)
        .context("at least one run is required")
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let scenarios = [
        Scenario {
            name: "uniform",
            skus: args.skus,
        },
        Scenario {
            name: "hot",
            skus: 1,
        },
    ];
    let mut results = Vec::with_capacity(scenarios.len());
    for s in scenarios {
        results.push((s, measure(s, &args)?));
    }
    if args.json {
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
        println!(
            "{}",
            json!({
                "bench": "apply",
                "tables": args.tables.name(),
                "orders": args.orders,
                "batch_commands": args.batch,
                "customers": args.customers,
                "runs": args.runs,
                "scenarios": rows,
            })
        );
        return Ok(());
    }
    println!(
        "keel bench apply: {} orders placed and paid per run, {} commands per batch \
         ({} place + {} pay), {} customers, {} tables, median of {} runs",
        args.orders,
        args.batch / 2 * 2,
        args.batch / 2,
        args.batch / 2,
        args.customers,
        args.tables.name(),
        args.runs
    );
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>14}",
        "scenario", "commands/s", "orders/s", "batch p50 µs", "batch p99 µs"
    );
    for (s, r) in &results {
        let label = if s.skus == 1 {
            format!("{} (1 SKU)", s.name)
        } else {
            format!("{} ({} SKUs)", s.name, s.skus)
        };
        println!(
            "{:<22} {:>12.0} {:>12.0} {:>14.0} {:>14.0}",
            label,
            r.commands_per_s(),
            r.orders_per_s(),
            r.batch_us(0.50),
            r.batch_us(0.99)
        );
    }
    Ok(())
}
