//! Property tests: random interleavings of every command over a small shop
//! (three SKUs in EUR and USD, a few customers, a merchant and an external
//! account per currency), with retries under the same key (same and
//! different bodies), batches made only of exact replays, and leader time
//! that ticks, jumps past reservation expiry, past the idempotency retention
//! window, and goes backwards after a "failover".
//!
//! After every batch: the invariants hold; the idempotency rules hold against
//! a tiny model (a replay returns the stored result, a different body under a
//! used key is a conflict, a new or pruned key runs); a replica fed the same
//! batches has the same results and the same state digest; and a batch of
//! exact replays leaves the digest unchanged. At the end, the recorded log
//! replayed into fresh tables gives the same digest again.
#![allow(clippy::unwrap_used)] // Test file: a failed unwrap is a failed test.

use std::collections::BTreeMap;

use keel_domain::apply::{StateClock, CLOCK_STEP_MAX_MS, IDEMPOTENCY_RETENTION_MS};
use keel_domain::query::digest;
use keel_domain::{
    apply_batch, check_invariants, AccountId, AccountKind, Applied, Batch, Command, CommandResult,
    Currency, DomainError, Envelope, LineRequest, MemTables, Minor, OrderId, Principal,
    ProductName, RequestId, Sku,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;

/// SKUs commands name: A and B in EUR, U in USD, N unknown until an upsert.
const SKUS: [&str; 4] = ["A", "B", "U", "N"];
/// Customers (c1, c2 in EUR, u1 in USD); `shop` is not a customer and
/// `ghost` does not exist until an `OpenAccount` creates it.
const BUYERS: [&str; 5] = ["c1", "c2", "u1", "shop", "ghost"];
/// Ids `OpenAccount` tries: mostly taken, some new.
const NEW_ACCOUNTS: [&str; 5] = ["ghost", "c1", "shop", "gb1", "shop-gb"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
/// First leader time: a realistic epoch-ms value.
const T0: u64 = 1_700_000_000_000;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}
fn cur(s: &str) -> Currency {
    Currency::new(s).unwrap()
}

/// The shop every run starts from, as one batch.
fn setup() -> Batch {
    let mut cmds = Vec::new();
    for (id, kind, c) in [
        ("shop", AccountKind::Merchant, "EUR"),
        ("world", AccountKind::External, "EUR"),
        ("shop-us", AccountKind::Merchant, "USD"),
        ("world-us", AccountKind::External, "USD"),
        ("c1", AccountKind::Customer, "EUR"),
        ("c2", AccountKind::Customer, "EUR"),
        ("u1", AccountKind::Customer, "USD"),
    ] {
        cmds.push(Command::OpenAccount {
            id: acct(id),
            kind,
            currency: cur(c),
        });
    }
    for (s, c, price) in [("A", "EUR", 150), ("B", "EUR", 999), ("U", "USD", 275)] {
        cmds.push(Command::UpsertProduct {
            sku: sku(s),
            name: ProductName::new(s).unwrap(),
            price: Minor(price),
            currency: cur(c),
            active: true,
        });
        cmds.push(Command::Restock {
            sku: sku(s),
            qty: 25,
        });
    }
    // c2 starts nearly broke, so paying is often refused for want of funds.
    for (a, amount) in [("c1", 50_000), ("c2", 800), ("u1", 50_000)] {
        cmds.push(Command::Deposit {
            account: acct(a),
            amount: Minor(amount),
        });
    }
    Batch {
        leader_time_ms: T0,
        commands: cmds
            .into_iter()
            .enumerate()
            .map(|(i, command)| Envelope {
                request_id: RequestId::new(format!("setup-{i}")).unwrap(),
                principal: Principal::Admin,
                origin: None,
                command,
            })
            .collect(),
    }
}

fn arb_sku() -> impl Strategy<Value = Sku> {
    prop::sample::select(SKUS.to_vec()).prop_map(sku)
}
fn arb_buyer() -> impl Strategy<Value = AccountId> {
    prop::sample::select(BUYERS.to_vec()).prop_map(acct)
}
fn arb_currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(CURRENCIES.to_vec()).prop_map(cur)
}
fn arb_kind() -> impl Strategy<Value = AccountKind> {
    prop_oneof![
        Just(AccountKind::Customer),
        Just(AccountKind::Merchant),
        Just(AccountKind::External)
    ]
}

