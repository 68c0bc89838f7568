//! One test per command outcome: every success and every refusal path of
//! docs/DOMAIN.md, each followed by the invariant check.
#![allow(clippy::unwrap_used)] // Test file: a failed unwrap is a failed test.

use keel_domain::query::digest;
use keel_domain::{
    apply_batch, check_invariants, AccountId, AccountKind, Applied, Batch, Command, Currency,
    DomainError, Envelope, LineRequest, MemTables, Minor, OrderId, OrderStatus, Outcome, Principal,
    ProductName, RequestId, Sku,
};

struct Shop {
    t: MemTables,
    n: u64,
    now: u64,
}

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

impl Shop {
    fn new() -> Self {
        let mut s = Shop {
            t: MemTables::new(),
            n: 0,
            now: 1_000,
        };
        let eur = Currency::new("EUR").unwrap();
        s.ok(Command::OpenAccount {
            id: acct("shop"),
            kind: AccountKind::Merchant,
            currency: eur,
        });
        s.ok(Command::OpenAccount {
            id: acct("world"),
            kind: AccountKind::External,
            currency: eur,
        });
        s.ok(Command::OpenAccount {
            id: acct("alice"),
            kind: AccountKind::Customer,
            currency: eur,
        });
        s.ok(Command::OpenAccount {
            id: acct("bob"),
            kind: AccountKind::Customer,
            currency: eur,
        });
        for (k, price) in [("A", 100), ("B", 250)] {
            s.ok(Command::UpsertProduct {
                sku: sku(k),
                name: ProductName::new(k).unwrap(),
                price: Minor(price),
                currency: eur,
                active: true,
            });
            s.ok(Command::Restock {
                sku: sku(k),
                qty: 10,
            });
        }
        s.ok(Command::Deposit {
            account: acct("alice"),
            amount: Minor(10_000),
        });
        s
    }
    fn run_as(&mut self, p: Principal, key: &str, c: Command) -> Applied {
        let env = Envelope {
            request_id: RequestId::new(key).unwrap(),
            principal: p,
            origin: None,
            command: c,
        };
        let mut out = apply_batch(
            &mut self.t,
            &Batch {
                leader_time_ms: self.now,
                commands: vec![env],
            },
        )
        .unwrap();
        assert!(check_invariants(&self.t).unwrap().is_empty());
        out.remove(0)
    }
    fn run(&mut self, c: Command) -> Result<Outcome, DomainError> {
        self.n += 1;
        let key = format!("k{}", self.n);
        self.run_as(Principal::Admin, &key, c).result
    }
    fn ok(&mut self, c: Command) -> Outcome {
        self.run(c).unwrap()
    }
    fn err(&mut self, c: Command) -> DomainError {
        let before = keel_domain::query::summary(&self.t).unwrap();
        let e = self.run(c).unwrap_err();
        // A refusal changes nothing but its own idempotency record (and the
        // clock, which follows leader time whatever the command).
        let mut after = keel_domain::query::summary(&self.t).unwrap();
        after.clock_ms = before.clock_ms;
        assert_eq!(after, before);
        e
    }
    fn place(&mut self, lines: &[(&str, u64)]) -> Result<Outcome, DomainError> {
        let lines = lines
            .iter()
            .map(|(s, q)| LineRequest {
                sku: sku(s),
                qty: *q,
            })
            .collect();
        self.run(Command::PlaceOrder {
            customer: acct("alice"),
            lines,
            ttl_seconds: Some(60),
        })
    }
    fn order(&mut self, lines: &[(&str, u64)]) -> OrderId {
        match self.place(lines).unwrap() {
            Outcome::Order(o) => o.id,
            other => panic!("{other:?}"),
        }
    }
    fn product(&self, s: &str) -> keel_domain::Product {
        keel_domain::query::product(&self.t, &sku(s))
            .unwrap()
            .unwrap()
    }
}

