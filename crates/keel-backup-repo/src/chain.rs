//! Which backups, in which order, restore the state at a given point: pure
//! functions over manifests, no I/O.
//!
//! A restore starts from the newest full (or cold) backup at or before the
//! point and moves forward through links whose log ranges chain exactly
//! (`first_index == previous last_index + 1`) until one covers the point.
//! Index ranges are the truth; `parent` only constrains differentials
//! (applied to the full they were taken against) and guides pruning.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::manifest::{BackupId, Kind, Manifest};

/// The state a restore should reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// The newest index any backup covers.
    Latest,
    /// Log index: every entry up to and including it.
    Index(u64),
    /// Leader time, Unix ms: every entry stamped at or before it.
    TimeMs(u64),
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestorePoint::Latest => f.write_str("latest"),
            RestorePoint::Index(i) => write!(f, "index {i}"),
            RestorePoint::TimeMs(t) => write!(f, "time {t} ms"),
        }
    }
}

/// Why no restore chain reaches a point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No backups at all.
    #[error("the repository holds no backups; take a full backup first")]
    Empty,
    /// The point is past everything backed up.
    #[error("{point} is past the newest backup, which ends at index {newest_index} (time {newest_time_ms} ms); restore to latest or an earlier point")]
    NotCovered {
        /// The point asked for.
        point: RestorePoint,
        /// The newest index any backup covers.
        newest_index: u64,
        /// Leader time of that index.
        newest_time_ms: u64,
    },
    /// No full or cold backup at or before the point.
    #[error("no full or cold backup ends at or before {point} (index {point_index}); the oldest state that can be restored starts at the oldest full backup")]
    NoBase {
        /// The point asked for.
        point: RestorePoint,
        /// The index it resolved to.
        point_index: u64,
    },
    /// The links after the base stop short of the point.
    #[error("backup chain broken: backups reach index {after_index} but none starts at index {missing_from}; restore to an index at or before {after_index}, or take a new full backup")]
    BrokenChain {
        /// The last index the chain reaches.
        after_index: u64,
        /// The first index no backup provides.
        missing_from: u64,
    },
}

/// The backups to restore, in order, to reach `point`: a full or cold base
/// then the fewest contiguous links up to the first one covering the point.
/// The last link may go past the point: the caller trims entries after it.
pub fn plan_restore(
    manifests: &[Manifest],
    point: RestorePoint,
) -> Result<Vec<Manifest>, ChainError> {
    let newest = manifests
        .iter()
        .max_by_key(|m| (m.last_index, m.last_time_ms))
        .ok_or(ChainError::Empty)?;
    let not_covered = || ChainError::NotCovered {
        point,
        newest_index: newest.last_index,
        newest_time_ms: newest.last_time_ms,
    };
    // The newest index the restore must reach, and the last index or time
    // a base may hold (its state must not include anything after the point).
    let (point_index, base_time_max) = match point {
        RestorePoint::Latest => (newest.last_index, u64::MAX),
        RestorePoint::Index(i) if i > newest.last_index => return Err(not_covered()),
        RestorePoint::Index(i) => (i, u64::MAX),
        RestorePoint::TimeMs(t) if t > newest.last_time_ms => return Err(not_covered()),
        RestorePoint::TimeMs(t) => (last_index_at_time(manifests, t, newest.last_index), t),
    };
    let base = manifests
        .iter()
        .filter(|m| {
            m.kind.is_base() && m.last_index <= point_index && m.last_time_ms <= base_time_max
        })
        .max_by(|a, b| order_key(a).cmp(&order_key(b)))
        .ok_or(ChainError::NoBase { point, point_index })?;
    let links = shortest_links(manifests, base, point_index)?;
    Ok(std::iter::once(base).chain(links).cloned().collect())
}

/// Newest-wins order among backups covering the same ground.
fn order_key(m: &Manifest) -> (u64, u64, &str) {
    (m.last_index, m.created_ms, m.id.as_str())
}

