//! The recorded history of a chaos run: one [`Op`] per client request, with
//! the real-time interval in which it was in flight and what the client
//! learnt of its outcome. The checkers ([`crate::linearizable`],
//! [`crate::invariants`]) judge a run from this record alone.
//!
//! On disk a history is JSON lines: a [`Header`] line naming the format and
//! its version, then one op per line, in any order (the checkers order ops by
//! their intervals, not by their position). Each op is checked as it is read
//! ([`Op::check`]), so a history in memory is always well formed.

use std::fmt;
use std::io::{BufRead, Read, Write};

use keel_domain::{AccountId, OrderId, OrderStatus, RequestId, Sku};
use serde::{Deserialize, Serialize};

/// Most ops one history keeps in memory. A chaos run of an hour at a few
/// hundred requests per second stays below it, and a million ops of about
/// 200 bytes each is a few hundred MiB: more than that is a run to split,
/// not a file to load on a 24 GiB machine that also runs the cluster.
pub const HISTORY_OPS_MAX: usize = 1_000_000;

/// Longest line the reader accepts. An op is a few hundred bytes even with
/// 128-byte keys and 64-byte ids; a longer line is a corrupt or foreign file,
/// refused before it is buffered whole.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// The `format` of a history file's header line.
pub const HISTORY_FORMAT: &str = "keel-chaos-history";

/// The version of the history schema this crate writes and reads. Bump it on
/// any change a reader of the old version would misread.
pub const HISTORY_VERSION: u32 = 1;

/// Failure codes (the API's problem `type`s) the checkers draw conclusions
/// from. Any other code in [`Outcome::Fail`] still means "not applied" but
/// says nothing about the state, so the linearizability checkers ignore it.
pub mod fail {
    /// A place found less available stock than it asked for.
    pub const OUT_OF_STOCK: &str = "out_of_stock";
    /// The order (or another named entity) did not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// The order's status has no edge for the action (`can_become`).
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// Pay found the order reserved but the customer's balance short.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// 503: the cluster applied nothing (docs/API.md).
    pub const UNAVAILABLE: &str = "unavailable";
    /// A field was refused before anything was proposed.
    pub const VALIDATION: &str = "validation";
}

/// Errors of building, reading or writing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// More ops than [`HISTORY_OPS_MAX`]: refused rather than grown without
    /// bound.
    #[error("history holds at most {max} ops; split the run or raise HISTORY_OPS_MAX")]
    TooManyOps {
        /// The limit that was reached.
        max: usize,
    },
    /// An op that cannot have happened as recorded.
    #[error("op {index}: {reason}")]
    InvalidOp {
        /// Position of the op (0-based) in the history or file.
        index: usize,
        /// Which rule it breaks.
        reason: String,
    },
    /// A line longer than [`LINE_BYTES_MAX`].
    #[error("line {line}: longer than {max} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A line that is not the JSON of an op (or of the header).
    #[error("line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// The file does not start with this crate's header, or with another
    /// version of it.
    #[error("not a {HISTORY_FORMAT} v{HISTORY_VERSION} file: {found}")]
    BadHeader {
        /// What the first line said instead.
        found: String,
    },
    /// The underlying reader or writer failed.
    #[error("history i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The first line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`HISTORY_FORMAT`].
    pub format: String,
    /// The schema version, [`HISTORY_VERSION`] for files this crate writes.
    pub version: u32,
}

impl Header {
    /// The header this crate writes.
    pub fn current() -> Self {
        Self {
            format: HISTORY_FORMAT.to_owned(),
            version: HISTORY_VERSION,
        }
    }
}

/// What a client asked for. Every write carries its idempotency key: a
/// history uses each key for one op only (the client's own retries of a
/// request happen inside that op's interval), which is what lets the
/// checkers treat two ops as two requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpKind {
    /// `POST /v1/orders` with one line: reserve `qty` of `sku`.
    PlaceOrder {
        /// The buying customer.
        customer: AccountId,
        /// The one SKU ordered.
        sku: Sku,
        /// Units ordered.
        qty: u64,
        /// The idempotency key.
        key: RequestId,
    },
    /// Pay a reserved order: the reservation becomes a sale.
    Pay {
        /// The order.
        order: OrderId,
        /// The idempotency key.
        key: RequestId,
    },
    /// Cancel a reserved order: its units return to `available`.
    Cancel {
        /// The order.
        order: OrderId,
        /// The idempotency key.
        key: RequestId,
    },
    /// A linearizable read of a product's available stock.
    ReadStock {
        /// The product.
        sku: Sku,
    },
    /// A linearizable read of an order's status.
    ReadOrder {
        /// The order.
        order: OrderId,
    },
}

