//! A run's report and the figures across runs as plain-text tables, as
//! `keel chaos run` prints them. Pure: data in, text out.

use crate::across::NemesisFigures;
use crate::run::Report;

/// Unavailability per nemesis across runs, as a table.
pub fn across_table(figures: &[NemesisFigures], runs: u64) -> String {
    let mut s = format!(
        "\nacross {runs} runs: write unavailability per fault (ms)\n  {:<22} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
        "fault", "strikes", "p50", "p99", "max", "never", "errors"
    );
    for f in figures {
        s.push_str(&format!(
            "  {:<22} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>7}\n",
            f.nemesis.name(),
            f.strikes,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.never_available,
            f.errors
        ));
    }
    s
}

/// The report as a table: the run, each fault with its figures, each
/// checker's finding, and the verdict.
pub fn report_table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "keel chaos: seed {}, {} nodes, {:.0}s, {}\n  network: {}\n",
        r.seed,
        r.nodes,
        r.seconds,
        if r.through_gateway {
            "through the gateway"
        } else {
            "direct to the nodes"
        },
        r.network
    ));
    s.push_str(&format!(
        "  operations: {} (replayed with the same key: {}), p99 {:.1} ms\n\n",
        r.ops
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.replays,
        r.latency_p99_ms
    ));
    s.push_str(&format!(
        "  {:<22} {:<8} {:>9} {:>14} {:>8} {:>12} {:>7} {:>9}\n",
        "fault",
        "targets",
        "at (s)",
        "unavail. (ms)",
        "errors",
        "recovery (ms)",
        "ops",
        "writes ok"
    ));
    for f in &r.faults {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        s.push_str(&format!(
            "  {:<22} {:<8} {:>9.1} {:>14} {:>8} {:>12} {:>7} {:>9}\n",
            f.record.nemesis.name(),
            f.record
                .targets
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            f.record.injected_ns as f64 / 1e9,
            ms(f.unavailable_ms),
            f.errors,
            ms(f.recovery_ms),
            f.ops,
            f.writes_ok
        ));
    }
    s.push('\n');
    for f in &r.findings {
        let tag = if !f.ok {
            "FAIL"
        } else if f.skipped {
            "skip"
        } else {
            " ok "
        };
        s.push_str(&format!("  [{tag}] {}: {}\n", f.name, f.detail));
    }
    s.push_str(if r.ok {
        "\nno violations\n"
    } else {
        "\nVIOLATIONS FOUND\n"
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::Nemesis;

    #[test]
    fn the_across_table_has_a_row_per_nemesis() {
        let figures = vec![NemesisFigures {
            nemesis: Nemesis::KillLeader,
            strikes: 3,
            p50_ms: 450.0,
            p99_ms: 610.0,
            max_ms: 612.0,
            never_available: 0,
            errors: 2,
        }];
        let t = across_table(&figures, 10);
        assert!(t.contains("across 10 runs"));
        let row = t
            .lines()
            .find(|l| l.contains("kill-leader"))
            .expect("a row");
        assert!(row.contains(" 3 ") && row.contains("450") && row.contains("610"));
    }
}