/// An upper bound on the last index stamped at or before time `t`,
/// assuming leader time never decreases along the log: any backup whose
/// first (or last) entry is after `t` bounds it from above. The bound is
/// tight at backup boundaries, so a chain reaching it stops in the backup
/// that holds the point.
fn last_index_at_time(manifests: &[Manifest], t: u64, newest_index: u64) -> u64 {
    manifests
        .iter()
        .filter_map(|m| {
            if m.first_time_ms > t {
                Some(m.first_index.saturating_sub(1))
            } else if m.last_time_ms > t {
                Some(m.last_index.saturating_sub(1))
            } else {
                None
            }
        })
        .fold(newest_index, u64::min)
}

/// Breadth-first search over "index reached" from the base: the first
/// level that reaches `point_index` gives the chain with the fewest links.
fn shortest_links<'a>(
    manifests: &'a [Manifest],
    base: &'a Manifest,
    point_index: u64,
) -> Result<Vec<&'a Manifest>, ChainError> {
    if base.last_index >= point_index {
        return Ok(Vec::new());
    }
    // Links by the index they start at, newest-reaching first so ties are
    // broken the same way on every run.
    let mut by_start: BTreeMap<u64, Vec<&Manifest>> = BTreeMap::new();
    for m in manifests.iter().filter(|m| usable_link(m, base)) {
        by_start.entry(m.first_index).or_default().push(m);
    }
    for starts in by_start.values_mut() {
        starts.sort_by(|a, b| order_key(b).cmp(&order_key(a)));
    }
    // reached index -> (previous reached index, link that got there)
    let mut came_from: BTreeMap<u64, (u64, &Manifest)> = BTreeMap::new();
    let mut seen = BTreeSet::from([base.last_index]);
    let mut level = vec![base.last_index];
    let mut furthest = base.last_index;
    while !level.is_empty() {
        let mut next_level = Vec::new();
        for &at in &level {
            let Some(starting) = at.checked_add(1).and_then(|n| by_start.get(&n)) else {
                continue;
            };
            for &link in starting {
                // A differential applies only directly on its own base.
                if link.kind == Kind::Differential && at != base.last_index {
                    continue;
                }
                if seen.insert(link.last_index) {
                    came_from.insert(link.last_index, (at, link));
                    furthest = furthest.max(link.last_index);
                    next_level.push(link.last_index);
                }
            }
        }
        // Of the fewest-link chains reaching the point, the one that
        // overshoots least: less to apply, less for the caller to trim.
        if let Some(&end) = next_level.iter().filter(|&&e| e >= point_index).min() {
            return Ok(walk_back(&came_from, end, base.last_index));
        }
        level = next_level;
    }
    Err(ChainError::BrokenChain {
        after_index: furthest,
        missing_from: furthest.saturating_add(1),
    })
}

fn usable_link(m: &Manifest, base: &Manifest) -> bool {
    match m.kind {
        Kind::Incremental | Kind::Archive => m.first_index > base.last_index,
        Kind::Differential => {
            m.parent.as_ref() == Some(&base.id) && m.first_index == base.last_index + 1
        }
        Kind::Full | Kind::Cold => false,
    }
}

fn walk_back<'a>(
    came_from: &BTreeMap<u64, (u64, &'a Manifest)>,
    end: u64,
    start: u64,
) -> Vec<&'a Manifest> {
    let mut chain = Vec::new();
    let mut at = end;
    while at != start {
        // Invariant: every reached index except the base's was recorded
        // in `came_from` when it was first reached.
        let Some(&(prev, link)) = came_from.get(&at) else {
            break;
        };
        chain.push(link);
        at = prev;
    }
    chain.reverse();
    chain
}

/// How many full backups to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Newest full (or cold) backups kept, at least 1: older ones go with
    /// every backup that only they could restore.
    pub keep_full: usize,
}

/// What a prune keeps and deletes (see [`plan_prune`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrunePlan {
    /// Backups that stay.
    pub keep: Vec<BackupId>,
    /// Backups to delete.
    pub delete: Vec<BackupId>,
}

