//! The chaos suite, bounded for CI: every nemesis strikes once against a
//! real cluster behind the gateway, with TLS on every link as deployed,
//! and every checker must pass; then the same suite against a build with a
//! deliberate bug must fail, which proves the checkers can see what they
//! claim to.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_chaos::nemesis::Nemesis;
use keel_chaos::run::{run, NetMode, RunConfig};

fn config(binary: PathBuf, dir: &Path, nemeses: Vec<Nemesis>, duration_s: u64) -> RunConfig {
    RunConfig {
        binary,
        base_dir: dir.join("chaos"),
        nodes: 3,
        duration: Duration::from_secs(duration_s),
        seed: 7,
        nemeses,
        clients: 6,
        quiet: Duration::from_millis(500),
        hold: Duration::from_millis(1_500),
        through_gateway: true,
        to_follower: false,
        node_args: Vec::new(),
        network: NetMode::Auto,
        tls: true,
        customers_seeded_per_client: keel_chaos::workload::CUSTOMERS_SEEDED_PER_CLIENT,
        allow_skip: false,
    }
}

/// Under `CI=true` every nemesis must strike; elsewhere the ones this
/// machine cannot run (no root, FUSE, libfaketime or iptables) are skipped
/// and the test says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_nemesis_once_and_no_checker_finds_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        env!("CARGO_BIN_EXE_keel").into(),
        dir.path(),
        Nemesis::ALL.to_vec(),
        1,
    );
    let ci = keel_harness::in_ci();
    cfg.allow_skip = !ci;
    let ca = cfg.base_dir.join("ca");
    let (report, history) = run(cfg).await.unwrap();
    // The faults struck the transport a deployment runs: the nodes spoke
    // mutual TLS with certificates from the run's own CA.
    assert!(report.tls, "the run was plaintext: {}", report.network);
    let node_1 = keel_tls::TlsFiles::in_dir(&ca, "node-1");
    assert!(
        node_1.cert.exists(),
        "no certificate for node 1 under {}",
        ca.display()
    );
    let struck: Vec<Nemesis> = report.faults.iter().map(|f| f.record.nemesis).collect();
    for n in Nemesis::ALL.into_iter().filter(|n| !struck.contains(n)) {
        assert!(!ci, "{n:?} never struck under CI=true: {}", report.network);
        eprintln!("SKIPPED nemesis {}: {}", n.name(), report.network);
    }
    assert!(
        history.len() > 100,
        "the workload ran: {} ops",
        history.len()
    );
    for f in &report.findings {
        assert!(f.ok, "{}: {}", f.name, f.detail);
    }
    assert!(report.ok);
    // Faults were felt and healed: every one recovered.
    for f in &report.faults {
        assert!(
            f.record.recovered_ns.is_some(),
            "{:?} never recovered",
            f.record.nemesis
        );
    }
}

/// Every client stays at work through a power loss longer than the ~10 s
/// after which the old workload gave up opening a customer, with one seeded
/// customer each so they open their own all along: the fault's window sees
/// writes succeed and every client sends requests after the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_keep_working_through_a_power_loss_longer_than_the_old_give_up() {
    use keel_chaos::workload::{RESOLVE_ATTEMPTS_MAX, RESOLVE_BACKOFF};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        env!("CARGO_BIN_EXE_keel").into(),
        dir.path(),
        vec![Nemesis::PowerLoss],
        1,
    );
    cfg.network = NetMode::Loopback;
    cfg.clients = 4;
    cfg.customers_seeded_per_client = 1;
    cfg.quiet = Duration::from_secs(3);
    cfg.hold = RESOLVE_BACKOFF * RESOLVE_ATTEMPTS_MAX + Duration::from_secs(2);
    let (report, history) = run(cfg).await.unwrap();
    let windows = finding(&report, keel_chaos::run::FAULT_WINDOWS);
    assert!(windows.ok, "{}", windows.detail);
    // Every node came back from the power loss with the vote it had.
    let terms = finding(&report, keel_chaos::terms::TERMS_NEVER_GO_BACK);
    assert!(terms.ok, "{}", terms.detail);
    let recovered_ns = report.faults[0].record.recovered_ns.unwrap();
    let after = recovered_ns + Duration::from_secs(1).as_nanos() as u64;
    for p in 0..4 {
        assert!(
            history
                .ops()
                .iter()
                .any(|o| o.process == p && o.invoke_ns >= after),
            "client {p} sent nothing in the last seconds of the run"
        );
    }
}

/// The finding called `name`; a report without it fails the test.
fn finding<'a>(report: &'a keel_chaos::run::Report, name: &str) -> &'a keel_chaos::Finding {
    report
        .findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no finding {name:?} in the report"))
}

