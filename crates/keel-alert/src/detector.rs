//! Detectors: fed `(t_ms, value)` samples one at a time, each says whether
//! its series is quiet or firing right now.
//!
//! Time is always an argument, never read from a clock, so a test replays
//! a day of samples in microseconds and gets the same answer every time.
//! A sample whose value is not finite, or beyond [`VALUE_ABS_MAX`], is
//! skipped: a broken reading is no evidence either way.

use serde::{Deserialize, Serialize};

use crate::shift::Shift;
use crate::trend::{Growth, TimeToLimit};

/// Most samples any detector keeps. At the usual one sample every 10 s this
/// is 40 minutes: long enough for a median to ignore a short burst, short
/// enough that a detector costs a few kilobytes per watched series.
pub const WINDOW_MAX: usize = 240;

/// Most samples a rise or fall detector may average before comparing: 10
/// minutes at one sample every 10 s. A sparse count (orders a second)
/// needs a few minutes of samples to tell a drop from noise; beyond 10
/// minutes an alert is too late to be worth much.
pub const SMOOTH_MAX: usize = 60;

/// Fewest samples a window may be configured with: a median or a slope
/// over fewer says little.
pub const WINDOW_MIN: usize = 8;

/// Largest magnitude a value may have; larger ones are skipped as broken.
/// It is above any byte count, entry count or latency Keel reports, and its
/// square still fits an `f64` with room to sum a window of them.
pub const VALUE_ABS_MAX: f64 = 1e18;

/// Scores are clamped to this magnitude so they stay finite (and printable
/// as JSON) when the spread of a series is zero.
pub const SCORE_ABS_MAX: f64 = 1e9;

/// Consecutive samples needed to start and to stop firing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Consecutive samples over the fire mark before firing.
    pub fire_after: u32,
    /// Consecutive samples under the clear mark before going quiet.
    pub clear_after: u32,
}

/// What a detector saw in its latest sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// How anomalous the sample is, in the detector's own unit (robust
    /// deviations for rise and fall, the slope's t statistic for growth,
    /// limit over time left for time-to-limit, value over bound for bound).
    pub score: f64,
    /// The sample's value (for a rise or fall detector that smooths, the
    /// mean of its latest samples: what was compared).
    pub value: f64,
    /// What the value is compared with: the robust level for rise and
    /// fall, the fitted value at the window's start for growth and
    /// time-to-limit, the bound for bound.
    pub baseline: f64,
    /// Fitted change per second, for the detectors that fit a line.
    pub slope_per_s: Option<f64>,
}

/// A detector's state after a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    /// Nothing to report.
    Quiet,
    /// The series is anomalous; the reading of the latest sample.
    Firing(Reading),
}

impl State {
    /// Whether this is [`State::Firing`].
    pub fn is_firing(&self) -> bool {
        matches!(self, Self::Firing(_))
    }
}

/// Parameters of the rise and fall detectors.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftConfig {
    /// Weight of a new sample in the EWMA of the level, in (0, 1].
    pub alpha: f64,
    /// Samples averaged into each compared value (1: none, at most
    /// [`SMOOTH_MAX`]): trades delay for noise on sparse counts.
    pub smooth: usize,
    /// Samples whose deviations from the level give the MAD scale.
    pub window: usize,
    /// Samples seen before any alert.
    pub warmup: u32,
    /// Score (robust deviations away from the level) that counts as over.
    pub fire_score: f64,
    /// Score under which a sample counts as under.
    pub clear_score: f64,
    /// Smallest absolute change from the level that may fire.
    pub min_delta: f64,
    /// Smallest change that may fire, as a fraction of the level.
    pub min_rel: f64,
    /// Consecutive samples to fire and to clear.
    pub hysteresis: Hysteresis,
}

/// Parameters of the growth detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowthConfig {
    /// Samples the slope is fitted over.
    pub window: usize,
    /// t statistic of the slope that counts as over.
    pub fire_t: f64,
    /// t statistic under which a sample counts as under.
    pub clear_t: f64,
    /// Value the series must exceed to fire (and under which it clears).
    pub floor: f64,
    /// Smallest growth per second that may fire.
    pub min_slope_per_s: f64,
    /// Consecutive samples to fire and to clear.
    pub hysteresis: Hysteresis,
}

/// Parameters of the time-to-limit detector (a series falling to zero).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeToLimitConfig {
    /// Samples the fall is fitted over.
    pub window: usize,
    /// Fires when the projected time to zero is under this.
    pub limit_ms: u64,
    /// Fires when the value is under this, whatever its trend.
    pub floor: f64,
    /// How far below zero the slope's t statistic must be for the
    /// projection to count (a noisy flat series projects nonsense).
    pub fire_t: f64,
    /// Score (limit over time left) under which a sample counts as under;
    /// below 1 so a projection hovering at the limit does not flap.
    pub clear_score: f64,
    /// Consecutive samples to fire and to clear.
    pub hysteresis: Hysteresis,
}

/// Parameters of the bound detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundConfig {
    /// Fires when the value's magnitude exceeds this.
    pub bound: f64,
    /// Consecutive samples to fire and to clear.
    pub hysteresis: Hysteresis,
}

