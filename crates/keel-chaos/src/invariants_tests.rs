use super::*;

use keel_domain::RequestId;

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn account(s: &str) -> AccountId {
    AccountId::new(s).expect("valid account")
}

fn place(i: usize, customer: &str, qty: u64, outcome: Outcome) -> Op {
    Op {
        process: 0,
        invoke_ns: 10 * i as u64,
        complete_ns: 10 * i as u64 + 5,
        kind: OpKind::PlaceOrder {
            customer: account(customer),
            sku: sku("A"),
            qty,
            key: RequestId::new(format!("p{i}")).expect("valid key"),
        },
        outcome,
    }
}

fn pay(i: usize, order: u64, outcome: Outcome) -> Op {
    Op {
        process: 0,
        invoke_ns: 10 * i as u64,
        complete_ns: 10 * i as u64 + 5,
        kind: OpKind::Pay {
            order: OrderId(order),
            key: RequestId::new(format!("y{i}")).expect("valid key"),
        },
        outcome,
    }
}

fn placed(order: u64, qty: u64) -> Outcome {
    Outcome::Ok(OpResult::Placed {
        order: OrderId(order),
        qty,
    })
}

fn order(id: u64, customer: &str, qty: u64, status: OrderStatus) -> FinalOrder {
    FinalOrder {
        id: OrderId(id),
        customer: account(customer),
        lines: vec![FinalLine { sku: sku("A"), qty }],
        status,
    }
}

fn history(ops: Vec<Op>) -> History {
    History::from_ops(ops).expect("well-formed ops")
}

/// A run that went right: three places (acknowledged, unknown and applied,
/// refused), one pay.
fn good_run() -> (History, FinalState) {
    let h = history(vec![
        place(0, "c1", 2, placed(1, 2)),
        place(1, "c1", 3, Outcome::Unknown("timeout".into())),
        place(2, "c2", 4, Outcome::Fail("out_of_stock".into())),
        pay(
            3,
            1,
            Outcome::Ok(OpResult::Status {
                status: OrderStatus::Paid,
            }),
        ),
    ]);
    let state = FinalState {
        orders: vec![
            order(1, "c1", 2, OrderStatus::Paid),
            order(2, "c1", 3, OrderStatus::Reserved),
        ],
        stock: vec![FinalStock {
            sku: sku("A"),
            on_hand: 4,
            reserved: 3,
            sold: 2,
        }],
        accounts: vec![
            FinalAccount {
                id: account("c1"),
                kind: AccountKind::Customer,
                currency: Currency::new("EUR").expect("valid currency"),
                balance: Minor(80),
            },
            FinalAccount {
                id: account("shop"),
                kind: AccountKind::Merchant,
                currency: Currency::new("EUR").expect("valid currency"),
                balance: Minor(20),
            },
            FinalAccount {
                id: account("world"),
                kind: AccountKind::External,
                currency: Currency::new("EUR").expect("valid currency"),
                balance: Minor(-100),
            },
        ],
        replicas: ["n1", "n2", "n3"]
            .iter()
            .map(|n| ReplicaDigest {
                node: (*n).to_owned(),
                applied_index: 42,
                digest: "ab12".to_owned(),
            })
            .collect(),
        supplied: BTreeMap::from([(sku("A"), 6)]),
        missing: Vec::new(),
    };
    (h, state)
}

#[test]
fn a_good_run_passes_every_check() {
    let (h, state) = good_run();
    let findings = check_invariants(&h, &state);
    assert_eq!(findings.len(), 8);
    for f in &findings {
        assert!(f.ok, "{f}");
    }
}

#[test]
fn a_lost_product_or_account_fails_the_setup_check() {
    let (h, mut state) = good_run();
    state.missing = vec!["product A".into(), "account c1".into()];
    let findings = check_invariants(&h, &state);
    let f = &findings[0];
    assert_eq!(f.name, "setup writes durable");
    assert!(!f.ok && f.detail.contains("product A is gone"), "{f}");
}

#[test]
fn lost_or_altered_acknowledged_order_fails() {
    let (h, mut state) = good_run();
    state.orders.retain(|o| o.id != OrderId(1));
    let f = check_acknowledged_durable(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("order 1 is gone"), "{f}");

    let (h, mut state) = good_run();
    state.orders[0].lines[0].qty = 9;
    let f = check_acknowledged_durable(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("order 1 holds"), "{f}");
}

#[test]
fn acknowledged_pay_must_stick() {
    let (h, mut state) = good_run();
    state.orders[0].status = OrderStatus::Reserved;
    let f = check_acknowledged_durable(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("not paid"), "{f}");
}

#[test]
fn unknown_place_applied_twice_fails() {
    let (h, mut state) = good_run();
    state.orders.push(order(3, "c1", 3, OrderStatus::Reserved));
    let f = check_places_applied_once(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("made orders"), "{f}");
}

#[test]
fn unknown_place_not_applied_is_fine() {
    let (h, mut state) = good_run();
    state.orders.retain(|o| o.id != OrderId(2));
    assert!(check_places_applied_once(&h, &state.orders).ok);
}

#[test]
fn failed_place_that_applied_fails() {
    let (h, mut state) = good_run();
    state.orders.push(order(3, "c2", 4, OrderStatus::Reserved));
    let f = check_places_applied_once(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("out_of_stock"), "{f}");
}

