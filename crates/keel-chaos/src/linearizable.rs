//! Linearizability of a run, key by key: each SKU's available stock, and each
//! order's status.
//!
//! # What is modelled
//! Exactly the stock effects of `apply.rs` for the ops a history records:
//! - place of `qty`: reserves (`available -= qty`) when `available >= qty`,
//!   else fails `out_of_stock` and changes nothing;
//! - cancel of a reserved order: releases (`available += qty`);
//! - pay of a reserved order: `on_hand -= qty` and `reserved -= qty`, so
//!   `available = on_hand - reserved` does **not** change; it only moves the
//!   order to `paid`, after which a cancel is refused;
//! - transitions follow [`OrderStatus::can_become`]; a refused pay or cancel
//!   (`invalid_transition`, `not_found`, `insufficient_funds`) changes nothing.
//!
//! The model has no expiry, restock, refund or `SetStock`: the workload must
//! place orders with a TTL longer than the run and must not change stock
//! while it runs (the setup's stock is `initial_available`). An `expired`
//! order read is therefore reported as a violation.
//!
//! # How
//! Each key's ops become call and response actions in real-time order (ops
//! whose `[invoke, complete]` intervals overlap, ends included, are
//! concurrent) and go to `todc-utils`' [`WGLChecker`]: the Wing & Gong
//! search with Lowe's memoisation of (linearized set, state), over our
//! [`Specification`]s. (stateright's `LinearizabilityTester` was the first
//! choice, but its search does not memoise: a broken 48-op history with a
//! few timeouts ran out of a 75 s budget.) An `Unknown` op may take effect
//! at any time after its invocation, or never: its call sits at its
//! invocation and its response, which matches any return, after every other
//! action, so the search may place it anywhere after its invocation,
//! including after everything else, which is the same as never. `Fail`
//! answers that carry no information about the state (`unavailable`,
//! `validation`, ...) are dropped: an op that did nothing and saw nothing
//! constrains nothing.
//!
//! # Bounds
//! The search is exponential in the worst case (every `Unknown` op doubles
//! what may have happened), so it is bounded twice: at most
//! [`OPS_PER_WINDOW_MAX`] ops per search and at most [`SEARCH_WORK_MAX`]
//! units of work each. A longer history is split at quiescent points (no op
//! in flight, no `Unknown` op before), where the state is the same after
//! every linearization of what came before, so the windows can be checked
//! one after the other without losing a violation. When that is not
//! possible, or the budget runs out, the verdict is [`Verdict::Skipped`],
//! never a pass.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Range;
use std::rc::Rc;

use keel_domain::{OrderId, OrderStatus, Sku};
use todc_utils::linearizability::history::{Action, History as TodcHistory};
use todc_utils::{Specification, WGLChecker};

use crate::finding::{examples, Finding};
use crate::history::{fail, History, Op, OpKind, OpResult, Outcome};

/// Most ops one search takes. Each step of todc's search costs time and
/// memory linear in the window (it scans the entry list and memoises a
/// bitmap of linearized ops), so a window is kept to what a chaos run puts
/// on one key between quiet moments.
pub const OPS_PER_WINDOW_MAX: usize = 2_000;

/// Work one search may do, in entry visits: a window of `n` ops gets
/// `SEARCH_WORK_MAX / n` steps. It bounds time (about 2 s of one core in a
/// release build) and the memo (under 300 MiB); a history that needs more
/// is reported as skipped, not passed. Without `Unknown` ops a 1,500-op
/// window of a 5-way concurrent workload takes well under a second, a
/// violation included; each `Unknown` op that later ops can observe may
/// double the search, so a run with many of them on one key may need more
/// (see [`Limits`]).
pub const SEARCH_WORK_MAX: u64 = 100_000_000;

/// Most overlapping ops an explanation names.
const EXPLAIN_CONCURRENT_MAX: usize = 6;

/// The bounds of a check; [`Limits::default`] is what [`check_stock`],
/// [`check_order`] and [`check_all`] use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most ops per search window.
    pub ops_per_window_max: usize,
    /// Most work per search, in entry visits (see [`SEARCH_WORK_MAX`]).
    pub search_work_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ops_per_window_max: OPS_PER_WINDOW_MAX,
            search_work_max: SEARCH_WORK_MAX,
        }
    }
}

/// The outcome of checking one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order of the ops, consistent with real time, is a valid
    /// sequential execution of the model.
    Linearizable {
        /// Ops of this key that took part (dropped uninformative failures
        /// excluded).
        ops: usize,
        /// Windows the history was split into.
        windows: usize,
    },
    /// No such order exists.
    NotLinearizable {
        /// Which op could not be placed, and what it overlapped.
        explanation: String,
    },
    /// The check did not run to its end; nothing was concluded.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// True for [`Verdict::Linearizable`] only.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }

    /// The verdict as a report line for the key `name`.
    pub fn into_finding(self, name: impl Into<String>) -> Finding {
        match self {
            Verdict::Linearizable { ops, windows } => Finding::pass(
                name,
                format!("linearizable: {ops} ops in {windows} window(s)"),
            ),
            Verdict::NotLinearizable { explanation } => Finding::fail(name, explanation),
            Verdict::Skipped { reason } => Finding::skip(name, reason),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable { ops, windows } => {
                write!(f, "linearizable ({ops} ops, {windows} windows)")
            }
            Verdict::NotLinearizable { explanation } => {
                write!(f, "not linearizable: {explanation}")
            }
            Verdict::Skipped { reason } => write!(f, "skipped: {reason}"),
        }
    }
}