/// Who sends an operator command: mostly an admin, sometimes someone who
/// may not (a customer, the cluster itself).
fn mostly_admin() -> impl Strategy<Value = Principal> {
    prop_oneof![
        8 => Just(Principal::Admin),
        1 => Just(Principal::System),
        1 => arb_buyer().prop_map(Principal::customer),
    ]
}

/// Who acts on an order: the owner is one of the customers, so a random
/// customer is sometimes the owner and sometimes forbidden.
fn anyone() -> impl Strategy<Value = Principal> {
    prop_oneof![
        3 => Just(Principal::Admin),
        1 => Just(Principal::System),
        4 => arb_buyer().prop_map(Principal::customer),
    ]
}

/// An order line; mostly within one currency's SKUs so that orders get
/// placed, sometimes anything (unknown SKU, zero quantity, mixed currency).
fn arb_lines() -> impl Strategy<Value = (AccountId, Vec<LineRequest>)> {
    let line = |skus: Vec<&'static str>, qty: std::ops::Range<u64>| {
        (prop::sample::select(skus), qty).prop_map(|(s, qty)| LineRequest { sku: sku(s), qty })
    };
    prop_oneof![
        6 => (prop::sample::select(vec!["c1", "c2"]), prop::collection::vec(line(vec!["A", "B"], 1..7), 1..5))
            .prop_map(|(c, l)| (acct(c), l)),
        2 => prop::collection::vec(line(vec!["U"], 1..7), 1..3).prop_map(|l| (acct("u1"), l)),
        2 => (arb_buyer(), prop::collection::vec(line(SKUS.to_vec(), 0..8), 1..5)),
    ]
}

/// Every command of the state machine. Two fields are placeholders that
/// [`Run::resolve`] maps onto the run's state when the batch is built:
/// an order id (any u64, mapped onto the orders placed so far plus one that
/// does not exist) and `ExpireDue::now_ms` (an offset around leader time).
fn arb_command() -> impl Strategy<Value = (Principal, Command)> {
    let order = any::<u64>().prop_map(OrderId);
    prop_oneof![
        2 => (mostly_admin(), arb_sku(), 1i64..400, prop::option::weighted(0.1, arb_currency()), prop::bool::weighted(0.85))
            .prop_map(|(p, sku, price, other_currency, active)| {
                let name = ProductName::new(format!("product {sku}")).unwrap();
                let home = if sku.as_str() == "U" { "USD" } else { "EUR" };
                let currency = other_currency.unwrap_or_else(|| cur(home));
                (p, Command::UpsertProduct { sku, name, price: Minor(price), currency, active })
            }),
        3 => (mostly_admin(), arb_sku(), 0u64..20)
            .prop_map(|(p, sku, qty)| (p, Command::Restock { sku, qty })),
        1 => (mostly_admin(), arb_sku(), 0u64..40)
            .prop_map(|(p, sku, on_hand)| (p, Command::SetStock { sku, on_hand })),
        1 => (mostly_admin(), prop::sample::select(NEW_ACCOUNTS.to_vec()), arb_kind(), arb_currency())
            .prop_map(|(p, id, kind, currency)| {
                (p, Command::OpenAccount { id: acct(id), kind, currency })
            }),
        2 => (mostly_admin(), prop::sample::select(vec!["c1", "c2", "u1", "shop", "world", "ghost"]), 0i64..5_000)
            .prop_map(|(p, a, amount)| {
                (p, Command::Deposit { account: acct(a), amount: Minor(amount) })
            }),
        8 => (arb_lines(), prop::option::of(1u32..120), 0u8..10)
            .prop_map(|((customer, lines), ttl_seconds, who)| {
                // Mostly the customer itself, sometimes an admin, rarely
                // someone else.
                let p = match who {
                    0..=5 => Principal::customer(customer.clone()),
                    6..=8 => Principal::Admin,
                    _ => Principal::customer(acct("c2")),
                };
                (p, Command::PlaceOrder { customer, lines, ttl_seconds })
            }),
        6 => (anyone(), order.clone()).prop_map(|(p, order)| (p, Command::PayOrder { order })),
        2 => (anyone(), order.clone()).prop_map(|(p, order)| (p, Command::CancelOrder { order })),
        3 => (mostly_admin(), order.clone()).prop_map(|(p, order)| (p, Command::ShipOrder { order })),
        2 => (mostly_admin(), order.clone()).prop_map(|(p, order)| (p, Command::DeliverOrder { order })),
        2 => (mostly_admin(), order, any::<bool>())
            .prop_map(|(p, order, restock)| (p, Command::RefundOrder { order, restock })),
        2 => (
            prop_oneof![6 => Just(Principal::System), 2 => Just(Principal::Admin), 1 => arb_buyer().prop_map(Principal::customer)],
            0u64..300_000,
        )
            .prop_map(|(p, now_ms)| (p, Command::ExpireDue { now_ms })),
    ]
}

