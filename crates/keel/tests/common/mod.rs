//! What several whole-cluster test files share.
#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds `keel` with its deliberate bugs and fault injectors compiled in
/// (`--features test-bugs`; each test switches its own on with `keel node
/// --test-bugs`) into its own target directory, so it never replaces the
/// binary the other tests run. Tests of one file run on threads of one
/// process: one build at a time, the later ones find it done.
pub fn buggy_binary() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = workspace.join("target/test-bugs");
    let status = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "build",
            "-p",
            "keel",
            "--features",
            "test-bugs",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the deliberately buggy keel failed"
    );
    target.join("debug/keel")
}

/// `keel node` flags that switch `list` of the deliberate bugs on.
pub fn bugs(list: &str) -> Vec<String> {
    vec!["--test-bugs".into(), list.into()]
}

/// A three-node cluster with TLS on every link and secrets of its own,
/// in `dir`.
pub fn tls_cluster(dir: &Path) -> keel_harness::LocalCluster {
    use keel_harness::host::random_secret;
    let mut spec = keel_harness::ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir, 3);
    spec.tls = true;
    spec.admin_token = random_secret().unwrap();
    spec.cluster_secret = random_secret().unwrap();
    keel_harness::LocalCluster::start(spec).unwrap()
}
