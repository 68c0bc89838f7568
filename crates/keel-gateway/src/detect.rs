//! Which backends are believed to be failing.
//!
//! Three detectors with different evidence: [`ActiveHealth`] judges the
//! gateway's own probes, [`PhiAccrual`] judges how late a heartbeat is
//! against that node's own rhythm, and [`OutlierEjection`] judges the
//! results of real traffic. The shell combines their verdicts into the
//! [`EligibleSet`] it hands to the balancer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{ConfigError, EligibleSet, NodeIndex, NODES_MAX};

/// Largest `rise` or `fall` threshold of [`ActiveHealth`].
///
/// At a typical 1–2 s probe interval, 100 probes is minutes of evidence;
/// anything longer hides a dead node from the operator rather than damping
/// flapping.
pub const HEALTH_THRESHOLD_MAX: u32 = 100;

/// Largest heartbeat history of a [`PhiAccrual`] detector.
///
/// Akka's and Cassandra's default: at a 1 s heartbeat it spans ~17 minutes,
/// enough for a stable mean and deviation, while one detector stays under
/// 8 KiB.
pub const PHI_SAMPLES_MAX: usize = 1000;

/// Default suspicion threshold of [`PhiAccrual`].
///
/// phi = 8 means the detector is wrong about 1 time in 10⁸ if the
/// inter-arrival times are normal; Akka's and Cassandra's default.
pub const PHI_THRESHOLD_DEFAULT: f64 = 8.0;

/// Largest share of nodes, in percent, [`OutlierEjection`] may be told to
/// eject at once: ejecting every node would turn a partial outage into a
/// total one.
pub const EJECTION_PERCENT_CAP: u8 = 100;

/// The outcome of one active health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The node answered the probe correctly and in time.
    Success,
    /// The probe failed, timed out or got a wrong answer.
    Failure,
}

/// Whether a node is considered able to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Receives traffic.
    Up,
    /// Receives no traffic until it has passed `rise` probes.
    Down,
}

/// Settings of [`ActiveHealth`]; the defaults are HAProxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveHealthConfig {
    /// Consecutive successes that bring a Down node Up (HAProxy default 2).
    pub rise: u32,
    /// Consecutive failures that take an Up node Down (HAProxy default 3).
    pub fall: u32,
    /// The state before the first probe: `Up` serves at once after a gateway
    /// restart, `Down` waits until the node has proved itself.
    pub start: HealthState,
}

impl Default for ActiveHealthConfig {
    fn default() -> Self {
        Self {
            rise: 2,
            fall: 3,
            start: HealthState::Up,
        }
    }
}

/// HAProxy-style rise/fall hysteresis over one node's probe results, so a
/// single lost probe does not flap the node out of rotation.
#[derive(Debug, Clone)]
pub struct ActiveHealth {
    config: ActiveHealthConfig,
    state: HealthState,
    /// Consecutive probes that disagree with `state`.
    streak: u32,
}

impl ActiveHealth {
    /// A detector for one node; `rise` and `fall` must be in
    /// `1..=HEALTH_THRESHOLD_MAX`.
    pub fn new(config: ActiveHealthConfig) -> Result<Self, ConfigError> {
        let valid = 1..=HEALTH_THRESHOLD_MAX;
        if !valid.contains(&config.rise) {
            return Err(ConfigError::Invalid {
                field: "rise",
                reason: "must be in 1..=HEALTH_THRESHOLD_MAX",
            });
        }
        if !valid.contains(&config.fall) {
            return Err(ConfigError::Invalid {
                field: "fall",
                reason: "must be in 1..=HEALTH_THRESHOLD_MAX",
            });
        }
        Ok(Self {
            config,
            state: config.start,
            streak: 0,
        })
    }