/// Decides which backups a prune deletes: fulls (and colds) beyond the
/// newest `keep_full` (at least 1), plus the links that depend only on
/// them. Never deletes a backup that a restore from a kept base could use
/// (any link reachable from a kept base by contiguous ranges: restores
/// follow ranges, not parent pointers, so a kept incremental may outlive
/// its parent). A link whose parent chain is broken is kept unless it ends
/// before the oldest kept full, so nothing is deleted on a guess.
pub fn plan_prune(manifests: &[Manifest], retention: Retention) -> PrunePlan {
    let mut bases: Vec<&Manifest> = manifests.iter().filter(|m| m.kind.is_base()).collect();
    bases.sort_by(|a, b| order_key(b).cmp(&order_key(a)));
    let kept_bases: Vec<&Manifest> = bases
        .iter()
        .take(retention.keep_full.max(1))
        .copied()
        .collect();
    let Some(oldest_kept) = kept_bases.last() else {
        return PrunePlan {
            keep: manifests.iter().map(|m| m.id.clone()).collect(),
            delete: Vec::new(),
        };
    };
    let by_id: BTreeMap<&BackupId, &Manifest> = manifests.iter().map(|m| (&m.id, m)).collect();
    let mut needed: BTreeSet<&BackupId> = BTreeSet::new();
    for base in &kept_bases {
        needed.insert(&base.id);
        needed.extend(reachable_links(manifests, base).into_iter().map(|m| &m.id));
    }
    let deleted_base =
        |id: &BackupId| by_id.get(id).is_some_and(|m| m.kind.is_base()) && !needed.contains(id);
    let mut delete: BTreeSet<&BackupId> = BTreeSet::new();
    for m in manifests {
        if needed.contains(&m.id) {
            continue;
        }
        let doomed = if m.kind.is_base() {
            true
        } else {
            match root_of(m, &by_id) {
                Some(root) => deleted_base(root),
                None => m.last_index <= oldest_kept.last_index,
            }
        };
        if doomed {
            delete.insert(&m.id);
        }
    }
    let mut plan = PrunePlan::default();
    for m in manifests {
        if delete.contains(&m.id) {
            plan.delete.push(m.id.clone());
        } else {
            plan.keep.push(m.id.clone());
        }
    }
    plan.keep.sort();
    plan.delete.sort();
    plan
}

/// The base a link's parent pointers lead to, `None` if the chain of
/// parents is broken, absent (an archive without parent) or looping.
fn root_of<'a>(m: &'a Manifest, by_id: &BTreeMap<&BackupId, &'a Manifest>) -> Option<&'a BackupId> {
    let mut at = m;
    for _ in 0..=by_id.len() {
        if at.kind.is_base() {
            return Some(&at.id);
        }
        at = by_id.get(at.parent.as_ref()?)?;
    }
    None
}

