//! Figures across several runs: for each nemesis, how often it struck and
//! the distribution of the unavailability it caused, so a goal such as
//! "under 1 s at p99 across runs" is read from data, not from one lucky run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::nemesis::Nemesis;
use crate::run::Report;

/// One nemesis over every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NemesisFigures {
    /// The nemesis.
    pub nemesis: Nemesis,
    /// Times it struck.
    pub strikes: usize,
    /// Strikes after which no write succeeded before the run ended.
    pub never_available: usize,
    /// Median write unavailability (ms).
    pub p50_ms: f64,
    /// 99th percentile, nearest rank (ms).
    pub p99_ms: f64,
    /// Worst (ms).
    pub max_ms: f64,
    /// Requests that failed or ended unknown around its strikes.
    pub errors: u64,
}

/// The value at quantile `q` of sorted `v` by nearest rank (0 if empty).
fn nearest_rank(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Per-nemesis figures over `reports`, in nemesis order.
pub fn across_runs(reports: &[Report]) -> Vec<NemesisFigures> {
    let mut by: BTreeMap<Nemesis, (Vec<f64>, usize, u64)> = BTreeMap::new();
    for f in reports.iter().flat_map(|r| &r.faults) {
        let e = by.entry(f.record.nemesis).or_default();
        match f.unavailable_ms {
            Some(ms) => e.0.push(ms),
            None => e.1 += 1,
        }
        e.2 += f.errors;
    }
    by.into_iter()
        .map(|(nemesis, (mut ms, never, errors))| {
            ms.sort_by(f64::total_cmp);
            NemesisFigures {
                nemesis,
                strikes: ms.len() + never,
                never_available: never,
                p50_ms: nearest_rank(&ms, 0.5),
                p99_ms: nearest_rank(&ms, 0.99),
                max_ms: ms.last().copied().unwrap_or(0.0),
                errors,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_takes_the_value_at_or_above_the_quantile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), 50.0);
        assert_eq!(nearest_rank(&v, 0.99), 99.0);
        assert_eq!(nearest_rank(&v[..10], 0.99), 10.0);
        assert_eq!(nearest_rank(&[7.0], 0.5), 7.0);
        assert_eq!(nearest_rank(&[], 0.99), 0.0);
    }
}
