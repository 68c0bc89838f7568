//! The one result type every checker returns, so a run's report is a flat
//! list whatever produced it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most examples a finding's detail lists. A broken invariant usually breaks
/// for many keys at once; the first few say what happened, the count says
/// how much, and the report stays readable.
pub const DETAIL_EXAMPLES_MAX: usize = 10;

/// One checker's conclusion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What was checked, e.g. `linearizable stock A-1`.
    pub name: String,
    /// True only when the check ran to its end and held. A check that could
    /// not run is never `ok`: a run must not look clean because its checker
    /// gave up.
    pub ok: bool,
    /// True when the check did not run (or not completely), e.g. a history
    /// too long for the search; `ok` is then false.
    pub skipped: bool,
    /// For a human: what held, what broke (with examples) or why it was
    /// skipped.
    pub detail: String,
}

impl Finding {
    /// A check that ran and held.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            skipped: false,
            detail: detail.into(),
        }
    }

    /// A check that ran and found a violation.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            skipped: false,
            detail: detail.into(),
        }
    }

    /// A check that could not run to its end.
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            skipped: true,
            detail: detail.into(),
        }
    }

    /// A pass when `problems` is empty, else a failure listing the first
    /// [`DETAIL_EXAMPLES_MAX`] of them and how many there were.
    pub fn from_problems(
        name: impl Into<String>,
        passed: impl Into<String>,
        problems: &[String],
    ) -> Self {
        if problems.is_empty() {
            return Self::pass(name, passed);
        }
        Self::fail(name, examples(problems))
    }
}

/// `"3 problems: a; b; c"`, listing at most [`DETAIL_EXAMPLES_MAX`].
pub(crate) fn examples(problems: &[String]) -> String {
    let noun = if problems.len() == 1 {
        "problem"
    } else {
        "problems"
    };
    format!("{} {noun}: {}", problems.len(), first_few(problems, "; "))
}

/// At most [`DETAIL_EXAMPLES_MAX`] of `items` joined by `separator`, then
/// how many more there were: `"a; b; and 3 more"`.
pub(crate) fn first_few<T: ToString>(items: &[T], separator: &str) -> String {
    let shown: Vec<String> = items
        .iter()
        .take(DETAIL_EXAMPLES_MAX)
        .map(ToString::to_string)
        .collect();
    let more = items.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!("{separator}and {more} more")
    } else {
        String::new()
    };
    format!("{}{tail}", shown.join(separator))
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (self.ok, self.skipped) {
            (true, _) => "ok",
            (false, true) => "SKIPPED",
            (false, false) => "FAIL",
        };
        write!(f, "{verdict:7} {}: {}", self.name, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_listed_with_a_bound() {
        let problems: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
        let f = Finding::from_problems("x", "fine", &problems);
        assert!(!f.ok && !f.skipped);
        assert!(f.detail.starts_with("25 problems: p0; p1"));
        assert!(f.detail.ends_with("p9; and 15 more"));
        assert!(Finding::from_problems("x", "fine", &[]).ok);
    }

    #[test]
    fn skipped_is_never_ok() {
        let f = Finding::skip("x", "too long");
        assert!(!f.ok && f.skipped);
        assert!(f.to_string().starts_with("SKIPPED x"));
    }
}
