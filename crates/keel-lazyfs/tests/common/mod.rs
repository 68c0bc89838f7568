//! Mounts for the integration tests: a temporary backing directory shown lazily at a
//! temporary mountpoint, or a printed reason to skip where this machine cannot mount FUSE
//! (a failure under `CI=true`, where every test must run).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.
#![allow(dead_code)] // Each test file uses a different part of the helpers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use keel_lazyfs::{LazyFs, Limits};
use tempfile::TempDir;

/// A mounted LazyFs over a fresh backing directory.
pub struct Mounted {
    /// Declared first so it is dropped (unmounted) before the directories are removed.
    pub fs: LazyFs,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    pub dir: TempDir,
}

impl Mounted {
    /// A path inside the mount.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The same path inside the backing directory: what survives a power loss.
    pub fn backing_at(&self, rel: &str) -> PathBuf {
        self.backing.join(rel)
    }
}

/// Whether FUSE can be mounted here; where it cannot, says so and skips the test, except
/// under `CI=true`, where a test that cannot run fails instead of passing unrun.
pub fn fuse_or_skip() -> bool {
    let Err(why) = keel_lazyfs::available() else {
        return true;
    };
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(!ci, "FUSE is required under CI=true: {why}");
    eprintln!("SKIPPED (no FUSE here: {why}; CI=true would fail)");
    false
}

/// Mounts with `limits`, or says why not and returns `None` where FUSE cannot be mounted
/// (see [`fuse_or_skip`]).
pub fn mount(limits: Limits) -> Option<Mounted> {
    if !fuse_or_skip() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = dirs_in(dir.path());
    let fs = LazyFs::mount(&backing, &mnt, limits).unwrap();
    Some(Mounted {
        fs,
        backing,
        mnt,
        dir,
    })
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Creates `backing` and `mnt` directories inside `dir`.
pub fn dirs_in(dir: &Path) -> (PathBuf, PathBuf) {
    let backing = dir.join("backing");
    let mnt = dir.join("mnt");
    std::fs::create_dir(&backing).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    (backing, mnt)
}

/// Runs the test named `test` of this test binary in a child process with `env` set: how a
/// test gets a process it can let die without running its destructors.
pub fn run_child(test: &str, env: &[(&str, &Path)]) -> ExitStatus {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", test, "--test-threads=1", "--nocapture"]);
    // The child's test-runner chatter would interleave with the parent's; its panics go to
    // stderr, which stays.
    command.stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.status().unwrap()
}

/// How long to wait for something the kernel does after a syscall has returned (it sends the
/// last release of a file asynchronously after `close`).
pub const KERNEL_ASYNC_DEADLINE: Duration = Duration::from_secs(5);

/// Polls `done` until it holds or `KERNEL_ASYNC_DEADLINE` passes; returns whether it held.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + KERNEL_ASYNC_DEADLINE;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    done()
}
