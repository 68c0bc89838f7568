//! The open-loop schedule: requests are due at fixed times whatever the
//! server does, and each latency is measured from the time a request was
//! *due*, not from when it could be sent. A stall therefore shows in every
//! request scheduled behind it (no coordinated omission), as in wrk2.

use crate::BenchError;

/// Nanoseconds per second.
const NS_PER_S: u128 = 1_000_000_000;

/// Fixed arrival rate spread over `workers` connections: worker `k`'s
/// `i`-th request is due at `(i * workers + k) / rate`, so together the
/// workers send one request every `1 / rate` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    rate_per_s: u64,
    workers: u64,
}

impl Schedule {
    /// A schedule of `rate_per_s` requests per second over `workers`.
    pub fn new(rate_per_s: u64, workers: u64) -> Result<Self, BenchError> {
        if rate_per_s == 0 {
            return Err(BenchError::Arg(
                "rate must be at least 1 request per second".into(),
            ));
        }
        if workers == 0 {
            return Err(BenchError::Arg("at least one client is needed".into()));
        }
        Ok(Self {
            rate_per_s,
            workers,
        })
    }

    /// When worker `worker`'s `i`-th request is due, ns after the start.
    pub fn due_ns(&self, worker: u64, i: u64) -> u64 {
        let slot = u128::from(i) * u128::from(self.workers) + u128::from(worker);
        u64::try_from(slot * NS_PER_S / u128::from(self.rate_per_s)).unwrap_or(u64::MAX)
    }
}

/// What a worker does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing is due yet: wait this many ns.
    Wait(u64),
    /// Send now the request that was due at `due_ns` (possibly late).
    Send {
        /// When it was due.
        due_ns: u64,
    },
    /// No more requests are due before the end.
    Done,
}

/// One worker's walk along the schedule.
#[derive(Clone, Debug)]
pub struct Pacer {
    schedule: Schedule,
    worker: u64,
    next: u64,
}

impl Pacer {
    /// Worker `worker` of `schedule`, at its first request.
    pub fn new(schedule: Schedule, worker: u64) -> Self {
        Self {
            schedule,
            worker,
            next: 0,
        }
    }

    /// The next step at `now_ns`; requests due at or after `end_ns` are
    /// never sent.
    pub fn step(&mut self, now_ns: u64, end_ns: u64) -> Step {
        let due = self.schedule.due_ns(self.worker, self.next);
        if due >= end_ns {
            Step::Done
        } else if now_ns < due {
            Step::Wait(due - now_ns)
        } else {
            self.next += 1;
            Step::Send { due_ns: due }
        }
    }

    /// Requests due before `end_ns` that were never sent (the worker was
    /// still waiting on an earlier answer at the end): their due times.
    /// They are charged as if answered at the end, never dropped.
    pub fn unsent(&mut self, end_ns: u64) -> Vec<u64> {
        let mut out = Vec::new();
        loop {
            let due = self.schedule.due_ns(self.worker, self.next);
            if due >= end_ns {
                return out;
            }
            out.push(due);
            self.next += 1;
        }
    }
}

/// The latency charged to a request due at `due_ns` and answered at
/// `done_ns`: from when it was due, so time spent queued behind a slow
/// request counts.
pub fn charged_ns(due_ns: u64, done_ns: u64) -> u64 {
    done_ns.saturating_sub(due_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn workers_share_the_rate_evenly() {
        let s = Schedule::new(100, 4).unwrap();
        let mut due: Vec<u64> = (0..4)
            .flat_map(|k| (0..25).map(move |i| s.due_ns(k, i)))
            .collect();
        due.sort_unstable();
        let expected: Vec<u64> = (0..100).map(|n| n * 10 * MS).collect();
        assert_eq!(due, expected);
        assert_eq!(s.due_ns(1, 0), 10 * MS);
        assert_eq!(s.due_ns(1, 1), 50 * MS);
    }

    #[test]
    fn rate_zero_and_no_workers_are_refused() {
        assert!(matches!(Schedule::new(0, 1), Err(BenchError::Arg(_))));
        assert!(matches!(Schedule::new(10, 0), Err(BenchError::Arg(_))));
    }

    #[test]
    fn pacer_waits_until_due_and_stops_at_the_end() {
        let mut p = Pacer::new(Schedule::new(1_000, 1).unwrap(), 0);
        assert_eq!(p.step(0, 3 * MS), Step::Send { due_ns: 0 });
        assert_eq!(p.step(MS / 4, 3 * MS), Step::Wait(3 * MS / 4));
        assert_eq!(p.step(MS, 3 * MS), Step::Send { due_ns: MS });
        // Late: sent at once, still due at 2 ms.
        assert_eq!(p.step(5 * MS, 3 * MS), Step::Send { due_ns: 2 * MS });
        assert_eq!(p.step(5 * MS, 3 * MS), Step::Done);
    }

    /// Drives one worker on a fake clock: every answer takes `service(i)`.
    fn simulate(rate: u64, end_ns: u64, service: impl Fn(usize) -> u64) -> Vec<(u64, u64)> {
        let mut p = Pacer::new(Schedule::new(rate, 1).unwrap(), 0);
        let mut now = 0;
        let mut out = Vec::new();
        loop {
            match p.step(now, end_ns) {
                Step::Done => return out,
                Step::Wait(ns) => now += ns,
                Step::Send { due_ns } => {
                    now += service(out.len());
                    out.push((due_ns, charged_ns(due_ns, now)));
                }
            }
        }
    }

    #[test]
    fn a_stall_is_charged_to_every_request_behind_it() {
        // 1,000 requests/s, answers in 0.5 ms, but request 3 stalls 100 ms.
        let lat = simulate(1_000, 200 * MS, |i| if i == 3 { 100 * MS } else { MS / 2 });
        assert_eq!(lat[2], (2 * MS, MS / 2));
        assert_eq!(lat[3], (3 * MS, 100 * MS));
        // Request 4 was due at 4 ms, went out at 103 ms, answered at 103.5.
        assert_eq!(lat[4], (4 * MS, 99 * MS + MS / 2));
        // Each later one waited half a millisecond less, until caught up.
        for w in lat[4..].windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            assert!(b == MS / 2 || b + MS / 2 == a, "{a} then {b}");
        }
        let slowed = lat.iter().filter(|(_, l)| *l > 10 * MS).count();
        assert!(slowed >= 175, "only {slowed} requests carry the stall");
        // What a closed-loop (send-time) measurement would have shown: one.
        assert_eq!(lat.len(), 200);
    }

    #[test]
    fn requests_left_unsent_at_the_end_are_returned() {
        let mut p = Pacer::new(Schedule::new(1_000, 1).unwrap(), 0);
        assert_eq!(p.step(0, 5 * MS), Step::Send { due_ns: 0 });
        // The answer never came before the end: 1..4 ms were never sent.
        assert_eq!(p.unsent(5 * MS), vec![MS, 2 * MS, 3 * MS, 4 * MS]);
        assert_eq!(p.step(9 * MS, 5 * MS), Step::Done);
    }
}
