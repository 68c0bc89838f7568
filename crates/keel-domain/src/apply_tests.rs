//! Unit tests of `apply`: every command's success and every refusal path of
//! docs/DOMAIN.md, the idempotency rules, the leader clock, the queries, and the
//! invariant checker itself (that it does catch corrupted records).
//!
//! Every batch goes through [`World::apply`], which asserts the invariants
//! right after it, so every scenario below ends checked.
#![allow(clippy::unwrap_used)] // Test module: a failed unwrap is a failed test.

use super::*;
use crate::command::{Principal, LINE_QTY_MAX, ORDER_LINES_MAX, ORDER_TTL_MAX_S};
use crate::error::FieldError;
use crate::ids::{ProductName, RequestId, ID_LEN_MAX, PRODUCT_NAME_LEN_MAX, REQUEST_ID_LEN_MAX};
use crate::invariants::{check_invariants, Violation};
use crate::query::{self, QueryError};
use crate::tables::{MemTables, Row};

/// Leader time of the first batch: a realistic epoch-ms value.
const T0: u64 = 1_700_000_000_000;
/// The default reservation lifetime in ms.
const TTL_DEFAULT_MS: u64 = ORDER_TTL_DEFAULT_S as u64 * 1000;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}
fn acct(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}
fn cur(s: &str) -> Currency {
    Currency::new(s).unwrap()
}
fn rid(s: &str) -> RequestId {
    RequestId::new(s).unwrap()
}
fn customer(s: &str) -> Principal {
    Principal::customer(acct(s))
}
fn lines(ls: &[(&str, u64)]) -> Vec<LineRequest> {
    ls.iter()
        .map(|(s, q)| LineRequest {
            sku: sku(s),
            qty: *q,
        })
        .collect()
}
fn place_cmd_ttl(who: &str, ls: &[(&str, u64)], ttl_seconds: u32) -> Command {
    Command::PlaceOrder {
        customer: acct(who),
        lines: lines(ls),
        ttl_seconds: Some(ttl_seconds),
    }
}
fn place_cmd(who: &str, ls: &[(&str, u64)]) -> Command {
    Command::PlaceOrder {
        customer: acct(who),
        lines: lines(ls),
        ttl_seconds: None,
    }
}
fn open(id: &str, kind: AccountKind, currency: &str) -> Command {
    Command::OpenAccount {
        id: acct(id),
        kind,
        currency: cur(currency),
    }
}
fn upsert(s: &str, price: i64, currency: &str, active: bool) -> Command {
    Command::UpsertProduct {
        sku: sku(s),
        name: ProductName::new(format!("product {s}")).unwrap(),
        price: Minor(price),
        currency: cur(currency),
        active,
    }
}
fn deposit(a: &str, amount: i64) -> Command {
    Command::Deposit {
        account: acct(a),
        amount: Minor(amount),
    }
}
fn restock(s: &str, qty: u64) -> Command {
    Command::Restock { sku: sku(s), qty }
}

/// The rows of every table except the idempotency tables: what a refused or
/// replayed command must leave untouched.
fn business_rows(t: &MemTables) -> Vec<(Table, Vec<Row>)> {
    Table::ALL
        .iter()
        .filter(|t| {
            !matches!(
                t,
                Table::Idempotency | Table::IdempotencyByTime | Table::Audit
            )
        })
        .map(|table| {
            let mut rows = t
                .scan(
                    *table,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    Direction::Forward,
                    usize::MAX,
                )
                .unwrap();
            rows.retain(|(k, _)| k.as_slice() != crate::keys::META_AUDIT_NEXT);
            (*table, rows)
        })
        .collect()
}

fn rows_of(t: &MemTables, table: Table) -> usize {
    t.scan(
        table,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        usize::MAX,
    )
    .unwrap()
    .len()
}

/// A shop under test: tables, leader time, and a request-id counter.
struct World {
    t: MemTables,
    now_ms: u64,
    n: u64,
}

impl World {
    /// No accounts, no products.
    fn empty() -> Self {
        World {
            t: MemTables::new(),
            now_ms: T0,
            n: 0,
        }
    }

    /// Merchant and external accounts in EUR and USD; customers alice and
    /// bob (EUR) and carol (USD); products A (EUR 1.00, 50 units), B (EUR
    /// 2.50, 20 units), U (USD 3.00, 30 units) and Z (EUR, inactive, 5
    /// units); alice and carol have 1000.00, bob 10.00.
    fn new() -> Self {
        let mut w = World::empty();
        for c in [
            open("shop", AccountKind::Merchant, "EUR"),
            open("world", AccountKind::External, "EUR"),
            open("shop-us", AccountKind::Merchant, "USD"),
            open("world-us", AccountKind::External, "USD"),
            open("alice", AccountKind::Customer, "EUR"),
            open("bob", AccountKind::Customer, "EUR"),
            open("carol", AccountKind::Customer, "USD"),
            upsert("A", 100, "EUR", true),
            upsert("B", 250, "EUR", true),
            upsert("U", 300, "USD", true),
            upsert("Z", 10, "EUR", false),
            restock("A", 50),
            restock("B", 20),
            restock("U", 30),
            restock("Z", 5),
            deposit("alice", 100_000),
            deposit("bob", 1_000),
            deposit("carol", 100_000),
        ] {
            w.ok(c);
        }
        w
    }

    fn env(&mut self, principal: Principal, command: Command) -> Envelope {
        self.n += 1;
        Envelope {
            request_id: rid(&format!("r{}", self.n)),
            principal,
            origin: None,
            command,
        }
    }

    /// Applies one batch at the current leader time and checks invariants.
    fn apply(&mut self, commands: Vec<Envelope>) -> Vec<Applied> {
        let out = self.apply_unchecked(commands);
        self.assert_invariants();
        out
    }

    fn apply_unchecked(&mut self, commands: Vec<Envelope>) -> Vec<Applied> {
        self.catch_up_clock();
        let n = commands.len();
        let out = apply_batch(
            &mut self.t,
            &Batch {
                leader_time_ms: self.now_ms,
                commands,
            },
        )
        .unwrap();
        assert_eq!(out.len(), n, "one result per command");
        out
    }

    /// Does what an idle leader's ticks do when the state clock lags its
    /// own by more than one entry may move it: empty entries until the
    /// clock is within a step of `now_ms`.
    fn catch_up_clock(&mut self) {
        while self.summary().clock_ms != 0
            && self.now_ms > self.summary().clock_ms + CLOCK_STEP_MAX_MS
        {
            let b = Batch {
                leader_time_ms: self.now_ms,
                commands: Vec::new(),
            };
            apply_batch(&mut self.t, &b).unwrap();
        }
    }

    fn assert_invariants(&self) {
        let v = check_invariants(&self.t).unwrap();
        assert!(v.is_empty(), "invariants broken: {v:#?}");
    }

    /// Runs one fresh command (not a replay) and returns its result.
    fn run(&mut self, principal: Principal, command: Command) -> CommandResult {
        let env = self.env(principal, command);
        let applied = self.apply(vec![env]).remove(0);
        assert!(!applied.replayed);
        applied.result
    }

    fn ok_as(&mut self, principal: Principal, command: Command) -> Outcome {
        let what = format!("{command:?}");
        match self.run(principal, command) {
            Ok(o) => o,
            Err(e) => panic!("{what} refused: {e}"),
        }
    }

    fn ok(&mut self, command: Command) -> Outcome {
        self.ok_as(Principal::Admin, command)
    }

    /// Runs a command that must be refused, and checks that the refusal
    /// changed nothing but its own idempotency record and, for staff, the
    /// audit record of the attempt.
    fn refused_as(&mut self, principal: Principal, command: Command) -> DomainError {
        // Bring the state clock (and pruning) up to the current leader time
        // first: any batch does that, so it is not the refusal's doing.
        self.apply(vec![]);
        let before = business_rows(&self.t);
        let what = format!("{command:?}");
        let e = match self.run(principal, command) {
            Err(e) => e,
            Ok(o) => panic!("{what} succeeded: {o:?}"),
        };
        assert!(
            business_rows(&self.t) == before,
            "refused {what} ({e}) changed the state"
        );
        e
    }

    fn refused(&mut self, command: Command) -> DomainError {
        self.refused_as(Principal::Admin, command)
    }

    fn order_cmd(&mut self, command: Command) -> Order {
        match self.ok(command) {
            Outcome::Order(o) => o,
            other => panic!("not an order: {other:?}"),
        }
    }

    /// Alice places an order (as herself).
    fn place(&mut self, ls: &[(&str, u64)]) -> Order {
        match self.ok_as(customer("alice"), place_cmd("alice", ls)) {
            Outcome::Order(o) => o,
            other => panic!("not an order: {other:?}"),
        }
    }

    fn place_with_ttl(&mut self, ls: &[(&str, u64)], ttl_seconds: u32) -> Order {
        match self.ok_as(customer("alice"), place_cmd_ttl("alice", ls, ttl_seconds)) {
            Outcome::Order(o) => o,
            other => panic!("not an order: {other:?}"),
        }
    }

    fn expire_due(&mut self) -> (Vec<OrderId>, bool) {
        match self.ok_as(
            Principal::System,
            Command::ExpireDue {
                now_ms: self.now_ms,
            },
        ) {
            Outcome::Expired { orders, more_due } => (orders, more_due),
            other => panic!("not an expiry: {other:?}"),
        }
    }

