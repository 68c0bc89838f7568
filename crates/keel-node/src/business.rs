//! The business series a shop watches: orders placed, paid, refused (by
//! reason), cancelled and expired, payments refused, and revenue, counted
//! by the leader from the results of the entries it proposed.
//!
//! Counting where the command is proposed, not where it is applied, counts
//! each command once in the cluster: every replica applies every entry,
//! but only one leader proposed it. Summing a series over the nodes gives
//! the cluster's figure across leader changes. A replayed request (the
//! same idempotency key again) is not counted twice.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use keel_domain::{Applied, Outcome};

/// Labels: why a command was refused (the problem `type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// The stable code of the refusal, e.g. `out_of_stock`.
    pub reason: &'static str,
}

/// Labels: a currency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabel {
    /// ISO 4217 code.
    pub currency: String,
}

/// The counters' values, for rates.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusinessTotals {
    /// Orders placed.
    pub placed: u64,
    /// Orders refused, every reason.
    pub refused: u64,
    /// Orders paid.
    pub paid: u64,
    /// Payments refused, every reason.
    pub payments_refused: u64,
}

/// The business counters.
#[derive(Default)]
pub struct BusinessMetrics {
    refused_all: Counter,
    payments_refused_all: Counter,
    placed: Counter,
    refused: Family<Reason, Counter>,
    paid: Counter,
    payments_refused: Family<Reason, Counter>,
    cancelled: Counter,
    expired: Counter,
    revenue_minor: Family<CurrencyLabel, Counter>,
}

impl BusinessMetrics {
    /// Registers the counters under `registry` (prefix `keel`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("orders_placed", "Orders placed", self.placed.clone());
        registry.register(
            "orders_refused",
            "Orders refused, by reason",
            self.refused.clone(),
        );
        registry.register("orders_paid", "Orders paid", self.paid.clone());
        registry.register(
            "payments_refused",
            "Payments refused, by reason",
            self.payments_refused.clone(),
        );
        registry.register(
            "orders_cancelled",
            "Orders cancelled",
            self.cancelled.clone(),
        );
        registry.register(
            "orders_expired",
            "Orders whose reservation expired unpaid",
            self.expired.clone(),
        );
        registry.register(
            "revenue_minor",
            "Totals of paid orders, in minor units, by currency",
            self.revenue_minor.clone(),
        );
    }

    /// The counters now.
    pub fn totals(&self) -> BusinessTotals {
        BusinessTotals {
            placed: self.placed.get(),
            refused: self.refused_all.get(),
            paid: self.paid.get(),
            payments_refused: self.payments_refused_all.get(),
        }
    }

    /// Counts one command's result; `command` is its
    /// [`keel_domain::Command::name`].
    pub fn observe(&self, command: &str, applied: &Applied) {
        if applied.replayed {
            return;
        }
        match (command, &applied.result) {
            ("place_order", Ok(_)) => {
                self.placed.inc();
            }
            ("place_order", Err(e)) => {
                self.refused
                    .get_or_create(&Reason { reason: e.code() })
                    .inc();
            }
            ("pay_order", Ok(Outcome::Order(o))) => {
                self.paid.inc();
                // A paid total is positive (the state machine refuses
                // anything else); a negative one would be counted as 0.
                let minor = u64::try_from(o.total.0).unwrap_or(0);
                self.revenue_minor
                    .get_or_create(&CurrencyLabel {
                        currency: o.currency.to_string(),
                    })
                    .inc_by(minor);
            }
            ("pay_order", Err(e)) => {
                self.payments_refused_all.inc();
                self.payments_refused
                    .get_or_create(&Reason { reason: e.code() })
                    .inc();
            }
            ("cancel_order", Ok(_)) => {
                self.cancelled.inc();
            }
            ("expire_due", Ok(Outcome::Expired { orders, .. })) => {
                self.expired.inc_by(orders.len() as u64);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use keel_domain::DomainError;

    use super::*;

    fn rendered(b: &BusinessMetrics) -> String {
        let mut r = Registry::with_prefix("keel");
        b.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn outcomes_are_counted_once_and_replays_not_at_all() {
        let b = BusinessMetrics::default();
        let ok = |o: Outcome| Applied {
            result: Ok(o),
            replayed: false,
        };
        let refused = Applied {
            result: Err(DomainError::OutOfStock { lines: vec![] }),
            replayed: false,
        };
        b.observe("place_order", &refused);
        b.observe(
            "expire_due",
            &ok(Outcome::Expired {
                orders: vec![keel_domain::OrderId(1), keel_domain::OrderId(2)],
                more_due: false,
            }),
        );
        let replay = Applied {
            replayed: true,
            ..refused.clone()
        };
        b.observe("place_order", &replay);
        let text = rendered(&b);
        assert!(
            text.contains("keel_orders_refused_total{reason=\"out_of_stock\"} 1"),
            "{text}"
        );
        assert!(text.contains("keel_orders_expired_total 2"), "{text}");
    }
}
