//! The pure state-machine transition: `(tables, batch) -> (tables', results)`.
//! No clock, no randomness, no hash-map iteration: the same batches applied to
//! the same tables give byte-identical tables on every replica.
//!
//! Every command handler checks everything first and writes only after the
//! last check passed, so a refused command changes nothing. The batch as a
//! whole is made atomic by the caller's transaction.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::access::{self, Actor, AuditEntry, NewKey};
use crate::codec::{decode, encode};
use crate::command::{
    Batch, Command, Envelope, LineRequest, BATCH_COMMANDS_MAX, ORDER_TTL_DEFAULT_S,
};
use crate::error::{DomainError, ShortLine, TableError};
use crate::identity::KeyInfo;
use crate::ids::{AccountId, Currency, OrderId, Sku};
use crate::keys;
use crate::model::{
    Account, AccountKind, Order, OrderLine, OrderStatus, Product, StatusChange, Stock, Summary,
};
use crate::money::Minor;
use crate::step::{get, ovf, Fail, Step};
use crate::tables::{Direction, ReadTables, Table, WriteTables};
use crate::test_bugs::{self, TestBug};

/// How long an idempotency record is kept, in leader time (24 h, as Stripe).
/// A constant rather than configuration: every replica must prune the same
/// records at the same log position, so it can only change through the log.
pub const IDEMPOTENCY_RETENTION_MS: u64 = 24 * 3600 * 1000;
/// Most idempotency records one batch prunes. Bounds the work of one apply;
/// what is left is pruned by the next batches, still deterministically.
pub const IDEMPOTENCY_PRUNE_PER_BATCH_MAX: usize = 1_000;
/// Most orders one `ExpireDue` expires; the leader proposes again while
/// more are due.
pub const EXPIRE_PER_COMMAND_MAX: usize = 1_000;
/// Furthest one entry may move the state clock forward (ms). The clock
/// decides expiries and idempotency pruning, so a leader whose wall clock is
/// hours ahead must not be able to jump it there in one entry. The nodes
/// keep a leader's clock within `clock_offset_max_ms` of the majority's
/// (the first guard); this bound holds even if that guard fails. An honest
/// leader's consecutive entries are milliseconds apart, and an idle leader
/// proposes a tick (`ExpireDue`) whenever the state clock lags its own by
/// more than ten seconds (`keel_node::server::CLOCK_TICK_LAG_MS`), so a
/// minute is never reached in normal operation; after a whole-cluster
/// outage the clock catches up a minute per tick.
pub const CLOCK_STEP_MAX_MS: u64 = 60_000;

/// What a command produced when it succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The product after the command.
    Product(Product),
    /// The account after the command.
    Account(Account),
    /// The order after the command.
    Order(Order),
    /// The orders an `ExpireDue` expired, and whether more are due.
    Expired {
        /// Expired order ids, ascending by expiry time.
        orders: Vec<OrderId>,
        /// True when the per-command limit left due orders behind.
        more_due: bool,
    },
    /// The key created.
    KeyCreated(KeyInfo),
    /// The key revoked.
    KeyRevoked(KeyInfo),
    /// What a customer token issued now carries.
    CustomerToken {
        /// The customer's account.
        account: AccountId,
        /// The account's token generation.
        generation: u32,
        /// State time the token expires at (ms).
        expires_at_ms: u64,
    },
    /// An account's tokens were revoked; new ones carry `generation`.
    CustomerTokensRevoked {
        /// The customer's account.
        account: AccountId,
        /// The account's new token generation.
        generation: u32,
    },
    /// The operation was recorded in the audit trail.
    Recorded,
}

/// One command's result: its outcome or its refusal.
pub type CommandResult = Result<Outcome, DomainError>;

/// A command's result as applied, and whether it was a replay of an earlier
/// request with the same key (nothing changed then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The result (the stored original one for a replay).
    pub result: CommandResult,
    /// True when the idempotency key had been seen with the same request.
    pub replayed: bool,
}

/// The stored idempotency record of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of principal and command ([`Envelope::fingerprint`]).
    pub fingerprint: [u8; 32],
    /// Leader time it was recorded at (ms).
    pub at_ms: u64,
    /// The result returned on every replay.
    pub result: CommandResult,
}

/// Applies a batch in order and returns one result per command. An `Err` is a
/// storage failure: the caller must abort its transaction and stop applying.
pub fn apply_batch<T: WriteTables>(
    tables: &mut T,
    batch: &Batch,
) -> Result<Vec<Applied>, TableError> {
    let mut st = State::load(tables)?;
    let clock = StateClock::advance(st.summary.clock_ms, batch.leader_time_ms);
    st.summary.clock_ms = clock.now;
    prune_idempotency(st.t, clock.now)?;
    let mut out = Vec::with_capacity(batch.commands.len().min(BATCH_COMMANDS_MAX));
    for env in &batch.commands {
        out.push(st.apply_one(env, clock)?);
    }
    st.t.put(Table::Meta, keys::META_SUMMARY, &encode(&st.summary))?;
    Ok(out)
}

