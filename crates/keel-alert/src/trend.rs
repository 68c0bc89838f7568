//! Growth and time-to-limit: a least-squares line through the latest
//! samples, against time.
//!
//! A slope alone would fire on noise; each detector asks for its slope to
//! be significant (its t statistic, the slope over its standard error) as
//! well as large enough to matter.

use std::collections::VecDeque;

use crate::config::{clamp_score, GrowthConfig, Latch, Mark, Reading, TimeToLimitConfig};

/// A least-squares line through a window of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fit {
    /// Change per second.
    pub(crate) slope_per_s: f64,
    /// The line's value at the window's first sample.
    pub(crate) start: f64,
    /// The slope over its standard error (clamped; huge for a perfect line).
    pub(crate) t_stat: f64,
}

/// The latest samples, oldest first, in strictly increasing time.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    samples: VecDeque<(u64, f64)>,
    len_max: usize,
}

impl Window {
    pub(crate) fn new(len_max: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(len_max),
            len_max,
        }
    }

    /// Takes a sample unless it is not later than the latest one (a clock
    /// stepped back, or a duplicate): a line needs one value per instant.
    pub(crate) fn push(&mut self, t_ms: u64, value: f64) -> bool {
        if self.samples.back().is_some_and(|(t, _)| *t >= t_ms) {
            return false;
        }
        if self.samples.len() == self.len_max {
            self.samples.pop_front();
        }
        self.samples.push_back((t_ms, value));
        true
    }

    pub(crate) fn is_full(&self) -> bool {
        self.samples.len() == self.len_max
    }

    /// The least-squares line, once there are three samples (two leave no
    /// residual to estimate the error from).
    pub(crate) fn fit(&self) -> Option<Fit> {
        let n = self.samples.len();
        let &(t0, _) = self.samples.front()?;
        if n < 3 {
            return None;
        }
        let secs = |t: u64| (t - t0) as f64 / 1000.0;
        let nf = n as f64;
        let mean_t = self.samples.iter().map(|(t, _)| secs(*t)).sum::<f64>() / nf;
        let mean_v = self.samples.iter().map(|(_, v)| v).sum::<f64>() / nf;
        let (mut sxx, mut sxy) = (0.0, 0.0);
        for &(t, v) in &self.samples {
            let dt = secs(t) - mean_t;
            sxx += dt * dt;
            sxy += dt * (v - mean_v);
        }
        let slope = sxy / sxx;
        let ssr: f64 = self
            .samples
            .iter()
            .map(|&(t, v)| (v - mean_v - slope * (secs(t) - mean_t)).powi(2))
            .sum();
        let se = (ssr / (nf - 2.0) / sxx).sqrt();
        let fit = Fit {
            slope_per_s: slope,
            start: mean_v - slope * mean_t,
            t_stat: clamp_score(slope / se),
        };
        fit.slope_per_s.is_finite().then_some(fit)
    }
}

/// A series growing steadily above a floor (replication lag).
#[derive(Clone, Debug)]
pub(crate) struct Growth {
    config: GrowthConfig,
    window: Window,
    latch: Latch,
}

impl Growth {
    pub(crate) fn new(config: GrowthConfig) -> Self {
        Self {
            config,
            window: Window::new(config.window),
            latch: Latch::new(config.hysteresis),
        }
    }

    pub(crate) fn firing(&self) -> bool {
        self.latch.firing()
    }

    pub(crate) fn observe(&mut self, t_ms: u64, value: f64) -> Option<(bool, Reading)> {
        if !self.window.push(t_ms, value) {
            return None;
        }
        let fit = self.window.fit();
        let mark = match fit {
            Some(f) if self.window.is_full() => self.mark(&f, value),
            _ => Mark::Under,
        };
        let firing = self.latch.step(mark);
        let reading = Reading {
            score: fit.map_or(0.0, |f| f.t_stat),
            value,
            baseline: fit.map_or(value, |f| f.start),
            slope_per_s: fit.map(|f| f.slope_per_s),
        };
        Some((firing, reading))
    }

    fn mark(&self, fit: &Fit, value: f64) -> Mark {
        let c = &self.config;
        if fit.t_stat < c.clear_t || value <= c.floor {
            Mark::Under
        } else if fit.t_stat >= c.fire_t && fit.slope_per_s >= c.min_slope_per_s {
            Mark::Over
        } else {
            Mark::Between
        }
    }
}

/// A series falling towards zero (free disk), fired on the projected time
/// left or on an absolute floor.
#[derive(Clone, Debug)]
pub(crate) struct TimeToLimit {
    config: TimeToLimitConfig,
    window: Window,
    latch: Latch,
}

impl TimeToLimit {
    pub(crate) fn new(config: TimeToLimitConfig) -> Self {
        Self {
            config,
            window: Window::new(config.window),
            latch: Latch::new(config.hysteresis),
        }
    }

    pub(crate) fn firing(&self) -> bool {
        self.latch.firing()
    }

    pub(crate) fn observe(&mut self, t_ms: u64, value: f64) -> Option<(bool, Reading)> {
        if !self.window.push(t_ms, value) {
            return None;
        }
        let fit = self.window.fit();
        let score = self.floor_score(value).max(self.trend_score(fit, value));
        let mark = if score >= 1.0 {
            Mark::Over
        } else if score < self.config.clear_score {
            Mark::Under
        } else {
            Mark::Between
        };
        let firing = self.latch.step(mark);
        let reading = Reading {
            score,
            value,
            baseline: fit.map_or(value, |f| f.start),
            slope_per_s: fit.map(|f| f.slope_per_s),
        };
        Some((firing, reading))
    }

