//! The tables `keel bench compare` prints: orders by client count with
//! Keel's ratio to each anchor, the flash sale, and the failover rounds.

use crate::compare::{CompareReport, FailoverRow, FlashRow};
use crate::report::{cells, fmt_counts, fmt_ratio, ratio, render, Report, CELL_NAMES};

/// Keel's row for the same workload and client count as `r`.
fn keel_row<'a>(rows: &'a [Report], r: &Report) -> Option<&'a Report> {
    rows.iter()
        .find(|k| k.system == "keel" && k.workload == r.workload && k.clients == r.clients)
}

/// Keel's throughput over `r`'s, and Keel's p99 over `r`'s.
fn ratios(keel: Option<&Report>, r: &Report) -> (String, String) {
    match keel {
        Some(k) if r.system != "keel" => (
            fmt_ratio(ratio(k.ops_per_s, r.ops_per_s)),
            fmt_ratio(ratio(k.latency.p99_us as f64, r.latency.p99_us as f64)),
        ),
        _ => ("".into(), "".into()),
    }
}

/// The order table: every client count and system, with Keel's ratios.
pub fn orders_table(rows: &[Report]) -> String {
    let mut header = vec!["clients", "system"];
    header.extend(CELL_NAMES);
    header.extend(["keel/this ops/s", "keel/this p99"]);
    let mut sorted: Vec<&Report> = rows.iter().collect();
    sorted.sort_by_key(|r| r.clients);
    let body: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            let mut row = vec![r.clients.to_string(), r.system.clone()];
            row.extend(cells(r));
            let (a, b) = ratios(keel_row(rows, r), r);
            row.extend([a, b]);
            row
        })
        .collect();
    render(&header, &body, 2)
}

/// The flash-sale table.
pub fn flash_table(rows: &[FlashRow]) -> String {
    let header = [
        "system",
        "clients",
        "answers/s",
        "sold",
        "refused",
        "p50",
        "p99",
        "max",
        "errors",
        "stock",
        "sold (read back)",
        "keel/this answers/s",
    ];
    let keel = rows.iter().find(|f| f.report.system == "keel");
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            let r = &f.report;
            let c = cells(r);
            vec![
                r.system.clone(),
                r.clients.to_string(),
                c[0].clone(),
                r.ok.to_string(),
                r.refused.values().sum::<u64>().to_string(),
                c[1].clone(),
                c[3].clone(),
                c[5].clone(),
                r.error_count().to_string(),
                f.stock.to_string(),
                f.sold.map_or("?".into(), |s| s.to_string()),
                match keel {
                    Some(k) if r.system != "keel" => {
                        fmt_ratio(ratio(k.report.ops_per_s, r.ops_per_s))
                    }
                    _ => String::new(),
                },
            ]
        })
        .collect();
    render(&header, &body, 1)
}

/// The failover table.
pub fn failover_table(rows: &[FailoverRow]) -> String {
    let header = [
        "system",
        "killed",
        "ok",
        "longest gap",
        "gap ended after kill",
        "recovered",
        "errors by type",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            vec![
                f.system.clone(),
                f.killed.clone(),
                f.report.ok.to_string(),
                format!("{:.0}ms", f.report.longest_gap_ms),
                format!("{:.0}ms", f.gap_ended_after_kill_ms),
                if f.recovered { "yes" } else { "no" }.into(),
                fmt_counts(&f.report.errors),
            ]
        })
        .collect();
    render(&header, &body, 2)
}

/// The whole report for humans.
pub fn format_report(r: &CompareReport, failover_clients: u64) -> String {
    let mut s = String::new();
    s.push_str(&format!("machine: {}\n", r.machine.line()));
    for (k, v) in &r.versions {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s.push_str(&format!(
        "\norders: closed loop, {} s per point after {} s warm-up, one-line orders over {} SKUs\n  \
         keel: POST /v1/orders to 3 nodes (fsync on), clients spread over nodes; etcd: one /v3/kv/put per order to 3 members, spread;\n  \
         postgres: one transaction (UPDATE stock ... WHERE qty >= 1; INSERT order; COMMIT waiting for the synchronous standby)\n\n",
        r.duration_s,
        r.duration_s as f64 / 10.0,
        r.skus
    ));
    s.push_str(&orders_table(&r.orders));
    let errs: Vec<String> = r
        .orders
        .iter()
        .filter(|o| o.error_count() > 0)
        .map(|o| format!("  {} x{}: {}", o.system, o.clients, fmt_counts(&o.errors)))
        .collect();
    if !errs.is_empty() {
        s.push_str("errors by type:\n");
        s.push_str(&errs.join("\n"));
        s.push('\n');
    }
    s.push_str("\nflash sale: every client orders the same SKU until it sells out (refusals are answers); etcd: n/a, it has no stock rule\n\n");
    s.push_str(&flash_table(&r.flash));
    s.push_str(&format!(
        "\nfailover: {failover_clients} clients ordering, the leader/primary SIGKILLed halfway through {} s\n\n",
        r.duration_s
    ));
    s.push_str(&failover_table(&r.failover));
    for f in &r.failover {
        s.push_str(&format!("  {}: {}\n", f.system, f.note));
    }
    for k in &r.skipped {
        s.push_str(&format!("\n{} skipped: {}\n", k.system, k.reason));
    }
    s.push_str(&format!("\nwall time {:.0} s (", r.wall_s));
    s.push_str(
        &r.setup_s
            .iter()
            .map(|(k, v)| format!("{k} {v:.0} s"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str(")\n");
    s
}
