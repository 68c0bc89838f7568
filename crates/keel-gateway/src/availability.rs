//! Live availability as the gateway's clients saw it: per-minute counts,
//! availability and failures per thousand over windows, and every outage
//! with the time it took to recover.
//!
//! A pure tracker, part of the functional core: fed one outcome per client
//! request the gateway finished, `(t_ms, ok)`, with the time as an argument
//! (it never reads a clock), so a test replays any sequence exactly.
//!
//! # What counts as a failure
//!
//! [`status_is_failure`]: a status of 500 or above. That covers the nodes'
//! own 5xx and everything the gateway answers when the cluster could not
//! serve: 502 (no node reachable, connection failures), 503 (no leader, no
//! node available, the gateway's pending cap `overloaded`) and 504 (timeout,
//! outcome unknown). 1xx, 2xx, 3xx and 4xx are the system being available:
//! it gave a definite answer, and a 4xx is about the request, not the
//! system. That includes the gateway's 429 `rate_limited`: it is one client
//! over its own configured rate while every other client is served, an
//! answer the client controls by slowing down, so counting it would let one
//! noisy client mark the whole system down. Overload of the system itself
//! is 503 `overloaded`, a failure. A request whose client went away before
//! its answer is not an outcome: the gateway never finished it.
//!
//! # Outages
//!
//! An outage starts at the first failed request after a success (or at the
//! first request ever, if it fails) and ends at the first successful
//! request after it, as the issue defines it: so a single success ends an
//! outage, and a flapping system (fail, succeed, fail) has two outages, each
//! with its own recovery time. Clients saw the system answer in between.
//!
//! # Out-of-order outcomes
//!
//! Requests finish out of order, and workers stamp them before taking the
//! tracker's lock, so `t_ms` may be earlier than an outcome already
//! recorded. Such an outcome is counted in the minute of its own `t_ms`
//! while that minute is still kept (older: in the totals only), but for
//! outages it is taken to happen at the newest time seen: outage times only
//! move forward, so no duration is ever negative. A wall clock stepped back
//! is handled the same way (its outcomes end or extend outages at the newest
//! time seen until it catches up).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// One minute in milliseconds: the granularity of the per-minute counts.
pub const MINUTE_MS: u64 = 60_000;
/// Minutes of per-minute counts kept: one hour, the longest window
/// reported besides "since start", and what a dashboard shows at a glance;
/// 60 entries of a few words each.
pub const MINUTES_KEPT: usize = 60;
/// Closed outages kept, newest last: enough for a day of a bad week's
/// incidents, and small enough that the JSON answer stays a few kilobytes.
/// Older ones are still counted in [`Availability::outages_total`].
pub const OUTAGES_KEPT: usize = 100;

/// Whether a client's answer with `status` is a failure of availability:
/// 500 and above (see the module documentation for why 4xx, 429 included,
/// is not).
pub fn status_is_failure(status: u16) -> bool {
    status >= 500
}

/// Requests and failures counted together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests finished.
    pub requests: u64,
    /// Of them, failures.
    pub failures: u64,
}

impl Counts {
    fn add(&mut self, ok: bool) {
        self.requests += 1;
        self.failures += u64::from(!ok);
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            requests: self.requests + other.requests,
            failures: self.failures + other.failures,
        }
    }

    /// `1 - failures / requests`; 1.0 with no requests (nothing was asked,
    /// nothing was refused: a quiet hour spends no error budget).
    pub fn availability(&self) -> f64 {
        if self.requests == 0 {
            return 1.0;
        }
        1.0 - self.failures as f64 / self.requests as f64
    }

    /// Failures per thousand requests; 0.0 with no requests.
    pub fn failures_per_thousand(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.failures as f64 * 1000.0 / self.requests as f64
    }
}