    fn product(&self, s: &str) -> Product {
        query::product(&self.t, &sku(s)).unwrap().unwrap()
    }
    fn account(&self, a: &str) -> Account {
        query::account(&self.t, &acct(a)).unwrap().unwrap()
    }
    fn balance(&self, a: &str) -> i64 {
        self.account(a).balance.0
    }
    fn order(&self, id: OrderId) -> Order {
        query::order(&self.t, id).unwrap().unwrap()
    }
    fn summary(&self) -> Summary {
        query::summary(&self.t).unwrap()
    }
    fn digest(&self) -> [u8; 32] {
        query::digest(&self.t).unwrap()
    }
    fn put<V: Serialize>(&mut self, table: Table, key: &[u8], value: &V) {
        self.t.put(table, key, &encode(value)).unwrap();
    }

    /// An order of alice's for one unit of A, driven to `status`.
    fn order_in(&mut self, status: OrderStatus) -> OrderId {
        let ttl_seconds = Some(1);
        let o = self.order_cmd(Command::PlaceOrder {
            customer: acct("alice"),
            lines: lines(&[("A", 1)]),
            ttl_seconds,
        });
        let id = o.id;
        let steps: &[Command] = match status {
            OrderStatus::Reserved | OrderStatus::Expired => &[],
            OrderStatus::Paid => &[Command::PayOrder { order: id }],
            OrderStatus::Shipped => &[
                Command::PayOrder { order: id },
                Command::ShipOrder { order: id },
            ],
            OrderStatus::Delivered => &[
                Command::PayOrder { order: id },
                Command::ShipOrder { order: id },
                Command::DeliverOrder { order: id },
            ],
            OrderStatus::Cancelled => &[Command::CancelOrder { order: id }],
            OrderStatus::Refunded => &[
                Command::PayOrder { order: id },
                Command::RefundOrder {
                    order: id,
                    restock: false,
                },
            ],
        };
        for c in steps {
            self.ok(c.clone());
        }
        if status == OrderStatus::Expired {
            self.now_ms += 1_000;
            assert_eq!(self.expire_due().0, vec![id]);
        }
        assert_eq!(self.order(id).status, status);
        id
    }
}

fn assert_validation(e: DomainError, field: &str, reason_part: &str) {
    match e {
        DomainError::Validation(FieldError { field: f, reason }) => {
            assert_eq!(f, field, "reason: {reason}");
            assert!(
                reason.contains(reason_part),
                "{reason:?} does not mention {reason_part:?}"
            );
        }
        other => panic!("expected validation of {field}, got {other:?}"),
    }
}

fn assert_not_found(e: DomainError, entity: &str, id: &str) {
    assert_eq!(
        e,
        DomainError::NotFound {
            entity: entity.into(),
            id: id.into()
        }
    );
}

// ----- catalogue and stock ------------------------------------------------

#[test]
fn upsert_creates_then_updates_keeping_stock() {
    let mut w = World::new();
    let before = w.summary().products;
    let Outcome::Product(p) = w.ok(upsert("A", 120, "EUR", false)) else {
        panic!()
    };
    assert_eq!(
        (p.price, p.active, p.stock.on_hand),
        (Minor(120), false, 50)
    );
    assert_eq!(
        w.summary().products,
        before,
        "an update is not a new product"
    );
    let Outcome::Product(n) = w.ok(upsert("NEW", 5, "EUR", true)) else {
        panic!()
    };
    assert_eq!(n.stock, Stock::default());
    assert_eq!(w.summary().products, before + 1);
    // Price 0 and above the maximum are refused.
    assert_validation(w.refused(upsert("A", 0, "EUR", true)), "price", "1 to");
    assert_validation(
        w.refused(upsert("A", crate::command::PRICE_MAX + 1, "EUR", true)),
        "price",
        "1 to",
    );
}

#[test]
fn currency_cannot_change_while_units_are_reserved() {
    let mut w = World::new();
    let o = w.place(&[("A", 1)]);
    assert_validation(
        w.refused(upsert("A", 100, "USD", true)),
        "currency",
        "reserved",
    );
    // The same currency is fine, and so is a change once nothing is reserved.
    w.ok(upsert("A", 90, "EUR", true));
    w.ok(Command::CancelOrder { order: o.id });
    let Outcome::Product(p) = w.ok(upsert("A", 90, "USD", true)) else {
        panic!()
    };
    assert_eq!(p.currency, cur("USD"));
}

#[test]
fn restock_adds_to_on_hand_and_the_ledger() {
    let mut w = World::new();
    let Outcome::Product(p) = w.ok(restock("A", 7)) else {
        panic!()
    };
    assert_eq!((p.stock.on_hand, p.stock.ledger.restocked), (57, 57));
    assert_eq!(w.summary().units_restocked, 57 + 20 + 30 + 5);
    assert_not_found(w.refused(restock("NOPE", 1)), "product", "NOPE");
    assert_validation(w.refused(restock("A", 0)), "qty", "1 to");
    assert_validation(
        w.refused(restock("A", crate::command::STOCK_QTY_MAX + 1)),
        "qty",
        "1 to",
    );
}

#[test]
fn set_stock_moves_the_ledger_and_is_refused_below_reserved() {
    let mut w = World::new();
    let set = |on_hand| Command::SetStock {
        sku: sku("A"),
        on_hand,
    };
    let Outcome::Product(p) = w.ok(set(60)) else {
        panic!()
    };
    assert_eq!((p.stock.on_hand, p.stock.ledger.set_added), (60, 10));
    let Outcome::Product(p) = w.ok(set(45)) else {
        panic!()
    };
    assert_eq!((p.stock.on_hand, p.stock.ledger.set_removed), (45, 15));
    w.place(&[("A", 4)]);
    assert_eq!(
        w.refused(set(3)),
        DomainError::BelowReserved {
            sku: sku("A"),
            on_hand: 3,
            reserved: 4
        }
    );
    // Exactly the reserved units is allowed: nothing is available then.
    let Outcome::Product(p) = w.ok(set(4)) else {
        panic!()
    };
    assert_eq!(p.stock.available(), 0);
    assert_not_found(
        w.refused(Command::SetStock {
            sku: sku("NOPE"),
            on_hand: 1,
        }),
        "product",
        "NOPE",
    );
    assert_validation(
        w.refused(set(crate::command::STOCK_QTY_MAX + 1)),
        "on_hand",
        "at most",
    );
}

// ----- accounts and money ---------------------------------------------------

#[test]
fn open_account_refuses_duplicates_and_a_second_merchant_or_external() {
    let mut w = World::new();
    let Outcome::Account(a) = w.ok(open("dave", AccountKind::Customer, "EUR")) else {
        panic!()
    };
    assert_eq!(a.balance, Minor::ZERO);
    assert_eq!(
        w.refused(open("dave", AccountKind::Customer, "USD")),
        DomainError::AlreadyExists {
            entity: "account".into(),
            id: "dave".into()
        }
    );
    assert_eq!(
        w.refused(open("shop2", AccountKind::Merchant, "EUR")),
        DomainError::AlreadyExists {
            entity: "merchant account for EUR".into(),
            id: "shop".into()
        }
    );
    assert_eq!(
        w.refused(open("world2", AccountKind::External, "EUR")),
        DomainError::AlreadyExists {
            entity: "external account for EUR".into(),
            id: "world".into()
        }
    );
    // A merchant in a new currency is fine.
    w.ok(open("shop-gb", AccountKind::Merchant, "GBP"));
}

#[test]
fn deposit_is_a_transfer_from_the_external_account() {
    let mut w = World::new();
    let Outcome::Account(a) = w.ok(deposit("bob", 500)) else {
        panic!()
    };
    assert_eq!(a.balance, Minor(1_500));
    assert_eq!(w.balance("world"), -(100_000 + 1_500));
    assert_eq!(w.summary().deposits_by_currency[&cur("EUR")], 101_500);
    // A merchant may receive a deposit too.
    w.ok(deposit("shop", 1));
    assert_validation(w.refused(deposit("world", 5)), "account", "external");
    assert_not_found(w.refused(deposit("nobody", 5)), "account", "nobody");
    assert_validation(w.refused(deposit("bob", 0)), "amount", "1 to");
    assert_validation(
        w.refused(deposit("bob", crate::command::DEPOSIT_MAX + 1)),
        "amount",
        "1 to",
    );
}

#[test]
fn deposit_needs_the_currency_external_account() {
    let mut w = World::new();
    w.ok(open("heidi", AccountKind::Customer, "CHF"));
    assert_not_found(
        w.refused(deposit("heidi", 5)),
        "external account for currency",
        "CHF",
    );
}

// ----- placing orders -------------------------------------------------------

