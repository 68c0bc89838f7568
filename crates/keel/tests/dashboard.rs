#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
//! The gateway's operations dashboard in a real browser: Debian's headless
//! Chromium loads `/dashboard` in front of a three-node cluster, and the
//! page must show the leader and three members up with no console error;
//! after the leader is killed (SIGKILL) it must show the new leader and the
//! killed node down. Chromium is installed with apt-get when missing: the
//! test fails, never skips, when it cannot be.
//!
//! With `KEEL_DASHBOARD_SCREENSHOT=<file.png>` set, the test also saves a
//! screenshot of the page over the live cluster (how the one in
//! docs/OPERATIONS.md was made).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_client::Client;
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::Value;

/// The admin token the harness gives the nodes and the gateway.
const TOKEN: &str = "keel-admin-dev";
const READY: Duration = Duration::from_secs(30);
/// Longest the cluster may take to elect a new leader and the gateway to
/// see it (elections take about a second; room for a slow machine).
const NEW_LEADER: Duration = Duration::from_secs(20);
/// Virtual time the browser gives the page before it writes the DOM: the
/// first poll runs at load, the page polls every 2 s, so this covers
/// three polls.
const PAGE_VIRTUAL_MS: u64 = 6_000;
/// Longest one browser run may take in real time.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// The backup repository's key (test only).
const BACKUP_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// Orders placed before the first look, so the charts and business
/// figures have something to show.
const ORDERS: u64 = 30;

/// Debian's Chromium, installed with apt-get if missing.
fn chromium() -> PathBuf {
    if let Some(p) = keel_harness::host::find_binary("chromium") {
        return p;
    }
    if let Err(e) = keel_harness::host::apt_install(&["chromium"]) {
        panic!("the dashboard test needs Debian's chromium and could not install it: {e}");
    }
    keel_harness::host::find_binary("chromium")
        .expect("apt-get installed chromium but it is not on PATH")
}

/// What one headless run of the browser left.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom`, or
/// `--screenshot=…`), a fresh profile under `profile`, and the page given
/// [`PAGE_VIRTUAL_MS`] of virtual time.
async fn browse(chromium: &Path, profile: &Path, url: &str, mode: &[String]) -> Run {
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={PAGE_VIRTUAL_MS}"))
    .args(mode)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(BROWSER_TIMEOUT, cmd.output())
        .await
        .expect("chromium did not finish in time")
        .unwrap();
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        run.stderr
    );
    run
}

/// The page logs nothing itself, so any console line is an error of the
/// page: an exception, a refused resource, a CSP violation.
fn assert_no_console_errors(run: &Run) {
    let bad: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                || l.contains("Uncaught")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
        })
        .collect();
    assert!(bad.is_empty(), "console errors:\n{}", bad.join("\n"));
}

/// The text of the element with id `id` (no nested elements expected).
fn text_of(dom: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].trim().to_owned()
}

/// `(node id, health)` of each row of `#members`.
fn member_rows(dom: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..at + tag[at..].find('"')?].to_owned())
    };
    dom.split("<tr ")
        .skip(1)
        .filter_map(|chunk| {
            let tag = &chunk[..chunk.find('>')?];
            Some((attr(tag, "data-node-id")?, attr(tag, "data-health")?))
        })
        .collect()
}