/// The two times an entry gives its commands, both pure functions of the
/// stored clock and the entry's leader time.
///
/// Leader clocks are not synchronised and one may be wrong by days, so the
/// two are biased in opposite directions, each the safe way for what it
/// decides:
/// - `now` decides (what is due to expire, which idempotency records are
///   old enough to prune, whether a reservation may still be paid): it
///   never goes backwards (a new leader may be behind) and moves forward by
///   at most [`CLOCK_STEP_MAX_MS`] per entry (a leader may be far ahead), so
///   nothing is decided early.
/// - `deadline_base` starts deadlines (a reservation's expiry, an
///   idempotency record's retention): the later of `now` and the leader's
///   own time. When the state clock lags real time (it is catching up after
///   an outage), a deadline counted from the lagging clock would come early
///   once it caught up; counted from the leader's time it cannot. A leader
///   that is ahead only makes deadlines later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateClock {
    /// The state machine's clock after this entry (ms).
    pub now: u64,
    /// Where deadlines set by this entry's commands count from (ms).
    pub deadline_base: u64,
}

impl StateClock {
    /// The clock after an entry stamped `leader_time_ms` is applied to a
    /// state whose clock reads `clock_ms`. A state that has never applied a
    /// timed entry (clock 0) takes the first leader time as it is: there is
    /// nothing earlier to bound it by, and a leader stands for election only
    /// while its clock agrees with a majority's.
    pub fn advance(clock_ms: u64, leader_time_ms: u64) -> Self {
        let now = if clock_ms == 0 {
            leader_time_ms
        } else {
            clock_ms.max(leader_time_ms.min(clock_ms.saturating_add(CLOCK_STEP_MAX_MS)))
        };
        Self {
            now,
            deadline_base: now.max(leader_time_ms),
        }
    }
}

/// The summary as stored, or the initial one for empty tables.
pub fn load_summary<T: ReadTables>(t: &T) -> Result<Summary, TableError> {
    match t.get(Table::Meta, keys::META_SUMMARY)? {
        Some(v) => decode(Table::Meta, keys::META_SUMMARY, &v),
        None => Ok(initial_summary()),
    }
}

pub(crate) fn initial_summary() -> Summary {
    Summary {
        orders_by_status: OrderStatus::ALL.iter().map(|s| (*s, 0)).collect(),
        next_order_id: 1,
        ..Summary::default()
    }
}

fn prune_idempotency<T: WriteTables>(t: &mut T, now: u64) -> Result<(), TableError> {
    let Some(cutoff) = now.checked_sub(IDEMPOTENCY_RETENTION_MS) else {
        return Ok(());
    };
    let end = cutoff.to_be_bytes();
    let old = t.scan(
        Table::IdempotencyByTime,
        Bound::Unbounded,
        Bound::Excluded(&end),
        Direction::Forward,
        IDEMPOTENCY_PRUNE_PER_BATCH_MAX,
    )?;
    for (k, _) in old {
        // Every key starts with the 8-byte time; a shorter one is corruption,
        // reported as such rather than a panic on the slice.
        let request_id = k.get(8..).ok_or_else(|| TableError::Corrupt {
            table: Table::IdempotencyByTime.name(),
            key: keel_protocol::hex::encode(&k),
            reason: "key is shorter than its 8-byte time prefix".into(),
        })?;
        t.delete(Table::Idempotency, request_id)?;
        t.delete(Table::IdempotencyByTime, &k)?;
    }
    Ok(())
}

struct State<'a, T> {
    t: &'a mut T,
    summary: Summary,
}

/// The lines of an order being placed, priced and checked against each other.
struct PricedLines<'l> {
    /// Each distinct product once, with the units the order wants of it.
    products: BTreeMap<&'l Sku, (Product, u64)>,
    lines: Vec<OrderLine>,
    total: Minor,
    currency: Currency,
}

/// When a reservation made now with this time to live expires.
fn reservation_expiry_ms(ttl_seconds: Option<u32>, clock: StateClock) -> Step<u64> {
    let ttl_ms = u64::from(ttl_seconds.unwrap_or(ORDER_TTL_DEFAULT_S)) * 1000;
    // From the deadline base, not `now`: a reservation is never due
    // before its whole lifetime has passed in real time (StateClock).
    clock
        .deadline_base
        .checked_add(ttl_ms)
        .ok_or_else(|| ovf("expires_at"))
}