    /// At least 1 when the value is under the floor.
    fn floor_score(&self, value: f64) -> f64 {
        if value >= self.config.floor {
            return 0.0;
        }
        clamp_score(self.config.floor / value.max(f64::MIN_POSITIVE))
    }

    /// The limit over the projected time to zero: at least 1 when zero is
    /// projected within the limit. Zero until the window is full or while
    /// the fall is not significant.
    fn trend_score(&self, fit: Option<Fit>, value: f64) -> f64 {
        let Some(fit) = fit.filter(|_| self.window.is_full()) else {
            return 0.0;
        };
        if fit.slope_per_s >= 0.0 || fit.t_stat > -self.config.fire_t {
            return 0.0;
        }
        let left_ms = value.max(0.0) / -fit.slope_per_s * 1000.0;
        clamp_score(self.config.limit_ms as f64 / left_ms.max(f64::MIN_POSITIVE))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::detector::{Detector, DetectorConfig, Hysteresis, State};
    use crate::testkit::Rng;

    const H: Hysteresis = Hysteresis {
        fire_after: 3,
        clear_after: 6,
    };

    fn growth() -> Detector {
        Detector::new(DetectorConfig::Growth(GrowthConfig {
            window: 60,
            fire_t: 5.0,
            clear_t: 2.0,
            floor: 1000.0,
            min_slope_per_s: 1.0,
            hysteresis: H,
        }))
        .unwrap()
    }

    fn time_to_limit() -> Detector {
        Detector::new(DetectorConfig::TimeToLimit(TimeToLimitConfig {
            window: 60,
            limit_ms: 6 * 3600 * 1000,
            floor: 1e9,
            fire_t: 4.0,
            clear_score: 0.8,
            hysteresis: H,
        }))
        .unwrap()
    }

    fn first_firing(d: &mut Detector, values: impl IntoIterator<Item = f64>) -> Option<usize> {
        let mut first = None;
        for (i, v) in values.into_iter().enumerate() {
            if d.observe(i as u64 * 10_000, v).is_firing() && first.is_none() {
                first = Some(i);
            }
        }
        first
    }

    #[test]
    fn a_perfect_line_fits_exactly() {
        let mut w = Window::new(10);
        for i in 0..10u64 {
            w.push(i * 2000, 5.0 + 3.0 * i as f64);
        }
        let f = w.fit().unwrap();
        assert!((f.slope_per_s - 1.5).abs() < 1e-12);
        assert!((f.start - 5.0).abs() < 1e-9);
        assert!(f.t_stat > 1e6);
    }

    #[test]
    fn samples_out_of_order_are_skipped() {
        let mut w = Window::new(10);
        assert!(w.push(5, 1.0));
        assert!(!w.push(5, 2.0));
        assert!(!w.push(4, 2.0));
        assert!(w.push(6, 2.0));
    }

    #[test]
    fn growth_fires_on_steadily_growing_lag() {
        let mut rng = Rng::new(1);
        let mut d = growth();
        // Noisy lag around 200, then growing 20 entries a second.
        let series = (0..400).map(|i| {
            let grow = if i < 200 {
                0.0
            } else {
                20.0 * 10.0 * (i - 200) as f64
            };
            (200.0 + grow + rng.normal() * 50.0).max(0.0)
        });
        let first = first_firing(&mut d, series).expect("steady growth must fire");
        assert!((200..260).contains(&first), "fired at {first}");
        let State::Firing(r) = d.state() else {
            panic!()
        };
        assert!((r.slope_per_s.unwrap() - 20.0).abs() < 1.0);
    }

    #[test]
    fn growth_ignores_high_but_flat_and_low_growing_lag() {
        let mut rng = Rng::new(2);
        let mut d = growth();
        let flat_high = (0..2000).map(|_| 50_000.0 + rng.normal() * 5_000.0);
        assert_eq!(first_firing(&mut d, flat_high), None);
        let mut d = growth();
        // Growing, but still under the floor at the end.
        let low = (0..300).map(|i| i as f64 * 3.0);
        assert_eq!(first_firing(&mut d, low), None);
    }

    #[test]
    fn time_to_limit_fires_on_a_filling_disk() {
        let mut rng = Rng::new(3);
        let mut d = time_to_limit();
        // 100 GB free, steady; then 10 MB/s written: zero in under 3 h.
        let series = (0..600).map(|i| {
            let used = if i < 300 {
                0.0
            } else {
                10e6 * 10.0 * (i - 300) as f64
            };
            100e9 - used + rng.normal() * 50e6
        });
        let first = first_firing(&mut d, series).expect("a filling disk must fire");
        assert!((300..360).contains(&first), "fired at {first}");
    }

    #[test]
    fn time_to_limit_ignores_a_slowly_filling_or_noisy_disk() {
        let mut rng = Rng::new(4);
        let mut d = time_to_limit();
        // 100 GB free, 100 kB/s written: zero in 11 days.
        let slow = (0..3000).map(|i| 100e9 - 1e5 * 10.0 * i as f64 + rng.normal() * 50e6);
        assert_eq!(first_firing(&mut d, slow), None);
        let mut d = time_to_limit();
        let noisy = (0..3000).map(|_| 100e9 + rng.normal() * 2e9);
        assert_eq!(first_firing(&mut d, noisy), None);
    }

    #[test]
    fn time_to_limit_fires_under_the_floor_at_once() {
        let mut d = time_to_limit();
        let first = first_firing(&mut d, [5e8; 5]);
        assert_eq!(first, Some(2), "three samples under the floor");
    }
}
