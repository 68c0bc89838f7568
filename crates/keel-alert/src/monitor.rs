//! The monitor: watches over named series, each a detector, opening and
//! closing alerts in a book as the detectors start and stop firing.
//!
//! The presets assume one sample every [`SAMPLE_INTERVAL_MS`]; their
//! sample counts (warm-up, windows, hysteresis) are chosen at that rate.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::book::{Alert, AlertBook, NewAlert, Severity};
use crate::detector::{
    BoundConfig, ConfigError, Detector, DetectorConfig, GrowthConfig, Hysteresis, Reading,
    ShiftConfig, State, TimeToLimitConfig, WINDOW_MAX,
};

/// The sampling interval the presets are tuned for: fine enough to alert
/// within a minute, coarse enough that sampling costs nothing.
pub const SAMPLE_INTERVAL_MS: u64 = 10_000;

/// Most detectors a monitor runs. A prefix watch makes one per matching
/// series (one per route, per peer); a bug that names series after request
/// ids must not grow memory without end. Past it, new series are counted
/// and ignored.
pub const DETECTORS_MAX: usize = 1024;

/// What one watch looks at and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// The alert's name, e.g. `p99_latency_up`.
    pub name: String,
    /// The alert's severity.
    pub severity: Severity,
    /// What the alert is about. For a prefix watch (see `series`) the
    /// subject is the series key with the prefix taken off instead.
    pub subject: String,
    /// The series key watched; one ending in `*` watches every key that
    /// starts with what comes before it, with a detector of its own each.
    pub series: String,
    /// What the value is, for the summary: "p99 latency".
    pub what: String,
    /// Its unit, written after numbers in the summary ("s", "/s", "B").
    pub unit: String,
    /// The detector and its parameters.
    pub detector: DetectorConfig,
}

/// Whether an alert opened or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The alert opened.
    Opened,
    /// The alert ended.
    Closed,
}

/// An alert that opened or closed during [`Monitor::observe`]; what a
/// notifier sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Opened or closed.
    pub change: Change,
    /// The alert as it is after the change.
    pub alert: Alert,
}

/// The robust-baseline parameters every rise and fall preset starts from.
///
/// - `alpha` 0.02: the level's time constant is 50 samples (about 8
///   minutes), far quicker than a daily swing (whose drift over 8 minutes
///   is under 2% of its amplitude), far slower than an incident.
/// - `window` [`WINDOW_MAX`] (40 minutes): the MAD needs more than half
///   the window to be anomalous before it grows, so a 20-minute incident
///   keeps its score.
/// - `warmup` 60 samples (10 minutes): enough deviations for a median.
/// - `fire_score` 6, `clear_score` 3: six robust standard deviations is
///   about one in 10^9 for normal noise, and heavy-tailed latencies need
///   the margin; clearing at 3 keeps a recovering series from flapping.
/// - fire after 3 samples (30 s), clear after 6 (a minute): a single slow
///   scrape is not an incident, and an alert does not end on one good one.
fn shift(min_delta: f64, min_rel: f64) -> ShiftConfig {
    ShiftConfig {
        alpha: 0.02,
        smooth: 1,
        window: WINDOW_MAX,
        warmup: 60,
        fire_score: 6.0,
        clear_score: 3.0,
        min_delta,
        min_rel,
        hysteresis: Hysteresis {
            fire_after: 3,
            clear_after: 6,
        },
    }
}

impl Watch {
    fn new(
        name: &str,
        severity: Severity,
        series: &str,
        subject: &str,
        what: &str,
        unit: &str,
        detector: DetectorConfig,
    ) -> Self {
        Self {
            name: name.to_owned(),
            severity,
            subject: subject.to_owned(),
            series: series.to_owned(),
            what: what.to_owned(),
            unit: unit.to_owned(),
            detector,
        }
    }

