//! How the gateway names its backends and the set of those a request may use.

use std::fmt;

/// Most backends one gateway balances over.
///
/// A Keel cluster is a handful of Raft voters (3–7) plus perhaps a few
/// learners; 64 leaves ample room while letting [`EligibleSet`] be one
/// machine word, copied by value on every request with no allocation, and
/// keeping every O(nodes) scan on the request path to a few dozen steps.
pub const NODES_MAX: usize = 64;

/// A backend, named by its position in the gateway's node list.
///
/// An index rather than an address so per-node state lives in plain vectors
/// and the decision code never touches strings; the shell maps it back to
/// the node's address. Every component ignores an index past its node count
/// (and asserts against it in debug builds), since that is a caller bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub usize);

impl fmt::Display for NodeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

/// The backends a request may be sent to right now: healthy, not ejected,
/// breaker not open. A bitset over at most [`NODES_MAX`] nodes, so it is
/// `Copy`, allocation-free, and cannot hold a node twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct EligibleSet {
    bits: u64,
}

impl EligibleSet {
    /// The set with no node: a pick from it returns `None`.
    pub const fn empty() -> Self {
        Self { bits: 0 }
    }

    /// Nodes `0..count` (capped at [`NODES_MAX`]): the starting point before
    /// the detectors remove anything.
    pub fn all(count: usize) -> Self {
        let count = count.min(NODES_MAX);
        let bits = if count == NODES_MAX {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        Self { bits }
    }

    /// The nodes in `0..count` for which `eligible` says yes; the natural way
    /// to combine several detectors in one expression.
    pub fn from_fn(count: usize, mut eligible: impl FnMut(NodeIndex) -> bool) -> Self {
        let mut set = Self::empty();
        for i in 0..count.min(NODES_MAX) {
            if eligible(NodeIndex(i)) {
                set.insert(NodeIndex(i));
            }
        }
        set
    }

    /// Adds `node`; an index at or past [`NODES_MAX`] is ignored.
    pub fn insert(&mut self, node: NodeIndex) {
        debug_assert!(node.0 < NODES_MAX, "{node} is past NODES_MAX");
        if node.0 < NODES_MAX {
            self.bits |= 1 << node.0;
        }
    }

    /// Removes `node` if present.
    pub fn remove(&mut self, node: NodeIndex) {
        if node.0 < NODES_MAX {
            self.bits &= !(1 << node.0);
        }
    }

    /// Whether `node` may be used.
    pub fn contains(self, node: NodeIndex) -> bool {
        node.0 < NODES_MAX && self.bits & (1 << node.0) != 0
    }

    /// How many nodes are eligible.
    pub fn len(self) -> usize {
        self.bits.count_ones() as usize
    }

    /// Whether no node is eligible.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The eligible nodes in ascending index order (deterministic, so every
    /// tie-break built on it is too).
    pub fn iter(self) -> impl Iterator<Item = NodeIndex> {
        let mut bits = self.bits;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(NodeIndex(i))
        })
    }

    /// Only the nodes below `count`: guards the balancer against a set built
    /// for a longer node list.
    pub(crate) fn truncate(self, count: usize) -> Self {
        self.intersect(Self::all(count))
    }

    /// Nodes in both sets.
    pub fn intersect(self, other: Self) -> Self {
        Self {
            bits: self.bits & other.bits,
        }
    }
}

impl FromIterator<NodeIndex> for EligibleSet {
    fn from_iter<I: IntoIterator<Item = NodeIndex>>(iter: I) -> Self {
        let mut set = Self::empty();
        for node in iter {
            set.insert(node);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_covers_exactly_count_nodes() {
        assert_eq!(EligibleSet::all(0).len(), 0);
        assert_eq!(
            EligibleSet::all(3).iter().collect::<Vec<_>>(),
            vec![NodeIndex(0), NodeIndex(1), NodeIndex(2)]
        );
        assert_eq!(EligibleSet::all(NODES_MAX).len(), NODES_MAX);
        assert_eq!(EligibleSet::all(NODES_MAX + 10).len(), NODES_MAX);
    }

    #[test]
    fn insert_remove_contains_round_trip() {
        let mut set = EligibleSet::empty();
        assert!(set.is_empty());
        set.insert(NodeIndex(5));
        set.insert(NodeIndex(5));
        set.insert(NodeIndex(63));
        assert_eq!(set.len(), 2);
        assert!(set.contains(NodeIndex(5)) && set.contains(NodeIndex(63)));
        set.remove(NodeIndex(5));
        assert!(!set.contains(NodeIndex(5)));
        assert!(!set.contains(NodeIndex(64)));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![NodeIndex(63)]);
    }

    #[test]
    fn from_fn_and_from_iter_agree() {
        let a = EligibleSet::from_fn(10, |n| n.0 % 3 == 0);
        let b: EligibleSet = [0, 3, 6, 9].into_iter().map(NodeIndex).collect();
        assert_eq!(a, b);
        assert_eq!(a.truncate(4).len(), 2);
        assert_eq!(a.intersect(EligibleSet::all(7)).len(), 3);
    }
}