    /// Records one probe result; returns the new state when this probe
    /// changed it, so the caller can log the transition exactly once.
    pub fn record(&mut self, probe: Probe) -> Option<HealthState> {
        let (agrees, threshold, flipped) = match (self.state, probe) {
            (HealthState::Up, Probe::Success) | (HealthState::Down, Probe::Failure) => {
                (true, 0, self.state)
            }
            (HealthState::Up, Probe::Failure) => (false, self.config.fall, HealthState::Down),
            (HealthState::Down, Probe::Success) => (false, self.config.rise, HealthState::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < threshold {
            return None;
        }
        self.state = flipped;
        self.streak = 0;
        Some(flipped)
    }

    /// Takes the node Down at once, whatever the streak: for proof stronger
    /// than a failed probe, such as a refused connection (HAProxy's
    /// `on-error mark-down`). Returns `Some(Down)` when it was Up. The node
    /// comes back the usual way, after `rise` successful probes.
    pub fn mark_down(&mut self) -> Option<HealthState> {
        self.streak = 0;
        if self.state == HealthState::Down {
            return None;
        }
        self.state = HealthState::Down;
        Some(HealthState::Down)
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Whether the node should receive traffic.
    pub fn is_up(&self) -> bool {
        self.state == HealthState::Up
    }
}

/// Settings of [`PhiAccrual`]; the defaults are Akka cluster's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiAccrualConfig {
    /// Intervals kept, `2..=PHI_SAMPLES_MAX`.
    pub samples_max: usize,
    /// Floor of the deviation, so perfectly regular heartbeats do not make a
    /// few milliseconds of jitter look like a failure (Akka: 100 ms).
    pub std_deviation_min: Duration,
    /// Extra silence tolerated on top of the mean interval, for GC pauses and
    /// transient network hiccups (Akka: 3 s).
    pub heartbeat_pause_acceptable: Duration,
    /// Interval assumed before any has been measured (Akka: 1 s); seeds the
    /// history with mean ± a quarter of it.
    pub heartbeat_first_estimate: Duration,
    /// Suspicion level above which a heartbeat gap is not recorded (a gap
    /// that long is an outage, not the node's rhythm), as in Akka.
    pub threshold: f64,
}

impl Default for PhiAccrualConfig {
    fn default() -> Self {
        Self {
            samples_max: PHI_SAMPLES_MAX,
            std_deviation_min: Duration::from_millis(100),
            heartbeat_pause_acceptable: Duration::from_secs(3),
            heartbeat_first_estimate: Duration::from_secs(1),
            threshold: PHI_THRESHOLD_DEFAULT,
        }
    }
}

/// The phi-accrual failure detector (Hayashibara et al. 2004, as in Akka and
/// Cassandra) for one node: instead of a yes/no timeout it reports a
/// suspicion level, phi = −log10(P(a heartbeat is still this late)), learned
/// from the node's own inter-arrival times, so one threshold suits fast and
/// slow heartbeat rhythms alike.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    config: PhiAccrualConfig,
    /// Inter-arrival times, oldest first, at most `config.samples_max`.
    intervals_us: VecDeque<u64>,
    /// Exact integer running sums, so mean and variance never drift however
    /// long the detector runs.
    interval_sum_us: u128,
    interval_sq_sum_us: u128,
    heartbeat_last: Option<Instant>,
    /// The silence (ms since the last heartbeat) at which phi reaches
    /// `config.threshold` for the history as it is now: phi grows with the
    /// silence, so every request's trust check away from this point is one
    /// comparison instead of an `exp` and a `log10` per node.
    suspect_after_ms: f64,
}

/// How near [`PhiAccrual`]'s cached crossing a silence must be for phi
/// itself to decide (the crossing is found by bisection, exact to far less).
const CROSSING_MARGIN_MS: f64 = 0.01;

/// Halvings of the bracket around the crossing: from a bracket of days in
/// milliseconds down to well under [`CROSSING_MARGIN_MS`].
const CROSSING_BISECTIONS: u32 = 64;

impl PhiAccrual {
    /// A detector that has seen no heartbeat yet.
    pub fn new(config: PhiAccrualConfig) -> Result<Self, ConfigError> {
        if !(2..=PHI_SAMPLES_MAX).contains(&config.samples_max) {
            return Err(ConfigError::Invalid {
                field: "samples_max",
                reason: "must be in 2..=PHI_SAMPLES_MAX",
            });
        }
        if config.std_deviation_min.is_zero() {
            return Err(ConfigError::Invalid {
                field: "std_deviation_min",
                reason: "must be positive",
            });
        }
        if config.heartbeat_first_estimate.is_zero() {
            return Err(ConfigError::Invalid {
                field: "heartbeat_first_estimate",
                reason: "must be positive",
            });
        }
        if !(config.threshold > 0.0 && config.threshold.is_finite()) {
            return Err(ConfigError::Invalid {
                field: "threshold",
                reason: "must be positive and finite",
            });
        }
        Ok(Self {
            config,
            intervals_us: VecDeque::with_capacity(config.samples_max),
            interval_sum_us: 0,
            interval_sq_sum_us: 0,
            heartbeat_last: None,
            suspect_after_ms: f64::INFINITY,
        })
    }