/// A span of time availability is reported over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last minute.
    OneMinute,
    /// The last five minutes.
    FiveMinutes,
    /// The last hour.
    OneHour,
    /// Since the gateway started.
    All,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 4] = [
        Window::OneMinute,
        Window::FiveMinutes,
        Window::OneHour,
        Window::All,
    ];

    /// The label in metrics and JSON: `1m`, `5m`, `1h`, `all`.
    pub fn label(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
            Window::OneHour => "1h",
            Window::All => "all",
        }
    }

    /// Its length in minutes; `None` for since start.
    fn minutes(self) -> Option<u64> {
        match self {
            Window::OneMinute => Some(1),
            Window::FiveMinutes => Some(5),
            Window::OneHour => Some(60),
            Window::All => None,
        }
    }
}

/// One minute's counts, as reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinuteReport {
    /// The minute's first millisecond (UNIX epoch), a multiple of
    /// [`MINUTE_MS`].
    pub minute_start_ms: u64,
    /// Requests finished in it.
    pub requests: u64,
    /// Of them, failures.
    pub failures: u64,
    /// `1 - failures / requests`.
    pub availability: f64,
}

/// Availability over one [`Window`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// Requests finished in the window.
    pub requests: u64,
    /// Of them, failures.
    pub failures: u64,
    /// `1 - failures / requests`; 1.0 with no requests.
    pub availability: f64,
    /// Failures per thousand requests; 0.0 with no requests.
    pub failures_per_thousand: f64,
}

impl From<Counts> for WindowReport {
    fn from(c: Counts) -> Self {
        Self {
            requests: c.requests,
            failures: c.failures,
            availability: c.availability(),
            failures_per_thousand: c.failures_per_thousand(),
        }
    }
}

/// Availability over every [`Window`], by its label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// [`Window::OneMinute`].
    #[serde(rename = "1m")]
    pub one_minute: WindowReport,
    /// [`Window::FiveMinutes`].
    #[serde(rename = "5m")]
    pub five_minutes: WindowReport,
    /// [`Window::OneHour`].
    #[serde(rename = "1h")]
    pub one_hour: WindowReport,
    /// [`Window::All`].
    pub all: WindowReport,
}

/// An outage that has ended: from the first failed request to the first
/// successful one after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// When its first failed request finished (UNIX epoch ms).
    pub started_ms: u64,
    /// When the first successful request after it finished.
    pub recovered_ms: u64,
    /// `recovered_ms - started_ms`: the time to recover.
    pub duration_ms: u64,
    /// Failed requests during it.
    pub failed_requests: u64,
}

/// The outage going on, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOutage {
    /// When its first failed request finished (UNIX epoch ms).
    pub started_ms: u64,
    /// Failed requests so far.
    pub failed_requests: u64,
    /// How long it has lasted at the time of the report.
    pub open_for_ms: u64,
}

/// Everything the tracker knows, as `GET /gateway/availability` answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityReport {
    /// The time of the report (UNIX epoch ms).
    pub now_ms: u64,
    /// Each kept minute that had requests, oldest first.
    pub per_minute: Vec<MinuteReport>,
    /// Availability over each window.
    pub windows: Windows,
    /// The kept closed outages, oldest first (at most [`OUTAGES_KEPT`]).
    pub outages: Vec<Outage>,
    /// The outage going on, if any.
    pub open_outage: Option<OpenOutage>,
    /// Outages started since the gateway started, the open one included.
    pub outages_total: u64,
    /// The time to recover of the latest closed outage.
    pub last_recovery_ms: Option<u64>,
}

/// One kept minute.
#[derive(Clone, Copy, Debug)]
struct Minute {
    start_ms: u64,
    counts: Counts,
}

/// The outage going on: its start and failures so far.
#[derive(Clone, Copy, Debug)]
struct Open {
    started_ms: u64,
    failed_requests: u64,
}

