//! `keel bench apply`: throughput of the pure state machine on in-memory
//! tables, for batches of place + pay. This is the ceiling the replicated
//! path is measured against; it is a benchmark, not a test.

use std::time::Instant;

use keel_domain::{
    apply_batch, AccountId, AccountKind, Batch, Command, Currency, Envelope, LineRequest,
    MemTables, Minor, OrderId, Principal, ProductName, RequestId, Sku,
};
use serde_json::json;

/// Arguments of `keel bench apply`.
#[derive(clap::Args)]
pub struct Args {
    /// Orders placed and paid per scenario.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    orders: u64,
    /// Commands per batch (one Raft entry).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(2..=1_000))]
    batch: u64,
    /// SKUs of the uniform scenario.
    #[arg(long, default_value_t = 10_000)]
    skus: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn env(n: &mut u64, principal: Principal, command: Command) -> anyhow::Result<Envelope> {
    *n += 1;
    Ok(Envelope {
        request_id: RequestId::new(format!("b{n}"))?,
        principal,
        command,
    })
}

fn setup(skus: u64, orders: u64, n: &mut u64) -> anyhow::Result<MemTables> {
    let mut t = MemTables::new();
    let eur = Currency::new("EUR")?;
    let mut cmds = vec![
        env(
            n,
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("shop")?,
                kind: AccountKind::Merchant,
                currency: eur,
            },
        )?,
        env(
            n,
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("world")?,
                kind: AccountKind::External,
                currency: eur,
            },
        )?,
        env(
            n,
            Principal::Admin,
            Command::OpenAccount {
                id: AccountId::new("buyer")?,
                kind: AccountKind::Customer,
                currency: eur,
            },
        )?,
        env(
            n,
            Principal::Admin,
            Command::Deposit {
                account: AccountId::new("buyer")?,
                amount: Minor(i64::MAX / 4),
            },
        )?,
    ];
    for i in 0..skus {
        let sku = Sku::new(format!("SKU-{i}"))?;
        cmds.push(env(
            n,
            Principal::Admin,
            Command::UpsertProduct {
                sku: sku.clone(),
                name: ProductName::new("p")?,
                price: Minor(100),
                currency: eur,
                active: true,
            },
        )?);
        cmds.push(env(
            n,
            Principal::Admin,
            Command::Restock {
                sku,
                qty: orders + 1,
            },
        )?);
    }
    for chunk in cmds.chunks(1_000) {
        apply_batch(
            &mut t,
            &Batch {
                leader_time_ms: 1,
                commands: chunk.to_vec(),
            },
        )?;
    }
    Ok(t)
}

/// Runs one scenario and returns (commands, seconds).
fn scenario(skus: u64, orders: u64, batch: u64) -> anyhow::Result<(u64, f64)> {
    let mut n = 0;
    let mut t = setup(skus, orders, &mut n)?;
    let buyer = AccountId::new("buyer")?;
    let half = batch / 2;
    let mut next_order = 1u64;
    let mut placed = 0u64;
    let mut elapsed = 0f64;
    let mut commands = 0u64;
    let mut time_ms = 10;
    while placed < orders {
        // A batch of `half` placements, then a batch paying them (their ids
        // are known: ids are dense and assigned in order).
        let k = half.min(orders - placed);
        let mut place = Vec::with_capacity(k as usize);
        for i in 0..k {
            let sku = Sku::new(format!("SKU-{}", (placed + i) % skus))?;
            place.push(env(
                &mut n,
                Principal::Admin,
                Command::PlaceOrder {
                    customer: buyer.clone(),
                    lines: vec![LineRequest { sku, qty: 1 }],
                    ttl_seconds: None,
                },
            )?);
        }
        let pay = (0..k)
            .map(|i| {
                env(
                    &mut n,
                    Principal::Admin,
                    Command::PayOrder {
                        order: OrderId(next_order + i),
                    },
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        time_ms += 1;
        let start = Instant::now();
        apply_batch(
            &mut t,
            &Batch {
                leader_time_ms: time_ms,
                commands: place,
            },
        )?;
        apply_batch(
            &mut t,
            &Batch {
                leader_time_ms: time_ms,
                commands: pay,
            },
        )?;
        elapsed += start.elapsed().as_secs_f64();
        commands += 2 * k;
        next_order += k;
        placed += k;
    }
    let s = keel_domain::query::summary(&t)?;
    anyhow::ensure!(
        s.units_sold == orders,
        "benchmark sold {} of {orders}",
        s.units_sold
    );
    Ok((commands, elapsed))
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (uc, us) = scenario(args.skus, args.orders, args.batch)?;
    let (hc, hs) = scenario(1, args.orders, args.batch)?;
    let row = |c: u64, s: f64| json!({"commands": c, "seconds": s, "commands_per_s": c as f64 / s, "orders_per_s": (c / 2) as f64 / s});
    if args.json {
        println!(
            "{}",
            json!({"batch": args.batch, "orders": args.orders, "uniform": row(uc, us), "hot": row(hc, hs)})
        );
        return Ok(());
    }
    println!(
        "keel bench apply: {} orders placed+paid, batches of {} commands, in-memory tables",
        args.orders, args.batch
    );
    println!("{:<28} {:>14} {:>14}", "scenario", "commands/s", "orders/s");
    println!(
        "{:<28} {:>14.0} {:>14.0}",
        format!("uniform ({} SKUs)", args.skus),
        uc as f64 / us,
        (uc / 2) as f64 / us
    );
    println!(
        "{:<28} {:>14.0} {:>14.0}",
        "hot (1 SKU)",
        hc as f64 / hs,
        (hc / 2) as f64 / hs
    );
    Ok(())
}
