//! A byte-rate limit for hot full backups. A backup competes with the shop
//! for the same cores and disk; spreading its work over more time keeps the
//! cluster's order throughput while it runs (as Elasticsearch's
//! `max_snapshot_bytes_per_sec` does for snapshots). The limit paces the
//! download of the node's snapshot, and so the node's send and the sealing
//! behind it, which consume it as it comes.

use std::time::Duration;

use tokio::time::Instant;

/// The pace of a hot full backup unless told otherwise, MiB/s: about half
/// what one backup takes unpaced on a 2-core machine, which keeps the
/// shop's order throughput within 10 % while it runs (BENCHMARKS.md).
pub const DEFAULT_FULL_RATE_MIB_S: u64 = 20;

/// Lets bytes through at no more than a set rate on average.
#[derive(Debug, Clone)]
pub struct Pace {
    bytes_per_s: Option<u64>,
    started: Option<Instant>,
    bytes: u64,
}

impl Pace {
    /// A pace of `bytes_per_s`; `None` or 0 lets everything through at once.
    pub fn new(bytes_per_s: Option<u64>) -> Self {
        Self {
            bytes_per_s: bytes_per_s.filter(|r| *r > 0),
            started: None,
            bytes: 0,
        }
    }

    /// When, counted from the first byte, `bytes` in total may have passed.
    fn due_after(bytes: u64, bytes_per_s: u64) -> Duration {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(bytes_per_s.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Counts `n` bytes as passed and waits until the rate allows them.
    pub async fn take(&mut self, n: u64) {
        let Some(rate) = self.bytes_per_s else {
            return;
        };
        let started = *self.started.get_or_insert_with(Instant::now);
        self.bytes = self.bytes.saturating_add(n);
        tokio::time::sleep_until(started + Self::due_after(self.bytes, rate)).await;
    }

    /// The rate, if any.
    pub fn bytes_per_s(&self) -> Option<u64> {
        self.bytes_per_s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn the_due_time_is_bytes_over_rate() {
        assert_eq!(Pace::due_after(0, 10), Duration::ZERO);
        assert_eq!(Pace::due_after(10, 10), Duration::from_secs(1));
        assert_eq!(Pace::due_after(5 << 20, 1 << 20), Duration::from_secs(5));
        assert_eq!(Pace::due_after(u64::MAX, 1), Duration::from_nanos(u64::MAX));
        assert_eq!(Pace::new(Some(0)).bytes_per_s(), None, "0 means no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_spreads_bytes_over_time() {
        let mut p = Pace::new(Some(1 << 20));
        let t0 = Instant::now();
        for _ in 0..4 {
            p.take(1 << 20).await;
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(4));
        let mut free = Pace::new(None);
        let t1 = Instant::now();
        free.take(u64::MAX).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }
}
