//! The first guard on leader time: each node measures its wall clock's
//! offset from every peer's, and a node whose clock does not agree with a
//! majority's (within `clock_offset_max_ms`) neither stands for election
//! nor keeps leading, so its time is never stamped on an entry.
//!
//! The state machine bounds how far one entry may move its clock
//! (`keel_domain::apply::CLOCK_STEP_MAX_MS`) even if this guard fails; this
//! guard is what keeps a clock that is days off (NTP misconfigured, a VM
//! restored from a snapshot) from leading at all, as CockroachDB's maximum
//! clock offset does.
//!
//! Measurement: every [`CLOCK_PROBE_INTERVAL`] the node asks each peer for
//! its wall clock over internal RPC, and takes the peer's reading against
//! the midpoint of its own send and receive times (NTP's estimate; the
//! error is at most half the round trip, which the monotonic clock
//! measures, so a wall-clock jump cannot distort it). Samples older than
//! [`CLOCK_SAMPLE_MAX_AGE`] do not count.
//!
//! Verdict: this node agrees with a peer when their offset is at most the
//! limit plus the sample's uncertainty (half its round trip), so a loaded
//! machine's slow readings never make healthy clocks disagree, while a
//! clock that is seconds or days off still does. It may lead when it agrees with enough peers to make a majority
//! of the voters with itself. Two nodes cannot tell which of them is wrong,
//! so with too few fresh samples the node does not lead either: a node that
//! cannot reach a majority could not commit anything anyway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::Raft;
use tokio::sync::watch;

use keel_store::{NodeId, TypeConfig};

use crate::metrics::Metrics;
use crate::rpc::{path, PeerClient};

/// How often each peer's clock is read.
pub const CLOCK_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Longest one reading may take; a slower peer gives no sample this round
/// (its last one keeps counting until it is too old). Also bounds a
/// sample's uncertainty, half its round trip.
pub const CLOCK_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a sample counts. Clocks drift by milliseconds a day, so an
/// older sample still says where a peer's clock is, unless the clock was
/// stepped since (the stepped node itself sees that at its next reading of
/// any peer); this is long enough for a leader to ride out a peer paused or
/// overloaded for a while.
pub const CLOCK_SAMPLE_MAX_AGE: Duration = Duration::from_secs(30);
/// Default of `clock_offset_max_ms`: CockroachDB's default maximum offset.
pub const CLOCK_OFFSET_MAX_MS_DEFAULT: u64 = 500;

/// One reading of a peer's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// Peer's clock minus this node's (ms): positive when the peer is ahead.
    pub offset_ms: i64,
    /// Round trip of the reading.
    pub rtt: Duration,
    /// When it was taken (monotonic).
    pub at: Instant,
}

impl ClockSample {
    /// The sample from a reading: this node's wall clock `sent_wall_ms` when
    /// the request left, the peer's reading `peer_wall_ms`, and the round
    /// trip measured on the monotonic clock.
    pub fn from_reading(sent_wall_ms: u64, peer_wall_ms: u64, rtt: Duration, at: Instant) -> Self {
        let midpoint = i128::from(sent_wall_ms) + (rtt.as_millis() / 2) as i128;
        let offset = i128::from(peer_wall_ms) - midpoint;
        Self {
            offset_ms: offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            rtt,
            at,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) <= CLOCK_SAMPLE_MAX_AGE
    }

    /// Whether the peer's clock may be within `max_ms` of this node's: the
    /// offset, less the reading's uncertainty, is within the limit.
    fn agrees(&self, max_ms: u64) -> bool {
        let uncertainty_ms = (self.rtt.as_millis() / 2) as u64;
        self.offset_ms.unsigned_abs() <= max_ms.saturating_add(uncertainty_ms)
    }
}

/// What the samples say about this node's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockVerdict {
    /// Whether this node's clock agrees with a majority of the voters'
    /// (itself included), so it may stand for election and lead.
    pub ok: bool,
    /// Voters whose clock agrees with this node's, itself included.
    pub agreeing: usize,
    /// Voters needed for a majority.
    pub quorum: usize,
    /// The median of this node's offset from each voter with a usable
    /// sample, itself included (ms; positive when this node is ahead).
    pub offset_from_majority_ms: i64,
    /// Why it may not lead, for the log; empty when `ok`.
    pub reason: String,
}

