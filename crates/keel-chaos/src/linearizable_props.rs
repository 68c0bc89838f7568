//! Properties a broken checker fails, on generated single-SKU histories:
//!
//! - a history recorded around a sequential run of Keel's rules is accepted;
//! - the same history with one answer or one interval changed so that no
//!   linearization exists is rejected: each mutation below is made only
//!   where a short argument (given beside it) proves that, so a rejection
//!   is never the checker's luck and a miss is always the checker's fault;
//! - on small concurrent histories, valid or not, every key's verdict is
//!   the one an exhaustive search over every real-time-consistent order
//!   finds, with a model of Keel's rules written here, apart from the
//!   checker's.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use keel_domain::{AccountId, OrderId, OrderStatus, RequestId, Sku};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::{check_order, check_stock, check_stock_with, Limits, Verdict};
use crate::history::{fail, History, Op, OpKind, OpResult, Outcome};

/// Cases per property unless `PROPTEST_CASES` says otherwise: enough to
/// apply every mutation many times, few enough for a debug `cargo test` in
/// seconds.
const CASES_DEFAULT: u32 = 512;

/// The seed unless `PROPTEST_RNG_SEED` says otherwise, so `cargo test` runs
/// the same cases every time; another seed (or more cases) searches further.
const RNG_SEED_DEFAULT: u64 = 0x6c69_6e65;

/// Nanoseconds between the linearization points of consecutive generated
/// ops; an op's interval reaches up to a chosen spread either side.
pub(super) const GAP_NS: u64 = 100;

/// The gap of the small histories searched exhaustively: coarse, so that
/// intervals often touch (touching intervals are concurrent).
const SMALL_GAP_NS: u64 = 10;

/// Where the first linearization point lies: past any spread, so no
/// interval starts before zero.
const FIRST_POINT_NS: u64 = 10_000;

/// An order no place ever makes.
const NO_SUCH_ORDER: OrderId = OrderId(10_000);

/// Most ops of a history the exhaustive search is compared on: 7! orders at
/// most, a few milliseconds of a debug build.
const BRUTE_FORCE_OPS_MAX: usize = 7;

fn config() -> Config {
    // `default()` reads the PROPTEST_* environment; fill in what it leaves.
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = CASES_DEFAULT;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(RNG_SEED_DEFAULT);
    }
    // A runner outside `proptest!` has no source file to store cases in.
    c.failure_persistence = None;
    c
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = TestRunner::new(config()).run(&strategy, test) {
        panic!("{e}");
    }
}

/// SKU `n` of a generated history: "A", "B", ...
pub(super) fn sku_at(n: usize) -> Sku {
    let letter = char::from(b'A' + (n % 26) as u8);
    Sku::new(letter.to_string()).expect("valid sku")
}

/// The SKU of the single-SKU histories here.
fn sku() -> Sku {
    sku_at(0)
}

// ----- generating linearizable histories -----------------------------------------

/// One generated op; what it targets is reduced to what exists.
#[derive(Clone, Debug)]
pub(super) struct Step {
    /// 0 place, 1 pay, 2 cancel, 3 read stock, 4 read order.
    action: u8,
    /// Which SKU a place or stock read names, modulo the SKUs there are.
    sku: usize,
    qty: u64,
    /// Which order a client knows, the latest first; past them, an order
    /// no place makes.
    target: usize,
    /// 0..=9 answered, 10 unknown and applied, 11 unknown and not applied,
    /// 12 refused as unavailable (not applied), 13 a pay short of money.
    fate: u8,
    before_ns: u64,
    after_ns: u64,
}

/// Steps whose intervals reach up to `spread` units of `unit_ns` either
/// side of their point, and whose targets are among the latest `targets`
/// known orders (or none).
pub(super) fn steps(
    len: std::ops::RangeInclusive<usize>,
    spread: u64,
    unit_ns: u64,
    targets: usize,
) -> impl Strategy<Value = Vec<Step>> {
    let step = (
        (0u8..5, 0usize..2, 1u64..4, 0..targets),
        (0u8..14, 0..=spread, 0..=spread),
    );
    let step = step.prop_map(
        move |((action, sku, qty, target), (fate, before, after))| Step {
            action,
            sku,
            qty,
            target,
            fate,
            before_ns: before * unit_ns,
            after_ns: after * unit_ns,
        },
    );
    proptest::collection::vec(step, len)
}

/// A sequential run of Keel's stock and order rules.
struct Shop {
    /// Per SKU.
    available: Vec<u64>,
    /// Every order made, acknowledged or not: SKU, quantity and status;
    /// order `n` is at `n - 1`.
    orders: Vec<(usize, u64, OrderStatus)>,
    /// Orders whose place was acknowledged, the only ones a client names.
    known: Vec<OrderId>,
}