#[test]
fn place_reserves_every_line_and_indexes_the_order() {
    let mut w = World::new();
    let o = w.place(&[("A", 2), ("B", 1)]);
    assert_eq!(o.id, OrderId(1));
    assert_eq!(o.status, OrderStatus::Reserved);
    assert_eq!(o.total, Minor(2 * 100 + 250));
    assert_eq!(o.currency, cur("EUR"));
    assert_eq!(o.merchant, acct("shop"));
    assert_eq!(
        (o.created_at_ms, o.expires_at_ms),
        (T0, T0 + TTL_DEFAULT_MS)
    );
    assert_eq!(
        o.history,
        vec![StatusChange {
            status: OrderStatus::Reserved,
            at_ms: T0
        }]
    );
    assert_eq!(o.lines[1].unit_price, Minor(250), "price captured");
    assert_eq!(w.product("A").stock.reserved, 2);
    assert_eq!(w.product("A").stock.on_hand, 50, "reserving sells nothing");
    assert_eq!(w.product("B").stock.available(), 19);
    assert_eq!(w.order(o.id), o);
    assert_eq!(query::next_expiry_ms(&w.t).unwrap(), Some(o.expires_at_ms));
    // Placing does not move money.
    assert_eq!(w.balance("alice"), 100_000);
    // An explicit TTL, and ids stay dense.
    let o2 = w.order_cmd(Command::PlaceOrder {
        customer: acct("bob"),
        lines: lines(&[("A", 1)]),
        ttl_seconds: Some(ORDER_TTL_MAX_S),
    });
    assert_eq!(o2.id, OrderId(2));
    assert_eq!(o2.expires_at_ms, T0 + u64::from(ORDER_TTL_MAX_S) * 1000);
    assert_validation(
        w.refused(Command::PlaceOrder {
            customer: acct("bob"),
            lines: lines(&[("A", 1)]),
            ttl_seconds: Some(ORDER_TTL_MAX_S + 1),
        }),
        "ttl_seconds",
        "1 to",
    );
    assert_validation(
        w.refused(Command::PlaceOrder {
            customer: acct("bob"),
            lines: lines(&[("A", 1)]),
            ttl_seconds: Some(0),
        }),
        "ttl_seconds",
        "1 to",
    );
}

#[test]
fn place_refuses_an_inactive_product() {
    let mut w = World::new();
    assert_validation(
        w.refused(place_cmd("alice", &[("A", 1), ("Z", 1)])),
        "lines[1].sku",
        "not active",
    );
    // Reactivated, it can be ordered.
    w.ok(upsert("Z", 10, "EUR", true));
    w.place(&[("Z", 1)]);
}

#[test]
fn place_refuses_mixed_currencies() {
    let mut w = World::new();
    assert_validation(
        w.refused(place_cmd("alice", &[("A", 1), ("B", 1), ("U", 1)])),
        "lines[2].sku",
        "mixes currencies: EUR and USD",
    );
}

#[test]
fn place_refuses_a_customer_of_another_currency() {
    let mut w = World::new();
    assert_validation(
        w.refused(place_cmd("carol", &[("A", 1)])),
        "customer",
        "account is in USD, the order in EUR",
    );
    // Carol buys in USD.
    let o = w.order_cmd(place_cmd("carol", &[("U", 2)]));
    assert_eq!((o.currency, o.merchant.as_str()), (cur("USD"), "shop-us"));
}

#[test]
fn place_refuses_unknown_customers_products_and_non_customer_accounts() {
    let mut w = World::new();
    assert_not_found(
        w.refused(place_cmd("nobody", &[("A", 1)])),
        "account",
        "nobody",
    );
    assert_not_found(
        w.refused(place_cmd("alice", &[("A", 1), ("NOPE", 1)])),
        "product",
        "NOPE",
    );
    assert_validation(
        w.refused(place_cmd("shop", &[("A", 1)])),
        "customer",
        "shop is a merchant account, not a customer",
    );
    // Ids are case-sensitive, and the message names the very account.
    w.ok(open("ShopGB", AccountKind::Merchant, "GBP"));
    assert_validation(
        w.refused(place_cmd("ShopGB", &[("A", 1)])),
        "customer",
        "ShopGB is a merchant account, not a customer",
    );
}

#[test]
fn place_needs_the_currency_merchant_account() {
    let mut w = World::new();
    w.ok(open("world-gb", AccountKind::External, "GBP"));
    w.ok(open("gus", AccountKind::Customer, "GBP"));
    w.ok(upsert("G", 10, "GBP", true));
    w.ok(restock("G", 3));
    assert_not_found(
        w.refused(place_cmd("gus", &[("G", 1)])),
        "merchant account for currency",
        "GBP",
    );
    w.ok(open("shop-gb", AccountKind::Merchant, "GBP"));
    w.order_cmd(place_cmd("gus", &[("G", 1)]));
}

#[test]
fn place_allows_100_lines_and_refuses_101() {
    let mut w = World::new();
    w.ok(restock("A", 1_000));
    let hundred: Vec<(&str, u64)> = vec![("A", 1); ORDER_LINES_MAX];
    let o = w.place(&hundred);
    assert_eq!(o.lines.len(), 100);
    assert_eq!(o.total, Minor(100 * 100));
    assert_eq!(w.product("A").stock.reserved, 100);
    let too_many: Vec<(&str, u64)> = vec![("A", 1); ORDER_LINES_MAX + 1];
    assert_validation(w.refused(place_cmd("alice", &too_many)), "lines", "got 101");
    assert_validation(w.refused(place_cmd("alice", &[])), "lines", "got 0");
}

#[test]
fn place_allows_qty_10000_and_refuses_10001_and_0() {
    let mut w = World::new();
    w.ok(restock("A", 20_000));
    let o = w.place(&[("A", LINE_QTY_MAX)]);
    assert_eq!(o.total, Minor(10_000 * 100));
    assert_validation(
        w.refused(place_cmd("alice", &[("B", 1), ("A", LINE_QTY_MAX + 1)])),
        "lines[1].qty",
        "got 10001",
    );
    assert_validation(
        w.refused(place_cmd("alice", &[("A", 0)])),
        "lines[0].qty",
        "got 0",
    );
}

#[test]
fn out_of_stock_lists_every_short_line_and_reserves_nothing() {
    let mut w = World::new();
    // A: 30 + 30 = 60 of 50; B: 25 of 20; the A total is summed over lines.
    let e = w.refused(place_cmd("alice", &[("A", 30), ("B", 25), ("A", 30)]));
    assert_eq!(
        e,
        DomainError::OutOfStock {
            lines: vec![
                ShortLine {
                    sku: sku("A"),
                    requested: 60,
                    available: 50
                },
                ShortLine {
                    sku: sku("B"),
                    requested: 25,
                    available: 20
                },
            ]
        }
    );
    // One short line among fine ones: only it is listed, nothing reserved.
    w.place(&[("B", 5)]);
    let e = w.refused(place_cmd("alice", &[("A", 10), ("B", 16)]));
    assert_eq!(
        e,
        DomainError::OutOfStock {
            lines: vec![ShortLine {
                sku: sku("B"),
                requested: 16,
                available: 15
            }]
        }
    );
    assert_eq!(w.product("A").stock.reserved, 0);
}

#[test]
fn the_same_sku_on_two_lines_is_summed() {
    let mut w = World::new();
    let o = w.place(&[("A", 2), ("B", 1), ("A", 3)]);
    assert_eq!(o.lines.len(), 3, "lines are kept as sent");
    assert_eq!(o.total, Minor(5 * 100 + 250));
    assert_eq!(w.product("A").stock.reserved, 5);
    // Exactly the available units over two lines is fine.
    let o2 = w.place(&[("A", 40), ("A", 5)]);
    assert_eq!(w.product("A").stock.available(), 0);
    w.ok(Command::PayOrder { order: o2.id });
    assert_eq!(w.product("A").stock.ledger.sold, 45);
    assert_eq!(w.product("A").stock.on_hand, 5);
}

// ----- the lifecycle --------------------------------------------------------

#[test]
fn pay_moves_money_and_sells_the_reserved_units() {
    let mut w = World::new();
    let o = w.place(&[("A", 2), ("B", 1), ("A", 1)]);
    let Outcome::Order(paid) = w.ok_as(customer("alice"), Command::PayOrder { order: o.id }) else {
        panic!()
    };
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.history.len(), 2);
    assert_eq!(w.balance("alice"), 100_000 - 550);
    assert_eq!(w.balance("shop"), 550);
    let a = w.product("A").stock;
    assert_eq!((a.on_hand, a.reserved, a.ledger.sold), (47, 0, 3));
    let b = w.product("B").stock;
    assert_eq!((b.on_hand, b.reserved, b.ledger.sold), (19, 0, 1));
    assert_eq!(query::next_expiry_ms(&w.t).unwrap(), None, "not expiring");
    let s = w.summary();
    assert_eq!((s.units_sold, s.units_reserved), (4, 0));
    assert_eq!(s.sales_by_currency[&cur("EUR")], 550);
    assert_not_found(
        w.refused(Command::PayOrder { order: OrderId(99) }),
        "order",
        "99",
    );
}

#[test]
fn pay_with_insufficient_funds_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let o = w.order_cmd(place_cmd("bob", &[("B", 5)]));
    assert_eq!(
        w.refused(Command::PayOrder { order: o.id }),
        DomainError::InsufficientFunds {
            account: acct("bob"),
            balance: Minor(1_000),
            required: Minor(1_250),
        }
    );
    assert_eq!(w.order(o.id).status, OrderStatus::Reserved);
    // Exactly enough is enough.
    w.ok(deposit("bob", 250));
    w.ok(Command::PayOrder { order: o.id });
    assert_eq!(w.balance("bob"), 0);
}

#[test]
fn cancel_releases_the_reservation() {
    let mut w = World::new();
    let o = w.place(&[("A", 3), ("B", 2)]);
    let Outcome::Order(c) = w.ok_as(customer("alice"), Command::CancelOrder { order: o.id }) else {
        panic!()
    };
    assert_eq!(c.status, OrderStatus::Cancelled);
    assert_eq!(w.product("A").stock.reserved, 0);
    assert_eq!(w.product("A").stock.on_hand, 50);
    assert_eq!(w.product("B").stock.reserved, 0);
    assert_eq!(w.balance("alice"), 100_000);
    assert_eq!(query::next_expiry_ms(&w.t).unwrap(), None);
}