/// Checks the available stock of `sku`, which was `initial_available` when
/// the history began, against the ops that read or change it.
pub fn check_stock(history: &History, sku: &Sku, initial_available: u64) -> Verdict {
    check_stock_with(history, sku, initial_available, &Limits::default())
}

/// [`check_stock`] with explicit bounds.
pub fn check_stock_with(
    history: &History,
    sku: &Sku,
    initial_available: u64,
    limits: &Limits,
) -> Verdict {
    Index::new(history).check_stock(sku, initial_available, limits)
}

/// Checks the status of `order` against the ops that read or change it.
pub fn check_order(history: &History, order: OrderId) -> Verdict {
    check_order_with(history, order, &Limits::default())
}

/// [`check_order`] with explicit bounds.
pub fn check_order_with(history: &History, order: OrderId, limits: &Limits) -> Verdict {
    Index::new(history).check_order(order, limits)
}

/// Every linearizability check of a history: one finding per SKU (for those
/// in `initial_stock`; a SKU the history touches without an initial stock is
/// reported skipped), one for all orders together, and one for the
/// workload's promise that no idempotency key is used twice, which the
/// models rely on.
pub fn check_all(history: &History, initial_stock: &BTreeMap<Sku, u64>) -> Vec<Finding> {
    check_all_with(history, initial_stock, &Limits::default())
}

/// [`check_all`] with explicit bounds.
pub fn check_all_with(
    history: &History,
    initial_stock: &BTreeMap<Sku, u64>,
    limits: &Limits,
) -> Vec<Finding> {
    let index = Index::new(history);
    let mut findings = vec![unique_keys(history)];
    let skus: BTreeSet<&Sku> = initial_stock
        .keys()
        .chain(index.by_sku.keys().copied())
        .collect();
    for sku in skus {
        let name = format!("linearizable stock {sku}");
        let finding = match initial_stock.get(sku) {
            Some(initial) => index.check_stock(sku, *initial, limits).into_finding(name),
            None => Finding::skip(name, "no initial stock given for this SKU"),
        };
        findings.push(finding);
    }
    findings.push(index.check_orders(limits));
    findings
}

fn unique_keys(history: &History) -> Finding {
    let mut seen = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for key in history.ops().iter().filter_map(|op| op.kind.key()) {
        if !seen.insert(key) {
            twice.insert(key);
        }
    }
    let problems: Vec<String> = twice
        .iter()
        .map(|k| format!("key {k} used twice"))
        .collect();
    Finding::from_problems(
        "unique idempotency keys",
        format!("{} keys, each used once", seen.len()),
        &problems,
    )
}

// ----- the history, grouped by key ------------------------------------------

/// Op positions grouped by the keys they touch, built once per history.
struct Index<'h> {
    ops: &'h [Op],
    /// Orders whose place was acknowledged, with their SKU (first wins; a
    /// second acknowledgement of the same id fails that order's check).
    placed_sku: BTreeMap<OrderId, &'h Sku>,
    /// Places and stock reads per SKU.
    by_sku: BTreeMap<&'h Sku, Vec<usize>>,
    /// Acknowledged places, pays, cancels and reads per order.
    by_order: BTreeMap<OrderId, Vec<usize>>,
    /// `Unknown` places per SKU: each may have created an order nobody knows.
    unknown_places: BTreeMap<&'h Sku, usize>,
    /// The first `Unknown` place (by invocation), which could have created
    /// any order no acknowledged place claims.
    first_unknown_place: Option<usize>,
}

impl<'h> Index<'h> {
    fn new(history: &'h History) -> Self {
        let ops = history.ops();
        let mut index = Index {
            ops,
            placed_sku: BTreeMap::new(),
            by_sku: BTreeMap::new(),
            by_order: BTreeMap::new(),
            unknown_places: BTreeMap::new(),
            first_unknown_place: None,
        };
        for (i, op) in ops.iter().enumerate() {
            match &op.kind {
                OpKind::PlaceOrder { sku, .. } => {
                    index.by_sku.entry(sku).or_default().push(i);
                    match &op.outcome {
                        Outcome::Ok(OpResult::Placed { order, .. }) => {
                            index.placed_sku.entry(*order).or_insert(sku);
                            index.by_order.entry(*order).or_default().push(i);
                        }
                        Outcome::Unknown(_) => {
                            *index.unknown_places.entry(sku).or_insert(0) += 1;
                            let earlier = index
                                .first_unknown_place
                                .is_none_or(|f| (op.invoke_ns, i) < (ops[f].invoke_ns, f));
                            if earlier {
                                index.first_unknown_place = Some(i);
                            }
                        }
                        Outcome::Ok(_) | Outcome::Fail(_) => {}
                    }
                }
                OpKind::ReadStock { sku } => index.by_sku.entry(sku).or_default().push(i),
                OpKind::Pay { order, .. }
                | OpKind::Cancel { order, .. }
                | OpKind::ReadOrder { order } => index.by_order.entry(*order).or_default().push(i),
            }
        }
        index
    }

