//! Rise and fall: a value against a robust baseline.
//!
//! The level is an EWMA of the series; the scale is the median absolute
//! deviation (MAD) of the latest samples' deviations from that level. The
//! baseline a sample is compared with is the level plus the median
//! deviation, which takes out the lag an EWMA has behind a slow swing (a
//! daily cycle), so the swing itself never looks anomalous.
//!
//! The EWMA takes each sample winsorized to the fire mark: a spike or a
//! step moves the level at most `fire_score` scales per sample times
//! `alpha`, so an anomaly keeps firing for a while instead of becoming the
//! baseline at once, and a lasting new level is learnt within a few
//! hundred samples (when half the window deviates, the MAD grows with it).

use std::collections::VecDeque;

use crate::config::{clamp_score, Latch, Mark, Reading, ShiftConfig};

/// Normal-distribution consistency factor: a MAD times this estimates a
/// standard deviation, so scores read as "sigmas" to an operator.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Smallest scale a score is divided by: a series with no spread at all
/// (a counter's rate stuck at zero) would otherwise score infinity. The
/// configured floors decide whether such a change may fire.
const SCALE_MIN: f64 = 1e-12;

#[derive(Clone, Debug)]
pub(crate) struct Shift {
    config: ShiftConfig,
    /// +1 for rise, -1 for fall: the direction that counts as anomalous.
    sign: f64,
    level: Option<f64>,
    /// The latest raw samples, `smooth` at most, whose mean is compared.
    recent: VecDeque<f64>,
    deviations: VecDeque<f64>,
    scratch: Vec<f64>,
    seen: u32,
    latch: Latch,
}

impl Shift {
    pub(crate) fn new(config: ShiftConfig, sign: f64) -> Self {
        Self {
            config,
            sign,
            level: None,
            recent: VecDeque::with_capacity(config.smooth),
            deviations: VecDeque::with_capacity(config.window),
            scratch: Vec::with_capacity(config.window),
            seen: 0,
            latch: Latch::new(config.hysteresis),
        }
    }

    pub(crate) fn firing(&self) -> bool {
        self.latch.firing()
    }

    /// Takes a finite value; returns whether the detector fires and the
    /// sample's reading.
    pub(crate) fn observe(&mut self, raw: f64) -> Option<(bool, Reading)> {
        let value = self.smoothed(raw);
        let level = *self.level.get_or_insert(value);
        let (median, scale) = self.spread();
        let deviation = value - level;
        let baseline = level + median;
        let delta = self.sign * (value - baseline);
        let score = clamp_score(delta / scale);
        let mark = self.mark(score, delta, baseline);
        let firing = self.latch.step(mark);
        self.learn(value, level, deviation, scale);
        let reading = Reading {
            score,
            value,
            baseline,
            slope_per_s: None,
        };
        Some((firing, reading))
    }

    /// The mean of the latest `smooth` samples, `raw` included.
    fn smoothed(&mut self, raw: f64) -> f64 {
        if self.recent.len() == self.config.smooth {
            self.recent.pop_front();
        }
        self.recent.push_back(raw);
        self.recent.iter().sum::<f64>() / self.recent.len() as f64
    }

    fn mark(&self, score: f64, delta: f64, baseline: f64) -> Mark {
        if self.seen < self.config.warmup {
            return Mark::Under;
        }
        let floor = self.floor(baseline);
        if score < self.config.clear_score || delta < floor {
            Mark::Under
        } else if score >= self.config.fire_score {
            Mark::Over
        } else {
            Mark::Between
        }
    }

    fn floor(&self, baseline: f64) -> f64 {
        self.config
            .min_delta
            .max(self.config.min_rel * baseline.abs())
    }

    /// Moves the level towards the (winsorized) value and remembers the
    /// deviation. Until the window is full the level is the plain mean of
    /// what was seen, so the first sample's noise does not linger.
    fn learn(&mut self, value: f64, level: f64, deviation: f64, scale: f64) {
        self.seen = self.seen.saturating_add(1);
        let reach = (self.config.fire_score * scale).max(self.floor(level));
        let taken = value.clamp(level - reach, level + reach);
        let alpha = self.config.alpha.max(1.0 / f64::from(self.seen));
        self.level = Some(level + alpha * (taken - level));
        if self.deviations.len() == self.config.window {
            self.deviations.pop_front();
        }
        self.deviations.push_back(deviation);
    }

    /// The median deviation from the level and the robust scale (MAD as a
    /// standard deviation) of the window.
    fn spread(&mut self) -> (f64, f64) {
        if self.deviations.len() < 2 {
            return (0.0, SCALE_MIN);
        }
        self.scratch.clear();
        self.scratch.extend(self.deviations.iter().copied());
        let mid = median(&mut self.scratch);
        for d in &mut self.scratch {
            *d = (*d - mid).abs();
        }
        let mad = median(&mut self.scratch);
        (mid, (MAD_TO_SIGMA * mad).max(SCALE_MIN))
    }
}