#[test]
fn ship_then_deliver() {
    let mut w = World::new();
    let id = w.order_in(OrderStatus::Paid);
    let Outcome::Order(s) = w.ok(Command::ShipOrder { order: id }) else {
        panic!()
    };
    assert_eq!(s.status, OrderStatus::Shipped);
    let Outcome::Order(d) = w.ok(Command::DeliverOrder { order: id }) else {
        panic!()
    };
    assert_eq!(d.status, OrderStatus::Delivered);
    let statuses: Vec<OrderStatus> = d.history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        vec![
            OrderStatus::Reserved,
            OrderStatus::Paid,
            OrderStatus::Shipped,
            OrderStatus::Delivered
        ]
    );
}

#[test]
fn refund_with_restock_returns_money_and_units() {
    let mut w = World::new();
    let o = w.place(&[("A", 4)]);
    w.ok(Command::PayOrder { order: o.id });
    w.ok(Command::ShipOrder { order: o.id });
    let Outcome::Order(r) = w.ok(Command::RefundOrder {
        order: o.id,
        restock: true,
    }) else {
        panic!()
    };
    assert_eq!((r.status, r.restocked), (OrderStatus::Refunded, true));
    assert_eq!((w.balance("alice"), w.balance("shop")), (100_000, 0));
    let a = w.product("A").stock;
    assert_eq!((a.on_hand, a.ledger.sold, a.ledger.returned), (50, 4, 4));
    assert_eq!(w.summary().units_returned, 4);
}

#[test]
fn refund_without_restock_returns_only_money() {
    let mut w = World::new();
    let o = w.place(&[("A", 4)]);
    w.ok(Command::PayOrder { order: o.id });
    let Outcome::Order(r) = w.ok(Command::RefundOrder {
        order: o.id,
        restock: false,
    }) else {
        panic!()
    };
    assert_eq!((r.status, r.restocked), (OrderStatus::Refunded, false));
    assert_eq!((w.balance("alice"), w.balance("shop")), (100_000, 0));
    let a = w.product("A").stock;
    assert_eq!((a.on_hand, a.ledger.sold, a.ledger.returned), (46, 4, 0));
}

/// The action a command performs, as `InvalidTransition` names it, and the
/// statuses it is allowed from (docs/DOMAIN.md's lifecycle).
fn lifecycle_actions(id: OrderId) -> Vec<(Command, &'static str, Vec<OrderStatus>)> {
    use OrderStatus::*;
    vec![
        (Command::PayOrder { order: id }, "pay", vec![Reserved]),
        (Command::CancelOrder { order: id }, "cancel", vec![Reserved]),
        (Command::ShipOrder { order: id }, "ship", vec![Paid]),
        (
            Command::DeliverOrder { order: id },
            "deliver",
            vec![Shipped],
        ),
        (
            Command::RefundOrder {
                order: id,
                restock: false,
            },
            "refund",
            vec![Paid, Shipped],
        ),
        (
            Command::RefundOrder {
                order: id,
                restock: true,
            },
            "refund",
            vec![Paid, Shipped],
        ),
    ]
}

#[test]
fn every_invalid_transition_is_refused_naming_the_current_status() {
    let mut refusals = 0;
    for status in OrderStatus::ALL {
        for (i, (command, action, allowed)) in lifecycle_actions(OrderId(1)).into_iter().enumerate()
        {
            // A fresh shop per case, so the order is always OrderId(1).
            let mut w = World::new();
            let id = w.order_in(status);
            assert_eq!(id, OrderId(1));
            if allowed.contains(&status) {
                w.ok(command);
                continue;
            }
            let e = w.refused(command);
            assert_eq!(
                e,
                DomainError::InvalidTransition {
                    order: id,
                    from: status,
                    action: action.into()
                },
                "case {i} from {status:?}"
            );
            assert!(e.to_string().contains(&format!("{status:?}")), "{e}");
            assert_eq!(w.order(id).status, status);
            refusals += 1;
        }
    }
    // 7 statuses x 6 actions, minus the 1+1+1+1+2+2 allowed edges.
    assert_eq!(refusals, 7 * 6 - 8);
}

#[test]
fn expiry_touches_reserved_orders_only() {
    for status in OrderStatus::ALL {
        let mut w = World::new();
        let id = w.order_in(status);
        // Far past every expiry time.
        w.now_ms += 30 * 24 * 3600 * 1000;
        let (expired, more_due) = w.expire_due();
        assert!(!more_due);
        if status == OrderStatus::Reserved {
            assert_eq!(expired, vec![id]);
            assert_eq!(w.order(id).status, OrderStatus::Expired);
            assert_eq!(w.product("A").stock.reserved, 0);
        } else {
            assert!(expired.is_empty(), "{status:?} order expired");
            assert_eq!(w.order(id).status, status);
        }
    }
}