    /// Records a heartbeat arriving at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        match self.heartbeat_last {
            None => {
                let mean_us = micros(self.config.heartbeat_first_estimate);
                let std_us = mean_us / 4;
                self.push_interval(mean_us - std_us);
                self.push_interval(mean_us + std_us);
            }
            Some(last) => {
                // A gap the detector already called a failure is an outage,
                // not the node's rhythm: learning it would blunt detection
                // of the next one.
                if self.is_available(now, self.config.threshold) {
                    self.push_interval(micros(now.saturating_duration_since(last)));
                }
            }
        }
        self.heartbeat_last = Some(now);
        self.suspect_after_ms = self.crossing_ms(self.config.threshold);
    }

    /// The suspicion level at `now`: 0 before the first heartbeat, about 0.3
    /// at the mean interval (plus the acceptable pause), growing without
    /// bound (up to +∞) as the silence lengthens.
    pub fn phi(&self, now: Instant) -> f64 {
        match self.heartbeat_last {
            Some(last) => self.phi_after(millis_f64(now.saturating_duration_since(last))),
            None => 0.0,
        }
    }

    /// Whether the node is still trusted at `now` under `threshold` (use
    /// [`PHI_THRESHOLD_DEFAULT`] unless tuned): `phi(now) < threshold`.
    pub fn is_available(&self, now: Instant, threshold: f64) -> bool {
        let Some(last) = self.heartbeat_last else {
            return 0.0 < threshold;
        };
        let silence_ms = millis_f64(now.saturating_duration_since(last));
        if threshold == self.config.threshold {
            if silence_ms < self.suspect_after_ms - CROSSING_MARGIN_MS {
                return true;
            }
            if silence_ms > self.suspect_after_ms + CROSSING_MARGIN_MS {
                return false;
            }
        }
        self.phi_after(silence_ms) < threshold
    }

    /// Phi after `silence_ms` without a heartbeat, for the history as it is.
    fn phi_after(&self, silence_ms: f64) -> f64 {
        let count = self.intervals_us.len() as f64;
        let mean_ms = self.interval_sum_us as f64 / count / 1000.0;
        let sq_mean_ms = self.interval_sq_sum_us as f64 / count / 1_000_000.0;
        let variance_ms = (sq_mean_ms - mean_ms * mean_ms).max(0.0);
        let std_ms = variance_ms
            .sqrt()
            .max(millis_f64(self.config.std_deviation_min));
        let expected_ms = mean_ms + millis_f64(self.config.heartbeat_pause_acceptable);
        phi_logistic(silence_ms, expected_ms, std_ms)
    }

    /// The silence at which phi reaches `threshold`, by bisection: phi never
    /// falls as the silence grows. Infinite if it never does.
    fn crossing_ms(&self, threshold: f64) -> f64 {
        if self.phi_after(0.0) >= threshold {
            return 0.0;
        }
        let mut hi = 1.0;
        while self.phi_after(hi) < threshold {
            hi *= 2.0;
            if !hi.is_finite() {
                return f64::INFINITY;
            }
        }
        let mut lo = 0.0;
        for _ in 0..CROSSING_BISECTIONS {
            let mid = lo + (hi - lo) / 2.0;
            if self.phi_after(mid) < threshold {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// How many intervals the history holds (for metrics and tests).
    pub fn samples(&self) -> usize {
        self.intervals_us.len()
    }

    fn push_interval(&mut self, interval_us: u64) {
        if self.intervals_us.len() == self.config.samples_max {
            if let Some(old) = self.intervals_us.pop_front() {
                self.interval_sum_us -= u128::from(old);
                self.interval_sq_sum_us -= u128::from(old) * u128::from(old);
            }
        }
        self.intervals_us.push_back(interval_us);
        self.interval_sum_us += u128::from(interval_us);
        self.interval_sq_sum_us += u128::from(interval_us) * u128::from(interval_us);
    }
}

/// Akka's phi: −log10 of the upper tail of the normal distribution, with the
/// CDF approximated by the logistic function `1 / (1 + e^(−y(1.5976 +
/// 0.070566 y²)))` (error < 1.4·10⁻⁴), which is cheap and has no erf.
fn phi_logistic(elapsed_ms: f64, mean_ms: f64, std_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_ms;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed_ms > mean_ms {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Settings of [`OutlierEjection`]; the defaults are Envoy's, except the
/// ejection cap (Envoy: 10 %), raised because a Keel cluster has few nodes
/// and 10 % of 3 would never eject anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failed requests that eject a node (Envoy default 5).
    pub consecutive_failures: u32,
    /// Ejection length for the first ejection; the n-th lasts n times this
    /// (Envoy default 30 s).
    pub ejection_base: Duration,
    /// Longest ejection, and how long a node must stay un-ejected before its
    /// ejection count is forgiven (Envoy default 300 s).
    pub ejection_max: Duration,
    /// Most nodes ejected at once, in percent of all nodes, rounded down
    /// (default 50).
    pub ejection_percent_max: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection_base: Duration::from_secs(30),
            ejection_max: Duration::from_secs(300),
            ejection_percent_max: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct OutlierNode {
    failures: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
}

/// Envoy-style passive outlier detection: a node that fails
/// `consecutive_failures` real requests in a row is ejected for a while,
/// longer each time it relapses, but never so many nodes that the rest
/// would be overwhelmed.
#[derive(Debug, Clone)]
pub struct OutlierEjection {
    config: OutlierConfig,
    nodes: Vec<OutlierNode>,
}

impl OutlierEjection {
    /// A detector over `node_count` nodes, none ejected.
    pub fn new(config: OutlierConfig, node_count: usize) -> Result<Self, ConfigError> {
        if node_count > NODES_MAX {
            return Err(ConfigError::TooManyNodes {
                count: node_count,
                max: NODES_MAX,
            });
        }
        if config.consecutive_failures == 0 {
            return Err(ConfigError::Invalid {
                field: "consecutive_failures",
                reason: "must be at least 1",
            });
        }
        if config.ejection_base.is_zero() || config.ejection_max < config.ejection_base {
            return Err(ConfigError::Invalid {
                field: "ejection_base",
                reason: "must be positive and at most ejection_max",
            });
        }
        if config.ejection_percent_max > EJECTION_PERCENT_CAP {
            return Err(ConfigError::Invalid {
                field: "ejection_percent_max",
                reason: "must be at most 100",
            });
        }
        Ok(Self {
            config,
            nodes: vec![OutlierNode::default(); node_count],
        })
    }

    /// A request to `node` succeeded: its failure streak starts over.
    pub fn record_success(&mut self, node: NodeIndex) {
        if let Some(state) = self.node_mut(node) {
            state.failures = 0;
        }
    }

    /// A request to `node` failed at `now`. Returns the end of the ejection
    /// when this failure ejected it. At the ejection cap the node stays in
    /// and its streak stays at the threshold, so it is ejected by its next
    /// failure once a slot frees. Failures of requests that were in flight
    /// when it was ejected are ignored.
    pub fn record_failure(&mut self, node: NodeIndex, now: Instant) -> Option<Instant> {
        if self.is_ejected(node, now) {
            return None;
        }
        let threshold = self.config.consecutive_failures;
        let failures = {
            let state = self.node_mut(node)?;
            state.failures = state.failures.saturating_add(1).min(threshold);
            state.failures
        };
        if failures < threshold || !self.ejection_allowed(now) {
            return None;
        }
        let config = self.config;
        let state = self.node_mut(node)?;
        // A node that stayed in for a whole `ejection_max` since its last
        // ejection ended is forgiven: its next ejection is short again.
        let forgiven = state
            .ejected_until
            .is_some_and(|until| now.saturating_duration_since(until) >= config.ejection_max);
        if forgiven {
            state.times_ejected = 0;
        }
        state.times_ejected = state.times_ejected.saturating_add(1);
        let ejection = config
            .ejection_base
            .checked_mul(state.times_ejected)
            .map_or(config.ejection_max, |d| d.min(config.ejection_max));
        let until = now + ejection;
        state.failures = 0;
        state.ejected_until = Some(until);
        Some(until)
    }

    /// Whether `node` is ejected at `now`; ejections expire by time alone.
    pub fn is_ejected(&self, node: NodeIndex, now: Instant) -> bool {
        self.nodes
            .get(node.0)
            .and_then(|s| s.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// Ends `node`'s ejection at `now`, for when it is known to be back by
    /// other means than time; its ejection count is kept, so a relapse is
    /// ejected for longer. Returns whether it was ejected.
    pub fn reinstate(&mut self, node: NodeIndex, now: Instant) -> bool {
        if !self.is_ejected(node, now) {
            return false;
        }
        if let Some(state) = self.node_mut(node) {
            state.failures = 0;
            state.ejected_until = Some(now);
        }
        true
    }

    /// How many nodes are ejected at `now`.
    pub fn ejected_count(&self, now: Instant) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.is_ejected(NodeIndex(i), now))
            .count()
    }

    /// The nodes not ejected at `now`, to intersect with other detectors.
    pub fn eligible(&self, now: Instant) -> EligibleSet {
        EligibleSet::from_fn(self.nodes.len(), |n| !self.is_ejected(n, now))
    }

    fn ejection_allowed(&self, now: Instant) -> bool {
        let allowed = self.nodes.len() * usize::from(self.config.ejection_percent_max) / 100;
        self.ejected_count(now) < allowed
    }

    fn node_mut(&mut self, node: NodeIndex) -> Option<&mut OutlierNode> {
        debug_assert!(node.0 < self.nodes.len(), "{node} is not a backend");
        self.nodes.get_mut(node.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn mark_down_is_immediate_and_rise_brings_the_node_back() {
        let mut h = ActiveHealth::new(ActiveHealthConfig::default()).unwrap();
        assert_eq!(h.record(Probe::Success), None);
        assert_eq!(h.mark_down(), Some(HealthState::Down));
        assert_eq!(h.mark_down(), None);
        assert!(!h.is_up());
        assert_eq!(h.record(Probe::Success), None);
        assert_eq!(h.record(Probe::Success), Some(HealthState::Up));
    }

    #[test]
    fn active_health_falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut h = ActiveHealth::new(ActiveHealthConfig::default()).unwrap();
        assert!(h.is_up());
        assert_eq!(h.record(Probe::Failure), None);
        assert_eq!(h.record(Probe::Failure), None);
        assert_eq!(h.record(Probe::Failure), Some(HealthState::Down));
        assert_eq!(h.state(), HealthState::Down);
        assert_eq!(h.record(Probe::Failure), None);
        assert_eq!(h.record(Probe::Success), None);
        assert_eq!(h.record(Probe::Success), Some(HealthState::Up));
        assert_eq!(h.record(Probe::Success), None);
    }

    #[test]
    fn active_health_needs_consecutive_results() {
        let mut h = ActiveHealth::new(ActiveHealthConfig::default()).unwrap();
        for _ in 0..10 {
            assert_eq!(h.record(Probe::Failure), None);
            assert_eq!(h.record(Probe::Failure), None);
            assert_eq!(h.record(Probe::Success), None);
        }
        assert!(h.is_up());
    }

    #[test]
    fn active_health_can_start_down() {
        let config = ActiveHealthConfig {
            rise: 3,
            fall: 1,
            start: HealthState::Down,
        };
        let mut h = ActiveHealth::new(config).unwrap();
        assert!(!h.is_up());
        assert_eq!(h.record(Probe::Success), None);
        assert_eq!(h.record(Probe::Success), None);
        assert_eq!(h.record(Probe::Success), Some(HealthState::Up));
        assert_eq!(h.record(Probe::Failure), Some(HealthState::Down));
    }

    #[test]
    fn active_health_rejects_out_of_range_thresholds() {
        for (rise, fall) in [(0, 1), (1, 0), (HEALTH_THRESHOLD_MAX + 1, 1)] {
            let config = ActiveHealthConfig {
                rise,
                fall,
                start: HealthState::Up,
            };
            assert!(ActiveHealth::new(config).is_err(), "{rise}/{fall}");
        }
    }

    /// A detector tuned for sub-second rhythms: no acceptable pause and a
    /// small deviation floor, so the learned rhythm alone decides.
    fn phi_detector(first_estimate: Duration) -> PhiAccrual {
        PhiAccrual::new(PhiAccrualConfig {
            std_deviation_min: ms(10),
            heartbeat_pause_acceptable: Duration::ZERO,
            heartbeat_first_estimate: first_estimate,
            ..PhiAccrualConfig::default()
        })
        .unwrap()
    }

    /// Heartbeats alternating `interval ± interval/10`; returns the last time.
    fn beat(d: &mut PhiAccrual, start: Instant, interval: Duration, count: u32) -> Instant {
        let mut now = start;
        for i in 0..count {
            let jitter = interval / 10;
            now += if i % 2 == 0 {
                interval - jitter
            } else {
                interval + jitter
            };
            d.heartbeat(now);
        }
        now
    }

    #[test]
    fn phi_is_zero_before_the_first_heartbeat() {
        let d = PhiAccrual::new(PhiAccrualConfig::default()).unwrap();
        let now = Instant::now();
        assert_eq!(d.phi(now + Duration::from_secs(3600)), 0.0);
        assert!(d.is_available(now, PHI_THRESHOLD_DEFAULT));
    }

    #[test]
    fn phi_stays_low_with_regular_heartbeats() {
        let mut d = phi_detector(Duration::from_secs(1));
        let start = Instant::now();
        let mut now = start;
        for i in 0..200 {
            // Just before each heartbeat (the longest regular gap is 1.1 s)
            // suspicion is about one deviation's worth: phi < 1.5.
            let next = now + if i % 2 == 0 { ms(900) } else { ms(1100) };
            if i > 0 {
                let phi = d.phi(next);
                assert!(phi < 1.5, "phi {phi} before heartbeat {i}");
                assert!(d.is_available(next, PHI_THRESHOLD_DEFAULT));
            }
            d.heartbeat(next);
            assert!(d.phi(next) < 0.5);
            now = next;
        }
    }

    #[test]
    fn phi_rises_past_threshold_after_silence_proportional_to_interval() {
        let start = Instant::now();
        let mut fast = phi_detector(ms(100));
        let fast_last = beat(&mut fast, start, ms(100), 100);
        let mut slow = phi_detector(Duration::from_secs(1));
        let slow_last = beat(&mut slow, start, Duration::from_secs(1), 100);

        // Half a second of silence is fatal at a 100 ms rhythm, nothing at 1 s.
        assert!(fast.phi(fast_last + ms(500)) > PHI_THRESHOLD_DEFAULT);
        assert!(slow.phi(slow_last + ms(500)) < 0.1);
        // Five seconds is fatal at 1 s.
        assert!(slow.phi(slow_last + ms(5000)) > PHI_THRESHOLD_DEFAULT);
        assert!(!slow.is_available(slow_last + ms(5000), PHI_THRESHOLD_DEFAULT));
        // And phi grows monotonically with the silence.
        let mut previous = 0.0;
        for t in (0..3000).step_by(50) {
            let phi = slow.phi(slow_last + ms(t));
            assert!(phi >= previous, "phi fell at {t} ms");
            previous = phi;
        }
    }

    #[test]
    fn phi_honours_the_acceptable_pause() {
        let mut d = PhiAccrual::new(PhiAccrualConfig::default()).unwrap();
        let last = beat(&mut d, Instant::now(), Duration::from_secs(1), 50);
        // Mean 1 s + 3 s acceptable pause: 3.5 s of silence is still fine.
        assert!(d.is_available(last + ms(3500), PHI_THRESHOLD_DEFAULT));
        assert!(!d.is_available(last + ms(6000), PHI_THRESHOLD_DEFAULT));
    }

    #[test]
    fn phi_recovers_when_heartbeats_resume_without_learning_the_outage() {
        let mut d = phi_detector(Duration::from_secs(1));
        let last = beat(&mut d, Instant::now(), Duration::from_secs(1), 50);
        let samples = d.samples();
        let back = last + Duration::from_secs(60);
        assert!(!d.is_available(back, PHI_THRESHOLD_DEFAULT));
        d.heartbeat(back);
        // The 60 s gap was not learned, so the rhythm is still 1 s.
        assert_eq!(d.samples(), samples);
        assert!(d.phi(back) < 0.5);
        let now = beat(&mut d, back, Duration::from_secs(1), 3);
        assert!(d.phi(now + ms(1000)) < 1.0);
        assert!(d.phi(now + ms(5000)) > PHI_THRESHOLD_DEFAULT);
    }

    #[test]
    fn phi_history_is_bounded() {
        let mut d = PhiAccrual::new(PhiAccrualConfig {
            samples_max: 10,
            ..PhiAccrualConfig::default()
        })
        .unwrap();
        beat(&mut d, Instant::now(), ms(500), 100);
        assert_eq!(d.samples(), 10);
        let mut full = PhiAccrual::new(PhiAccrualConfig::default()).unwrap();
        beat(
            &mut full,
            Instant::now(),
            ms(100),
            PHI_SAMPLES_MAX as u32 + 50,
        );
        assert_eq!(full.samples(), PHI_SAMPLES_MAX);
    }

    #[test]
    fn phi_logistic_matches_known_points() {
        // At the mean the logistic CDF is exactly 1/2: phi = log10(2).
        assert!((phi_logistic(1000.0, 1000.0, 100.0) - 2f64.log10()).abs() < 1e-12);
        // One deviation late: P(X > μ+σ) ≈ 0.1587, phi ≈ 0.80.
        assert!((phi_logistic(1100.0, 1000.0, 100.0) - 0.7995).abs() < 0.01);
        assert_eq!(phi_logistic(1_000_000.0, 1000.0, 1.0), f64::INFINITY);
    }

    #[test]
    fn phi_rejects_bad_configuration() {
        let bad = [
            PhiAccrualConfig {
                samples_max: 1,
                ..PhiAccrualConfig::default()
            },
            PhiAccrualConfig {
                samples_max: PHI_SAMPLES_MAX + 1,
                ..PhiAccrualConfig::default()
            },
            PhiAccrualConfig {
                std_deviation_min: Duration::ZERO,
                ..PhiAccrualConfig::default()
            },
            PhiAccrualConfig {
                heartbeat_first_estimate: Duration::ZERO,
                ..PhiAccrualConfig::default()
            },
            PhiAccrualConfig {
                threshold: f64::NAN,
                ..PhiAccrualConfig::default()
            },
        ];
        for config in bad {
            assert!(PhiAccrual::new(config).is_err(), "{config:?}");
        }
    }

    fn outliers(node_count: usize) -> OutlierEjection {
        OutlierEjection::new(OutlierConfig::default(), node_count).unwrap()
    }

    #[test]
    fn outlier_ejects_after_consecutive_failures_and_expires_by_time() {
        let mut o = outliers(4);
        let t0 = Instant::now();
        let n = NodeIndex(1);
        for _ in 0..4 {
            assert_eq!(o.record_failure(n, t0), None);
        }
        assert!(!o.is_ejected(n, t0));
        assert_eq!(o.record_failure(n, t0), Some(t0 + Duration::from_secs(30)));
        assert!(o.is_ejected(n, t0 + Duration::from_secs(29)));
        assert!(!o.eligible(t0).contains(n));
        assert_eq!(o.ejected_count(t0), 1);
        assert!(!o.is_ejected(n, t0 + Duration::from_secs(30)));
        assert!(o.eligible(t0 + Duration::from_secs(30)).contains(n));
    }

    #[test]
    fn outlier_success_resets_the_streak() {
        let mut o = outliers(4);
        let t0 = Instant::now();
        for _ in 0..10 {
            for _ in 0..4 {
                assert_eq!(o.record_failure(NodeIndex(0), t0), None);
            }
            o.record_success(NodeIndex(0));
        }
        assert!(!o.is_ejected(NodeIndex(0), t0));
    }

    #[test]
    fn outlier_ejection_grows_with_relapses_up_to_the_max_and_is_forgiven() {
        let mut o = outliers(2);
        let n = NodeIndex(0);
        let mut now = Instant::now();
        let mut eject = |now: Instant| {
            (0..4).for_each(|_| assert_eq!(o.record_failure(n, now), None));
            o.record_failure(n, now).unwrap() - now
        };
        let mut lengths = Vec::new();
        for _ in 0..12 {
            let length = eject(now);
            lengths.push(length.as_secs());
            now += length;
        }
        assert_eq!(
            lengths,
            vec![30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
        );
        // Clean for a whole ejection_max: the next ejection is short again.
        now += Duration::from_secs(300);
        assert_eq!(eject(now), Duration::from_secs(30));
    }

    #[test]
    fn outlier_never_ejects_beyond_the_percent_cap() {
        let mut o = outliers(5); // 50 % of 5 → at most 2 ejected
        let t0 = Instant::now();
        let fail = |o: &mut OutlierEjection, node: usize| {
            (0..5)
                .filter_map(|_| o.record_failure(NodeIndex(node), t0))
                .count()
        };
        assert_eq!(fail(&mut o, 0), 1);
        assert_eq!(fail(&mut o, 1), 1);
        assert_eq!(fail(&mut o, 2), 0);
        assert_eq!(o.ejected_count(t0), 2);
        assert_eq!(o.eligible(t0).len(), 3);
        // Once a slot frees, the capped node goes on its very next failure.
        let later = t0 + Duration::from_secs(30);
        assert!(o.record_failure(NodeIndex(2), later).is_some());
    }

    #[test]
    fn outlier_single_node_is_never_ejected_at_default_cap() {
        let mut o = outliers(1);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(o.record_failure(NodeIndex(0), t0), None);
        }
        assert!(!o.is_ejected(NodeIndex(0), t0));
    }

    #[test]
    fn outlier_ignores_failures_while_ejected() {
        let mut o = outliers(2);
        let t0 = Instant::now();
        (0..5).for_each(|_| {
            o.record_failure(NodeIndex(0), t0);
        });
        assert!(o.is_ejected(NodeIndex(0), t0));
        for _ in 0..20 {
            assert_eq!(o.record_failure(NodeIndex(0), t0 + ms(10)), None);
        }
        // Back in after 30 s with a clean streak: one failure does not eject.
        let back = t0 + Duration::from_secs(30);
        assert_eq!(o.record_failure(NodeIndex(0), back), None);
    }

    #[test]
    fn outlier_rejects_bad_configuration() {
        let default = OutlierConfig::default();
        let bad = [
            OutlierConfig {
                consecutive_failures: 0,
                ..default
            },
            OutlierConfig {
                ejection_base: Duration::ZERO,
                ..default
            },
            OutlierConfig {
                ejection_max: Duration::from_secs(1),
                ..default
            },
            OutlierConfig {
                ejection_percent_max: 101,
                ..default
            },
        ];
        for config in bad {
            assert!(OutlierEjection::new(config, 3).is_err(), "{config:?}");
        }
        assert!(OutlierEjection::new(default, NODES_MAX + 1).is_err());
    }

    proptest::proptest! {
        /// The cached crossing never changes a verdict: for any history and
        /// any silence, `is_available` is exactly `phi < threshold`, at the
        /// configured threshold (the cached path) and at others.
        #[test]
        fn availability_is_exactly_phi_under_the_threshold(
            intervals_ms in proptest::collection::vec(1u64..5_000, 1..40),
            silences_us in proptest::collection::vec(0u64..120_000_000, 1..40),
            std_min_ms in 1u64..500,
            pause_ms in 0u64..3_000,
            threshold in 0.5f64..20.0,
        ) {
            let mut d = PhiAccrual::new(PhiAccrualConfig {
                std_deviation_min: ms(std_min_ms),
                heartbeat_pause_acceptable: ms(pause_ms),
                threshold,
                ..PhiAccrualConfig::default()
            })
            .unwrap();
            let mut now = Instant::now();
            d.heartbeat(now);
            for i in intervals_ms {
                now += ms(i);
                d.heartbeat(now);
            }
            // Silences right at the crossing too, where the cache defers.
            let crossing = Duration::from_secs_f64(d.suspect_after_ms.min(1e9) / 1000.0);
            let near = [crossing.saturating_sub(Duration::from_nanos(1)), crossing, crossing + Duration::from_nanos(1)];
            for silence in silences_us.into_iter().map(Duration::from_micros).chain(near) {
                let at = now + silence;
                for t in [threshold, PHI_THRESHOLD_DEFAULT] {
                    proptest::prop_assert_eq!(d.is_available(at, t), d.phi(at) < t, "silence {:?}, threshold {}", silence, t);
                }
            }
        }
    }
}
