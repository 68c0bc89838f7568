//! A snapshot damaged on its way to a follower is refused there and sent
//! again, instead of being installed or stopping the follower.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use keel_harness::{ClusterSpec, LocalCluster};

const READY: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_damaged_on_the_way_is_refused_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(common::buggy_binary(), dir.path(), 3);
    // Snapshots every 50 entries with none kept behind, so a follower that
    // misses a few can only catch up from a snapshot; every node's first
    // snapshot chunk sent leaves with a byte flipped.
    spec.extra_args = ["--snapshot-every", "50", "--snapshot-keep", "0"]
        .map(String::from)
        .into_iter()
        .chain(common::bugs("corrupt-snapshot-send"))
        .collect();
    let mut c = LocalCluster::start(spec).unwrap();
    let leader = c.wait_ready(READY).await.unwrap();
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    c.stop(follower).unwrap();
    for i in 0..200 {
        admin.restock("SKU-1", 1, &format!("r{i}")).await.unwrap();
    }
    c.restart(follower).unwrap();
    c.wait_ready(READY).await.unwrap();
    c.wait_converged(&c.ids(), READY).await.unwrap();
    let log = std::fs::read_to_string(c.log_file(follower)).unwrap();
    assert!(
        log.contains("refusing a damaged snapshot"),
        "the follower never saw the damaged snapshot"
    );
    let leader_log = std::fs::read_to_string(c.log_file(c.leader().await.unwrap())).unwrap();
    assert!(leader_log.contains("flipped a byte of an outgoing snapshot chunk"));
}
