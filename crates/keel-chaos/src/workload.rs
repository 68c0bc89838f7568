//! The workload of a chaos run: concurrent customers placing, paying and
//! cancelling orders on a few SKUs (one hot and scarce), reading stock and
//! orders, and deliberately sending a request again with the same key, all
//! through the public API, one attempt per request, recorded as a
//! [`History`](crate::History).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keel_client::{AttemptError, Client, ClientError};
use keel_domain::{AccountId, OrderId, OrderStatus, RequestId, Sku};
use serde_json::{json, Value};

use crate::history::{Op, OpKind, OpResult, Outcome};
use crate::nemesis::SplitMix64;
use crate::ChaosError;

/// The SKU every client wants and few get.
pub const HOT_SKU: &str = "HOT";
/// Units of the hot SKU: scarce, so out-of-stock answers and the oversell
/// check both get exercised.
pub const HOT_STOCK: u64 = 60;
/// The other SKUs and their (plentiful) stock.
pub const COLD_SKUS: [&str; 3] = ["COLD-A", "COLD-B", "COLD-C"];
/// Units of each cold SKU.
pub const COLD_STOCK: u64 = 1_000_000;
/// Largest quantity one order asks for.
pub const QTY_MAX: u64 = 3;
/// Fresh customers opened per client before the run, unless the run says
/// otherwise ([`WorkloadConfig::customers_seeded_per_client`]). Each
/// (customer, SKU, qty) is placed once at most, which lets the checkers tell
/// orders apart; a client moves to its next customer when the current one
/// has used every combination, and opens more itself when these run out.
pub const CUSTOMERS_SEEDED_PER_CLIENT: u64 = 64;
/// Most customers one client uses in a run; past them it stops.
pub const CUSTOMERS_PER_CLIENT_MAX: u64 = 100_000;
/// Money each customer starts with: enough to pay for everything it orders.
pub const CUSTOMER_FUNDS: i64 = 1_000_000_000;
/// Price of every SKU (minor units).
pub const PRICE: i64 = 100;
/// Times a lost write is asked about again before it is left `Unknown`.
pub const RESOLVE_ATTEMPTS_MAX: u32 = 100;
/// Wait between those questions.
pub const RESOLVE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// Commands per `/v1/batch` request while seeding.
const SEED_CHUNK: usize = 500;

/// The customer id of client `process`'s `n`-th customer.
pub fn customer_id(process: u64, n: u64) -> String {
    format!("chaos-{process}-{n}")
}

/// Every SKU the workload uses and its starting stock.
pub fn supplied() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    m.insert(HOT_SKU.to_owned(), HOT_STOCK);
    for s in COLD_SKUS {
        m.insert(s.to_owned(), COLD_STOCK);
    }
    m
}

/// Opens the merchant, the external account, the SKUs and every client's
/// customers (funded), with keyed batches so a retried seed is harmless.
pub async fn seed(admin: &Client, clients: u64, seeded_per_client: u64) -> Result<(), ChaosError> {
    let mut cmds: Vec<Value> = vec![
        json!({"open_account": {"id": "shop", "kind": "merchant", "currency": "EUR"}}),
        json!({"open_account": {"id": "world", "kind": "external", "currency": "EUR"}}),
    ];
    for (sku, qty) in supplied() {
        cmds.push(json!({"upsert_product": {"sku": sku, "name": "chaos", "price": PRICE, "currency": "EUR"}}));
        cmds.push(json!({"restock": {"sku": sku, "qty": qty}}));
    }
    for p in 0..clients {
        for n in 0..seeded_per_client {
            cmds.extend(open_customer_commands(p, n));
        }
    }
    for (i, chunk) in cmds.chunks(SEED_CHUNK).enumerate() {
        admin
            .batch(chunk, &format!("chaos-seed-{i}"))
            .await
            .map_err(|e| ChaosError::Setup(format!("seeding chunk {i}: {e}")))?;
    }
    Ok(())
}

/// Opening customer `n` of client `process`, funded.
fn open_customer_commands(process: u64, n: u64) -> [Value; 2] {
    let id = customer_id(process, n);
    [
        json!({"open_account": {"id": id, "kind": "customer", "currency": "EUR"}}),
        json!({"deposit": {"account": id, "amount": CUSTOMER_FUNDS}}),
    ]
}

