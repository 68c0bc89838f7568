//! When a voter starts an election. openraft 0.9 draws each node's election
//! timeout once, at start-up, and checks it on a tick of 1.5 heartbeats.
//! Two followers whose fixed timeouts lie close together split the vote
//! after a leader dies, and split it again every round after, since both
//! wait the same fixed time again; the coarse tick adds up to 75 ms more.
//! Failover's tail came from those rounds. So the node turns openraft's own
//! election timer off and runs this one: the same rules (a follower of a
//! committed leader waits out the leader's lease first; a node that saw a
//! longer log than its own backs off), but a fresh random timeout for every
//! round, checked every [`ELECTION_POLL`], as Raft's paper and etcd do.
//!
//! Two more departures, both from failed rounds seen in chaos runs:
//! - openraft's back-off after seeing a longer log outlives the election
//!   that saw it and delays the next one, faults later. Here it is dropped
//!   as soon as a leader is heard from again.
//! - A voter that refuses a stale candidate keeps its own term, so its next
//!   candidacy can land on the stale one's term and be refused as a rival.
//!   A candidate refused by an uncommitted rival whose log is shorter than
//!   its own (a rival that cannot win) stands again at once, one term up.
//!
//! Safety does not depend on any of this: a vote still needs a quorum that
//! finds the candidate's log at least as long as theirs, and a voter still
//! refuses any candidate while its leader lease holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use keel_store::{NodeId, TypeConfig};

use crate::clock::ClockGuard;
use crate::signals::{ElectionSignals, Heard};

/// How often the election clock is checked.
pub const ELECTION_POLL: Duration = Duration::from_millis(10);

/// Where this node stands, as far as elections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It leads: nothing to do.
    Leader,
    /// A learner or a removed node: it never campaigns.
    NonVoter,
    /// A follower of a leader whose vote is committed: wait out its lease.
    Following,
    /// A candidate, or a follower of an uncommitted vote: no lease to wait.
    Campaigning,
}

/// The timing rules, free of clocks and Raft so they can be tested.
#[derive(Debug)]
pub struct ElectionClock {
    min: Duration,
    max: Duration,
    /// openraft's leader lease: voters refuse a candidate while it holds.
    lease: Duration,
    /// openraft's back-off for a node that saw a longer log.
    smaller_log_backoff: Duration,
    rng: SmallRng,
    since: Instant,
    drawn: Duration,
    backoff: Duration,
}

impl ElectionClock {
    /// A clock drawing timeouts in `[min_ms, max_ms)`, with openraft 0.9's
    /// lease (`max`) and smaller-log back-off (2 × `max`), counted from
    /// `start`.
    pub fn new(min_ms: u64, max_ms: u64, seed: u64, start: Instant) -> Self {
        let min = Duration::from_millis(min_ms);
        let max = Duration::from_millis(max_ms.max(min_ms + 1));
        let mut rng = SmallRng::seed_from_u64(seed);
        let drawn = rng.random_range(min..max);
        Self {
            min,
            max,
            lease: max,
            smaller_log_backoff: max * 2,
            rng,
            since: start,
            drawn,
            backoff: Duration::ZERO,
        }
    }

    /// The timeout of the round now being waited out.
    pub fn drawn(&self) -> Duration {
        self.drawn
    }

    fn redraw(&mut self, since: Instant) {
        self.since = since;
        self.drawn = self.rng.random_range(self.min..self.max);
    }

    /// Whether to start an election at `now`, given what was heard since
    /// the last check. A `true` counts as this node's own candidacy: the
    /// next round is timed from `now` with a new draw.
    pub fn poll(&mut self, now: Instant, heard: &Heard, standing: Standing) -> bool {
        if heard.contact > self.since {
            // A leader (or a candidate this node voted for) is about again:
            // whatever an earlier round learned about logs is stale.
            self.redraw(heard.contact);
            self.backoff = Duration::ZERO;
        }
        if heard.greater_log {
            self.backoff = self.smaller_log_backoff;
        }
        let wait = match standing {
            Standing::Leader | Standing::NonVoter => {
                // Time the next round from now, should leadership or a vote
                // come later.
                self.since = now;
                self.backoff = Duration::ZERO;
                return false;
            }
            Standing::Following => self.lease + self.drawn,
            Standing::Campaigning => self.drawn,
        };
        let outvoted = heard.outvoted_by_shorter_log && standing == Standing::Campaigning;
        if !outvoted && now.saturating_duration_since(self.since) < wait + self.backoff {
            return false;
        }
        self.backoff = Duration::ZERO;
        self.redraw(now);
        true
    }
}