    fn check_stock(&self, sku: &Sku, initial_available: u64, limits: &Limits) -> Verdict {
        // A cancel may release units of an order no acknowledged place
        // names; if an unacknowledged place of this SKU could have created
        // it, what it released is unknown and the model cannot follow.
        if self.unknown_places.get(sku).is_some_and(|n| *n > 0) {
            let unattributed: Vec<usize> = self
                .by_order
                .iter()
                .filter(|(order, _)| !self.placed_sku.contains_key(order))
                .flat_map(|(_, ops)| ops.iter().copied())
                .filter(|i| {
                    matches!(self.ops[*i].kind, OpKind::Cancel { .. })
                        && !matches!(self.ops[*i].outcome, Outcome::Fail(_))
                })
                .collect();
            if let Some(i) = unattributed.first() {
                return Verdict::Skipped {
                    reason: format!(
                        "#{i} {} may release units of an order from an unacknowledged place \
                         of {sku}, whose SKU and quantity are unknown ({} such cancels)",
                        self.ops[*i],
                        unattributed.len()
                    ),
                };
            }
        }
        let mut positions: Vec<usize> = self.by_sku.get(sku).cloned().unwrap_or_default();
        for (order, _) in self.placed_sku.iter().filter(|(_, s)| **s == sku) {
            let writes = self.by_order.get(order).into_iter().flatten().copied();
            positions.extend(writes.filter(|i| {
                matches!(
                    self.ops[*i].kind,
                    OpKind::Pay { .. } | OpKind::Cancel { .. }
                )
            }));
        }
        positions.sort_unstable();
        positions.dedup();
        let entries = positions
            .into_iter()
            .filter_map(|i| stock_entry(i, &self.ops[i]))
            .collect();
        let init = StockModel {
            available: initial_available,
            orders: BTreeMap::new(),
        };
        check_key(self.ops, init, entries, limits)
    }

    fn check_order(&self, order: OrderId, limits: &Limits) -> Verdict {
        let positions = self.by_order.get(&order).cloned().unwrap_or_default();
        let mut entries: Vec<Entry<OrderModel>> = positions
            .iter()
            .filter_map(|i| order_entry(*i, &self.ops[*i], order))
            .collect();
        if !self.placed_sku.contains_key(&order) {
            // No acknowledged place names this order: if it exists, one of
            // the unacknowledged places made it, at some time after that
            // place's invocation. The earliest invocation allows every one.
            if let Some(first) = self.first_unknown_place {
                entries.push(Entry {
                    index: first,
                    invoke_ns: self.ops[first].invoke_ns,
                    complete_ns: None,
                    op: OrderOp::Create,
                    ret: OrderRet::Any,
                });
            }
        }
        check_key(self.ops, OrderModel { status: None }, entries, limits)
    }

    /// All orders as one finding: a run has thousands, a report wants one
    /// line that lists the failures.
    fn check_orders(&self, limits: &Limits) -> Finding {
        let name = "linearizable orders";
        let mut failed = Vec::new();
        let mut skipped = Vec::new();
        let mut ops = 0;
        for order in self.by_order.keys() {
            match self.check_order(*order, limits) {
                Verdict::Linearizable { ops: n, .. } => ops += n,
                Verdict::NotLinearizable { explanation } => {
                    failed.push(format!("order {order}: {explanation}"));
                }
                Verdict::Skipped { reason } => skipped.push(format!("order {order}: {reason}")),
            }
        }
        if !failed.is_empty() {
            return Finding::fail(name, examples(&failed));
        }
        if !skipped.is_empty() {
            return Finding::skip(name, format!("skipped {}", examples(&skipped)));
        }
        Finding::pass(
            name,
            format!("{} orders linearizable ({ops} ops)", self.by_order.len()),
        )
    }
}

// ----- projecting ops onto each model ----------------------------------------

/// One op as a model sees it.
#[derive(Clone, Debug)]
struct Entry<M: Model> {
    /// Position in the history, for reports.
    index: usize,
    invoke_ns: u64,
    /// `None` for an op whose outcome is unknown: it may take effect at any
    /// time after its invocation.
    complete_ns: Option<u64>,
    op: M::Op,
    ret: M::Ret,
}

/// Refusals that say something about the state when the op ran.
enum Refusal {
    OutOfStock,
    NotFound,
    InvalidTransition,
    InsufficientFunds,
}

fn refusal(kind: &str) -> Option<Refusal> {
    match kind {
        fail::OUT_OF_STOCK => Some(Refusal::OutOfStock),
        fail::NOT_FOUND => Some(Refusal::NotFound),
        fail::INVALID_TRANSITION => Some(Refusal::InvalidTransition),
        fail::INSUFFICIENT_FUNDS => Some(Refusal::InsufficientFunds),
        _ => None,
    }
}

