//! The operator's actions through `keel admin`, against real clusters:
//! leadership handed to a chosen voter while writes keep flowing, and a
//! survivor of a lost quorum made a new cluster that keeps every write it
//! had applied and grows back to three voters.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::Client;
use keel_domain::Order;
use keel_harness::{ClusterSpec, LocalCluster};

const READY: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(60);

fn cluster(nodes: u64) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), nodes);
    let c = LocalCluster::start(spec).unwrap();
    (dir, c)
}

/// `keel admin --endpoint <endpoint> <args>` with the cluster's admin token.
fn admin(c: &LocalCluster, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("admin")
        .args(["--endpoint", endpoint])
        .env("KEEL_ADMIN_TOKEN", c.admin_token())
        .env_remove("KEEL_ADMIN_TOKEN_FILE")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn one(n: u64) -> Vec<(String, u64)> {
    vec![("SKU-1".to_string(), 1 + n % 3)]
}

/// What one writer saw: acknowledged orders, failures, and the longest
/// time between two acknowledgements.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<u64, Order>,
    failures: Vec<String>,
    longest_gap: Duration,
}

fn spawn_writer(
    client: Arc<Client>,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let mut n = 0;
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let r = client.place_order("c0", &one(n), &format!("t{n}")).await;
            let mut s = s.lock().unwrap();
            match r {
                Ok((o, _)) => {
                    s.longest_gap = s.longest_gap.max(last.elapsed());
                    last = Instant::now();
                    s.acked.insert(o.id.0, o);
                }
                Err(e) => s.failures.push(e.to_string()),
            }
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_chosen_voter_while_writes_keep_flowing() {
    let (_d, c) = cluster(3);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = Arc::new(c.admin_client());
    keel_harness::seed_test_shop(&client, 1, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let ep = c.addr(leader).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, writer) = spawn_writer(client.clone(), stop.clone());
    c.wait_for("writes flowing", READY, || async {
        (seen.lock().unwrap().acked.len() >= 20).then_some(())
    })
    .await
    .unwrap();
    let to = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let out = ok(
        admin(&c, &ep, &["leader", "transfer", "--to", &to.to_string()]),
        "leader transfer",
    );
    assert!(out.contains(&format!("node {to} leads")), "{out}");
    // Writes go on at the new leader.
    let before = seen.lock().unwrap().acked.len();
    c.wait_for("writes after the transfer", READY, || async {
        (seen.lock().unwrap().acked.len() >= before + 20).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(c.leader().await, Some(to));
    let (failures, gap) = {
        let seen = seen.lock().unwrap();
        (seen.failures.clone(), seen.longest_gap)
    };
    assert!(
        failures.is_empty(),
        "a client saw the transfer: {failures:?}"
    );
    eprintln!("longest write gap around the transfer: {gap:?}");
    // The transfer refuses what cannot lead, changing nothing.
    let ep = c.addr(to).unwrap();
    let err = refused(
        admin(&c, &ep, &["leader", "transfer", "--to", "99"]),
        "a transfer to a non-member",
    );
    assert!(err.contains("transfer_refused"), "{err}");
    assert_eq!(c.leader().await, Some(to));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_of_a_lost_quorum_becomes_a_new_cluster_with_every_write_it_applied() {
    let (_d, mut c) = cluster(3);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = c.admin_client();
    keel_harness::seed_test_shop(&client, 1, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let mut acked = BTreeMap::new();
    for n in 0..40 {
        let (o, _) = client
            .place_order("c0", &one(n), &format!("r{n}"))
            .await
            .unwrap();
        acked.insert(o.id.0, o);
    }
    let (applied, digest) = c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    // Two of three nodes are lost for good.
    let lost: Vec<u64> = c.ids().into_iter().filter(|i| *i != leader).collect();
    for l in &lost {
        c.kill(*l).unwrap();
        c.wipe(*l).unwrap();
    }
    c.stop(leader).unwrap();
    let dir = c.data_dir(leader);
    let dir = dir.to_str().unwrap();
    let id = leader.to_string();
    let ep = c.addr(leader).unwrap();
    let recover = |confirm: &[&str]| {
        let mut args = vec![
            "recover",
            "--force-new-cluster",
            "--data-dir",
            dir,
            "--id",
            &id,
        ];
        args.extend_from_slice(confirm);
        admin(&c, &ep, &args)
    };
    // Without confirmation nothing changes.
    let err = refused(recover(&[]), "recover without confirmation");
    assert!(err.contains("confirmation"), "{err}");
    let out = ok(recover(&["--yes"]), "recover");
    assert!(out.contains("last index it holds"), "{out}");
    c.restart(leader).unwrap();
    let led = c
        .wait_for("the survivor leads alone", READY, || async {
            let s = c.status(leader).await?;
            (s["leader_id"].as_u64() == Some(leader)).then_some(())
        })
        .await;
    if led.is_err() {
        let log = std::fs::read_to_string(c.log_file(leader)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "the survivor does not lead alone; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let (now_applied, now_digest) = c.digest(leader).await.unwrap();
    assert!(now_applied > applied, "the forced entry was not applied");
    // The survivor's state is the one it had: same orders, and the digest
    // changes only by the membership, which is not part of it.
    assert_eq!(now_digest, digest, "the state changed in the recovery");
    // Two fresh nodes join; the cluster is three voters again.
    for new in [4, 5] {
        let addr = c.add_node(new).unwrap();
        ok(
            admin(
                &c,
                &ep,
                &[
                    "members",
                    "add",
                    "--id",
                    &new.to_string(),
                    "--addr",
                    &addr,
                    "--promote",
                ],
            ),
            "members add",
        );
    }
    let status = ok(admin(&c, &ep, &["members", "list"]), "members list");
    assert_eq!(status.matches("voter").count(), 3, "{status}");
    for n in 40..50 {
        let (o, _) = client
            .place_order("c0", &one(n), &format!("r{n}"))
            .await
            .unwrap();
        acked.insert(o.id.0, o);
    }
    let ids = vec![leader, 4, 5];
    c.wait_converged(&ids, CONVERGE).await.unwrap();
    for n in [4, 5] {
        let nc = c.node_client(n).unwrap();
        for (oid, want) in &acked {
            let got = nc.order(*oid).await.unwrap();
            assert_eq!(got.lines, want.lines, "order {oid} on node {n}");
        }
    }
    // Removing a voter of three leaves two, which survive no failure: it
    // needs --force.
    let err = refused(
        admin(&c, &ep, &["members", "remove", "5"]),
        "an at-risk removal",
    );
    assert!(err.contains("membership_at_risk"), "{err}");
    ok(
        admin(&c, &ep, &["members", "remove", "5", "--force"]),
        "a forced removal",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_the_leader_moves_leadership_and_the_gateway_sends_it_nothing() {
    let (_d, mut c) = cluster(3);
    let leader = c.wait_ready(READY).await.unwrap();
    let gateway = c.start_gateway_ready(0).await.unwrap();
    let ep = c.addr(leader).unwrap();
    let out = ok(
        admin(
            &c,
            &ep,
            &["drain", &leader.to_string(), "--gateway", &gateway],
        ),
        "drain",
    );
    assert!(out.contains("weight 0"), "{out}");
    assert!(out.contains("leadership moved"), "{out}");
    let new = c.wait_new_leader(leader, READY).await.unwrap();
    assert_ne!(new, leader);
    let status = ok(
        admin(&c, &ep, &["weights", "list", "--gateway", &gateway]),
        "weights list",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let drained = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["addr"] == ep.as_str())
        .unwrap();
    assert_eq!(drained["weight"], 0, "{status}");
    // Weights are set back the same way.
    ok(
        admin(
            &c,
            &ep,
            &[
                "weights",
                "set",
                "--gateway",
                &gateway,
                "--node",
                &ep,
                "--weight",
                "100",
            ],
        ),
        "weights set",
    );
}
