//! Process and host metrics of a Keel node or gateway, on Linux.
//!
//! A [`HostSampler`] reads what the kernel says about this process (CPU
//! time, resident memory, open file descriptors and their limit, storage
//! I/O, uptime), the host (CPU busy share, memory, load) and the data
//! directory (its filesystem's space and, when one can be found, its block
//! device's I/O) into a [`HostSample`]. [`HostMetrics`] exports the latest
//! sample as Prometheus series; [`HostSummary`] is its short JSON form for
//! a dashboard.
//!
//! Everything is read from `/proc` and with `stat`/`statvfs`; the parsers
//! ([`parse`]) are pure functions of the text. What this machine cannot
//! tell is `None`, never a zero: an operator must be able to tell "no free
//! space" from "unknown". The crate depends on no Keel crate but
//! `keel-protocol`, and does nothing async; the caller decides when to
//! sample (at scrape time, or on a timer).
#![deny(missing_docs)]

mod disk;
mod error;
mod metrics;
pub mod parse;
mod read;
mod sampler;
mod summary;

pub use error::{ParseError, ReadError};
pub use metrics::{HostMetrics, REGISTRY_PREFIX};
pub use read::{OPEN_FDS_COUNTED_MAX, PROC_FILE_BYTES_MAX};
pub use sampler::{HostSample, HostSampler};
pub use summary::HostSummary;
