//! `keel admin` as an operator uses it, against a real TLS cluster: keys
//! made, listed, used and revoked, a client certificate standing for a key,
//! customer tokens issued and revoked, and the audit trail that records it
//! all. Every step runs the `keel` binary with its secrets in files.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keel_harness::{host, ClusterSpec, LocalCluster};
use keel_tls::authority;

const READY: Duration = Duration::from_secs(30);

struct Admin {
    endpoint: String,
    ca: PathBuf,
}

impl Admin {
    /// `keel admin <args>` with the credential in `token_file`, or the
    /// client certificate `cert` (`.pem` and `.key`) and no token.
    fn run(&self, token_file: Option<&Path>, cert: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.arg("admin")
            .args(["--endpoint", &self.endpoint])
            .arg("--tls-ca")
            .arg(&self.ca)
            .env_remove("KEEL_ADMIN_TOKEN")
            .env_remove("KEEL_ADMIN_TOKEN_FILE");
        if let Some(f) = token_file {
            cmd.arg("--admin-token-file").arg(f);
        }
        if let Some(c) = cert {
            cmd.arg("--tls-cert")
                .arg(c.with_extension("pem"))
                .arg("--tls-key")
                .arg(c.with_extension("key"));
        }
        cmd.args(args).output().unwrap()
    }