/// Settings of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients (logical processes of the history).
    pub clients: u64,
    /// Where requests go (`host:port`, the gateway or a node).
    pub endpoint: String,
    /// Admin token (the workload acts for every customer).
    pub token: String,
    /// Seed of the clients' choices.
    pub seed: u64,
    /// Reservation lifetime: longer than the run, so nothing expires (the
    /// linearizability model has no expiry).
    pub ttl_seconds: u32,
    /// Customers opened for each client before the run; the rest it opens
    /// itself.
    pub customers_seeded_per_client: u64,
}

/// What the clients saw, shared by all of them.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every request, as the history's ops.
    pub ops: Mutex<Vec<Op>>,
    /// Writes deliberately sent again with the same key.
    pub replays: AtomicU64,
    /// Replays whose answer differed from the first one's.
    pub replay_mismatches: Mutex<Vec<String>>,
    /// Customers each client opened during the run and saw acknowledged,
    /// beyond the seeded ones: client -> how many.
    pub opened: Mutex<BTreeMap<u64, u64>>,
    /// Customers whose opening was sent but never acknowledged (the run
    /// ended first): they may or may not exist.
    pub opened_in_doubt: Mutex<Vec<CustomerRef>>,
}

/// A customer as `(client, n)`, named by [`customer_id`].
pub type CustomerRef = (u64, u64);

impl Recorder {
    /// Every customer that must exist, then every one that may.
    pub fn customers(&self, clients: u64, seeded: u64) -> (Vec<CustomerRef>, Vec<CustomerRef>) {
        let opened = self.opened.lock().map(|o| o.clone()).unwrap_or_default();
        let must = (0..clients)
            .flat_map(|p| {
                let n = seeded + opened.get(&p).copied().unwrap_or(0);
                (0..n).map(move |i| (p, i))
            })
            .collect();
        let may = self
            .opened_in_doubt
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        (must, may)
    }
}

