//! The longest interval without a successful answer: what a client sees as
//! an outage, whatever the percentiles say.

use serde::Serialize;

/// Tracks the longest silence between successes, in µs from a common
/// origin. Observations may arrive slightly out of order (many tasks); an
/// older one than the latest seen cannot end a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GapTracker {
    last_us: u64,
    /// The longest gap so far.
    pub longest_us: u64,
    /// When the longest gap ended.
    pub longest_end_us: u64,
}

impl GapTracker {
    /// Measurement starts at `start_us`: a slow first success counts too.
    pub fn new(start_us: u64) -> Self {
        Self {
            last_us: start_us,
            longest_us: 0,
            longest_end_us: start_us,
        }
    }

    /// A success (or the end of measurement) at `at_us`.
    pub fn observe(&mut self, at_us: u64) {
        if at_us <= self.last_us {
            return;
        }
        let gap = at_us - self.last_us;
        if gap > self.longest_us {
            self.longest_us = gap;
            self.longest_end_us = at_us;
        }
        self.last_us = at_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_silence() {
        let mut g = GapTracker::new(100);
        for at in [110, 120, 90, 500, 505, 400, 510] {
            g.observe(at);
        }
        assert_eq!((g.longest_us, g.longest_end_us), (380, 500));
        // The end of measurement closes a gap that never ended.
        g.observe(2_000);
        assert_eq!((g.longest_us, g.longest_end_us), (1_490, 2_000));
    }

    #[test]
    fn counts_a_slow_start() {
        let mut g = GapTracker::new(0);
        g.observe(700);
        g.observe(710);
        assert_eq!((g.longest_us, g.longest_end_us), (700, 700));
    }
}
