//! `keel demo` as a user runs it: the real binary, a short run on free
//! ports in a directory of its own, through the leader kill, the checks,
//! the backup, the destruction and the restore. It must end with every
//! check passed.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the short demo may take: its 4 s of shopping, three nodes
/// started twice, a backup and a restore take about 6 s in a debug build;
/// the rest is room for a loaded machine.
const DEMO_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `keel demo` with `extra` arguments and returns its exit success and
/// its output; kills it past [`DEMO_DEADLINE`].
fn demo(extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = File::create(&out_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("demo")
        .args([
            "--duration-s",
            "4",
            "--shoppers",
            "4",
            "--flash-buyers",
            "4",
        ])
        .args([
            "--flash-stock",
            "20",
            "--base-port",
            "0",
            "--gateway-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEMO_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap();
    let status =
        status.unwrap_or_else(|| panic!("keel demo ran past {DEMO_DEADLINE:?}:\n{output}"));
    (status.success(), output)
}

#[test]
fn the_demo_passes_every_check_through_the_gateway() {
    let (ok, output) = demo(&[]);
    assert!(ok, "keel demo failed:\n{output}");
    assert!(output.contains("All checks passed."), "{output}");
    assert!(output.contains("SIGKILL leader node"), "{output}");
    assert!(
        output.contains("restored: acknowledged writes durable"),
        "{output}"
    );
}