impl<'a, T: WriteTables> State<'a, T> {
    fn load(t: &'a mut T) -> Result<Self, TableError> {
        let summary = load_summary(t)?;
        Ok(Self { t, summary })
    }

    fn apply_one(&mut self, env: &Envelope, clock: StateClock) -> Result<Applied, TableError> {
        // Who is acting, at this position of the log: a credential revoked
        // by an earlier entry is refused here, replays included, and the
        // refusal touches nothing (not even the key's idempotency record).
        let actor = match access::resolve(self.t, &env.principal, clock.now) {
            Ok(a) => a,
            Err(Fail::Domain(e)) => {
                return Ok(Applied {
                    result: Err(e),
                    replayed: false,
                })
            }
            Err(Fail::Table(e)) => return Err(e),
        };
        let rid = env.request_id.as_str().as_bytes();
        let fingerprint = env.fingerprint();
        let stored = if test_bugs::on(TestBug::SkipIdempotency) {
            None
        } else {
            get::<_, IdempotencyRecord>(self.t, Table::Idempotency, rid)?
        };
        if let Some(rec) = stored {
            if rec.fingerprint == fingerprint {
                return Ok(Applied {
                    result: rec.result,
                    replayed: true,
                });
            }
            return Ok(Applied {
                result: Err(DomainError::IdempotencyConflict {
                    request_id: env.request_id.clone(),
                }),
                replayed: false,
            });
        }
        let result = match self.execute(&actor, env, clock) {
            Ok(o) => Ok(o),
            Err(Fail::Domain(e)) => Err(e),
            Err(Fail::Table(e)) => return Err(e),
        };
        self.audit(&actor, env, &result, clock)?;
        // Retention counts from the deadline base, so a record is never
        // pruned before it is a full retention old in real time.
        let rec = IdempotencyRecord {
            fingerprint,
            at_ms: clock.deadline_base,
            result: result.clone(),
        };
        self.t.put(Table::Idempotency, rid, &encode(&rec))?;
        self.t.put(
            Table::IdempotencyByTime,
            &keys::idempotency_by_time(clock.deadline_base, env.request_id.as_str()),
            &[],
        )?;
        Ok(Applied {
            result,
            replayed: false,
        })
    }

    /// Records a staff action in the audit trail (what
    /// [`Command::audit_entry`] names), refused ones included.
    fn audit(
        &mut self,
        actor: &Actor,
        env: &Envelope,
        result: &CommandResult,
        clock: StateClock,
    ) -> Result<(), TableError> {
        let (Actor::Staff { role, name }, Some((action, detail))) =
            (actor, env.command.audit_entry())
        else {
            return Ok(());
        };
        access::append_audit(
            self.t,
            AuditEntry {
                at_ms: clock.now,
                actor: name,
                role: *role,
                action,
                detail,
                origin: env.origin.as_deref().unwrap_or(""),
                outcome: result.as_ref().err().map_or("ok", |e| e.code()),
            },
        )
    }

    fn execute(&mut self, actor: &Actor, env: &Envelope, clock: StateClock) -> Step<Outcome> {
        let now = clock.now;
        env.command.validate().map_err(DomainError::from)?;
        access::authorize(actor, &env.command)?;
        let p = actor;
        match &env.command {
            Command::UpsertProduct {
                sku,
                name,
                price,
                currency,
                active,
            } => self.upsert_product(sku, name.clone(), *price, *currency, *active),
            Command::Restock { sku, qty } => self.restock(sku, *qty),
            Command::SetStock { sku, on_hand } => self.set_stock(sku, *on_hand),
            Command::OpenAccount { id, kind, currency } => self.open_account(id, *kind, *currency),
            Command::Deposit { account, amount } => self.deposit(account, *amount),
            Command::PlaceOrder {
                customer,
                lines,
                ttl_seconds,
            } => {
                access::owns(p, customer)?;
                self.place(customer, lines, *ttl_seconds, clock)
            }
            Command::PayOrder { order } => self.pay(p, *order, now),
            Command::CancelOrder { order } => {
                let o = self.order_for(p, *order)?;
                self.release(o, OrderStatus::Cancelled, "cancel", now)
                    .map(Outcome::Order)
            }
            Command::ShipOrder { order } => {
                self.advance(*order, OrderStatus::Paid, OrderStatus::Shipped, "ship", now)
            }
            Command::DeliverOrder { order } => self.advance(
                *order,
                OrderStatus::Shipped,
                OrderStatus::Delivered,
                "deliver",
                now,
            ),
            Command::RefundOrder { order, restock } => self.refund(*order, *restock, now),
            Command::ExpireDue { now_ms } => self.expire_due((*now_ms).min(now), now),
            Command::CreateKey {
                id,
                name,
                role,
                account,
                secret_hash,
                ttl_seconds,
            } => {
                let key = NewKey {
                    id,
                    name,
                    role: *role,
                    account: account.as_ref(),
                    secret_hash: *secret_hash,
                    ttl_seconds: *ttl_seconds,
                };
                let by = match p {
                    Actor::Staff { name, .. } => name.as_str(),
                    _ => "",
                };
                access::create_key(self.t, key, by, now, clock.deadline_base)
                    .map(Outcome::KeyCreated)
            }
            Command::RevokeKey { id } => access::revoke_key(self.t, id).map(Outcome::KeyRevoked),
            Command::IssueCustomerToken {
                account,
                ttl_seconds,
            } => {
                let (generation, expires_at_ms) =
                    access::issue_token(self.t, account, *ttl_seconds, clock.deadline_base)?;
                Ok(Outcome::CustomerToken {
                    account: account.clone(),
                    generation,
                    expires_at_ms,
                })
            }
            Command::RevokeCustomerTokens { account } => {
                let generation = access::revoke_tokens(self.t, account)?;
                Ok(Outcome::CustomerTokensRevoked {
                    account: account.clone(),
                    generation,
                })
            }
            // The audit record itself is written by `audit`.
            Command::Record { .. } => Ok(Outcome::Recorded),
        }
    }