    /// Like `run`, and the command must succeed: its stdout.
    fn ok(&self, token_file: Option<&Path>, cert: Option<&Path>, args: &[&str]) -> String {
        let out = self.run(token_file, cert, args);
        assert!(
            out.status.success(),
            "keel admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Like `run`, and the command must fail: its stderr.
    fn refused(&self, token_file: Option<&Path>, cert: Option<&Path>, args: &[&str]) -> String {
        let out = self.run(token_file, cert, args);
        assert!(
            !out.status.success(),
            "keel admin {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keel_admin_manages_keys_tokens_and_reads_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_keel"), dir.path(), 3);
    spec.tls = true;
    spec.admin_token = host::random_secret().unwrap();
    spec.cluster_secret = host::random_secret().unwrap();
    let mut c = LocalCluster::start(spec).unwrap();
    c.wait_ready(READY).await.unwrap();
    keel_harness::seed_test_shop(&c.admin_client(), 2, 1_000, 1_000_000)
        .await
        .unwrap();
    let ca_dir = c.tls().unwrap().dir().to_owned();
    // A follower, so every write goes through a forward.
    let endpoint = c.endpoints()[1].clone();
    let admin = Admin {
        endpoint,
        ca: ca_dir.join(authority::BUNDLE_FILE),
    };
    let root = secret_file(dir.path(), "admin-token", c.admin_token());

    // An operator key: its token printed once, on stdout alone.
    let token = admin.ok(
        Some(&root),
        None,
        &["keys", "create", "--name", "on-call", "--role", "operator"],
    );
    let token = token.trim();
    assert!(token.starts_with("key_k-"), "{token}");
    let id = token
        .strip_prefix("key_")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let listed = admin.ok(Some(&root), None, &["keys", "list"]);
    assert!(listed.contains(&id) && listed.contains("operator") && listed.contains("on-call"));
    assert!(
        !listed.contains(token.rsplit('.').next().unwrap()),
        "a secret was listed"
    );

    // The key works for what an operator may do, and only that.
    let op = secret_file(dir.path(), "operator-token", token);
    let me = admin.ok(Some(&op), None, &["whoami"]);
    assert!(
        me.contains(&format!("key:{id}")) && me.contains("operator"),
        "{me}"
    );
    assert!(admin.ok(Some(&op), None, &["status"]).contains("leader"));
    let err = admin.refused(
        Some(&op),
        None,
        &["keys", "create", "--name", "x", "--role", "admin"],
    );
    assert!(err.contains("forbidden"), "{err}");

    // The gateway takes an operator's key for its weights: it asks a node
    // who the key stands for. A support key is refused.
    let gateway = c
        .start_gateway_ready(host::free_port().unwrap())
        .await
        .unwrap();
    let weights = |token: &str| {
        let client = c.client(vec![gateway.clone()], Some(token.to_owned()));
        let body = serde_json::json!({"node": c.endpoints()[0], "weight": 3});
        let gateway = gateway.clone();
        async move {
            match client
                .call_at(
                    &gateway,
                    keel_client::HttpMethod::PUT,
                    "/gateway/weights",
                    Some(&body),
                    None,
                )
                .await
            {
                Ok(r) => r.status,
                Err(keel_client::AttemptError::Problem(keel_client::ClientError::Problem {
                    status,
                    ..
                })) => status,
                Err(e) => panic!("{e:?}"),
            }
        }
    };
    assert_eq!(weights(token).await, 200);
    let support = admin.ok(
        Some(&root),
        None,
        &["keys", "create", "--name", "helpdesk", "--role", "support"],
    );
    assert_eq!(weights(support.trim()).await, 401);

    // A client certificate naming the key stands for it, without a token.
    let certs = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["certs", "client", "--name", &id, "--dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(
        certs.status.success(),
        "{}",
        String::from_utf8_lossy(&certs.stderr)
    );
    let cert = ca_dir.join(format!("client-{id}"));
    let me = admin.ok(None, Some(&cert), &["whoami"]);
    assert!(
        me.contains(&format!("key:{id}")) && me.contains("operator"),
        "{me}"
    );
    assert!(admin.ok(None, Some(&cert), &["status"]).contains("leader"));

    // Customer tokens: issued, then revoked for the account.
    let customer = admin.ok(
        Some(&root),
        None,
        &["tokens", "issue", "c0", "--ttl-seconds", "600"],
    );
    let customer = secret_file(dir.path(), "customer-token", customer.trim());
    assert!(admin
        .ok(Some(&customer), None, &["whoami"])
        .contains("customer:c0"));
    admin.ok(Some(&root), None, &["tokens", "revoke", "c0"]);
    let err = admin.refused(Some(&customer), None, &["whoami"]);
    assert!(
        err.contains("unauthorized") && err.contains("revoked"),
        "{err}"
    );

    // Revoked: the token and the certificate are refused.
    admin.ok(Some(&root), None, &["keys", "revoke", &id]);
    let err = admin.refused(Some(&op), None, &["whoami"]);
    assert!(err.contains("unauthorized"), "{err}");
    let err = admin.refused(None, Some(&cert), &["status"]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!admin.ok(Some(&root), None, &["keys", "list"]).contains(&id));
    assert_eq!(weights(token).await, 401);

    // The trail, newest first: who did each, from where, and how it ended.
    let trail = admin.ok(Some(&root), None, &["audit", "--limit", "20"]);
    let rows: Vec<&str> = trail.lines().skip(1).collect();
    let row = |action: &str| {
        rows.iter()
            .position(|r| r.split_whitespace().nth(5) == Some(action))
            .unwrap_or_else(|| panic!("no {action} in\n{trail}"))
    };
    let (revoke, tokens, issue) = (
        row("revoke_key"),
        row("revoke_customer_tokens"),
        row("issue_customer_token"),
    );
    let create = rows
        .iter()
        .position(|r| r.contains("create_key") && r.contains("role=operator"))
        .unwrap_or_else(|| panic!("no create_key of the operator key in\n{trail}"));
    assert!(
        revoke < tokens && tokens < issue && issue < create,
        "{trail}"
    );
    assert!(rows[create].contains("admin-token") && rows[create].contains(&id));
    // The operator's own create_key was refused by the route table: it
    // never reached the log.
    assert!(
        !rows
            .iter()
            .any(|r| r.contains("create_key") && r.contains("role=admin")),
        "{trail}"
    );
    assert!(
        rows[revoke].contains("127.0.0.1:"),
        "no origin: {}",
        rows[revoke]
    );
}