/// Names of the checks that ran and failed.
fn failed_checks(report: &keel_chaos::run::Report) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| !f.ok && !f.skipped)
        .map(|f| f.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checkers_catch_a_build_that_oversells() {
    let binary = common::buggy_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(binary, dir.path(), vec![Nemesis::KillLeader], 4);
    cfg.node_args = common::bugs("oversell");
    let (report, _) = run(cfg).await.unwrap();
    assert!(!report.ok, "an overselling build passed every check");
    let failed = failed_checks(&report);
    assert!(
        failed.iter().any(|n| n.contains("oversell")),
        "the oversell check missed it; failed: {failed:?}"
    );
    assert!(
        failed.iter().any(|n| n.contains("linearizable stock HOT")),
        "the stock register check missed it; failed: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checkers_catch_a_build_that_acknowledges_before_fsync() {
    if let Err(why) = keel_lazyfs::available() {
        return keel_harness::skip_unless_ci(
            "the_checkers_catch_a_build_that_acknowledges_before_fsync",
            &format!("unsynced writes cannot be dropped here: {why}"),
        );
    }
    let binary = common::buggy_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(binary, dir.path(), vec![Nemesis::LoseUnsynced], 6);
    cfg.node_args = common::bugs("ack-before-fsync");
    // A longer quiet spell lets more acknowledged orders pile up unsynced
    // before the power goes.
    cfg.quiet = Duration::from_millis(1_500);
    let (report, _) = run(cfg).await.unwrap();
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.record.nemesis == Nemesis::LoseUnsynced),
        "the power never went: {:?}",
        report.network
    );
    let failed = failed_checks(&report);
    // Acknowledged writes the power took must be seen as gone. The loss can
    // also leave replicas that disagree with the leader about what was
    // applied, wedged for good; then the run must say the cluster never
    // healed, and whenever some leader still served the final state the
    // loss must be seen in it as well.
    let healed = !failed.iter().any(|n| n == keel_chaos::run::HEALED);
    let state_read = !report
        .findings
        .iter()
        .any(|f| f.skipped && f.name == "final state");
    if healed || state_read {
        assert!(
            failed.iter().any(|n| n == "acknowledged writes durable"),
            "lost acknowledged writes went unseen; failed: {failed:?}"
        );
    } else {
        eprintln!("the cluster never healed and no leader served the final state");
    }
    assert!(!report.ok, "a build that acknowledges before fsync passed");
}

/// The same build, the same bug, but a plain power loss (every node
/// killed, nothing dropped): the OS kept every write, so nothing is lost and
/// every check passes. Only `lose-unsynced` shows the missing fsync, which is
/// that nemesis's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_that_acknowledges_before_fsync_survives_a_plain_power_loss() {
    let failed = failed_with_bug("ack-before-fsync", Nemesis::PowerLoss, 6, |cfg| {
        cfg.quiet = Duration::from_millis(1_500);
    })
    .await;
    assert!(
        failed.is_empty(),
        "a plain kill should not expose a missing fsync; failed: {failed:?}"
    );
}

/// Runs `nemesis` for `duration_s` against the deliberately buggy build
/// with `bug` on (and `tune` applied to the run's settings); returns the
/// names of the checks that failed.
async fn failed_with_bug(
    bug: &str,
    nemesis: Nemesis,
    duration_s: u64,
    tune: impl FnOnce(&mut RunConfig),
) -> Vec<String> {
    failed_checks(&report_with_bug(bug, nemesis, duration_s, tune).await)
}

/// The report of [`failed_with_bug`]'s run.
async fn report_with_bug(
    bug: &str,
    nemesis: Nemesis,
    duration_s: u64,
    tune: impl FnOnce(&mut RunConfig),
) -> keel_chaos::run::Report {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        common::buggy_binary(),
        dir.path(),
        vec![nemesis],
        duration_s,
    );
    cfg.node_args = common::bugs(bug);
    tune(&mut cfg);
    let (report, _) = run(cfg).await.unwrap();
    report
}

/// A build that never makes its vote durable, under plain power losses
/// (every node killed, then restarted): each node comes back without the
/// vote it had, at a term below the one it had reached, free to vote again
/// in a term it already voted in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terms_never_go_back_catches_a_build_that_loses_its_vote_at_power_loss() {
    use keel_chaos::terms::TERMS_NEVER_GO_BACK;
    let report = report_with_bug("vote-unsynced", Nemesis::PowerLoss, 4, |cfg| {
        cfg.network = NetMode::Loopback;
    })
    .await;
    assert!(
        report
            .faults
            .iter()
            .any(|f| f.record.nemesis == Nemesis::PowerLoss),
        "the power never went"
    );
    for f in report.findings.iter().filter(|f| !f.ok) {
        eprintln!("{f}");
    }
    let failed = failed_checks(&report);
    assert!(
        failed.iter().any(|n| n == TERMS_NEVER_GO_BACK),
        "a node whose term went back after a power loss went unseen; failed: {failed:?}"
    );
    assert!(!report.ok, "a build that loses its vote passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_at_most_once_checks_catch_a_build_that_skips_the_idempotency_lookup() {
    let failed = failed_with_bug("skip-idempotency", Nemesis::KillFollower, 4, |_| {}).await;
    assert!(
        failed.iter().any(|n| n == "places applied at most once"),
        "a request applied twice went unseen; failed: {failed:?}"
    );
    assert!(
        failed.iter().any(|n| n == "same key, same answer"),
        "a replay answered differently went unseen; failed: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_conservation_catches_a_build_that_pays_some_orders_for_free() {
    let failed = failed_with_bug("free-payment", Nemesis::KillFollower, 4, |_| {}).await;
    assert!(
        failed.iter().any(|n| n == "money conserved"),
        "money made from nothing went unseen; failed: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linearizability_catches_a_build_that_serves_stale_reads() {
    // Straight to a follower: its own state lags the leader's commits.
    let failed = failed_with_bug("stale-read", Nemesis::KillLeader, 4, |cfg| {
        cfg.through_gateway = false;
        cfg.to_follower = true;
    })
    .await;
    assert!(
        failed.iter().any(|n| n.starts_with("linearizable")),
        "stale reads went unseen; failed: {failed:?}"
    );
}