    // ----- reads and writes of records ------------------------------------

    fn product(&self, sku: &Sku) -> Step<Product> {
        get(self.t, Table::Products, sku.as_str().as_bytes())?
            .ok_or_else(|| DomainError::not_found("product", sku).into())
    }
    fn put_product(&mut self, p: &Product) -> Step<()> {
        Ok(self
            .t
            .put(Table::Products, p.sku.as_str().as_bytes(), &encode(p))?)
    }
    fn account(&self, id: &AccountId) -> Step<Account> {
        get(self.t, Table::Accounts, id.as_str().as_bytes())?
            .ok_or_else(|| DomainError::not_found("account", id).into())
    }
    fn put_account(&mut self, a: &Account) -> Step<()> {
        Ok(self
            .t
            .put(Table::Accounts, a.id.as_str().as_bytes(), &encode(a))?)
    }
    fn order(&self, id: OrderId) -> Step<Order> {
        get(self.t, Table::Orders, &keys::order(id))?
            .ok_or_else(|| DomainError::not_found("order", id).into())
    }
    fn put_order(&mut self, o: &Order) -> Step<()> {
        Ok(self.t.put(Table::Orders, &keys::order(o.id), &encode(o))?)
    }
    fn currency_account(&self, currency: Currency, kind: AccountKind) -> Step<Option<AccountId>> {
        Ok(get(
            self.t,
            Table::CurrencyAccounts,
            &keys::currency_account(currency, kind),
        )?)
    }
    fn order_for(&self, p: &Actor, id: OrderId) -> Step<Order> {
        let o = self.order(id)?;
        access::owns(p, &o.customer)?;
        Ok(o)
    }

    fn bump_status(&mut self, from: Option<OrderStatus>, to: OrderStatus) {
        if let Some(f) = from {
            if let Some(n) = self.summary.orders_by_status.get_mut(&f) {
                *n = n.saturating_sub(1);
            }
        }
        *self.summary.orders_by_status.entry(to).or_insert(0) += 1;
    }

    // ----- catalogue and stock ---------------------------------------------

    fn upsert_product(
        &mut self,
        sku: &Sku,
        name: crate::ids::ProductName,
        price: Minor,
        currency: Currency,
        active: bool,
    ) -> Step<Outcome> {
        let existing: Option<Product> = get(self.t, Table::Products, sku.as_str().as_bytes())?;
        let stock = match &existing {
            Some(p) if p.currency != currency && p.stock.reserved > 0 => {
                return Err(DomainError::validation(
                    "currency",
                    format!(
                        "cannot change from {} while {} units are reserved",
                        p.currency, p.stock.reserved
                    ),
                )
                .into())
            }
            Some(p) => p.stock,
            None => Stock::default(),
        };
        let product = Product {
            sku: sku.clone(),
            name,
            price,
            currency,
            active,
            stock,
        };
        self.put_product(&product)?;
        if existing.is_none() {
            self.summary.products += 1;
        }
        Ok(Outcome::Product(product))
    }

    fn restock(&mut self, sku: &Sku, qty: u64) -> Step<Outcome> {
        let mut p = self.product(sku)?;
        let on_hand = p
            .stock
            .on_hand
            .checked_add(qty)
            .ok_or_else(|| ovf("on_hand"))?;
        let restocked = p
            .stock
            .ledger
            .restocked
            .checked_add(qty)
            .ok_or_else(|| ovf("restocked"))?;
        let total_on_hand = self
            .summary
            .units_on_hand
            .checked_add(qty)
            .ok_or_else(|| ovf("units_on_hand"))?;
        let total_restocked = self
            .summary
            .units_restocked
            .checked_add(qty)
            .ok_or_else(|| ovf("units_restocked"))?;
        p.stock.on_hand = on_hand;
        p.stock.ledger.restocked = restocked;
        self.put_product(&p)?;
        self.summary.units_on_hand = total_on_hand;
        self.summary.units_restocked = total_restocked;
        Ok(Outcome::Product(p))
    }

