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

/// `POST /v1/cluster/compact` snapshots a node's state and purges its log
/// up to the snapshot (admin only); a node that joins empty afterwards
/// can only catch up by installing the snapshot, and does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_purges_the_log_and_a_new_node_installs_the_snapshot() {
    use keel_client::{method_post, AttemptError, ClientError};
    let dir = tempfile::tempdir().unwrap();
    let mut c =
        LocalCluster::start(ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3)).unwrap();
    let leader = c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000, 1_000_000)
        .await
        .unwrap();
    let ep = c.addr(leader).unwrap();

    let anonymous = admin.with_token(None);
    match anonymous
        .call_at(&ep, method_post(), "/v1/cluster/compact", None, None)
        .await
    {
        Err(AttemptError::Problem(ClientError::Problem { status, .. })) => {
            assert_eq!(status, 401, "compaction without a token")
        }
        other => panic!("compaction without a token: {other:?}"),
    }

    let r = admin
        .call_at(&ep, method_post(), "/v1/cluster/compact", None, None)
        .await
        .unwrap();
    let snapshot = r.body["snapshot_index"].as_u64().unwrap();
    let purged = r.body["purged_index"].as_u64().unwrap();
    assert!(snapshot > 0 && purged == snapshot, "{}", r.body);
    let status = admin
        .call_at(&ep, keel_client::method_get(), "/v1/cluster", None, None)
        .await
        .unwrap();
    assert_eq!(status.body["purged_index"].as_u64(), Some(purged));

    // A fourth node, empty: the entries it lacks are gone from the log.
    let addr = c.add_node(4).unwrap();
    for (path, body) in [
        (
            "/v1/cluster/learners",
            serde_json::json!({"id": 4, "addr": addr}),
        ),
        ("/v1/cluster/members", serde_json::json!({"id": 4})),
    ] {
        admin
            .call_at(&ep, method_post(), path, Some(&body), None)
            .await
            .unwrap();
    }
    c.wait_converged(&c.ids(), READY).await.unwrap();
    let installed =
        keel_harness::node_metric(&admin, &addr, "keel_snapshots_installed_total").await;
    assert_eq!(installed, Some(1), "node 4 caught up without the snapshot");
}