/// The median of `xs` (the upper one of an even count); reorders `xs`.
fn median(xs: &mut [f64]) -> f64 {
    let mid = xs.len() / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::detector::{Detector, DetectorConfig, Hysteresis, State};
    use crate::testkit::{daily_swing, Rng};

    fn config() -> ShiftConfig {
        ShiftConfig {
            alpha: 0.02,
            smooth: 1,
            window: 240,
            warmup: 60,
            fire_score: 6.0,
            clear_score: 3.0,
            min_delta: 0.001,
            min_rel: 0.1,
            hysteresis: Hysteresis {
                fire_after: 3,
                clear_after: 6,
            },
        }
    }

    /// Feeds `values` at 10 s spacing; returns the index of the first
    /// firing sample, if any.
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
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn rise_fires_on_a_step_up_soon_after_it() {
        let mut rng = Rng::new(7);
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let series = (0..600).map(|i| {
            let level = if i < 400 { 100.0 } else { 150.0 };
            level + rng.normal() * 5.0
        });
        let first = first_firing(&mut d, series).expect("a 10 sigma step must fire");
        assert!((400..410).contains(&first), "fired at {first}");
    }

    #[test]
    fn rise_reports_value_and_baseline() {
        let mut rng = Rng::new(8);
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let mut last = State::Quiet;
        for i in 0..403u64 {
            let v = if i < 400 { 100.0 + rng.normal() } else { 200.0 };
            last = d.observe(i * 10_000, v);
        }
        let State::Firing(r) = last else {
            panic!("must fire")
        };
        assert_eq!(r.value, 200.0);
        assert!((r.baseline - 100.0).abs() < 5.0, "baseline {}", r.baseline);
        assert!(r.score > 6.0);
    }

    #[test]
    fn rise_clears_once_the_value_is_back() {
        let mut rng = Rng::new(9);
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let series: Vec<f64> = (0..700)
            .map(|i| {
                let bump = if (400..420).contains(&i) { 100.0 } else { 0.0 };
                100.0 + bump + rng.normal() * 5.0
            })
            .collect();
        let states: Vec<bool> = series
            .iter()
            .enumerate()
            .map(|(i, v)| d.observe(i as u64, *v).is_firing())
            .collect();
        assert!(states[410]);
        assert!(!states[440], "quiet again 20 samples after the bump");
    }

    #[test]
    fn rise_ignores_a_step_down_and_fall_ignores_a_step_up() {
        let mut rng = Rng::new(10);
        let mut rise = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let mut fall = Detector::new(DetectorConfig::Fall(config())).unwrap();
        let down: Vec<f64> = (0..600)
            .map(|i| if i < 400 { 100.0 } else { 50.0 } + rng.normal() * 5.0)
            .collect();
        let up: Vec<f64> = down.iter().map(|v| 300.0 - v).collect();
        assert_eq!(first_firing(&mut rise, down.iter().copied()), None);
        assert_eq!(first_firing(&mut fall, up.iter().copied()), None);
    }

    #[test]
    fn fall_fires_on_a_step_down() {
        let mut rng = Rng::new(11);
        let mut d = Detector::new(DetectorConfig::Fall(config())).unwrap();
        let series = (0..600).map(|i| if i < 400 { 100.0 } else { 50.0 } + rng.normal() * 5.0);
        let first = first_firing(&mut d, series).expect("a step down must fire");
        assert!((400..410).contains(&first), "fired at {first}");
    }

    #[test]
    fn no_alert_during_warmup() {
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let series = (0..60).map(|i| if i < 30 { 1.0 } else { 1000.0 });
        assert_eq!(first_firing(&mut d, series), None);
    }

    #[test]
    fn stationary_noise_stays_quiet() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            for kind in [
                DetectorConfig::Rise(config()),
                DetectorConfig::Fall(config()),
            ] {
                let mut d = Detector::new(kind).unwrap();
                let series: Vec<f64> = (0..3000).map(|_| 100.0 + rng.normal() * 5.0).collect();
                assert_eq!(first_firing(&mut d, series), None, "seed {seed} {kind:?}");
            }
        }
    }

    #[test]
    fn a_flat_zero_series_does_not_fire_on_trivial_changes() {
        let mut rng = Rng::new(3);
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        // Zero with rare tiny blips, then a change of 0.0005: far beyond
        // the (zero) spread, under the absolute floor.
        let series = (0..600).map(|i| {
            let blip = if rng.uniform() < 0.01 { 1e-6 } else { 0.0 };
            if i < 400 {
                blip
            } else {
                0.0005
            }
        });
        assert_eq!(first_firing(&mut d, series), None);
        // A real error rate appearing from zero does fire.
        let mut d = Detector::new(DetectorConfig::Rise(config())).unwrap();
        let series = (0..600).map(|i| if i < 400 { 0.0 } else { 0.05 });
        assert!(first_firing(&mut d, series).is_some());
    }

    #[test]
    fn the_daily_swing_stays_quiet() {
        // Two days at 10 s: a 24 h sinusoid of half the mean, plus noise.
        for (seed, noise) in [(1, 0.05), (2, 0.02), (3, 0.10)] {
            let mut rng = Rng::new(seed);
            let series: Vec<f64> = (0..2 * 8640)
                .map(|i| daily_swing(i as u64 * 10_000, 100.0, 0.5) + rng.normal() * noise * 100.0)
                .collect();
            for kind in [
                DetectorConfig::Rise(config()),
                DetectorConfig::Fall(config()),
            ] {
                let mut d = Detector::new(kind).unwrap();
                assert_eq!(
                    first_firing(&mut d, series.iter().copied()),
                    None,
                    "noise {noise} {kind:?}"
                );
            }
        }
    }
}
