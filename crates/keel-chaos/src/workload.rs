//! The workload of a chaos run: concurrent customers placing, paying and
//! cancelling orders on a few SKUs (one hot and scarce), reading stock and
//! orders, and deliberately sending a request again with the same key, all
//! through the public API, one attempt per request, recorded as a
//! [`History`](crate::History).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keel_client::{AttemptError, Client, ClientError, HttpMethod};
use keel_domain::{AccountId, OrderId, OrderStatus, RequestId, Sku};
use serde_json::{json, Value};

use crate::history::{Op, OpKind, OpResult, Outcome};
use crate::nemesis::SplitMix64;
use crate::sync::lock;
use crate::ChaosError;

/// The SKU every client wants and few get.
pub const HOT_SKU: &str = "HOT";
/// Units of the hot SKU: scarce, so out-of-stock answers and the oversell
/// check both get exercised. Meant to run out: cancels give units back.
pub const HOT_STOCK: u64 = 60;
/// The other SKUs, whose stock must never run out
/// ([`WorkloadConfig::cold_stock`]).
pub const COLD_SKUS: [&str; 3] = ["COLD-A", "COLD-B", "COLD-C"];
/// Least units of each cold SKU, whatever the run's length.
pub const COLD_STOCK_MIN: u64 = 1_000_000;
/// Largest quantity one order asks for.
pub const QTY_MAX: u64 = 3;
/// The (SKU, qty) combinations one customer places, each at most once.
pub const COMBINATIONS_PER_CUSTOMER: u64 = (1 + COLD_SKUS.len() as u64) * QTY_MAX;
/// Most places one client makes per second: it waits for each answer, and
/// a place is a write a quorum commits (an fsync on each), well over 100 µs
/// even on loopback. What cold stock and customers per client are scaled
/// by, so neither runs out however long the run.
pub const CLIENT_PLACES_PER_SECOND_MAX: u64 = 10_000;
/// Fresh customers opened per client before the run, unless the run says
/// otherwise ([`WorkloadConfig::customers_seeded_per_client`]). Each
/// (customer, SKU, qty) is placed once at most, which lets the checkers tell
/// orders apart; a client moves to its next customer when the current one
/// has used every combination, and opens more itself when these run out.
pub const CUSTOMERS_SEEDED_PER_CLIENT: u64 = 64;
/// Price of every SKU (minor units).
pub const PRICE: i64 = 100;
/// Money each customer starts with: more than it can ever pay for, which is
/// every combination paid (24 units at [`PRICE`]), so pays never run out of
/// funds.
pub const CUSTOMER_FUNDS: i64 = 1_000_000_000;
const _: () = assert!(CUSTOMER_FUNDS >= (1 + COLD_SKUS.len() as i64) * 6 * PRICE);
/// Most reserved orders one client keeps to pay, cancel or read. Each place
/// adds one and only some pays and cancels take one away, so without a
/// bound the list grows with the run; past it a random one is forgotten
/// (it stays reserved, its reservation outliving the run), which keeps the
/// mix of requests the same.
pub const RESERVED_PER_CLIENT_MAX: usize = 1_024;
/// Share of turns (percent) on which a client places an order.
pub const PLACE_PERCENT: usize = 45;
/// One write in this many is sent a second time with the same key.
pub const REPLAY_ONE_IN: usize = 20;
/// Pause after a turn whose request failed or was lost: bounds the requests
/// a client sends while the cluster is down (a refused connection fails at
/// once), so a long fault does not fill the history, and stays short beside
/// the unavailability it measures.
pub const ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
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