/// Every link a restore from `base` could use, to any point: the closure
/// of contiguous ranges starting right after the base.
fn reachable_links<'a>(manifests: &'a [Manifest], base: &'a Manifest) -> Vec<&'a Manifest> {
    let mut by_start: BTreeMap<u64, Vec<&Manifest>> = BTreeMap::new();
    for m in manifests.iter().filter(|m| usable_link(m, base)) {
        by_start.entry(m.first_index).or_default().push(m);
    }
    let mut seen = BTreeSet::from([base.last_index]);
    let mut queue = VecDeque::from([base.last_index]);
    let mut out = Vec::new();
    while let Some(at) = queue.pop_front() {
        let Some(next) = at.checked_add(1).and_then(|n| by_start.get(&n)) else {
            continue;
        };
        for &link in next {
            if link.kind == Kind::Differential && at != base.last_index {
                continue;
            }
            out.push(link);
            if seen.insert(link.last_index) {
                queue.push_back(link.last_index);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::layout::Layout;
    use crate::manifest::{Digest, MANIFEST_FORMAT_VERSION};

    /// Time of an index in these tests: ten ms per entry.
    const MS_PER_INDEX: u64 = 10;

    fn manifest(
        seq: u64,
        kind: Kind,
        first: u64,
        last: u64,
        parent: Option<&Manifest>,
    ) -> Manifest {
        let created_ms = 1_700_000_000_000 + seq * 1000;
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: BackupId::new(created_ms, kind, seq).unwrap(),
            kind,
            first_index: first,
            last_index: last,
            first_time_ms: first * MS_PER_INDEX,
            last_time_ms: last * MS_PER_INDEX,
            parent: parent.map(|p| p.id.clone()),
            layout: Layout::Mirror,
            chunk_bytes: 4096,
            content_bytes: 0,
            content_blake3: Digest::of(b""),
            chunks: vec![],
            created_ms,
            labels: BTreeMap::new(),
        }
    }

    fn ids(chain: &[Manifest]) -> Vec<String> {
        chain.iter().map(|m| m.id.to_string()).collect()
    }

    #[test]
    fn picks_newest_full_then_differential_then_incrementals() {
        let f1 = manifest(1, Kind::Full, 1, 100, None);
        let i1 = manifest(2, Kind::Incremental, 101, 150, Some(&f1));
        let d1 = manifest(3, Kind::Differential, 101, 200, Some(&f1));
        let i2 = manifest(4, Kind::Incremental, 201, 250, Some(&d1));
        let i3 = manifest(5, Kind::Archive, 251, 300, Some(&i2));
        let all = vec![f1.clone(), i1.clone(), d1.clone(), i2.clone(), i3.clone()];

        let chain = plan_restore(&all, RestorePoint::Latest).unwrap();
        assert_eq!(
            ids(&chain),
            ids(&[f1.clone(), d1.clone(), i2.clone(), i3.clone()])
        );
        let chain = plan_restore(&all, RestorePoint::Index(120)).unwrap();
        assert_eq!(ids(&chain), ids(&[f1.clone(), i1]));
        let chain = plan_restore(&all, RestorePoint::Index(100)).unwrap();
        assert_eq!(ids(&chain), ids(std::slice::from_ref(&f1)));
        let chain = plan_restore(&all, RestorePoint::TimeMs(2_255)).unwrap();
        assert_eq!(ids(&chain), ids(&[f1, d1, i2]));
    }

    #[test]
    fn errors_say_where_and_why() {
        assert_eq!(
            plan_restore(&[], RestorePoint::Latest),
            Err(ChainError::Empty)
        );
        let f1 = manifest(1, Kind::Full, 1, 100, None);
        let i1 = manifest(2, Kind::Incremental, 101, 150, Some(&f1));
        let i3 = manifest(3, Kind::Incremental, 181, 200, Some(&i1));
        let all = vec![f1.clone(), i1, i3];
        assert_eq!(
            plan_restore(&all, RestorePoint::Latest),
            Err(ChainError::BrokenChain {
                after_index: 150,
                missing_from: 151
            })
        );
        assert!(matches!(
            plan_restore(&all, RestorePoint::Index(201)),
            Err(ChainError::NotCovered {
                newest_index: 200,
                ..
            })
        ));
        let late = vec![manifest(1, Kind::Full, 50, 100, None)];
        assert!(matches!(
            plan_restore(&late, RestorePoint::Index(60)),
            Err(ChainError::NoBase {
                point_index: 60,
                ..
            })
        ));
        let msg = plan_restore(&all, RestorePoint::Latest)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("151"), "{msg}");
    }

    #[test]
    fn differentials_apply_only_on_their_own_full() {
        let f1 = manifest(1, Kind::Full, 1, 100, None);
        let f2 = manifest(2, Kind::Cold, 1, 100, None);
        let d = manifest(3, Kind::Differential, 101, 200, Some(&f1));
        // f2 is newer at the same index, so it is the base; d is f1's.
        assert!(matches!(
            plan_restore(
                &[f1.clone(), f2.clone(), d.clone()],
                RestorePoint::Index(150)
            ),
            Err(ChainError::BrokenChain {
                after_index: 100,
                ..
            })
        ));
        let chain = plan_restore(&[f1.clone(), d.clone()], RestorePoint::Index(150)).unwrap();
        assert_eq!(ids(&chain), ids(&[f1, d]));
    }

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Full,
        Cold,
        Incremental(u64),
        Differential(u64),
        Archive(u64),
    }

    fn step(with_differentials: bool) -> impl Strategy<Value = Step> {
        let len = 1u64..40;
        if with_differentials {
            prop_oneof![
                1 => Just(Step::Full),
                1 => Just(Step::Cold),
                4 => len.clone().prop_map(Step::Incremental),
                2 => len.clone().prop_map(Step::Differential),
                2 => len.prop_map(Step::Archive),
            ]
            .boxed()
        } else {
            prop_oneof![
                1 => Just(Step::Full),
                5 => len.prop_map(Step::Incremental),
            ]
            .boxed()
        }
    }

    /// A history as a node would take it: a full first, then each backup
    /// continuing exactly where the previous one ended.
    fn history(steps: &[Step]) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = vec![manifest(0, Kind::Full, 1, 10, None)];
        let mut last_base = 0usize;
        let mut at = 10u64;
        for (n, s) in steps.iter().enumerate() {
            let seq = n as u64 + 1;
            let prev = out.last().cloned();
            let m = match *s {
                Step::Full | Step::Cold => {
                    let kind = if matches!(s, Step::Full) {
                        Kind::Full
                    } else {
                        Kind::Cold
                    };
                    last_base = out.len();
                    manifest(seq, kind, 1, at, None)
                }
                Step::Incremental(len) => {
                    manifest(seq, Kind::Incremental, at + 1, at + len, prev.as_ref())
                }
                Step::Archive(len) => manifest(seq, Kind::Archive, at + 1, at + len, None),
                Step::Differential(len) => {
                    let base = out[last_base].clone();
                    manifest(
                        seq,
                        Kind::Differential,
                        base.last_index + 1,
                        at + len,
                        Some(&base),
                    )
                }
            };
            at = m.last_index;
            out.push(m);
        }
        out
    }

    fn assert_valid_chain(chain: &[Manifest], point_index: u64) {
        assert_sound_chain(chain, point_index);
        for pair in chain.windows(2) {
            assert!(
                pair[0].last_index < point_index,
                "no link past the first covering one"
            );
        }
    }

    fn assert_sound_chain(chain: &[Manifest], point_index: u64) {
        let base = &chain[0];
        assert!(base.kind.is_base());
        assert!(base.last_index <= point_index);
        for pair in chain.windows(2) {
            assert!(!pair[1].kind.is_base());
            assert_eq!(pair[1].first_index, pair[0].last_index + 1, "contiguous");
        }
        assert!(chain[chain.len() - 1].last_index >= point_index);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn chains_are_contiguous_and_reach_the_point(
            steps in proptest::collection::vec(step(true), 0..30),
            pick in 0.0f64..1.0,
        ) {
            let all = history(&steps);
            let newest = all.iter().map(|m| m.last_index).max().unwrap();
            let point = 10 + ((newest - 10) as f64 * pick) as u64;
            let chain = plan_restore(&all, RestorePoint::Index(point)).unwrap();
            assert_valid_chain(&chain, point);
            let latest = plan_restore(&all, RestorePoint::Latest).unwrap();
            assert_valid_chain(&latest, newest);
            let by_time = plan_restore(&all, RestorePoint::TimeMs(point * MS_PER_INDEX)).unwrap();
            // By time the point is known only up to backup boundaries, so
            // the chain may run one link further; it must still be sound.
            assert_sound_chain(&by_time, point);
        }

        #[test]
        fn removing_a_middle_link_never_yields_a_shorter_chain(
            steps in proptest::collection::vec(step(true), 0..30),
            which in 0usize..1000,
        ) {
            let all = history(&steps);
            let chain = plan_restore(&all, RestorePoint::Latest).unwrap();
            prop_assume!(chain.len() >= 3);
            let newest = chain[chain.len() - 1].last_index;
            let removed = &chain[1 + which % (chain.len() - 2)];
            let rest: Vec<Manifest> = all.iter().filter(|m| m.id != removed.id).cloned().collect();
            match plan_restore(&rest, RestorePoint::Latest) {
                Err(_) => {}
                Ok(other) => {
                    // Another way round (a differential instead of the
                    // incrementals) is fine; a chain with a hole is not.
                    assert_valid_chain(&other, newest);
                    prop_assert!(other.iter().all(|m| m.id != removed.id));
                }
            }
        }

        #[test]
        fn with_one_path_a_missing_link_is_always_an_error(
            steps in proptest::collection::vec(step(false), 0..30),
            which in 0usize..1000,
        ) {
            let all = history(&steps);
            let chain = plan_restore(&all, RestorePoint::Latest).unwrap();
            prop_assume!(chain.len() >= 3);
            let removed = &chain[1 + which % (chain.len() - 2)];
            let rest: Vec<Manifest> = all.iter().filter(|m| m.id != removed.id).cloned().collect();
            let result = plan_restore(&rest, RestorePoint::Latest);
            let is_broken = matches!(result, Err(ChainError::BrokenChain { .. }));
            prop_assert!(is_broken, "{:?}", result);
        }
    }

    #[test]
    fn prune_drops_old_fulls_with_their_links_only() {
        let f1 = manifest(1, Kind::Full, 1, 100, None);
        let i1 = manifest(2, Kind::Incremental, 101, 150, Some(&f1));
        let d1 = manifest(3, Kind::Differential, 101, 180, Some(&f1));
        let f2 = manifest(4, Kind::Full, 1, 180, None);
        let i2 = manifest(5, Kind::Incremental, 181, 200, Some(&f2));
        let a1 = manifest(6, Kind::Archive, 90, 100, None);
        let a2 = manifest(7, Kind::Archive, 201, 220, None);
        let all = vec![
            f1.clone(),
            i1.clone(),
            d1.clone(),
            f2.clone(),
            i2.clone(),
            a1.clone(),
            a2.clone(),
        ];
        let plan = plan_prune(&all, Retention { keep_full: 1 });
        let mut delete = vec![f1.id, i1.id, d1.id, a1.id.clone()];
        delete.sort();
        assert_eq!(plan.delete, delete);
        let mut keep = vec![f2.id, i2.id, a2.id];
        keep.sort();
        assert_eq!(plan.keep, keep);
        // With both fulls kept only the archive from before them goes.
        assert_eq!(
            plan_prune(&all, Retention { keep_full: 2 }).delete,
            vec![a1.id]
        );
    }

    #[test]
    fn prune_keeps_links_a_kept_full_can_reach() {
        // f2 is a cold backup at the same index as f1: i1 was taken after
        // f1 but chains from f2 too, so it must stay.
        let f1 = manifest(1, Kind::Full, 1, 100, None);
        let i1 = manifest(2, Kind::Incremental, 101, 150, Some(&f1));
        let f2 = manifest(3, Kind::Cold, 1, 100, None);
        let all = vec![f1.clone(), i1.clone(), f2.clone()];
        let plan = plan_prune(&all, Retention { keep_full: 1 });
        assert_eq!(plan.delete, vec![f1.id]);
        assert!(plan.keep.contains(&i1.id));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        #[test]
        fn prune_never_changes_a_restore_from_a_kept_full(
            steps in proptest::collection::vec(step(true), 0..30),
            keep_full in 1usize..4,
        ) {
            let all = history(&steps);
            let plan = plan_prune(&all, Retention { keep_full });
            let kept: Vec<Manifest> = all.iter().filter(|m| plan.keep.contains(&m.id)).cloned().collect();
            let bases = all.iter().filter(|m| m.kind.is_base()).count();
            let deleted_bases = all.iter().filter(|m| m.kind.is_base() && plan.delete.contains(&m.id)).count();
            prop_assert_eq!(deleted_bases, bases.saturating_sub(keep_full));
            let oldest_kept = kept.iter().filter(|m| m.kind.is_base()).map(|m| m.last_index).min().unwrap();
            let newest = all.iter().map(|m| m.last_index).max().unwrap();
            for point in oldest_kept..=newest {
                let before = plan_restore(&all, RestorePoint::Index(point));
                let after = plan_restore(&kept, RestorePoint::Index(point));
                prop_assert_eq!(before, after, "point {}", point);
            }
        }
    }
}