    fn set_stock(&mut self, sku: &Sku, on_hand: u64) -> Step<Outcome> {
        let mut p = self.product(sku)?;
        if on_hand < p.stock.reserved {
            return Err(DomainError::BelowReserved {
                sku: sku.clone(),
                on_hand,
                reserved: p.stock.reserved,
            }
            .into());
        }
        let old = p.stock.on_hand;
        if on_hand >= old {
            let d = on_hand - old;
            p.stock.ledger.set_added = p
                .stock
                .ledger
                .set_added
                .checked_add(d)
                .ok_or_else(|| ovf("set_added"))?;
            self.summary.units_on_hand = self
                .summary
                .units_on_hand
                .checked_add(d)
                .ok_or_else(|| ovf("units_on_hand"))?;
        } else {
            let d = old - on_hand;
            p.stock.ledger.set_removed = p
                .stock
                .ledger
                .set_removed
                .checked_add(d)
                .ok_or_else(|| ovf("set_removed"))?;
            self.summary.units_on_hand = self.summary.units_on_hand.saturating_sub(d);
        }
        p.stock.on_hand = on_hand;
        self.put_product(&p)?;
        Ok(Outcome::Product(p))
    }

    // ----- accounts and money ----------------------------------------------

    fn open_account(
        &mut self,
        id: &AccountId,
        kind: AccountKind,
        currency: Currency,
    ) -> Step<Outcome> {
        if self
            .t
            .get(Table::Accounts, id.as_str().as_bytes())?
            .is_some()
        {
            return Err(DomainError::AlreadyExists {
                entity: "account".into(),
                id: id.to_string(),
            }
            .into());
        }
        if kind != AccountKind::Customer {
            if let Some(existing) = self.currency_account(currency, kind)? {
                return Err(DomainError::AlreadyExists {
                    entity: format!("{} account for {currency}", kind.as_str()),
                    id: existing.to_string(),
                }
                .into());
            }
            self.t.put(
                Table::CurrencyAccounts,
                &keys::currency_account(currency, kind),
                &encode(id),
            )?;
        }
        let a = Account {
            id: id.clone(),
            kind,
            currency,
            balance: Minor::ZERO,
        };
        self.put_account(&a)?;
        self.summary.accounts += 1;
        self.summary
            .balance_sum_by_currency
            .entry(currency)
            .or_insert(0);
        if kind == AccountKind::External {
            self.summary
                .deposits_by_currency
                .entry(currency)
                .or_insert(0);
        }
        Ok(Outcome::Account(a))
    }

    /// Moves `amount` from `from` to `to` (same currency), refusing to take a
    /// customer below zero. The only way balances change: double entry.
    fn transfer(&mut self, from: &mut Account, to: &mut Account, amount: Minor) -> Step<()> {
        if from.currency != to.currency {
            return Err(DomainError::validation(
                "currency",
                format!("cannot move {} to {}", from.currency, to.currency),
            )
            .into());
        }
        let from_after = from
            .balance
            .checked_sub(amount)
            .map_err(|_| ovf("balance"))?;
        if from.kind != AccountKind::External && from_after.0 < 0 {
            return Err(DomainError::InsufficientFunds {
                account: from.id.clone(),
                balance: from.balance,
                required: amount,
            }
            .into());
        }
        let to_after = to.balance.checked_add(amount).map_err(|_| ovf("balance"))?;
        // Track the balance sum from the real deltas (not assumed zero), so
        // the summary exposes a broken transfer instead of hiding it.
        let delta = i128::from(from_after.0) - i128::from(from.balance.0) + i128::from(to_after.0)
            - i128::from(to.balance.0);
        *self
            .summary
            .balance_sum_by_currency
            .entry(from.currency)
            .or_insert(0) += delta;
        if from.kind == AccountKind::External {
            *self
                .summary
                .deposits_by_currency
                .entry(from.currency)
                .or_insert(0) += i128::from(amount.0);
        }
        from.balance = from_after;
        to.balance = to_after;
        self.put_account(from)?;
        self.put_account(to)?;
        Ok(())
    }

