//! `keel chaos`: run a workload against a cluster while faults are injected,
//! record what every client saw, and judge the record.
//!
//! This crate's checkers are a pure library: they take a recorded
//! [`History`] (and, for the invariants, the state read back at the end) as
//! plain data and return [`Finding`]s. They do no I/O, read no clock and draw
//! no randomness, so a failing run is re-judged from its history file alone.
//!
//! - [`history`]: the record of a run, one [`Op`] per request, with its
//!   real-time interval and outcome; JSON lines on disk.
//! - [`linearizable`]: each SKU's available stock and each order's status
//!   checked for linearizability (todc-utils' Wing & Gong checker over
//!   Keel's models).
//! - [`invariants`]: the end-state checks: acknowledged orders exist, unknown
//!   outcomes applied at most once, no oversell, money conserved, replicas
//!   agree.
//! - [`terms`]: no node's Raft term ever goes back, restarts included (a
//!   lost vote).
//! - [`finding`]: the one result type all of them report in.
//!
//! Around the checkers, the imperative shell of a run: [`nemesis`] (faults
//! on real processes, on a seeded schedule), [`workload`] (customers through
//! the public API, recorded as ops) and [`run`] (the whole run and its
//! report, with availability per fault), [`term_sampler`] (each node's
//! term through the run) and [`across`] (unavailability per nemesis over
//! many runs).
//!
//! What produces a history (the cluster harness, the nemesis that injects
//! faults, the workload and its recorder) belongs beside these as modules of
//! its own; the checkers depend on none of it.
#![deny(missing_docs)]

pub mod across;
mod error;
pub mod finding;
pub mod history;
pub mod invariants;
pub mod linearizable;
pub mod nemesis;
pub mod run;
pub mod term_sampler;
pub mod terms;
pub mod workload;

pub use error::ChaosError;
pub use finding::{Finding, DETAIL_EXAMPLES_MAX};
pub use history::{
    History, HistoryError, Op, OpKind, OpResult, Outcome, HISTORY_OPS_MAX, HISTORY_VERSION,
};
pub use invariants::{check_invariants, FinalState};
pub use linearizable::{check_all, check_order, check_stock, Limits, Verdict};
