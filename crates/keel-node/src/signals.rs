//! The signals the RPC layer gives the election clock, in a module of their
//! own: `rpc` records them and `election` reads them, and `election` also
//! depends on `clock`, which depends on `rpc`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use openraft::raft::{VoteRequest, VoteResponse};

use keel_store::NodeId;

/// What the RPC layer tells the election clock: when this node last heard
/// from a leader (or granted a vote, which also defers its own candidacy),
/// and what the replies to its own vote requests showed.
#[derive(Debug)]
pub struct ElectionSignals {
    inner: Mutex<Heard>,
    /// The term this node leads in and when the election clock first saw
    /// it lead (within one poll of openraft's own record of it).
    leading: Mutex<Option<(u64, Instant)>>,
}

/// The signals since the clock last looked.
#[derive(Debug, Clone, Copy)]
pub struct Heard {
    /// Arrival of the latest accepted message from a leader, or of the
    /// latest vote request granted.
    pub contact: Instant,
    /// A vote reply named a longer log than this node's.
    pub greater_log: bool,
    /// A vote was refused by an uncommitted rival candidate at the same or
    /// a higher term whose log is shorter than this node's.
    pub outvoted_by_shorter_log: bool,
}

impl ElectionSignals {
    /// Signals with the last contact set to now (a node just started has
    /// had no reason yet to doubt its leader).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Heard {
                contact: Instant::now(),
                greater_log: false,
                outvoted_by_shorter_log: false,
            }),
            leading: Mutex::new(None),
        })
    }

    /// Records whether this node leads, and in which term (`None`: it
    /// does not): the time is kept from the first call that names a term.
    pub fn set_leading(&self, term: Option<u64>, now: Instant) {
        let mut l = keel_protocol::sync::lock(&self.leading);
        *l = match (term, *l) {
            (Some(t), Some((was, since))) if t == was => Some((was, since)),
            (Some(t), _) => Some((t, now)),
            (None, _) => None,
        };
    }

    /// When this node was first seen leading in its current term, if it
    /// leads. openraft's leader lease counts from its election, and until
    /// the lease runs out it refuses to vote for another candidate.
    pub fn leading_since(&self) -> Option<Instant> {
        keel_protocol::sync::lock(&self.leading).map(|(_, since)| since)
    }

    fn lock(&self) -> MutexGuard<'_, Heard> {
        // Every critical section is a plain field write that cannot panic,
        // so a poisoned lock still holds consistent data.
        keel_protocol::sync::lock(&self.inner)
    }

    /// A current leader's AppendEntries or InstallSnapshot that arrived at
    /// `at` was accepted, or this node granted a vote asked for at `at`.
    /// Time counts from arrival, as openraft's own timer does: an append
    /// whose fsync is slow does not prove the leader alive for longer.
    pub fn heard_from_leader(&self, at: Instant) {
        let mut s = self.lock();
        s.contact = s.contact.max(at);
    }

    /// Reads the reply to this node's vote request `req`.
    pub fn vote_reply(&self, req: &VoteRequest<NodeId>, reply: &VoteResponse<NodeId>) {
        let mut s = self.lock();
        if reply.last_log_id > req.last_log_id {
            // It cannot win until it has caught up: wait longer next time.
            s.greater_log = true;
        } else if !reply.vote_granted
            && reply.last_log_id < req.last_log_id
            && !reply.vote.is_committed()
            && reply.vote.leader_id().term >= req.vote.leader_id().term
        {
            s.outvoted_by_shorter_log = true;
        }
    }

    /// The signals, clearing the one-shot flags.
    pub fn take(&self) -> Heard {
        let mut s = self.lock();
        let out = *s;
        s.greater_log = false;
        s.outvoted_by_shorter_log = false;
        out
    }
}