/// Opens the merchant, the external account, the SKUs and every client's
/// customers, then stocks and funds them, with keyed batches so a retried
/// seed is harmless. Two phases, because a node submits a batch's commands
/// side by side: a restock or deposit in the same batch as what it needs
/// could overtake it and be refused `not_found` for good.
pub async fn seed(admin: &Client, config: &WorkloadConfig) -> Result<(), ChaosError> {
    let mut opens: Vec<Value> = vec![
        json!({"open_account": {"id": "shop", "kind": "merchant", "currency": "EUR"}}),
        json!({"open_account": {"id": "world", "kind": "external", "currency": "EUR"}}),
    ];
    let mut fills: Vec<Value> = Vec::new();
    for (sku, qty) in config.supplied() {
        opens.push(json!({"upsert_product": {"sku": sku, "name": "chaos", "price": PRICE, "currency": "EUR"}}));
        fills.push(json!({"restock": {"sku": sku, "qty": qty}}));
    }
    for p in 0..config.clients {
        for n in 0..config.customers_seeded_per_client {
            let [open, fund] = open_customer_commands(p, n);
            opens.push(open);
            fills.push(fund);
        }
    }
    for (phase, cmds) in [("open", opens), ("fill", fills)] {
        for (i, chunk) in cmds.chunks(SEED_CHUNK).enumerate() {
            admin
                .batch(chunk, &format!("chaos-seed-{phase}-{i}"))
                .await
                .map_err(|e| ChaosError::Setup(format!("seeding ({phase}) chunk {i}: {e}")))?;
        }
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
    /// Where requests go (`host:port`, the gateway or a node). The client
    /// [`run`] is given carries the token and the cluster's TLS.
    pub endpoint: String,
    /// Seed of the clients' choices.
    pub seed: u64,
    /// Reservation lifetime: longer than the run, so nothing expires (the
    /// linearizability model has no expiry).
    pub ttl_seconds: u32,
    /// Customers opened for each client before the run; the rest it opens
    /// itself.
    pub customers_seeded_per_client: u64,
    /// Longest the run may last (s): what the stock and customers that
    /// could run out are scaled to.
    pub seconds_max: u64,
}

impl WorkloadConfig {
    /// Units of each cold SKU: more than every client could place in
    /// [`seconds_max`](Self::seconds_max).
    pub fn cold_stock(&self) -> u64 {
        self.clients
            .saturating_mul(CLIENT_PLACES_PER_SECOND_MAX)
            .saturating_mul(QTY_MAX)
            .saturating_mul(self.seconds_max)
            .max(COLD_STOCK_MIN)
    }

    /// Most customers one client uses: more than it could use up in
    /// [`seconds_max`](Self::seconds_max). Past them it places no more
    /// (counted in [`Recorder::places_skipped`]) but goes on with the rest.
    pub fn customers_per_client_max(&self) -> u64 {
        let used = CLIENT_PLACES_PER_SECOND_MAX
            .saturating_mul(self.seconds_max)
            .div_ceil(COMBINATIONS_PER_CUSTOMER);
        self.customers_seeded_per_client.saturating_add(used)
    }

    /// Every SKU the workload uses and its starting stock.
    pub fn supplied(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        m.insert(HOT_SKU.to_owned(), HOT_STOCK);
        for s in COLD_SKUS {
            m.insert(s.to_owned(), self.cold_stock());
        }
        m
    }
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
    /// Turns on which a client wanted to place but had used every customer
    /// it may ([`WorkloadConfig::customers_per_client_max`]): the workload
    /// ran dry.
    pub places_skipped: AtomicU64,
}

/// A customer as `(client, n)`, named by [`customer_id`].
pub type CustomerRef = (u64, u64);

impl Recorder {
    /// Every customer that must exist, then every one that may.
    pub fn customers(&self, config: &WorkloadConfig) -> (Vec<CustomerRef>, Vec<CustomerRef>) {
        let opened = lock(&self.opened).clone();
        let seeded = config.customers_seeded_per_client;
        let must = (0..config.clients)
            .flat_map(|p| {
                let n = seeded + opened.get(&p).copied().unwrap_or(0);
                (0..n).map(move |i| (p, i))
            })
            .collect();
        let may = lock(&self.opened_in_doubt).clone();
        (must, may)
    }
}

/// Runs the clients until `stop` is set; every request lands in `recorder`.
/// They share `client`, which must reach `config.endpoint` with a token that
/// acts for every customer: the cluster's own
/// ([`keel_harness::LocalCluster::client`]), so the workload speaks TLS
/// exactly when the cluster does.
pub async fn run(
    config: WorkloadConfig,
    client: Arc<Client>,
    t0: Instant,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
) {
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

/// A client's customers: the one it places for, the (SKU, qty)
/// combinations it has left, and the next one, which past the seeded ones
/// must be opened and then funded first.
struct Customers {
    current: u64,
    unused: Vec<(usize, u64)>,
    next: u64,
    /// `next` was sent for opening and not yet acknowledged: if the run
    /// ends now, it may or may not exist.
    opening: bool,
    /// `next` is open and its deposit is what it still needs.
    funding: bool,
}

impl Customers {
    /// A combination to place for, moving to the next customer when the
    /// current one has used them all; `None` when the next customer cannot
    /// be had this turn (one attempt per turn, asked again on later ones).
    async fn take(
        &mut self,
        client: &Client,
        config: &WorkloadConfig,
        process: u64,
        rng: &mut SplitMix64,
        recorder: &Recorder,
    ) -> Option<(u64, usize, u64)> {
        if self.unused.is_empty() {
            if self.next >= config.customers_per_client_max() {
                recorder.places_skipped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            if self.next >= config.customers_seeded_per_client
                && !self.open_next(client, config, process, recorder).await
            {
                return None;
            }
            self.current = self.next;
            self.next += 1;
            self.unused = (0..=COLD_SKUS.len())
                .flat_map(|s| (1..=QTY_MAX).map(move |q| (s, q)))
                .collect();
        }
        let (s, qty) = self.unused.swap_remove(rng.below(self.unused.len()));
        Some((self.current, s, qty))
    }

    /// Opens customer `next`, then funds it, one request each and each only
    /// after the one before was acknowledged: sent in one batch, the node
    /// submits them side by side, and a deposit that overtakes the opening
    /// is refused `not_found` for good under its key. True when both are
    /// done.
    async fn open_next(
        &mut self,
        client: &Client,
        config: &WorkloadConfig,
        process: u64,
        recorder: &Recorder,
    ) -> bool {
        let n = self.next;
        let [open, fund] = open_customer_commands(process, n);
        if !self.funding {
            self.opening = true;
            if !apply_once(client, config, open, &format!("chaos-open-{process}-{n}")).await {
                return false;
            }
            self.opening = false;
            self.funding = true;
            *lock(&recorder.opened).entry(process).or_insert(0) += 1;
        }
        if !apply_once(client, config, fund, &format!("chaos-fund-{process}-{n}")).await {
            return false;
        }
        self.funding = false;
        true
    }
}

/// One client's life: mostly places, then pays or cancels what it got,
/// with reads in between, and now and then the same request again. It
/// never ends on an error: a turn that cannot place (no customer to be
/// had yet) does one of the other requests instead.
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
    let mut customers = Customers {
        current: 0,
        unused: Vec::new(),
        next: 0,
        opening: false,
        funding: false,
    };
    let route = Route::Once(config.endpoint.clone());
    let sender = OpSender {
        client: &client,
        route: &route,
        ttl_seconds: config.ttl_seconds,
    };
    let mut reserved: Vec<OrderId> = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("chaos-{}-{process}-{seq}", config.seed);
        let mut roll = rng.below(100);
        let mut place = None;
        if roll < PLACE_PERCENT || reserved.is_empty() {
            place = customers
                .take(&client, &config, process, &mut rng, &recorder)
                .await;
            if place.is_none() {
                roll = PLACE_PERCENT + rng.below(100 - PLACE_PERCENT);
            }
        }
        let kind = match place {
            Some((n, s, qty)) => place_kind(process, n, skus[s], qty, &key),
            None => other_kind(roll, &key, &skus, &mut reserved, &mut rng),
        };
        let Some(kind) = kind else {
            continue;
        };
        let mut op = sender.perform(process, t0, kind).await;
        sender.resolve(t0, &stop, &mut op).await;
        // Now and then the very same write again, same key: it must answer
        // as the first did and change nothing. The history keeps one op per
        // key, so the second answer is folded into the op.
        if op.kind.key().is_some() && rng.below(REPLAY_ONE_IN) == 0 {
            recorder.replays.fetch_add(1, Ordering::Relaxed);
            let again = sender.perform(process, t0, op.kind.clone()).await;
            if let Some(m) = fold_again(&mut op, again) {
                lock(&recorder.replay_mismatches).push(m);
            }
        }
        if !matches!(op.outcome, Outcome::Ok(_)) || customers.opening || customers.funding {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
        if let Outcome::Ok(OpResult::Placed { order, .. }) = &op.outcome {
            if reserved.len() >= RESERVED_PER_CLIENT_MAX {
                reserved.swap_remove(rng.below(reserved.len()));
            }
            reserved.push(*order);
        }
        push(&recorder, op);
    }
    if customers.opening {
        lock(&recorder.opened_in_doubt).push((process, customers.next));
    }
}

/// A request other than a place for a turn that rolled `roll`
/// (`PLACE_PERCENT..100`): below 65 a pay, below 75 a cancel (each of one
/// of the `reserved` orders), below 90 a read of a SKU's stock (always,
/// when none is reserved), else a read of a reserved order.
fn other_kind(
    roll: usize,
    key: &str,
    skus: &[&str],
    reserved: &mut Vec<OrderId>,
    rng: &mut SplitMix64,
) -> Option<OpKind> {
    if reserved.is_empty() || (75..90).contains(&roll) {
        let sku = skus[rng.below(skus.len())];
        return Some(OpKind::ReadStock {
            sku: Sku::new(sku).ok()?,
        });
    }
    if roll >= 90 {
        return Some(OpKind::ReadOrder {
            order: reserved[rng.below(reserved.len())],
        });
    }
    let order = reserved.swap_remove(rng.below(reserved.len()));
    let key = RequestId::new(key).ok()?;
    Some(if roll < 65 {
        OpKind::Pay { order, key }
    } else {
        OpKind::Cancel { order, key }
    })
}

/// Sends one setup command (a customer opened or funded in the middle of
/// the run) once, with `key`, so a later turn asks again and an attempt
/// that took effect answers from its stored result; true when
/// acknowledged. Not a recorded op: like the seeding, it is setup, checked
/// at the end.
async fn apply_once(client: &Client, config: &WorkloadConfig, cmd: Value, key: &str) -> bool {
    let reply = client
        .call_at(
            &config.endpoint,
            keel_client::method_post(),
            "/v1/batch",
            Some(&Value::Array(vec![cmd])),
            Some(key),
        )
        .await;
    match &reply {
        Ok(r) => r.body["results"].as_array().is_some_and(|results| {
            results
                .iter()
                .all(|x| x["status"].as_u64().is_some_and(|s| s < 300))
        }),
        Err(e) => {
            tracing::debug!(key, error = ?e, "customer setup");
            false
        }
    }
}

/// Whether an outcome is the answer the cluster keeps with the request's
/// key, which every later attempt with that key must get back: a success,
/// or a refusal that says why the state did not allow it. `unavailable`
/// and the like prove only that one attempt did nothing, a lost reply not
/// even that.
fn is_stored_answer(outcome: &Outcome) -> bool {
    use crate::history::fail;
    match outcome {
        Outcome::Ok(_) => true,
        Outcome::Fail(kind) => [
            fail::OUT_OF_STOCK,
            fail::INVALID_TRANSITION,
            fail::INSUFFICIENT_FUNDS,
            fail::NOT_FOUND,
        ]
        .contains(&kind.as_str()),
        Outcome::Unknown(_) => false,
    }
}

/// Folds `again`, the same request sent again with the same key, into
/// `op`, what its first attempt(s) saw. Two stored answers must be equal,
/// whatever they are (two successes, a success and a refusal, two
/// refusals): else the mismatch is returned. When `op` holds no stored
/// answer yet, `again` is one more attempt of the same request, which may
/// be the one that applies it: the op then ends when `again` did, with its
/// answer if it is a stored one and unknown if it may have applied.
pub fn fold_again(op: &mut Op, again: Op) -> Option<String> {
    if is_stored_answer(&op.outcome) {
        if is_stored_answer(&again.outcome) && op.outcome != again.outcome {
            return Some(format!(
                "{}: first {:?}, again {:?}",
                op.kind, op.outcome, again.outcome
            ));
        }
        return None;
    }
    op.complete_ns = op.complete_ns.max(again.complete_ns);
    if is_stored_answer(&again.outcome) || matches!(again.outcome, Outcome::Unknown(_)) {
        op.outcome = again.outcome;
    }
    None
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
    lock(&recorder.ops).push(op);
}

/// How a recorded request reaches the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// One attempt at this address (`host:port`, a gateway or a node): the
    /// op records what that attempt said. What a chaos run does.
    Once(String),
    /// The client's own failover over its endpoints (a keyed write is sent
    /// again on another node after a lost reply, 503 or 504): the op records
    /// the last answer, and a write whose every attempt failed as unknown,
    /// since one of them may have applied it.
    Failover,
}

/// Sends a history's requests and records what each learnt: the one place
/// where an answer becomes an [`Outcome`], for the chaos workload and for
/// any other load judged by the checkers.
#[derive(Clone, Copy)]
pub struct OpSender<'a> {
    /// The client, with a token that may act for every customer.
    pub client: &'a Client,
    /// How requests reach the cluster.
    pub route: &'a Route,
    /// The lifetime every place asks for: longer than the run, since the
    /// checkers' models have no expiry.
    pub ttl_seconds: u32,
}

