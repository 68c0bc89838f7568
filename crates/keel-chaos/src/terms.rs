//! Terms never go back: each node's Raft term, sampled through the run
//! (restarts included), must never be lower than one it reported before.
//!
//! A node's term is the term of its vote, and Raft keeps the vote on disk
//! so that it only ever rises: a node that came back from a crash with an
//! older vote could vote a second time in a term it already voted in, for
//! another candidate, and elect two leaders whose logs disagree. Its term
//! going back is what that forgotten vote looks like from outside.
//!
//! Why not "one leader per term": openraft 0.9 without its
//! `single-term-leader` feature (Keel's build) orders leaders by
//! `(term, node id)`, under which two nodes may each lead the same term
//! legally, so that check would fail correct clusters. The samples keep the
//! leader each node named, for the report.
//!
//! Plain data in, a [`Finding`] out; [`crate::term_sampler`] takes the
//! samples.

use serde::{Deserialize, Serialize};

use crate::finding::{examples, Finding};

/// Name of the finding.
pub const TERMS_NEVER_GO_BACK: &str = "terms never go back";

/// One node's term and leader as it reported them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSample {
    /// The node that answered.
    pub node: u64,
    /// When the question was sent (ns since the run began).
    pub at_ns: u64,
    /// Its term.
    pub term: u64,
    /// The leader it knew, if any.
    pub leader: Option<u64>,
}

/// What a run's term sampling saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermRecord {
    /// Answers received (kept or not).
    pub answered: u64,
    /// Each node's first answer and every later one whose term or leader
    /// differed from that node's previous answer; repeats add nothing to
    /// the check.
    pub samples: Vec<TermSample>,
    /// Changed answers not kept because the record was full: the check
    /// then saw only part of the run.
    pub dropped: u64,
}

/// A node whose data was wiped at `at_ns` (a membership churn): it comes
/// back as a new member with an empty log and no vote, so its term starts
/// again from zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wipe {
    /// The wiped node.
    pub node: u64,
    /// When the wipe was done (ns since the run began): every answer from
    /// before it is from the old incarnation, every one after from the new.
    pub at_ns: u64,
}