/// Runs `steps` one after the other and records each around its point in
/// that sequence (`gap_ns` apart), so the sequence itself is a witness that
/// the history is linearizable. Without `unknown`, no op's answer is lost.
/// `initial` is each SKU's stock (`sku_at` names them).
pub(super) fn simulate(initial: &[u64], steps: &[Step], unknown: bool, gap_ns: u64) -> Vec<Op> {
    let mut shop = Shop {
        available: initial.to_vec(),
        orders: Vec::new(),
        known: Vec::new(),
    };
    let mut ops = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let target = shop
            .known
            .iter()
            .rev()
            .nth(s.target)
            .copied()
            .unwrap_or(NO_SUCH_ORDER);
        let (applies, answered) = match s.fate {
            10 if unknown => (true, false),
            11 if unknown => (false, false),
            12 => (false, true),
            _ => (true, true),
        };
        // An op on an order nobody has is answered: a lost cancel of an
        // order no acknowledged place names makes the stock check skip,
        // which is its design, not what is tested here.
        let on_nothing = target == NO_SUCH_ORDER && matches!(s.action, 1 | 2 | 4);
        let (applies, answered) = if on_nothing {
            (true, true)
        } else {
            (applies, answered)
        };
        let key = RequestId::new(format!("k{i}")).expect("valid key");
        let at = s.sku % initial.len();
        let (kind, result) = match s.action {
            0 => {
                let kind = OpKind::PlaceOrder {
                    customer: AccountId::new(format!("c{}", i % 5)).expect("valid account"),
                    sku: sku_at(at),
                    qty: s.qty,
                    key,
                };
                let result = if shop.available[at] < s.qty {
                    Outcome::Fail(fail::OUT_OF_STOCK.to_owned())
                } else if applies {
                    shop.available[at] -= s.qty;
                    shop.orders.push((at, s.qty, OrderStatus::Reserved));
                    let order = OrderId(shop.orders.len() as u64);
                    if answered {
                        shop.known.push(order);
                    }
                    Outcome::Ok(OpResult::Placed { order, qty: s.qty })
                } else {
                    // Not applied; the outcome below says unknown or refused.
                    Outcome::Fail(fail::UNAVAILABLE.to_owned())
                };
                (kind, result)
            }
            1 | 2 => {
                let (kind, to) = if s.action == 1 {
                    let kind = OpKind::Pay { order: target, key };
                    (kind, OrderStatus::Paid)
                } else {
                    let kind = OpKind::Cancel { order: target, key };
                    (kind, OrderStatus::Cancelled)
                };
                let short_of_money = s.action == 1 && s.fate == 13;
                let slot = (target.0 as usize)
                    .checked_sub(1)
                    .and_then(|n| shop.orders.get_mut(n));
                let result = match slot {
                    None => Outcome::Fail(fail::NOT_FOUND.to_owned()),
                    Some((_, _, st)) if !st.can_become(to) => {
                        Outcome::Fail(fail::INVALID_TRANSITION.to_owned())
                    }
                    Some(_) if short_of_money => Outcome::Fail(fail::INSUFFICIENT_FUNDS.to_owned()),
                    Some((o_sku, qty, st)) => {
                        if applies {
                            *st = to;
                            if to == OrderStatus::Cancelled {
                                shop.available[*o_sku] += *qty;
                            }
                        }
                        Outcome::Ok(OpResult::Status { status: to })
                    }
                };
                (kind, result)
            }
            3 => (
                OpKind::ReadStock { sku: sku_at(at) },
                Outcome::Ok(OpResult::Stock {
                    available: shop.available[at],
                }),
            ),
            _ => {
                let status = (target.0 as usize)
                    .checked_sub(1)
                    .and_then(|n| shop.orders.get(n))
                    .map(|(_, _, st)| *st);
                (
                    OpKind::ReadOrder { order: target },
                    Outcome::Ok(OpResult::Order { status }),
                )
            }
        };
        let outcome = match (applies, answered) {
            (_, false) => Outcome::Unknown("timeout".to_owned()),
            (false, true) => Outcome::Fail(fail::UNAVAILABLE.to_owned()),
            (true, true) => result,
        };
        let point = FIRST_POINT_NS + gap_ns * i as u64;
        ops.push(Op {
            process: i as u64 % 5,
            invoke_ns: point - s.before_ns,
            complete_ns: point + s.after_ns,
            kind,
            outcome,
        });
    }
    ops
}

// ----- judging --------------------------------------------------------------------

fn history(ops: &[Op]) -> History {
    History::from_ops(ops.to_vec()).expect("well-formed ops")
}

/// Every order an op names.
fn orders_named(ops: &[Op]) -> BTreeSet<OrderId> {
    ops.iter()
        .filter_map(|op| match (&op.kind, &op.outcome) {
            (OpKind::PlaceOrder { .. }, Outcome::Ok(OpResult::Placed { order, .. })) => {
                Some(*order)
            }
            (OpKind::Pay { order, .. } | OpKind::Cancel { order, .. }, _)
            | (OpKind::ReadOrder { order }, _) => Some(*order),
            _ => None,
        })
        .collect()
}