#[test]
fn expire_of_a_non_reserved_indexed_order_is_corruption_not_a_refusal() {
    let mut w = World::new();
    let id = w.order_in(OrderStatus::Paid);
    let o = w.order(id);
    // An expiry index row for a paid order: the tables disagree.
    w.t.put(Table::Expiry, &keys::expiry(o.expires_at_ms, id), &[])
        .unwrap();
    assert!(check_invariants(&w.t)
        .unwrap()
        .iter()
        .any(|v| v.invariant == 0));
    w.now_ms = o.expires_at_ms;
    let env = w.env(
        Principal::System,
        Command::ExpireDue {
            now_ms: o.expires_at_ms,
        },
    );
    let err = apply_batch(
        &mut w.t,
        &Batch {
            leader_time_ms: w.now_ms,
            commands: vec![env],
        },
    )
    .unwrap_err();
    match err {
        TableError::Corrupt { table, reason, .. } => {
            assert_eq!(table, "expiry");
            assert!(reason.contains("cannot expire"), "{reason}");
            assert!(reason.contains("Paid"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pay_after_expires_at_is_refused_then_expire_due_expires_it() {
    let mut w = World::new();
    let o = w.place(&[("A", 4)]);
    let later = w.place(&[("B", 1)]);
    assert_eq!(later.expires_at_ms, o.expires_at_ms);
    // One ms before: still payable (checked on a copy of the shop).
    let mut early = World {
        t: w.t.clone(),
        now_ms: o.expires_at_ms - 1,
        n: w.n,
    };
    early.ok(Command::PayOrder { order: o.id });
    // At expires_at: refused, and the refusal expires nothing by itself.
    w.now_ms = o.expires_at_ms;
    let e = w.refused(Command::PayOrder { order: o.id });
    assert_eq!(
        e,
        DomainError::InvalidTransition {
            order: o.id,
            from: OrderStatus::Reserved,
            action: "pay (reservation expired)".into()
        }
    );
    assert_eq!(w.product("A").stock.reserved, 4);
    // ExpireDue with an earlier cut-off leaves it; at expires_at it goes.
    let Outcome::Expired { orders, .. } = w.ok_as(
        Principal::System,
        Command::ExpireDue {
            now_ms: o.expires_at_ms - 1,
        },
    ) else {
        panic!()
    };
    assert!(orders.is_empty());
    let (expired, more_due) = w.expire_due();
    assert_eq!((expired, more_due), (vec![o.id, later.id], false));
    let x = w.order(o.id);
    assert_eq!(x.status, OrderStatus::Expired);
    assert_eq!(x.history.last().unwrap().at_ms, o.expires_at_ms);
    assert_eq!(w.product("A").stock.reserved, 0);
    assert_eq!(w.product("A").stock.on_hand, 50);
    // And now paying says it is expired.
    assert_eq!(
        w.refused(Command::PayOrder { order: o.id }),
        DomainError::InvalidTransition {
            order: o.id,
            from: OrderStatus::Expired,
            action: "pay".into()
        }
    );
}

#[test]
fn expire_due_is_capped_at_leader_time() {
    let mut w = World::new();
    let o = w.place(&[("A", 1)]);
    // A proposal naming a future time expires nothing due only then.
    let Outcome::Expired { orders, .. } = w.ok_as(
        Principal::System,
        Command::ExpireDue {
            now_ms: o.expires_at_ms + 1,
        },
    ) else {
        panic!()
    };
    assert!(orders.is_empty());
    assert_eq!(w.order(o.id).status, OrderStatus::Reserved);
}

#[test]
fn expire_due_is_bounded_per_command() {
    let mut w = World::new();
    w.ok(restock("A", 2_000));
    let n = EXPIRE_PER_COMMAND_MAX + 1;
    let places: Vec<Envelope> = (0..n)
        .map(|_| w.env(Principal::Admin, place_cmd("bob", &[("A", 1)])))
        .collect();
    for chunk in places.chunks(BATCH_COMMANDS_MAX) {
        let out = w.apply_unchecked(chunk.to_vec());
        assert!(out.iter().all(|a| a.result.is_ok()));
    }
    w.now_ms += TTL_DEFAULT_MS;
    let env = w.env(Principal::System, Command::ExpireDue { now_ms: w.now_ms });
    let out = w.apply_unchecked(vec![env]).remove(0).result.unwrap();
    let Outcome::Expired { orders, more_due } = out else {
        panic!()
    };
    assert_eq!((orders.len(), more_due), (EXPIRE_PER_COMMAND_MAX, true));
    assert_eq!(orders.first(), Some(&OrderId(1)));
    assert_eq!(w.product("A").stock.reserved, 1);
    let (last, more_due) = w.expire_due();
    assert_eq!((last, more_due), (vec![OrderId(n as u64)], false));
}

// ----- idempotency ------------------------------------------------------------

#[test]
fn replay_returns_the_stored_result_and_changes_nothing() {
    let mut w = World::new();
    let env = w.env(customer("alice"), place_cmd("alice", &[("A", 2)]));
    let first = w.apply(vec![env.clone()]).remove(0);
    assert!(!first.replayed);
    let before = w.digest();
    // The same request comes back, twice in one batch.
    let again = w.apply(vec![env.clone(), env.clone()]);
    for a in &again {
        assert!(a.replayed);
        assert_eq!(a.result, first.result);
    }
    assert_eq!(w.digest(), before);
    assert_eq!(w.product("A").stock.reserved, 2, "reserved once");
    assert_eq!(w.summary().next_order_id, 2);
}

#[test]
fn a_replayed_refusal_stays_the_stored_refusal() {
    let mut w = World::new();
    let o = w.order_cmd(place_cmd("bob", &[("B", 5)]));
    let pay = w.env(customer("bob"), Command::PayOrder { order: o.id });
    let first = w.apply(vec![pay.clone()]).remove(0);
    assert_eq!(
        first.result.as_ref().unwrap_err().code(),
        "insufficient_funds"
    );
    // Bob now has the money, but the key's answer is fixed: at most one effect.
    w.ok(deposit("bob", 10_000));
    let before = w.digest();
    let again = w.apply(vec![pay]).remove(0);
    assert!(again.replayed);
    assert_eq!(again.result, first.result);
    assert_eq!(w.digest(), before);
    assert_eq!(w.order(o.id).status, OrderStatus::Reserved);
}

#[test]
fn the_same_key_twice_in_one_batch_has_one_effect() {
    let mut w = World::new();
    let env = w.env(Principal::Admin, restock("A", 5));
    let out = w.apply(vec![env.clone(), env]);
    assert_eq!((out[0].replayed, out[1].replayed), (false, true));
    assert_eq!(out[0].result, out[1].result);
    assert_eq!(w.product("A").stock.on_hand, 55);
}

#[test]
fn a_different_body_or_principal_under_a_used_key_is_a_conflict() {
    let mut w = World::new();
    let original = Envelope {
        request_id: rid("key-1"),
        principal: customer("alice"),
        origin: None,
        command: place_cmd("alice", &[("A", 1)]),
    };
    let first = w.apply(vec![original.clone()]).remove(0);
    let before = w.digest();
    let other_body = Envelope {
        command: place_cmd("alice", &[("A", 2)]),
        ..original.clone()
    };
    let other_principal = Envelope {
        principal: Principal::Admin,
        origin: None,
        ..original.clone()
    };
    for env in [other_body, other_principal] {
        let a = w.apply(vec![env]).remove(0);
        assert!(!a.replayed);
        assert_eq!(
            a.result,
            Err(DomainError::IdempotencyConflict {
                request_id: rid("key-1")
            })
        );
        assert_eq!(w.digest(), before, "a conflict changes nothing");
    }
    // The stored record is untouched: the original still replays.
    let a = w.apply(vec![original]).remove(0);
    assert!(a.replayed);
    assert_eq!(a.result, first.result);
}

#[test]
fn idempotency_records_are_pruned_after_the_retention_window() {
    let mut w = World::new();
    let env = Envelope {
        request_id: rid("old"),
        principal: Principal::Admin,
        origin: None,
        command: restock("A", 1),
    };
    w.apply(vec![env.clone()]);
    // At exactly T0 + retention the record is still there.
    w.now_ms = T0 + IDEMPOTENCY_RETENTION_MS;
    assert!(w.apply(vec![env.clone()])[0].replayed);
    assert!(w.t.get(Table::Idempotency, b"old").unwrap().is_some());
    // One ms later it is gone, from both tables, by leader time alone.
    w.now_ms += 1;
    w.apply(vec![]);
    assert!(w.t.get(Table::Idempotency, b"old").unwrap().is_none());
    assert_eq!(rows_of(&w.t, Table::Idempotency), 0, "setup keys too");
    assert_eq!(rows_of(&w.t, Table::IdempotencyByTime), 0);
    // The key is free again: a new body under it is a new request.
    let reused = Envelope {
        command: restock("A", 2),
        ..env
    };
    let a = w.apply(vec![reused]).remove(0);
    assert!(!a.replayed);
    assert!(a.result.is_ok());
    assert_eq!(w.product("A").stock.on_hand, 53);
}

#[test]
fn pruning_is_bounded_per_batch_and_catches_up() {
    let mut w = World::empty();
    let n = IDEMPOTENCY_PRUNE_PER_BATCH_MAX + 1;
    let envs: Vec<Envelope> = (0..n)
        .map(|_| w.env(Principal::System, Command::ExpireDue { now_ms: 0 }))
        .collect();
    for chunk in envs.chunks(BATCH_COMMANDS_MAX) {
        w.apply(chunk.to_vec());
    }
    assert_eq!(rows_of(&w.t, Table::Idempotency), n);
    w.now_ms = T0 + IDEMPOTENCY_RETENTION_MS + 1;
    w.apply(vec![]);
    assert_eq!(rows_of(&w.t, Table::Idempotency), 1);
    assert_eq!(rows_of(&w.t, Table::IdempotencyByTime), 1);
    w.apply(vec![]);
    assert_eq!(rows_of(&w.t, Table::Idempotency), 0);
}

#[test]
fn a_leader_clock_going_backwards_does_not_move_the_state_clock_back() {
    let mut w = World::new();
    w.now_ms = T0 + 10_000;
    w.place(&[("A", 1)]);
    assert_eq!(w.summary().clock_ms, T0 + 10_000);
    // A new leader whose clock is 9 s behind.
    w.now_ms = T0 + 1_000;
    let o = w.place(&[("A", 1)]);
    assert_eq!(w.summary().clock_ms, T0 + 10_000);
    assert_eq!(o.created_at_ms, T0 + 10_000, "stamped with the state clock");
    assert_eq!(o.expires_at_ms, T0 + 10_000 + TTL_DEFAULT_MS);
    let Outcome::Order(c) = w.ok(Command::CancelOrder { order: o.id }) else {
        panic!()
    };
    assert_eq!(c.history.last().unwrap().at_ms, T0 + 10_000);
    // The behind leader's idempotency records are timed by the state clock
    // too, so they are not pruned early.
    let last = format!("r{}", w.n);
    let rec: IdempotencyRecord = decode(
        Table::Idempotency,
        last.as_bytes(),
        &w.t.get(Table::Idempotency, last.as_bytes())
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rec.at_ms, T0 + 10_000);
    // The clock moves forward again only past its high-water mark.
    w.now_ms = T0 + 20_000;
    w.apply(vec![]);
    assert_eq!(w.summary().clock_ms, T0 + 20_000);
}

/// Two days: how far off the clocks of the bug report were.
const TWO_DAYS_MS: u64 = 2 * 24 * 3600 * 1000;

#[test]
fn a_leader_two_days_ahead_moves_the_clock_one_step_and_expires_nothing_early() {
    let mut w = World::new();
    let start = w.summary().clock_ms;
    // A one-hour reservation, and a keyed request that must keep its record.
    let o = w.place_with_ttl(&[("A", 1)], 3_600);
    let key = format!("r{}", w.n);
    // A leader whose wall clock is two days ahead stamps entries: each moves
    // the state clock at most one step, whatever it claims.
    let far = start + TWO_DAYS_MS;
    for i in 1..=3u64 {
        let b = Batch {
            leader_time_ms: far,
            commands: vec![w.env(Principal::System, Command::ExpireDue { now_ms: far })],
        };
        let out = apply_batch(&mut w.t, &b).unwrap();
        assert_eq!(w.summary().clock_ms, start + i * CLOCK_STEP_MAX_MS);
        assert_eq!(
            out[0].result,
            Ok(Outcome::Expired {
                orders: vec![],
                more_due: false
            }),
            "nothing is due after {i} steps"
        );
    }
    assert_eq!(w.order(o.id).status, OrderStatus::Reserved);
    assert!(w
        .t
        .get(Table::Idempotency, key.as_bytes())
        .unwrap()
        .is_some());
    w.assert_invariants();
}

#[test]
fn a_deadline_set_while_the_clock_lags_counts_from_the_leaders_time() {
    let mut w = World::new();
    let start = w.summary().clock_ms;
    // The whole cluster was down for an hour: the first leader after it is
    // an hour ahead of the state clock, which may catch up one step only.
    w.now_ms = start + 3_600_000;
    let b = Batch {
        leader_time_ms: w.now_ms,
        commands: vec![w.env(customer("alice"), place_cmd_ttl("alice", &[("A", 1)], 600))],
    };
    let out = apply_batch(&mut w.t, &b).unwrap();
    let Ok(Outcome::Order(o)) = &out[0].result else {
        panic!("{out:?}")
    };
    assert_eq!(w.summary().clock_ms, start + CLOCK_STEP_MAX_MS);
    // Ten minutes from the leader's time, not from the lagging clock: once
    // the clock has caught up, the reservation still has its whole life.
    assert_eq!(o.expires_at_ms, w.now_ms + 600_000);
    let rec: IdempotencyRecord = decode(
        Table::Idempotency,
        format!("r{}", w.n).as_bytes(),
        &w.t.get(Table::Idempotency, format!("r{}", w.n).as_bytes())
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        rec.at_ms, w.now_ms,
        "retention counts from the leader's time"
    );
    w.assert_invariants();
}

#[test]
fn the_first_timed_entry_sets_the_clock_and_later_ones_are_bounded() {
    assert_eq!(StateClock::advance(0, T0).now, T0);
    let c = StateClock::advance(T0, T0 + TWO_DAYS_MS);
    assert_eq!(c.now, T0 + CLOCK_STEP_MAX_MS);
    assert_eq!(c.deadline_base, T0 + TWO_DAYS_MS);
    let c = StateClock::advance(T0, T0 - TWO_DAYS_MS);
    assert_eq!((c.now, c.deadline_base), (T0, T0));
    let c = StateClock::advance(T0, T0 + 5);
    assert_eq!((c.now, c.deadline_base), (T0 + 5, T0 + 5));
}

mod clock_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever times leaders stamp, the state clock never goes back,
        /// never moves more than a step per entry, and deadlines never
        /// start before it.
        #[test]
        fn the_state_clock_is_monotonic_and_bounded_per_entry(
            start in 1u64..u64::MAX / 4,
            stamps in proptest::collection::vec(0u64..u64::MAX / 2, 1..64),
        ) {
            let mut clock = start;
            for t in stamps {
                let c = StateClock::advance(clock, t);
                prop_assert!(c.now >= clock);
                prop_assert!(c.now - clock <= CLOCK_STEP_MAX_MS);
                prop_assert!(c.deadline_base >= c.now);
                prop_assert!(c.deadline_base >= t.min(c.deadline_base));
                clock = c.now;
            }
        }
    }
}

// ----- who may do what --------------------------------------------------------

fn forbidden(e: DomainError) -> String {
    match e {
        DomainError::Forbidden { reason } => reason,
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[test]
fn a_customer_may_not_act_on_another_customers_order() {
    let mut w = World::new();
    let o = w.place(&[("A", 1)]);
    for c in [
        Command::PayOrder { order: o.id },
        Command::CancelOrder { order: o.id },
    ] {
        let reason = forbidden(w.refused_as(customer("bob"), c));
        assert!(reason.contains("alice"), "{reason}");
    }
    // Nor place an order for another customer.
    forbidden(w.refused_as(customer("bob"), place_cmd("alice", &[("A", 1)])));
    // The cluster principal does not buy either.
    forbidden(w.refused_as(Principal::System, Command::PayOrder { order: o.id }));
    // The owner may.
    w.ok_as(customer("alice"), Command::PayOrder { order: o.id });
}

#[test]
fn admin_commands_need_the_admin_role() {
    let mut w = World::new();
    let paid = w.order_in(OrderStatus::Paid);
    let shipped = w.order_in(OrderStatus::Shipped);
    let admin_only = [
        upsert("A", 1, "EUR", true),
        restock("A", 1),
        Command::SetStock {
            sku: sku("A"),
            on_hand: 1,
        },
        open("eve", AccountKind::Customer, "EUR"),
        deposit("alice", 1),
        Command::ShipOrder { order: paid },
        Command::DeliverOrder { order: shipped },
        Command::RefundOrder {
            order: paid,
            restock: true,
        },
    ];
    for c in admin_only {
        for p in [customer("alice"), Principal::System] {
            let reason = forbidden(w.refused_as(p, c.clone()));
            assert!(reason.contains("admin"), "{reason}");
        }
    }
    // ExpireDue belongs to the cluster (or an operator), not to customers.
    forbidden(w.refused_as(customer("alice"), Command::ExpireDue { now_ms: 0 }));
    w.ok(Command::ExpireDue { now_ms: 0 });
}

// ----- identifiers and lengths ------------------------------------------------

#[test]
fn names_and_ids_have_length_limits() {
    assert_eq!(ID_LEN_MAX, 64);
    let mut w = World::new();
    let long_sku = "S".repeat(ID_LEN_MAX);
    w.ok(Command::UpsertProduct {
        sku: sku(&long_sku),
        name: ProductName::new("n".repeat(PRODUCT_NAME_LEN_MAX)).unwrap(),
        price: Minor(1),
        currency: cur("EUR"),
        active: true,
    });
    let long_acct = "a".repeat(ID_LEN_MAX);
    w.ok(open(&long_acct, AccountKind::Customer, "EUR"));
    let long_key = "k".repeat(REQUEST_ID_LEN_MAX);
    let env = Envelope {
        request_id: rid(&long_key),
        principal: Principal::Admin,
        origin: None,
        command: restock(&long_sku, 1),
    };
    assert!(w.apply(vec![env])[0].result.is_ok());
    assert_eq!(
        Sku::new("S".repeat(ID_LEN_MAX + 1)).unwrap_err().field,
        "sku"
    );
    assert_eq!(Sku::new("").unwrap_err().field, "sku");
    assert_eq!(
        AccountId::new("a".repeat(ID_LEN_MAX + 1))
            .unwrap_err()
            .field,
        "account"
    );
    assert_eq!(
        ProductName::new("n".repeat(PRODUCT_NAME_LEN_MAX + 1))
            .unwrap_err()
            .field,
        "name"
    );
    assert_eq!(ProductName::new("").unwrap_err().field, "name");
    assert_eq!(
        RequestId::new("k".repeat(REQUEST_ID_LEN_MAX + 1))
            .unwrap_err()
            .field,
        "request_id"
    );
    // Over the wire the same rules hold: a too-long id cannot even decode.
    let json = format!(
        r#"{{"restock":{{"sku":"{}","qty":1}}}}"#,
        "S".repeat(ID_LEN_MAX + 1)
    );
    assert!(serde_json::from_str::<Command>(&json).is_err());
    let json = format!(
        r#"{{"upsert_product":{{"sku":"A","name":"{}","price":1,"currency":"EUR"}}}}"#,
        "n".repeat(PRODUCT_NAME_LEN_MAX + 1)
    );
    assert!(serde_json::from_str::<Command>(&json).is_err());
    let json = json.replace(&"n".repeat(PRODUCT_NAME_LEN_MAX + 1), "n");
    assert!(serde_json::from_str::<Command>(&json).is_ok());
}

// ----- queries ------------------------------------------------------------------

#[test]
fn product_query_shows_available_stock() {
    let mut w = World::new();
    w.place(&[("A", 8)]);
    let p = query::product(&w.t, &sku("A")).unwrap().unwrap();
    assert_eq!((p.stock.on_hand, p.stock.reserved), (50, 8));
    assert_eq!(p.stock.available(), 42);
    assert!(query::product(&w.t, &sku("NOPE")).unwrap().is_none());
}

#[test]
fn products_are_listed_in_sku_order_by_cursor_pages() {
    let mut w = World::new();
    for i in 1..=5 {
        w.ok(upsert(&format!("P{i}"), 1, "EUR", true));
    }
    let all = ["A", "B", "P1", "P2", "P3", "P4", "P5", "U", "Z"];
    let page = query::products(&w.t, None, None).unwrap();
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items.len(), all.len());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = query::products(&w.t, cursor.as_deref(), Some(4)).unwrap();
        pages += 1;
        assert!(page.items.len() <= 4);
        seen.extend(page.items.iter().map(|p| p.sku.as_str().to_owned()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
    for bad in ["xyz", "zz", "é1", "éé"] {
        match query::products(&w.t, Some(bad), None) {
            Err(QueryError::Invalid(f)) => assert_eq!(f.field, "cursor"),
            other => panic!("cursor {bad:?}: {other:?}"),
        }
    }
    for bad in [0, query::PAGE_LIMIT_MAX + 1] {
        match query::products(&w.t, None, Some(bad)) {
            Err(QueryError::Invalid(f)) => assert_eq!(f.field, "limit"),
            other => panic!("limit {bad}: {other:?}"),
        }
    }
}

#[test]
fn customer_orders_are_newest_first_by_cursor_pages() {
    let mut w = World::new();
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(w.place(&[("A", 1)]).id);
        if i == 2 {
            w.order_cmd(place_cmd("bob", &[("A", 1)]));
        }
    }
    mine.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page =
            query::customer_orders(&w.t, &acct("alice"), cursor.as_deref(), Some(2)).unwrap();
        assert!(page.items.iter().all(|o| o.customer == acct("alice")));
        seen.extend(page.items.iter().map(|o| o.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, mine, "newest first, bob's order not among them");
    let bob = query::customer_orders(&w.t, &acct("bob"), None, Some(1)).unwrap();
    assert_eq!(bob.items.len(), 1);
    assert_eq!(bob.next_cursor, None);
    let none = query::customer_orders(&w.t, &acct("carol"), None, None).unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());
    // A cursor is a position: one from alice's list (before bob's) pages
    // bob's from its start, one past bob's gives an empty page, and neither
    // shows anyone else's orders. Garbage is refused.
    let alice_cursor = query::customer_orders(&w.t, &acct("alice"), None, Some(1))
        .unwrap()
        .next_cursor
        .unwrap();
    let from_alice = query::customer_orders(&w.t, &acct("bob"), Some(&alice_cursor), None).unwrap();
    assert_eq!(from_alice, bob_all(&w));
    let past_bob = keel_protocol::hex::encode(b"carol\0");
    let past = query::customer_orders(&w.t, &acct("bob"), Some(&past_bob), None).unwrap();
    assert!(past.items.is_empty() && past.next_cursor.is_none());
    for bad in ["nothex", "abc"] {
        match query::customer_orders(&w.t, &acct("bob"), Some(bad), None) {
            Err(QueryError::Invalid(f)) => assert_eq!(f.field, "cursor"),
            other => panic!("cursor {bad:?}: {other:?}"),
        }
    }
}

fn bob_all(w: &World) -> query::Page<Order> {
    query::customer_orders(&w.t, &acct("bob"), None, None).unwrap()
}

#[test]
fn account_query_shows_the_balance() {
    let mut w = World::new();
    let id = w.order_in(OrderStatus::Paid);
    let a = query::account(&w.t, &acct("alice")).unwrap().unwrap();
    assert_eq!(a.balance, Minor(100_000 - 100));
    assert_eq!((a.kind, a.currency), (AccountKind::Customer, cur("EUR")));
    assert_eq!(w.balance("shop"), 100);
    assert_eq!(w.account("world").kind, AccountKind::External);
    assert!(query::account(&w.t, &acct("nobody")).unwrap().is_none());
    assert_eq!(w.order(id).total, Minor(100));
    assert!(query::order(&w.t, OrderId(999)).unwrap().is_none());
}

#[test]
fn summary_counts_every_status_units_and_money() {
    let mut w = World::new();
    // Expired first: it needs time to pass, which must not expire the rest.
    for status in [
        OrderStatus::Expired,
        OrderStatus::Reserved,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ] {
        w.order_in(status);
    }
    w.ok(restock("B", 1));
    let s = w.summary();
    for status in OrderStatus::ALL {
        assert_eq!(s.orders_by_status[&status], 1, "{status:?}");
    }
    assert_eq!((s.products, s.accounts, s.next_order_id), (4, 7, 8));
    // Sold: paid, shipped, delivered, refunded (not restocked) = 4 units of A.
    assert_eq!(
        (s.units_reserved, s.units_sold, s.units_returned),
        (1, 4, 0)
    );
    assert_eq!(s.units_restocked, 50 + 21 + 30 + 5);
    assert_eq!(s.units_on_hand, 46 + 21 + 30 + 5);
    assert!(s.balance_sum_by_currency.values().all(|v| *v == 0));
    assert_eq!(s.deposits_by_currency[&cur("EUR")], 101_000);
    assert_eq!(s.deposits_by_currency[&cur("USD")], 100_000);
    assert_eq!(s.sales_by_currency[&cur("EUR")], 400);
    assert_eq!(s.clock_ms, w.now_ms);
    // Alice paid for 4, got 1 back; the shop holds the other 3.
    assert_eq!(w.balance("alice"), 100_000 - 300);
    assert_eq!(w.balance("shop"), 300);
}

// ----- the invariant checker catches corruption -----------------------------------

fn violations(w: &World) -> Vec<Violation> {
    check_invariants(&w.t).unwrap()
}

fn assert_violation(v: &[Violation], invariant: u8, detail_part: &str) {
    assert!(
        v.iter()
            .any(|x| x.invariant == invariant && x.detail.contains(detail_part)),
        "no violation of {invariant} mentioning {detail_part:?} in {v:#?}"
    );
}

#[test]
fn the_checker_detects_reserved_above_on_hand() {
    let mut w = World::new();
    let mut p = w.product("A");
    p.stock.reserved = p.stock.on_hand + 1;
    w.put(Table::Products, b"A", &p);
    let v = violations(&w);
    assert_violation(&v, 1, "reserved 51 > on_hand 50");
    assert_violation(&v, 1, "reserved orders hold 0");
}

#[test]
fn the_checker_detects_a_stock_ledger_mismatch() {
    let mut w = World::new();
    let mut p = w.product("B");
    p.stock.on_hand += 3; // units out of nowhere: no ledger movement
    w.put(Table::Products, b"B", &p);
    let v = violations(&w);
    assert_violation(&v, 2, "on_hand 23 but ledger gives 20");
    // The summary no longer matches the records either.
    assert_violation(&v, 0, "summary");
}

#[test]
fn the_checker_detects_a_sold_count_not_backed_by_orders() {
    let mut w = World::new();
    w.order_in(OrderStatus::Paid);
    let mut p = w.product("A");
    p.stock.ledger.sold += 1;
    p.stock.ledger.restocked += 1; // keeps on_hand consistent with the ledger
    w.put(Table::Products, b"A", &p);
    assert_violation(&violations(&w), 2, "ledger sold 2 but sold orders hold 1");
}

#[test]
fn the_checker_detects_a_negative_customer_balance() {
    let mut w = World::new();
    let mut a = w.account("alice");
    let mut x = w.account("world");
    // Move alice to -5 and keep the sum at zero: only the sign is wrong.
    x.balance = Minor(x.balance.0 + a.balance.0 + 5);
    a.balance = Minor(-5);
    w.put(Table::Accounts, b"alice", &a);
    w.put(Table::Accounts, b"world", &x);
    let v = violations(&w);
    assert_violation(&v, 3, "alice has negative balance -5");
    assert!(!v.iter().any(|x| x.detail.contains("sum to")), "{v:#?}");
}

#[test]
fn the_checker_detects_money_that_does_not_sum_to_zero() {
    let mut w = World::new();
    let mut m = w.account("shop");
    m.balance = Minor(m.balance.0 + 1);
    w.put(Table::Accounts, b"shop", &m);
    assert_violation(&violations(&w), 3, "balances in EUR sum to 1, not 0");
}

#[test]
fn the_checker_detects_a_wrong_total_and_a_history_off_the_lifecycle() {
    let mut w = World::new();
    let id = w.order_in(OrderStatus::Paid);
    let mut o = w.order(id);
    o.total = Minor(o.total.0 + 1);
    w.put(Table::Orders, &keys::order(id), &o);
    assert_violation(&violations(&w), 4, "total 101 != sum of lines");
    let mut o = w.order(id);
    o.total = Minor(100);
    o.history[1].status = OrderStatus::Delivered; // reserved -> delivered
    o.status = OrderStatus::Delivered;
    w.put(Table::Orders, &keys::order(id), &o);
    assert_violation(&violations(&w), 4, "not a lifecycle path");
}

#[test]
fn the_checker_detects_an_idempotency_record_without_its_time_entry() {
    let mut w = World::new();
    let env = Envelope {
        request_id: rid("lonely"),
        principal: Principal::Admin,
        origin: None,
        command: restock("A", 1),
    };
    w.apply(vec![env]);
    w.t.delete(
        Table::IdempotencyByTime,
        &keys::idempotency_by_time(T0, "lonely"),
    )
    .unwrap();
    let v = violations(&w);
    assert_violation(&v, 5, "has no time index entry");
    assert_violation(&v, 5, "time entries");
}

#[test]
fn the_checker_detects_a_summary_that_disagrees_with_the_records() {
    let mut w = World::new();
    let mut s = w.summary();
    s.units_sold += 1;
    w.put(Table::Meta, keys::META_SUMMARY, &s);
    assert_violation(&violations(&w), 0, "stored summary");
}

#[test]
fn a_corrupt_record_stops_apply_instead_of_being_used() {
    let mut w = World::new();
    let mut bytes = w.t.get(Table::Products, b"A").unwrap().unwrap();
    bytes[3] ^= 0x40;
    w.t.put(Table::Products, b"A", &bytes).unwrap();
    let env = w.env(Principal::Admin, restock("A", 1));
    let err = apply_batch(
        &mut w.t,
        &Batch {
            leader_time_ms: w.now_ms,
            commands: vec![env],
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TableError::Corrupt {
                table: "products",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(check_invariants(&w.t).is_err());
}

#[test]
fn a_malformed_idempotency_time_key_is_corruption_not_a_panic() {
    let mut w = World::new();
    // Shorter than the 8-byte time prefix every key of this table starts with.
    w.t.put(Table::IdempotencyByTime, b"\x00", &[]).unwrap();
    w.now_ms = T0 + IDEMPOTENCY_RETENTION_MS + 1;
    let err = apply_batch(
        &mut w.t,
        &Batch {
            leader_time_ms: w.now_ms,
            commands: vec![],
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TableError::Corrupt {
                table: "idempotency_by_time",
                ..
            }
        ),
        "{err:?}"
    );
}

// ----- identities, roles and the audit trail ---------------------------------

fn key_id(s: &str) -> crate::ids::KeyId {
    crate::ids::KeyId::new(s).unwrap()
}

fn create_key(id: &str, role: crate::identity::Role, account: Option<&str>) -> Command {
    Command::CreateKey {
        id: key_id(id),
        name: format!("{id} for tests"),
        role,
        account: account.map(acct),
        secret_hash: crate::identity::secret_hash(id),
        ttl_seconds: None,
    }
}

fn audit_trail(w: &World) -> Vec<crate::identity::AuditRecord> {
    query::audit(&w.t, None, Some(500)).unwrap().items
}

#[test]
fn each_role_may_apply_exactly_its_commands() {
    use crate::identity::Role;
    let mut w = World::new();
    for (id, role, account) in [
        ("k-admin", Role::Admin, None),
        ("k-operator", Role::Operator, None),
        ("k-support", Role::Support, None),
        ("k-merchant", Role::Merchant, None),
        ("k-alice", Role::Customer, Some("alice")),
    ] {
        w.ok(create_key(id, role, account));
    }
    let key = |id: &str| Principal::Key(key_id(id));
    // The catalogue: admin and merchant.
    for id in ["k-admin", "k-merchant"] {
        w.ok_as(key(id), restock("A", 1));
    }
    for id in ["k-operator", "k-support", "k-alice"] {
        let e = w.refused_as(key(id), restock("A", 1));
        assert!(
            matches!(&e, DomainError::Forbidden { reason } if reason.contains("admin or merchant")),
            "{id}: {e}"
        );
    }
    // Accounts and money: admin only.
    w.ok_as(key("k-admin"), deposit("bob", 1));
    for id in ["k-operator", "k-support", "k-merchant", "k-alice"] {
        w.refused_as(key(id), deposit("bob", 1));
    }
    // Orders: the customer key for its own account only.
    match w.ok_as(key("k-alice"), place_cmd("alice", &[("A", 1)])) {
        Outcome::Order(o) => assert_eq!(o.customer, acct("alice")),
        o => panic!("{o:?}"),
    }
    w.refused_as(key("k-alice"), place_cmd("bob", &[("A", 1)]));
    for id in ["k-operator", "k-support", "k-merchant"] {
        w.refused_as(key(id), place_cmd("alice", &[("A", 1)]));
    }
    // The audit record of an operation: admin and operator.
    let record = || Command::Record {
        action: "add_learner".into(),
        detail: "node=4".into(),
    };
    w.ok_as(key("k-operator"), record());
    w.refused_as(key("k-support"), record());
    // Keys: admin only, the admin token included.
    w.refused_as(key("k-operator"), create_key("k-x", Role::Admin, None));
    w.ok_as(Principal::Admin, create_key("k-x", Role::Admin, None));
    // Expiry: the cluster, or the admin.
    w.refused_as(key("k-merchant"), Command::ExpireDue { now_ms: T0 });
}

#[test]
fn a_revoked_key_is_refused_from_the_entry_that_revoked_it_on_replays_included() {
    use crate::identity::Role;
    let mut w = World::new();
    w.ok(create_key("k-m", Role::Merchant, None));
    let m = Principal::Key(key_id("k-m"));
    let first = w.env(m.clone(), restock("A", 1));
    let applied = w.apply(vec![first.clone()]).remove(0);
    assert!(applied.result.is_ok());
    // Revocation and a use in the same batch: the use after it is refused.
    let revoke = w.env(Principal::Admin, Command::RevokeKey { id: key_id("k-m") });
    let after = w.env(m.clone(), restock("A", 1));
    let out = w.apply(vec![revoke, after]);
    assert!(matches!(out[0].result, Ok(Outcome::KeyRevoked(_))));
    assert!(
        matches!(&out[1].result, Err(DomainError::Unauthorized { reason }) if reason.contains("k-m")),
        "{:?}",
        out[1].result
    );
    // The replay of the first request is refused too, and its stored
    // result is kept for nobody.
    let before = business_rows(&w.t);
    let replay = w.apply(vec![first]).remove(0);
    assert!(!replay.replayed);
    assert!(matches!(
        replay.result,
        Err(DomainError::Unauthorized { .. })
    ));
    assert!(business_rows(&w.t) == before);
    // Revoking it again: not found.
    assert!(matches!(
        w.refused(Command::RevokeKey { id: key_id("k-m") }),
        DomainError::NotFound { .. }
    ));
    assert!(query::key(&w.t, &key_id("k-m")).unwrap().is_none());
}

#[test]
fn a_key_expires_by_the_state_clock_never_early() {
    use crate::identity::Role;
    let mut w = World::new();
    w.ok(Command::CreateKey {
        id: key_id("k-short"),
        name: "an hour".into(),
        role: Role::Merchant,
        account: None,
        secret_hash: [7; 32],
        ttl_seconds: Some(3600),
    });
    let k = Principal::Key(key_id("k-short"));
    w.now_ms += 3_599_000;
    w.ok_as(k.clone(), restock("A", 1));
    w.now_ms += 1_000;
    let e = w.refused_as(k, restock("A", 1));
    assert!(matches!(e, DomainError::Unauthorized { .. }), "{e}");
}

#[test]
fn key_creation_checks_role_account_name_and_duplicates() {
    use crate::identity::Role;
    let mut w = World::new();
    w.ok(create_key("k-1", Role::Support, None));
    assert!(matches!(
        w.refused(create_key("k-1", Role::Support, None)),
        DomainError::AlreadyExists { .. }
    ));
    let e = w.refused(create_key("k-2", Role::Customer, None));
    assert!(
        matches!(&e, DomainError::Validation(f) if f.field == "account"),
        "{e}"
    );
    let e = w.refused(create_key("k-2", Role::Operator, Some("alice")));
    assert!(
        matches!(&e, DomainError::Validation(f) if f.field == "account"),
        "{e}"
    );
    let e = w.refused(create_key("k-2", Role::Customer, Some("shop")));
    assert!(
        matches!(&e, DomainError::Validation(f) if f.field == "account"),
        "{e}"
    );
    let e = w.refused(create_key("k-2", Role::Customer, Some("nobody")));
    assert!(matches!(e, DomainError::NotFound { .. }), "{e}");
    let named = |name: &str| {
        let Command::CreateKey {
            id,
            role,
            account,
            secret_hash,
            ttl_seconds,
            ..
        } = create_key("k-2", Role::Support, None)
        else {
            unreachable!()
        };
        Command::CreateKey {
            id,
            name: name.into(),
            role,
            account,
            secret_hash,
            ttl_seconds,
        }
    };
    for bad in [String::new(), "x".repeat(101), "a\nb".into()] {
        let e = w.refused(named(&bad));
        assert!(
            matches!(&e, DomainError::Validation(f) if f.field == "name"),
            "{e}"
        );
    }
    let listed = query::keys(&w.t, None, None).unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].created_by, "admin-token");
}

#[test]
fn revoking_a_customers_tokens_refuses_the_old_generation_only() {
    let mut w = World::new();
    let token = |generation| Principal::Customer {
        account: acct("alice"),
        generation,
    };
    w.ok_as(token(0), place_cmd("alice", &[("A", 1)]));
    match w.ok(Command::IssueCustomerToken {
        account: acct("alice"),
        ttl_seconds: Some(60),
    }) {
        Outcome::CustomerToken {
            generation,
            expires_at_ms,
            ..
        } => {
            assert_eq!(generation, 0);
            assert!(expires_at_ms >= w.now_ms + 60_000);
        }
        o => panic!("{o:?}"),
    }
    match w.ok(Command::RevokeCustomerTokens {
        account: acct("alice"),
    }) {
        Outcome::CustomerTokensRevoked { generation, .. } => assert_eq!(generation, 1),
        o => panic!("{o:?}"),
    }
    let e = w.refused_as(token(0), place_cmd("alice", &[("A", 1)]));
    assert!(matches!(e, DomainError::Unauthorized { .. }), "{e}");
    w.ok_as(token(1), place_cmd("alice", &[("A", 1)]));
    // Bob's tokens were not touched.
    w.ok_as(customer("bob"), place_cmd("bob", &[("A", 1)]));
    // Only customers have tokens.
    let e = w.refused(Command::IssueCustomerToken {
        account: acct("shop"),
        ttl_seconds: None,
    });
    assert!(matches!(e, DomainError::Validation(_)), "{e}");
}

#[test]
fn staff_actions_are_audited_with_who_what_when_where_and_outcome() {
    use crate::identity::Role;
    let mut w = World::new();
    let seeded = audit_trail(&w).len();
    assert_eq!(seeded, 18, "World::new's admin commands are recorded");
    w.ok(create_key("k-m", Role::Merchant, None));
    let mut env = w.env(Principal::Key(key_id("k-m")), restock("A", 2));
    env.origin = Some("10.0.0.7:5123".into());
    w.apply(vec![env]);
    w.refused_as(Principal::Key(key_id("k-m")), restock("NOPE", 1));
    // A customer's order and the admin's are shop traffic, not audited.
    w.ok_as(customer("alice"), place_cmd("alice", &[("A", 1)]));
    w.ok(place_cmd("bob", &[("A", 1)]));
    let trail = audit_trail(&w);
    assert_eq!(trail.len(), seeded + 3);
    let (newest, restocked, created) = (&trail[0], &trail[1], &trail[2]);
    assert_eq!(created.action, "create_key");
    assert_eq!(created.actor, "admin-token");
    assert_eq!(created.role, Role::Admin);
    assert!(
        created.detail.contains("role=merchant"),
        "{}",
        created.detail
    );
    assert_eq!(restocked.actor, "key:k-m");
    assert_eq!(restocked.role, Role::Merchant);
    assert_eq!(restocked.detail, "sku=A qty=2");
    assert_eq!(restocked.origin, "10.0.0.7:5123");
    assert_eq!(restocked.outcome, "ok");
    assert_eq!(restocked.at_ms, w.summary().clock_ms);
    assert_eq!(newest.outcome, "not_found");
    assert!(trail.windows(2).all(|p| p[0].seq == p[1].seq + 1));
    // Pages continue from the cursor, newest first.
    let page = query::audit(&w.t, None, Some(2)).unwrap();
    let rest = query::audit(&w.t, page.next_cursor.as_deref(), Some(500)).unwrap();
    assert_eq!(rest.items[0].seq, page.items[1].seq - 1);
}

#[test]
fn the_audit_trail_keeps_its_last_records_only() {
    use crate::identity::AUDIT_RECORDS_MAX;
    let mut w = World::empty();
    // Jump the sequence near the limit, as a long-lived cluster would be.
    let next = AUDIT_RECORDS_MAX + 5;
    w.t.put(Table::Meta, keys::META_AUDIT_NEXT, &encode(&next))
        .unwrap();
    w.t.put(Table::Audit, &keys::audit(6), &[]).unwrap();
    w.ok(open("shop", AccountKind::Merchant, "EUR"));
    // seq `next` was written and seq `next - MAX` (5) dropped; 6 stays.
    assert!(w.t.get(Table::Audit, &keys::audit(next)).unwrap().is_some());
    assert!(w.t.get(Table::Audit, &keys::audit(6)).unwrap().is_some());
    w.ok(open("world", AccountKind::External, "EUR"));
    assert!(w.t.get(Table::Audit, &keys::audit(6)).unwrap().is_none());
}
