//! The demo's figures, computed from what the shoppers recorded and the
//! state read back: orders and payments acknowledged, refusals, errors by
//! kind, throughput, the longest time without a success and how the flash
//! sale went. Pure: data in, figures out.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_chaos::{FinalState, History, Op, OpKind, OpResult, Outcome};
use keel_domain::Sku;

use crate::script::Kill;

/// The longest time no request succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// How long it lasted.
    pub longest: Duration,
    /// When it ended, since the shopping began.
    pub ended_at: Duration,
}

/// How the flash sale went, from the state read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashSale {
    /// Units paid for.
    pub sold: u64,
    /// Units held by orders not paid for.
    pub reserved: u64,
    /// Units there were.
    pub stock: u64,
}

/// What the report prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// Places acknowledged.
    pub orders: u64,
    /// Pays acknowledged.
    pub payments: u64,
    /// Places refused for want of stock.
    pub out_of_stock: u64,
    /// Requests the client saw fail for lack of service, by kind.
    pub errors: BTreeMap<String, u64>,
    /// How long the shopping lasted.
    pub elapsed: Duration,
    /// The leader kill, if it happened.
    pub kill: Option<Kill>,
    /// The longest time without a success.
    pub gap: Gap,
    /// The flash sale, if its SKU was read back.
    pub flash: Option<FlashSale>,
}

impl Figures {
    /// The figures of a run of `elapsed` recorded in `history`, with the
    /// state read back after it and the flash sale's SKU and stock.
    pub fn of(
        history: &History,
        elapsed: Duration,
        kill: Option<Kill>,
        state: Option<&FinalState>,
        flash: (&Sku, u64),
    ) -> Self {
        let ops = history.ops();
        let count = |f: fn(&Op) -> bool| ops.iter().filter(|op| f(op)).count() as u64;
        Self {
            orders: count(|op| matches!(op.outcome, Outcome::Ok(OpResult::Placed { .. }))),
            payments: count(|op| {
                matches!(op.kind, OpKind::Pay { .. }) && matches!(op.outcome, Outcome::Ok(_))
            }),
            out_of_stock: count(
                |op| matches!(&op.outcome, Outcome::Fail(k) if k == keel_chaos::history::fail::OUT_OF_STOCK),
            ),
            errors: errors_by_kind(ops),
            elapsed,
            kill,
            gap: longest_gap(ops, elapsed),
            flash: state.and_then(|s| flash_sale(s, flash.0, flash.1)),
        }
    }

    /// Orders acknowledged per second of shopping.
    pub fn orders_per_s(&self) -> f64 {
        self.orders as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Writes (places and pays) acknowledged per second of shopping.
    pub fn writes_per_s(&self) -> f64 {
        (self.orders + self.payments) as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Requests that failed for lack of service, by kind: a refusal's problem
/// type (up to any `:` detail), or `unknown` for a lost answer.
fn errors_by_kind(ops: &[Op]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_error()) {
        let kind = match &op.outcome {
            Outcome::Fail(k) => k.split(':').next().unwrap_or(k).to_owned(),
            _ => "unknown".to_owned(),
        };
        *m.entry(kind).or_insert(0) += 1;
    }
    m
}

/// The longest interval between successive successful answers, counted
/// from the start of shopping and closed by its end (`elapsed`), so a
/// cluster that never answered again shows a gap to the end.
pub fn longest_gap(ops: &[Op], elapsed: Duration) -> Gap {
    let mut ends: Vec<u64> = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .map(|op| op.complete_ns)
        .collect();
    ends.sort_unstable();
    let end_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let mut last = 0;
    let mut gap = Gap {
        longest: Duration::ZERO,
        ended_at: Duration::ZERO,
    };
    for at in ends.into_iter().chain([end_ns]) {
        let length = Duration::from_nanos(at.saturating_sub(last));
        if length > gap.longest {
            gap = Gap {
                longest: length,
                ended_at: Duration::from_nanos(at),
            };
        }
        last = last.max(at);
    }
    gap
}

fn flash_sale(state: &FinalState, sku: &Sku, stock: u64) -> Option<FlashSale> {
    let s = state.stock.iter().find(|s| &s.sku == sku)?;
    Some(FlashSale {
        sold: s.sold,
        reserved: s.reserved,
        stock,
    })
}

#[cfg(test)]
mod tests {
    use keel_chaos::history::fail;
    use keel_domain::{AccountId, OrderId, RequestId};

    use super::*;

    fn op(invoke_ms: u64, complete_ms: u64, outcome: Outcome) -> Op {
        Op {
            process: 0,
            invoke_ns: invoke_ms * 1_000_000,
            complete_ns: complete_ms * 1_000_000,
            kind: OpKind::PlaceOrder {
                customer: AccountId::new("c").expect("valid"),
                sku: Sku::new("A").expect("valid"),
                qty: 1,
                key: RequestId::new(format!("k{invoke_ms}")).expect("valid"),
            },
            outcome,
        }
    }

    fn ok(order: u64) -> Outcome {
        Outcome::Ok(OpResult::Placed {
            order: OrderId(order),
            qty: 1,
        })
    }

    #[test]
    fn the_longest_gap_is_between_successes_and_counts_from_the_start() {
        let ops = [
            op(0, 100, ok(1)),
            op(90, 120, ok(2)),
            // Failures end no gap.
            op(130, 200, Outcome::Unknown("lost".into())),
            op(125, 700, ok(3)),
            op(690, 710, ok(4)),
        ];
        let gap = longest_gap(&ops, Duration::from_millis(800));
        assert_eq!(gap.longest, Duration::from_millis(580));
        assert_eq!(gap.ended_at, Duration::from_millis(700));
        // A slow first answer is a gap from the start.
        let gap = longest_gap(&ops[3..], Duration::from_millis(800));
        assert_eq!(gap.longest, Duration::from_millis(700));
    }

    #[test]
    fn a_cluster_that_never_answers_again_has_a_gap_to_the_end() {
        let ops = [op(0, 100, ok(1))];
        let gap = longest_gap(&ops, Duration::from_secs(5));
        assert_eq!(gap.longest, Duration::from_millis(4_900));
        assert_eq!(gap.ended_at, Duration::from_secs(5));
        let none = longest_gap(&[], Duration::from_secs(2));
        assert_eq!(none.longest, Duration::from_secs(2));
    }

    #[test]
    fn refusals_are_counted_apart_from_errors() {
        let ops = vec![
            op(0, 1, ok(1)),
            op(1, 2, Outcome::Fail(fail::OUT_OF_STOCK.into())),
            op(2, 3, Outcome::Fail("not_sent: connection refused".into())),
            op(3, 4, Outcome::Unknown("504 indeterminate".into())),
            op(4, 5, Outcome::Fail(fail::UNAVAILABLE.into())),
        ];
        let history = History::from_ops(ops).expect("well formed");
        let sku = Sku::new("A").expect("valid");
        let f = Figures::of(&history, Duration::from_secs(1), None, None, (&sku, 1));
        assert_eq!((f.orders, f.payments, f.out_of_stock), (1, 0, 1));
        let kinds: Vec<(&str, u64)> = f.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            kinds,
            vec![("not_sent", 1), ("unavailable", 1), ("unknown", 1)]
        );
        assert_eq!(f.orders_per_s(), 1.0);
    }
}