    /// p99 request latency (seconds) rising: fires on a rise of at least
    /// 5 ms and half the baseline, as no user notices less.
    pub fn p99_latency(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.005, 0.5));
        Self::new(
            "p99_latency_up",
            Severity::Warning,
            series,
            subject,
            "p99 latency",
            " s",
            d,
        )
    }

    /// Share of requests failing (0 to 1) rising: at least one request in
    /// a hundred more, and half again the baseline. Critical: customers
    /// see the errors.
    pub fn error_rate(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.01, 0.5));
        Self::new(
            "error_rate_up",
            Severity::Critical,
            series,
            subject,
            "error rate",
            "",
            d,
        )
    }

    /// Log fsync latency (seconds) rising: at least 2 ms and double the
    /// baseline; a disk slowing down makes every write slower.
    pub fn fsync_latency(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.002, 1.0));
        Self::new(
            "fsync_latency_up",
            Severity::Warning,
            series,
            subject,
            "fsync latency",
            " s",
            d,
        )
    }

    /// Orders refused per second rising: at least one every 10 s more,
    /// and double the baseline (some refusals, out of stock, are normal).
    pub fn refusal_rate(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.1, 1.0));
        Self::new(
            "refusals_up",
            Severity::Warning,
            series,
            subject,
            "refused orders",
            "/s",
            d,
        )
    }

    /// Payment failures per second rising: as refusals, but critical,
    /// since each is a customer who wanted to pay.
    pub fn payment_failure_rate(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.1, 1.0));
        Self::new(
            "payment_failures_up",
            Severity::Critical,
            series,
            subject,
            "payment failures",
            "/s",
            d,
        )
    }

    /// WARN log events per second rising (from [`crate::LogWatch`]): at
    /// least one a second more, and double the baseline.
    pub fn log_warn_rate(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(1.0, 1.0));
        Self::new(
            "log_warnings_up",
            Severity::Info,
            series,
            subject,
            "warnings logged",
            "/s",
            d,
        )
    }

    /// ERROR log events per second rising: at least one every 10 s more,
    /// and double the baseline.
    pub fn log_error_rate(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Rise(shift(0.1, 1.0));
        Self::new(
            "log_errors_up",
            Severity::Warning,
            series,
            subject,
            "errors logged",
            "/s",
            d,
        )
    }

    /// Orders placed per second falling: at least half the baseline and
    /// 0.05/s (one order in 20 s) lost, after a 30-minute warm-up so the
    /// baseline is a real one. Each compared value is the mean of 5
    /// minutes of samples: at a few orders a second a 10-s count varies by
    /// a third of itself, and a halving only stands out of a longer mean.
    /// Critical: lost orders are lost revenue.
    pub fn order_rate_down(series: &str, subject: &str) -> Self {
        let mut c = shift(0.05, 0.5);
        c.warmup = 180;
        c.smooth = 30;
        let d = DetectorConfig::Fall(c);
        Self::new(
            "order_rate_down",
            Severity::Critical,
            series,
            subject,
            "orders placed",
            "/s",
            d,
        )
    }

    /// Replication lag (entries) growing: a slope with a t statistic of 5
    /// over 10 minutes, at least one entry a second, while the lag is over
    /// 1000 entries (a follower that far behind cannot catch up on its own
    /// if it keeps losing ground). Clears under t = 2 or the floor.
    pub fn replication_lag(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Growth(GrowthConfig {
            window: 60,
            fire_t: 5.0,
            clear_t: 2.0,
            floor: 1000.0,
            min_slope_per_s: 1.0,
            hysteresis: Hysteresis {
                fire_after: 3,
                clear_after: 6,
            },
        });
        Self::new(
            "replication_lag_growing",
            Severity::Warning,
            series,
            subject,
            "replication lag",
            " entries",
            d,
        )
    }

    /// Free bytes on the data directory running out: zero projected within
    /// 6 hours (time for a human to add space during a night) from the
    /// fall over the last 10 minutes, or under 1 GiB whatever the trend.
    pub fn disk_time_to_full(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::TimeToLimit(TimeToLimitConfig {
            window: 60,
            limit_ms: 6 * 3600 * 1000,
            floor: (1u64 << 30) as f64,
            fire_t: 4.0,
            clear_score: 0.8,
            hysteresis: Hysteresis {
                fire_after: 3,
                clear_after: 6,
            },
        });
        Self::new(
            "disk_filling",
            Severity::Critical,
            series,
            subject,
            "free disk",
            " B",
            d,
        )
    }

    /// Clock offset from the majority (ms) past half of the node's
    /// configured `offset_max_ms`: a warning while the node may still
    /// lead (past the whole limit it may not). Three samples, so one
    /// delayed probe does not fire.
    pub fn clock_offset(series: &str, subject: &str, offset_max_ms: u64) -> Self {
        let d = DetectorConfig::Bound(BoundConfig {
            bound: (offset_max_ms as f64 / 2.0).max(1.0),
            hysteresis: Hysteresis {
                fire_after: 3,
                clear_after: 3,
            },
        });
        Self::new(
            "clock_offset_high",
            Severity::Warning,
            series,
            subject,
            "clock offset",
            " ms",
            d,
        )
    }

    /// A member that failed its health probes (a count of consecutive
    /// failed probes): critical after two probes in a row, cleared by one
    /// answered probe. A failure detector by heartbeat, not a baseline:
    /// a member that stops answering is an incident at once.
    pub fn member_unreachable(series: &str, subject: &str) -> Self {
        let d = DetectorConfig::Bound(BoundConfig {
            bound: 1.5,
            hysteresis: Hysteresis {
                fire_after: 1,
                clear_after: 1,
            },
        });
        Self::new(
            "member_unreachable",
            Severity::Critical,
            series,
            subject,
            "failed probes in a row",
            "",
            d,
        )
    }

    /// The subject for `key` if this watch looks at it.
    fn subject_of(&self, key: &str) -> Option<String> {
        match self.series.strip_suffix('*') {
            Some(prefix) => key.strip_prefix(prefix).map(str::to_owned),
            None => (self.series == key).then(|| self.subject.clone()),
        }
    }
}

