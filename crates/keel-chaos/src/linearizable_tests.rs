use super::*;

use keel_domain::{AccountId, RequestId};
use proptest::prelude::*;

use super::props::{simulate, steps, Step, GAP_NS};
use crate::history::Op;

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn placed(order: u64, qty: u64) -> Outcome {
    Outcome::Ok(OpResult::Placed {
        order: OrderId(order),
        qty,
    })
}

fn became(status: OrderStatus) -> Outcome {
    Outcome::Ok(OpResult::Status { status })
}

fn stock(available: u64) -> Outcome {
    Outcome::Ok(OpResult::Stock { available })
}

fn order_read(status: Option<OrderStatus>) -> Outcome {
    Outcome::Ok(OpResult::Order { status })
}

fn failed(kind: &str) -> Outcome {
    Outcome::Fail(kind.to_owned())
}

fn unknown() -> Outcome {
    Outcome::Unknown("timeout".to_owned())
}

/// Builds histories tersely: each op names its process and `[invoke,
/// complete]` interval; keys are unique per op.
#[derive(Default)]
struct Run {
    ops: Vec<Op>,
}

impl Run {
    fn push(
        &mut self,
        process: u64,
        (invoke_ns, complete_ns): (u64, u64),
        kind: OpKind,
        outcome: Outcome,
    ) -> &mut Self {
        self.ops.push(Op {
            process,
            invoke_ns,
            complete_ns,
            kind,
            outcome,
        });
        self
    }

    fn key(&self) -> RequestId {
        RequestId::new(format!("k{}", self.ops.len())).expect("valid key")
    }

    fn place_of(
        &mut self,
        p: u64,
        t: (u64, u64),
        sku_name: &str,
        qty: u64,
        out: Outcome,
    ) -> &mut Self {
        let kind = OpKind::PlaceOrder {
            customer: AccountId::new(format!("c{p}")).expect("valid account"),
            sku: sku(sku_name),
            qty,
            key: self.key(),
        };
        self.push(p, t, kind, out)
    }

    fn place(&mut self, p: u64, t: (u64, u64), qty: u64, out: Outcome) -> &mut Self {
        self.place_of(p, t, "A", qty, out)
    }

    fn pay(&mut self, p: u64, t: (u64, u64), order: u64, out: Outcome) -> &mut Self {
        let kind = OpKind::Pay {
            order: OrderId(order),
            key: self.key(),
        };
        self.push(p, t, kind, out)
    }

    fn cancel(&mut self, p: u64, t: (u64, u64), order: u64, out: Outcome) -> &mut Self {
        let kind = OpKind::Cancel {
            order: OrderId(order),
            key: self.key(),
        };
        self.push(p, t, kind, out)
    }

    fn read_stock(&mut self, p: u64, t: (u64, u64), out: Outcome) -> &mut Self {
        self.push(p, t, OpKind::ReadStock { sku: sku("A") }, out)
    }

    fn read_order(&mut self, p: u64, t: (u64, u64), order: u64, out: Outcome) -> &mut Self {
        let kind = OpKind::ReadOrder {
            order: OrderId(order),
        };
        self.push(p, t, kind, out)
    }

    fn history(&self) -> History {
        History::from_ops(self.ops.clone()).expect("well-formed ops")
    }

    fn stock_verdict(&self, initial: u64) -> Verdict {
        check_stock(&self.history(), &sku("A"), initial)
    }

    fn order_verdict(&self, order: u64) -> Verdict {
        check_order(&self.history(), OrderId(order))
    }
}

fn assert_linearizable(v: &Verdict) {
    assert!(v.is_linearizable(), "expected linearizable, got {v}");
}

fn assert_rejected(v: &Verdict) -> String {
    match v {
        Verdict::NotLinearizable { explanation } => explanation.clone(),
        other => panic!("expected a violation, got {other}"),
    }
}

// ----- accepted ----------------------------------------------------------------

