//! A failing disk under real nodes (each data directory on a lazy
//! filesystem that can make writes and fsyncs fail): the node stops
//! acknowledging writes, never acknowledges what it did not persist, says
//! why, and recovers when the disk does and it is restarted.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::time::Duration;

use keel_harness::{ClusterSpec, LocalCluster};
use keel_lazyfs::DiskFault;

const READY: Duration = Duration::from_secs(30);
/// Longest a write is waited for while every disk fails: the node's own
/// write deadline is 5 s.
const WRITE_WAIT: Duration = Duration::from_secs(15);

/// A cluster on lazy filesystems: needs root (or fusermount3) and FUSE;
/// without them a CI run fails and any other run says it skipped.
fn lazy_cluster(dir: &std::path::Path) -> Option<LocalCluster> {
    if let Err(why) = keel_lazyfs::available() {
        keel_harness::skip_unless_ci("disk fault tests", &format!("no FUSE: {why}"));
        return None;
    }
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir, 3);
    spec.lazyfs = true;
    Some(LocalCluster::start(spec).unwrap())
}

fn one() -> Vec<(String, u64)> {
    vec![("SKU-1".to_string(), 1)]
}

async fn wait_exited(c: &mut LocalCluster, id: u64) {
    let deadline = tokio::time::Instant::now() + READY;
    while !c.has_exited(id).unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {id} kept running on a failed disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_disk_acknowledges_nothing_and_the_cluster_recovers_when_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = lazy_cluster(dir.path()) else {
        return;
    };
    c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000, 1_000_000_000)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for fault in [DiskFault::IoErrorOnFsync, DiskFault::NoSpaceOnWrite] {
        let (before, _) = admin
            .place_order("c0", &one(), &format!("before-{fault:?}"))
            .await
            .unwrap();
        acked.push(before);
        let leader = c.leader().await.unwrap();
        for id in c.ids() {
            c.set_disk_fault(id, fault).unwrap();
        }
        // No node can make anything durable, so nothing may be
        // acknowledged.
        let key = format!("during-{fault:?}");
        let during = tokio::time::timeout(WRITE_WAIT, admin.place_order("c0", &one(), &key)).await;
        assert!(
            !matches!(during, Ok(Ok(_))),
            "{fault:?}: a write was acknowledged while no disk could persist it"
        );
        // The leader, which had to make the write durable, stops and says
        // why; so does every node that tried to write (an append, or its
        // vote when it stood for election). A follower left alone, whose
        // clock guard keeps it from standing once it cannot measure a
        // majority's clocks, writes nothing and may not have found out:
        // it acknowledges nothing either, and is restarted below.
        wait_exited(&mut c, leader).await;
        for id in c.ids() {
            if c.has_exited(id).unwrap() {
                let log = std::fs::read_to_string(c.log_file(id)).unwrap();
                assert!(log.contains("storage failed"), "node {id} did not say why");
            }
        }
        // The disks work again; a supervisor restarts the nodes.
        for id in c.ids() {
            c.set_disk_fault(id, DiskFault::Healthy).unwrap();
            c.restart(id).unwrap();
        }
        c.wait_ready(READY).await.unwrap();
        let (after, _) = admin.place_order("c0", &one(), &key).await.unwrap();
        acked.push(after);
    }
    for o in &acked {
        let got = admin.order(o.id.0).await.unwrap();
        assert_eq!(got.lines, o.lines, "acknowledged order {} changed", o.id.0);
    }
    c.wait_converged(&c.ids(), READY).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_whose_fsync_fails_stops_while_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = lazy_cluster(dir.path()) else {
        return;
    };
    let leader = c.wait_ready(READY).await.unwrap();
    let follower = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 1, 1_000, 1_000_000_000)
        .await
        .unwrap();
    c.set_disk_fault(follower, DiskFault::IoErrorOnFsync)
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        let (o, _) = admin
            .place_order("c0", &one(), &format!("minority-{i}"))
            .await
            .unwrap();
        acked.push(o);
    }
    wait_exited(&mut c, follower).await;
    c.set_disk_fault(follower, DiskFault::Healthy).unwrap();
    c.restart(follower).unwrap();
    c.wait_ready(READY).await.unwrap();
    c.wait_converged(&c.ids(), READY).await.unwrap();
    for o in &acked {
        assert_eq!(admin.order(o.id.0).await.unwrap().lines, o.lines);
    }
}
