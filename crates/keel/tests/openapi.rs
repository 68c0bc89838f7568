//! The OpenAPI contract against a real cluster: every operation that
//! `/openapi.json` lists is served by the router, and Schemathesis, driven
//! by the document alone, finds no server error, no answer outside its
//! schema and no well-formed request refused. Schemathesis (PyPI) is
//! installed by this test into a virtual environment under the target
//! directory; without `python3` and its `venv` and `pip` the test fails, it
//! never skips.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_harness::{ClusterSpec, LocalCluster};
use serde_json::{json, Value};

/// The Schemathesis release the test runs: pinned, so a new release cannot
/// change what passes.
const SCHEMATHESIS: &str = "4.32.5";
const READY: Duration = Duration::from_secs(30);
/// Test cases per operation in one round of the fuzzing phase.
const MAX_EXAMPLES: u32 = 10;
/// The fuzzing run's budget: Schemathesis repeats its fuzzing and stateful
/// phases until it is spent (about 4,000 requests on a shared 2-core
/// machine), so this is how long the run takes.
const FUZZ_TIME_MAX: Duration = Duration::from_secs(75);

/// The `schemathesis` executable of a virtual environment made for this
/// test, created when absent. One directory per pinned version; made under
/// a temporary name and renamed, so an interrupted install is never taken
/// for a finished one.
fn schemathesis() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Built where it will stay: a venv's scripts name its own python by
    // absolute path, so a venv renamed after the install cannot run them.
    // The marker is written only once pip has finished, so an interrupted
    // install is started again from scratch.
    let venv = root.join(format!("schemathesis-{SCHEMATHESIS}"));
    let exe = venv.join("bin/schemathesis");
    let installed = venv.join("installed");
    if installed.exists() && exe.exists() {
        return exe;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{what}: cannot run it ({e}); this test needs python3 with venv and pip")
        });
        assert!(
            out.status.success(),
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={SCHEMATHESIS}"),
        ]),
        "pip install schemathesis",
    );
    assert!(exe.exists(), "{} missing after install", exe.display());
    std::fs::write(&installed, b"ok\n").unwrap();
    exe
}

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// What the examples of the document name exists: the product `SKU-1`,
/// the customer `alice` with money, the merchant and external accounts of
/// EUR, and order 1.
async fn seed(http: &reqwest::Client, base: &str, token: &str) {
    let writes = [
        (
            "/v1/products",
            json!({"sku": "SKU-1", "name": "Blue mug", "price": 1200, "currency": "EUR"}),
        ),
        ("/v1/products/SKU-1/restock", json!({"qty": 1000})),
        (
            "/v1/accounts",
            json!({"id": "shop-eur", "kind": "merchant", "currency": "EUR"}),
        ),
        (
            "/v1/accounts",
            json!({"id": "world-eur", "kind": "external", "currency": "EUR"}),
        ),
        (
            "/v1/accounts",
            json!({"id": "alice", "kind": "customer", "currency": "EUR"}),
        ),
        ("/v1/accounts/alice/deposits", json!({"amount": 1_000_000})),
        (
            "/v1/orders",
            json!({"customer": "alice", "lines": [{"sku": "SKU-1", "qty": 1}]}),
        ),
    ];
    for (path, body) in writes {
        let (status, reply) = send(
            http,
            "POST",
            &format!("{base}{path}"),
            Some(token),
            Some(body),
        )
        .await;
        assert!(
            (200..300).contains(&status),
            "seeding {path}: {status} {reply}"
        );
    }
}

/// Every operation of the document reaches a handler of its own: never
/// the router's fallback (404 "no such endpoint") nor 405.
async fn every_documented_route_is_served(http: &reqwest::Client, base: &str, spec: &Value) {
    let paths = spec["paths"].as_object().unwrap();
    assert!(
        paths.len() >= 30,
        "the document lists {} paths",
        paths.len()
    );
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{sku}", "SKU-1").replace(
                "{id}",
                if path.starts_with("/v1/accounts") {
                    "alice"
                } else {
                    "1"
                },
            );
            // No token: each route answers for itself (401 when it needs
            // one), without changing anything.
            let (status, body) = send(
                http,
                &method.to_uppercase(),
                &format!("{base}{concrete}"),
                None,
                None,
            )
            .await;
            let fell_through = status == 404
                && body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no such endpoint"));
            assert!(
                !fell_through && status != 405,
                "{method} {path} is in the document but not served: {status} {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_contract_violation() {
    let exe = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    let token = spec.admin_token.clone();
    let c = LocalCluster::start(spec).unwrap();
    let leader = c.wait_ready(READY).await.unwrap();
    // The leader, so membership and compaction answers are not
    // "ask the leader" and every write is proposed where it lands.
    let base = format!("http://{}", c.addr(leader).unwrap());
    let http = reqwest::Client::new();
    seed(&http, &base, &token).await;

    let (status, doc) = send(&http, "GET", &format!("{base}/openapi.json"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    every_documented_route_is_served(&http, &base, &doc).await;

    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, SCHEMATHESIS_CONFIG).unwrap();
    let started = Instant::now();
    // In the test's own directory: Schemathesis keeps a cache there.
    let out = Command::new(&exe)
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--max-time", &FUZZ_TIME_MAX.as_secs().to_string()])
        .args(["--workers", "1", "--seed", "1", "--no-color"])
        .args(["--request-timeout", "10"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("schemathesis ran {:.1} s:\n{text}", elapsed.as_secs_f64());
    assert!(
        out.status.success(),
        "schemathesis found contract violations ({}):\n{text}",
        out.status
    );
}

/// The run's configuration, with each exception and why.
const SCHEMATHESIS_CONFIG: &str = r#"
# Membership changes would take nodes out of the cluster under test (a
# remove of an existing id succeeds while a quorum stays healthy) or add
# learners at addresses nothing listens on; a leadership transfer moves
# the leader off the node under test, which then answers every later
# transfer 503 not_leader. They are not fuzzed here (tests/operate.rs
# drives them).
[[operations]]
include-path-regex = "^/v1/cluster/(learners|members|leader)"
enabled = false

# 410 log_purged is how the log answers for entries a compaction (which
# the run may call) removed: the request was well-formed, what it asked
# for is gone, as with a 404.
[[operations]]
include-path = "/v1/backup/log"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "410"]
"#;