/// One series under one watch.
#[derive(Debug)]
struct Instance {
    detector: Detector,
    subject: String,
    open: Option<u64>,
}

/// Watches, their detectors and the alerts they opened.
#[derive(Debug)]
pub struct Monitor {
    watches: Vec<Watch>,
    instances: HashMap<(usize, String), Instance>,
    book: AlertBook,
    series_refused: u64,
}

impl Monitor {
    /// A monitor of `watches`, once every detector configuration checks.
    pub fn new(watches: Vec<Watch>) -> Result<Self, ConfigError> {
        for w in &watches {
            w.detector.validate()?;
        }
        Ok(Self {
            watches,
            instances: HashMap::new(),
            book: AlertBook::new(),
            series_refused: 0,
        })
    }

    /// Feeds the samples taken at `t_ms`, each a series key and a value, to
    /// the watches that look at them; returns the alerts that opened and
    /// closed, in order.
    pub fn observe<K: AsRef<str>>(&mut self, t_ms: u64, samples: &[(K, f64)]) -> Vec<Transition> {
        let mut out = Vec::new();
        for (key, value) in samples {
            for i in 0..self.watches.len() {
                out.extend(self.feed(i, key.as_ref(), t_ms, *value));
            }
        }
        out
    }

    fn feed(&mut self, watch: usize, key: &str, t_ms: u64, value: f64) -> Option<Transition> {
        let w = &self.watches[watch];
        let subject = w.subject_of(key)?;
        let id = (watch, key.to_owned());
        if !self.instances.contains_key(&id) {
            if self.instances.len() >= DETECTORS_MAX {
                self.series_refused = self.series_refused.saturating_add(1);
                return None;
            }
            // Checked in `new`: the configuration is valid.
            let detector = Detector::new(w.detector).ok()?;
            let fresh = Instance {
                detector,
                subject,
                open: None,
            };
            self.instances.insert(id.clone(), fresh);
        }
        let inst = self.instances.get_mut(&id)?;
        let state = inst.detector.observe(t_ms, value);
        match (state, inst.open) {
            (State::Firing(r), None) => {
                let new = new_alert(w, &inst.subject, t_ms, &r);
                let alert = self.book.open(new)?;
                inst.open = Some(alert.id);
                Some(Transition {
                    change: Change::Opened,
                    alert,
                })
            }
            (State::Quiet, Some(open)) => {
                inst.open = None;
                let alert = self.book.close(open, t_ms)?;
                Some(Transition {
                    change: Change::Closed,
                    alert,
                })
            }
            _ => None,
        }
    }