/// The tracker: per-minute counts of the last [`MINUTES_KEPT`] minutes,
/// totals since start, the last [`OUTAGES_KEPT`] outages and the open one.
/// Its memory is bounded whatever it is fed.
#[derive(Debug, Default)]
pub struct Availability {
    /// Minutes with requests, by strictly increasing start, all within
    /// [`MINUTES_KEPT`] minutes of the newest.
    minutes: VecDeque<Minute>,
    total: Counts,
    outages: VecDeque<Outage>,
    open: Option<Open>,
    outages_total: u64,
    /// The newest time an outcome was taken to happen at.
    latest_ms: Option<u64>,
}

impl Availability {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a request that finished at `t_ms`, served (`ok`) or failed.
    pub fn record(&mut self, t_ms: u64, ok: bool) {
        self.total.add(ok);
        self.count_in_minute(t_ms, ok);
        let at_ms = self.latest_ms.map_or(t_ms, |l| l.max(t_ms));
        self.latest_ms = Some(at_ms);
        self.track_outage(at_ms, ok);
    }

    /// Counts the outcome in the minute of `t_ms`: a new newest minute
    /// evicts those it puts out of reach; an older one is counted in its
    /// minute if still kept.
    fn count_in_minute(&mut self, t_ms: u64, ok: bool) {
        let start_ms = t_ms - t_ms % MINUTE_MS;
        let newest_ms = self.minutes.back().map(|m| m.start_ms);
        if newest_ms.is_none_or(|n| start_ms > n) {
            let mut counts = Counts::default();
            counts.add(ok);
            self.minutes.push_back(Minute { start_ms, counts });
            self.evict_minutes(start_ms);
            return;
        }
        match self.minutes.binary_search_by_key(&start_ms, |m| m.start_ms) {
            Ok(i) => self.minutes[i].counts.add(ok),
            Err(i) if self.keeps(start_ms) => {
                let mut counts = Counts::default();
                counts.add(ok);
                self.minutes.insert(i, Minute { start_ms, counts });
            }
            // Too old for the per-minute counts: in the totals only.
            Err(_) => {}
        }
        debug_assert!(self.minutes.len() <= MINUTES_KEPT);
    }

    /// Whether a minute starting at `start_ms` is within reach of the
    /// newest kept one.
    fn keeps(&self, start_ms: u64) -> bool {
        self.minutes
            .back()
            .is_none_or(|n| start_ms + MINUTES_KEPT as u64 * MINUTE_MS > n.start_ms)
    }

    /// Drops the minutes more than [`MINUTES_KEPT`] minutes older than
    /// `newest_ms`.
    fn evict_minutes(&mut self, newest_ms: u64) {
        let reach_ms = MINUTES_KEPT as u64 * MINUTE_MS;
        while self
            .minutes
            .front()
            .is_some_and(|m| m.start_ms + reach_ms <= newest_ms)
        {
            self.minutes.pop_front();
        }
        assert!(
            self.minutes.len() <= MINUTES_KEPT,
            "distinct minutes within reach are at most MINUTES_KEPT"
        );
    }

    /// Opens, extends or closes an outage with an outcome at `at_ms`, which
    /// never goes back in time.
    fn track_outage(&mut self, at_ms: u64, ok: bool) {
        match (self.open.as_mut(), ok) {
            (None, true) => {}
            (None, false) => {
                self.open = Some(Open {
                    started_ms: at_ms,
                    failed_requests: 1,
                });
                self.outages_total += 1;
            }
            (Some(open), false) => open.failed_requests += 1,
            (Some(open), true) => {
                let closed = Outage {
                    started_ms: open.started_ms,
                    recovered_ms: at_ms,
                    duration_ms: at_ms - open.started_ms,
                    failed_requests: open.failed_requests,
                };
                self.open = None;
                if self.outages.len() == OUTAGES_KEPT {
                    self.outages.pop_front();
                }
                self.outages.push_back(closed);
            }
        }
    }

