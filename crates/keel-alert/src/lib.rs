//! Anomaly detection and alerting for Keel's processes.
//!
//! A node or a gateway samples its own metrics (a p99 latency, an error
//! rate, free disk, replication lag...) every few seconds and feeds them to
//! a [`Monitor`]. Each configured [`Watch`] runs a [`Detector`] over one
//! series; detectors learn a robust baseline (an EWMA level and a MAD
//! scale) or fit a line, rather than compare with a fixed threshold, so a
//! normal daily swing is not an alert and a doubling from a quiet baseline
//! is. Firing detectors open alerts in a bounded [`AlertBook`]; the
//! transitions are returned so the caller can notify, e.g. through a
//! [`webhook`]. [`LogWatch`] is a tracing layer that counts WARN and ERROR
//! events (the caller feeds their rates to rise watches) and reports log
//! messages of a kind never seen before.
//!
//! The detectors, the book and the monitor are pure: time is an argument,
//! nothing reads a clock or does I/O, so every test is deterministic. The
//! webhook notifier is the crate's one piece of I/O.
//!
//! ```
//! use keel_alert::{Change, Monitor, Watch};
//!
//! let mut monitor = Monitor::new(vec![
//!     Watch::p99_latency("p99_s:/v1/orders", "/v1/orders"),
//!     // One detector per peer: the subject is what follows the prefix.
//!     Watch::replication_lag("lag:*", ""),
//! ])
//! .unwrap();
//! // Every 10 s, the sampled values at that instant:
//! for i in 0..100u64 {
//!     let t_ms = 1_700_000_000_000 + i * 10_000;
//!     for tr in monitor.observe(t_ms, &[("p99_s:/v1/orders", 0.02), ("lag:2", 3.0)]) {
//!         assert_eq!(tr.change, Change::Opened); // notify here
//!     }
//! }
//! assert_eq!(monitor.book().response().active.len(), 0);
//! ```
#![deny(missing_docs)]

pub mod book;
pub mod config;
pub mod detector;
pub mod logwatch;
pub mod monitor;
pub mod webhook;

mod shift;
mod trend;

#[cfg(test)]
mod rates;
#[cfg(test)]
mod testkit;

pub use book::{Alert, AlertBook, AlertsResponse, NewAlert, Severity};
pub use detector::{
    BoundConfig, ConfigError, Detector, DetectorConfig, GrowthConfig, Hysteresis, Reading,
    ShiftConfig, State, TimeToLimitConfig,
};
pub use logwatch::{LogNews, LogWatch};
pub use monitor::{Change, Monitor, Transition, Watch};
pub use webhook::{Webhook, WebhookConfig, WebhookError, WebhookStats};