fn stock_entry(index: usize, op: &Op) -> Option<Entry<StockModel>> {
    let (model_op, ret) = match (&op.kind, &op.outcome) {
        (OpKind::PlaceOrder { qty, .. }, Outcome::Ok(OpResult::Placed { order, qty: got })) => (
            StockOp::Place {
                qty: *qty,
                order: Some(*order),
            },
            StockRet::Placed { qty: *got },
        ),
        (OpKind::PlaceOrder { qty, .. }, Outcome::Unknown(_)) => (
            StockOp::Place {
                qty: *qty,
                order: None,
            },
            StockRet::Any,
        ),
        (OpKind::PlaceOrder { qty, .. }, Outcome::Fail(kind)) => match refusal(kind)? {
            Refusal::OutOfStock => (
                StockOp::Place {
                    qty: *qty,
                    order: None,
                },
                StockRet::OutOfStock,
            ),
            // A place refused for its customer or product changed nothing
            // and read no stock.
            _ => return None,
        },
        (OpKind::Pay { order, .. } | OpKind::Cancel { order, .. }, outcome) => {
            let model_op = match op.kind {
                OpKind::Pay { .. } => StockOp::Pay(*order),
                _ => StockOp::Cancel(*order),
            };
            let ret = match outcome {
                Outcome::Ok(OpResult::Status { status }) => StockRet::Became(*status),
                Outcome::Unknown(_) => StockRet::Any,
                Outcome::Fail(kind) => match refusal(kind)? {
                    Refusal::NotFound => StockRet::NotFound,
                    Refusal::InvalidTransition => StockRet::InvalidTransition,
                    Refusal::InsufficientFunds => StockRet::InsufficientFunds,
                    Refusal::OutOfStock => StockRet::OutOfStock,
                },
                // Op::check refuses any other result for a pay or cancel.
                Outcome::Ok(_) => return None,
            };
            (model_op, ret)
        }
        (OpKind::ReadStock { .. }, Outcome::Ok(OpResult::Stock { available })) => {
            (StockOp::Read, StockRet::Available(*available))
        }
        // A read that failed or was lost saw nothing and changed nothing;
        // other combinations are refused by Op::check.
        _ => return None,
    };
    Some(Entry {
        index,
        invoke_ns: op.invoke_ns,
        complete_ns: complete_ns(op),
        op: model_op,
        ret,
    })
}

fn order_entry(index: usize, op: &Op, order: OrderId) -> Option<Entry<OrderModel>> {
    let (model_op, ret) = match (&op.kind, &op.outcome) {
        (OpKind::PlaceOrder { .. }, Outcome::Ok(OpResult::Placed { order: id, .. }))
            if *id == order =>
        {
            (OrderOp::Create, OrderRet::Created)
        }
        (OpKind::Pay { order: id, .. } | OpKind::Cancel { order: id, .. }, outcome)
            if *id == order =>
        {
            let model_op = match op.kind {
                OpKind::Pay { .. } => OrderOp::Pay,
                _ => OrderOp::Cancel,
            };
            let ret = match outcome {
                Outcome::Ok(OpResult::Status { status }) => OrderRet::Became(*status),
                Outcome::Unknown(_) => OrderRet::Any,
                Outcome::Fail(kind) => match refusal(kind)? {
                    Refusal::NotFound => OrderRet::NotFound,
                    Refusal::InvalidTransition => OrderRet::InvalidTransition,
                    Refusal::InsufficientFunds => OrderRet::InsufficientFunds,
                    // No pay or cancel can answer this; the model says so.
                    Refusal::OutOfStock => OrderRet::OutOfStock,
                },
                // Op::check refuses any other result for a pay or cancel.
                Outcome::Ok(_) => return None,
            };
            (model_op, ret)
        }
        (OpKind::ReadOrder { order: id }, Outcome::Ok(OpResult::Order { status }))
            if *id == order =>
        {
            (OrderOp::Read, OrderRet::Status(*status))
        }
        (OpKind::ReadOrder { order: id }, Outcome::Fail(kind))
            if *id == order && kind == fail::NOT_FOUND =>
        {
            (OrderOp::Read, OrderRet::Status(None))
        }
        _ => return None,
    };
    Some(Entry {
        index,
        invoke_ns: op.invoke_ns,
        complete_ns: complete_ns(op),
        op: model_op,
        ret,
    })
}

fn complete_ns(op: &Op) -> Option<u64> {
    match op.outcome {
        Outcome::Unknown(_) => None,
        Outcome::Ok(_) | Outcome::Fail(_) => Some(op.complete_ns),
    }
}

// ----- the models -------------------------------------------------------------

/// A sequential model of one key. `step` says whether `op` may have
/// returned `ret` from this state, and applies it if so.
trait Model: Clone + Debug + Eq + Hash {
    type Op: Clone + Debug;
    type Ret: Clone + Debug + PartialEq;

    /// The return of an op whose answer was not learnt.
    fn any() -> Self::Ret;

    /// Applies `op` and returns what the real system answers.
    fn invoke(&mut self, op: &Self::Op) -> Self::Ret;

    /// True when `op` may have answered `ret` here; applies it then.
    fn step(&mut self, op: &Self::Op, ret: &Self::Ret) -> bool {
        if *ret == Self::any() {
            self.invoke(op);
            return true;
        }
        self.invoke(op) == *ret
    }

    /// Which ops with a known answer can observe `op`'s effect: an
    /// `Unknown` op none of them can follow is the same as one never applied.
    fn audience(_op: &Self::Op) -> Audience {
        Audience::Everyone
    }

    /// The order `op` reads or moves, for [`Audience::Order`].
    fn concerns(_op: &Self::Op) -> Option<OrderId> {
        None
    }

    /// The state after a linearizable window without `Unknown` ops. It is
    /// the same for every valid order of the window: each answer fixes its
    /// op's effect (a place reserved or not, a pay or cancel moved its order
    /// or not), an order moves at most once out of `reserved`, and effects
    /// on available stock add up to the same net in any order. So it is
    /// computed from the effects, without a linearization (todc reports
    /// none).
    fn settle(&self, window: &[Entry<Self>]) -> Self;

