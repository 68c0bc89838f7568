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
        })
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