/// The checker's verdict on every key of the history: the SKU's stock and
/// each order named.
fn verdicts(ops: &[Op], initial: u64) -> Vec<(String, Verdict)> {
    let h = history(ops);
    let mut out = vec![("stock".to_owned(), check_stock(&h, &sku(), initial))];
    for order in orders_named(ops) {
        out.push((format!("order {order}"), check_order(&h, order)));
    }
    out
}

fn all_accepted(ops: &[Op], initial: u64) -> Result<(), TestCaseError> {
    for (key, verdict) in verdicts(ops, initial) {
        prop_assert!(verdict.is_linearizable(), "{key}: {verdict}");
    }
    Ok(())
}

/// A rejection, not a skip: some key was found not linearizable.
fn rejected(ops: &[Op], initial: u64, what: &str) -> Result<(), TestCaseError> {
    let all = verdicts(ops, initial);
    let found = all
        .iter()
        .any(|(_, v)| matches!(v, Verdict::NotLinearizable { .. }));
    prop_assert!(found, "{what} was not rejected: {all:?}");
    Ok(())
}

// ----- bounds that hold in every linearization ---------------------------------------

fn is_unknown(op: &Op) -> bool {
    matches!(op.outcome, Outcome::Unknown(_))
}

fn place_qty(op: &Op) -> Option<u64> {
    match op.kind {
        OpKind::PlaceOrder { qty, .. } => Some(qty),
        _ => None,
    }
}

/// Places that may have reserved units: acknowledged or unknown.
fn may_reserve(op: &Op) -> Option<u64> {
    let qty = place_qty(op)?;
    let reserving = matches!(op.outcome, Outcome::Ok(OpResult::Placed { .. })) || is_unknown(op);
    reserving.then_some(qty)
}

/// Units that can have been reserved by time `t` by ops other than
/// `except`: only places reserve, and a place invoked after `t` cannot be
/// ordered before anything that completed by `t`. Cancels only add, so
/// `initial` minus this is a floor on the stock up to `t`.
fn reservable_by(ops: &[Op], t: u64, except: Option<usize>) -> u64 {
    ops.iter()
        .enumerate()
        .filter(|(i, op)| Some(*i) != except && op.invoke_ns <= t)
        .filter_map(|(_, op)| may_reserve(op))
        .sum()
}

/// Units held at every point of `[from, to]`: orders whose place was
/// acknowledged before `from`, unless a cancel that may have worked was
/// invoked by `to`. Pays keep units held, so `initial` minus this is a
/// ceiling on the stock read in that interval.
fn held_throughout(ops: &[Op], from: u64, to: u64) -> u64 {
    let may_release: BTreeSet<OrderId> = ops
        .iter()
        .filter(|op| op.invoke_ns <= to && !matches!(op.outcome, Outcome::Fail(_)))
        .filter_map(|op| match op.kind {
            OpKind::Cancel { order, .. } => Some(order),
            _ => None,
        })
        .collect();
    ops.iter()
        .filter(|op| op.complete_ns < from)
        .filter_map(|op| match (&op.kind, &op.outcome) {
            (OpKind::PlaceOrder { qty, .. }, Outcome::Ok(OpResult::Placed { order, .. }))
                if !may_release.contains(order) =>
            {
                Some(*qty)
            }
            _ => None,
        })
        .sum()
}

fn stock_read(op: &Op) -> Option<u64> {
    match (&op.kind, &op.outcome) {
        (OpKind::ReadStock { .. }, Outcome::Ok(OpResult::Stock { available })) => Some(*available),
        _ => None,
    }
}

fn order_read(op: &Op) -> Option<(OrderId, Option<OrderStatus>)> {
    match (&op.kind, &op.outcome) {
        (OpKind::ReadOrder { order }, Outcome::Ok(OpResult::Order { status })) => {
            Some((*order, *status))
        }
        _ => None,
    }
}

/// The acknowledged place of `order`.
fn place_of(ops: &[Op], order: OrderId) -> Option<&Op> {
    ops.iter().find(
        |op| matches!(&op.outcome, Outcome::Ok(OpResult::Placed { order: o, .. }) if *o == order),
    )
}

// ----- mutations that leave no linearization ----------------------------------------

/// The ways a valid history is broken; each returns the broken ops, or
/// `None` when op `i` offers no such break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    /// A stock read above what the orders placed before it and not
    /// possibly cancelled leave.
    StaleRead,
    /// A stock read below what the places invoked before it ended can
    /// have taken.
    ReadFromTheFuture,
    /// A stock read moved before the invocation of a place whose
    /// reservation it saw.
    ReadBeforeItsWrite,
    /// An order read moved before its order's place was invoked.
    OrderReadBeforeItsPlace,
    /// An order read seeing paid or cancelled before any pay or cancel of
    /// it was invoked.
    StatusFromTheFuture,
    /// An order read seeing reserved after its pay or cancel completed.
    StatusUndone,
    /// A place refused as out of stock although its quantity was left at
    /// every point of its interval.
    OutOfStockWhenItFits,
}