    /// `now_ms`, or the newest outcome's time if that is later (a report
    /// is never older than what it reports).
    fn now(&self, now_ms: u64) -> u64 {
        self.latest_ms.map_or(now_ms, |l| l.max(now_ms))
    }

    /// Counts over `window` at `now_ms`. A window of N minutes sums every
    /// kept minute that overlaps the last N minutes, so it covers between
    /// N and N + 1 minutes of history: never less than asked, and never an
    /// empty minute just after the clock turns one.
    pub fn counts(&self, window: Window, now_ms: u64) -> Counts {
        let Some(minutes) = window.minutes() else {
            return self.total;
        };
        let now_ms = self.now(now_ms);
        let from_ms = now_ms.saturating_sub(minutes * MINUTE_MS);
        self.minutes
            .iter()
            .rev()
            .take_while(|m| m.start_ms + MINUTE_MS > from_ms)
            .fold(Counts::default(), |sum, m| sum.plus(m.counts))
    }

    /// Each kept minute that had requests, oldest first.
    pub fn per_minute(&self) -> Vec<MinuteReport> {
        self.minutes
            .iter()
            .map(|m| MinuteReport {
                minute_start_ms: m.start_ms,
                requests: m.counts.requests,
                failures: m.counts.failures,
                availability: m.counts.availability(),
            })
            .collect()
    }

    /// The kept closed outages, oldest first.
    pub fn outages(&self) -> impl Iterator<Item = &Outage> {
        self.outages.iter()
    }

    /// The outage going on at `now_ms`, if any.
    pub fn open_outage(&self, now_ms: u64) -> Option<OpenOutage> {
        self.open.map(|o| OpenOutage {
            started_ms: o.started_ms,
            failed_requests: o.failed_requests,
            open_for_ms: self.now(now_ms) - o.started_ms,
        })
    }

    /// Outages started since the tracker was made, the open one included.
    pub fn outages_total(&self) -> u64 {
        self.outages_total
    }

    /// The time to recover of the latest closed outage.
    pub fn last_recovery_ms(&self) -> Option<u64> {
        self.outages.back().map(|o| o.duration_ms)
    }

