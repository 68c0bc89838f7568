//! Leader time under bad clocks, with real processes under libfaketime: a
//! node two days ahead or two days behind, given every chance to lead,
//! never leads, never expires a one-hour reservation early, never makes the
//! cluster forget a key inside its retention, and the cluster keeps taking
//! writes; a leader whose clock jumps steps down.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::time::Duration;

use keel_client::{method_get, Client};
use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(30);
/// Two days, in seconds: past the 24-hour idempotency retention and any
/// reservation's lifetime.
const TWO_DAYS_S: i64 = 2 * 24 * 3600;
/// How long the leader and two voters stay paused so the skewed node's
/// election timer runs out again and again while nobody leads: several
/// times the longest a follower waits before standing (lease plus
/// timeout, 600 ms).
const CHANCE_TO_LEAD: Duration = Duration::from_millis(2_500);

/// The libfaketime library: installed when missing; without it a CI run
/// fails and any other run says it skipped.
fn faketime() -> Option<std::path::PathBuf> {
    match keel_harness::host::ensure_faketime() {
        Ok(p) => Some(p),
        Err(why) => {
            keel_harness::skip_unless_ci("clock tests", &format!("no libfaketime: {why}"));
            None
        }
    }
}

fn skewable_cluster(dir: &std::path::Path, lib: std::path::PathBuf, nodes: u64) -> LocalCluster {
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir, nodes);
    spec.faketime = Some(lib);
    LocalCluster::start(spec).unwrap()
}

/// Places a one-hour reservation with key `key`; returns the reply body.
async fn place_hour(c: &Client, key: &str) -> Value {
    c.post(
        "/v1/orders",
        &json!({"customer": "c0", "lines": [{"sku": "SKU-1", "qty": 1}], "ttl_seconds": 3_600}),
        key,
    )
    .await
    .unwrap()
    .body
}

async fn clock_of(c: &LocalCluster, id: u64) -> Value {
    let ep = c.addr(id).unwrap();
    c.node_client(id)
        .unwrap()
        .call_at(&ep, method_get(), "/v1/clock", None, None)
        .await
        .unwrap()
        .body
}

/// Waits until node `id` has judged that its clock may not lead.
async fn wait_refuses_to_lead(c: &LocalCluster, id: u64) {
    c.wait_for("the skewed node to judge its clock", READY, || async {
        (clock_of(c, id).await["may_lead"] == json!(false)).then_some(())
    })
    .await
    .unwrap();
}

/// The reservations and keys made before the skew are as they were.
async fn assert_nothing_expired_or_forgotten(admin: &Client, placed: &[Value]) {
    for (i, first) in placed.iter().enumerate() {
        let id = first["id"].as_u64().unwrap();
        let o = admin.order(id).await.unwrap();
        assert_eq!(
            o.status,
            keel_domain::OrderStatus::Reserved,
            "order {id} ended early"
        );
        // The same request again with the same key: the stored answer, not
        // a second order.
        let again = place_hour(admin, &format!("hour-{i}")).await;
        assert_eq!(again["id"], first["id"], "key hour-{i} was forgotten");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_days_ahead_or_behind_never_leads_and_nothing_expires_early() {
    let Some(lib) = faketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Five voters, so three healthy ones can outvote the skewed one by
    // their clocks alone while the leader is paused.
    let mut c = skewable_cluster(dir.path(), lib, 5);
    c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000, 1_000_000_000)
        .await
        .unwrap();
    let mut placed = Vec::new();
    for i in 0..3 {
        placed.push(place_hour(&admin, &format!("hour-{i}")).await);
    }
    let mut writes = 0;
    for skew in [TWO_DAYS_S, -TWO_DAYS_S] {
        for round in 0..2 {
            let leader = c.wait_ready(READY).await.unwrap();
            let others: Vec<u64> = c.ids().into_iter().filter(|i| *i != leader).collect();
            let (skewed, held) = (others[0], [others[1], others[2]]);
            c.set_clock_offset(skewed, skew).unwrap();
            wait_refuses_to_lead(&c, skewed).await;
            // Every chance: the leader and two healthy voters paused, so
            // the skewed node's election timer runs out round after round
            // (one healthy voter cannot make it a majority); then the two
            // come back, able to grant a vote to whoever asks first.
            c.pause(leader).unwrap();
            for h in held {
                c.pause(h).unwrap();
            }
            tokio::time::sleep(CHANCE_TO_LEAD).await;
            for h in held {
                c.resume(h).unwrap();
            }
            let new = c.wait_new_leader(leader, READY).await.unwrap();
            assert_ne!(
                new, skewed,
                "skew {skew} s, round {round}: the skewed node leads"
            );
            // The cluster keeps taking writes while the old leader sleeps.
            admin
                .restock("SKU-1", 1, &format!("restock-{skew}-{round}"))
                .await
                .unwrap();
            writes += 1;
            c.resume(leader).unwrap();
            c.wait_ready(READY).await.unwrap();
            assert_nothing_expired_or_forgotten(&admin, &placed).await;
            c.set_clock_offset(skewed, 0).unwrap();
        }
    }
    assert_eq!(writes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_clock_jumps_two_days_steps_down_and_expires_nothing() {
    let Some(lib) = faketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = skewable_cluster(dir.path(), lib, 3);
    c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000, 1_000_000_000)
        .await
        .unwrap();
    let placed = vec![place_hour(&admin, "hour-0").await];
    for skew in [TWO_DAYS_S, -TWO_DAYS_S] {
        let leader = c.wait_ready(READY).await.unwrap();
        c.set_clock_offset(leader, skew).unwrap();
        let new = c.wait_new_leader(leader, READY).await.unwrap();
        assert_ne!(new, leader);
        let seen = clock_of(&c, leader).await;
        assert_eq!(seen["may_lead"], json!(false), "{seen}");
        admin
            .restock("SKU-1", 1, &format!("after-jump-{skew}"))
            .await
            .unwrap();
        assert_nothing_expired_or_forgotten(&admin, &placed).await;
        c.set_clock_offset(leader, 0).unwrap();
        c.wait_for("the node's clock to agree again", READY, || async {
            (clock_of(&c, leader).await["may_lead"] == json!(true)).then_some(())
        })
        .await
        .unwrap();
    }
}
