//! What a detector is configured with, and the pieces every kind of
//! detector shares (the hysteresis latch, a reading, score clamping): one
//! module both the detector and its kinds (`shift`, `trend`) depend on.

use serde::{Deserialize, Serialize};

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