const BREAKS: [Break; 7] = [
    Break::StaleRead,
    Break::ReadFromTheFuture,
    Break::ReadBeforeItsWrite,
    Break::OrderReadBeforeItsPlace,
    Break::StatusFromTheFuture,
    Break::StatusUndone,
    Break::OutOfStockWhenItFits,
];

fn set_outcome(ops: &[Op], i: usize, outcome: Outcome) -> Vec<Op> {
    let mut out = ops.to_vec();
    out[i].outcome = outcome;
    out
}

fn with_stock_read(ops: &[Op], i: usize, available: u64) -> Vec<Op> {
    set_outcome(ops, i, Outcome::Ok(OpResult::Stock { available }))
}

fn with_order_read(ops: &[Op], i: usize, status: Option<OrderStatus>) -> Vec<Op> {
    set_outcome(ops, i, Outcome::Ok(OpResult::Order { status }))
}

impl Break {
    fn apply(self, ops: &[Op], initial: u64, i: usize, pick: u64) -> Option<Vec<Op>> {
        let op = &ops[i];
        match self {
            Break::StaleRead => {
                // At most `ceiling` is left anywhere in the read's interval
                // (see `held_throughout`); any value above it up to the
                // initial stock is stale.
                stock_read(op)?;
                let ceiling =
                    initial.saturating_sub(held_throughout(ops, op.invoke_ns, op.complete_ns));
                (ceiling < initial)
                    .then(|| with_stock_read(ops, i, ceiling + 1 + pick % (initial - ceiling)))
            }
            Break::ReadFromTheFuture => {
                // At least `floor` is left anywhere up to the read's end
                // (see `reservable_by`); less needs a place invoked later.
                stock_read(op)?;
                let floor = initial.saturating_sub(reservable_by(ops, op.complete_ns, None));
                (floor > 0).then(|| with_stock_read(ops, i, pick % floor))
            }
            Break::ReadBeforeItsWrite => {
                // The latest end, just before some place's invocation, at
                // which the value read is below the floor: the read now ends
                // there (and begins no later).
                let seen = stock_read(op)?;
                let end = ops
                    .iter()
                    .filter(|p| may_reserve(p).is_some() && p.invoke_ns <= op.complete_ns)
                    .map(|p| p.invoke_ns - 1)
                    .filter(|t| seen < initial.saturating_sub(reservable_by(ops, *t, None)))
                    .max()?;
                let mut out = ops.to_vec();
                out[i].invoke_ns = out[i].invoke_ns.min(end);
                out[i].complete_ns = end;
                Some(out)
            }
            Break::OrderReadBeforeItsPlace => {
                // The order exists only from its acknowledged place on (ids
                // are unique), and the read now ends before that began.
                let (order, status) = order_read(op)?;
                status?;
                let start = place_of(ops, order)?.invoke_ns.checked_sub(1)?;
                let mut out = ops.to_vec();
                out[i].invoke_ns = out[i].invoke_ns.min(start);
                out[i].complete_ns = start;
                Some(out)
            }
            Break::StatusFromTheFuture => {
                // Only a pay makes an order paid and only a cancel makes it
                // cancelled; none that may have worked began by the read's
                // end.
                let (order, _) = order_read(op)?;
                place_of(ops, order)?;
                let begun = |paying: bool| {
                    ops.iter().any(|o| {
                        let named = match o.kind {
                            OpKind::Pay { order: n, .. } => paying && n == order,
                            OpKind::Cancel { order: n, .. } => !paying && n == order,
                            _ => false,
                        };
                        named
                            && o.invoke_ns <= op.complete_ns
                            && !matches!(o.outcome, Outcome::Fail(_))
                    })
                };
                let status = match (begun(true), begun(false)) {
                    (false, _) => OrderStatus::Paid,
                    (true, false) => OrderStatus::Cancelled,
                    (true, true) => return None,
                };
                Some(with_order_read(ops, i, Some(status)))
            }
            Break::StatusUndone => {
                // Nothing leads back to reserved.
                let (order, _) = order_read(op)?;
                let moved = ops.iter().any(|o| {
                    matches!(o.kind, OpKind::Pay { order: n, .. } | OpKind::Cancel { order: n, .. } if n == order)
                        && matches!(o.outcome, Outcome::Ok(_))
                        && o.complete_ns < op.invoke_ns
                });
                moved.then(|| with_order_read(ops, i, Some(OrderStatus::Reserved)))
            }
            Break::OutOfStockWhenItFits => {
                // Every other reservation by the place's end leaves its
                // quantity. (Unknown places present, the order's cancels
                // would make the stock check skip; keep to orders without.)
                let qty = place_qty(op)?;
                let Outcome::Ok(OpResult::Placed { order, .. }) = op.outcome else {
                    return None;
                };
                let touched = ops.iter().any(|o| {
                    matches!(o.kind, OpKind::Pay { order: n, .. } | OpKind::Cancel { order: n, .. } | OpKind::ReadOrder { order: n } if n == order)
                });
                let floor = initial.saturating_sub(reservable_by(ops, op.complete_ns, Some(i)));
                (!touched && floor >= qty)
                    .then(|| set_outcome(ops, i, Outcome::Fail(fail::OUT_OF_STOCK.to_owned())))
            }
        }
    }
}