    /// The state in a few words, for an explanation that names the state a
    /// later window started from (the only part of it not in the history).
    fn summary(&self) -> String;
}

/// Who can observe an op's effect.
enum Audience {
    /// Any op of the key.
    Everyone,
    /// Only ops on this order (see [`Model::concerns`]).
    Order(OrderId),
}

/// Applies a pay or cancel to an order's status the way `apply.rs` does:
/// only along a lifecycle edge, else refused without change.
fn transition(status: Option<&mut OrderStatus>, to: OrderStatus) -> Transition {
    match status {
        None => Transition::NotFound,
        Some(s) if s.can_become(to) => {
            *s = to;
            Transition::Became
        }
        Some(_) => Transition::Refused,
    }
}

enum Transition {
    NotFound,
    Became,
    Refused,
}

/// One SKU's available stock, and the orders of it the history names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct StockModel {
    available: u64,
    /// Acknowledged orders of this SKU: quantity and status.
    orders: BTreeMap<OrderId, (u64, OrderStatus)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum StockOp {
    /// Reserve `qty`; `order` is the id the answer named, when known.
    Place {
        qty: u64,
        order: Option<OrderId>,
    },
    Pay(OrderId),
    Cancel(OrderId),
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum StockRet {
    Placed {
        qty: u64,
    },
    OutOfStock,
    /// A second place answered with an id already placed: never observed.
    DuplicateOrder,
    Became(OrderStatus),
    NotFound,
    InvalidTransition,
    InsufficientFunds,
    Available(u64),
    Any,
}

impl Model for StockModel {
    type Op = StockOp;
    type Ret = StockRet;

    fn any() -> StockRet {
        StockRet::Any
    }

    /// A pay leaves `available` alone: only the order's own pays and
    /// cancels see it. (An unknown cancel after it would then do nothing,
    /// which is also what that cancel never applied does.)
    fn audience(op: &StockOp) -> Audience {
        match op {
            StockOp::Pay(id) => Audience::Order(*id),
            _ => Audience::Everyone,
        }
    }

    fn concerns(op: &StockOp) -> Option<OrderId> {
        match op {
            StockOp::Pay(id) | StockOp::Cancel(id) => Some(*id),
            _ => None,
        }
    }

    fn invoke(&mut self, op: &StockOp) -> StockRet {
        match op {
            StockOp::Place { qty, order } => {
                if self.available < *qty {
                    return StockRet::OutOfStock;
                }
                if let Some(id) = order {
                    if self.orders.contains_key(id) {
                        return StockRet::DuplicateOrder;
                    }
                    self.orders.insert(*id, (*qty, OrderStatus::Reserved));
                }
                self.available -= qty; // checked against `available` above
                StockRet::Placed { qty: *qty }
            }
            StockOp::Pay(id) => {
                // Paying sells reserved units: on_hand and reserved drop
                // together, available stays.
                match transition(self.orders.get_mut(id).map(|(_, s)| s), OrderStatus::Paid) {
                    Transition::NotFound => StockRet::NotFound,
                    Transition::Became => StockRet::Became(OrderStatus::Paid),
                    Transition::Refused => StockRet::InvalidTransition,
                }
            }
            StockOp::Cancel(id) => {
                let entry = self.orders.get_mut(id);
                let qty = entry.as_ref().map_or(0, |(q, _)| *q);
                match transition(entry.map(|(_, s)| s), OrderStatus::Cancelled) {
                    Transition::NotFound => StockRet::NotFound,
                    Transition::Became => {
                        // Released units were reserved out of `available`
                        // before, so this cannot exceed the initial stock.
                        self.available = self.available.saturating_add(qty);
                        StockRet::Became(OrderStatus::Cancelled)
                    }
                    Transition::Refused => StockRet::InvalidTransition,
                }
            }
            StockOp::Read => StockRet::Available(self.available),
        }
    }

    fn step(&mut self, op: &StockOp, ret: &StockRet) -> bool {
        match (op, ret) {
            (_, StockRet::Any) => {
                self.invoke(op);
                true
            }
            // Pay checks the transition before the balance: a short balance
            // means the order was still reserved. Nothing changes.
            (StockOp::Pay(id), StockRet::InsufficientFunds) => self
                .orders
                .get(id)
                .is_some_and(|(_, s)| s.can_become(OrderStatus::Paid)),
            _ => self.invoke(op) == *ret,
        }
    }

    /// Reservations and releases are summed apart and netted once, at the
    /// end. Units a cancel released may be sold again later in the same
    /// window, so the window's places alone can reserve more than
    /// `available`: taking them first, clamped at zero, forgot the resold
    /// units and carried too much stock into the next window (a false
    /// `out_of_stock` violation there, or a hidden oversell). The net is
    /// exact: the window is linearizable and has no Unknown op (only windows
    /// another follows are settled), so some order of its answered ops ran
    /// from `available` without going below zero, hence `available +
    /// released >= reserved` and the final subtraction never clamps.
    fn settle(&self, window: &[Entry<Self>]) -> Self {
        let mut after = self.clone();
        let mut reserved: u64 = 0;
        let mut released: u64 = 0;
        // Places first: a pay or cancel of the window may name an order
        // placed earlier in the same window.
        for e in window {
            if let (
                StockOp::Place {
                    qty,
                    order: Some(id),
                },
                StockRet::Placed { .. },
            ) = (&e.op, &e.ret)
            {
                reserved = reserved.saturating_add(*qty);
                after.orders.insert(*id, (*qty, OrderStatus::Reserved));
            }
        }
        for e in window {
            let (StockOp::Pay(id) | StockOp::Cancel(id), StockRet::Became(to)) = (&e.op, &e.ret)
            else {
                continue;
            };
            if let Some((qty, status)) = after.orders.get_mut(id) {
                if *to == OrderStatus::Cancelled {
                    released = released.saturating_add(*qty);
                }
                *status = *to;
            }
        }
        let before_reserving = after.available.saturating_add(released);
        debug_assert!(
            before_reserving >= reserved,
            "a linearizable window reserved {reserved} units with only {before_reserving} \
             available or released"
        );
        after.available = before_reserving.saturating_sub(reserved);
        after
    }

    fn summary(&self) -> String {
        format!("available {}", self.available)
    }
}

/// One order's status; `None` before it is placed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OrderModel {
    status: Option<OrderStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OrderOp {
    Create,
    Pay,
    Cancel,
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OrderRet {
    Created,
    /// A second place named the same id: never observed.
    Duplicate,
    Became(OrderStatus),
    NotFound,
    InvalidTransition,
    InsufficientFunds,
    /// A pay or cancel claimed `out_of_stock`: never what the model says.
    OutOfStock,
    Status(Option<OrderStatus>),
    Any,
}

impl Model for OrderModel {
    type Op = OrderOp;
    type Ret = OrderRet;

    fn any() -> OrderRet {
        OrderRet::Any
    }

    fn invoke(&mut self, op: &OrderOp) -> OrderRet {
        let to = match op {
            OrderOp::Create => {
                if self.status.is_some() {
                    return OrderRet::Duplicate;
                }
                self.status = Some(OrderStatus::Reserved);
                return OrderRet::Created;
            }
            OrderOp::Read => return OrderRet::Status(self.status),
            OrderOp::Pay => OrderStatus::Paid,
            OrderOp::Cancel => OrderStatus::Cancelled,
        };
        match transition(self.status.as_mut(), to) {
            Transition::NotFound => OrderRet::NotFound,
            Transition::Became => OrderRet::Became(to),
            Transition::Refused => OrderRet::InvalidTransition,
        }
    }

    fn step(&mut self, op: &OrderOp, ret: &OrderRet) -> bool {
        match (op, ret) {
            // An unknown place that made some other order leaves this one.
            (OrderOp::Create, OrderRet::Any) if self.status.is_some() => true,
            (_, OrderRet::Any) => {
                self.invoke(op);
                true
            }
            (OrderOp::Pay, OrderRet::InsufficientFunds) => {
                self.status.is_some_and(|s| s.can_become(OrderStatus::Paid))
            }
            _ => self.invoke(op) == *ret,
        }
    }

    fn settle(&self, window: &[Entry<Self>]) -> Self {
        let mut after = self.clone();
        if window.iter().any(|e| e.ret == OrderRet::Created) {
            after.status = Some(OrderStatus::Reserved);
        }
        for e in window {
            if let OrderRet::Became(to) = e.ret {
                after.status = Some(to);
            }
        }
        after
    }

    fn summary(&self) -> String {
        match self.status {
            Some(status) => format!("status {status:?}"),
            None => "not placed".to_owned(),
        }
    }
}

// ----- the search ---------------------------------------------------------------

/// Steps a search may still take, shared by every copy of its state.
#[derive(Clone, Debug)]
struct Budget(Rc<BudgetState>);

#[derive(Debug)]
struct BudgetState {
    left: Cell<u64>,
    refused: Cell<bool>,
}

impl Budget {
    fn new(steps: u64) -> Self {
        Budget(Rc::new(BudgetState {
            left: Cell::new(steps),
            refused: Cell::new(false),
        }))
    }

    /// Takes a step, or refuses (and remembers refusing) when none is left.
    fn take(&self) -> bool {
        let left = self.0.left.get();
        if left == 0 {
            self.0.refused.set(true);
            return false;
        }
        self.0.left.set(left - 1);
        true
    }

    /// True when a step was refused, so a failed search proves nothing.
    fn refused(&self) -> bool {
        self.0.refused.get()
    }
}

/// An operation as todc's checker sees it: the op with its return (the
/// checker applies the response's value), or the start that installs the
/// initial state. todc's `Specification::init` takes no argument, so the
/// initial state, which is the run's data, is the first operation of every
/// history, completed before any other is invoked.
#[derive(Clone, Debug)]
enum Call<M: Model> {
    Start(M, Budget),
    Step(M::Op, M::Ret),
}

/// The checker's state: the model with the search's budget. Equality and
/// hashing (todc memoises on them) see the model only.
#[derive(Clone, Debug)]
enum State<M> {
    Unset,
    Ready(M, Budget),
}

impl<M: PartialEq> PartialEq for State<M> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (State::Unset, State::Unset) => true,
            (State::Ready(a, _), State::Ready(b, _)) => a == b,
            _ => false,
        }
    }
}