/// One command of a batch: a fresh request, or a retry of an earlier key
/// with the very same request or a different one.
#[derive(Clone, Debug)]
enum Step {
    Fresh(Principal, Command),
    RetrySame(Index),
    RetryOther(Index, Principal, Command),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => arb_command().prop_map(|(p, c)| Step::Fresh(p, c)),
        2 => any::<Index>().prop_map(Step::RetrySame),
        1 => (any::<Index>(), arb_command()).prop_map(|(i, (p, c))| Step::RetryOther(i, p, c)),
    ]
}

/// How the leader's clock moves before a batch.
#[derive(Clone, Debug)]
enum Clock {
    /// A few ms to seconds.
    Tick(u64),
    /// Past the 1..120 s reservations of the orders placed so far.
    PastExpiry(u64),
    /// A new leader whose clock is behind.
    Back(u64),
    /// Past the idempotency retention window: old keys are pruned.
    PastRetention,
}

fn arb_clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        5 => (0u64..3_000).prop_map(Clock::Tick),
        3 => (60_000u64..200_000).prop_map(Clock::PastExpiry),
        1 => (1u64..90_000).prop_map(Clock::Back),
        1 => Just(Clock::PastRetention),
    ]
}

/// What one batch of the log is.
#[derive(Clone, Debug)]
enum Spec {
    /// Up to 20 commands after the clock moves.
    Mixed(Clock, Vec<Step>),
    /// Only exact replays of earlier, still remembered requests, at the
    /// previous leader time.
    ReplayOnly(Vec<Index>),
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        5 => (arb_clock(), prop::collection::vec(arb_step(), 0..=20))
            .prop_map(|(c, s)| Spec::Mixed(c, s)),
        1 => prop::collection::vec(any::<Index>(), 1..=10).prop_map(Spec::ReplayOnly),
    ]
}

/// What the state machine must remember of a key (docs/DOMAIN.md, Idempotency).
struct Remembered {
    fingerprint: [u8; 32],
    result: CommandResult,
    at_ms: u64,
}

/// A run: the tables, a replica fed the same batches, the recorded log, and
/// the model of the idempotency records.
struct Run {
    t: MemTables,
    replica: MemTables,
    log: Vec<Batch>,
    sent: Vec<Envelope>,
    remembered: BTreeMap<RequestId, Remembered>,
    leader_ms: u64,
    clock_ms: u64,
    n: u64,
}

impl Run {
    fn new() -> Self {
        Run {
            t: MemTables::new(),
            replica: MemTables::new(),
            log: Vec::new(),
            sent: Vec::new(),
            remembered: BTreeMap::new(),
            leader_ms: T0,
            clock_ms: T0,
            n: 0,
        }
    }

    fn envelope(&mut self, step: Step) -> Option<Envelope> {
        let fresh = |n: u64, principal, command| Envelope {
            request_id: RequestId::new(format!("r{n}")).unwrap(),
            principal,
            origin: None,
            command,
        };
        let env = match step {
            Step::Fresh(p, c) => {
                self.n += 1;
                fresh(self.n, p, self.resolve(c))
            }
            Step::RetrySame(i) if !self.sent.is_empty() => {
                self.sent[i.index(self.sent.len())].clone()
            }
            Step::RetryOther(i, p, c) if !self.sent.is_empty() => Envelope {
                request_id: self.sent[i.index(self.sent.len())].request_id.clone(),
                principal: p,
                origin: None,
                command: self.resolve(c),
            },
            _ => return None,
        };
        Some(env)
    }