#[test]
fn place_reserves_all_lines_and_out_of_stock_lists_every_short_line() {
    let mut s = Shop::new();
    s.order(&[("A", 3), ("A", 2), ("B", 1)]);
    assert_eq!(s.product("A").stock.reserved, 5);
    match s.place(&[("A", 6), ("B", 10)]).unwrap_err() {
        DomainError::OutOfStock { lines } => {
            assert_eq!(lines.len(), 2);
            assert_eq!((lines[0].requested, lines[0].available), (6, 5));
            assert_eq!((lines[1].requested, lines[1].available), (10, 9));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        s.product("A").stock.reserved,
        5,
        "nothing reserved by a refused order"
    );
}

#[test]
fn inactive_products_mixed_currencies_and_wrong_customers_are_refused() {
    let mut s = Shop::new();
    let usd = Currency::new("USD").unwrap();
    s.ok(Command::UpsertProduct {
        sku: sku("U"),
        name: ProductName::new("u").unwrap(),
        price: Minor(5),
        currency: usd,
        active: true,
    });
    s.ok(Command::Restock {
        sku: sku("U"),
        qty: 5,
    });
    assert_eq!(
        s.place(&[("A", 1), ("U", 1)]).unwrap_err().code(),
        "validation"
    );
    s.ok(Command::UpsertProduct {
        sku: sku("B"),
        name: ProductName::new("b").unwrap(),
        price: Minor(5),
        currency: Currency::new("EUR").unwrap(),
        active: false,
    });
    assert_eq!(s.place(&[("B", 1)]).unwrap_err().code(), "validation");
    assert_eq!(s.place(&[("NOPE", 1)]).unwrap_err().code(), "not_found");
    let e = s.err(Command::PlaceOrder {
        customer: acct("shop"),
        lines: vec![LineRequest {
            sku: sku("A"),
            qty: 1,
        }],
        ttl_seconds: None,
    });
    assert_eq!(e.code(), "validation");
}

#[test]
fn pay_moves_money_and_stock_and_insufficient_funds_is_refused() {
    let mut s = Shop::new();
    let o = s.order(&[("A", 2)]);
    s.ok(Command::PayOrder { order: o });
    let a = s.product("A");
    assert_eq!(
        (a.stock.on_hand, a.stock.reserved, a.stock.ledger.sold),
        (8, 0, 2)
    );
    let alice = keel_domain::query::account(&s.t, &acct("alice"))
        .unwrap()
        .unwrap();
    assert_eq!(alice.balance, Minor(9_800));
    // Bob has no money.
    let lines = vec![LineRequest {
        sku: sku("A"),
        qty: 1,
    }];
    let Outcome::Order(ob) = s.ok(Command::PlaceOrder {
        customer: acct("bob"),
        lines,
        ttl_seconds: None,
    }) else {
        panic!()
    };
    assert_eq!(
        s.err(Command::PayOrder { order: ob.id }).code(),
        "insufficient_funds"
    );
}

#[test]
fn every_invalid_transition_names_the_current_status() {
    let mut s = Shop::new();
    let o = s.order(&[("A", 1)]);
    for c in [
        Command::ShipOrder { order: o },
        Command::DeliverOrder { order: o },
        Command::RefundOrder {
            order: o,
            restock: false,
        },
    ] {
        match s.err(c) {
            DomainError::InvalidTransition { from, .. } => assert_eq!(from, OrderStatus::Reserved),
            e => panic!("{e:?}"),
        }
    }
    s.ok(Command::PayOrder { order: o });
    for c in [
        Command::PayOrder { order: o },
        Command::CancelOrder { order: o },
        Command::DeliverOrder { order: o },
    ] {
        assert!(matches!(
            s.err(c),
            DomainError::InvalidTransition {
                from: OrderStatus::Paid,
                ..
            }
        ));
    }
    s.ok(Command::ShipOrder { order: o });
    s.ok(Command::DeliverOrder { order: o });
    for c in [
        Command::RefundOrder {
            order: o,
            restock: true,
        },
        Command::CancelOrder { order: o },
        Command::ShipOrder { order: o },
    ] {
        assert!(matches!(
            s.err(c),
            DomainError::InvalidTransition {
                from: OrderStatus::Delivered,
                ..
            }
        ));
    }
    let c = s.order(&[("A", 1)]);
    s.ok(Command::CancelOrder { order: c });
    assert!(matches!(
        s.err(Command::PayOrder { order: c }),
        DomainError::InvalidTransition {
            from: OrderStatus::Cancelled,
            ..
        }
    ));
}

#[test]
fn refund_with_and_without_restock() {
    let mut s = Shop::new();
    let o1 = s.order(&[("A", 2)]);
    s.ok(Command::PayOrder { order: o1 });
    s.ok(Command::RefundOrder {
        order: o1,
        restock: true,
    });
    assert_eq!(s.product("A").stock.on_hand, 10);
    let o2 = s.order(&[("A", 2)]);
    s.ok(Command::PayOrder { order: o2 });
    s.ok(Command::RefundOrder {
        order: o2,
        restock: false,
    });
    assert_eq!(s.product("A").stock.on_hand, 8);
}

#[test]
fn expiry_is_by_leader_time_and_pay_after_expiry_is_refused() {
    let mut s = Shop::new();
    let o = s.order(&[("A", 4)]);
    s.now += 61_000;
    assert!(matches!(
        s.err(Command::PayOrder { order: o }),
        DomainError::InvalidTransition { .. }
    ));
    assert_eq!(
        s.product("A").stock.reserved,
        4,
        "a refusal does not expire"
    );
    let Outcome::Expired { orders, .. } = s.ok(Command::ExpireDue { now_ms: s.now }) else {
        panic!()
    };
    assert_eq!(orders, vec![o]);
    assert_eq!(s.product("A").stock.reserved, 0);
}

#[test]
fn set_stock_below_reserved_is_refused() {
    let mut s = Shop::new();
    s.order(&[("A", 4)]);
    assert!(matches!(
        s.err(Command::SetStock {
            sku: sku("A"),
            on_hand: 3
        }),
        DomainError::BelowReserved { reserved: 4, .. }
    ));
    s.ok(Command::SetStock {
        sku: sku("A"),
        on_hand: 4,
    });
}

#[test]
fn idempotent_replay_returns_the_original_and_changes_nothing() {
    let mut s = Shop::new();
    let c = Command::PlaceOrder {
        customer: acct("alice"),
        lines: vec![LineRequest {
            sku: sku("A"),
            qty: 1,
        }],
        ttl_seconds: None,
    };
    let first = s.run_as(Principal::Admin, "same", c.clone());
    let before = digest(&s.t).unwrap();
    let again = s.run_as(Principal::Admin, "same", c);
    assert!(again.replayed);
    assert_eq!(again.result, first.result);
    assert_eq!(digest(&s.t).unwrap(), before);
    let other = Command::Restock {
        sku: sku("A"),
        qty: 1,
    };
    assert_eq!(
        s.run_as(Principal::Admin, "same", other)
            .result
            .unwrap_err()
            .code(),
        "idempotency_conflict"
    );
    assert_eq!(digest(&s.t).unwrap(), before);
}

#[test]
fn customers_act_only_on_their_own_orders_and_not_as_admin() {
    let mut s = Shop::new();
    let o = s.order(&[("A", 1)]);
    let bob = Principal::customer(acct("bob"));
    assert_eq!(
        s.run_as(bob.clone(), "b1", Command::PayOrder { order: o })
            .result
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        s.run_as(
            bob,
            "b2",
            Command::Restock {
                sku: sku("A"),
                qty: 1
            }
        )
        .result
        .unwrap_err()
        .code(),
        "forbidden"
    );
    let alice = Principal::customer(acct("alice"));
    assert!(s
        .run_as(alice, "a1", Command::PayOrder { order: o })
        .result
        .is_ok());
}

#[test]
fn the_checker_detects_a_corrupted_record() {
    let mut s = Shop::new();
    let mut p = s.product("A");
    p.stock.reserved = p.stock.on_hand + 1;
    keel_domain::WriteTables::put(
        &mut s.t,
        keel_domain::Table::Products,
        b"A",
        &keel_domain::codec::encode(&p),
    )
    .unwrap();
    let v = check_invariants(&s.t).unwrap();
    assert!(v.iter().any(|x| x.invariant == 1), "{v:?}");
    let mut a = keel_domain::query::account(&s.t, &acct("alice"))
        .unwrap()
        .unwrap();
    a.balance = Minor(-1);
    keel_domain::WriteTables::put(
        &mut s.t,
        keel_domain::Table::Accounts,
        b"alice",
        &keel_domain::codec::encode(&a),
    )
    .unwrap();
    let v = check_invariants(&s.t).unwrap();
    assert!(v.iter().any(|x| x.invariant == 3), "{v:?}");
}
