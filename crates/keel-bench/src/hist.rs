//! Latency histograms (HdrHistogram, µs) and their percentile summary.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::BenchError;

/// Highest latency a histogram records, in µs (60 s): longer samples are
/// clamped to it, so a hung request still counts (as at least a minute).
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant decimal digits kept by the histograms: 0.1 % resolution.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram in µs.
pub fn new_hist() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_max(LATENCY_MAX_US, SIGNIFICANT_DIGITS)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// Records `us`, clamped to [`LATENCY_MAX_US`] (recording can then not fail).
pub fn record(h: &mut Histogram<u64>, us: u64) {
    // In range by the clamp, so `record` cannot return an error.
    let _ = h.record(us.clamp(1, LATENCY_MAX_US));
}

/// The latency figures of a run, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl Percentiles {
    /// The summary of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A latency for humans: µs below a millisecond, ms above.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 10_000 {
        format!("{:.2}ms", us as f64 / 1_000.0)
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let mut h = new_hist().unwrap();
        for us in 1..=1_000 {
            record(&mut h, us);
        }
        // Below 2,048 a 3-digit HdrHistogram is exact.
        assert_eq!(
            Percentiles::of(&h),
            Percentiles {
                count: 1_000,
                p50_us: 500,
                p90_us: 900,
                p99_us: 990,
                p999_us: 999,
                max_us: 1_000,
            }
        );
    }

    #[test]
    fn one_slow_sample_in_a_thousand_is_the_p999_tail_only() {
        let mut h = new_hist().unwrap();
        for _ in 0..999 {
            record(&mut h, 1_000);
        }
        record(&mut h, 500_000);
        let p = Percentiles::of(&h);
        assert_eq!((p.p50_us, p.p99_us, p.p999_us), (1_000, 1_000, 1_000));
        // Large values are kept to 0.1 %.
        assert!(p.max_us.abs_diff(500_000) <= 500, "{}", p.max_us);
    }

    #[test]
    fn large_values_keep_three_digits_and_clamp() {
        let mut h = new_hist().unwrap();
        record(&mut h, 123_456);
        let v = Percentiles::of(&h).p50_us;
        assert!(v.abs_diff(123_456) * 1_000 <= 123_456, "{v}");
        record(&mut h, 10 * LATENCY_MAX_US);
        let max = Percentiles::of(&h).max_us;
        assert!(max.abs_diff(LATENCY_MAX_US) * 1_000 <= LATENCY_MAX_US);
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        assert_eq!(
            Percentiles::of(&new_hist().unwrap()),
            Percentiles::default()
        );
    }

    #[test]
    fn latencies_switch_units() {
        assert_eq!(fmt_us(999), "999µs");
        assert_eq!(fmt_us(1_500), "1.50ms");
        assert_eq!(fmt_us(25_000), "25.0ms");
        assert_eq!(fmt_us(2_500_000), "2.50s");
    }
}
