//! Recovery after losing a quorum for good: a survivor becomes a cluster of
//! one (etcd's `--force-new-cluster`), keeping everything it holds.
//!
//! When a majority of the voters is gone and will not come back, no leader
//! can be elected and nothing can be written, though a survivor still
//! holds every entry it appended. The recovery appends, after its last
//! entry, a membership entry naming this node as the only voter, and saves
//! a vote for a term above every term in its log, in one fsynced commit.
//! openraft takes the last membership in the log as effective whether or
//! not it is committed, so at the next start the node is a voter of a
//! cluster of one, elects itself and commits the forced entry and
//! everything before it. New members are then added as learners and
//! promoted, as for any cluster.
//!
//! The price, the same as etcd's: entries this node appended that the old
//! cluster never committed are committed now, and entries the old cluster
//! committed without this node are lost. The operator confirms it (`keel
//! admin recover` refuses otherwise), and the nodes of the old cluster
//! must never rejoin with their old data: they would find a different
//! history at the same terms. That is why the forced term is one above the
//! highest this node has seen: its new leader's entries never share a log
//! id with anything the old cluster could have written at that term.
//!
//! Offline only: the log is opened first, which fails while a node holds
//! the directory, and verifies every record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};

use crate::{LogStore, NodeId, StateMachineStore, StoreError};
use crate::{LOG_FILE, SNAPSHOT_DIR, STATE_FILE};

/// What a forced recovery did.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The node that is now the cluster's only voter, and its address.
    pub node: (NodeId, String),
    /// The members of the old cluster that are no longer members.
    pub dropped: Vec<(NodeId, String)>,
    /// The last log id this node held before: every entry up to it is
    /// committed once the node starts.
    pub last_held: Option<LogId<NodeId>>,
    /// What the old cluster was known here to have committed.
    pub committed_index: Option<u64>,
    /// What this node had applied to its state.
    pub applied: Option<LogId<NodeId>>,
    /// The forced membership entry.
    pub forced: LogId<NodeId>,
}

impl std::fmt::Display for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let index =
            |l: Option<LogId<NodeId>>| l.map_or("nothing".to_owned(), |l| l.index.to_string());
        writeln!(
            f,
            "node {} ({}) is now the only voter of a new cluster",
            self.node.0, self.node.1
        )?;
        writeln!(
            f,
            "last index it holds: {} (known committed: {}, applied: {}); every entry up to it \
             is committed when it starts",
            index(self.last_held),
            self.committed_index
                .map_or("nothing".to_owned(), |i| i.to_string()),
            index(self.applied),
        )?;
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .map(|(id, addr)| format!("{id} ({addr})"))
            .collect();
        writeln!(
            f,
            "dropped members: {}; never start them again on their old data: wipe them and \
             add them back as new members",
            if dropped.is_empty() {
                "none".into()
            } else {
                dropped.join(", ")
            }
        )?;
        write!(
            f,
            "forced membership entry: {}. Start the node as before, then add members with \
             `keel admin members add` and `keel admin members promote`",
            self.forced
        )
    }
}

/// Makes the stopped node `node`, whose data directory is `data_dir`, the
/// only voter of a new cluster (see the module docs). Refused when the
/// directory holds no log or when `node` is not a member of the membership
/// it holds.
pub fn force_new_cluster(data_dir: &Path, node: NodeId) -> Result<Recovered, StoreError> {
    let log_path = data_dir.join(LOG_FILE);
    let state_path = data_dir.join(STATE_FILE);
    if !log_path.is_file() || !state_path.is_file() {
        return Err(StoreError::other(
            data_dir,
            "holds no node data (log.redb and state.redb): nothing to recover",
        ));
    }
    let log = LogStore::open(&log_path)?;
    let sm = StateMachineStore::open(&state_path, &data_dir.join(SNAPSHOT_DIR))?;
    let reader = sm.reader()?;
    let applied = reader.applied()?;
    let in_state = reader.membership()?;
    drop(reader);
    // The effective membership: the log's last one above what was applied,
    // else the one the state holds (openraft's own rule at start-up).
    let membership = match log.last_membership_after(applied.map(|l| l.index))? {
        Some((_, m)) => m,
        None => in_state.membership().clone(),
    };
    let nodes: BTreeMap<NodeId, BasicNode> =
        membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
    let Some(me) = nodes.get(&node).cloned() else {
        return Err(StoreError::other(
            data_dir,
            format!(
                "node {node} is not a member of the cluster this directory holds (members: {:?}): \
                 give the id this node ran with",
                nodes.keys().collect::<Vec<_>>()
            ),
        ));
    };
    let committed_index = log.committed_index()?;
    let (last_held, vote) = log.last_and_vote()?;
    let forced = forced_log_id(node, last_held, vote);
    let entry = Entry::<crate::TypeConfig> {
        log_id: forced,
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([node])],
            BTreeMap::from([(node, me.clone())]),
        )),
    };
    // The node stands for the forced term as a candidate that voted for
    // itself: its vote never falls below one it gave before, and its first
    // election is for a term above every term of the old cluster.
    log.force_append(&entry, Vote::new(forced.leader_id.term, node))?;
    Ok(Recovered {
        node: (node, me.addr),
        dropped: nodes
            .into_iter()
            .filter(|(id, _)| *id != node)
            .map(|(id, n)| (id, n.addr))
            .collect(),
        last_held,
        committed_index,
        applied,
        forced,
    })
}

/// The forced entry's log id: right after the last one, at a term above
/// both the last entry's and the vote's.
fn forced_log_id(
    node: NodeId,
    last: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
) -> LogId<NodeId> {
    let seen = last
        .map_or(0, |l| l.leader_id.term)
        .max(vote.map_or(0, |v| v.leader_id.term));
    LogId::new(
        CommittedLeaderId::new(seen.saturating_add(1), node),
        last.map_or(1, |l| l.index.saturating_add(1)),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;

    #[test]
    fn the_forced_entry_follows_the_log_at_a_term_above_everything_seen() {
        let last = LogId::new(CommittedLeaderId::new(3, 2), 40);
        let id = forced_log_id(1, Some(last), Some(Vote::new(5, 3)));
        assert_eq!(id.index, 41);
        assert_eq!(id.leader_id.term, 6);
        assert_eq!(id.leader_id.node_id, 1);
        let id = forced_log_id(1, None, None);
        assert_eq!((id.index, id.leader_id.term), (1, 1));
    }

    #[test]
    fn an_empty_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = force_new_cluster(d.path(), 1).unwrap_err();
        assert!(e.to_string().contains("nothing to recover"), "{e}");
    }
}
