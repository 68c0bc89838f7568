//! Latencies between two samples of the watch (`crate::watch`), in fixed
//! buckets: what the request path and the log store feed, with no
//! dependency of its own so both can.

use std::sync::Mutex;

/// Buckets of a [`LatencyWindow`]: ×1.25 from 10 µs, up to about 80 s.
const LATENCY_BUCKETS: usize = 72;
/// The lowest bucket's upper bound (seconds).
const LATENCY_BUCKET_FIRST_S: f64 = 0.000_01;
/// Each bucket's bound over the one before: a p99 read from the buckets
/// is within 25% of the true one.
const LATENCY_BUCKET_GROWTH: f64 = 1.25;

/// Latencies and failures since the last sample, in fixed buckets: a
/// bounded summary however many requests there were.
#[derive(Debug)]
pub struct LatencyWindow {
    buckets: [u64; LATENCY_BUCKETS],
    count: u64,
    failed: u64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self {
            buckets: [0; LATENCY_BUCKETS],
            count: 0,
            failed: 0,
        }
    }
}

/// What a [`LatencyWindow`] saw between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSummary {
    /// The 99th percentile (seconds; a bucket's upper bound).
    pub p99_s: f64,
    /// Failed over all.
    pub failed_ratio: f64,
    /// How many.
    pub count: u64,
}

impl LatencyWindow {
    /// Records one latency; `failed` for a server-side failure.
    pub fn record(&mut self, seconds: f64, failed: bool) {
        let mut bound = LATENCY_BUCKET_FIRST_S;
        let mut i = 0;
        while i + 1 < LATENCY_BUCKETS && seconds > bound {
            bound *= LATENCY_BUCKET_GROWTH;
            i += 1;
        }
        self.buckets[i] += 1;
        self.count += 1;
        self.failed += u64::from(failed);
    }

    /// The summary since the last take (`None` if nothing was recorded),
    /// starting a new window.
    pub fn take(&mut self) -> Option<WindowSummary> {
        let w = std::mem::take(self);
        if w.count == 0 {
            return None;
        }
        let rank = w.count - w.count / 100;
        let mut seen = 0;
        let mut bound = LATENCY_BUCKET_FIRST_S;
        for n in w.buckets {
            seen += n;
            if seen >= rank {
                break;
            }
            bound *= LATENCY_BUCKET_GROWTH;
        }
        Some(WindowSummary {
            p99_s: bound,
            failed_ratio: w.failed as f64 / w.count as f64,
            count: w.count,
        })
    }
}

/// The windows the request path and the log store feed.
#[derive(Debug, Default)]
pub struct Windows {
    /// Public API requests.
    pub requests: Mutex<LatencyWindow>,
    /// Log appends with their fsync.
    pub fsync: Mutex<LatencyWindow>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn a_window_reads_its_p99_and_failures_then_starts_over() {
        let mut w = LatencyWindow::default();
        for _ in 0..990 {
            w.record(0.001, false);
        }
        for _ in 0..10 {
            w.record(0.5, true);
        }
        let s = w.take().unwrap();
        assert!((0.0008..0.0013).contains(&s.p99_s), "{s:?}");
        assert!((s.failed_ratio - 0.01).abs() < 1e-9);
        assert_eq!(s.count, 1000);
        assert!(w.take().is_none());
        w.record(1e9, false);
        assert!(w.take().unwrap().p99_s > 10.0);
    }
}
