//! The load: concurrent shoppers over the whole catalogue and flash-sale
//! buyers after one scarce SKU, each placing an order and paying for it,
//! again and again until told to stop. Every place and pay is recorded as a
//! `keel_chaos` [`Op`] through [`OpSender`], exactly as a chaos run records
//! its workload, so the run can be judged by keel-chaos's checkers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_chaos::nemesis::SplitMix64;
use keel_chaos::workload::{OpSender, Route, ERROR_PAUSE};
use keel_chaos::{History, Op, OpKind, OpResult, Outcome, HISTORY_OPS_MAX};
use keel_client::Client;
use keel_domain::{OrderId, RequestId, Sku};

use crate::seed::Catalogue;
use crate::DemoError;

/// Largest quantity of an ordinary order; a flash-sale order is for one.
pub const QTY_MAX: u64 = 3;
/// Seed of the shoppers' choices.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Where the shoppers buy: the cluster through a client and a route, the
/// catalogue, and the lifetime of their reservations.
pub struct Shop {
    /// The client every shopper (and the demo's own reads) use.
    pub client: Client,
    /// Through the gateway, one attempt per request, or straight to the
    /// nodes with the client's failover.
    pub route: Route,
    /// What is for sale, and to whom.
    pub catalogue: Catalogue,
    /// The reservation lifetime every order asks for: longer than the
    /// demo, since the checkers' models have no expiry.
    pub ttl_seconds: u32,
}

impl Shop {
    /// The shopper's next order: one ordinary product in 1 to [`QTY_MAX`]
    /// units, or one unit of the flash sale.
    fn pick(&self, flash: bool, rng: &mut SplitMix64) -> (Sku, u64) {
        let products = &self.catalogue.products;
        if flash || products.is_empty() {
            return (self.catalogue.flash.clone(), 1);
        }
        let sku = products[rng.below(products.len())].clone();
        (sku, rng.below(QTY_MAX as usize) as u64 + 1)
    }

    /// Retries the gateway made for the shoppers, summed over reasons, from
    /// its `/metrics`; `None` without a gateway or when it does not answer.
    pub async fn gateway_retries(&self) -> Option<u64> {
        let Route::Once(gateway) = &self.route else {
            return None;
        };
        let r = self
            .client
            .call_at(gateway, keel_client::method_get(), "/metrics", None, None)
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
}

/// Everything the shoppers saw, shared by all of them. Its lock guards one
/// push at a time, so a lock a panicking shopper held cannot be
/// half-changed and is used as it is: an op dropped for a poisoned lock
/// would weaken the checks without a word.
#[derive(Default)]
struct Record {
    ops: Mutex<Vec<Op>>,
    /// Acknowledged places, for the progress line.
    placed: AtomicU64,
}

impl Record {
    /// Keeps `op`; false when the history is full ([`HISTORY_OPS_MAX`]),
    /// and the op is dropped.
    fn push(&self, op: Op) -> bool {
        let mut ops = keel_protocol::sync::lock(&self.ops);
        if ops.len() >= HISTORY_OPS_MAX {
            return false;
        }
        if matches!(op.outcome, Outcome::Ok(OpResult::Placed { .. })) {
            self.placed.fetch_add(1, Ordering::Relaxed);
        }
        ops.push(op);
        true
    }
}

/// The shoppers at work.
pub struct Shoppers {
    stop: Arc<AtomicBool>,
    record: Arc<Record>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), DemoError>>>,
    t0: Instant,
    /// Set when the history filled up before the end.
    full: Arc<AtomicBool>,
}

/// What the shoppers did.
pub struct Shopped {
    /// Every place and pay.
    pub history: History,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// The history filled up and the shoppers stopped early.
    pub ended_early: bool,
}

impl Shoppers {
    /// Starts `shoppers` shoppers over the catalogue and `flash_buyers`
    /// buyers of the flash sale, in `shop`.
    pub fn start(shop: Arc<Shop>, shoppers: u64, flash_buyers: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let full = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Record::default());
        let t0 = Instant::now();
        let tasks = (0..shoppers + flash_buyers)
            .map(|task| {
                let shopper = Shopper {
                    shop: shop.clone(),
                    task,
                    flash: task >= shoppers,
                    stop: stop.clone(),
                    full: full.clone(),
                    record: record.clone(),
                    t0,
                };
                tokio::spawn(shopper.run())
            })
            .collect();
        Self {
            stop,
            record,
            tasks,
            t0,
            full,
        }
    }

    /// When the shopping began.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Orders acknowledged so far.
    pub fn placed(&self) -> u64 {
        self.record.placed.load(Ordering::Relaxed)
    }

    /// True once the shoppers stopped on their own (the history is full).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops the shoppers, waits for their last answers and returns what
    /// they saw.
    pub async fn finish(self) -> Result<Shopped, DemoError> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.map_err(|e| DemoError::Shopper(e.to_string()))??;
        }
        let elapsed = self.t0.elapsed();
        let ops = std::mem::take(&mut *keel_protocol::sync::lock(&self.record.ops));
        Ok(Shopped {
            history: History::from_ops(ops)?,
            elapsed,
            ended_early: self.full.load(Ordering::Relaxed),
        })
    }
}

/// One shopper: a logical process of the history.
struct Shopper {
    shop: Arc<Shop>,
    task: u64,
    flash: bool,
    stop: Arc<AtomicBool>,
    full: Arc<AtomicBool>,
    record: Arc<Record>,
    t0: Instant,
}

impl Shopper {
    /// Places an order and pays for it, until stopped. Ends early, and
    /// stops every shopper, when the history is full.
    async fn run(self) -> Result<(), DemoError> {
        let shop = &*self.shop;
        let sender = OpSender {
            client: &shop.client,
            route: &shop.route,
            ttl_seconds: shop.ttl_seconds,
        };
        let mut rng = SplitMix64::new(SEED ^ (self.task + 1).wrapping_mul(0x1000_0000_01B3));
        let customer = shop.catalogue.customer_of(self.task).clone();
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let (sku, qty) = shop.pick(self.flash, &mut rng);
            let place = OpKind::PlaceOrder {
                customer: customer.clone(),
                sku,
                qty,
                key: self.key(n, "place")?,
            };
            let placed = self.send(&sender, place).await;
            let Some(order) = placed else {
                continue;
            };
            let pay = OpKind::Pay {
                order,
                key: self.key(n, "pay")?,
            };
            self.send(&sender, pay).await;
        }
        Ok(())
    }

    /// The idempotency key of this shopper's `n`-th `what`: each used once.
    fn key(&self, n: u64, what: &str) -> Result<RequestId, DemoError> {
        Ok(RequestId::new(format!("demo-{}-{n}-{what}", self.task))?)
    }

    /// Sends `kind`, asks again about it while its outcome is lost, and
    /// records it; returns the order a place made. A failed request (a
    /// sold-out flash sale included) is followed by a short pause, as in a
    /// chaos run, so a cluster that refuses everything does not fill the
    /// history.
    async fn send(&self, sender: &OpSender<'_>, kind: OpKind) -> Option<OrderId> {
        let mut op = sender.perform(self.task, self.t0, kind).await;
        sender.resolve(self.t0, &self.stop, &mut op).await;
        let placed = match op.outcome {
            Outcome::Ok(OpResult::Placed { order, .. }) => Some(order),
            _ => None,
        };
        let failed = !matches!(op.outcome, Outcome::Ok(_));
        if !self.record.push(op) {
            self.full.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        if failed {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        placed
    }
}