    fn deposit(&mut self, account: &AccountId, amount: Minor) -> Step<Outcome> {
        let mut to = self.account(account)?;
        if to.kind == AccountKind::External {
            return Err(DomainError::validation(
                "account",
                "deposits credit customer or merchant accounts, not the external one",
            )
            .into());
        }
        let ext_id = self
            .currency_account(to.currency, AccountKind::External)?
            .ok_or_else(|| DomainError::not_found("external account for currency", to.currency))?;
        let mut from = self.account(&ext_id)?;
        self.transfer(&mut from, &mut to, amount)?;
        Ok(Outcome::Account(to))
    }

    // ----- orders --------------------------------------------------------

    fn place(
        &mut self,
        customer_id: &AccountId,
        lines: &[LineRequest],
        ttl_seconds: Option<u32>,
        clock: StateClock,
    ) -> Step<Outcome> {
        let now = clock.now;
        let customer = self.customer_account(customer_id)?;
        let mut priced = self.price_lines(lines)?;
        let currency = priced.currency;
        Self::check_customer_currency(&customer, currency)?;
        let merchant = self
            .currency_account(currency, AccountKind::Merchant)?
            .ok_or_else(|| DomainError::not_found("merchant account for currency", currency))?;
        Self::check_stock_available(&priced.products)?;
        let expires_at_ms = reservation_expiry_ms(ttl_seconds, clock)?;
        let units: u64 = priced.products.values().map(|(_, w)| *w).sum();
        let units_reserved = self
            .summary
            .units_reserved
            .checked_add(units)
            .ok_or_else(|| ovf("units_reserved"))?;
        // All checks passed: write.
        self.reserve_stock(&mut priced.products)?;
        let id = OrderId(self.summary.next_order_id);
        let order = Order {
            id,
            customer: customer_id.clone(),
            merchant,
            lines: priced.lines,
            total: priced.total,
            currency,
            status: OrderStatus::Reserved,
            created_at_ms: now,
            expires_at_ms,
            restocked: false,
            history: vec![StatusChange {
                status: OrderStatus::Reserved,
                at_ms: now,
            }],
        };
        self.record_placed_order(&order, units_reserved)?;
        Ok(Outcome::Order(order))
    }

    /// The account that places an order, which must be a customer's.
    fn customer_account(&self, customer_id: &AccountId) -> Step<Account> {
        let customer = self.account(customer_id)?;
        if customer.kind != AccountKind::Customer {
            return Err(DomainError::validation(
                "customer",
                format!(
                    "{customer_id} is a {} account, not a customer",
                    customer.kind.as_str()
                ),
            )
            .into());
        }
        Ok(customer)
    }