/// Which detector, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DetectorConfig {
    /// The value rose against its robust baseline.
    Rise(ShiftConfig),
    /// The value fell against its robust baseline.
    Fall(ShiftConfig),
    /// The value grows steadily (a least-squares slope) above a floor.
    Growth(GrowthConfig),
    /// The value falls towards zero and will reach it within a limit.
    TimeToLimit(TimeToLimitConfig),
    /// The value's magnitude is over a fixed bound.
    Bound(BoundConfig),
}

/// Why a detector configuration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A parameter is out of its range.
    #[error("{name} = {value} is out of range: {why}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// The range it must be in.
        why: &'static str,
    },
}

fn check(
    ok: bool,
    name: &'static str,
    value: impl ToString,
    why: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        name,
        value: value.to_string(),
        why,
    })
}

fn check_window(window: usize) -> Result<(), ConfigError> {
    check(
        (WINDOW_MIN..=WINDOW_MAX).contains(&window),
        "window",
        window,
        "between WINDOW_MIN and WINDOW_MAX samples",
    )
}

fn check_marks(fire: f64, clear: f64) -> Result<(), ConfigError> {
    check(
        fire.is_finite() && fire > 0.0,
        "fire mark",
        fire,
        "finite and above 0",
    )?;
    check(
        clear.is_finite() && clear <= fire,
        "clear mark",
        clear,
        "finite and at most the fire mark",
    )
}

impl Hysteresis {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.fire_after >= 1,
            "fire_after",
            self.fire_after,
            "at least 1",
        )?;
        check(
            self.clear_after >= 1,
            "clear_after",
            self.clear_after,
            "at least 1",
        )
    }
}

impl DetectorConfig {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Rise(c) | Self::Fall(c) => c.validate(),
            Self::Growth(c) => {
                check_window(c.window)?;
                check_marks(c.fire_t, c.clear_t)?;
                check(c.floor.is_finite(), "floor", c.floor, "finite")?;
                check(
                    c.min_slope_per_s.is_finite(),
                    "min_slope_per_s",
                    c.min_slope_per_s,
                    "finite",
                )?;
                c.hysteresis.validate()
            }
            Self::TimeToLimit(c) => {
                check_window(c.window)?;
                check(c.limit_ms > 0, "limit_ms", c.limit_ms, "above 0")?;
                check(c.floor.is_finite(), "floor", c.floor, "finite")?;
                check(
                    c.fire_t.is_finite() && c.fire_t >= 0.0,
                    "fire_t",
                    c.fire_t,
                    "finite, at least 0",
                )?;
                check_marks(1.0, c.clear_score)?;
                c.hysteresis.validate()
            }
            Self::Bound(c) => {
                check(
                    c.bound.is_finite() && c.bound > 0.0,
                    "bound",
                    c.bound,
                    "finite and above 0",
                )?;
                c.hysteresis.validate()
            }
        }
    }
}

impl ShiftConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.alpha > 0.0 && self.alpha <= 1.0,
            "alpha",
            self.alpha,
            "in (0, 1]",
        )?;
        check(
            (1..=SMOOTH_MAX).contains(&self.smooth),
            "smooth",
            self.smooth,
            "between 1 and SMOOTH_MAX samples",
        )?;
        check_window(self.window)?;
        check_marks(self.fire_score, self.clear_score)?;
        check(
            self.min_delta.is_finite() && self.min_delta >= 0.0,
            "min_delta",
            self.min_delta,
            "finite, at least 0",
        )?;
        check(
            self.min_rel.is_finite() && self.min_rel >= 0.0,
            "min_rel",
            self.min_rel,
            "finite, at least 0",
        )?;
        self.hysteresis.validate()
    }
}

/// Counts consecutive over and under samples and says when to switch.
#[derive(Clone, Debug)]
pub(crate) struct Latch {
    hysteresis: Hysteresis,
    firing: bool,
    overs: u32,
    unders: u32,
}

/// How one sample compares with the marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// At or past the fire mark.
    Over,
    /// Under the clear mark.
    Under,
    /// Between the two: neither count advances, both streaks break.
    Between,
}

impl Latch {
    pub(crate) fn new(hysteresis: Hysteresis) -> Self {
        Self {
            hysteresis,
            firing: false,
            overs: 0,
            unders: 0,
        }
    }

    /// Takes one sample's mark; returns whether the detector fires now.
    pub(crate) fn step(&mut self, mark: Mark) -> bool {
        self.overs = if mark == Mark::Over {
            self.overs.saturating_add(1)
        } else {
            0
        };
        self.unders = if mark == Mark::Under {
            self.unders.saturating_add(1)
        } else {
            0
        };
        if !self.firing && self.overs >= self.hysteresis.fire_after {
            self.firing = true;
        } else if self.firing && self.unders >= self.hysteresis.clear_after {
            self.firing = false;
        }
        self.firing
    }

    pub(crate) fn firing(&self) -> bool {
        self.firing
    }
}

/// Clamps a score to [`SCORE_ABS_MAX`]; NaN (0/0) reads as 0.
pub(crate) fn clamp_score(s: f64) -> f64 {
    if s.is_nan() {
        return 0.0;
    }
    s.clamp(-SCORE_ABS_MAX, SCORE_ABS_MAX)
}

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
