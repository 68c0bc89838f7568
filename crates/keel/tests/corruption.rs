//! A node whose `state.redb` was damaged on disk: it must refuse to serve,
//! say which file and what to do, and come back from one command.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keel_harness::{ClusterSpec, LocalCluster};

const READY: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A redb page.
const PAGE_BYTES: usize = 4096;

/// In the name of every product, so the pages holding them can be found.
const MARKER: &[u8] = b"CORRUPTME-PRODUCT";

fn cluster(extra: &[&str]) -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    spec.extra_args = extra.iter().map(|s| s.to_string()).collect();
    let c = LocalCluster::start(spec).unwrap();
    (dir, c)
}

/// Garbage that is the same on every run.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// How `state.redb` is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One bit of every copy of the marker: the pages still parse, only
    /// their checksums tell.
    FlippedBits,
    /// Every page holding the marker, and one in the middle of the file,
    /// overwritten with garbage.
    GarbagePages,
}

/// Damages `file` where the marker is (redb may keep stale copies of
/// pages; the live ones are among them). Returns how many places were hit.
fn damage(file: &Path, how: Damage) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let hits: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "marker not found in {}", file.display());
    let count = match how {
        Damage::FlippedBits => {
            for at in &hits {
                bytes[at + 3] ^= 0x20;
            }
            hits.len()
        }
        Damage::GarbagePages => {
            let mut pages: Vec<usize> = hits.iter().map(|at| at / PAGE_BYTES).collect();
            pages.push(bytes.len() / 2 / PAGE_BYTES);
            pages.sort_unstable();
            pages.dedup();
            for (n, page) in pages.iter().enumerate() {
                let at = page * PAGE_BYTES;
                let end = (at + PAGE_BYTES).min(bytes.len());
                bytes[at..end].copy_from_slice(&garbage(end - at, 0x9e37_79b9 + n as u64));
            }
            pages.len()
        }
    };
    std::fs::write(file, &bytes).unwrap();
    count
}

/// Writes products (with the marker in their names) and orders, stops a
/// follower, damages its `state.redb`, and checks that the restarted node
/// refuses to serve and names the file and the command that rebuilds it;
/// then runs that command and checks the node converges and serves.
async fn damaged_state_is_refused_and_rebuilt(
    extra: &[&str],
    orders: u64,
    how: Damage,
    from_snapshot: bool,
) {
    let (_d, mut c) = cluster(extra);
    let leader = c.wait_ready(READY).await.unwrap();
    let client = c.node_client(leader).unwrap();
    keel_harness::seed_test_shop(&client, 2, 10_000, 1_000_000_000)
        .await
        .unwrap();
    for n in 0..20 {
        let name = format!("{}-{n}", String::from_utf8_lossy(MARKER));
        client
            .upsert_product(&format!("MARK-{n}"), &name, 1, "EUR", &format!("m{n}"))
            .await
            .unwrap();
    }
    for n in 0..orders {
        client
            .place_order("c0", &[("SKU-1".to_string(), 1)], &format!("o{n}"))
            .await
            .unwrap();
    }
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    let victim = c.ids().into_iter().find(|i| *i != leader).unwrap();
    let purged = c.status(victim).await.unwrap()["purged_index"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        purged > 0,
        from_snapshot,
        "node {victim} purged up to {purged}"
    );
    c.stop(victim).unwrap();
    let state = c.data_dir(victim).join("state.redb");
    let hit = damage(&state, how);

    // Restarted, the node must not come up serving the damaged state.
    c.restart(victim).unwrap();
    let deadline = tokio::time::Instant::now() + EXIT;
    let outcome = loop {
        if let Some(st) = c.exited(victim).unwrap() {
            break Err(st);
        }
        if let Some(d) = c.digest(victim).await {
            break Ok(d);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the damaged node neither exited nor answered within {EXIT:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    let log_text = std::fs::read_to_string(c.log_file(victim)).unwrap();
    match outcome {
        Err(status) => assert!(!status.success(), "exited successfully"),
        Ok(digest) => panic!(
            "a node with state.redb damaged ({how:?}, {hit} places) served (applied index, digest) \
             {digest:?}; its log:\n{log_text}"
        ),
    }
    eprintln!(
        "node {victim} refused to start: {}",
        log_text
            .lines()
            .filter(|l| l.contains("corrupt"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for needle in ["corrupt", "state.redb", "keel rebuild-state"] {
        assert!(
            log_text.contains(needle),
            "the log does not say {needle:?}:\n{log_text}"
        );
    }

    // The documented command, then a plain restart.
    let data_dir = c.data_dir(victim);
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["rebuild-state", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rebuild-state failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        said.contains("starts from this node's snapshot"),
        from_snapshot,
        "{said}"
    );
    let kept = std::fs::read_dir(&data_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.corrupt-")
        });
    assert!(kept, "the damaged file was not kept aside for forensics");
    c.restart(victim).unwrap();
    c.wait_ready(READY).await.unwrap();
    c.wait_converged(&c.ids(), CONVERGE).await.unwrap();
    let served = c.node_client(victim).unwrap();
    let product = served.get("/v1/products/MARK-7").await.unwrap().body;
    assert!(
        product["name"].as_str().is_some_and(|n| n.ends_with("-7")),
        "{product}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_bits_in_the_state_file_are_refused_and_rebuilt_by_replaying_the_log() {
    damaged_state_is_refused_and_rebuilt(&[], 100, Damage::FlippedBits, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_pages_in_the_state_file_are_refused_and_rebuilt_from_the_snapshot_past_a_purged_log(
) {
    let purging = ["--snapshot-every", "50", "--snapshot-keep", "5"];
    damaged_state_is_refused_and_rebuilt(&purging, 300, Damage::GarbagePages, true).await;
}
