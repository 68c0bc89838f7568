//! `keel chaos run --runs N`: the same run with seeds `seed`, `seed + 1`,
//! …, each in its own directory, going on past a run that could not finish.

use std::path::Path;

use crate::files::{save, seed_dir, Saved};
use crate::run::{run, Report, RunConfig};
use crate::ChaosError;

/// How one seed's run ended, for the caller to show.
#[derive(Debug)]
pub enum SeedOutcome<'a> {
    /// The run finished (with or without violations) and its files were saved.
    Judged {
        /// Its report.
        report: &'a Report,
        /// Where its history and report went.
        saved: &'a Saved,
    },
    /// The run could not finish (its cluster did not come back from a
    /// fault); a soak counts the seed as failed and goes on.
    Unfinished {
        /// The seed.
        seed: u64,
        /// Why.
        error: ChaosError,
    },
}

/// What a soak of several runs found.
#[derive(Debug, Default)]
pub struct Soaked {
    /// The reports of the runs that finished, in seed order.
    pub reports: Vec<Report>,
    /// Seeds whose run found violations or could not finish.
    pub failed: Vec<u64>,
}

/// Runs `template` with `runs` seeds from `template.seed` on, each in
/// [`seed_dir`] under `base_dir`, and hands each outcome to `show`. A
/// single run that cannot finish is an error; among several it is a
/// failed seed.
pub async fn soak(
    template: &RunConfig,
    base_dir: &Path,
    runs: u64,
    mut show: impl FnMut(SeedOutcome<'_>),
) -> Result<Soaked, ChaosError> {
    let mut out = Soaked::default();
    for i in 0..runs {
        let seed = template.seed.wrapping_add(i);
        let dir = seed_dir(base_dir, runs, seed);
        let config = RunConfig {
            seed,
            base_dir: dir.clone(),
            ..template.clone()
        };
        let judged = match run(config).await {
            Ok((report, history)) => save(&dir, &report, &history).map(|s| (report, s)),
            Err(e) => Err(e),
        };
        match judged {
            Ok((report, saved)) => {
                show(SeedOutcome::Judged {
                    report: &report,
                    saved: &saved,
                });
                if !report.ok {
                    out.failed.push(seed);
                }
                out.reports.push(report);
            }
            Err(error) if runs > 1 => {
                show(SeedOutcome::Unfinished { seed, error });
                out.failed.push(seed);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
