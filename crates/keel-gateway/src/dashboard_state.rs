//! What the dashboard's sampler keeps between requests (the ring of
//! points, the backup panel, the gateway's own detectors), in a module of
//! its own so the gateway's shared state can hold it without depending on
//! the dashboard's handlers.

use std::sync::Mutex;

use crate::backup_view::{BackupRepo, BackupsView};
use crate::series::{Point, Ring};

/// What the sampler keeps between requests, shared by every worker.
pub struct DashboardState {
    pub(crate) ring: Mutex<Ring>,
    pub(crate) backups: Mutex<Option<BackupsView>>,
    pub(crate) repo: Option<BackupRepo>,
    /// The gateway's own detectors and the alerts they opened.
    pub(crate) monitor: Mutex<keel_alert::Monitor>,
    /// Samples taken, to feed the detectors every [`DETECT_EVERY_SAMPLES`].
    pub(crate) samples: std::sync::atomic::AtomicU64,
}

/// Samples between two feeds of the detectors: 10 s, what their presets
/// are tuned for ([`keel_alert::monitor::SAMPLE_INTERVAL_MS`]).
pub const DETECT_EVERY_SAMPLES: u64 = 2;

/// What the gateway judges: what its clients see (p99 latency and the
/// share of 5xx answers) and the whole cluster's order rate (the sum of
/// every node's count, so a leader change is not a fall).
pub fn gateway_watches() -> Vec<keel_alert::Watch> {
    use keel_alert::Watch;
    vec![
        Watch::p99_latency("client_p99_s", "gateway"),
        Watch::error_rate("client_error_ratio", "gateway"),
        Watch::order_rate_down("cluster_orders_per_s", "orders"),
    ]
}

/// The detectors' samples from one chart point.
pub fn detector_samples(p: &Point) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    if let Some(p99) = p.latency_ms_p99 {
        out.push(("client_p99_s", p99 / 1e3));
    }
    if p.requests_per_s > 0.0 {
        out.push(("client_error_ratio", p.errors_per_s / p.requests_per_s));
    }
    out.push(("cluster_orders_per_s", p.orders_placed_per_s));
    out
}

impl DashboardState {
    /// A state that lists `repo` for the backup panel, if given, and runs
    /// [`gateway_watches`].
    pub fn new(repo: Option<BackupRepo>) -> Result<Self, keel_alert::ConfigError> {
        Ok(Self {
            ring: Mutex::default(),
            backups: Mutex::default(),
            repo,
            monitor: Mutex::new(keel_alert::Monitor::new(gateway_watches())?),
            samples: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The gateway's own alerts (`GET /gateway/alerts`).
    pub fn alerts(&self) -> keel_alert::AlertsResponse {
        keel_protocol::sync::lock(&self.monitor).book().response()
    }

    pub(crate) fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        keel_protocol::sync::lock(&self.ring)
    }
}