/// The standing openraft's metrics describe.
pub fn standing(id: NodeId, m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> Standing {
    if m.state == ServerState::Leader {
        return Standing::Leader;
    }
    let voter = m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id);
    if !voter {
        Standing::NonVoter
    } else if m.vote.is_committed() && m.state == ServerState::Follower {
        Standing::Following
    } else {
        Standing::Campaigning
    }
}

/// Runs the election clock for node `id` until `stop` turns true.
pub async fn run(
    id: NodeId,
    raft: Raft<TypeConfig>,
    signals: Arc<ElectionSignals>,
    clock_guard: Arc<ClockGuard>,
    (min_ms, max_ms): (u64, u64),
    mut stop: watch::Receiver<bool>,
) {
    // The seed only spreads timeouts; any value is safe. Mixing in the id
    // keeps nodes started in the same instant apart.
    let seed = SmallRng::from_os_rng().random::<u64>() ^ id.rotate_left(32);
    let mut clock = ElectionClock::new(min_ms, max_ms, seed, Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ELECTION_POLL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (standing, term) = {
            let m = raft.metrics().borrow().clone();
            (standing(id, &m), m.current_term)
        };
        let s = signals.take();
        let now = Instant::now();
        signals.set_leading((standing == Standing::Leader).then_some(term), now);
        let waited = now.saturating_duration_since(clock.since);
        if clock.poll(now, &s, standing) {
            // A node whose wall clock does not agree with a majority's
            // never stands: it would stamp its time on entries as leader.
            // The round still counts, so it is timed again from now.
            if !clock_guard.may_lead() {
                tracing::debug!(
                    id,
                    "election timeout passed; not standing: clock may not lead"
                );
                continue;
            }
            tracing::info!(
                id,
                ?standing,
                silent_ms = now.saturating_duration_since(s.contact).as_millis() as u64,
                waited_ms = waited.as_millis() as u64,
                outvoted = s.outvoted_by_shorter_log,
                "election timeout passed; starting an election"
            );
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(id, error = %e, "could not start an election");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::raft::{VoteRequest, VoteResponse};
    use openraft::{LogId, Vote};

    const MS: Duration = Duration::from_millis(1);

    fn clock(t0: Instant) -> ElectionClock {
        ElectionClock::new(150, 300, 7, t0)
    }

    fn heard(contact: Instant) -> Heard {
        Heard {
            contact,
            greater_log: false,
            outvoted_by_shorter_log: false,
        }
    }

    fn greater_log(contact: Instant) -> Heard {
        Heard {
            greater_log: true,
            ..heard(contact)
        }
    }

    #[test]
    fn a_follower_waits_out_the_lease_and_one_timeout() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let wait = 300 * MS + c.drawn();
        assert!(!c.poll(t0 + wait - MS, &heard(t0), Standing::Following));
        assert!(c.poll(t0 + wait, &heard(t0), Standing::Following));
    }

    #[test]
    fn contact_with_the_leader_puts_the_election_off() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let later = t0 + 400 * MS;
        assert!(!c.poll(later, &heard(later), Standing::Following));
        assert!(!c.poll(later + 449 * MS, &heard(later), Standing::Following));
        assert!(c.poll(later + 600 * MS, &heard(later), Standing::Following));
    }

    #[test]
    fn a_candidate_retries_after_a_fresh_timeout_each_round() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let mut now = t0;
        let mut rounds = Vec::new();
        while rounds.len() < 200 {
            now += MS;
            if c.poll(now, &heard(t0), Standing::Campaigning) {
                rounds.push(c.drawn());
            }
        }
        assert!(rounds.iter().all(|d| (150 * MS..300 * MS).contains(d)));
        let distinct: std::collections::BTreeSet<_> = rounds.iter().collect();
        assert!(distinct.len() > 50, "timeouts must be redrawn each round");
        let (lo, hi) = rounds
            .iter()
            .fold((300 * MS, Duration::ZERO), |(lo, hi), d| {
                (lo.min(*d), hi.max(*d))
            });
        assert!(hi - lo > 100 * MS, "draws span the range: {lo:?}..{hi:?}");
    }

    #[test]
    fn a_leader_or_a_learner_never_campaigns() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        for s in [Standing::Leader, Standing::NonVoter] {
            assert!(!c.poll(t0 + Duration::from_secs(60), &heard(t0), s));
        }
        // Demoted later, it starts counting from then, not from t0.
        let then = t0 + Duration::from_secs(60);
        assert!(!c.poll(then + 100 * MS, &heard(t0), Standing::Campaigning));
        assert!(c.poll(then + 300 * MS, &heard(t0), Standing::Campaigning));
    }

    #[test]
    fn a_node_that_saw_a_longer_log_backs_off_once() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let d = c.drawn();
        assert!(!c.poll(t0 + d, &greater_log(t0), Standing::Campaigning));
        assert!(c.poll(t0 + d + 600 * MS, &heard(t0), Standing::Campaigning));
        let now = t0 + d + 600 * MS;
        let d2 = c.drawn();
        assert!(c.poll(now + d2, &heard(t0), Standing::Campaigning));
    }

    #[test]
    fn the_back_off_ends_when_a_leader_is_heard_from() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        assert!(!c.poll(t0 + MS, &greater_log(t0), Standing::Campaigning));
        // Another node won that election and leads; much later it dies.
        let led = t0 + 100 * MS;
        assert!(!c.poll(led, &heard(led), Standing::Following));
        let wait = 300 * MS + c.drawn();
        assert!(c.poll(led + wait, &heard(led), Standing::Following));
    }

    #[test]
    fn a_candidate_outvoted_by_a_shorter_log_stands_again_at_once() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        let outvoted = Heard {
            outvoted_by_shorter_log: true,
            ..heard(t0)
        };
        assert!(c.poll(t0 + MS, &outvoted, Standing::Campaigning));
        // A follower of a committed leader is never hurried.
        let mut c = clock(t0);
        assert!(!c.poll(t0 + MS, &outvoted, Standing::Following));
    }

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(openraft::CommittedLeaderId::new(term, 0), index))
    }

    #[test]
    fn vote_replies_are_read_for_what_they_say_about_logs() {
        let req = VoteRequest::new(Vote::new(5, 2), log(3, 100));
        let s = ElectionSignals::new();
        // Refused by a longer log: back off.
        s.vote_reply(
            &req,
            &VoteResponse::new(Vote::new(3, 1), log(3, 101), false),
        );
        let h = s.take();
        assert!(h.greater_log && !h.outvoted_by_shorter_log);
        assert!(!s.take().greater_log, "flags are one-shot");
        // Refused by a rival candidate at the same term with a shorter log.
        s.vote_reply(&req, &VoteResponse::new(Vote::new(5, 3), log(3, 99), false));
        assert!(s.take().outvoted_by_shorter_log);
        // Refused by a follower of a committed leader: not a rival.
        s.vote_reply(
            &req,
            &VoteResponse::new(Vote::new_committed(6, 1), log(3, 99), false),
        );
        assert!(!s.take().outvoted_by_shorter_log);
        // Refused by an older term (lease): not a rival either.
        s.vote_reply(&req, &VoteResponse::new(Vote::new(4, 3), log(3, 99), false));
        let h = s.take();
        assert!(!h.outvoted_by_shorter_log && !h.greater_log);
        // Granted: nothing to learn.
        s.vote_reply(&req, &VoteResponse::new(Vote::new(5, 2), log(3, 99), true));
        let h = s.take();
        assert!(!h.outvoted_by_shorter_log && !h.greater_log);
    }

    #[test]
    fn contact_never_goes_back() {
        let s = ElectionSignals::new();
        let before = s.take().contact;
        let at = Instant::now();
        s.heard_from_leader(at);
        assert_eq!(s.take().contact, at.max(before));
        s.heard_from_leader(before);
        assert_eq!(s.take().contact, at.max(before));
    }
}
