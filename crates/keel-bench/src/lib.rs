//! `keel bench`: a load generator for a Keel endpoint (closed and open
//! loop, HdrHistogram latencies, errors by problem type, the longest gap
//! without a successful answer) and the side-by-side anchors it is compared
//! with on the same machine: an etcd 3-member cluster and PostgreSQL with a
//! synchronous streaming standby, both started on loopback with fsync on.
//! Beside it, the benchmarks with figures of their own: the state
//! machine's apply throughput ([`apply`]), a local cluster's orders/s
//! ([`cluster`]), the gateway beside nginx ([`gateway`]) and backup and
//! restore ([`backup`]). The `keel` binary only parses their arguments
//! and prints what they return.
//!
//! The pure parts (histogram summary, gap tracking, the open-loop schedule,
//! argument checks, table formatting) do no I/O and are unit-tested; the
//! drivers and anchors are the shell around them.
#![deny(missing_docs)]

pub mod apply;
pub mod backup;
pub mod cluster;
pub mod compare;
pub mod compare_table;
pub mod driver;
pub mod error;
pub mod etcd;
pub mod gap;
pub mod gateway;
pub mod growth;
pub mod hist;
pub mod keel_target;
pub mod local;
pub mod machine;
pub mod postgres;
pub mod procs;
pub mod report;
pub mod run;
pub mod schedule;
pub mod seed;
pub mod target;
pub mod tls;
pub mod workload;

pub use error::BenchError;