/// Judges this node's clock from its samples: pure, so tests give it any
/// samples and any `now`.
pub fn judge(
    self_id: NodeId,
    voters: &[NodeId],
    samples: &BTreeMap<NodeId, ClockSample>,
    max_ms: u64,
    now: Instant,
) -> ClockVerdict {
    let quorum = voters.len() / 2 + 1;
    let is_voter = voters.contains(&self_id);
    let usable: Vec<&ClockSample> = voters
        .iter()
        .filter(|v| **v != self_id)
        .filter_map(|v| samples.get(v))
        .filter(|s| s.usable(now))
        .collect();
    let agreeing_peers = usable.iter().filter(|s| s.agrees(max_ms)).count();
    // This node's offset from each peer: the negated sample.
    let mut offsets: Vec<i64> = usable
        .iter()
        .map(|s| s.offset_ms.saturating_neg())
        .collect();
    let agreeing = agreeing_peers + usize::from(is_voter);
    let heard = offsets.len();
    offsets.push(0);
    offsets.sort_unstable();
    let offset_from_majority_ms = offsets[offsets.len() / 2];
    let ok = is_voter && agreeing >= quorum;
    let reason = if ok {
        String::new()
    } else if !is_voter {
        "not a voter".into()
    } else {
        format!(
            "clock agrees within {max_ms} ms with {agreeing} of {} voters (itself included; \
             {heard} peers measured), {quorum} needed; median offset from them {offset_from_majority_ms} ms",
            voters.len()
        )
    };
    ClockVerdict {
        ok,
        agreeing,
        quorum,
        offset_from_majority_ms,
        reason,
    }
}

/// The samples and the latest verdict, shared by the probe loop, the
/// election clock, the proposer and the read path.
#[derive(Debug)]
pub struct ClockGuard {
    max_ms: u64,
    samples: Mutex<BTreeMap<NodeId, ClockSample>>,
    /// The latest verdict's `ok`: false until the first probes are in.
    ok: AtomicBool,
    /// True while this node leads with a clock that may not: it proposes
    /// nothing, confirms no reads and sends no heartbeats, so the followers
    /// elect another leader.
    stepping_down: AtomicBool,
}

impl ClockGuard {
    /// A guard with the limit `max_ms`; it lets nothing lead until it has
    /// judged.
    pub fn new(max_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            max_ms,
            samples: Mutex::new(BTreeMap::new()),
            ok: AtomicBool::new(false),
            stepping_down: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, ClockSample>> {
        // Critical sections are single map operations that cannot panic.
        keel_protocol::sync::lock(&self.samples)
    }

    /// Records a reading of `peer`'s clock.
    pub fn record(&self, peer: NodeId, sample: ClockSample) {
        self.lock().insert(peer, sample);
    }

    /// Judges the clock now and keeps the verdict.
    pub fn judge(&self, self_id: NodeId, voters: &[NodeId], now: Instant) -> ClockVerdict {
        let mut samples = self.lock();
        // Forget peers that left the membership, keeping the map bounded
        // by it.
        samples.retain(|id, _| voters.contains(id));
        let v = judge(self_id, voters, &samples, self.max_ms, now);
        drop(samples);
        self.ok.store(v.ok, Ordering::Release);
        v
    }

    /// Whether this node's clock may stand for election and stamp entries.
    pub fn may_lead(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }

    /// Whether this node is a leader stepping down for its clock.
    pub fn stepping_down(&self) -> bool {
        self.stepping_down.load(Ordering::Acquire)
    }

    /// The latest sample of each peer.
    pub fn samples(&self) -> BTreeMap<NodeId, ClockSample> {
        self.lock().clone()
    }
}

/// Reads `addr`'s clock once.
async fn read_peer(peers: &PeerClient, addr: &str) -> Option<ClockSample> {
    let sent_wall = keel_protocol::wall_ms();
    let sent = Instant::now();
    let peer_wall: u64 = match peers
        .call(addr, path::CLOCK, &(), CLOCK_PROBE_TIMEOUT)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::debug!(addr, error = %e, "reading a peer's clock failed");
            return None;
        }
    };
    let now = Instant::now();
    Some(ClockSample::from_reading(
        sent_wall,
        peer_wall,
        now.saturating_duration_since(sent),
        now,
    ))
}