#[test]
fn sequential_history_is_linearizable() {
    let mut r = Run::default();
    r.read_stock(0, (0, 10), stock(5))
        .place(0, (20, 30), 2, placed(1, 2))
        .read_stock(1, (40, 50), stock(3))
        .place(1, (60, 70), 4, failed(fail::OUT_OF_STOCK))
        .pay(0, (80, 90), 1, became(OrderStatus::Paid))
        .read_stock(0, (100, 110), stock(3))
        .place(0, (120, 130), 3, placed(2, 3))
        .cancel(1, (140, 150), 2, became(OrderStatus::Cancelled))
        .read_stock(0, (160, 170), stock(3))
        .cancel(0, (180, 190), 1, failed(fail::INVALID_TRANSITION));
    assert_linearizable(&r.stock_verdict(5));
    assert_linearizable(&r.order_verdict(1));
    assert_linearizable(&r.order_verdict(2));
}

#[test]
fn concurrent_valid_history_is_linearizable() {
    // The read overlaps both places and sees one of them; the second read
    // overlaps the cancel and sees it already done.
    let mut r = Run::default();
    r.place(0, (0, 100), 2, placed(1, 2))
        .place(1, (10, 60), 3, placed(2, 3))
        .read_stock(2, (20, 50), stock(7))
        .read_stock(2, (110, 120), stock(5))
        .cancel(0, (130, 200), 2, became(OrderStatus::Cancelled))
        .read_stock(1, (140, 150), stock(8))
        .read_stock(1, (210, 220), stock(8));
    assert_linearizable(&r.stock_verdict(10));
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // The read completes at the instant the place is invoked: either order
    // is allowed, so seeing the reservation is fine.
    let mut r = Run::default();
    r.place(0, (50, 90), 2, placed(1, 2))
        .read_stock(1, (0, 50), stock(3));
    assert_linearizable(&r.stock_verdict(5));
}

#[test]
fn pay_does_not_change_available() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .pay(0, (20, 30), 1, became(OrderStatus::Paid))
        .read_stock(0, (40, 50), stock(3));
    assert_linearizable(&r.stock_verdict(5));

    // Had pay released the units (as cancel does), a read would see 5.
    let mut wrong = Run::default();
    wrong
        .place(0, (0, 10), 2, placed(1, 2))
        .pay(0, (20, 30), 1, became(OrderStatus::Paid))
        .read_stock(0, (40, 50), stock(5));
    assert_rejected(&wrong.stock_verdict(5));
}

#[test]
fn insufficient_funds_means_still_reserved() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .pay(0, (20, 30), 1, failed(fail::INSUFFICIENT_FUNDS))
        .cancel(0, (40, 50), 1, became(OrderStatus::Cancelled))
        .read_stock(0, (60, 70), stock(5));
    assert_linearizable(&r.stock_verdict(5));
    assert_linearizable(&r.order_verdict(1));
}

#[test]
fn uninformative_failures_are_ignored() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, failed(fail::UNAVAILABLE))
        .read_stock(0, (20, 30), failed(fail::UNAVAILABLE))
        .read_stock(0, (40, 50), stock(5));
    assert_linearizable(&r.stock_verdict(5));
}

#[test]
fn unknown_place_accepted_whether_or_not_it_took_effect() {
    let took_effect = |after: u64| {
        let mut r = Run::default();
        r.place(0, (0, 10), 2, unknown())
            .read_stock(1, (20, 30), stock(5))
            .read_stock(1, (40, 50), stock(after))
            .read_stock(1, (60, 70), stock(after));
        r.stock_verdict(5)
    };
    // Never applied, or applied late (after the first read).
    assert_linearizable(&took_effect(5));
    assert_linearizable(&took_effect(3));
    // But only once, and never undone.
    assert_rejected(&took_effect(1));
}

#[test]
fn unknown_op_cannot_take_effect_before_its_invocation() {
    let mut r = Run::default();
    r.read_stock(1, (0, 10), stock(3))
        .place(0, (20, 30), 2, unknown());
    assert_rejected(&r.stock_verdict(5));
}

#[test]
fn unknown_pay_and_cancel_accepted_either_way() {
    for seen in [OrderStatus::Reserved, OrderStatus::Paid] {
        let mut r = Run::default();
        r.place(0, (0, 10), 2, placed(1, 2))
            .pay(0, (20, 30), 1, unknown())
            .read_order(1, (40, 50), 1, order_read(Some(seen)));
        assert_linearizable(&r.order_verdict(1));
        assert_linearizable(&r.stock_verdict(5));
    }
    for after in [3, 5] {
        let mut r = Run::default();
        r.place(0, (0, 10), 2, placed(1, 2))
            .cancel(0, (20, 30), 1, unknown())
            .read_stock(1, (40, 50), stock(after));
        assert_linearizable(&r.stock_verdict(5));
    }
}