    /// Everything, as of `now_ms`.
    pub fn report(&self, now_ms: u64) -> AvailabilityReport {
        let window = |w| WindowReport::from(self.counts(w, now_ms));
        AvailabilityReport {
            now_ms: self.now(now_ms),
            per_minute: self.per_minute(),
            windows: Windows {
                one_minute: window(Window::OneMinute),
                five_minutes: window(Window::FiveMinutes),
                one_hour: window(Window::OneHour),
                all: window(Window::All),
            },
            outages: self.outages.iter().cloned().collect(),
            open_outage: self.open_outage(now_ms),
            outages_total: self.outages_total,
            last_recovery_ms: self.last_recovery_ms(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
mod tests {
    use super::*;

    /// A minute boundary well after the epoch, so "earlier" never wraps.
    const T0: u64 = 1_000 * MINUTE_MS;

    fn feed(a: &mut Availability, from_ms: u64, to_ms: u64, step_ms: u64, ok: bool) {
        for t in (from_ms..to_ms).step_by(step_ms as usize) {
            a.record(t, ok);
        }
    }

    #[test]
    fn steady_success_is_fully_available() {
        let mut a = Availability::new();
        feed(&mut a, T0, T0 + 3 * MINUTE_MS, 100, true);
        for w in Window::ALL {
            let c = a.counts(w, T0 + 3 * MINUTE_MS);
            assert_eq!(c.availability(), 1.0, "{}", w.label());
            assert_eq!(c.failures_per_thousand(), 0.0);
        }
        assert_eq!(a.per_minute().len(), 3);
        assert!(a.per_minute().iter().all(|m| m.requests == 600));
        assert_eq!(a.outages_total(), 0);
        assert!(a.open_outage(T0).is_none());
    }

    #[test]
    fn nothing_asked_is_available_with_no_failures() {
        let a = Availability::new();
        let r = a.report(T0);
        assert_eq!(r.windows.all.availability, 1.0);
        assert_eq!(r.windows.one_minute.failures_per_thousand, 0.0);
        assert!(r.per_minute.is_empty() && r.outages.is_empty());
        assert_eq!(r.last_recovery_ms, None);
    }

    #[test]
    fn a_two_second_outage_inside_a_minute() {
        let mut a = Availability::new();
        // One request every 100 ms for a minute; from 10 s to 12 s all fail.
        feed(&mut a, T0, T0 + 10_000, 100, true);
        feed(&mut a, T0 + 10_000, T0 + 12_000, 100, false);
        feed(&mut a, T0 + 12_000, T0 + MINUTE_MS, 100, true);
        let m = a.per_minute();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].minute_start_ms, m[0].requests, m[0].failures),
            (T0, 600, 20)
        );
        assert!((m[0].availability - (1.0 - 20.0 / 600.0)).abs() < 1e-12);
        let c = a.counts(Window::OneMinute, T0 + MINUTE_MS - 1);
        assert!((c.failures_per_thousand() - 1000.0 * 20.0 / 600.0).abs() < 1e-9);
        let outages: Vec<_> = a.outages().cloned().collect();
        assert_eq!(
            outages,
            [Outage {
                started_ms: T0 + 10_000,
                recovered_ms: T0 + 12_000,
                duration_ms: 2_000,
                failed_requests: 20,
            }]
        );
        assert_eq!(a.last_recovery_ms(), Some(2_000));
        assert_eq!(a.outages_total(), 1);
    }

    #[test]
    fn an_open_outage_is_reported_until_a_success_ends_it() {
        let mut a = Availability::new();
        a.record(T0, false);
        a.record(T0 + 500, false);
        let open = a.open_outage(T0 + 2_000).unwrap();
        assert_eq!(
            (open.started_ms, open.failed_requests, open.open_for_ms),
            (T0, 2, 2_000)
        );
        assert_eq!(a.outages_total(), 1, "an outage from the very start");
        assert_eq!(a.outages().count(), 0);
        a.record(T0 + 3_000, true);
        assert!(a.open_outage(T0 + 3_000).is_none());
        assert_eq!(a.last_recovery_ms(), Some(3_000));
    }

    #[test]
    fn a_single_success_ends_a_flapping_outage() {
        let mut a = Availability::new();
        a.record(T0, true);
        for (t, ok) in [
            (100, false),
            (200, false),
            (300, true),
            (400, false),
            (900, true),
        ] {
            a.record(T0 + t, ok);
        }
        let d: Vec<_> = a
            .outages()
            .map(|o| (o.started_ms - T0, o.duration_ms, o.failed_requests))
            .collect();
        assert_eq!(d, [(100, 200, 2), (400, 500, 1)]);
        assert_eq!(a.outages_total(), 2);
        assert_eq!(a.counts(Window::All, T0).failures, 3);
    }

    #[test]
    fn minute_boundaries_split_counts_and_windows_cover_whole_minutes() {
        let mut a = Availability::new();
        a.record(T0 + MINUTE_MS - 1, false);
        a.record(T0 + MINUTE_MS, true);
        a.record(T0 + 2 * MINUTE_MS + 5, true);
        let m: Vec<_> = a
            .per_minute()
            .iter()
            .map(|m| (m.minute_start_ms - T0, m.requests, m.failures))
            .collect();
        assert_eq!(m, [(0, 1, 1), (MINUTE_MS, 1, 0), (2 * MINUTE_MS, 1, 0)]);
        // Just after the third minute began, "1m" still holds the second.
        let one = a.counts(Window::OneMinute, T0 + 2 * MINUTE_MS + 10);
        assert_eq!((one.requests, one.failures), (2, 0));
        let five = a.counts(Window::FiveMinutes, T0 + 2 * MINUTE_MS + 10);
        assert_eq!((five.requests, five.failures), (3, 1));
        // Ten minutes later, the short windows are empty; "all" is not.
        let later = T0 + 12 * MINUTE_MS;
        assert_eq!(a.counts(Window::FiveMinutes, later).requests, 0);
        assert_eq!(a.counts(Window::OneHour, later).requests, 3);
        assert_eq!(a.counts(Window::All, later + 100 * MINUTE_MS).requests, 3);
    }

    #[test]
    fn late_outcomes_count_in_their_minute_and_never_make_negative_durations() {
        let mut a = Availability::new();
        a.record(T0 + MINUTE_MS + 500, true);
        // Finished earlier, recorded later: a failure in the first minute.
        a.record(T0 + 100, false);
        a.record(T0 + MINUTE_MS + 200, true);
        let m: Vec<_> = a
            .per_minute()
            .iter()
            .map(|m| (m.minute_start_ms - T0, m.requests, m.failures))
            .collect();
        assert_eq!(m, [(0, 1, 1), (MINUTE_MS, 2, 0)]);
        // The outage is placed at the newest time seen: it starts and ends
        // at T0 + 60.5 s, a duration of zero, not a negative one.
        let o: Vec<_> = a.outages().cloned().collect();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].started_ms, T0 + MINUTE_MS + 500);
        assert_eq!(o[0].duration_ms, 0);
        // Far too late for any kept minute: counted in the totals only.
        a.record(T0 + 200 * MINUTE_MS, true);
        a.record(T0, false);
        assert_eq!(a.counts(Window::All, T0).requests, 5);
        assert_eq!(a.per_minute().len(), 1);
        assert!(a.open_outage(0).unwrap().open_for_ms == 0);
    }

    #[test]
    fn a_clock_of_zero_does_not_underflow() {
        let mut a = Availability::new();
        a.record(0, false);
        a.record(0, true);
        assert_eq!(a.counts(Window::OneMinute, 0).requests, 2);
        assert_eq!(a.last_recovery_ms(), Some(0));
    }

    #[test]
    fn memory_stays_bounded_over_a_long_flapping_run() {
        let mut a = Availability::new();
        // Ten hours, a request every 250 ms, failing for one second in
        // every ten, with some finishing out of order.
        let end = T0 + 10 * 60 * MINUTE_MS;
        let mut t = T0;
        while t < end {
            let ok = (t / 1_000) % 10 != 0;
            let jitter = if t % 1_000 == 500 { 300 } else { 0 };
            a.record(t - jitter, ok);
            t += 250;
        }
        assert!(a.minutes.len() <= MINUTES_KEPT);
        assert_eq!(a.outages.len(), OUTAGES_KEPT);
        assert_eq!(a.outages_total(), 10 * 60 * 6);
        let all = a.counts(Window::All, end);
        assert_eq!(all.requests, 10 * 60 * 60 * 4);
        assert_eq!(all.failures, all.requests / 10);
        let hour = a.counts(Window::OneHour, end);
        assert!((hour.availability() - 0.9).abs() < 1e-9, "{hour:?}");
        assert!(a.outages().all(|o| o.duration_ms == 1_000));
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let mut a = Availability::new();
        a.record(T0, true);
        a.record(T0 + 10, false);
        let r = a.report(T0 + 20);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["windows"]["1m"]["failures"], 1);
        assert_eq!(v["open_outage"]["started_ms"], T0 + 10);
        let back: AvailabilityReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn only_server_side_statuses_are_failures() {
        for s in [200, 201, 204, 301, 400, 401, 404, 409, 413, 422, 429] {
            assert!(!status_is_failure(s), "{s}");
        }
        for s in [500, 502, 503, 504, 507] {
            assert!(status_is_failure(s), "{s}");
        }
    }
}