impl OpKind {
    /// The idempotency key of a write, `None` for reads.
    pub fn key(&self) -> Option<&RequestId> {
        match self {
            OpKind::PlaceOrder { key, .. }
            | OpKind::Pay { key, .. }
            | OpKind::Cancel { key, .. } => Some(key),
            OpKind::ReadStock { .. } | OpKind::ReadOrder { .. } => None,
        }
    }
}

/// What a successful op returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpResult {
    /// A place's answer: the new order's id and the units it reserved.
    Placed {
        /// The id the state machine assigned.
        order: OrderId,
        /// Units reserved (the order's quantity of the SKU).
        qty: u64,
    },
    /// A pay's or cancel's answer: the order's status after it.
    Status {
        /// The status the order moved to.
        status: OrderStatus,
    },
    /// A stock read's answer.
    Stock {
        /// `on_hand - reserved` at the read.
        available: u64,
    },
    /// An order read's answer.
    Order {
        /// The order's status, `None` when it was not found.
        status: Option<OrderStatus>,
    },
}

/// What the client learnt of an op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied, with this answer.
    Ok(OpResult),
    /// Definitely not applied, with the problem `type` (see [`fail`]). The
    /// recorder must put only answers that guarantee "nothing changed" here
    /// (4xx refusals, 503 `unavailable`); anything else is `Unknown`.
    Fail(String),
    /// Timed out or indeterminate (504, 500, lost connection): it may have
    /// taken effect at any time after its invocation, or never.
    Unknown(String),
}

/// One client request as observed by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client (logical thread) that made the request.
    pub process: u64,
    /// When the request was sent, ns since the run started.
    pub invoke_ns: u64,
    /// When the answer arrived (or the client gave up), ns since the run
    /// started. The op took effect, if at all, inside `[invoke_ns,
    /// complete_ns]`, except for `Unknown` ops, which may take effect later.
    pub complete_ns: u64,
    /// What was asked.
    pub kind: OpKind,
    /// What was learnt.
    pub outcome: Outcome,
}

impl Op {
    /// Says why this op cannot have happened as recorded, if it cannot: an
    /// interval that ends before it starts, or a result of another op kind.
    pub fn check(&self) -> Result<(), String> {
        if self.complete_ns < self.invoke_ns {
            return Err(format!(
                "completes at {} ns, before its invocation at {} ns",
                self.complete_ns, self.invoke_ns
            ));
        }
        let Outcome::Ok(result) = &self.outcome else {
            return Ok(());
        };
        let fits = matches!(
            (&self.kind, result),
            (OpKind::PlaceOrder { .. }, OpResult::Placed { .. })
                | (OpKind::Pay { .. }, OpResult::Status { .. })
                | (OpKind::Cancel { .. }, OpResult::Status { .. })
                | (OpKind::ReadStock { .. }, OpResult::Stock { .. })
                | (OpKind::ReadOrder { .. }, OpResult::Order { .. })
        );
        if fits {
            Ok(())
        } else {
            Err(format!("result {result:?} does not answer {:?}", self.kind))
        }
    }
}

impl Op {
    /// Whether the client saw this op fail for lack of service: lost, or
    /// refused for a reason other than the state's (a domain refusal such as
    /// out of stock is an answer, and an order read that finds none too).
    pub fn is_error(&self) -> bool {
        match &self.outcome {
            Outcome::Ok(_) => false,
            Outcome::Unknown(_) => true,
            Outcome::Fail(kind) => {
                let refusal = [
                    fail::OUT_OF_STOCK,
                    fail::INVALID_TRANSITION,
                    fail::INSUFFICIENT_FUNDS,
                ]
                .contains(&kind.as_str());
                let absent =
                    kind == fail::NOT_FOUND && matches!(self.kind, OpKind::ReadOrder { .. });
                !(refusal || absent)
            }
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::PlaceOrder {
                customer, sku, qty, ..
            } => write!(f, "place {qty} x {sku} for {customer}"),
            OpKind::Pay { order, .. } => write!(f, "pay order {order}"),
            OpKind::Cancel { order, .. } => write!(f, "cancel order {order}"),
            OpKind::ReadStock { sku } => write!(f, "read stock of {sku}"),
            OpKind::ReadOrder { order } => write!(f, "read order {order}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(OpResult::Placed { order, qty }) => {
                write!(f, "placed order {order} ({qty})")
            }
            Outcome::Ok(OpResult::Status { status }) => write!(f, "{}", status.as_str()),
            Outcome::Ok(OpResult::Stock { available }) => write!(f, "available {available}"),
            Outcome::Ok(OpResult::Order { status: Some(s) }) => write!(f, "{}", s.as_str()),
            Outcome::Ok(OpResult::Order { status: None }) => f.write_str("not found"),
            Outcome::Fail(kind) => write!(f, "failed {kind}"),
            Outcome::Unknown(reason) => write!(f, "unknown ({reason})"),
        }
    }
}

