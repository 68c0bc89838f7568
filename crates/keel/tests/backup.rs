//! Backups and restores of a real cluster: real `keel node` processes, the
//! real `keel backup` and `keel restore` commands, real target directories.
//! Each test reads as a story: write, back up, damage, restore, check.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keel_client::Client;
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::Value;

const READY: Duration = Duration::from_secs(30);
const TOKEN: &str = "keel-admin-dev";
const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("KEEL_BACKUP_KEY", KEY_HEX)
        .env_remove("KEEL_BACKUP_KEY_FILE")
        .env_remove("KEEL_BACKUP_TARGETS")
        .output()
        .unwrap()
}

/// Runs `keel …` and returns its stdout, failing the test on a non-zero exit.
fn keel_ok(args: &[&str]) -> String {
    let out = keel(args);
    assert!(
        out.status.success(),
        "keel {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `keel …` that must fail; returns stdout and stderr together.
fn keel_err(args: &[&str]) -> String {
    let out = keel(args);
    assert!(
        !out.status.success(),
        "keel {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Places `n` orders (some paid) tagged `tag`; returns their ids.
async fn shop(c: &Client, tag: &str, n: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let lines = vec![("SKU-1".to_string(), 1 + i % 3)];
        let (o, _) = c
            .place_order(&format!("c{}", i % 4), &lines, &format!("{tag}-{i}"))
            .await
            .unwrap();
        if i % 2 == 0 {
            c.transition(o.id.0, "pay", &format!("{tag}-pay-{i}"))
                .await
                .unwrap();
        }
        ids.push(o.id.0);
    }
    ids
}

struct Cluster {
    cluster: LocalCluster,
    client: Client,
}

async fn start(dir: &Path, seed_dir: Option<&Path>) -> Cluster {
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir, 3);
    spec.seed = seed_dir.map(Path::to_path_buf);
    let cluster = LocalCluster::start(spec).unwrap();
    cluster.wait_ready(READY).await.unwrap();
    let endpoints = cluster
        .ids()
        .into_iter()
        .map(|id| cluster.addr(id).unwrap())
        .collect();
    Cluster {
        client: Client::new(endpoints, Some(TOKEN.into())),
        cluster,
    }
}

impl Cluster {
    fn nodes(&self) -> String {
        self.cluster
            .ids()
            .into_iter()
            .map(|id| self.cluster.addr(id).unwrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// (applied index, digest) once every node agrees.
    async fn settled_digest(&self) -> (u64, String) {
        self.cluster
            .wait_converged(&self.cluster.ids(), READY)
            .await
            .unwrap()
    }

    async fn has_order(&self, id: u64) -> bool {
        match self.client.order(id).await {
            Ok(_) => true,
            Err(e) if e.kind() == Some("not_found") => false,
            Err(e) => panic!("reading order {id}: {e}"),
        }
    }
}

fn targets(root: &Path, n: usize) -> (Vec<PathBuf>, String) {
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("target-{i}"))).collect();
    let spec = dirs
        .iter()
        .map(|d| format!("dir:{}", d.display()))
        .collect::<Vec<_>>()
        .join(",");
    (dirs, spec)
}

fn manifests(json: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(json).unwrap()
}

/// `keel restore --to DIR --json --target T …`, which must succeed; its report.
fn restore(to: &Path, tspec: &str, extra: &[&str]) -> Value {
    let mut a = vec![
        "restore",
        "--to",
        to.to_str().unwrap(),
        "--json",
        "--target",
        tspec,
    ];
    a.extend(extra);
    serde_json::from_str(keel_ok(&a).trim()).unwrap()
}

/// Polls `keel backup list` until `want` holds, then returns the list.
fn wait_list(tspec: &str, what: &str, want: &dyn Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + READY;
    loop {
        let l = manifests(&keel_ok(&["backup", "list", "--json", "--target", tspec]));
        if want(&l) {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_hot_backups_restores_to_any_point_and_survives_losing_parity_targets() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(&dir.path().join("cluster"), None).await;
    keel_harness::seed_test_shop(&c.client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let (_dirs, tspec) = targets(dir.path(), 3);
    let nodes = c.nodes();
    let work = dir.path().join("work");
    let work = work.to_str().unwrap();
    let repo = ["--target", tspec.as_str(), "--layout", "2+1"];
    let create = |kind: &str| -> Vec<Value> {
        let mut a = vec![
            "backup", "create", "--kind", kind, "--nodes", &nodes, "--json",
        ];
        a.extend(["--work-dir", work]);
        a.extend(repo);
        manifests(&keel_ok(&a))
    };

    // Orders before the full; the full is taken while writers keep going.
    let before_full = shop(&c.client, "a", 10).await;
    let writer = {
        let client = Client::new(c.client.endpoints().to_vec(), Some(TOKEN.into()));
        tokio::spawn(async move { shop(&client, "during", 30).await })
    };
    let full = create("full");
    let during = writer.await.unwrap();
    assert_eq!(full.len(), 1);
    assert_eq!(full[0]["kind"], "full");

    let after_full = shop(&c.client, "b", 10).await;
    let incr1 = create("incremental");
    assert_eq!(incr1[0]["kind"], "incremental");
    assert_eq!(incr1[0]["parent"], full[0]["id"]);
    let incr1_last = incr1[0]["last_index"].as_u64().unwrap();
    assert_eq!(
        incr1[0]["first_index"].as_u64().unwrap(),
        full[0]["last_index"].as_u64().unwrap() + 1
    );

    let after_incr1 = shop(&c.client, "c", 10).await;
    let diff = create("differential");
    assert_eq!(diff[0]["kind"], "differential");
    assert_eq!(
        diff[0]["parent"], full[0]["id"],
        "a differential follows the full"
    );
    let after_diff = shop(&c.client, "d", 5).await;
    let incr2 = create("incremental");
    assert_eq!(incr2[0]["parent"], diff[0]["id"]);
    let (index, digest) = c.settled_digest().await;
    // Nothing new was committed since: a backup is not written for nothing.
    let out = keel(&[
        "backup",
        "create",
        "--kind",
        "incremental",
        "--nodes",
        &nodes,
        "--target",
        &tspec,
        "--layout",
        "2+1",
        "--work-dir",
        work,
    ]);
    assert!(out.status.success());
    assert_eq!(wait_list(&tspec, "the list", &|_| true).len(), 4);

    // Latest: the cluster's own state, to the digest.
    let r = dir.path().join("restore-latest");
    let latest = restore(&r, &tspec, &["--layout", "2+1"]);
    assert_eq!(latest["index"].as_u64().unwrap(), index);
    assert_eq!(latest["digest"].as_str().unwrap(), digest);

    // A chosen leader time: everything stamped up to it, nothing after.
    let t = incr1[0]["last_time_ms"].as_u64().unwrap();
    let rt = dir.path().join("restore-time");
    let by_time = restore(
        &rt,
        &tspec,
        &["--time-ms", &t.to_string(), "--layout", "2+1"],
    );
    assert_eq!(by_time["time_ms"].as_u64().unwrap(), t);
    assert!(by_time["index"].as_u64().unwrap() >= incr1_last);
    assert!(by_time["index"].as_u64().unwrap() < index);

    // A chosen index: exactly there.
    let r2 = dir.path().join("restore-at");
    let at = restore(
        &r2,
        &tspec,
        &["--index", &incr1_last.to_string(), "--layout", "2+1"],
    );
    assert_eq!(at["index"].as_u64().unwrap(), incr1_last);
    c.cluster.stop_all();
    drop(c);

    // A new cluster from the point-in-time seed has what was committed up
    // to that index and nothing after it.
    let mut c2 = start(&dir.path().join("cluster-2"), Some(&r2)).await;
    for id in before_full.iter().chain(&during).chain(&after_full) {
        assert!(
            c2.has_order(*id).await,
            "order {id} was acknowledged before the point"
        );
    }
    for id in after_incr1.iter().chain(&after_diff) {
        assert!(!c2.has_order(*id).await, "order {id} came after the point");
    }
    // And it takes writes.
    shop(&c2.client, "e", 3).await;
    c2.settled_digest().await;
    c2.cluster.stop_all();
    drop(c2);

    // Losing one target of 2+1 loses nothing...
    std::fs::remove_dir_all(dir.path().join("target-2")).unwrap();
    let r3 = dir.path().join("restore-degraded");
    let degraded = restore(&r3, &tspec, &["--layout", "2+1"]);
    assert_eq!(degraded["digest"].as_str().unwrap(), digest);
    // ... verify says what is missing, and repair puts it back.
    let v = keel_err(&["backup", "verify", "--target", &tspec, "--layout", "2+1"]);
    assert!(v.contains("missing"), "{v}");
    keel_ok(&["backup", "repair", "--target", &tspec, "--layout", "2+1"]);
    keel_ok(&["backup", "verify", "--target", &tspec, "--layout", "2+1"]);

    // Losing two of 2+1 fails clearly and writes nothing.
    std::fs::remove_dir_all(dir.path().join("target-1")).unwrap();
    std::fs::remove_dir_all(dir.path().join("target-2")).unwrap();
    let r4 = dir.path().join("restore-lost");
    let e = keel_err(&[
        "restore",
        "--to",
        r4.to_str().unwrap(),
        "--target",
        &tspec,
        "--layout",
        "2+1",
    ]);
    assert!(
        e.to_lowercase().contains("shard") || e.contains("manifest"),
        "{e}"
    );
    assert!(!r4.exists(), "a failed restore leaves nothing behind");
}

/// A backup is asked of a follower that missed the latest acknowledged
/// writes (it was paused while they committed, and the leader that
/// acknowledged them is dead). Both what a backup starts from, the
/// snapshot and the applied index an incremental reads up to, must hold
/// those writes: the follower catches up through the next leader first.
/// Answering from its own log, it would leave them out for the whole time
/// an election takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_from_a_lagging_follower_holds_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(&dir.path().join("cluster"), None).await;
    keel_harness::seed_test_shop(&c.client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let leader = c.cluster.leader().await.unwrap();
    let lagging = c
        .cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    c.cluster.pause(lagging).unwrap();
    let acked = shop(&c.cluster.node_client(leader).unwrap(), "missed", 5).await;
    let (acked_index, _) = c.cluster.digest(leader).await.unwrap();
    c.cluster.kill(leader).unwrap();
    c.cluster.resume(lagging).unwrap();

    let base = c.cluster.addr(lagging).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let index_of = |path: String, header: &'static str| {
        let req = http
            .get(format!("http://{base}{path}"))
            .bearer_auth(TOKEN)
            .send();
        async move {
            let resp = req.await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            let v: u64 = resp.headers()[header].to_str().unwrap().parse().unwrap();
            // Read the body too: a snapshot is only whole once streamed.
            resp.bytes().await.unwrap();
            v
        }
    };
    let (applied, snapshot) = tokio::join!(
        index_of(
            format!("/v1/backup/log?after={}&barrier=true", u64::MAX - 1),
            "keel-backup-applied"
        ),
        index_of("/v1/backup/snapshot".into(), "keel-backup-index"),
    );
    assert!(
        applied >= acked_index,
        "the applied index for an incremental ({applied}) misses acknowledged writes up to {acked_index}"
    );
    assert!(
        snapshot >= acked_index,
        "the snapshot ({snapshot}) misses acknowledged writes up to {acked_index}"
    );
    // And the orders themselves are in what that node now serves.
    let from_lagging = c.cluster.node_client(lagging).unwrap();
    for id in acked {
        from_lagging.order(id).await.unwrap();
    }
    c.cluster.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_backup_of_a_stopped_node_restores_its_state_and_a_wrong_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(&dir.path().join("cluster"), None).await;
    keel_harness::seed_test_shop(&c.client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    shop(&c.client, "a", 12).await;
    let (index, digest) = c.settled_digest().await;
    let (_dirs, tspec) = targets(dir.path(), 2);
    let data = c.cluster.data_dir(2);
    let work = dir.path().join("work");
    let cold = |data: &Path| {
        keel(&[
            "backup",
            "create",
            "--kind",
            "cold",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
            "--work-dir",
            work.to_str().unwrap(),
            "--target",
            &tspec,
        ])
    };
    // A running node's directory is not a cold backup.
    let running = cold(&data);
    assert!(
        !running.status.success(),
        "a live data directory must be refused"
    );
    c.cluster.stop(2).unwrap();
    let out = cold(&data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ms = manifests(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(ms[0]["kind"], "cold");

    let r = dir.path().join("restore");
    let got = restore(&r, &tspec, &[]);
    assert_eq!(got["index"].as_u64().unwrap(), index);
    assert_eq!(got["digest"].as_str().unwrap(), digest);

    // The wrong key: refused before anything is written.
    let r2 = dir.path().join("restore-wrong-key");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["restore", "--to", r2.to_str().unwrap(), "--target", &tspec])
        .env("KEEL_BACKUP_KEY", "ff".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!r2.exists());
    // A restore never writes into a directory that holds data.
    let e = keel_err(&["restore", "--to", r.to_str().unwrap(), "--target", &tspec]);
    assert!(e.contains("not empty"), "{e}");
    c.cluster.stop_all();
}

/// `keel backup schedule` as a child process, stopped with SIGTERM.
struct Scheduler(std::process::Child);

impl Scheduler {
    fn start(args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["backup", "schedule"])
            .args(args)
            .env("KEEL_BACKUP_KEY", KEY_HEX)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// SIGTERM, then its output; it must exit cleanly.
    fn stop(mut self) -> String {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let out = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "scheduler failed:\n{text}");
        text
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_follow_the_log_so_a_lost_cluster_loses_at_most_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(&dir.path().join("cluster"), None).await;
    keel_harness::seed_test_shop(&c.client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let (_dirs, tspec) = targets(dir.path(), 1);
    let nodes = c.nodes();
    let work = dir.path().join("work");
    // A continuous archive: a full first, then segments closed every 300 ms.
    let archiver = Scheduler::start(&[
        "--nodes",
        &nodes,
        "--target",
        &tspec,
        "--work-dir",
        work.to_str().unwrap(),
        "--full-every",
        "1h",
        "--archive-every",
        "300ms",
    ]);
    wait_list(&tspec, "the first full", &|l| {
        l.iter().any(|m| m["kind"] == "full")
    });
    let ids = shop(&c.client, "a", 20).await;
    let (index, digest) = c.settled_digest().await;
    // Everything committed reaches the archive within about a segment.
    let l = wait_list(&tspec, "the archive to reach the cluster's index", &|l| {
        l.iter().any(|m| m["last_index"].as_u64() >= Some(index))
    });
    assert!(l.iter().any(|m| m["kind"] == "archive"), "{l:?}");
    let log = archiver.stop();
    assert!(log.contains("archived"), "{log}");

    // The whole cluster is lost; the archive brings back every order.
    c.cluster.stop_all();
    drop(c);
    let r = dir.path().join("restore");
    let got = restore(&r, &tspec, &[]);
    assert_eq!(got["index"].as_u64().unwrap(), index);
    assert_eq!(got["digest"].as_str().unwrap(), digest);
    let mut c2 = start(&dir.path().join("cluster-2"), Some(&r)).await;
    for id in &ids {
        assert!(c2.has_order(*id).await, "order {id} was acknowledged");
    }

    // An event trigger: an incremental once 10 entries are committed.
    let before = wait_list(&tspec, "the list", &|_| true).len();
    let by_events = Scheduler::start(&[
        "--nodes",
        &c2.nodes(),
        "--target",
        &tspec,
        "--work-dir",
        work.to_str().unwrap(),
        "--after-entries",
        "10",
        "--keep-full",
        "1",
    ]);
    shop(&c2.client, "b", 10).await;
    wait_list(&tspec, "an incremental after 10 entries", &|l| {
        l.len() > before && l.iter().any(|m| m["kind"] == "incremental")
    });
    by_events.stop();
    c2.cluster.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_config_runs_the_backup_schedule_and_stops_it_with_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(&dir.path().join("cluster"), None).await;
    keel_harness::seed_test_shop(&c.client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let (dirs, tspec) = targets(dir.path(), 3);
    let key = dir.path().join("backup.key");
    std::fs::write(&key, KEY_HEX).unwrap();
    let quoted = |p: &Path| format!("{:?}", p.to_str().unwrap());
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[backup]\ntargets = [{}]\nlayout = \"2+1\"\nkey_file = {}\nwork_dir = {}\n\
             full_every_s = 3600\nafter_entries = 20\n",
            dirs.iter()
                .map(|d| quoted(d))
                .collect::<Vec<_>>()
                .join(", "),
            quoted(&key),
            quoted(&dir.path().join("work")),
        ),
    )
    .unwrap();
    c.cluster
        .start_gateway(0, &["--config".into(), config.to_str().unwrap().into()])
        .unwrap();
    c.cluster.wait_gateway_ready(READY).await.unwrap();

    // The first full runs at start; 20 committed entries trigger an
    // incremental on top of it.
    wait_list(&tspec, "the scheduled full", &|l| {
        l.iter().any(|m| m["kind"] == "full")
    });
    shop(&c.client, "g", 30).await;
    wait_list(&tspec, "an incremental after 20 entries", &|l| {
        l.iter().any(|m| m["kind"] == "incremental")
    });

    // The schedule is the gateway's child and ends with it.
    let log = std::fs::read_to_string(c.cluster.gateway_log_file()).unwrap();
    let pid: u32 = log
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no schedule pid in the gateway's log:\n{log}"));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    c.cluster.stop_gateway();
    let gone = std::time::Instant::now() + READY;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < gone,
            "the backup schedule outlived its gateway"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
