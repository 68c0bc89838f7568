//! The load drivers: N client tasks, closed loop (each waits for its
//! answer) or open loop (requests due on a [`Schedule`]), measured after a
//! warm-up. Every task stops by the end of the run, also when the caller's
//! future is dropped (the tasks are aborted then).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::gap::GapTracker;
use crate::hist::{new_hist, record};
use crate::schedule::{charged_ns, Pacer, Schedule, Step};
use crate::target::{OpResult, Target};
use crate::workload::{LoadMode, LoadSpec};
use crate::BenchError;

/// Pause of a client after an error before its next request, so a dead
/// endpoint that refuses at once does not turn the client into a spinning
/// error counter (client libraries back off too).
pub const ERROR_PAUSE: Duration = Duration::from_millis(20);
/// How often the progress bar is redrawn.
pub const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Operations that succeeded in the measured window.
    pub ok: u64,
    /// Business refusals by type (answers, not errors).
    pub refused: BTreeMap<String, u64>,
    /// Errors by type.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every answered operation (ok or refused), µs.
    pub hist: Histogram<u64>,
    /// Length of the measured window, s.
    pub seconds: f64,
    /// Longest interval without an answer, µs from measurement start.
    pub gap: GapTracker,
    /// Open loop: requests due in the window that were never sent because
    /// their client was still waiting at the end (charged up to the end).
    pub unsent: u64,
    /// Orders per operation.
    pub items_per_op: u64,
    /// When measurement started.
    pub started: Instant,
}

impl Measurement {
    /// Answers (ok + refused) in the window.
    pub fn answered(&self) -> u64 {
        self.ok + self.refused.values().sum::<u64>()
    }

    /// Errors in the window.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One client's share of a run.
struct ClientTally {
    ok: u64,
    refused: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
    unsent: u64,
}

impl ClientTally {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            ok: 0,
            refused: BTreeMap::new(),
            errors: BTreeMap::new(),
            hist: new_hist()?,
            unsent: 0,
        })
    }
}

/// The timeline of a run, ns from its start.
#[derive(Clone, Copy)]
struct Window {
    t0: Instant,
    measure_ns: u64,
    end_ns: u64,
}

impl Window {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn measured(&self, at_ns: u64) -> bool {
        at_ns >= self.measure_ns && at_ns < self.end_ns
    }
}

/// Counts one operation sent at `sent_ns` (closed loop) or due at `sent_ns`
/// (open loop) and answered at `done_ns`.
fn tally(
    t: &mut ClientTally,
    w: &Window,
    gaps: &Mutex<GapTracker>,
    r: OpResult,
    sent_ns: u64,
    done_ns: u64,
) {
    if !w.measured(sent_ns) {
        return;
    }
    let answered = |t: &mut ClientTally| {
        record(&mut t.hist, charged_ns(sent_ns, done_ns) / 1_000);
        if let Ok(mut g) = gaps.lock() {
            g.observe(done_ns.min(w.end_ns) / 1_000);
        }
    };
    match r {
        OpResult::Ok => {
            t.ok += 1;
            answered(t);
        }
        OpResult::Refused(kind) => {
            *t.refused.entry(kind).or_insert(0) += 1;
            answered(t);
        }
        OpResult::Error(kind) => *t.errors.entry(kind).or_insert(0) += 1,
    }
}