#[test]
fn order_created_by_an_unknown_place_is_accepted() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, unknown())
        .read_order(1, (20, 30), 1, order_read(Some(OrderStatus::Reserved)))
        .pay(1, (40, 50), 1, became(OrderStatus::Paid));
    assert_linearizable(&r.order_verdict(1));
    // Without any place that could have made it, the order cannot exist.
    let mut phantom = Run::default();
    phantom.read_order(1, (20, 30), 1, order_read(Some(OrderStatus::Reserved)));
    assert_rejected(&phantom.order_verdict(1));
}

// ----- rejected ------------------------------------------------------------------

#[test]
fn rejects_stale_read_after_completed_reservation() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .read_stock(1, (20, 30), stock(5));
    let why = assert_rejected(&r.stock_verdict(5));
    assert!(why.contains("#1 "), "names the stale read: {why}");
}

#[test]
fn rejects_read_of_stock_never_available() {
    let mut r = Run::default();
    r.place(0, (0, 100), 2, placed(1, 2))
        .read_stock(1, (20, 30), stock(4));
    assert_rejected(&r.stock_verdict(5));
}

#[test]
fn rejects_oversell() {
    // Both reservations succeed although only one fits, even concurrently.
    let mut r = Run::default();
    r.place(0, (0, 100), 3, placed(1, 3))
        .place(1, (10, 90), 3, placed(2, 3));
    assert_rejected(&r.stock_verdict(5));
}

#[test]
fn rejects_out_of_stock_when_it_fits() {
    let mut r = Run::default();
    r.read_stock(0, (0, 10), stock(5))
        .place(0, (20, 30), 3, failed(fail::OUT_OF_STOCK));
    assert_rejected(&r.stock_verdict(5));
}

#[test]
fn rejects_read_going_back_in_time() {
    // A place is in flight throughout; one read sees it, a later read does
    // not: with no cancel, stock cannot come back.
    let mut r = Run::default();
    r.place(0, (0, 1_000), 2, placed(1, 2))
        .read_stock(1, (100, 200), stock(3))
        .read_stock(2, (300, 400), stock(5));
    let why = assert_rejected(&r.stock_verdict(5));
    assert!(why.contains("#2 "), "names the later read: {why}");
    assert!(why.contains("#0 "), "names the overlapping place: {why}");
}

#[test]
fn rejects_order_read_paid_before_pay_invoked() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .read_order(1, (20, 30), 1, order_read(Some(OrderStatus::Paid)))
        .pay(0, (40, 50), 1, became(OrderStatus::Paid));
    let why = assert_rejected(&r.order_verdict(1));
    assert!(why.contains("#1 "), "names the early read: {why}");
}

#[test]
fn rejects_cancel_after_pay() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .pay(0, (20, 30), 1, became(OrderStatus::Paid))
        .cancel(1, (40, 50), 1, became(OrderStatus::Cancelled));
    assert_rejected(&r.order_verdict(1));
    assert_rejected(&r.stock_verdict(5));
}

#[test]
fn rejects_expired_order_read() {
    // The model has no expiry: the workload's TTL outlives the run.
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2)).read_order(
        1,
        (20, 30),
        1,
        order_read(Some(OrderStatus::Expired)),
    );
    assert_rejected(&r.order_verdict(1));
}

#[test]
fn rejects_two_acknowledgements_of_one_order_id() {
    let mut r = Run::default();
    r.place(0, (0, 10), 1, placed(1, 1))
        .place(1, (20, 30), 1, placed(1, 1));
    assert_rejected(&r.order_verdict(1));
    assert_rejected(&r.stock_verdict(5));
}

// ----- bounds ----------------------------------------------------------------------

fn sequential_places(r: &mut Run, from_ns: u64, n: u64, first_order: u64) {
    for i in 0..n {
        let t = from_ns + 100 * i;
        r.place(i % 4, (t, t + 10), 1, placed(first_order + i, 1));
    }
}