/// Reads every peer's clock each [`CLOCK_PROBE_INTERVAL`], judges this
/// node's, exports the offsets, and makes a leader whose clock may not lead
/// step down (and a node that stepped down whole again) until `stop`.
pub async fn run(
    id: NodeId,
    raft: Raft<TypeConfig>,
    peers: PeerClient,
    guard: Arc<ClockGuard>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_ok: Option<bool> = None;
    loop {
        let (voters, nodes) = {
            let m = raft.metrics().borrow().clone();
            let membership = m.membership_config.membership().clone();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            let nodes: Vec<(NodeId, String)> = membership
                .nodes()
                .filter(|(nid, _)| **nid != id)
                .map(|(nid, n)| (*nid, n.addr.clone()))
                .collect();
            (voters, nodes)
        };
        let reads = nodes.iter().map(|(nid, addr)| {
            let peers = &peers;
            async move { (*nid, read_peer(peers, addr).await) }
        });
        for (nid, sample) in futures::future::join_all(reads).await {
            if let Some(s) = sample {
                guard.record(nid, s);
                metrics.clock_offset_ms(nid).set(s.offset_ms);
            }
        }
        let verdict = guard.judge(id, &voters, Instant::now());
        metrics
            .clock_offset_from_majority_ms
            .set(verdict.offset_from_majority_ms);
        metrics.clock_ok.set(i64::from(verdict.ok));
        if last_ok != Some(verdict.ok) {
            if verdict.ok {
                tracing::info!(
                    id,
                    offset_from_majority_ms = verdict.offset_from_majority_ms,
                    "clock agrees with a majority; may lead"
                );
            } else if voters.contains(&id) {
                tracing::warn!(id, reason = %verdict.reason, "clock may not lead");
            } else {
                tracing::info!(id, reason = %verdict.reason, "clock may not lead");
            }
            last_ok = Some(verdict.ok);
        }
        step_down_if_needed(id, &raft, &guard, verdict.ok);
        tokio::select! {
            _ = tokio::time::sleep(CLOCK_PROBE_INTERVAL) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// openraft 0.9 has no call that hands leadership over. A leader whose
/// clock may not lead therefore stops its heartbeats (and, through
/// [`ClockGuard::stepping_down`], proposes nothing and confirms no reads,
/// both of which would reach the followers as AppendEntries): the followers
/// hear nothing, stand, and the one elected deposes it by its higher term.
/// Heartbeats come back on as soon as it is no longer leader or its clock
/// agrees again.
fn step_down_if_needed(id: NodeId, raft: &Raft<TypeConfig>, guard: &ClockGuard, ok: bool) {
    // One borrow at a time: a second read of the same watch while the first
    // is held deadlocks against openraft's next metrics write.
    let leads = {
        let rx = raft.metrics();
        let m = rx.borrow();
        m.current_leader == Some(id) && m.state == openraft::ServerState::Leader
    };
    let stepping = guard.stepping_down.load(Ordering::Acquire);
    if leads && !ok && !stepping {
        tracing::warn!(id, "leader's clock may not lead: stepping down");
        guard.stepping_down.store(true, Ordering::Release);
        raft.runtime_config().heartbeat(false);
    } else if stepping && (ok || !leads) {
        tracing::info!(id, leads, "no longer stepping down for the clock");
        raft.runtime_config().heartbeat(true);
        guard.stepping_down.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 24 * 3600 * 1000;

    fn sample(offset_ms: i64, at: Instant) -> ClockSample {
        ClockSample {
            offset_ms,
            rtt: Duration::from_millis(1),
            at,
        }
    }

    fn samples(of: &[(NodeId, i64)], at: Instant) -> BTreeMap<NodeId, ClockSample> {
        of.iter().map(|(id, o)| (*id, sample(*o, at))).collect()
    }

    #[test]
    fn a_node_two_days_ahead_or_behind_may_not_lead_and_its_peers_may() {
        let now = Instant::now();
        for skew in [2 * DAY_MS, -2 * DAY_MS] {
            // Node 1 is off: both peers read `-skew` from it.
            let v = judge(
                1,
                &[1, 2, 3],
                &samples(&[(2, -skew), (3, -skew)], now),
                500,
                now,
            );
            assert!(!v.ok, "{v:?}");
            assert_eq!(v.offset_from_majority_ms, skew);
            assert!(v.reason.contains("1 of 3"), "{}", v.reason);
            // Node 2 reads node 1 off by `skew` and node 3 right.
            let v = judge(2, &[1, 2, 3], &samples(&[(1, skew), (3, 3)], now), 500, now);
            assert!(v.ok, "{v:?}");
            assert!(v.offset_from_majority_ms.abs() <= 3, "{v:?}");
        }
    }

    #[test]
    fn too_few_fresh_samples_may_not_lead_but_a_lone_voter_may() {
        let t0 = Instant::now();
        let stale = t0 + CLOCK_SAMPLE_MAX_AGE + Duration::from_millis(1);
        let s = samples(&[(2, 10), (3, 10)], t0);
        assert!(judge(1, &[1, 2, 3], &s, 500, t0).ok);
        assert!(
            !judge(1, &[1, 2, 3], &s, 500, stale).ok,
            "stale samples count"
        );
        assert!(!judge(1, &[1, 2, 3], &BTreeMap::new(), 500, t0).ok);
        assert!(judge(1, &[1], &BTreeMap::new(), 500, t0).ok);
        // A learner never leads.
        assert!(!judge(4, &[1, 2, 3], &s, 500, t0).ok);
    }

    #[test]
    fn the_limit_is_inclusive_and_widened_by_half_the_round_trip() {
        let t0 = Instant::now();
        // 1 ms round trips: 500 agrees, 502 does not.
        let s = samples(&[(2, 500), (3, -502)], t0);
        let v = judge(1, &[1, 2, 3], &s, 500, t0);
        assert_eq!(v.agreeing, 2, "{v:?}");
        // A slow reading (400 ms round trip) of a peer 600 ms off may be
        // within the limit: it counts as agreeing; days off never does.
        let slow = |offset_ms| ClockSample {
            rtt: Duration::from_millis(400),
            ..sample(offset_ms, t0)
        };
        let s: BTreeMap<NodeId, ClockSample> = [(2, slow(600)), (3, slow(DAY_MS))].into();
        let v = judge(1, &[1, 2, 3], &s, 500, t0);
        assert_eq!(v.agreeing, 2, "{v:?}");
        let s: BTreeMap<NodeId, ClockSample> = [(2, slow(701)), (3, slow(DAY_MS))].into();
        assert!(!judge(1, &[1, 2, 3], &s, 500, t0).ok);
    }

    #[test]
    fn five_voters_need_two_agreeing_peers() {
        let now = Instant::now();
        let v = judge(
            1,
            &[1, 2, 3, 4, 5],
            &samples(&[(2, 0), (3, DAY_MS), (4, DAY_MS)], now),
            500,
            now,
        );
        assert_eq!((v.agreeing, v.quorum, v.ok), (2, 3, false));
        let v = judge(
            1,
            &[1, 2, 3, 4, 5],
            &samples(&[(2, 0), (3, 0), (4, DAY_MS)], now),
            500,
            now,
        );
        assert!(v.ok);
    }

    #[test]
    fn a_reading_is_taken_against_the_midpoint_of_the_round_trip() {
        let at = Instant::now();
        let s = ClockSample::from_reading(1_000, 1_060, Duration::from_millis(20), at);
        assert_eq!(s.offset_ms, 50);
        let s = ClockSample::from_reading(u64::MAX, 0, Duration::ZERO, at);
        assert!(s.offset_ms < 0);
    }
}