/// Runs the clients until `stop` is set; every request lands in `recorder`.
pub async fn run(
    config: WorkloadConfig,
    t0: Instant,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
) {
    let client = Arc::new(Client::new(
        vec![config.endpoint.clone()],
        Some(config.token.clone()),
    ));
    let mut tasks = Vec::new();
    for p in 0..config.clients {
        tasks.push(tokio::spawn(client_loop(
            client.clone(),
            config.clone(),
            p,
            t0,
            stop.clone(),
            recorder.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One customer's life: mostly places, then pays or cancels what it got,
/// with reads in between, and now and then the same request again.
async fn client_loop(
    client: Arc<Client>,
    config: WorkloadConfig,
    process: u64,
    t0: Instant,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
) {
    let mut rng = SplitMix64::new(config.seed ^ (process + 1).wrapping_mul(0x9E37_79B9));
    let skus: Vec<&str> = std::iter::once(HOT_SKU).chain(COLD_SKUS).collect();
    // Unused (sku, qty) combinations of the current customer.
    let mut customer_n = 0;
    let mut unused: Vec<(usize, u64)> = Vec::new();
    let mut reserved: Vec<OrderId> = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("chaos-{}-{process}-{seq}", config.seed);
        let roll = rng.below(100);
        let kind = if roll < 45 || reserved.is_empty() {
            if unused.is_empty() {
                if customer_n >= CUSTOMERS_PER_CLIENT_MAX {
                    break;
                }
                if customer_n >= config.customers_seeded_per_client
                    && !open_customer(&client, process, customer_n, &stop, &recorder).await
                {
                    break;
                }
                unused = (0..skus.len())
                    .flat_map(|s| (1..=QTY_MAX).map(move |q| (s, q)))
                    .collect();
                customer_n += 1;
            }
            let (s, qty) = unused.swap_remove(rng.below(unused.len()));
            let Some(kind) = place_kind(process, customer_n - 1, skus[s], qty, &key) else {
                continue;
            };
            kind
        } else if roll < 65 {
            let order = reserved.swap_remove(rng.below(reserved.len()));
            match RequestId::new(key) {
                Ok(key) => OpKind::Pay { order, key },
                Err(_) => continue,
            }
        } else if roll < 75 {
            let order = reserved.swap_remove(rng.below(reserved.len()));
            match RequestId::new(key) {
                Ok(key) => OpKind::Cancel { order, key },
                Err(_) => continue,
            }
        } else if roll < 90 {
            let sku = skus[rng.below(skus.len())];
            match Sku::new(sku) {
                Ok(sku) => OpKind::ReadStock { sku },
                Err(_) => continue,
            }
        } else {
            OpKind::ReadOrder {
                order: reserved[rng.below(reserved.len())],
            }
        };
        let mut op = perform(&client, &config, process, t0, kind).await;
        resolve(&client, &config, t0, &stop, &mut op).await;
        if let Outcome::Ok(OpResult::Placed { order, .. }) = &op.outcome {
            reserved.push(*order);
        }
        // Now and then the very same write again, same key: it must answer
        // with the first one's result and change nothing. The history keeps
        // one op per key, so the replay is compared here, not recorded.
        let replay = op.kind.key().is_some() && rng.below(20) == 0;
        let first = op.clone();
        push(&recorder, op);
        if replay {
            recorder.replays.fetch_add(1, Ordering::Relaxed);
            let again = perform(&client, &config, process, t0, first.kind.clone()).await;
            if let (Outcome::Ok(a), Outcome::Ok(b)) = (&first.outcome, &again.outcome) {
                if a != b {
                    if let Ok(mut m) = recorder.replay_mismatches.lock() {
                        m.push(format!("{:?}: first {a:?}, again {b:?}", first.kind));
                    }
                }
            }
        }
    }
}

/// Opens client `process`'s customer `n` in the middle of the run, asking
/// again with the same key until it is acknowledged; false when the run
/// ends (or the asks run out) first, which leaves it in doubt. Not a
/// recorded op: like the seeding, it is setup, checked at the end.
async fn open_customer(
    client: &Client,
    process: u64,
    n: u64,
    stop: &AtomicBool,
    recorder: &Recorder,
) -> bool {
    let cmds = open_customer_commands(process, n);
    let key = format!("chaos-open-{process}-{n}");
    for _ in 0..RESOLVE_ATTEMPTS_MAX {
        match client.batch(&cmds, &key).await {
            Ok(_) => {
                if let Ok(mut o) = recorder.opened.lock() {
                    *o.entry(process).or_insert(0) += 1;
                }
                return true;
            }
            Err(e) => tracing::debug!(process, n, error = %e, "opening a customer"),
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(RESOLVE_BACKOFF).await;
    }
    if let Ok(mut d) = recorder.opened_in_doubt.lock() {
        d.push((process, n));
    }
    false
}

/// Asks again, with the same key, about a write whose outcome was lost,
/// until an answer settles it (the node replays the stored result if the
/// first attempt took effect): the op then ends at that answer, its effect
/// somewhere in between. Unsettled writes stay `Unknown`, which the checkers
/// allow either way but which stop them from splitting a long history.
async fn resolve(
    client: &Client,
    config: &WorkloadConfig,
    t0: Instant,
    stop: &AtomicBool,
    op: &mut Op,
) {
    if op.kind.key().is_none() {
        return;
    }
    for _ in 0..RESOLVE_ATTEMPTS_MAX {
        if !matches!(op.outcome, Outcome::Unknown(_)) || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(RESOLVE_BACKOFF).await;
        let again = perform(client, config, op.process, t0, op.kind.clone()).await;
        let settled = match &again.outcome {
            Outcome::Ok(_) => true,
            // A refusal is stored with the key, so it is the first
            // attempt's too; `unavailable` only says this attempt did
            // nothing.
            Outcome::Fail(kind) => matches!(
                kind.as_str(),
                "out_of_stock" | "invalid_transition" | "insufficient_funds" | "not_found"
            ),
            Outcome::Unknown(_) => false,
        };
        if settled {
            op.outcome = again.outcome;
            op.complete_ns = again.complete_ns;
        }
    }
}

fn place_kind(process: u64, customer_n: u64, sku: &str, qty: u64, key: &str) -> Option<OpKind> {
    Some(OpKind::PlaceOrder {
        customer: AccountId::new(customer_id(process, customer_n)).ok()?,
        sku: Sku::new(sku).ok()?,
        qty,
        key: RequestId::new(key).ok()?,
    })
}

fn push(recorder: &Recorder, op: Op) {
    if let Ok(mut ops) = recorder.ops.lock() {
        ops.push(op);
    }
}

/// Sends one request, once, and records what came back.
async fn perform(
    client: &Client,
    config: &WorkloadConfig,
    process: u64,
    t0: Instant,
    kind: OpKind,
) -> Op {
    let (method, path, body) = request_of(&kind, config.ttl_seconds);
    let key = kind.key().map(|k| k.as_str().to_owned());
    let invoke_ns = t0.elapsed().as_nanos() as u64;
    let reply = client
        .call_at(
            &config.endpoint,
            method,
            &path,
            body.as_ref(),
            key.as_deref(),
        )
        .await;
    let complete_ns = t0.elapsed().as_nanos() as u64;
    let outcome = match reply {
        Ok(r) => match result_of(&kind, &r.body) {
            Some(res) => Outcome::Ok(res),
            None => Outcome::Unknown(format!("unreadable answer: {}", r.body)),
        },
        Err(AttemptError::Problem(ClientError::Problem {
            status, kind: k, ..
        })) => classify_problem(status, &k, &kind),
        Err(AttemptError::Problem(e)) => Outcome::Unknown(e.to_string()),
        // Never sent is certain only for a direct connection; through a
        // gateway a refused connection to it is too. Either way nothing
        // reached a node.
        Err(AttemptError::NotSent(m)) => Outcome::Fail(format!("not_sent: {m}")),
        Err(AttemptError::Invalid(m)) => Outcome::Fail(format!("invalid: {m}")),
        Err(AttemptError::Lost(m)) => Outcome::Unknown(m),
    };
    Op {
        process,
        invoke_ns,
        complete_ns,
        kind,
        outcome,
    }
}

/// What a problem answer proves: a refusal, or a 503 `unavailable` /
/// `overloaded` / `rate_limited`, changed nothing; anything else (504, 502,
/// 500) may have.
fn classify_problem(status: u16, kind: &str, op: &OpKind) -> Outcome {
    match (status, kind) {
        (404, _) if matches!(op, OpKind::ReadOrder { .. }) => {
            Outcome::Ok(OpResult::Order { status: None })
        }
        (400..=499, _) => Outcome::Fail(kind.to_owned()),
        (503, "unavailable" | "overloaded") => Outcome::Fail(kind.to_owned()),
        _ => Outcome::Unknown(format!("{status} {kind}")),
    }
}

fn request_of(kind: &OpKind, ttl_seconds: u32) -> (reqwest::Method, String, Option<Value>) {
    let post = keel_client::method_post();
    let get = keel_client::method_get();
    match kind {
        OpKind::PlaceOrder {
            customer, sku, qty, ..
        } => (
            post,
            "/v1/orders".to_owned(),
            Some(json!({
                "customer": customer,
                "lines": [{"sku": sku, "qty": qty}],
                "ttl_seconds": ttl_seconds,
            })),
        ),
        OpKind::Pay { order, .. } => (post, format!("/v1/orders/{}/pay", order.0), Some(json!({}))),
        OpKind::Cancel { order, .. } => (
            post,
            format!("/v1/orders/{}/cancel", order.0),
            Some(json!({})),
        ),
        OpKind::ReadStock { sku } => (get, format!("/v1/products/{sku}"), None),
        OpKind::ReadOrder { order } => (get, format!("/v1/orders/{}", order.0), None),
    }
}

fn result_of(kind: &OpKind, body: &Value) -> Option<OpResult> {
    Some(match kind {
        OpKind::PlaceOrder { .. } => OpResult::Placed {
            order: OrderId(body["id"].as_u64()?),
            qty: body["lines"][0]["qty"].as_u64()?,
        },
        OpKind::Pay { .. } | OpKind::Cancel { .. } | OpKind::ReadOrder { .. } => {
            let status: OrderStatus = serde_json::from_value(body["status"].clone()).ok()?;
            if matches!(kind, OpKind::ReadOrder { .. }) {
                OpResult::Order {
                    status: Some(status),
                }
            } else {
                OpResult::Status { status }
            }
        }
        OpKind::ReadStock { .. } => OpResult::Stock {
            available: body["available"].as_u64()?,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn customers_opened_during_the_run_must_exist_and_doubtful_ones_may() {
        let r = Recorder::default();
        r.opened.lock().unwrap().insert(1, 2);
        r.opened_in_doubt.lock().unwrap().push((1, 66));
        let (must, may) = r.customers(2, CUSTOMERS_SEEDED_PER_CLIENT);
        let seeded = CUSTOMERS_SEEDED_PER_CLIENT;
        assert_eq!(must.len() as u64, 2 * seeded + 2);
        assert!(must.contains(&(0, seeded - 1)) && !must.contains(&(0, seeded)));
        assert!(must.contains(&(1, seeded + 1)) && !must.contains(&(1, seeded + 2)));
        assert_eq!(may, vec![(1, 66)]);
    }
}
