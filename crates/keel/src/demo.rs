//! `keel demo`: the main job. Starts a local cluster, seeds a catalogue and
//! customers, runs concurrent shoppers (with a flash sale on one hot SKU
//! that has more buyers than stock), SIGKILLs the leader midway, keeps
//! shopping through the failover, restarts the killed node, waits until it
//! has caught up, and checks that nothing acknowledged was lost, nothing was
//! oversold, money is conserved and every replica is identical. Then it
//! backs the cluster up, destroys it, restores a new cluster from the
//! backup and checks that again (`demo/backup.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use keel_client::{AttemptError, Client, ClientError};
use keel_domain::{Order, OrderStatus, Product};
use keel_harness::LocalCluster;
use serde_json::json;

use keel_harness::{clear_dir, local_spec, READY_TIMEOUT};

mod backup;

/// Customers seeded.
const CUSTOMERS: u64 = 50;
/// Ordinary products seeded.
const PRODUCTS: u64 = 20;
/// Units of each ordinary product.
const PRODUCT_STOCK: u64 = 100_000;
/// Money each customer starts with (minor units).
const CUSTOMER_FUNDS: i64 = 100_000_000;
/// The hot SKU of the flash sale.
const FLASH_SKU: &str = "FLASH-1";
/// How long the restarted node gets to catch up and converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent reads when verifying acknowledged orders.
const VERIFY_CONCURRENCY: usize = 32;

/// Arguments of `keel demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds of shopping.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(4..=3600))]
    duration_s: u64,
    /// Concurrent shoppers over the whole catalogue.
    #[arg(long, default_value_t = 32)]
    shoppers: u64,
    /// Concurrent buyers in the flash sale.
    #[arg(long, default_value_t = 16)]
    flash_buyers: u64,
    /// Units of the flash-sale SKU (fewer than its buyers will want).
    #[arg(long, default_value_t = 200)]
    flash_stock: u64,
    /// Port of node 1.
    #[arg(long, default_value_t = 7201)]
    base_port: u16,
    /// Where the demo cluster keeps its data (wiped at start).
    #[arg(long, default_value = "keel-data/demo")]
    data_dir: PathBuf,
    /// Port of the gateway the shoppers go through.
    #[arg(long, default_value_t = 7200)]
    gateway_port: u16,
    /// Shoppers talk to the nodes directly (with the client's own
    /// failover) instead of through the gateway.
    #[arg(long)]
    direct: bool,
}

#[derive(Default)]
struct Tally {
    /// Acknowledged orders and whether their payment was acknowledged.
    acked: Mutex<BTreeMap<u64, (Order, bool)>>,
    out_of_stock: AtomicU64,
    errors: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    /// Nanoseconds since start of the latest success, and the longest gap.
    last_ok_ns: AtomicU64,
    max_gap_ns: AtomicU64,
    /// When (ns since start) the longest gap ended.
    max_gap_end_ns: AtomicU64,
}

impl Tally {
    fn ok(&self, t0: Instant) {
        let now = t0.elapsed().as_nanos() as u64;
        let prev = self.last_ok_ns.swap(now, Ordering::Relaxed);
        if now > prev && self.max_gap_ns.fetch_max(now - prev, Ordering::Relaxed) < now - prev {
            // Racy against a concurrent longer gap only by nanoseconds of
            // ordering; the end time is for the report, not for a check.
            self.max_gap_end_ns.store(now, Ordering::Relaxed);
        }
    }
    fn err(&self, e: &ClientError) {
        if e.kind() == Some("out_of_stock") {
            self.out_of_stock.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        let k = e.kind().unwrap_or("transport").to_owned();
        if let Ok(mut m) = self.error_kinds.lock() {
            *m.entry(k).or_insert(0) += 1;
        }
    }
}

/// A tiny deterministic PRNG for choosing what shoppers buy.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn seed(c: &Client, flash_stock: u64) -> anyhow::Result<()> {
    c.open_account("shop", "merchant", "EUR", "seed-acct-shop")
        .await?;
    c.open_account("world", "external", "EUR", "seed-acct-world")
        .await?;
    for i in 1..=PRODUCTS {
        let sku = format!("SKU-{i:04}");
        c.upsert_product(
            &sku,
            &format!("Product {i}"),
            100 * i as i64,
            "EUR",
            &format!("seed-p-{sku}"),
        )
        .await?;
        c.restock(&sku, PRODUCT_STOCK, &format!("seed-r-{sku}"))
            .await?;
    }
    c.upsert_product(FLASH_SKU, "Flash sale item", 999, "EUR", "seed-p-flash")
        .await?;
    c.restock(FLASH_SKU, flash_stock, "seed-r-flash").await?;
    for i in 1..=CUSTOMERS {
        let id = format!("cust-{i:03}");
        c.open_account(&id, "customer", "EUR", &format!("seed-a-{id}"))
            .await?;
        c.deposit(&id, CUSTOMER_FUNDS, &format!("seed-d-{id}"))
            .await?;
    }
    Ok(())
}