#[test]
fn long_history_is_split_at_quiescent_points() {
    let mut r = Run::default();
    sequential_places(&mut r, 0, 50, 1);
    r.read_stock(0, (10_000, 10_010), stock(50));
    let limits = Limits {
        ops_per_window_max: 8,
        ..Limits::default()
    };
    let v = check_stock_with(&r.history(), &sku("A"), 100, &limits);
    assert!(
        matches!(v, Verdict::Linearizable { ops: 51, windows } if windows >= 7),
        "{v}"
    );
    // A violation in a late window is still found: the state carries over.
    let mut bad = Run::default();
    sequential_places(&mut bad, 0, 50, 1);
    bad.read_stock(0, (10_000, 10_010), stock(51));
    let v = check_stock_with(&bad.history(), &sku("A"), 100, &limits);
    assert_rejected(&v);
}

/// Sells the 2 units of an initial stock of 2, releases them with a cancel
/// and sells them again, one op after the other: the three ops' places
/// reserve 4 units out of 2, which only adds up with the release between.
fn resell_released_units(r: &mut Run) {
    r.place(0, (0, 10), 2, placed(1, 2))
        .cancel(1, (100, 110), 1, became(OrderStatus::Cancelled))
        .place(2, (200, 210), 2, placed(2, 2));
}

/// A window of three ops: the resale above is one window, what follows the
/// next.
const RESALE_WINDOW: Limits = Limits {
    ops_per_window_max: 3,
    search_work_max: SEARCH_WORK_MAX,
};

#[test]
fn units_resold_within_a_window_carry_over_as_sold() {
    // Regression: settling a window took its places before its cancels and
    // clamped at zero, so the resold units came back and the next window
    // started with 2 available: its read of 0 and its out_of_stock were
    // reported as violations.
    let mut r = Run::default();
    resell_released_units(&mut r);
    r.read_stock(0, (300, 310), stock(0))
        .place(1, (400, 410), 1, failed(fail::OUT_OF_STOCK));
    let v = check_stock_with(&r.history(), &sku("A"), 2, &RESALE_WINDOW);
    assert!(
        matches!(v, Verdict::Linearizable { ops: 5, windows: 2 }),
        "{v}"
    );
}

#[test]
fn rejects_oversell_of_units_resold_in_an_earlier_window() {
    // The other face of the same carry: too much stock carried over let a
    // later window sell units that were gone.
    let mut r = Run::default();
    resell_released_units(&mut r);
    r.place(1, (300, 310), 1, placed(3, 1));
    let v = check_stock_with(&r.history(), &sku("A"), 2, &RESALE_WINDOW);
    let why = assert_rejected(&v);
    assert!(why.contains("#3"), "{why}");
    // The explanation names the carried state, which the history does not show.
    assert!(
        why.contains("window 2 of 2") && why.contains("available 0"),
        "{why}"
    );
}

#[test]
fn too_many_overlapping_ops_are_skipped_not_passed() {
    let mut r = Run::default();
    // One long read keeps every op overlapping: no quiescent point.
    r.read_stock(9, (0, 100_000), stock(100));
    sequential_places(&mut r, 10, 20, 1);
    let limits = Limits {
        ops_per_window_max: 8,
        ..Limits::default()
    };
    let v = check_stock_with(&r.history(), &sku("A"), 100, &limits);
    assert!(
        matches!(&v, Verdict::Skipped { reason } if reason.contains("too many ops")),
        "{v}"
    );
}

#[test]
fn unknown_op_prevents_splitting_after_it() {
    let mut r = Run::default();
    r.place(0, (0, 5), 1, unknown());
    sequential_places(&mut r, 10, 20, 1);
    let limits = Limits {
        ops_per_window_max: 8,
        ..Limits::default()
    };
    let v = check_stock_with(&r.history(), &sku("A"), 100, &limits);
    assert!(
        matches!(&v, Verdict::Skipped { reason } if reason.contains("Unknown")),
        "{v}"
    );
}

