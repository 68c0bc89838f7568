//! Detectors: fed `(t_ms, value)` samples one at a time, each says whether
//! its series is quiet or firing right now.
//!
//! Time is always an argument, never read from a clock, so a test replays
//! a day of samples in microseconds and gets the same answer every time.
//! A sample whose value is not finite, or beyond [`VALUE_ABS_MAX`], is
//! skipped: a broken reading is no evidence either way.

use crate::config::{clamp_score, Latch, Mark};
pub use crate::config::{
    BoundConfig, ConfigError, DetectorConfig, GrowthConfig, Hysteresis, Reading, ShiftConfig,
    State, TimeToLimitConfig, SCORE_ABS_MAX, SMOOTH_MAX, VALUE_ABS_MAX, WINDOW_MAX, WINDOW_MIN,
};
use crate::shift::Shift;
use crate::trend::{Growth, TimeToLimit};

/// A fixed-magnitude bound (a protocol limit, not a learnt baseline).
#[derive(Clone, Debug)]
struct Bound {
    config: BoundConfig,
    latch: Latch,
}

impl Bound {
    fn observe(&mut self, value: f64) -> (bool, Reading) {
        let score = clamp_score(value.abs() / self.config.bound);
        let mark = if score > 1.0 { Mark::Over } else { Mark::Under };
        let reading = Reading {
            score,
            value,
            baseline: self.config.bound,
            slope_per_s: None,
        };
        (self.latch.step(mark), reading)
    }
}

#[derive(Clone, Debug)]
enum Inner {
    Shift(Shift),
    Growth(Growth),
    TimeToLimit(TimeToLimit),
    Bound(Bound),
}

/// One detector over one series.
#[derive(Clone, Debug)]
pub struct Detector {
    inner: Inner,
    last: Option<Reading>,
}

impl Detector {
    /// A detector of the kind `config` names, once its parameters check.
    pub fn new(config: DetectorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let inner = match config {
            DetectorConfig::Rise(c) => Inner::Shift(Shift::new(c, 1.0)),
            DetectorConfig::Fall(c) => Inner::Shift(Shift::new(c, -1.0)),
            DetectorConfig::Growth(c) => Inner::Growth(Growth::new(c)),
            DetectorConfig::TimeToLimit(c) => Inner::TimeToLimit(TimeToLimit::new(c)),
            DetectorConfig::Bound(c) => Inner::Bound(Bound {
                config: c,
                latch: Latch::new(c.hysteresis),
            }),
        };
        Ok(Self { inner, last: None })
    }

    /// Feeds one sample and returns the state after it. Samples with a
    /// non-finite or absurd value are skipped (the state stays as it was);
    /// so are, for the detectors that fit a line, samples not later than
    /// the latest one taken.
    pub fn observe(&mut self, t_ms: u64, value: f64) -> State {
        if value.is_finite() && value.abs() <= VALUE_ABS_MAX {
            let seen = match &mut self.inner {
                Inner::Shift(d) => d.observe(value),
                Inner::Growth(d) => d.observe(t_ms, value),
                Inner::TimeToLimit(d) => d.observe(t_ms, value),
                Inner::Bound(d) => Some(d.observe(value)),
            };
            if let Some((_, reading)) = seen {
                self.last = Some(reading);
            }
        }
        self.state()
    }

    /// The state after the latest sample taken.
    pub fn state(&self) -> State {
        match (self.firing(), self.last) {
            (true, Some(r)) => State::Firing(r),
            _ => State::Quiet,
        }
    }

    /// The reading of the latest sample taken, firing or not.
    pub fn last(&self) -> Option<Reading> {
        self.last
    }

    fn firing(&self) -> bool {
        match &self.inner {
            Inner::Shift(d) => d.firing(),
            Inner::Growth(d) => d.firing(),
            Inner::TimeToLimit(d) => d.firing(),
            Inner::Bound(d) => d.latch.firing(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bound(b: f64) -> Detector {
        Detector::new(DetectorConfig::Bound(BoundConfig {
            bound: b,
            hysteresis: Hysteresis {
                fire_after: 3,
                clear_after: 2,
            },
        }))
        .unwrap()
    }

    #[test]
    fn bound_fires_after_k_samples_over_and_clears_after_m_under() {
        let mut d = bound(500.0);
        assert!(!d.observe(0, 600.0).is_firing());
        assert!(!d.observe(1, -700.0).is_firing());
        let State::Firing(r) = d.observe(2, 650.0) else {
            panic!("three samples over the bound must fire")
        };
        assert_eq!((r.value, r.baseline), (650.0, 500.0));
        assert!(
            d.observe(3, 10.0).is_firing(),
            "one sample under is not enough"
        );
        assert!(!d.observe(4, 10.0).is_firing());
    }

    #[test]
    fn bound_streak_breaks_on_a_sample_under() {
        let mut d = bound(500.0);
        for (t, v) in [600.0, 600.0, 100.0, 600.0, 600.0].into_iter().enumerate() {
            assert!(!d.observe(t as u64, v).is_firing());
        }
    }

    #[test]
    fn broken_values_are_skipped() {
        let mut d = bound(1.0);
        for v in [f64::NAN, f64::INFINITY, 1e300, 2.0, 2.0, f64::NAN] {
            assert!(!d.observe(0, v).is_firing());
        }
        assert!(d.observe(0, 2.0).is_firing());
    }

    #[test]
    fn bad_parameters_are_refused() {
        let h = Hysteresis {
            fire_after: 0,
            clear_after: 1,
        };
        let c = DetectorConfig::Bound(BoundConfig {
            bound: 1.0,
            hysteresis: h,
        });
        assert!(Detector::new(c).is_err());
        let c = DetectorConfig::Bound(BoundConfig {
            bound: f64::NAN,
            hysteresis: Hysteresis {
                fire_after: 1,
                clear_after: 1,
            },
        });
        assert!(Detector::new(c).is_err());
    }
}