impl<M: Eq> Eq for State<M> {}

impl<M: Hash> Hash for State<M> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            State::Unset => 0u8.hash(h),
            State::Ready(m, _) => {
                1u8.hash(h);
                m.hash(h);
            }
        }
    }
}

/// A [`Model`] as a todc [`Specification`]. Every step takes from the
/// budget; a refused step is invalid, which prunes the search, so an
/// exhausted budget ends it within a pass over what is left.
struct Spec<M>(PhantomData<M>);

impl<M: Model> Specification for Spec<M> {
    type State = State<M>;
    type Operation = Call<M>;

    fn init() -> State<M> {
        State::Unset
    }

    fn apply(call: &Call<M>, state: &State<M>) -> (bool, State<M>) {
        match (call, state) {
            (Call::Start(model, budget), State::Unset) => {
                (true, State::Ready(model.clone(), budget.clone()))
            }
            (Call::Step(op, ret), State::Ready(model, budget)) => {
                if !budget.take() {
                    return (false, state.clone());
                }
                let mut next = model.clone();
                if next.step(op, ret) {
                    (true, State::Ready(next, budget.clone()))
                } else {
                    (false, state.clone())
                }
            }
            _ => (false, state.clone()),
        }
    }
}

/// What one search concluded.
enum Search {
    Linearizable,
    NotLinearizable,
    Exhausted,
}