#[test]
fn unknown_pay_nobody_can_observe_does_not_block_splitting() {
    // A lost pay leaves available stock alone, and no later op touches its
    // order: it is dropped, so the windows after it can still be cut.
    let mut r = Run::default();
    r.place(0, (0, 5), 1, placed(1, 1))
        .pay(0, (10, 15), 1, unknown());
    sequential_places(&mut r, 100, 20, 2);
    let limits = Limits {
        ops_per_window_max: 8,
        ..Limits::default()
    };
    let v = check_stock_with(&r.history(), &sku("A"), 100, &limits);
    assert!(
        matches!(v, Verdict::Linearizable { windows, .. } if windows > 1),
        "{v}"
    );
    // A later cancel of that order could see it, so there it is kept.
    r.cancel(1, (5_000, 5_010), 1, failed(fail::INVALID_TRANSITION));
    let v = check_stock_with(&r.history(), &sku("A"), 100, &limits);
    assert!(
        matches!(&v, Verdict::Skipped { reason } if reason.contains("Unknown")),
        "{v}"
    );
    assert_linearizable(&r.stock_verdict(100));
}

#[test]
fn exhausted_search_is_skipped_not_failed_or_passed() {
    // Many concurrent places with a wrong final read: the search must try
    // many orders, and a budget of a few steps cannot.
    let mut r = Run::default();
    for i in 0..8 {
        r.place(i, (i, 1_000), 1, placed(i + 1, 1));
    }
    r.read_stock(0, (2_000, 2_010), stock(0));
    let limits = Limits {
        search_work_max: 4,
        ..Limits::default()
    };
    let v = check_stock_with(&r.history(), &sku("A"), 10, &limits);
    assert!(
        matches!(&v, Verdict::Skipped { reason } if reason.contains("budget")),
        "{v}"
    );
    // With the default budget the violation is found.
    assert_rejected(&check_stock(&r.history(), &sku("A"), 10));
}

#[test]
fn unattributed_cancel_with_unknown_place_is_skipped() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, unknown())
        .cancel(1, (20, 30), 7, became(OrderStatus::Cancelled))
        .read_stock(0, (40, 50), stock(5));
    let v = r.stock_verdict(5);
    assert!(matches!(v, Verdict::Skipped { .. }), "{v}");
}

#[test]
fn one_large_window_is_searched_whole() {
    let n = 1_000;
    let mut r = Run::default();
    sequential_places(&mut r, 0, n, 1);
    // One read spanning everything forbids splitting.
    r.read_stock(9, (0, 100 * n + 50), stock(n));
    let v = r.stock_verdict(2 * n);
    assert!(matches!(v, Verdict::Linearizable { windows: 1, .. }), "{v}");
}

// ----- check_all -------------------------------------------------------------------

#[test]
fn check_all_reports_each_sku_orders_and_keys() {
    let mut r = Run::default();
    r.place_of(0, (0, 10), "A", 2, placed(1, 2))
        .place_of(1, (0, 10), "B", 1, placed(2, 1))
        .pay(0, (20, 30), 1, became(OrderStatus::Paid));
    let initial = BTreeMap::from([(sku("A"), 5)]);
    let findings = check_all(&r.history(), &initial);
    let names: Vec<&str> = findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "unique idempotency keys",
            "linearizable stock A",
            "linearizable stock B",
            "linearizable orders"
        ]
    );
    assert!(
        findings[0].ok && findings[1].ok && findings[3].ok,
        "{findings:?}"
    );
    assert!(
        findings[2].skipped && !findings[2].ok,
        "no initial stock for B"
    );
}

#[test]
fn check_all_flags_reused_keys() {
    let mut ops = Run::default();
    ops.place(0, (0, 10), 1, placed(1, 1))
        .place(1, (20, 30), 1, placed(2, 1));
    let mut raw = ops.ops.clone();
    raw[1].kind = raw[0].kind.clone();
    let history = History::from_ops(raw).expect("well formed");
    let findings = check_all(&history, &BTreeMap::from([(sku("A"), 5)]));
    assert!(
        !findings[0].ok && findings[0].detail.contains("k0"),
        "{:?}",
        findings[0]
    );
}

#[test]
fn check_all_lists_failing_orders() {
    let mut r = Run::default();
    r.place(0, (0, 10), 2, placed(1, 2))
        .read_order(1, (20, 30), 1, order_read(None));
    let findings = check_all(&r.history(), &BTreeMap::from([(sku("A"), 5)]));
    let orders = findings.last().expect("an orders finding");
    assert!(
        !orders.ok && !orders.skipped && orders.detail.contains("order 1"),
        "{orders:?}"
    );
}

