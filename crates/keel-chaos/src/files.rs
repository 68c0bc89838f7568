//! What a run leaves behind: its history and its report, in the run's
//! directory, so a run can be judged again and compared later.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::history::History;
use crate::run::Report;
use crate::ChaosError;

/// The directory of the run with `seed`: `base` itself for a single run,
/// `base/seed-N` when `runs` runs share it.
pub fn seed_dir(base: &Path, runs: u64, seed: u64) -> PathBuf {
    if runs == 1 {
        base.to_path_buf()
    } else {
        base.join(format!("seed-{seed}"))
    }
}

/// Where a run's files were written.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The history, one JSON op a line.
    pub history: PathBuf,
    /// The report, as JSON.
    pub report: PathBuf,
}

/// The two paths, one a line, for an operator.
impl fmt::Display for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "history: {}\nreport:  {}",
            self.history.display(),
            self.report.display()
        )
    }
}

/// Writes `history` to `dir/history.jsonl` and `report` to
/// `dir/report.json`.
pub fn save(dir: &Path, report: &Report, history: &History) -> Result<Saved, ChaosError> {
    let saved = Saved {
        history: dir.join("history.jsonl"),
        report: dir.join("report.json"),
    };
    let writing = |path: &Path| {
        let path = path.display().to_string();
        move |source| ChaosError::Write { path, source }
    };
    let file = std::fs::File::create(&saved.history).map_err(writing(&saved.history))?;
    history.write_jsonl(std::io::BufWriter::new(file))?;
    let json = serde_json::to_vec_pretty(report).map_err(ChaosError::Encode)?;
    std::fs::write(&saved.report, json).map_err(writing(&saved.report))?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_uses_the_base_and_several_a_directory_each() {
        let base = Path::new("chaos");
        assert_eq!(seed_dir(base, 1, 7), base);
        assert_eq!(seed_dir(base, 3, 7), base.join("seed-7"));
    }
}
