//! A run's figures (throughput, percentiles, errors by type, longest gap)
//! as a serialisable row, and the tables they print as.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::driver::Measurement;
use crate::hist::{fmt_us, Percentiles};

/// The figures of one run against one system.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The system ("keel", "etcd", "postgres").
    pub system: String,
    /// The workload.
    pub workload: String,
    /// Concurrent clients.
    pub clients: u64,
    /// "closed" or "open N/s".
    pub mode: String,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful operations.
    pub ok: u64,
    /// Answered operations (ok + refused) per second.
    pub ops_per_s: f64,
    /// Orders acknowledged per second (ok operations × orders per operation).
    pub orders_per_s: f64,
    /// Refusals by type (answers, e.g. `out_of_stock`).
    pub refused: BTreeMap<String, u64>,
    /// Errors by type.
    pub errors: BTreeMap<String, u64>,
    /// Latency of answered operations.
    pub latency: Percentiles,
    /// Longest interval without an answer, ms.
    pub longest_gap_ms: f64,
    /// Open loop: requests due but never sent by the end.
    pub unsent: u64,
}

impl Report {
    /// The row of `m`.
    pub fn new(system: &str, workload: &str, clients: u64, mode: &str, m: &Measurement) -> Self {
        let per_s = |n: u64| {
            if m.seconds > 0.0 {
                n as f64 / m.seconds
            } else {
                0.0
            }
        };
        Self {
            system: system.to_owned(),
            workload: workload.to_owned(),
            clients,
            mode: mode.to_owned(),
            seconds: m.seconds,
            ok: m.ok,
            ops_per_s: per_s(m.answered()),
            orders_per_s: per_s(m.ok * m.items_per_op),
            refused: m.refused.clone(),
            errors: m.errors.clone(),
            latency: Percentiles::of(&m.hist),
            longest_gap_ms: m.gap.longest_us as f64 / 1_000.0,
            unsent: m.unsent,
        }
    }

    /// Errors in the run.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// "type: n, type: n", or "-" when empty.
pub fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a / b`, or `None` when `b` measured nothing.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A ratio for humans ("1.84x"), or "n/a".
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// The header and the figures of one report as table cells.
pub fn cells(r: &Report) -> Vec<String> {
    vec![
        format!("{:.0}", r.ops_per_s),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p90_us),
        fmt_us(r.latency.p99_us),
        fmt_us(r.latency.p999_us),
        fmt_us(r.latency.max_us),
        format!("{:.0}ms", r.longest_gap_ms),
        r.error_count().to_string(),
    ]
}

/// The column names matching [`cells`].
pub const CELL_NAMES: [&str; 8] = [
    "ops/s", "p50", "p90", "p99", "p99.9", "max", "gap", "errors",
];

/// A plain-text table with right-aligned columns after the first
/// `left` ones.
pub fn render(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if i < left {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// The table of `keel bench run`: one row per report.
pub fn run_table(reports: &[Report]) -> String {
    let mut header = vec!["system", "workload", "clients", "mode"];
    header.extend(CELL_NAMES);
    header.push("orders/s");
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let mut row = vec![
                r.system.clone(),
                r.workload.clone(),
                r.clients.to_string(),
                r.mode.clone(),
            ];
            row.extend(cells(r));
            row.push(format!("{:.0}", r.orders_per_s));
            row
        })
        .collect();
    render(&header, &rows, 4)
}

/// What `keel bench run` prints of one report: its table row, its
/// errors and refusals by type, and requests never sent, if any.
pub fn run_text(r: &Report) -> String {
    let mut out = run_table(std::slice::from_ref(r));
    out.push_str(&format!("errors by type: {}\n", fmt_counts(&r.errors)));
    out.push_str(&format!("refused (answers): {}\n", fmt_counts(&r.refused)));
    if r.unsent > 0 {
        out.push_str(&format!(
            "due but never sent by the end (charged up to the end): {}\n",
            r.unsent
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up() {
        let t = render(
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long".into(), "1234".into()],
            ],
            1,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines, vec!["name     n", "a        1", "long  1234"]);
    }

    #[test]
    fn counts_and_ratios_format() {
        let mut m = BTreeMap::new();
        assert_eq!(fmt_counts(&m), "-");
        m.insert("connect".to_owned(), 3);
        m.insert("unavailable".to_owned(), 1);
        assert_eq!(fmt_counts(&m), "connect: 3, unavailable: 1");
        assert_eq!(fmt_ratio(ratio(3.0, 2.0)), "1.50x");
        assert_eq!(fmt_ratio(ratio(3.0, 0.0)), "n/a");
    }
}
