//! The state every request handler shares, and the pieces of it the proxy
//! and the server both build or use: its own module so that `server` (which
//! builds it) and `proxy` (which reads it) depend on it, not on each other.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::availability::{status_is_failure, Availability};
use crate::config::GatewayConfig;
use crate::dashboard_state::DashboardState;
use crate::metrics::{ClassSeries, Metrics};
use crate::pool::Pool;
use axum::http::{header, Request};
use bytes::Bytes;
use http_body_util::Full;
use keel_http_client::ConnPool;

/// State every request handler shares. Each worker thread has its own copy
/// whose `upstream` is its own; everything else is shared.
pub struct Shared {
    /// The configuration.
    pub config: Arc<GatewayConfig>,
    /// What the gateway believes of the cluster.
    pub pool: Arc<Pool>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Kept-alive HTTP/1.1 connections to the nodes, opened on and only
    /// used by one runtime: a connection is driven by the reactor it was
    /// registered with, so each worker thread has its own pool.
    pub upstream: ConnPool,
    /// The cap on requests in progress (`limits.pending_max`).
    pub pending: Arc<PendingCap>,
    /// Keys for keyless writes (one generator for every worker, so keys
    /// stay unique).
    pub keys: Arc<KeyMaker>,
    /// Each request class's `requests` and `request_seconds` series, by
    /// [`crate::pool::Class::slot`].
    pub series: Arc<[ClassSeries; 3]>,
    /// TLS toward clients and toward the nodes, when configured.
    pub tls: Option<GatewayTls>,
    /// Availability as clients saw it, fed by every proxied request.
    pub availability: Arc<LiveAvailability>,
    /// The dashboard's ring of points and backup panel, filled by its
    /// sampler task.
    pub dashboard: Arc<DashboardState>,
}

/// The availability tracker every worker feeds, behind one mutex: outages
/// are a sequence across all workers, so they cannot be counted apart and
/// merged. The lock is held for a few additions (and, once a minute, a
/// push), far less than the pool's per-attempt sections.
#[derive(Default)]
pub struct LiveAvailability(Mutex<Availability>);

impl LiveAvailability {
    /// Records a client request answered with `status` just now, by the
    /// wall clock.
    pub fn record(&self, status: u16) {
        let t_ms = keel_protocol::wall_ms();
        self.lock().record(t_ms, !status_is_failure(status));
    }

    /// The tracker. A panic while it was held cannot leave it unusable:
    /// each of its fields is valid on its own, so a poisoned lock is taken
    /// over rather than failing every later request.
    pub fn lock(&self) -> MutexGuard<'_, Availability> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The gateway's TLS: what it serves clients with, and what it dials the
/// nodes with (the cluster's CA as the only roots).
#[derive(Clone)]
pub struct GatewayTls {
    /// Toward clients.
    pub server: Arc<keel_tls::ServerTls>,
    /// Toward the nodes.
    pub client: Arc<keel_tls::ClientTls>,
}

/// Generates the keys the gateway gives keyless writes: a random prefix
/// drawn once at start (unique across gateways and restarts) and a counter.
pub struct KeyMaker {
    prefix: String,
    next: AtomicU64,
}

impl KeyMaker {
    /// A generator with a random prefix from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            prefix: format!("gw-{seed:016x}"),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn make(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

/// The cap on requests in progress across every worker
/// (`limits.pending_max`). A request past it is refused at once and never
/// waits, so it needs no queue: a count taken and given back with one atomic
/// add each way, where a semaphore's release also takes its waiters' lock.
pub struct PendingCap {
    max: usize,
    taken: AtomicUsize,
}

impl PendingCap {
    /// A cap of `max` requests in progress.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            taken: AtomicUsize::new(0),
        }
    }

    /// One of the places, held until the slot is dropped; `None` at the cap.
    pub fn try_take(&self) -> Option<PendingSlot<'_>> {
        // Each request admitted saw fewer than `max` taken, its own add
        // included in the count until it leaves: at most `max` are in.
        if self.taken.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(PendingSlot(self))
        } else {
            self.taken.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// A place under a [`PendingCap`], given back when dropped.
pub struct PendingSlot<'a>(&'a PendingCap);

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bodiless GET of `path` for the node at `addr`, with `auth` as its
/// `Authorization`.
pub(crate) fn node_request(
    addr: &str,
    path: &str,
    auth: Option<&str>,
) -> Result<Request<Full<Bytes>>, axum::http::Error> {
    let mut b = Request::get(path).header(header::HOST, addr);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_pending_cap_admits_up_to_its_max_and_frees_on_drop() {
        let cap = PendingCap::new(2);
        let a = cap.try_take().unwrap();
        let b = cap.try_take().unwrap();
        assert!(cap.try_take().is_none());
        drop(a);
        let c = cap.try_take().unwrap();
        assert!(cap.try_take().is_none());
        drop((b, c));
        assert_eq!(cap.taken.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn generated_keys_are_unique_and_valid_header_values() {
        let k = KeyMaker::new(42);
        let a = k.make();
        let b = k.make();
        assert_ne!(a, b);
        assert!(HeaderValue::from_str(&a).is_ok());
        assert!(a.len() <= 128);
    }
}