impl fmt::Display for Op {
    /// One line for reports: `p3 [1200..1500] read stock of A -> available 5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p{} [{}..{}] {} -> {}",
            self.process, self.invoke_ns, self.complete_ns, self.kind, self.outcome
        )
    }
}

/// A whole run's ops, bounded by [`HISTORY_OPS_MAX`], each well formed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history of these ops, checked one by one.
    pub fn from_ops(ops: Vec<Op>) -> Result<Self, HistoryError> {
        if ops.len() > HISTORY_OPS_MAX {
            return Err(HistoryError::TooManyOps {
                max: HISTORY_OPS_MAX,
            });
        }
        for (index, op) in ops.iter().enumerate() {
            op.check()
                .map_err(|reason| HistoryError::InvalidOp { index, reason })?;
        }
        Ok(Self { ops })
    }

    /// Appends an op, refusing a malformed one or one past the limit.
    pub fn push(&mut self, op: Op) -> Result<(), HistoryError> {
        if self.ops.len() >= HISTORY_OPS_MAX {
            return Err(HistoryError::TooManyOps {
                max: HISTORY_OPS_MAX,
            });
        }
        op.check().map_err(|reason| HistoryError::InvalidOp {
            index: self.ops.len(),
            reason,
        })?;
        self.ops.push(op);
        Ok(())
    }

    /// The ops, in the order they were recorded.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when no op was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Writes the header line and one JSON line per op.
    pub fn write_jsonl<W: Write>(&self, mut w: W) -> Result<(), HistoryError> {
        write_json_line(&mut w, &Header::current())?;
        for op in &self.ops {
            write_json_line(&mut w, op)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads what [`History::write_jsonl`] wrote. Blank lines are skipped;
    /// anything else that is not an op is an error naming its line.
    pub fn read_jsonl<R: BufRead>(mut r: R) -> Result<Self, HistoryError> {
        let mut history = History::new();
        let mut header_seen = false;
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            line += 1;
            // One byte past the limit tells a long line from one that fits.
            let limit = (LINE_BYTES_MAX + 1) as u64;
            let n = r.by_ref().take(limit).read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if text.len() > LINE_BYTES_MAX {
                return Err(HistoryError::LineTooLong {
                    line,
                    max: LINE_BYTES_MAX,
                });
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if !header_seen {
                check_header(text)?;
                header_seen = true;
                continue;
            }
            let op: Op = serde_json::from_slice(text)
                .map_err(|source| HistoryError::Parse { line, source })?;
            history.push(op)?;
        }
        if !header_seen {
            return Err(HistoryError::BadHeader {
                found: "an empty file".to_owned(),
            });
        }
        Ok(history)
    }
}

fn write_json_line<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), HistoryError> {
    serde_json::to_writer(&mut *w, value).map_err(std::io::Error::from)?;
    w.write_all(b"\n")?;
    Ok(())
}

