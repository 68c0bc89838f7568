//! `keel up` as a user runs it: TLS on by default with a CA it makes under
//! its data directory, a curl line that reaches the cluster, a node killed
//! behind its back restarted and reported, and everything stopped on
//! SIGTERM.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_harness::host::free_port;

const DEADLINE: Duration = Duration::from_secs(60);

/// The pid of the `keel node --id <id>` whose data lives under `dir`.
fn node_pid(id: u64, dir: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_node = args.iter().any(|a| a == "node")
            && args
                .windows(2)
                .any(|w| w[0] == "--id" && w[1] == id.to_string())
            && args.iter().any(|a| a.starts_with(dir));
        if is_node {
            return Some(pid);
        }
    }
    None
}

/// Waits for a line of `lines` containing `what`; every line read is kept
/// in `seen`.
fn wait_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, what: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(what) {
                    return l;
                }
            }
            Err(_) => panic!(
                "no line with {what:?} in time; keel up said:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn keel_up_runs_tls_by_default_and_restarts_a_node_that_dies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keel-data");
    let data_s = data.to_str().unwrap().to_owned();
    let (base, gateway) = (free_port().unwrap(), free_port().unwrap());
    // Ports base..base+2 must be free too: pick a base whose next two are.
    let base = (base..base + 200)
        .find(|p| (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
        .unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["up", "--data-dir", &data_s])
        .args(["--base-port", &base.to_string()])
        .args(["--gateway-port", &gateway.to_string()])
        .env_remove("KEEL_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let curl = wait_line(&lines, &mut seen, "try: curl");
    wait_line(&lines, &mut seen, "Ctrl-C stops the cluster");
    let ca = data.join("ca").join("ca.pem");
    assert!(
        curl.contains("--cacert") && curl.contains("https://"),
        "{curl}"
    );
    assert!(ca.exists(), "no CA under the data directory");

    // The cluster answers over TLS with that CA, and not in plaintext.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls = Arc::new(keel_tls::ClientTls::anonymous(ca.clone()).unwrap());
    let entry = format!("127.0.0.1:{gateway}");
    let token = Some(keel_node::config::DEV_ADMIN_TOKEN.to_owned());
    let client = keel_client::Client::with_tls(vec![entry.clone()], token.clone(), tls.clone());
    rt.block_on(client.summary()).unwrap();
    let plain = keel_client::Client::new(vec![entry], token.clone());
    assert!(rt.block_on(plain.summary()).is_err(), "plaintext served");

    // Node 2 killed behind keel up's back: it says so and restarts it.
    let pid = node_pid(2, &data_s).expect("node 2's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_line(&lines, &mut seen, "node 2 exited");
    wait_line(&lines, &mut seen, "node 2 restarted");
    let node2 = keel_client::Client::with_tls(vec![format!("127.0.0.1:{}", base + 1)], token, tls);
    rt.block_on(keel_harness::wait_for(
        "node 2 serving again",
        DEADLINE,
        &mut || {
            let node2 = &node2;
            async move { node2.summary().await.ok() }
        },
    ))
    .unwrap();
    let again = node_pid(2, &data_s).expect("node 2 running again");
    assert_ne!(again, pid);

    // SIGTERM stops keel up and every child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = up.wait().unwrap();
    assert!(status.success(), "{status}");
    for id in 1..=3 {
        assert!(
            node_pid(id, &data_s).is_none(),
            "node {id} outlived keel up"
        );
    }
}