    /// Maps a generated command's placeholders onto this run: `ExpireDue`
    /// names a time from 150 s before to 150 s after the current leader time
    /// (a future one is capped by the state machine), and an order id picks
    /// one of the orders placed so far or the next, not yet existing, id.
    fn resolve(&self, c: Command) -> Command {
        let next = keel_domain::query::summary(&self.t).unwrap().next_order_id;
        let id = |OrderId(k): OrderId| OrderId(1 + k % next);
        match c {
            Command::ExpireDue { now_ms } => Command::ExpireDue {
                now_ms: (self.leader_ms + now_ms).saturating_sub(150_000),
            },
            Command::PayOrder { order } => Command::PayOrder { order: id(order) },
            Command::CancelOrder { order } => Command::CancelOrder { order: id(order) },
            Command::ShipOrder { order } => Command::ShipOrder { order: id(order) },
            Command::DeliverOrder { order } => Command::DeliverOrder { order: id(order) },
            Command::RefundOrder { order, restock } => Command::RefundOrder {
                order: id(order),
                restock,
            },
            other => other,
        }
    }

    /// Applies a batch to the tables and the replica, and checks everything
    /// that must hold after it.
    fn apply(&mut self, batch: Batch) -> Result<Vec<Applied>, TestCaseError> {
        let clock = StateClock::advance(self.clock_ms, batch.leader_time_ms);
        self.clock_ms = clock.now;
        // The model forgets what the state machine prunes (the universe is
        // far below the per-batch pruning bound).
        if let Some(cutoff) = self.clock_ms.checked_sub(IDEMPOTENCY_RETENTION_MS) {
            self.remembered.retain(|_, r| r.at_ms >= cutoff);
        }
        let out = apply_batch(&mut self.t, &batch).unwrap();
        prop_assert_eq!(out.len(), batch.commands.len());
        for (env, applied) in batch.commands.iter().zip(&out) {
            let fingerprint = env.fingerprint();
            match self.remembered.get(&env.request_id) {
                Some(r) if r.fingerprint == fingerprint => {
                    prop_assert!(applied.replayed, "{:?} not replayed", env.request_id);
                    prop_assert_eq!(&applied.result, &r.result);
                }
                Some(_) => {
                    prop_assert!(!applied.replayed);
                    prop_assert_eq!(
                        &applied.result,
                        &Err(DomainError::IdempotencyConflict {
                            request_id: env.request_id.clone()
                        })
                    );
                }
                None => {
                    prop_assert!(!applied.replayed);
                    let conflict =
                        matches!(applied.result, Err(DomainError::IdempotencyConflict { .. }));
                    prop_assert!(!conflict, "a new key cannot conflict");
                    self.remembered.insert(
                        env.request_id.clone(),
                        Remembered {
                            fingerprint,
                            result: applied.result.clone(),
                            at_ms: clock.deadline_base,
                        },
                    );
                }
            }
        }
        let v = check_invariants(&self.t).unwrap();
        prop_assert!(
            v.is_empty(),
            "violations after batch {}: {:#?}",
            self.log.len(),
            v
        );
        let replica_out = apply_batch(&mut self.replica, &batch).unwrap();
        prop_assert_eq!(&replica_out, &out, "the replica got other results");
        prop_assert_eq!(digest(&self.replica).unwrap(), digest(&self.t).unwrap());
        self.sent.extend(batch.commands.iter().cloned());
        self.log.push(batch);
        Ok(out)
    }