async fn closed_client<T: Target>(
    target: Arc<T>,
    client: u64,
    w: Window,
    gaps: Arc<Mutex<GapTracker>>,
) -> Result<ClientTally, BenchError> {
    let mut t = ClientTally::new()?;
    let mut conn = target.conn(client);
    let mut seq = 0u64;
    loop {
        let sent = w.now_ns();
        if sent >= w.end_ns {
            return Ok(t);
        }
        let r = target.op(&mut conn, client, seq).await;
        seq += 1;
        let failed = matches!(r, OpResult::Error(_));
        tally(&mut t, &w, &gaps, r, sent, w.now_ns());
        if failed {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

async fn open_client<T: Target>(
    target: Arc<T>,
    client: u64,
    schedule: Schedule,
    w: Window,
    gaps: Arc<Mutex<GapTracker>>,
) -> Result<ClientTally, BenchError> {
    let mut t = ClientTally::new()?;
    let mut conn = target.conn(client);
    let mut pacer = Pacer::new(schedule, client);
    let mut seq = 0u64;
    loop {
        let now = w.now_ns();
        if now >= w.end_ns {
            // Due but never sent: charged as answered at the end.
            for due in pacer.unsent(w.end_ns) {
                if w.measured(due) {
                    t.unsent += 1;
                    record(&mut t.hist, charged_ns(due, w.end_ns) / 1_000);
                }
            }
            return Ok(t);
        }
        match pacer.step(now, w.end_ns) {
            Step::Done => return Ok(t),
            Step::Wait(ns) => tokio::time::sleep(Duration::from_nanos(ns)).await,
            Step::Send { due_ns } => {
                let r = target.op(&mut conn, client, seq).await;
                seq += 1;
                let failed = matches!(r, OpResult::Error(_));
                tally(&mut t, &w, &gaps, r, due_ns, w.now_ns());
                if failed {
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }
}

/// Aborts the tasks it holds when dropped (an error or Ctrl-C path).
struct TaskSet<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for TaskSet<T> {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// A progress bar on stderr over the run (hidden when stderr is not a
/// terminal), or a hidden one.
pub fn progress_bar(label: &str, total: Duration, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total.as_millis() as u64);
    let style = ProgressStyle::with_template("{prefix:>32} [{bar:30}] {elapsed:>4} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(label.to_owned());
    pb
}

/// Runs `spec` against `target`: warm-up, then the measured window.
pub async fn drive<T: Target>(
    target: Arc<T>,
    spec: &LoadSpec,
    progress: &ProgressBar,
) -> Result<Measurement, BenchError> {
    let t0 = Instant::now();
    let w = Window {
        t0,
        measure_ns: spec.warmup.as_nanos() as u64,
        end_ns: (spec.warmup + spec.duration).as_nanos() as u64,
    };
    let gaps = Arc::new(Mutex::new(GapTracker::new(w.measure_ns / 1_000)));
    let mut tasks = TaskSet(Vec::new());
    for client in 0..spec.clients {
        let (target, gaps) = (target.clone(), gaps.clone());
        tasks.0.push(match spec.mode {
            LoadMode::Closed => tokio::spawn(closed_client(target, client, w, gaps)),
            LoadMode::Open { rate_per_s } => {
                let s = Schedule::new(rate_per_s, spec.clients)?;
                tokio::spawn(open_client(target, client, s, w, gaps))
            }
        });
    }
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    while w.now_ns() < w.end_ns {
        tick.tick().await;
        progress.set_position(t0.elapsed().as_millis() as u64);
    }
    let mut total = ClientTally::new()?;
    for h in std::mem::take(&mut tasks.0) {
        let t = h.await??;
        total.ok += t.ok;
        total.unsent += t.unsent;
        merge(&mut total.refused, t.refused);
        merge(&mut total.errors, t.errors);
        total
            .hist
            .add(&t.hist)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    progress.finish_and_clear();
    let mut gap = gaps
        .lock()
        .map(|g| *g)
        .map_err(|_| BenchError::Task("gap tracker lock poisoned".into()))?;
    // A gap still open at the end counts up to the end.
    gap.observe(w.end_ns / 1_000);
    Ok(Measurement {
        ok: total.ok,
        refused: total.refused,
        errors: total.errors,
        hist: total.hist,
        seconds: spec.duration.as_secs_f64(),
        gap: shift(gap, w.measure_ns / 1_000),
        unsent: total.unsent,
        items_per_op: target.items_per_op(),
        started: t0 + spec.warmup,
    })
}

/// The gap with times relative to measurement start.
fn shift(g: GapTracker, origin_us: u64) -> GapTracker {
    let mut out = GapTracker::new(0);
    out.longest_us = g.longest_us;
    out.longest_end_us = g.longest_end_us.saturating_sub(origin_us);
    out
}

fn merge(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_insert(0) += v;
    }
}