impl OpSender<'_> {
    /// Sends `kind` for client `process` and records what came back, with
    /// the interval it was in flight in ns since `t0`.
    pub async fn perform(&self, process: u64, t0: Instant, kind: OpKind) -> Op {
        let (method, path, body) = request_of(&kind, self.ttl_seconds);
        let key = kind.key().map(|k| k.as_str().to_owned());
        let invoke_ns = t0.elapsed().as_nanos() as u64;
        let reply = match self.route {
            Route::Once(endpoint) => {
                self.client
                    .call_at(endpoint, method, &path, body.as_ref(), key.as_deref())
                    .await
            }
            Route::Failover => self
                .client
                .call(method, &path, body.as_ref(), key.as_deref())
                .await
                .map_err(as_last_attempt),
        };
        let complete_ns = t0.elapsed().as_nanos() as u64;
        Op {
            process,
            invoke_ns,
            complete_ns,
            outcome: outcome_of(&kind, reply),
            kind,
        }
    }

    /// Asks again, with the same key, about a write whose outcome was lost,
    /// until an answer settles it (the node replays the stored result if
    /// the first attempt took effect) or `stop` is set: the op then ends at
    /// that answer, its effect somewhere in between. Unsettled writes stay
    /// `Unknown`, which the checkers allow either way but which stop them
    /// from splitting a long history.
    pub async fn resolve(&self, t0: Instant, stop: &AtomicBool, op: &mut Op) {
        if !matches!(op.outcome, Outcome::Unknown(_)) || op.kind.key().is_none() {
            return;
        }
        for _ in 0..RESOLVE_ATTEMPTS_MAX {
            if is_stored_answer(&op.outcome) || stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(RESOLVE_BACKOFF).await;
            let again = self.perform(op.process, t0, op.kind.clone()).await;
            fold_again(op, again);
        }
    }
}