    /// Drops every detector of the series `key` (a peer removed, a route
    /// gone) and closes its open alerts at `t_ms`, returned as
    /// transitions; a series that comes back starts over, warm-up and all.
    pub fn forget(&mut self, t_ms: u64, key: &str) -> Vec<Transition> {
        let mut open = Vec::new();
        self.instances.retain(|(_, k), inst| {
            if k != key {
                return true;
            }
            open.extend(inst.open);
            false
        });
        open.sort_unstable();
        open.into_iter()
            .filter_map(|id| self.book.close(id, t_ms))
            .map(|alert| Transition {
                change: Change::Closed,
                alert,
            })
            .collect()
    }

    /// Records an event (an alert that starts and ends at `t_ms`, e.g. a
    /// log message of a kind never seen before); returns its transitions.
    pub fn event(&mut self, t_ms: u64, new: NewAlert) -> Vec<Transition> {
        let Some(opened) = self.book.open(new) else {
            return Vec::new();
        };
        let mut out = vec![Transition {
            change: Change::Opened,
            alert: opened.clone(),
        }];
        out.extend(self.book.close(opened.id, t_ms).map(|alert| Transition {
            change: Change::Closed,
            alert,
        }));
        out
    }

    /// The alert book.
    pub fn book(&self) -> &AlertBook {
        &self.book
    }

    /// Series not watched because [`DETECTORS_MAX`] detectors ran.
    pub fn series_refused(&self) -> u64 {
        self.series_refused
    }
}

fn new_alert(w: &Watch, subject: &str, t_ms: u64, r: &Reading) -> NewAlert {
    NewAlert {
        name: w.name.clone(),
        severity: w.severity,
        subject: subject.to_owned(),
        summary: summary(w, subject, r),
        started_ms: t_ms,
        value: r.value,
        baseline: r.baseline,
    }
}

/// A sentence for a human: what, of what, the value and what it was
/// compared with.
fn summary(w: &Watch, subject: &str, r: &Reading) -> String {
    let (what, u) = (&w.what, &w.unit);
    let of = if subject.is_empty() {
        String::new()
    } else {
        format!(" of {subject}")
    };
    let (v, b) = (num(r.value), num(r.baseline));
    let slope = num(r.slope_per_s.unwrap_or(0.0));
    match w.detector {
        DetectorConfig::Rise(_) | DetectorConfig::Fall(_) => {
            let dir = if matches!(w.detector, DetectorConfig::Rise(_)) {
                "up"
            } else {
                "down"
            };
            let score = r.score.abs();
            format!("{what}{of} is {v}{u}, {dir} from a baseline of {b}{u} ({score:.1} robust deviations)")
        }
        DetectorConfig::Growth(_) => {
            format!("{what}{of} is {v}{u} and growing by {slope}{u} a second (fitted {b}{u} at the window's start)")
        }
        DetectorConfig::TimeToLimit(c) => match r.slope_per_s {
            Some(s) if s < 0.0 && r.value >= c.floor => {
                let hours = r.value / -s / 3600.0;
                format!("{what}{of} is {v}{u}, falling by {}{u} a second: zero in {hours:.1} h (fitted {b}{u} at the window's start)", num(-s))
            }
            _ => format!(
                "{what}{of} is {v}{u}, under the floor of {}{u}",
                num(c.floor)
            ),
        },
        DetectorConfig::Bound(_) => format!("{what}{of} is {v}{u}, beyond the bound of ±{b}{u}"),
    }
}