    /// Prices the lines of a new order and checks that their products are
    /// active and share one currency.
    fn price_lines<'l>(&self, lines: &'l [LineRequest]) -> Step<PricedLines<'l>> {
        // Load each distinct product once; sum quantities per SKU so a SKU on
        // two lines is checked against its stock once, for the whole order.
        let mut products: BTreeMap<&Sku, (Product, u64)> = BTreeMap::new();
        let mut order_lines = Vec::with_capacity(lines.len());
        let mut total = Minor::ZERO;
        let mut currency = None;
        for (i, l) in lines.iter().enumerate() {
            if !products.contains_key(&l.sku) {
                let p = self.product(&l.sku)?;
                products.insert(&l.sku, (p, 0));
            }
            let Some((p, want)) = products.get_mut(&l.sku) else {
                continue; // inserted just above
            };
            if !p.active {
                return Err(DomainError::validation(
                    &format!("lines[{i}].sku"),
                    format!("product {} is not active", l.sku),
                )
                .into());
            }
            match currency {
                None => currency = Some(p.currency),
                Some(c) if c != p.currency => {
                    return Err(DomainError::validation(
                        &format!("lines[{i}].sku"),
                        format!("mixes currencies: {} and {}", c, p.currency),
                    )
                    .into())
                }
                Some(_) => {}
            }
            *want = want.checked_add(l.qty).ok_or_else(|| ovf("qty"))?;
            let line_total = p.price.checked_mul(l.qty).map_err(|_| ovf("total"))?;
            total = total.checked_add(line_total).map_err(|_| ovf("total"))?;
            order_lines.push(OrderLine {
                sku: l.sku.clone(),
                qty: l.qty,
                unit_price: p.price,
            });
        }
        // The validated command has at least one line, so currency is set.
        let Some(currency) = currency else {
            return Err(DomainError::validation("lines", "must not be empty").into());
        };
        Ok(PricedLines {
            products,
            lines: order_lines,
            total,
            currency,
        })
    }

    fn check_customer_currency(customer: &Account, currency: Currency) -> Step<()> {
        if customer.currency != currency {
            return Err(DomainError::validation(
                "customer",
                format!(
                    "account is in {}, the order in {}",
                    customer.currency, currency
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Fails with the short lines if any product lacks the units wanted.
    fn check_stock_available(products: &BTreeMap<&Sku, (Product, u64)>) -> Step<()> {
        let short: Vec<ShortLine> = products
            .values()
            .filter(|(p, want)| *want > p.stock.available())
            .map(|(p, want)| ShortLine {
                sku: p.sku.clone(),
                requested: *want,
                available: p.stock.available(),
            })
            .collect();
        if !short.is_empty() && !test_bugs::on(TestBug::Oversell) {
            return Err(DomainError::OutOfStock { lines: short }.into());
        }
        Ok(())
    }

    /// Reserves the wanted units of each product; availability is checked
    /// before (`check_stock_available`).
    fn reserve_stock(&mut self, products: &mut BTreeMap<&Sku, (Product, u64)>) -> Step<()> {
        for (p, want) in products.values_mut() {
            // <= available, checked above (saturating only for the test bug).
            p.stock.reserved = p.stock.reserved.saturating_add(*want);
            self.put_product(p)?;
        }
        Ok(())
    }

    /// Writes a new reserved order, its index entries and its summary counts.
    fn record_placed_order(&mut self, order: &Order, units_reserved: u64) -> Step<()> {
        let id = order.id;
        self.put_order(order)?;
        self.t.put(
            Table::CustomerOrders,
            &keys::customer_order(&order.customer, id),
            &[],
        )?;
        self.t
            .put(Table::Expiry, &keys::expiry(order.expires_at_ms, id), &[])?;
        self.summary.next_order_id += 1;
        self.summary.units_reserved = units_reserved;
        self.bump_status(None, OrderStatus::Reserved);
        Ok(())
    }

    fn check_transition(o: &Order, to: OrderStatus, action: &str) -> Step<()> {
        if o.status.can_become(to) {
            Ok(())
        } else {
            Err(DomainError::InvalidTransition {
                order: o.id,
                from: o.status,
                action: action.to_owned(),
            }
            .into())
        }
    }

    fn set_status(&mut self, o: &mut Order, to: OrderStatus, now: u64) -> Step<()> {
        let from = o.status;
        o.status = to;
        o.history.push(StatusChange {
            status: to,
            at_ms: now,
        });
        self.put_order(o)?;
        self.bump_status(Some(from), to);
        Ok(())
    }

    /// Per-SKU quantities of an order, summed over its lines.
    fn quantities(o: &Order) -> BTreeMap<&Sku, u64> {
        let mut q: BTreeMap<&Sku, u64> = BTreeMap::new();
        for l in &o.lines {
            *q.entry(&l.sku).or_insert(0) += l.qty;
        }
        q
    }

    fn pay(&mut self, p: &Actor, id: OrderId, now: u64) -> Step<Outcome> {
        let mut o = self.order_for(p, id)?;
        Self::check_transition(&o, OrderStatus::Paid, "pay")?;
        if o.expires_at_ms <= now {
            // Due for expiry; the leader's next ExpireDue releases it. A
            // refusal changes nothing, so the expiry is left to that command.
            return Err(DomainError::InvalidTransition {
                order: id,
                from: o.status,
                action: "pay (reservation expired)".into(),
            }
            .into());
        }
        let mut customer = self.account(&o.customer)?;
        let mut merchant = self.account(&o.merchant)?;
        if customer.balance < o.total {
            return Err(DomainError::InsufficientFunds {
                account: customer.id.clone(),
                balance: customer.balance,
                required: o.total,
            }
            .into());
        }
        let qty = Self::quantities(&o);
        let mut products = Vec::with_capacity(qty.len());
        for (sku, n) in &qty {
            let mut prod = self.product(sku)?;
            // Reserved units are part of on_hand (reserved <= on_hand), so
            // neither subtraction can underflow while the invariants hold.
            prod.stock.on_hand = prod
                .stock
                .on_hand
                .checked_sub(*n)
                .ok_or_else(|| ovf("on_hand"))?;
            prod.stock.reserved = prod
                .stock
                .reserved
                .checked_sub(*n)
                .ok_or_else(|| ovf("reserved"))?;
            prod.stock.ledger.sold = prod
                .stock
                .ledger
                .sold
                .checked_add(*n)
                .ok_or_else(|| ovf("sold"))?;
            products.push(prod);
        }
        let units: u64 = qty.values().sum();
        self.transfer(&mut customer, &mut merchant, o.total)?;
        if test_bugs::on(TestBug::FreePayment) && o.id.0 % test_bugs::FREE_PAYMENT_EVERY == 0 {
            customer.balance = customer
                .balance
                .checked_add(o.total)
                .map_err(|_| ovf("balance"))?;
            self.put_account(&customer)?;
        }
        for prod in &products {
            self.put_product(prod)?;
        }
        self.t
            .delete(Table::Expiry, &keys::expiry(o.expires_at_ms, o.id))?;
        self.set_status(&mut o, OrderStatus::Paid, now)?;
        self.summary.units_on_hand = self.summary.units_on_hand.saturating_sub(units);
        self.summary.units_reserved = self.summary.units_reserved.saturating_sub(units);
        self.summary.units_sold = self.summary.units_sold.saturating_add(units);
        *self
            .summary
            .sales_by_currency
            .entry(o.currency)
            .or_insert(0) += i128::from(o.total.0);
        Ok(Outcome::Order(o))
    }

    /// Releases a reserved order's units and moves it to `to` (cancelled or
    /// expired).
    fn release(&mut self, mut o: Order, to: OrderStatus, action: &str, now: u64) -> Step<Order> {
        Self::check_transition(&o, to, action)?;
        let qty = Self::quantities(&o);
        let mut products = Vec::with_capacity(qty.len());
        for (sku, n) in &qty {
            let mut prod = self.product(sku)?;
            prod.stock.reserved = prod
                .stock
                .reserved
                .checked_sub(*n)
                .ok_or_else(|| ovf("reserved"))?;
            products.push(prod);
        }
        for prod in &products {
            self.put_product(prod)?;
        }
        let units: u64 = qty.values().sum();
        self.t
            .delete(Table::Expiry, &keys::expiry(o.expires_at_ms, o.id))?;
        self.set_status(&mut o, to, now)?;
        self.summary.units_reserved = self.summary.units_reserved.saturating_sub(units);
        Ok(o)
    }

    fn advance(
        &mut self,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        action: &str,
        now: u64,
    ) -> Step<Outcome> {
        let mut o = self.order(id)?;
        debug_assert!(from.can_become(to));
        Self::check_transition(&o, to, action)?;
        self.set_status(&mut o, to, now)?;
        Ok(Outcome::Order(o))
    }

    fn refund(&mut self, id: OrderId, restock: bool, now: u64) -> Step<Outcome> {
        let mut o = self.order(id)?;
        Self::check_transition(&o, OrderStatus::Refunded, "refund")?;
        let mut merchant = self.account(&o.merchant)?;
        let mut customer = self.account(&o.customer)?;
        let qty = Self::quantities(&o);
        let mut products = Vec::new();
        if restock {
            for (sku, n) in &qty {
                let mut prod = self.product(sku)?;
                prod.stock.on_hand = prod
                    .stock
                    .on_hand
                    .checked_add(*n)
                    .ok_or_else(|| ovf("on_hand"))?;
                prod.stock.ledger.returned = prod
                    .stock
                    .ledger
                    .returned
                    .checked_add(*n)
                    .ok_or_else(|| ovf("returned"))?;
                products.push(prod);
            }
        }
        self.transfer(&mut merchant, &mut customer, o.total)?;
        for prod in &products {
            self.put_product(prod)?;
        }
        if restock {
            let units: u64 = qty.values().sum();
            self.summary.units_on_hand = self.summary.units_on_hand.saturating_add(units);
            self.summary.units_returned = self.summary.units_returned.saturating_add(units);
        }
        o.restocked = restock;
        self.set_status(&mut o, OrderStatus::Refunded, now)?;
        Ok(Outcome::Order(o))
    }

    fn expire_due(&mut self, cutoff: u64, now: u64) -> Step<Outcome> {
        // Keys of orders expiring at or before `cutoff`: below (cutoff+1, 0).
        let end = keys::expiry(cutoff.saturating_add(1), OrderId(0));
        let due = self.t.scan(
            Table::Expiry,
            Bound::Unbounded,
            Bound::Excluded(&end),
            Direction::Forward,
            EXPIRE_PER_COMMAND_MAX + 1,
        )?;
        let more_due = due.len() > EXPIRE_PER_COMMAND_MAX;
        let mut expired = Vec::new();
        for (k, _) in due.into_iter().take(EXPIRE_PER_COMMAND_MAX) {
            let id = keys::order_of_expiry_key(&k).ok_or_else(|| TableError::Corrupt {
                table: Table::Expiry.name(),
                key: keel_protocol::hex::encode(&k),
                reason: "key is not 16 bytes".into(),
            })?;
            // The index holds reserved orders only; anything else means the
            // tables disagree with each other, which is corruption, not a
            // refusal (a refusal here would leave earlier expiries written).
            let released = self
                .order(id)
                .and_then(|o| self.release(o, OrderStatus::Expired, "expire", now));
            match released {
                Ok(_) => expired.push(id),
                Err(Fail::Domain(e)) => {
                    return Err(TableError::Corrupt {
                        table: Table::Expiry.name(),
                        key: keel_protocol::hex::encode(&k),
                        reason: format!("indexed order cannot expire: {e}"),
                    }
                    .into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome::Expired {
            orders: expired,
            more_due,
        })
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
