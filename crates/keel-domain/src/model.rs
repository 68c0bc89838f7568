//! The stored entities and the views queries return. Records are what the
//! tables hold (encoded by [`crate::codec`]); they are also what the API shows,
//! so one type serves both and cannot drift.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ids::{AccountId, Currency, OrderId, ProductName, Sku};
use crate::money::Minor;

/// A catalogue entry with its stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    /// The product's SKU.
    pub sku: Sku,
    /// Display name.
    pub name: ProductName,
    /// Price per unit in minor units, always > 0.
    pub price: Minor,
    /// The one currency the product is sold in.
    pub currency: Currency,
    /// Inactive products cannot be ordered.
    pub active: bool,
    /// Stock levels and the ledger that explains them.
    pub stock: Stock,
}

/// Stock of one SKU. `reserved <= on_hand` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stock {
    /// Units physically held (sold units have left).
    pub on_hand: u64,
    /// Units held for orders placed but not yet paid.
    pub reserved: u64,
    /// The movements that produced `on_hand` (invariant 2).
    pub ledger: StockLedger,
}

impl Stock {
    /// Units that can still be reserved.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// Per-SKU movement counters. `on_hand` must always equal
/// `restocked + returned + set_added - sold - set_removed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockLedger {
    /// Units added by `Restock`.
    pub restocked: u64,
    /// Units that left with paid orders.
    pub sold: u64,
    /// Units returned by refunds with restock.
    pub returned: u64,
    /// Units added by `SetStock` raising the count.
    pub set_added: u64,
    /// Units removed by `SetStock` lowering the count.
    pub set_removed: u64,
}

/// What an account is for; decides which balances may go negative.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A shopper; balance never below zero.
    Customer,
    /// The shop; receives payments, pays refunds. One per currency.
    Merchant,
    /// The outside world; source of deposits, runs negative. One per currency.
    External,
}

impl AccountKind {
    /// The kind as its API name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Merchant => "merchant",
            AccountKind::External => "external",
        }
    }
}

/// An account with its balance in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    /// The account's id.
    pub id: AccountId,
    /// Customer, merchant or external.
    pub kind: AccountKind,
    /// The one currency of its balance.
    pub currency: Currency,
    /// Balance in minor units.
    pub balance: Minor,
}

/// Where an order is in its lifecycle (docs/DOMAIN.md).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Stock is held; waiting for payment or expiry.
    Reserved,
    /// Paid; stock has left `on_hand`.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// At the customer.
    Delivered,
    /// Cancelled before payment; reservation released.
    Cancelled,
    /// Not paid before `expires_at`; reservation released.
    Expired,
    /// Money returned after payment.
    Refunded,
}

impl OrderStatus {
    /// Every status, in a fixed order (for summaries).
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Reserved,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
        OrderStatus::Refunded,
    ];

    /// The status as its API name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Reserved => "reserved",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// True when the lifecycle has an edge `self -> next`.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Reserved, Paid)
                | (Reserved, Cancelled)
                | (Reserved, Expired)
                | (Paid, Shipped)
                | (Paid, Refunded)
                | (Shipped, Delivered)
                | (Shipped, Refunded)
        )
    }

    /// True for statuses in which the units have been sold (left `on_hand`).
    pub fn is_sold(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Shipped
                | OrderStatus::Delivered
                | OrderStatus::Refunded
        )
    }
}

/// One line of a placed order, with the price captured at placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    /// The product.
    pub sku: Sku,
    /// Units, 1 to [`crate::command::LINE_QTY_MAX`].
    pub qty: u64,
    /// Price per unit when the order was placed.
    pub unit_price: Minor,
}

/// A status change and the leader time it happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The new status.
    pub status: OrderStatus,
    /// Leader time, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    /// Dense, increasing id assigned at placement.
    pub id: OrderId,
    /// The buying customer.
    pub customer: AccountId,
    /// The merchant account that is paid (the merchant of the currency).
    pub merchant: AccountId,
    /// 1 to [`crate::command::ORDER_LINES_MAX`] lines.
    pub lines: Vec<OrderLine>,
    /// Sum of `qty * unit_price`.
    pub total: Minor,
    /// The order's one currency.
    pub currency: Currency,
    /// Current status.
    pub status: OrderStatus,
    /// Leader time of placement (ms).
    pub created_at_ms: u64,
    /// Leader time after which an unpaid order expires (ms).
    pub expires_at_ms: u64,
    /// True when a refund returned the units to stock.
    pub restocked: bool,
    /// Every status the order has had, oldest first.
    pub history: Vec<StatusChange>,
}

/// Aggregates kept up to date by every command, so that a conservation check
/// from outside costs one read. The invariant checker recomputes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// Number of products.
    pub products: u64,
    /// Number of accounts.
    pub accounts: u64,
    /// Orders per status (every status present, zero included).
    pub orders_by_status: BTreeMap<OrderStatus, u64>,
    /// Sum of `on_hand` over all SKUs.
    pub units_on_hand: u64,
    /// Sum of `reserved` over all SKUs.
    pub units_reserved: u64,
    /// Sum of the ledgers' `restocked`.
    pub units_restocked: u64,
    /// Sum of the ledgers' `sold`.
    pub units_sold: u64,
    /// Sum of the ledgers' `returned`.
    pub units_returned: u64,
    /// Sum of balances per currency, moved by every balance change; zero
    /// for each currency when money is conserved.
    pub balance_sum_by_currency: BTreeMap<Currency, i128>,
    /// Money that entered from outside (deposits) per currency: what the
    /// customer and merchant balances of that currency must add up to.
    pub deposits_by_currency: BTreeMap<Currency, i128>,
    /// Sum of order totals of sold orders (paid and after) per currency.
    pub sales_by_currency: BTreeMap<Currency, i128>,
    /// The id the next order will get.
    pub next_order_id: u64,
    /// The state machine's clock: the latest leader time applied (ms).
    pub clock_ms: u64,
}