#[test]
fn phantom_order_fails() {
    let (h, mut state) = good_run();
    state.orders.push(order(3, "c9", 1, OrderStatus::Reserved));
    let f = check_places_applied_once(&h, &state.orders);
    assert!(!f.ok && f.detail.contains("match no place"), "{f}");
}

/// A load that buys the same thing again: the orders of one signature
/// number at least its acknowledged places and at most those plus its
/// unknown ones.
#[test]
fn shared_signatures_are_judged_by_count() {
    let h = history(vec![
        place(0, "c1", 2, placed(1, 2)),
        place(1, "c1", 2, Outcome::Unknown("timeout".into())),
        place(2, "c1", 2, Outcome::Fail("out_of_stock".into())),
        place(3, "c1", 2, placed(4, 2)),
    ]);
    let orders = |ids: &[u64]| -> Vec<FinalOrder> {
        ids.iter()
            .map(|id| order(*id, "c1", 2, OrderStatus::Reserved))
            .collect()
    };
    for fine in [&[1, 4][..], &[1, 4, 7]] {
        let f = check_places_applied_once(&h, &orders(fine));
        assert!(f.ok, "orders {fine:?}: {f}");
    }
    let f = check_places_applied_once(&h, &orders(&[1, 4, 7, 8]));
    assert!(!f.ok && f.detail.contains("made 4 orders"), "{f}");
    let f = check_places_applied_once(&h, &orders(&[1]));
    assert!(!f.ok && f.detail.contains("but only 1 such orders"), "{f}");
}

#[test]
fn oversell_fails() {
    let (_, mut state) = good_run();
    state.stock[0].sold = 4; // 4 sold + 3 reserved > 6 supplied
    let f = check_no_oversell(&state.stock, &state.supplied);
    assert!(!f.ok && f.detail.contains("> supplied 6"), "{f}");

    let (_, mut state) = good_run();
    state.stock[0].reserved = 5; // above on_hand 4
    let f = check_no_oversell(&state.stock, &state.supplied);
    assert!(!f.ok && f.detail.contains("reserved 5 > on_hand 4"), "{f}");
}

#[test]
fn missing_stock_fails() {
    let (_, state) = good_run();
    let f = check_no_oversell(&[], &state.supplied);
    assert!(!f.ok && f.detail.contains("not read back"), "{f}");
}

#[test]
fn stock_disagreeing_with_orders_fails() {
    let (_, mut state) = good_run();
    state.orders[1].status = OrderStatus::Cancelled; // 3 units still reserved
    let f = check_stock_matches_orders(&state.stock, &state.orders, &state.supplied);
    assert!(!f.ok && f.detail.contains("reserved orders hold 0"), "{f}");

    let (_, mut state) = good_run();
    state.stock[0].on_hand = 5; // 5 + 2 sold != 6 supplied
    let f = check_stock_matches_orders(&state.stock, &state.orders, &state.supplied);
    assert!(!f.ok && f.detail.contains("!= supplied 6"), "{f}");
}

#[test]
fn money_not_summing_to_zero_fails() {
    let (_, mut state) = good_run();
    state.accounts[1].balance = Minor(21);
    let f = check_money_conserved(&state.accounts);
    assert!(!f.ok && f.detail.contains("EUR: balances sum to 1"), "{f}");
}

#[test]
fn negative_customer_fails() {
    let (_, mut state) = good_run();
    state.accounts[0].balance = Minor(-1);
    state.accounts[1].balance = Minor(101);
    let f = check_money_conserved(&state.accounts);
    assert!(!f.ok && f.detail.contains("customer c1"), "{f}");
}

#[test]
fn diverging_replicas_fail_and_none_is_skipped() {
    let (_, mut state) = good_run();
    state.replicas[2].digest = "ff00".to_owned();
    let f = check_replicas_agree(&state.replicas);
    assert!(!f.ok && f.detail.contains("n3 has ff00"), "{f}");

    let (_, mut state) = good_run();
    state.replicas[1].applied_index = 41;
    assert!(!check_replicas_agree(&state.replicas).ok);

    let f = check_replicas_agree(&[]);
    assert!(f.skipped && !f.ok);
}

#[test]
fn an_order_seen_expired_in_a_run_shorter_than_every_lifetime_is_flagged() {
    let read = |i: usize, status| Op {
        process: 0,
        invoke_ns: 10 * i as u64,
        complete_ns: 10 * i as u64 + 5,
        kind: OpKind::ReadOrder { order: OrderId(1) },
        outcome: Outcome::Ok(OpResult::Order {
            status: Some(status),
        }),
    };
    let h = history(vec![
        place(0, "c", 1, placed(1, 1)),
        read(1, OrderStatus::Reserved),
    ]);
    assert!(check_no_early_expiry(&h, &[order(1, "c", 1, OrderStatus::Reserved)]).ok);
    let f = check_no_early_expiry(&h, &[order(1, "c", 1, OrderStatus::Expired)]);
    assert!(!f.ok && f.detail.contains("order 1"), "{}", f.detail);
    let h = history(vec![
        place(0, "c", 1, placed(1, 1)),
        read(1, OrderStatus::Expired),
    ]);
    let f = check_no_early_expiry(&h, &[order(1, "c", 1, OrderStatus::Cancelled)]);
    assert!(!f.ok && f.detail.contains("read expired"), "{}", f.detail);
}
