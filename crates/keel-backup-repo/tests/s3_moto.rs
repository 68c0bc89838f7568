//! The repository against a real S3-compatible server: moto in server mode,
//! installed from PyPI into a venv under the cargo target directory on the
//! first run, started on a free loopback port and killed at the end.
//!
//! Without python3, venv or pip (or without access to PyPI) the test prints
//! a SKIPPED line with the reason and passes: it proves the S3 path where it
//! can run and does not make the suite depend on Python elsewhere. Under
//! `CI=true` it fails instead: a CI run must not pass a test it did not run.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use keel_backup_repo::{BackupError, Layout, Repository, Retention, Target};

/// How long the one-time `pip install 'moto[server]'` may take.
const PIP_INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// How long moto may take to start listening.
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Bucket the test creates in moto.
const BUCKET: &str = "keel-backup-test";

/// Kills the moto server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Says why the test did not run, on stderr directly: libtest captures
/// `println!`/`eprintln!` of passing tests, and a skip must be seen. Under
/// `CI=true` it fails the test instead.
fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        !keel_harness::in_ci(),
        "s3_moto cannot run under CI=true: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED s3_moto: {reason}");
}

/// Runs `cmd` to completion within `timeout`; Err with its output if it
/// fails or overruns.
fn run(cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(format!("{cmd:?} failed ({status}): {tail}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish in {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The venv's python with moto installed, installing it once.
fn moto_python() -> Result<PathBuf, String> {
    run(
        Command::new("python3").arg("--version"),
        Duration::from_secs(30),
    )
    .map_err(|e| format!("python3 unavailable: {e}"))?;
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".keel-installed");
    if marker.exists() {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(120),
    )
    .map_err(|e| format!("python3 -m venv failed: {e}"))?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "moto[server]",
        ]),
        PIP_INSTALL_TIMEOUT,
    )
    .map_err(|e| format!("pip install 'moto[server]' failed: {e}"))?;
    std::fs::write(&marker, b"ok").map_err(|e| e.to_string())?;
    Ok(python)
}

fn free_port() -> u16 {
    keel_harness::host::free_port().unwrap()
}

fn start_moto(python: &Path, port: u16) -> Result<Server, String> {
    let child = Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto: {e}"))?;
    let server = Server(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + MOTO_START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "moto did not listen on {addr} within {MOTO_START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

fn create_bucket(python: &Path, endpoint: &str) -> Result<(), String> {
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='{BUCKET}')"
    );
    run(
        Command::new(python).args(["-c", &script]),
        Duration::from_secs(60),
    )
}

#[tokio::test]
async fn s3_targets_round_trip_verify_repair_and_prune_against_moto() {
    let python = match moto_python() {
        Ok(p) => p,
        Err(reason) => return skip(&reason),
    };
    let port = free_port();
    let _server = match start_moto(&python, port) {
        Ok(s) => s,
        Err(reason) => panic!("moto is installed but {reason}"),
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    create_bucket(&python, &endpoint).unwrap();

    // Credentials come from the standard variables, as in production. This
    // binary holds only this test, so no other thread reads the
    // environment while it is set.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let targets: Vec<Target> = (0..3)
        .map(|i| {
            Target::parse(&format!(
                "s3://{BUCKET}/keel/t{i}?endpoint={endpoint}&region=us-east-1"
            ))
            .unwrap()
        })
        .collect();
    assert_eq!(targets[1].to_string(), format!("s3://{BUCKET}/keel/t1"));
    assert_eq!(targets[0].get("nothing/here", 10).await.unwrap(), None);

    let repo = Repository::open(
        targets.clone(),
        Layout::Erasure { data: 2, parity: 1 },
        key(),
    )
    .unwrap()
    .with_chunk_bytes(TEST_CHUNK_BYTES)
    .unwrap();
    let bytes = content(3 * TEST_CHUNK_BYTES + 99, 11);
    let m = repo.write(full(1, 10), bytes.as_slice()).await.unwrap();
    let empty = repo.write(full(2, 20), &[][..]).await.unwrap();
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);
    assert_eq!(restore(&repo, &empty.id).await.unwrap(), Vec::<u8>::new());
    let listed: Vec<_> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, [m.id.clone(), empty.id.clone()]);
    assert!(repo.verify().await.unwrap().is_clean());

    // Lose a shard and a manifest copy: found, restorable, repaired.
    let shard = format!("{}/c00000001.s02", m.id);
    targets[2].delete(&shard).await.unwrap();
    targets[0]
        .delete(&format!("{}/{}", m.id, keel_backup_repo::MANIFEST_OBJECT))
        .await
        .unwrap();
    let report = repo.verify().await.unwrap();
    assert_eq!(report.targets[2].missing, [shard]);
    assert_eq!(report.targets[0].missing.len(), 1);
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);
    let repaired = repo.repair().await.unwrap();
    assert!(repaired.is_complete(), "{repaired:#?}");
    assert_eq!(repaired.rewritten.len(), 2);
    assert!(repo.verify().await.unwrap().is_clean());

    let pruned = repo.prune(Retention { keep_full: 1 }).await.unwrap();
    assert_eq!(pruned.deleted, std::slice::from_ref(&m.id));
    assert!(matches!(
        restore(&repo, &m.id).await,
        Err(BackupError::NotFound { .. })
    ));
    assert!(targets[1]
        .list()
        .await
        .unwrap()
        .iter()
        .all(|e| !e.name.starts_with(m.id.as_str())));

    // A dead endpoint fails with an error naming the target, not a hang.
    drop(_server);
    let err = repo.list().await.unwrap_err();
    assert!(err.to_string().contains("s3://"), "{err}");
}