// ----- property: every valid execution is accepted ------------------------------

/// A linearizable history of SKUs A and B (see `props::simulate`): ops
/// 100 ns apart, each interval up to 250 ns either side, some answers lost.
fn generate(initial: &[u64; 2], steps: &[Step]) -> History {
    History::from_ops(simulate(initial, steps, true, GAP_NS))
        .expect("generated ops are well formed")
}

fn some_steps() -> impl Strategy<Value = Vec<Step>> {
    steps(1..=60, 250, 1, 8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_executions_are_accepted(
        initial in [0u64..12, 0u64..12],
        steps in some_steps(),
    ) {
        let history = generate(&initial, &steps);
        let stock = BTreeMap::from([(sku("A"), initial[0]), (sku("B"), initial[1])]);
        for finding in check_all(&history, &stock) {
            prop_assert!(finding.ok, "{finding}");
        }
    }

    #[test]
    fn valid_executions_are_accepted_in_small_windows(
        initial in [0u64..12, 0u64..12],
        steps in some_steps(),
        ops_per_window_max in 1usize..8,
    ) {
        // Splitting must not change a verdict: the state carried from one
        // window to the next is the one every linearization reaches. A
        // window left unsplit by an Unknown op is skipped, never failed.
        let history = generate(&initial, &steps);
        let stock = BTreeMap::from([(sku("A"), initial[0]), (sku("B"), initial[1])]);
        let limits = Limits { ops_per_window_max, ..Limits::default() };
        for finding in check_all_with(&history, &stock, &limits) {
            prop_assert!(finding.ok || finding.skipped, "{finding}");
        }
    }

    #[test]
    fn a_read_above_the_initial_stock_is_rejected(
        initial in [0u64..12, 0u64..12],
        steps in some_steps(),
        pick in any::<proptest::sample::Index>(),
    ) {
        // Available stock never exceeds what was there at the start (cancels
        // only release what places reserved), so such a read can fit nowhere.
        let history = generate(&initial, &steps);
        let mut ops = history.ops().to_vec();
        ops.push(Op {
            process: 99,
            invoke_ns: 0,
            complete_ns: 1_000_000,
            kind: OpKind::ReadStock { sku: sku("A") },
            outcome: stock(initial[0] + 1),
        });
        let n = ops.len();
        ops.swap(pick.index(n), n - 1);
        let history = History::from_ops(ops).expect("well formed");
        let verdict = check_stock(&history, &sku("A"), initial[0]);
        prop_assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{verdict}");
    }
}

/// The run whose false "not linearizable" on HOT led to the fix in
/// `StockModel::settle`: 13,694 ops, HOT's 60 units sold out by 7.7 s, split
/// into two windows. Not kept in the repository (2.5 MB); runs when the
/// evidence file is there: `cargo test -p keel-chaos --release --
/// --ignored hot_false_positive_evidence`.
#[test]
#[ignore = "needs /tmp/chaos-evidence/hot-false-positive.jsonl"]
fn hot_false_positive_evidence_is_linearizable() {
    let path = std::path::Path::new("/tmp/chaos-evidence/hot-false-positive.jsonl");
    let Ok(file) = std::fs::File::open(path) else {
        return keel_harness::skip_unless_ci(
            "hot_false_positive_evidence_is_linearizable",
            &format!("{} not found", path.display()),
        );
    };
    let history = History::read_jsonl(std::io::BufReader::new(file)).expect("a valid history");
    let initial = BTreeMap::from([
        (sku("HOT"), 60),
        (sku("COLD-A"), 1_000_000),
        (sku("COLD-B"), 1_000_000),
        (sku("COLD-C"), 1_000_000),
    ]);
    let started = std::time::Instant::now();
    let findings = check_all(&history, &initial);
    eprintln!(
        "check_all of {} ops: {:?}",
        history.len(),
        started.elapsed()
    );
    for finding in &findings {
        eprintln!("{finding}");
        assert!(finding.ok, "{finding}");
    }
}