    /// What the leader's ticks do when the state clock lags its time by
    /// more than one entry may move it: empty entries, on both tables and
    /// in the log, until it is within a step (checked by the next batch).
    fn catch_up_clock(&mut self) {
        while self.leader_ms > self.clock_ms.saturating_add(CLOCK_STEP_MAX_MS) {
            let tick = Batch {
                leader_time_ms: self.leader_ms,
                commands: Vec::new(),
            };
            apply_batch(&mut self.t, &tick).unwrap();
            apply_batch(&mut self.replica, &tick).unwrap();
            self.clock_ms = StateClock::advance(self.clock_ms, self.leader_ms).now;
            self.log.push(tick);
        }
        if let Some(cutoff) = self.clock_ms.checked_sub(IDEMPOTENCY_RETENTION_MS) {
            self.remembered.retain(|_, r| r.at_ms >= cutoff);
        }
    }

    fn run(&mut self, spec: Spec) -> Result<(), TestCaseError> {
        match spec {
            Spec::Mixed(clock, steps) => {
                self.leader_ms = match clock {
                    Clock::Tick(d) | Clock::PastExpiry(d) => self.leader_ms + d,
                    Clock::Back(d) => self.leader_ms - d,
                    Clock::PastRetention => self.clock_ms + IDEMPOTENCY_RETENTION_MS + 1,
                };
                self.catch_up_clock();
                let commands = steps.into_iter().filter_map(|s| self.envelope(s)).collect();
                self.apply(Batch {
                    leader_time_ms: self.leader_ms,
                    commands,
                })?;
            }
            Spec::ReplayOnly(picks) => {
                let still_known: Vec<Envelope> = self
                    .sent
                    .iter()
                    .filter(|e| {
                        self.remembered
                            .get(&e.request_id)
                            .is_some_and(|r| r.fingerprint == e.fingerprint())
                    })
                    .cloned()
                    .collect();
                if still_known.is_empty() {
                    return Ok(());
                }
                let commands = picks
                    .iter()
                    .map(|i| still_known[i.index(still_known.len())].clone())
                    .collect();
                let before = digest(&self.t).unwrap();
                // At the previous leader time: replays move nothing, not
                // even the clock.
                let out = self.apply(Batch {
                    leader_time_ms: self.leader_ms,
                    commands,
                })?;
                prop_assert!(out.iter().all(|a| a.replayed));
                prop_assert_eq!(
                    before,
                    digest(&self.t).unwrap(),
                    "a replay changed the state"
                );
            }
        }
        Ok(())
    }
}

/// Cases per run unless `PROPTEST_CASES` says otherwise: enough to reach
/// every command outcome, few enough for a debug `cargo test` in seconds.
const CASES_DEFAULT: u32 = 64;
/// The seed unless `PROPTEST_RNG_SEED` says otherwise: `cargo test` runs the
/// same cases every time; set another seed (or more cases) to search further.
const RNG_SEED_DEFAULT: u64 = 0x6b65_656c;

fn config() -> ProptestConfig {
    // `default()` reads the PROPTEST_* environment; fill in only what it
    // leaves unset.
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = CASES_DEFAULT;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(RNG_SEED_DEFAULT);
    }
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_interleavings_keep_the_invariants_and_replay_identically(
        specs in prop::collection::vec(arb_spec(), 1..=12)
    ) {
        let mut run = Run::new();
        let out = run.apply(setup())?;
        prop_assert!(out.iter().all(|a| a.result.is_ok()), "setup failed: {:?}", out);
        for spec in specs {
            run.run(spec)?;
        }
        // The recorded log, replayed from scratch, gives the same state.
        let mut fresh = MemTables::new();
        for b in &run.log {
            apply_batch(&mut fresh, b).unwrap();
        }
        prop_assert_eq!(digest(&fresh).unwrap(), digest(&run.t).unwrap());
        // Every request still remembered, sent again exactly, changes nothing.
        let again: Vec<Envelope> = run
            .sent
            .iter()
            .filter(|e| {
                run.remembered
                    .get(&e.request_id)
                    .is_some_and(|r| r.fingerprint == e.fingerprint())
            })
            .cloned()
            .collect();
        let before = digest(&run.t).unwrap();
        for chunk in again.chunks(keel_domain::command::BATCH_COMMANDS_MAX) {
            let leader_time_ms = run.leader_ms;
            let out = run.apply(Batch { leader_time_ms, commands: chunk.to_vec() })?;
            prop_assert!(out.iter().all(|a| a.replayed));
        }
        prop_assert_eq!(before, digest(&run.t).unwrap());
    }
}