#[test]
fn every_proven_violation_of_a_valid_history_is_rejected() {
    let applied: BTreeMap<Break, Cell<u32>> = BREAKS.iter().map(|b| (*b, Cell::new(0))).collect();
    let cases = config().cases;
    let strategy = (0u64..12, steps(1..=40, 2 * GAP_NS, 1, 6), any::<u64>());
    run(strategy, |(initial, steps, pick)| {
        let ops = simulate(&[initial], &steps, true, GAP_NS);
        all_accepted(&ops, initial)?;
        for b in BREAKS {
            // The first op from a random one on that offers this break.
            let n = ops.len();
            let from = (pick % n as u64) as usize;
            let broken = (0..n).find_map(|k| b.apply(&ops, initial, (from + k) % n, pick));
            if let Some(broken) = broken {
                applied[&b].set(applied[&b].get() + 1);
                rejected(&broken, initial, &format!("{b:?}"))?;
            }
        }
        Ok(())
    });
    // A break that was hardly ever applicable proves little.
    eprintln!("breaks applied in {cases} cases: {applied:?}");
    for (b, n) in &applied {
        assert!(
            n.get() >= cases / 16,
            "{b:?} applied in {} of {cases} cases",
            n.get()
        );
    }
}

/// Other answers to an op, each impossible where the op's answer is the
/// only one the model allows (refusals that say nothing, and
/// `insufficient_funds`, which a reserved order may or may not give, are
/// left alone).
fn other_answers(op: &Op, initial: u64, fresh: OrderId) -> Vec<Outcome> {
    let failed = |kind: &str| Outcome::Fail(kind.to_owned());
    match (&op.kind, &op.outcome) {
        (OpKind::ReadStock { .. }, Outcome::Ok(OpResult::Stock { available })) => (0..=initial + 1)
            .filter(|v| v != available)
            .map(|available| Outcome::Ok(OpResult::Stock { available }))
            .collect(),
        (OpKind::ReadOrder { .. }, Outcome::Ok(OpResult::Order { status })) => [
            None,
            Some(OrderStatus::Reserved),
            Some(OrderStatus::Paid),
            Some(OrderStatus::Cancelled),
        ]
        .into_iter()
        .filter(|s| s != status)
        .map(|status| Outcome::Ok(OpResult::Order { status }))
        .collect(),
        (OpKind::PlaceOrder { .. }, Outcome::Ok(OpResult::Placed { .. })) => {
            vec![failed(fail::OUT_OF_STOCK)]
        }
        (OpKind::PlaceOrder { qty, .. }, Outcome::Fail(kind)) if kind == fail::OUT_OF_STOCK => {
            vec![Outcome::Ok(OpResult::Placed {
                order: fresh,
                qty: *qty,
            })]
        }
        (OpKind::Pay { .. } | OpKind::Cancel { .. }, outcome) => {
            let to = match op.kind {
                OpKind::Pay { .. } => OrderStatus::Paid,
                _ => OrderStatus::Cancelled,
            };
            let all = [
                Outcome::Ok(OpResult::Status { status: to }),
                failed(fail::NOT_FOUND),
                failed(fail::INVALID_TRANSITION),
            ];
            if all.contains(outcome) {
                all.into_iter().filter(|o| o != outcome).collect()
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

#[test]
fn any_other_answer_in_a_sequential_history_is_rejected() {
    // Intervals shorter than half the gap never overlap, and no answer is
    // lost: the real-time order is the only order, and the model answers
    // every op in exactly one way, so any other answer fits nowhere.
    let strategy = (0u64..8, steps(1..=25, GAP_NS / 2 - 1, 1, 6), any::<u64>());
    run(strategy, |(initial, steps, pick)| {
        let ops = simulate(&[initial], &steps, false, GAP_NS);
        all_accepted(&ops, initial)?;
        let n = ops.len();
        let fresh = OrderId(2 * NO_SUCH_ORDER.0);
        let changes: Vec<(usize, Outcome)> = (0..n)
            .flat_map(|i| {
                other_answers(&ops[i], initial, fresh)
                    .into_iter()
                    .map(move |o| (i, o))
            })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        // One change from the middle of the list and both ends.
        let chosen = [0, (pick % changes.len() as u64) as usize, changes.len() - 1];
        for k in chosen {
            let (i, outcome) = &changes[k];
            let broken = set_outcome(&ops, *i, outcome.clone());
            rejected(&broken, initial, &format!("#{i} answering {outcome}"))?;
        }
        Ok(())
    });
}

// ----- the exhaustive search ----------------------------------------------------------

/// What an op tells the model, per the checker's documented rules: failures
/// that say nothing about the state (`unavailable`, ...) and reads whose
/// answer was lost are left out.
fn informative(op: &Op) -> bool {
    let refusal = |kinds: &[&str]| match &op.outcome {
        Outcome::Fail(kind) => kinds.contains(&kind.as_str()),
        Outcome::Ok(_) | Outcome::Unknown(_) => true,
    };
    match op.kind {
        OpKind::PlaceOrder { .. } => refusal(&[fail::OUT_OF_STOCK]),
        OpKind::Pay { .. } | OpKind::Cancel { .. } => refusal(&[
            fail::OUT_OF_STOCK,
            fail::NOT_FOUND,
            fail::INVALID_TRANSITION,
            fail::INSUFFICIENT_FUNDS,
        ]),
        OpKind::ReadStock { .. } => matches!(op.outcome, Outcome::Ok(_)),
        OpKind::ReadOrder { .. } => refusal(&[fail::NOT_FOUND]) && !is_unknown(op),
    }
}

/// The status a pay or cancel (`to`) leaves, if its outcome is possible from
/// `status`.
fn transition(
    status: Option<OrderStatus>,
    to: OrderStatus,
    outcome: &Outcome,
) -> Option<Option<OrderStatus>> {
    let allowed = status.is_some_and(|s| s.can_become(to));
    match outcome {
        Outcome::Unknown(_) => Some(if allowed { Some(to) } else { status }),
        Outcome::Ok(OpResult::Status { status: got }) => {
            (*got == to && allowed).then_some(Some(to))
        }
        Outcome::Ok(_) => None,
        Outcome::Fail(kind) => {
            let possible = match kind.as_str() {
                fail::NOT_FOUND => status.is_none(),
                fail::INVALID_TRANSITION => status.is_some() && !allowed,
                fail::INSUFFICIENT_FUNDS => to == OrderStatus::Paid && allowed,
                _ => false,
            };
            possible.then_some(status)
        }
    }
}

/// The SKU's stock, with the acknowledged orders of it.
#[derive(Clone, Debug)]
struct StockState {
    available: u64,
    orders: BTreeMap<OrderId, (u64, OrderStatus)>,
}

fn stock_step(s: &StockState, op: &Op) -> Option<StockState> {
    let mut next = s.clone();
    match (&op.kind, &op.outcome) {
        (OpKind::PlaceOrder { qty, .. }, outcome) => {
            let fits = s.available >= *qty;
            match outcome {
                Outcome::Ok(OpResult::Placed { order, qty: got }) => {
                    if !fits || got != qty || s.orders.contains_key(order) {
                        return None;
                    }
                    next.orders.insert(*order, (*qty, OrderStatus::Reserved));
                }
                Outcome::Unknown(_) => {}
                Outcome::Fail(_) => return (!fits).then_some(next),
                Outcome::Ok(_) => return None,
            }
            if fits {
                next.available -= qty;
            }
        }
        (OpKind::Pay { order, .. } | OpKind::Cancel { order, .. }, outcome) => {
            let to = match op.kind {
                OpKind::Pay { .. } => OrderStatus::Paid,
                _ => OrderStatus::Cancelled,
            };
            let held = s.orders.get(order).copied();
            let after = transition(held.map(|(_, st)| st), to, outcome)?;
            if let (Some((qty, before)), Some(after)) = (held, after) {
                next.orders.insert(*order, (qty, after));
                if before != after && after == OrderStatus::Cancelled {
                    next.available += qty;
                }
            }
        }
        (OpKind::ReadStock { .. }, _) => {
            return (stock_read(op) == Some(s.available)).then_some(next)
        }
        (OpKind::ReadOrder { .. }, _) => return None,
    }
    Some(next)
}

fn order_step(s: &Option<OrderStatus>, op: &Op) -> Option<Option<OrderStatus>> {
    match (&op.kind, &op.outcome) {
        // An unknown place may have made this order, or another one.
        (OpKind::PlaceOrder { .. }, Outcome::Unknown(_)) => {
            Some(Some(s.unwrap_or(OrderStatus::Reserved)))
        }
        (OpKind::PlaceOrder { .. }, _) => s.is_none().then_some(Some(OrderStatus::Reserved)),
        (OpKind::Pay { .. }, outcome) => transition(*s, OrderStatus::Paid, outcome),
        (OpKind::Cancel { .. }, outcome) => transition(*s, OrderStatus::Cancelled, outcome),
        (OpKind::ReadOrder { .. }, Outcome::Ok(OpResult::Order { status })) => {
            (status == s).then_some(*s)
        }
        // `informative` keeps only `not_found`.
        (OpKind::ReadOrder { .. }, Outcome::Fail(_)) => s.is_none().then_some(*s),
        _ => None,
    }
}

/// True when some order of `ops` that respects real time (an op that
/// completed before another was invoked comes first; touching intervals
/// are concurrent), with each `Unknown` op applied at some point after its
/// invocation or never, makes `step` accept every op in turn. Tries every
/// such order, abandoning one only once a prefix of it fails.
fn exists_linearization<S: Clone>(
    ops: &[&Op],
    init: &S,
    step: &impl Fn(&S, &Op) -> Option<S>,
) -> bool {
    fn go<S: Clone>(
        ops: &[&Op],
        done: &mut [bool],
        state: &S,
        step: &impl Fn(&S, &Op) -> Option<S>,
    ) -> bool {
        if ops
            .iter()
            .zip(done.iter())
            .all(|(op, d)| *d || is_unknown(op))
        {
            return true;
        }
        for i in 0..ops.len() {
            let must_wait = ops.iter().enumerate().any(|(j, f)| {
                !done[j] && j != i && !is_unknown(f) && f.complete_ns < ops[i].invoke_ns
            });
            if done[i] || must_wait {
                continue;
            }
            if let Some(next) = step(state, ops[i]) {
                done[i] = true;
                if go(ops, done, &next, step) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], init, step)
}

fn acknowledged(ops: &[Op]) -> BTreeSet<OrderId> {
    ops.iter()
        .filter_map(|op| match op.outcome {
            Outcome::Ok(OpResult::Placed { order, .. }) => Some(order),
            _ => None,
        })
        .collect()
}

/// The exhaustive verdict on the stock: the SKU's places and reads, and the
/// pays and cancels of its acknowledged orders (the others release units
/// nobody knows the quantity of).
fn brute_force_stock(ops: &[Op], initial: u64) -> bool {
    let known = acknowledged(ops);
    let mine: Vec<&Op> = ops
        .iter()
        .filter(|op| informative(op))
        .filter(|op| match op.kind {
            OpKind::PlaceOrder { .. } | OpKind::ReadStock { .. } => true,
            OpKind::Pay { order, .. } | OpKind::Cancel { order, .. } => known.contains(&order),
            OpKind::ReadOrder { .. } => false,
        })
        .collect();
    let init = StockState {
        available: initial,
        orders: BTreeMap::new(),
    };
    exists_linearization(&mine, &init, &stock_step)
}

/// The exhaustive verdict on one order: its acknowledged place, every
/// unknown place (any may have made it), and its pays, cancels and reads.
fn brute_force_order(ops: &[Op], order: OrderId) -> bool {
    let mine: Vec<&Op> = ops
        .iter()
        .filter(|op| informative(op))
        .filter(|op| match (&op.kind, &op.outcome) {
            (OpKind::PlaceOrder { .. }, Outcome::Ok(OpResult::Placed { order: o, .. })) => {
                *o == order
            }
            (OpKind::PlaceOrder { .. }, outcome) => matches!(outcome, Outcome::Unknown(_)),
            (
                OpKind::Pay { order: o, .. }
                | OpKind::Cancel { order: o, .. }
                | OpKind::ReadOrder { order: o },
                _,
            ) => *o == order,
            (OpKind::ReadStock { .. }, _) => false,
        })
        .collect();
    exists_linearization(&mine, &None, &order_step)
}

/// The one case where the stock check skips by design: an unknown place
/// may have made an order no acknowledged place names, and a cancel that
/// may have worked names such an order, releasing units of unknown count.
fn stock_check_may_skip(ops: &[Op]) -> bool {
    let known = acknowledged(ops);
    let unknown_place = ops
        .iter()
        .any(|op| place_qty(op).is_some() && is_unknown(op));
    let unattributed_cancel = ops.iter().any(|op| match op.kind {
        OpKind::Cancel { order, .. } => {
            !known.contains(&order) && !matches!(op.outcome, Outcome::Fail(_))
        }
        _ => false,
    });
    unknown_place && unattributed_cancel
}

/// A random change to a generated history, which may or may not leave it
/// linearizable.
#[derive(Clone, Debug)]
struct Twist {
    what: u8,
    pick: usize,
    value: u64,
    at_ns: u64,
    len_ns: u64,
}

fn twists() -> impl Strategy<Value = Vec<Twist>> {
    let twist =
        (0u8..6, 0usize..8, 0u64..8, 0u64..12, 0u64..4).prop_map(|(what, pick, value, at, len)| {
            Twist {
                what,
                pick,
                value,
                at_ns: at * SMALL_GAP_NS,
                len_ns: len * SMALL_GAP_NS,
            }
        });
    proptest::collection::vec(twist, 0..4)
}

/// Applies `t` to one of the ops it can change (picked by `t.pick`), if
/// any.
fn apply_twist(ops: &mut [Op], initial: u64, t: &Twist) {
    let fits = |op: &Op| match t.what {
        0 => stock_read(op).is_some(),
        1 => order_read(op).is_some(),
        2 => place_qty(op).is_some(),
        3 => matches!(op.kind, OpKind::Pay { .. } | OpKind::Cancel { .. }),
        4 => true,
        _ => !matches!(op.kind, OpKind::ReadStock { .. } | OpKind::ReadOrder { .. }),
    };
    let candidates: Vec<usize> = (0..ops.len()).filter(|i| fits(&ops[*i])).collect();
    let Some(i) = candidates.get(t.pick % candidates.len().max(1)) else {
        return;
    };
    let op = &mut ops[*i];
    let failed = |kind: &str| Outcome::Fail(kind.to_owned());
    op.outcome = match (t.what, &op.kind) {
        (0, _) => Outcome::Ok(OpResult::Stock {
            available: t.value % (initial + 2),
        }),
        (1, _) => Outcome::Ok(OpResult::Order {
            status: [
                None,
                Some(OrderStatus::Reserved),
                Some(OrderStatus::Paid),
                Some(OrderStatus::Cancelled),
            ][t.value as usize % 4],
        }),
        // Placed <-> out of stock; a new id may repeat an existing one.
        (2, OpKind::PlaceOrder { qty, .. }) => match op.outcome {
            Outcome::Ok(_) => failed(fail::OUT_OF_STOCK),
            _ => Outcome::Ok(OpResult::Placed {
                order: OrderId(1 + t.value % 4),
                qty: *qty,
            }),
        },
        (3, kind) => {
            let to = match kind {
                OpKind::Pay { .. } => OrderStatus::Paid,
                _ => OrderStatus::Cancelled,
            };
            match t.value % 4 {
                0 => Outcome::Ok(OpResult::Status { status: to }),
                1 => failed(fail::NOT_FOUND),
                2 => failed(fail::INVALID_TRANSITION),
                _ => failed(fail::INSUFFICIENT_FUNDS),
            }
        }
        (4, _) => {
            op.invoke_ns = FIRST_POINT_NS + t.at_ns;
            op.complete_ns = op.invoke_ns + t.len_ns;
            return;
        }
        _ => Outcome::Unknown("timeout".to_owned()),
    };
}

#[test]
fn verdicts_equal_an_exhaustive_search_on_small_histories() {
    let verdicts_seen: BTreeMap<(&str, bool), Cell<u32>> = [
        (("stock", true), Cell::new(0)),
        (("stock", false), Cell::new(0)),
        (("order", true), Cell::new(0)),
        (("order", false), Cell::new(0)),
    ]
    .into_iter()
    .collect();
    let count = |key: &'static str, ok: bool| {
        let c = &verdicts_seen[&(key, ok)];
        c.set(c.get() + 1);
    };
    let cases = config().cases;
    // Per case, intervals of up to 0 to 3 gaps either side: from mostly
    // quiescent (small windows can cut) to most ops overlapping several
    // others. Few targets, so that orders see several pays and cancels.
    let strategy = (0u64..6, 0u64..=3).prop_flat_map(|(initial, spread)| {
        let small = steps(1..=BRUTE_FORCE_OPS_MAX, spread, SMALL_GAP_NS, 2);
        (Just(initial), small, twists())
    });
    run(strategy, |(initial, steps, twists)| {
        let mut ops = simulate(&[initial], &steps, true, SMALL_GAP_NS);
        for t in &twists {
            apply_twist(&mut ops, initial, t);
        }
        let h = history(&ops);
        let expected = brute_force_stock(&ops, initial);
        // Windows of one op and up cut at every quiescent point, so the
        // state carried between windows is checked too.
        for window in [Limits::default().ops_per_window_max, 1, 2] {
            let limits = Limits {
                ops_per_window_max: window,
                ..Limits::default()
            };
            let got = check_stock_with(&h, &sku(), initial, &limits);
            if let Verdict::Skipped { reason } = &got {
                // Skips by design: a cancel of units nobody can count, and,
                // in small windows, overlapping ops with no cut between.
                let small = window < Limits::default().ops_per_window_max;
                prop_assert!(
                    small || stock_check_may_skip(&ops),
                    "stock skipped: {reason}"
                );
                continue;
            }
            prop_assert_eq!(
                got.is_linearizable(),
                expected,
                "stock (windows of {}): {}, exhaustive search says {}",
                window,
                got,
                expected
            );
            if window == Limits::default().ops_per_window_max {
                count("stock", expected);
            }
        }
        for order in orders_named(&ops) {
            let expected = brute_force_order(&ops, order);
            let got = check_order(&h, order);
            prop_assert_eq!(
                got.is_linearizable(),
                expected,
                "order {}: {}, exhaustive search says {}",
                order,
                got,
                expected
            );
            prop_assert!(
                !matches!(got, Verdict::Skipped { .. }),
                "order {order}: {got}"
            );
            count("order", expected);
        }
        Ok(())
    });
    // Both verdicts, often, or the comparison proves little.
    eprintln!("verdicts in {cases} cases: {verdicts_seen:?}");
    for ((key, ok), n) in &verdicts_seen {
        assert!(
            n.get() >= cases / 8,
            "{key} {} only {} times in {cases} cases",
            if *ok {
                "linearizable"
            } else {
                "not linearizable"
            },
            n.get()
        );
    }
}
