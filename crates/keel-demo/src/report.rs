//! What the demo prints at the end: its figures, every check's verdict,
//! and "All checks passed." or the error naming the failed checks.

use std::fmt::Write as _;
use std::path::Path;

use keel_chaos::Finding;

use crate::figures::Figures;
use crate::DemoError;

/// The figures, as `Keel demo report` lines. `through_gateway` says how
/// errors reached the shoppers; `gateway_retries` is what the gateway
/// retried for them.
pub fn figures(f: &Figures, through_gateway: bool, gateway_retries: Option<u64>) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(String::new());
    line("Keel demo report".into());
    line(format!("  orders acknowledged      {}", f.orders));
    line(format!("  payments acknowledged    {}", f.payments));
    line(format!("  refused: out of stock    {}", f.out_of_stock));
    if let Some(s) = &f.flash {
        line(format!(
            "  flash sale               {} sold + {} reserved of {} units",
            s.sold, s.reserved, s.stock
        ));
    }
    let route = if through_gateway {
        "through the gateway, no client retries"
    } else {
        "direct, after the client's own retries"
    };
    let errors: u64 = f.errors.values().sum();
    line(format!(
        "  client-visible errors    {errors} {:?} ({route})",
        f.errors
    ));
    if let Some(retries) = gateway_retries {
        line(format!("  retried by the gateway   {retries}"));
    }
    line(format!(
        "  throughput               {:.0} orders/s, {:.0} writes/s",
        f.orders_per_s(),
        f.writes_per_s()
    ));
    if let Some(k) = &f.kill {
        line(format!(
            "  leader killed            node {} at {:.1}s",
            k.node,
            k.at.as_secs_f64()
        ));
    }
    let when = match f.kill {
        Some(k) if f.gap.ended_at >= k.at => format!(
            "ended {:.2}s after the kill",
            (f.gap.ended_at - k.at).as_secs_f64()
        ),
        _ => format!("ended at {:.1}s", f.gap.ended_at.as_secs_f64()),
    };
    line(format!(
        "  longest gap w/o success  {} ms ({when})",
        f.gap.longest.as_millis()
    ));
    out
}

/// One line per finding, `[ ok ]`, `[FAIL]` or `[SKIP]`.
pub fn findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(out, "  [{}] {}: {}", verdict(f), f.name, f.detail);
    }
    out
}

fn verdict(f: &Finding) -> &'static str {
    match (f.ok, f.skipped) {
        (true, _) => " ok ",
        (false, true) => "SKIP",
        (false, false) => "FAIL",
    }
}

/// `Ok` when every finding holds; else the error naming the failed ones
/// and where the node logs are (`logs`).
pub fn verdict_of(findings: &[Finding], logs: &Path) -> Result<(), DemoError> {
    let failed: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.name.clone())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(DemoError::ChecksFailed {
        failed,
        logs: logs.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_has_a_line_and_the_failed_ones_are_named() {
        let all = [
            Finding::pass("money conserved", "sums to zero"),
            Finding::fail("linearizable stock B", "op 4 cannot be placed"),
            Finding::skip("replicas agree", "no digests"),
        ];
        assert_eq!(
            findings(&all),
            "  [ ok ] money conserved: sums to zero\n\
             \x20 [FAIL] linearizable stock B: op 4 cannot be placed\n\
             \x20 [SKIP] replicas agree: no digests\n"
        );
        let err = verdict_of(&all, Path::new("logs")).expect_err("two failed");
        let text = err.to_string();
        assert!(
            text.contains("2 check(s) failed: linearizable stock B, replicas agree")
                && text.ends_with("node logs are in logs"),
            "{text}"
        );
        assert!(verdict_of(&all[..1], Path::new("logs")).is_ok());
    }
}