/// What the client's failover ended with, as the attempt it ended on: no
/// node answered usefully is a lost reply, since an earlier attempt may
/// have reached one.
fn as_last_attempt(e: ClientError) -> AttemptError {
    match e {
        ClientError::Unavailable(m) => AttemptError::Lost(m),
        ClientError::Invalid(m) => AttemptError::Invalid(m),
        other => AttemptError::Problem(other),
    }
}

/// What one reply says about the op `kind`.
fn outcome_of(kind: &OpKind, reply: Result<keel_client::Reply, AttemptError>) -> Outcome {
    match reply {
        Ok(r) => match result_of(kind, &r.body) {
            Some(res) => Outcome::Ok(res),
            None => Outcome::Unknown(format!("unreadable answer: {}", r.body)),
        },
        Err(AttemptError::Problem(ClientError::Problem {
            status, kind: k, ..
        })) => classify_problem(status, &k, kind),
        Err(AttemptError::Problem(e)) => Outcome::Unknown(e.to_string()),
        // Never sent is certain only for a direct connection; through a
        // gateway a refused connection to it is too. Either way nothing
        // reached a node.
        Err(AttemptError::NotSent(m)) => Outcome::Fail(format!("not_sent: {m}")),
        Err(AttemptError::Invalid(m)) => Outcome::Fail(format!("invalid: {m}")),
        Err(AttemptError::Lost(m)) => Outcome::Unknown(m),
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

fn request_of(kind: &OpKind, ttl_seconds: u32) -> (HttpMethod, String, Option<Value>) {
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
        let config = WorkloadConfig {
            clients: 2,
            endpoint: String::new(),
            seed: 1,
            ttl_seconds: 60,
            customers_seeded_per_client: CUSTOMERS_SEEDED_PER_CLIENT,
            seconds_max: 60,
        };
        let (must, may) = r.customers(&config);
        let seeded = CUSTOMERS_SEEDED_PER_CLIENT;
        assert_eq!(must.len() as u64, 2 * seeded + 2);
        assert!(must.contains(&(0, seeded - 1)) && !must.contains(&(0, seeded)));
        assert!(must.contains(&(1, seeded + 1)) && !must.contains(&(1, seeded + 2)));
        assert_eq!(may, vec![(1, 66)]);
    }

    fn config(clients: u64, seeded: u64, seconds_max: u64, endpoint: String) -> WorkloadConfig {
        WorkloadConfig {
            clients,
            endpoint,
            seed: 1,
            ttl_seconds: 60,
            customers_seeded_per_client: seeded,
            seconds_max,
        }
    }

    #[test]
    fn what_could_run_out_scales_with_the_run() {
        let short = config(16, 64, 60, String::new());
        let long = config(16, 64, 86_400, String::new());
        for c in [&short, &long] {
            let places = c.clients * CLIENT_PLACES_PER_SECOND_MAX * c.seconds_max;
            assert!(c.cold_stock() >= places * QTY_MAX);
            assert!(c.supplied()["COLD-A"] == c.cold_stock());
            let per_client = CLIENT_PLACES_PER_SECOND_MAX * c.seconds_max;
            assert!((c.customers_per_client_max() - 64) * COMBINATIONS_PER_CUSTOMER >= per_client);
        }
        assert!(long.cold_stock() > short.cold_stock());
        assert_eq!(config(1, 1, 0, String::new()).cold_stock(), COLD_STOCK_MIN);
    }

    #[test]
    fn turns_that_cannot_place_keep_the_rest_of_the_mix() {
        let mut rng = SplitMix64::new(3);
        let skus = ["HOT", "COLD-A"];
        let kind = |roll, reserved: &mut Vec<OrderId>, rng: &mut SplitMix64| {
            other_kind(roll, "k1", &skus, reserved, rng).unwrap()
        };
        let mut none = Vec::new();
        for roll in [45, 70, 80, 95] {
            assert!(matches!(
                kind(roll, &mut none, &mut rng),
                OpKind::ReadStock { .. }
            ));
        }
        let mut some = vec![OrderId(1), OrderId(2), OrderId(3)];
        assert!(matches!(kind(50, &mut some, &mut rng), OpKind::Pay { .. }));
        assert!(matches!(
            kind(70, &mut some, &mut rng),
            OpKind::Cancel { .. }
        ));
        assert!(matches!(
            kind(80, &mut some, &mut rng),
            OpKind::ReadStock { .. }
        ));
        assert!(matches!(
            kind(95, &mut some, &mut rng),
            OpKind::ReadOrder { .. }
        ));
        // A pay and a cancel took their orders; reads leave them.
        assert_eq!(some.len(), 1);
    }

    /// A tiny stand-in for the gateway: every `/v1/batch` answers that the
    /// deposit was refused `not_found` (as a stored refusal is replayed for
    /// its key, every time), everything else `503 unavailable`.
    async fn refusing_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    let mut have = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&have).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if have.len() < end + 4 + len {
                            continue;
                        }
                        let (status, body) = if text.starts_with("POST /v1/batch") {
                            (
                                "200 OK",
                                r#"{"results":[{"status":201,"body":{}},{"status":404,"body":{"type":"not_found"}}]}"#,
                            )
                        } else {
                            (
                                "503 Service Unavailable",
                                r#"{"type":"unavailable","detail":"no leader"}"#,
                            )
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        have.drain(..end + 4 + len);
                    }
                });
            }
        });
        addr
    }

    /// A client whose new customer cannot be opened (here its
    /// deposit is refused for good, as when it overtook the account's
    /// opening) keeps sending its other requests and never ends before the
    /// run does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_whose_customer_cannot_be_opened_keeps_working_until_the_run_stops() {
        let endpoint = refusing_server().await;
        let recorder = Arc::new(Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        // Plaintext: the stand-in speaks bare HTTP, and what is tested is
        // the clients' loop, not the transport.
        let client = Arc::new(Client::new(vec![endpoint.clone()], Some("t".into())));
        let work = tokio::spawn(run(
            config(2, 0, 60, endpoint),
            client,
            Instant::now(),
            stop.clone(),
            recorder.clone(),
        ));
        let started = Instant::now();
        // Past the ~10 s after which the old workload gave up on an open.
        let until = started + std::time::Duration::from_secs(12);
        while Instant::now() < until {
            assert!(
                !work.is_finished(),
                "a client ended before the run, at {:?}",
                started.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let ops = recorder.ops.lock().unwrap().clone();
        for p in 0..2 {
            let last = ops
                .iter()
                .filter(|o| o.process == p)
                .map(|o| o.invoke_ns)
                .max();
            assert!(
                last.is_some_and(|t| t >= 10_000_000_000),
                "client {p} sent nothing in the last 2 s (last op at {last:?} ns)"
            );
        }
        stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(std::time::Duration::from_secs(10), work)
            .await
            .unwrap()
            .unwrap();
    }

    fn place_op(invoke_ns: u64, complete_ns: u64, outcome: Outcome) -> Op {
        Op {
            process: 0,
            invoke_ns,
            complete_ns,
            kind: place_kind(0, 0, HOT_SKU, 1, "k").unwrap(),
            outcome,
        }
    }

    fn placed(order: u64) -> Outcome {
        Outcome::Ok(OpResult::Placed {
            order: OrderId(order),
            qty: 1,
        })
    }

    fn refused(kind: &str) -> Outcome {
        Outcome::Fail(kind.to_owned())
    }

    /// A place refused for the moment (`unavailable`: nothing applied) and
    /// sent again with its key may be applied by the second attempt: the
    /// op must then say so, or a correct cluster's order would match a
    /// failed place and fail the run.
    #[test]
    fn a_request_sent_again_after_a_failed_attempt_is_recorded_with_the_second_answer() {
        for first in [
            refused("unavailable"),
            refused("not_sent: refused"),
            Outcome::Unknown("lost".into()),
        ] {
            let mut op = place_op(10, 20, first.clone());
            assert_eq!(fold_again(&mut op, place_op(30, 40, placed(7))), None);
            assert_eq!((op.invoke_ns, op.complete_ns), (10, 40), "after {first:?}");
            assert_eq!(op.outcome, placed(7), "after {first:?}");
            // The second attempt lost too: it may have applied.
            let mut op = place_op(10, 20, first.clone());
            fold_again(
                &mut op,
                place_op(30, 40, Outcome::Unknown("timeout".into())),
            );
            assert!(matches!(op.outcome, Outcome::Unknown(_)), "after {first:?}");
        }
        // Neither attempt did anything: still a failure, over both.
        let mut op = place_op(10, 20, refused("unavailable"));
        fold_again(&mut op, place_op(30, 40, refused("overloaded")));
        assert_eq!(
            (op.complete_ns, op.outcome.clone()),
            (40, refused("unavailable"))
        );
        // A lost first attempt stays unknown when the second proves nothing.
        let mut op = place_op(10, 20, Outcome::Unknown("lost".into()));
        fold_again(&mut op, place_op(30, 40, refused("unavailable")));
        assert!(matches!(op.outcome, Outcome::Unknown(_)));
    }

    /// Through the client's own failover, an error is what its last
    /// attempt saw: no node answering may follow an attempt that applied
    /// the write, so it is unknown; a refusal is still a refusal.
    #[test]
    fn a_failover_that_found_no_node_is_unknown_and_a_refusal_fails() {
        let kind = place_kind(0, 0, HOT_SKU, 1, "k").unwrap();
        let no_node = Err(as_last_attempt(ClientError::Unavailable("down".into())));
        assert!(matches!(outcome_of(&kind, no_node), Outcome::Unknown(_)));
        let refusal = Err(as_last_attempt(ClientError::Problem {
            status: 409,
            kind: "out_of_stock".into(),
            detail: String::new(),
            body: Value::Null,
        }));
        assert_eq!(outcome_of(&kind, refusal), refused("out_of_stock"));
    }

    #[test]
    fn same_key_same_answer_compares_every_pair_of_stored_answers() {
        let mismatch = |first: Outcome, again: Outcome| {
            let mut op = place_op(10, 20, first.clone());
            let m = fold_again(&mut op, place_op(30, 40, again));
            assert_eq!(
                (op.complete_ns, op.outcome),
                (20, first),
                "the first answer stands"
            );
            m
        };
        assert!(mismatch(placed(1), placed(2)).is_some());
        assert!(mismatch(placed(1), refused("out_of_stock")).is_some());
        assert!(mismatch(refused("out_of_stock"), placed(1)).is_some());
        assert!(mismatch(refused("out_of_stock"), refused("not_found")).is_some());
        assert!(mismatch(placed(1), placed(1)).is_none());
        assert!(mismatch(refused("out_of_stock"), refused("out_of_stock")).is_none());
        // An answer that proves nothing is no mismatch.
        assert!(mismatch(placed(1), refused("unavailable")).is_none());
        assert!(mismatch(placed(1), Outcome::Unknown("lost".into())).is_none());
    }
}