/// The check: no node in `nodes` reported a term lower than one it had
/// reported before, unless its data was wiped in between. Fails on any
/// such drop; else skipped when a node was never sampled or samples were
/// dropped, since the check then saw only part of the run.
pub fn check_terms_never_go_back(record: &TermRecord, nodes: &[u64], wipes: &[Wipe]) -> Finding {
    let mut samples: Vec<&TermSample> = record.samples.iter().collect();
    samples.sort_by_key(|s| (s.node, s.at_ns));
    let mut problems = Vec::new();
    let mut highest: Option<&TermSample> = None;
    for s in samples {
        let earlier = highest.filter(|h| {
            h.node == s.node
                && !wipes
                    .iter()
                    .any(|w| w.node == s.node && h.at_ns < w.at_ns && w.at_ns <= s.at_ns)
        });
        match earlier {
            Some(h) if s.term < h.term => {
                problems.push(format!(
                    "node {}: term {} at {:.1}s after term {} at {:.1}s (leader then {}, now {})",
                    s.node,
                    s.term,
                    seconds(s.at_ns),
                    h.term,
                    seconds(h.at_ns),
                    leader_name(h.leader),
                    leader_name(s.leader)
                ));
            }
            Some(h) if s.term <= h.term => {}
            _ => highest = Some(s),
        }
    }
    if !problems.is_empty() {
        return Finding::fail(TERMS_NEVER_GO_BACK, examples(&problems));
    }
    let silent: Vec<String> = nodes
        .iter()
        .filter(|n| !record.samples.iter().any(|s| s.node == **n))
        .map(|n| format!("node {n}"))
        .collect();
    if !silent.is_empty() {
        return Finding::skip(
            TERMS_NEVER_GO_BACK,
            format!("never sampled: {}", silent.join(", ")),
        );
    }
    if record.dropped > 0 {
        return Finding::skip(
            TERMS_NEVER_GO_BACK,
            format!(
                "{} changed answers not kept (the record was full): the end of the run went unchecked",
                record.dropped
            ),
        );
    }
    let top = record.samples.iter().map(|s| s.term).max().unwrap_or(0);
    Finding::pass(
        TERMS_NEVER_GO_BACK,
        format!(
            "{} answers from {} nodes, {} changes kept; no node's term went back (highest {top}, {} wipes)",
            record.answered,
            nodes.len(),
            record.samples.len(),
            wipes.len()
        ),
    )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn leader_name(l: Option<u64>) -> String {
    l.map_or_else(|| "unknown".to_owned(), |l| format!("node {l}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn sample(node: u64, at_s: u64, term: u64, leader: Option<u64>) -> TermSample {
        TermSample {
            node,
            at_ns: at_s * S,
            term,
            leader,
        }
    }

    fn assert_says(f: &Finding, text: &str) {
        assert!(f.detail.contains(text), "{}", f.detail);
    }

    fn record(samples: Vec<TermSample>) -> TermRecord {
        TermRecord {
            answered: samples.len() as u64 * 10,
            samples,
            dropped: 0,
        }
    }

    #[test]
    fn terms_that_only_rise_pass_across_restarts_and_in_any_order() {
        // Node 2 restarts at 5 s and comes back with the term it had.
        let r = record(vec![
            sample(2, 6, 3, None),
            sample(1, 1, 1, Some(1)),
            sample(2, 1, 1, Some(1)),
            sample(1, 4, 3, Some(1)),
            sample(2, 4, 3, Some(1)),
            sample(2, 7, 3, Some(1)),
            sample(1, 8, 5, Some(2)),
            sample(2, 8, 5, Some(2)),
        ]);
        let f = check_terms_never_go_back(&r, &[1, 2], &[]);
        assert!(f.ok && !f.skipped, "{f}");
        assert_says(&f, "highest 5");
    }

    #[test]
    fn a_term_lower_than_one_reported_before_fails_naming_the_node_and_both_terms() {
        // After a power loss node 3 comes back at term 0 and elects itself
        // at term 1, below the term 2 it had reached.
        let r = record(vec![
            sample(3, 1, 1, Some(1)),
            sample(3, 2, 2, Some(2)),
            sample(3, 5, 0, None),
            sample(3, 6, 1, Some(3)),
            sample(1, 1, 2, Some(2)),
        ]);
        let f = check_terms_never_go_back(&r, &[1, 3], &[]);
        assert!(!f.ok && !f.skipped, "{f}");
        assert_eq!(f.name, TERMS_NEVER_GO_BACK);
        assert_says(
            &f,
            "2 problems: node 3: term 0 at 5.0s after term 2 at 2.0s (leader then node 2, now unknown)",
        );
        assert_says(&f, "node 3: term 1 at 6.0s after term 2");
    }

    #[test]
    fn a_drop_below_the_highest_term_is_caught_even_after_a_smaller_rise() {
        let r = record(vec![
            sample(1, 1, 4, None),
            sample(1, 2, 2, None),
            sample(1, 3, 3, None),
        ]);
        let f = check_terms_never_go_back(&r, &[1], &[]);
        assert!(!f.ok, "{f}");
        assert_says(&f, "term 3 at 3.0s after term 4");
    }

    #[test]
    fn a_wiped_node_starts_again_from_zero_but_only_after_its_wipe() {
        let samples = vec![
            sample(2, 1, 4, Some(1)),
            sample(2, 5, 0, None),
            sample(2, 6, 4, Some(1)),
        ];
        let wiped_at = |s: u64| Wipe {
            node: 2,
            at_ns: s * S,
        };
        let r = record(samples);
        assert!(check_terms_never_go_back(&r, &[2], &[wiped_at(3)]).ok);
        // A wipe of another node, or one after the drop, excuses nothing.
        let other = Wipe {
            node: 1,
            at_ns: 3 * S,
        };
        assert!(!check_terms_never_go_back(&r, &[2], &[other]).ok);
        assert!(!check_terms_never_go_back(&r, &[2], &[wiped_at(7)]).ok);
        // And a drop after the wipe still counts.
        let mut later = r.clone();
        later.samples.push(sample(2, 9, 1, None));
        assert!(!check_terms_never_go_back(&later, &[2], &[wiped_at(3)]).ok);
    }

    #[test]
    fn an_unsampled_node_or_a_full_record_is_skipped_not_passed() {
        let r = record(vec![sample(1, 1, 1, Some(1))]);
        let f = check_terms_never_go_back(&r, &[1, 2], &[]);
        assert!(!f.ok && f.skipped, "{f}");
        assert_says(&f, "never sampled: node 2");
        let mut full = r.clone();
        full.dropped = 3;
        let f = check_terms_never_go_back(&full, &[1], &[]);
        assert!(!f.ok && f.skipped, "{f}");
        let f = check_terms_never_go_back(&TermRecord::default(), &[1], &[]);
        assert!(!f.ok && f.skipped, "{f}");
        // A violation among the samples kept still fails.
        let mut broken = full.clone();
        broken.samples.push(sample(1, 2, 0, None));
        let f = check_terms_never_go_back(&broken, &[1, 2], &[]);
        assert!(!f.ok && !f.skipped, "{f}");
    }
}
