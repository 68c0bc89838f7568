//! Whole-cluster tests: real `keel node` processes, real sockets, real files.
//! Each test reads as a story: start, act, fault, check.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_client::{method_delete, method_get, method_post, AttemptError, Client};
use keel_domain::command::BATCH_COMMANDS_MAX;
use keel_domain::Order;
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::json;

const READY: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(60);

fn cluster(nodes: u64, extra: &[&str]) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), nodes);
    spec.extra_args = extra.iter().map(|s| s.to_string()).collect();
    let c = LocalCluster::start(spec).unwrap();
    (dir, c)
}

fn one(id: u64) -> Vec<(String, u64)> {
    vec![("SKU-1".to_string(), 1 + id % 3)]
}

type Acked = Arc<Mutex<BTreeMap<u64, Order>>>;

/// Writers placing keyed orders until stopped; returns acknowledged orders.
fn spawn_writers(
    client: Arc<Client>,
    writers: u64,
    stop: Arc<AtomicBool>,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Ok((o, _)) = client
                    .place_order(&format!("c{w}"), &one(n), &format!("w{w}-{n}"))
                    .await
                {
                    acked.lock().unwrap().insert(o.id.0, o);
                }
            }
        }));
    }
    (acked, tasks)
}

async fn assert_all_present(c: &Client, acked: &BTreeMap<u64, Order>) {
    assert!(!acked.is_empty(), "no order was acknowledged at all");
    for (id, want) in acked {
        let got = c.order(*id).await.unwrap();
        assert_eq!(got.lines, want.lines, "order {id} changed");
        assert_eq!(got.customer, want.customer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_forms_elects_and_serves_writes_and_reads_through_any_node() {
    let (_d, c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    // Writes through a follower are forwarded to the leader.
    let via_follower = c.node_client(follower).unwrap();
    keel_harness::seed_test_shop(&via_follower, 2, 100, 1_000_000_000)
        .await
        .unwrap();
    let (o, replayed) = via_follower.place_order("c0", &one(1), "k1").await.unwrap();
    assert!(!replayed);
    // A linearizable read on another node sees it at once.
    for id in c.ids() {
        let got = c.node_client(id).unwrap().order(o.id.0).await.unwrap();
        assert_eq!(got, o);
    }
    // A local read reports the replica's applied index.
    let ep = c.addr(follower).unwrap();
    let r = via_follower
        .call_at(
            &ep,
            method_get(),
            "/v1/products/SKU-1?consistency=local",
            None,
            None,
        )
        .await
        .unwrap();
    assert!(r.body["available"].as_u64().unwrap() <= 100);
    // Every reply names the leader, so a balancer learns it from any node.
    assert_eq!(
        r.leader,
        Some(format!("{leader}={}", c.addr(leader).unwrap()))
    );
    // Bad input is a problem+json and changes nothing.
    let bad = via_follower
        .call_at(
            &ep,
            method_post(),
            "/v1/orders",
            Some(&json!({"customer": "c0", "lines": []})),
            Some("bad-1"),
        )
        .await;
    match bad {
        Err(AttemptError::Problem(p)) => assert_eq!(p.kind(), Some("validation")),
        other => panic!("expected a validation problem, got {other:?}"),
    }
    let s = via_follower.summary().await.unwrap();
    assert_eq!(s.next_order_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_internal_call_without_the_cluster_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 1);
    let secret = spec.cluster_secret.clone();
    let c = LocalCluster::start(spec).unwrap();
    c.wait_ready(READY).await.unwrap();
    // The node's clock: an internal call with an empty (postcard `()`) body.
    let url = format!("http://{}/internal/clock", c.addr(1).unwrap());
    let http = reqwest::Client::new();
    let status = |presented: Option<String>| {
        let mut req = http.post(&url);
        if let Some(s) = presented {
            req = req.header(keel_protocol::header::CLUSTER_SECRET, s);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(Some(secret.clone())).await, 200);
    let mut last_byte_off = secret.clone().into_bytes();
    *last_byte_off.last_mut().unwrap() ^= 1;
    let wrong = [
        String::from_utf8(last_byte_off).unwrap(),
        secret[..secret.len() - 1].to_owned(),
        format!("{secret}x"),
        String::new(),
    ];
    for w in wrong {
        assert_eq!(status(Some(w.clone())).await, 403, "{w:?} was let in");
    }
    assert_eq!(status(None).await, 403, "no secret was let in");
    // The secrets reach the node by environment, not on its command line,
    // which every user of the host can read in /proc.
    let pid = c.process_id(1).expect("node 1 runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("node"),
        "not the node's command line: {cmdline:?}"
    );
    assert!(!cmdline.contains(&secret), "the cluster secret is in argv");
    assert!(
        !cmdline.contains("keel-admin-dev"),
        "the admin token is in argv"
    );
}

/// Batches sent to each node in the batch ordering test.
const BATCH_ROUNDS: u64 = 5;

/// This node's count of writes forwarded to the leader, from `/metrics`.
async fn forwarded_writes(c: &Client, ep: &str) -> u64 {
    keel_harness::node_metric(c, ep, "keel_forwarded_writes_total")
        .await
        .unwrap_or_else(|| panic!("no forwarded-writes counter in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_applied_in_order_through_any_node_and_forwarded_once() {
    let (_d, c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    keel_harness::seed_test_shop(&c.admin_client(), 1, 10, 1_000_000_000)
        .await
        .unwrap();
    for id in c.ids() {
        let role = if id == leader { "leader" } else { "follower" };
        let node = c.node_client(id).unwrap();
        let ep = c.addr(id).unwrap();
        let forwards_before = forwarded_writes(&node, &ep).await;
        for round in 0..BATCH_ROUNDS {
            // Each command needs the one before it: the product, its
            // stock, then orders that take all of that stock.
            let sku = format!("B{id}-{round}");
            let cmds = json!([
                {"upsert_product": {"sku": sku, "name": "batched", "price": 100, "currency": "EUR"}},
                {"restock": {"sku": sku, "qty": 5}},
                {"place_order": {"customer": "c0", "lines": [{"sku": sku, "qty": 2}]}},
                {"place_order": {"customer": "c0", "lines": [{"sku": sku, "qty": 3}]}},
            ]);
            let key = format!("batch-{id}-{round}");
            let r = node
                .call_at(&ep, method_post(), "/v1/batch", Some(&cmds), Some(&key))
                .await
                .unwrap();
            let results = r.body["results"].as_array().unwrap();
            let statuses: Vec<u64> = results
                .iter()
                .map(|x| x["status"].as_u64().unwrap())
                .collect();
            assert!(
                statuses.iter().all(|s| (200..300).contains(s)),
                "{role} {id}, batch {round}: {statuses:?} {results:?}"
            );
            assert_eq!(results[0]["body"]["sku"], json!(sku));
            assert_eq!(results[0]["body"]["available"], json!(0));
            assert_eq!(results[1]["body"]["available"], json!(5));
            for (i, qty) in [(2, 2), (3, 3)] {
                let o = &results[i]["body"];
                assert_eq!(o["status"], json!("reserved"), "{o}");
                assert_eq!(o["lines"][0]["sku"], json!(sku), "{o}");
                assert_eq!(o["lines"][0]["qty"], json!(qty), "{o}");
            }
        }
        // A full batch: a product, then restocks whose results count up.
        let sku = format!("B{id}-full");
        let mut cmds = vec![
            json!({"upsert_product": {"sku": sku, "name": "full", "price": 100, "currency": "EUR"}}),
        ];
        cmds.resize(
            BATCH_COMMANDS_MAX,
            json!({"restock": {"sku": sku, "qty": 1}}),
        );
        let r = node
            .call_at(
                &ep,
                method_post(),
                "/v1/batch",
                Some(&json!(cmds)),
                Some(&format!("batch-{id}-full")),
            )
            .await
            .unwrap();
        let available: Vec<u64> = r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["body"]["available"].as_u64().unwrap())
            .collect();
        let counting: Vec<u64> = (0..BATCH_COMMANDS_MAX as u64).collect();
        assert_eq!(available, counting, "{role} {id}: a full batch in order");
        // A follower forwards each batch to the leader as one request (a
        // leader change would add retries, so count only under one leader).
        let forwards = forwarded_writes(&node, &ep).await - forwards_before;
        if c.leader().await == Some(leader) {
            let want = if id == leader { 0 } else { BATCH_ROUNDS + 1 };
            assert_eq!(forwards, want, "forwards from {role} {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_order() {
    let (_d, mut c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = Arc::new(c.admin_client());
    keel_harness::seed_test_shop(&client, 8, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, tasks) = spawn_writers(client.clone(), 8, stop.clone());
    c.wait_for("some orders", Duration::from_secs(20), || async {
        (acked.lock().unwrap().len() > 50).then_some(())
    })
    .await
    .unwrap();
    c.kill(leader).unwrap();
    let new_leader = c
        .wait_new_leader(leader, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    let before = acked.lock().unwrap().len();
    c.wait_for("orders after failover", Duration::from_secs(20), || async {
        (acked.lock().unwrap().len() > before + 50).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_all_present(&client, &acked).await;
    // The killed node comes back and converges to the same state.
    c.restart(leader).unwrap();
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_write_after_a_leader_kill_returns_the_original_result() {
    let (_d, mut c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = c.node_client(leader).unwrap();
    keel_harness::seed_test_shop(&client, 1, 100, 1_000_000_000)
        .await
        .unwrap();
    let (first, _) = client.place_order("c0", &one(1), "retry-me").await.unwrap();
    c.kill(leader).unwrap();
    let other = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let (again, replayed) = c
        .node_client(other)
        .unwrap()
        .place_order("c0", &one(1), "retry-me")
        .await
        .unwrap();
    assert!(replayed, "the retry must be a replay");
    assert_eq!(again, first);
    // Same key, different body: refused, nothing changes.
    let conflict = c
        .node_client(other)
        .unwrap()
        .place_order("c0", &one(2), "retry-me")
        .await
        .unwrap_err();
    assert_eq!(conflict.kind(), Some("idempotency_conflict"));
    assert_eq!(
        c.node_client(other)
            .unwrap()
            .summary()
            .await
            .unwrap()
            .next_order_id,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_killed_and_restarted_catches_up() {
    let (_d, mut c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let client = c.node_client(leader).unwrap();
    keel_harness::seed_test_shop(&client, 2, 10_000, 1_000_000_000)
        .await
        .unwrap();
    c.kill(follower).unwrap();
    for n in 0..100 {
        client
            .place_order("c1", &one(n), &format!("f{n}"))
            .await
            .unwrap();
    }
    c.restart(follower).unwrap();
    let (idx, _) = c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    assert!(idx > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_past_log_purge_catches_up_by_snapshot() {
    let (_d, mut c) = cluster(3, &["--snapshot-every", "50", "--snapshot-keep", "5"]);
    let leader = c.wait_ready(READY).await.unwrap();
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let client = c.node_client(leader).unwrap();
    keel_harness::seed_test_shop(&client, 2, 10_000, 1_000_000_000)
        .await
        .unwrap();
    c.stop(follower).unwrap();
    for n in 0..300 {
        client
            .place_order("c0", &one(n), &format!("s{n}"))
            .await
            .unwrap();
    }
    // The leader has purged its log past what the follower has.
    let status = c.status(leader).await.unwrap();
    assert!(
        status["purged_index"].as_u64().unwrap_or(0) > 50,
        "leader did not purge: {status}"
    );
    c.restart(follower).unwrap();
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    let fs = c.status(follower).await.unwrap();
    assert!(
        fs["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "follower has no snapshot: {fs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_as_learner_and_is_promoted_and_unsafe_removal_is_refused() {
    let (_d, mut c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let lc = c.node_client(leader).unwrap();
    let lep = c.addr(leader).unwrap();
    keel_harness::seed_test_shop(&lc, 1, 100, 1_000_000_000)
        .await
        .unwrap();
    let addr = c.add_node(4).unwrap();
    lc.call_at(
        &lep,
        method_post(),
        "/v1/cluster/learners",
        Some(&json!({"id": 4, "addr": addr})),
        None,
    )
    .await
    .unwrap();
    let r = lc
        .call_at(
            &lep,
            method_post(),
            "/v1/cluster/members",
            Some(&json!({"id": 4})),
            None,
        )
        .await
        .unwrap();
    let voters = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["membership"] == "voter")
        .count();
    assert_eq!(voters, 4);
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    // With two of four voters down, removing a healthy one would leave 3
    // voters with 1... refused before anything changes.
    let down: Vec<u64> = c
        .ids()
        .into_iter()
        .filter(|i| *i != leader)
        .take(2)
        .collect();
    for d in &down {
        c.kill(*d).unwrap();
    }
    let healthy_other = c
        .ids()
        .into_iter()
        .find(|i| *i != leader && !down.contains(i))
        .unwrap();
    let refused = lc
        .call_at(
            &lep,
            method_delete(),
            &format!("/v1/cluster/members/{healthy_other}"),
            None,
            None,
        )
        .await;
    match refused {
        Err(AttemptError::Problem(p)) => assert_eq!(p.kind(), Some("membership_refused"), "{p}"),
        other => panic!("expected membership_refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_cluster_restart_comes_back_with_identical_digests() {
    let (_d, mut c) = cluster(3, &[]);
    c.wait_ready(READY).await.unwrap();
    let client = c.admin_client();
    keel_harness::seed_test_shop(&client, 3, 1_000, 1_000_000_000)
        .await
        .unwrap();
    for n in 0..60 {
        let (o, _) = client
            .place_order(&format!("c{}", n % 3), &one(n), &format!("p{n}"))
            .await
            .unwrap();
        if n % 2 == 0 {
            client
                .transition(o.id.0, "pay", &format!("pay{n}"))
                .await
                .unwrap();
        }
    }
    let (idx, digest) = c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    c.stop_all();
    for id in c.ids() {
        c.restart(id).unwrap();
    }
    c.wait_ready(READY).await.unwrap();
    let (idx2, digest2) = c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    assert!(idx2 >= idx);
    // A new leader appends a blank entry, which changes no table.
    assert_eq!(digest2, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_a_nodes_log_is_detected_at_start_up() {
    let (_d, mut c) = cluster(3, &[]);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = c.node_client(leader).unwrap();
    client
        .upsert_product("FLIPME-SKU-MARKER", "marker", 1, "EUR", "flip")
        .await
        .unwrap();
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    let victim = c.ids().into_iter().find(|i| *i != leader).unwrap();
    c.stop(victim).unwrap();
    let log = c.data_dir(victim).join("log.redb");
    let mut bytes = std::fs::read(&log).unwrap();
    let marker = b"FLIPME-SKU-MARKER";
    // Flip the marker wherever it is (redb may keep stale copies of pages).
    let hits: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "marker not found in the log file");
    for pos in hits {
        bytes[pos + 3] ^= 0x20;
    }
    std::fs::write(&log, &bytes).unwrap();
    c.restart(victim).unwrap();
    let status = keel_harness::wait_for(
        "the corrupt node to exit",
        Duration::from_secs(20),
        &mut || {
            let st = c.exited(victim).ok().flatten();
            async move { st }
        },
    )
    .await
    .unwrap();
    assert!(!status.success());
    let log_text = std::fs::read_to_string(c.log_file(victim)).unwrap();
    assert!(
        log_text.to_lowercase().contains("corrupt"),
        "log does not report corruption:\n{log_text}"
    );
}

/// Node and gateway logs go to files: they must carry no terminal colour
/// codes, which make them hard to read and to search.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_files_carry_no_terminal_colour_codes() {
    let (_dir, mut c) = cluster(3, &[]);
    c.wait_ready(READY).await.unwrap();
    c.start_gateway(0, &[]).unwrap();
    c.wait_gateway_ready(READY).await.unwrap();
    let mut files: Vec<std::path::PathBuf> = c.ids().into_iter().map(|id| c.log_file(id)).collect();
    files.push(c.gateway_log_file());
    for f in files {
        let log = std::fs::read(&f).unwrap();
        assert!(
            !log.is_empty(),
            "{} is empty: nothing was checked",
            f.display()
        );
        assert!(
            !log.contains(&0x1b),
            "{} holds an escape code: {}",
            f.display(),
            String::from_utf8_lossy(&log[..log.len().min(300)])
        );
    }
}