/// How shoppers reach the cluster.
#[derive(Clone)]
enum Route {
    /// One attempt per request through the gateway at this address: any
    /// error is one the gateway let through to its client.
    Gateway(String),
    /// The client's own failover over every node.
    Direct,
}

/// One write through `route`.
async fn post(
    c: &Client,
    route: &Route,
    path: &str,
    body: &serde_json::Value,
    key: &str,
) -> Result<keel_client::Reply, ClientError> {
    match route {
        Route::Direct => c.post(path, body, key).await,
        Route::Gateway(gw) => c
            .call_at(gw, keel_client::method_post(), path, Some(body), Some(key))
            .await
            .map_err(|e| match e {
                AttemptError::Problem(p) => p,
                AttemptError::NotSent(m) | AttemptError::Lost(m) => ClientError::Unavailable(m),
                AttemptError::Invalid(m) => ClientError::Invalid(m),
            }),
    }
}

async fn shopper(
    c: Arc<Client>,
    route: Route,
    task: u64,
    flash: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    t0: Instant,
) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x1000_0000_01B3));
    let customer = format!("cust-{:03}", task % CUSTOMERS + 1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let lines = if flash {
            vec![(FLASH_SKU.to_owned(), 1)]
        } else {
            vec![(
                format!("SKU-{:04}", rng.next(PRODUCTS) + 1),
                rng.next(3) + 1,
            )]
        };
        let key = format!("demo-{task}-{n}");
        let body = json!({
            "customer": customer,
            "lines": lines.iter().map(|(s, q)| json!({"sku": s, "qty": q})).collect::<Vec<_>>(),
        });
        let placed = post(&c, &route, "/v1/orders", &body, &format!("{key}-place"))
            .await
            .and_then(|r| r.json::<Order>());
        let order = match placed {
            Ok(o) => {
                tally.ok(t0);
                o
            }
            Err(e) => {
                tally.err(&e);
                if flash && e.kind() == Some("out_of_stock") {
                    // Sold out: a real buyer would leave; keep the load on
                    // the cluster with a slower retry.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        if let Ok(mut m) = tally.acked.lock() {
            m.insert(order.id.0, (order.clone(), false));
        }
        let path = format!("/v1/orders/{}/pay", order.id.0);
        match post(&c, &route, &path, &json!({}), &format!("{key}-pay")).await {
            Ok(_) => {
                tally.ok(t0);
                if let Ok(mut m) = tally.acked.lock() {
                    m.insert(order.id.0, (order, true));
                }
            }
            Err(e) => tally.err(&e),
        }
    }
}

/// One line of the demo's verdict.
pub(crate) struct Check {
    pub(crate) name: String,
    pub(crate) ok: bool,
    pub(crate) detail: String,
}

/// Runs the demo; the error says which check failed.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<()> {
    clear_dir(&args.data_dir)?;
    let exe = std::env::current_exe().context("locating the keel binary")?;
    let spec = local_spec(
        exe,
        3,
        args.base_port,
        args.data_dir.clone(),
        "keel-admin-dev",
    );
    println!(
        "Starting a 3-node Keel cluster on 127.0.0.1:{}..{} (data in {})",
        args.base_port,
        args.base_port + 2,
        args.data_dir.display()
    );
    let mut cluster = LocalCluster::start(spec)?;
    let first_leader = cluster
        .wait_ready(READY_TIMEOUT)
        .await
        .context("cluster did not become ready")?;
    println!("Leader elected: node {first_leader}");
    let route = if args.direct {
        Route::Direct
    } else {
        let gw = cluster.start_gateway_ready(args.gateway_port).await?;
        println!("Gateway up on http://{gw}: shoppers go through it, one attempt per request");
        Route::Gateway(gw)
    };
    let admin = Arc::new(match &route {
        Route::Gateway(gw) => Client::new(vec![gw.clone()], Some("keel-admin-dev".into())),
        Route::Direct => cluster.admin_client(),
    });
    seed(&admin, args.flash_stock)
        .await
        .context("seeding the catalogue")?;
    println!(
        "Seeded {PRODUCTS} products x {PRODUCT_STOCK} units, flash sale {FLASH_SKU} x {} units, {CUSTOMERS} customers",
        args.flash_stock
    );

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..args.shoppers + args.flash_buyers {
        let flash = t >= args.shoppers;
        tasks.push(tokio::spawn(shopper(
            admin.clone(),
            route.clone(),
            t,
            flash,
            stop.clone(),
            tally.clone(),
            t0,
        )));
    }
    let total = Duration::from_secs(args.duration_s);
    let kill_at = total.mul_f64(0.4);
    let restart_at = total.mul_f64(0.7);
    let bar = ProgressBar::new(args.duration_s);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut killed: Option<u64> = None;
    let mut restarted = false;
    let mut kill_time = None;
    while t0.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let el = t0.elapsed();
        if killed.is_none() && el >= kill_at {
            let leader = cluster.leader().await.unwrap_or(first_leader);
            cluster.kill(leader)?;
            kill_time = Some(el);
            killed = Some(leader);
            bar.println(format!(
                "[{:>5.1}s] SIGKILL leader node {leader}",
                el.as_secs_f64()
            ));
        }
        if let (Some(k), false) = (killed, restarted) {
            if el >= restart_at {
                cluster.restart(k)?;
                restarted = true;
                bar.println(format!("[{:>5.1}s] restarted node {k}", el.as_secs_f64()));
            }
        }
        let acked = tally.acked.lock().map(|m| m.len()).unwrap_or(0);
        bar.set_position(el.as_secs().min(args.duration_s));
        bar.set_message(format!("{acked} orders acknowledged"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let shop_time = t0.elapsed();
    bar.finish_and_clear();
    let new_leader = cluster.leader().await;
    println!(
        "Shopping done in {:.1}s; new leader after the kill: {}",
        shop_time.as_secs_f64(),
        new_leader.map_or("none".into(), |l| format!("node {l}"))
    );

    println!("Waiting for every replica (including the restarted one) to converge...");
    let ids = cluster.ids();
    let converged = cluster.wait_converged(&ids, CONVERGE_TIMEOUT).await;

    let mut checks = Vec::new();
    let acked = tally.acked.lock().map(|m| m.clone()).unwrap_or_default();
    let paid_acked = acked.values().filter(|(_, p)| *p).count();

    // 1. Every acknowledged order is there, with the acknowledged content.
    let mut missing = Vec::new();
    let ids_to_check: Vec<u64> = acked.keys().copied().collect();
    for chunk in ids_to_check.chunks(VERIFY_CONCURRENCY) {
        let futs = chunk.iter().map(|id| {
            let admin = admin.clone();
            async move { (*id, admin.order(*id).await) }
        });
        for (id, got) in futures::future::join_all(futs).await {
            let Some((want, paid)) = acked.get(&id) else {
                continue;
            };
            match got {
                Ok(o)
                    if o.lines == want.lines
                        && o.total == want.total
                        && o.customer == want.customer
                        && (!paid || o.status == OrderStatus::Paid) => {}
                Ok(o) => missing.push(format!("order {id} differs: {:?}", o.status)),
                Err(e) => missing.push(format!("order {id}: {e}")),
            }
        }
    }
    checks.push(Check {
        name: "acknowledged orders found afterwards".into(),
        ok: missing.is_empty(),
        detail: format!(
            "{} of {} ({} paid)",
            acked.len() - missing.len(),
            acked.len(),
            paid_acked
        ),
    });

    // 2. Never oversold.
    let flash: Product = admin
        .get(&format!("/v1/products/{FLASH_SKU}"))
        .await?
        .json()?;
    let summary = admin.summary().await?;
    let never_oversold = flash.stock.ledger.sold + flash.stock.reserved <= args.flash_stock
        && summary.units_sold <= summary.units_restocked + summary.units_returned;
    checks.push(Check {
        name: "units sold within stock (never oversold)".into(),
        ok: never_oversold,
        detail: format!(
            "flash sale: {} sold + {} reserved of {} units; all SKUs: {} sold of {} stocked",
            flash.stock.ledger.sold,
            flash.stock.reserved,
            args.flash_stock,
            summary.units_sold,
            summary.units_restocked
        ),
    });

    // 3. Money conserved.
    let sums_zero = summary.balance_sum_by_currency.values().all(|s| *s == 0);
    let sales = summary
        .sales_by_currency
        .get(&keel_domain::Currency::new("EUR")?)
        .copied()
        .unwrap_or(0);
    let shop: keel_domain::Account = admin.get("/v1/accounts/shop").await?.json()?;
    checks.push(Check {
        name: "money conserved".into(),
        ok: sums_zero && i128::from(shop.balance.0) == sales,
        detail: format!(
            "balances sum to {}; merchant holds {} = sales {}",
            summary
                .balance_sum_by_currency
                .iter()
                .map(|(c, s)| format!("{s} {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            shop.balance,
            sales
        ),
    });

    // 4. Replicas identical.
    checks.push(Check {
        name: "replica digests equal".into(),
        ok: converged.is_ok(),
        detail: match &converged {
            Ok((idx, d)) => format!(
                "{} nodes at index {idx}, digest {}…",
                ids.len(),
                &d[..16.min(d.len())]
            ),
            Err(e) => e.to_string(),
        },
    });

    let secs = shop_time.as_secs_f64();
    let gap = Duration::from_nanos(tally.max_gap_ns.load(Ordering::Relaxed));
    println!();
    println!("Keel demo report");
    println!("  orders acknowledged      {}", acked.len());
    println!("  payments acknowledged    {paid_acked}");
    println!(
        "  refused: out of stock    {}",
        tally.out_of_stock.load(Ordering::Relaxed)
    );
    println!(
        "  client-visible errors    {} {:?}{}",
        tally.errors.load(Ordering::Relaxed),
        tally
            .error_kinds
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        match &route {
            Route::Gateway(_) => " (through the gateway, no client retries)",
            Route::Direct => " (direct, after the client's own retries)",
        }
    );
    if let Route::Gateway(gw) = &route {
        if let Some(retries) = gateway_retries(&admin, gw).await {
            println!("  retried by the gateway   {retries}");
        }
    }
    println!(
        "  throughput               {:.0} orders/s, {:.0} writes/s",
        acked.len() as f64 / secs,
        (acked.len() + paid_acked) as f64 / secs
    );
    if let (Some(k), Some(t)) = (killed, kill_time) {
        println!(
            "  leader killed            node {k} at {:.1}s",
            t.as_secs_f64()
        );
    }
    let gap_end = Duration::from_nanos(tally.max_gap_end_ns.load(Ordering::Relaxed));
    let when = match kill_time {
        Some(k) if gap_end >= k => format!(
            " (ended {:.2}s after the kill)",
            (gap_end - k).as_secs_f64()
        ),
        _ => format!(" (ended at {:.1}s)", gap_end.as_secs_f64()),
    };
    println!("  longest gap w/o success  {} ms{when}", gap.as_millis());

    // 5-7. Back up, destroy, restore into a new cluster.
    match &converged {
        Ok((idx, d)) => {
            let acked_ids: Vec<u64> = acked.keys().copied().collect();
            let backed = backup::backup_destroy_restore(
                cluster,
                args.base_port,
                &args.data_dir,
                *idx,
                d,
                &acked_ids,
            )
            .await;
            match backed {
                Ok(more) => checks.extend(more),
                Err(e) => checks.push(Check {
                    name: "backup, destroy, restore".into(),
                    ok: false,
                    detail: format!("{e:#}"),
                }),
            }
        }
        Err(_) => cluster.stop_all(),
    }
    println!();
    let mut failed = 0;
    for c in &checks {
        println!(
            "  [{}] {}: {}",
            if c.ok { " ok " } else { "FAIL" },
            c.name,
            c.detail
        );
        if !c.ok {
            failed += 1;
        }
    }
    for m in missing.iter().take(10) {
        println!("      {m}");
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} check(s) failed; node logs are in {}",
            args.data_dir.display()
        );
    }
    println!("\nAll checks passed.");
    Ok(())
}

/// Retries the gateway made, summed over reasons, from its `/metrics`.
async fn gateway_retries(c: &Client, gw: &str) -> Option<u64> {
    let r = c
        .call_at(gw, keel_client::method_get(), "/metrics", None, None)
        .await
        .ok()?;
    let text = r.body.as_str()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("keel_gateway_retries_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}