/// A number with about four significant digits, scientific when large or
/// tiny.
fn num(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e6).contains(&x.abs()) {
        return format!("{x:.3e}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testkit::Rng;

    fn presets() -> Vec<Watch> {
        vec![
            Watch::p99_latency("p99:/v1/orders", "/v1/orders"),
            Watch::error_rate("errors", "node"),
            Watch::fsync_latency("fsync", "node"),
            Watch::refusal_rate("refused", "node"),
            Watch::payment_failure_rate("payfail", "node"),
            Watch::log_warn_rate("warns", "node"),
            Watch::log_error_rate("errs", "node"),
            Watch::order_rate_down("orders", "node"),
            Watch::replication_lag("lag:*", ""),
            Watch::disk_time_to_full("free", "/data"),
            Watch::clock_offset("offset", "node", 500),
        ]
    }

    #[test]
    fn every_preset_is_valid() {
        assert!(Monitor::new(presets()).is_ok());
    }

    #[test]
    fn a_latency_spike_opens_then_closes_one_alert() {
        let mut m = Monitor::new(presets()).unwrap();
        let mut rng = Rng::new(5);
        let mut changes = Vec::new();
        for i in 0..500u64 {
            let p99 = if (300..330).contains(&i) {
                0.5
            } else {
                0.05 + rng.normal() * 0.005
            };
            let t = i * SAMPLE_INTERVAL_MS;
            changes.extend(m.observe(t, &[("p99:/v1/orders", p99), ("other", 1.0)]));
        }
        assert_eq!(changes.len(), 2, "{changes:?}");
        let (open, close) = (&changes[0], &changes[1]);
        assert_eq!(open.change, Change::Opened);
        assert_eq!(open.alert.name, "p99_latency_up");
        assert_eq!(open.alert.subject, "/v1/orders");
        assert_eq!(open.alert.started_ms, 302 * SAMPLE_INTERVAL_MS);
        assert!(
            open.alert
                .summary
                .contains("p99 latency of /v1/orders is 0.5 s"),
            "{}",
            open.alert.summary
        );
        assert_eq!(close.change, Change::Closed);
        assert_eq!(close.alert.id, open.alert.id);
        assert!(close.alert.ended_ms.unwrap() > open.alert.started_ms);
        assert_eq!(m.book().response().history.len(), 1);
        assert_eq!(m.book().active().count(), 0);
    }

    #[test]
    fn a_prefix_watch_runs_one_detector_per_series_with_its_subject() {
        let mut m = Monitor::new(presets()).unwrap();
        let mut opened = Vec::new();
        for i in 0..200u64 {
            let t = i * SAMPLE_INTERVAL_MS;
            let growing = 2000.0 + 50.0 * i as f64;
            for tr in m.observe(t, &[("lag:2", growing), ("lag:3", 10.0)]) {
                opened.push(tr.alert.subject);
            }
        }
        assert_eq!(opened, ["2"]);
    }

    #[test]
    fn forgetting_a_series_closes_its_alert_and_frees_its_detector() {
        let mut m = Monitor::new(presets()).unwrap();
        let samples = |v| [("offset", v)];
        assert!(m.observe(0, &samples(900.0)).is_empty());
        m.observe(1, &samples(900.0));
        assert_eq!(m.observe(2, &samples(900.0))[0].change, Change::Opened);
        let closed = m.forget(3, "offset");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].alert.ended_ms, Some(3));
        assert!(m.forget(4, "offset").is_empty());
        // Back, it starts over: three samples again before it fires.
        assert!(m.observe(5, &samples(900.0)).is_empty());
    }

    #[test]
    fn series_past_the_limit_are_refused() {
        let mut m = Monitor::new(vec![Watch::replication_lag("lag:*", "")]).unwrap();
        let keys: Vec<(String, f64)> = (0..DETECTORS_MAX + 5)
            .map(|i| (format!("lag:{i}"), 1.0))
            .collect();
        m.observe(0, &keys);
        assert_eq!(m.series_refused(), 5);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(120.0), "120");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(5e9), "5.000e9");
    }
}