async fn dashboard_json(http: &reqwest::Client, gw: &str) -> Value {
    let r = http
        .get(format!("http://{gw}/gateway/dashboard"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `keel backup create --kind <kind>` of the cluster into the directory
/// `repo`; the backup's last index.
fn backup(cluster: &LocalCluster, repo: &Path, work: &Path, kind: &str) -> u64 {
    let nodes: Vec<String> = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.addr(id).unwrap())
        .collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "backup", "create", "--kind", kind, "--json", "--layout", "mirror",
        ])
        .arg("--nodes")
        .arg(nodes.join(","))
        .arg("--target")
        .arg(format!("dir:{}", repo.display()))
        .arg("--work-dir")
        .arg(work)
        .env("KEEL_BACKUP_KEY", BACKUP_KEY_HEX)
        .env("KEEL_ADMIN_TOKEN", TOKEN)
        .env_remove("KEEL_BACKUP_KEY_FILE")
        .env_remove("KEEL_BACKUP_TARGETS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keel backup create --kind {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    made[0]["last_index"].as_u64().unwrap()
}

async fn shop(c: &Client, n: u64) {
    shop_tagged(c, "dash", n).await;
}

/// Places `n` orders keyed by `tag`, and pays two in three.
async fn shop_tagged(c: &Client, tag: &str, n: u64) {
    for i in 0..n {
        let lines = vec![("SKU-1".to_string(), 1)];
        let (o, _) = c
            .place_order("c0", &lines, &format!("{tag}-{i}"))
            .await
            .unwrap();
        if i % 3 != 0 {
            c.transition(o.id.0, "pay", &format!("{tag}-pay-{i}"))
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_follows_a_leader_kill_in_a_real_browser() {
    // The install first: its minutes are not the cluster's.
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    let mut cluster = LocalCluster::start(spec).unwrap();
    cluster.wait_ready(READY).await.unwrap();
    let started = Instant::now();
    // A full and an incremental backup, for the backup panel.
    let admin = cluster.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000_000, 100_000_000)
        .await
        .unwrap();
    let (repo, work) = (dir.path().join("backups"), dir.path().join("work"));
    shop(&admin, ORDERS).await;
    let full_index = backup(&cluster, &repo, &work, "full");
    shop_tagged(&admin, "after-full", 5).await;
    let incremental_index = backup(&cluster, &repo, &work, "incremental");
    let key_file = dir.path().join("backup.key");
    std::fs::write(&key_file, BACKUP_KEY_HEX).unwrap();

    let gateway_args = [
        "--backup-repo".to_owned(),
        repo.display().to_string(),
        "--backup-key-file".to_owned(),
        key_file.display().to_string(),
    ];
    cluster.start_gateway(0, &gateway_args).unwrap();
    let gw = cluster.wait_gateway_ready(READY).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let admin = Client::new(vec![gw.clone()], Some(TOKEN.into()));

    // The page and its assets are public and locked down; the data is not.
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/uplot.js", "text/javascript"),
        ("/dashboard/uplot.css", "text/css"),
    ] {
        let r = http.get(format!("http://{gw}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(h.contains_key("cache-control"), "{path}");
    }
    let anonymous = http
        .get(format!("http://{gw}/gateway/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // The gateway's own alerts: for observers only, a book with no alert
    // yet (its detectors are still learning their baselines).
    let url = format!("http://{gw}/gateway/alerts");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let own: Value = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["active"], serde_json::json!([]), "{own}");
    // The sampler lists the repository as it starts.
    let d = cluster
        .wait_for("the backup panel", READY, || {
            let (http, gw) = (http.clone(), gw.clone());
            async move {
                let d = dashboard_json(&http, &gw).await;
                (!d["backups"].is_null()).then_some(d)
            }
        })
        .await
        .unwrap();
    assert_eq!(d["cluster"]["members"].as_array().unwrap().len(), 3, "{d}");
    let b = &d["backups"];
    assert_eq!(b["count"], 2, "{d}");
    assert_eq!(b["last_full"]["kind"], "full", "{b}");
    assert_eq!(b["last_full"]["last_index"], full_index, "{b}");
    assert_eq!(b["last_incremental"]["kind"], "incremental", "{b}");
    assert_eq!(b["recovery_point"]["index"], incremental_index, "{b}");
    assert!(b["error"].is_null(), "{b}");

    // Act 1: the page over a healthy cluster.
    let leader = cluster.leader().await.unwrap();
    let url = format!("http://{gw}/dashboard#token={TOKEN}");
    let profile = dir.path().join("chromium-profile");
    let dump = vec!["--dump-dom".to_owned()];
    let run = browse(&chromium, &profile, &url, &dump).await;
    assert_no_console_errors(&run);
    assert_eq!(text_of(&run.stdout, "leader"), leader.to_string());
    let rows = member_rows(&run.stdout);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|(_, h)| h == "up"), "{rows:?}");
    assert!(text_of(&run.stdout, "status").starts_with("updated"));
    assert!(
        run.stdout.contains(&format!("index {incremental_index}")),
        "the recovery point is on the page"
    );

    if let Ok(shot) = std::env::var("KEEL_DASHBOARD_SCREENSHOT") {
        // Half a minute of traffic so the charts have points.
        let until = Instant::now() + Duration::from_secs(30);
        let mut round = 0;
        while Instant::now() < until {
            round += 1;
            shop_tagged(&admin, &format!("shot-{round}"), 5 + round % 7).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mode = vec![
            format!("--screenshot={shot}"),
            "--window-size=1280,1000".to_owned(),
            "--hide-scrollbars".to_owned(),
        ];
        browse(&chromium, &profile, &url, &mode).await;
    }

    // Fault: the leader dies.
    cluster.kill(leader).unwrap();
    let killed = leader.to_string();
    let new_leader = cluster.wait_new_leader(leader, NEW_LEADER).await.unwrap();
    // The gateway's data has caught up (a condition, not a sleep).
    cluster
        .wait_for(
            "the dashboard data to show the new leader",
            NEW_LEADER,
            || {
                let http = http.clone();
                let gw = gw.clone();
                async move {
                    let d = dashboard_json(&http, &gw).await;
                    let members = d["cluster"]["members"].as_array()?;
                    let down = members
                        .iter()
                        .any(|m| m["id"] == leader && m["health"] == "down");
                    (d["cluster"]["leader_id"] == new_leader && down).then_some(())
                }
            },
        )
        .await
        .unwrap();

    // Check: the page shows it.
    let run = browse(&chromium, &profile, &url, &dump).await;
    assert_no_console_errors(&run);
    assert_eq!(text_of(&run.stdout, "leader"), new_leader.to_string());
    let rows = member_rows(&run.stdout);
    let health = |id: &str| rows.iter().find(|(n, _)| n == id).map(|(_, h)| h.clone());
    assert_eq!(health(&killed).as_deref(), Some("down"), "{rows:?}");
    assert_eq!(
        health(&new_leader.to_string()).as_deref(),
        Some("up"),
        "{rows:?}"
    );
    eprintln!(
        "dashboard test: {:.1} s after the cluster was ready",
        started.elapsed().as_secs_f64()
    );
}