/// Searches one window: events in real-time order, invocations before
/// returns at the same instant (touching intervals are concurrent), and the
/// returns of `Unknown` ops after everything else.
fn search<M: Model>(init: &M, entries: &[Entry<M>], steps: u64) -> Search {
    let budget = Budget::new(steps);
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.invoke_ns, false, i));
        if let Some(c) = e.complete_ns {
            events.push((c, true, i));
        }
    }
    events.sort_unstable();
    let start = Call::Start(init.clone(), budget.clone());
    let mut actions = Vec::with_capacity(2 * entries.len() + 2);
    actions.push((0, Action::Call(start.clone())));
    actions.push((0, Action::Response(start)));
    // todc pairs each process's calls and responses in order, and sizes a
    // table by the largest process id: ids are dense, and reused once their
    // op returned. An Unknown op keeps its id to the end.
    let mut free: BTreeSet<usize> = BTreeSet::from([0]);
    let mut next = 1;
    let mut process = vec![0; entries.len()];
    for (_, is_return, i) in events {
        let e = &entries[i];
        let call = Call::Step(e.op.clone(), e.ret.clone());
        if is_return {
            actions.push((process[i], Action::Response(call)));
            free.insert(process[i]);
            continue;
        }
        process[i] = match free.pop_first() {
            Some(p) if e.complete_ns.is_some() => p,
            reusable => {
                free.extend(reusable);
                next += 1;
                next - 1
            }
        };
        actions.push((process[i], Action::Call(call)));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.complete_ns.is_none() {
            let call = Call::Step(e.op.clone(), M::any());
            actions.push((process[i], Action::Response(call)));
        }
    }
    // `from_actions` needs at least one action and a response for every
    // call: the start and the late returns above provide both.
    if WGLChecker::<Spec<M>>::is_linearizable(TodcHistory::from_actions(actions)) {
        Search::Linearizable
    } else if budget.refused() {
        Search::Exhausted
    } else {
        Search::NotLinearizable
    }
}

fn check_key<M: Model>(
    ops: &[Op],
    init: M,
    mut entries: Vec<Entry<M>>,
    limits: &Limits,
) -> Verdict {
    drop_unobservable(&mut entries);
    entries.sort_by_key(|e| (e.invoke_ns, e.index));
    let total = entries.len();
    let (windows, rest) = split(&entries, limits.ops_per_window_max.max(1));
    let mut state = init;
    for (k, w) in windows.iter().enumerate() {
        let window = &entries[w.clone()];
        let steps = (limits.search_work_max / window.len().max(1) as u64).max(1);
        match search(&state, window, steps) {
            // Only a window another one follows is settled: `split` cuts
            // nowhere after an Unknown op, so those windows have none, which
            // `settle` relies on (it sees answered effects only).
            Search::Linearizable if k + 1 < windows.len() => state = state.settle(window),
            Search::Linearizable => {}
            Search::NotLinearizable => {
                let mut explanation = explain(ops, &state, window, steps);
                // A later window starts from a state settled from the ones
                // before, not from the history: say which, so a wrong carry
                // cannot pass for a violation of the ops on display.
                if w.start > 0 {
                    explanation.push_str(&format!(
                        " [window {} of {}, from #{} on; the {} ops before it settled to {}]",
                        k + 1,
                        windows.len(),
                        window[0].index,
                        w.start,
                        state.summary()
                    ));
                }
                return Verdict::NotLinearizable { explanation };
            }
            Search::Exhausted => {
                return Verdict::Skipped {
                    reason: format!(
                        "search budget exhausted on the {} ops from #{} {}",
                        window.len(),
                        window[0].index,
                        ops[window[0].index]
                    ),
                }
            }
        }
    }
    if let Some(reason) = rest {
        return Verdict::Skipped { reason };
    }
    Verdict::Linearizable {
        ops: total,
        windows: windows.len(),
    }
}

