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
//! [`webhook`]. [`LogWatch`] is a tracing layer that turns WARN and ERROR
//! events into rates and reports log messages never seen before.
//!
//! The detectors, the book and the monitor are pure: time is an argument,
//! nothing reads a clock or does I/O, so every test is deterministic. The
//! webhook notifier is the crate's one piece of I/O.
#![deny(missing_docs)]

pub mod detector;
mod shift;
mod trend;

#[cfg(test)]
mod rates;
#[cfg(test)]
mod testkit;

pub use detector::{
    BoundConfig, ConfigError, Detector, DetectorConfig, GrowthConfig, Hysteresis, Reading,
    ShiftConfig, State, TimeToLimitConfig,
};
pub mod book;
pub mod logwatch;
pub mod monitor;

pub use book::{Alert, AlertBook, AlertsResponse, NewAlert, Severity};
pub use logwatch::{LogNews, LogWatch};
pub use monitor::{Change, Monitor, Transition, Watch};
pub mod webhook;

pub use webhook::{Webhook, WebhookConfig, WebhookError, WebhookStats};