fn check_header(text: &[u8]) -> Result<(), HistoryError> {
    let found = || String::from_utf8_lossy(text).chars().take(120).collect();
    match serde_json::from_slice::<Header>(text) {
        Ok(h) if h == Header::current() => Ok(()),
        _ => Err(HistoryError::BadHeader { found: found() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::new(s).expect("valid sku")
    }

    fn place(i: u64) -> Op {
        Op {
            process: i % 3,
            invoke_ns: 10 * i,
            complete_ns: 10 * i + 5,
            kind: OpKind::PlaceOrder {
                customer: AccountId::new("c1").expect("valid account"),
                sku: sku("A-1"),
                qty: i + 1,
                key: RequestId::new(format!("k{i}")).expect("valid key"),
            },
            outcome: Outcome::Ok(OpResult::Placed {
                order: OrderId(i + 1),
                qty: i + 1,
            }),
        }
    }

    fn sample() -> History {
        let mut h = History::new();
        h.push(place(0)).expect("fits");
        h.push(Op {
            process: 1,
            invoke_ns: 3,
            complete_ns: 40,
            kind: OpKind::ReadOrder { order: OrderId(1) },
            outcome: Outcome::Ok(OpResult::Order { status: None }),
        })
        .expect("fits");
        h.push(Op {
            process: 2,
            invoke_ns: 7,
            complete_ns: 90,
            kind: OpKind::Pay {
                order: OrderId(1),
                key: RequestId::new("pay-1").expect("valid key"),
            },
            outcome: Outcome::Unknown("timeout".into()),
        })
        .expect("fits");
        h.push(Op {
            process: 0,
            invoke_ns: 20,
            complete_ns: 30,
            kind: OpKind::ReadStock { sku: sku("A-1") },
            outcome: Outcome::Fail(fail::UNAVAILABLE.into()),
        })
        .expect("fits");
        h
    }

    #[test]
    fn jsonl_round_trips() {
        let h = sample();
        let mut out = Vec::new();
        h.write_jsonl(&mut out).expect("writes to memory");
        let text = String::from_utf8(out.clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1 + h.len());
        assert!(text.starts_with(r#"{"format":"keel-chaos-history","version":1}"#));
        let back = History::read_jsonl(out.as_slice()).expect("reads back");
        assert_eq!(back, h);
    }

    #[test]
    fn op_json_shape_is_stable() {
        let json = serde_json::to_string(&place(0)).expect("serialises");
        assert_eq!(
            json,
            r#"{"process":0,"invoke_ns":0,"complete_ns":5,"kind":{"type":"place_order","customer":"c1","sku":"A-1","qty":1,"key":"k0"},"outcome":{"ok":{"type":"placed","order":1,"qty":1}}}"#
        );
    }

    #[test]
    fn reader_refuses_missing_or_foreign_header() {
        assert!(matches!(
            History::read_jsonl(&b""[..]),
            Err(HistoryError::BadHeader { .. })
        ));
        let foreign = br#"{"format":"keel-chaos-history","version":2}"#;
        assert!(matches!(
            History::read_jsonl(&foreign[..]),
            Err(HistoryError::BadHeader { .. })
        ));
    }

    #[test]
    fn reader_names_the_bad_line() {
        let text = format!(
            "{}\n{}\n\nnot json\n",
            serde_json::to_string(&Header::current()).expect("serialises"),
            serde_json::to_string(&place(0)).expect("serialises")
        );
        match History::read_jsonl(text.as_bytes()) {
            Err(HistoryError::Parse { line, .. }) => assert_eq!(line, 4),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn reader_refuses_invalid_ids() {
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string(&Header::current()).expect("serialises"),
            r#"{"process":0,"invoke_ns":0,"complete_ns":5,"kind":{"type":"read_stock","sku":"no spaces"},"outcome":{"unknown":"timeout"}}"#
        );
        assert!(matches!(
            History::read_jsonl(text.as_bytes()),
            Err(HistoryError::Parse { line: 2, .. })
        ));
    }

    #[test]
    fn reader_refuses_overlong_lines() {
        let mut text = serde_json::to_string(&Header::current()).expect("serialises");
        text.push('\n');
        text.push_str(&"x".repeat(LINE_BYTES_MAX + 10));
        assert!(matches!(
            History::read_jsonl(text.as_bytes()),
            Err(HistoryError::LineTooLong { line: 2, .. })
        ));
    }

    #[test]
    fn push_refuses_malformed_ops() {
        let mut h = History::new();
        let mut backwards = place(1);
        backwards.complete_ns = backwards.invoke_ns - 1;
        assert!(matches!(
            h.push(backwards),
            Err(HistoryError::InvalidOp { index: 0, .. })
        ));
        let mut wrong_result = place(1);
        wrong_result.outcome = Outcome::Ok(OpResult::Stock { available: 3 });
        assert!(matches!(
            h.push(wrong_result),
            Err(HistoryError::InvalidOp { .. })
        ));
        assert!(h.is_empty());
    }

    #[test]
    fn errors_are_lost_or_unserved_requests_not_refusals() {
        let with = |outcome: Outcome| Op {
            outcome,
            ..place(0)
        };
        assert!(with(Outcome::Unknown("timeout".into())).is_error());
        assert!(with(Outcome::Fail(fail::UNAVAILABLE.into())).is_error());
        assert!(!with(Outcome::Fail(fail::OUT_OF_STOCK.into())).is_error());
        assert!(!place(0).is_error());
        let read = |outcome: Outcome| Op {
            kind: OpKind::ReadOrder { order: OrderId(1) },
            outcome,
            ..place(0)
        };
        assert!(!read(Outcome::Fail(fail::NOT_FOUND.into())).is_error());
        assert!(with(Outcome::Fail(fail::NOT_FOUND.into())).is_error());
    }

    #[test]
    fn history_is_bounded() {
        let op = Op {
            process: 0,
            invoke_ns: 0,
            complete_ns: 0,
            kind: OpKind::ReadStock { sku: sku("A") },
            outcome: Outcome::Unknown("timeout".into()),
        };
        let ops = vec![op.clone(); HISTORY_OPS_MAX];
        let mut h = History::from_ops(ops).expect("exactly the limit fits");
        assert!(matches!(
            h.push(op),
            Err(HistoryError::TooManyOps {
                max: HISTORY_OPS_MAX
            })
        ));
    }
}