/// Drops the `Unknown` ops that no op with a known answer can be ordered
/// after (all of those that could see its effect completed before it was
/// invoked): such an op may as well come last, which is the same as never,
/// and every one kept doubles what the search may have to consider.
fn drop_unobservable<M: Model>(entries: &mut Vec<Entry<M>>) {
    let mut latest_all: Option<u64> = None;
    let mut latest_by_order: BTreeMap<OrderId, u64> = BTreeMap::new();
    for e in entries.iter() {
        let Some(c) = e.complete_ns else { continue };
        latest_all = latest_all.max(Some(c));
        if let Some(order) = M::concerns(&e.op) {
            let latest = latest_by_order.entry(order).or_insert(c);
            *latest = (*latest).max(c);
        }
    }
    entries.retain(|e| {
        if e.complete_ns.is_some() {
            return true;
        }
        let latest = match M::audience(&e.op) {
            Audience::Everyone => latest_all,
            Audience::Order(order) => latest_by_order.get(&order).copied(),
        };
        latest.is_some_and(|c| c >= e.invoke_ns)
    });
}

/// Splits entries (sorted by invocation) into windows of at most `max` at
/// quiescent points: every op before the cut completed before every op after
/// it was invoked, and none before it is `Unknown` (its effect could still
/// come). The second value says why the tail could not be split, if so.
fn split<M: Model>(entries: &[Entry<M>], max: usize) -> (Vec<Range<usize>>, Option<String>) {
    let mut cuts = vec![false; entries.len()];
    // Latest completion so far; `None` once an Unknown op was seen.
    let mut horizon: Option<u64> = Some(0);
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            cuts[i] = horizon.is_some_and(|h| h < e.invoke_ns);
        }
        horizon = match (horizon, e.complete_ns) {
            (Some(h), Some(c)) => Some(h.max(c)),
            _ => None,
        };
    }
    let mut windows = Vec::new();
    let mut start = 0;
    while entries.len() - start > max {
        let Some(cut) = (start + 1..=start + max).rev().find(|c| cuts[*c]) else {
            let why = if entries[start..=start + max]
                .iter()
                .any(|e| e.complete_ns.is_none())
            {
                "an Unknown op leaves no quiescent point after it"
            } else {
                "ops overlap without a quiescent point"
            };
            let reason = format!(
                "too many ops: {} ops from #{} on ({why}); at most {max} are searched at once{}",
                entries.len() - start,
                entries[start].index,
                if start > 0 {
                    format!("; the {start} ops before them are linearizable")
                } else {
                    String::new()
                }
            );
            return (windows, Some(reason));
        };
        windows.push(start..cut);
        start = cut;
    }
    if start < entries.len() {
        windows.push(start..entries.len());
    }
    (windows, None)
}

/// Finds the op at which the window stops being linearizable: the shortest
/// prefix of its events that fails (a prefix keeps ops not yet returned as
/// Unknown, so prefixes of a linearizable history all pass and the first
/// failing one ends with the culprit's return).
fn explain<M: Model>(ops: &[Op], init: &M, entries: &[Entry<M>], steps: u64) -> String {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        events.push((e.invoke_ns, false, i));
        if let Some(c) = e.complete_ns {
            events.push((c, true, i));
        }
    }
    events.sort_unstable();
    let prefix = |k: usize| -> Vec<Entry<M>> {
        let returned: BTreeSet<usize> = events[..k].iter().filter(|e| e.1).map(|e| e.2).collect();
        events[..k]
            .iter()
            .filter(|e| !e.1)
            .map(|&(_, _, i)| {
                let mut e = entries[i].clone();
                if !returned.contains(&i) {
                    e.complete_ns = None;
                    e.ret = M::any();
                }
                e
            })
            .collect()
    };
    let (mut good, mut bad) = (0, events.len());
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        match search(init, &prefix(mid), steps) {
            Search::Linearizable => good = mid,
            Search::NotLinearizable => bad = mid,
            Search::Exhausted => {
                return format!(
                    "no valid order of the {} ops from #{} {} (the failing op could not be \
                     isolated within the search budget)",
                    entries.len(),
                    entries[0].index,
                    ops[entries[0].index]
                )
            }
        }
    }
    let culprit = &entries[events[bad - 1].2];
    let (from, to) = (culprit.invoke_ns, culprit.complete_ns.unwrap_or(u64::MAX));
    // Ops with an answer first: they are the likelier explanation than a
    // long-lost Unknown one.
    let mut overlapping: Vec<&Entry<M>> = entries
        .iter()
        .filter(|e| e.index != culprit.index)
        .filter(|e| e.invoke_ns <= to && e.complete_ns.is_none_or(|c| c >= from))
        .collect();
    overlapping.sort_by_key(|e| (e.complete_ns.is_none(), e.invoke_ns, e.index));
    let overlapping: Vec<String> = overlapping
        .iter()
        .take(EXPLAIN_CONCURRENT_MAX + 1)
        .map(|e| format!("#{} {}", e.index, ops[e.index]))
        .collect();
    let before = entries
        .iter()
        .filter(|e| e.complete_ns.is_some_and(|c| c < from))
        .count();
    let mut text = format!(
        "#{} {} has no valid linearization point (after the {before} ops of its window \
         that completed before it was invoked)",
        culprit.index, ops[culprit.index]
    );
    if overlapping.is_empty() {
        text.push_str("; nothing overlaps it");
    } else {
        let more = if overlapping.len() > EXPLAIN_CONCURRENT_MAX {
            ", ..."
        } else {
            ""
        };
        let shown = &overlapping[..overlapping.len().min(EXPLAIN_CONCURRENT_MAX)];
        text.push_str(&format!("; overlapping: {}{more}", shown.join(", ")));
    }
    text
}

#[cfg(test)]
#[path = "linearizable_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "linearizable_props.rs"]
mod props;
