//! TLS on every link, with real processes, sockets and certificate files:
//! a cluster whose nodes speak mutual TLS serves and fails over; a
//! plaintext client, a client of another CA and a peer claiming another
//! member's identity are refused; a CA rollover keeps it serving; and no
//! secret reaches a log.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::tls_cluster;
use http_body_util::Full;
use keel_client::Client;
use keel_harness::host;
use keel_http_client::ConnPool;
use keel_tls::authority::{self, Subject, Validity};
use keel_tls::ClientTls;

const READY: Duration = Duration::from_secs(30);

/// The status `/internal/clock` answers a caller presenting `identity`
/// (none: no certificate) and claiming to be member `claimed`, with the
/// right cluster secret; `None` when the handshake itself fails.
async fn internal_call(
    addr: &str,
    identity: Option<keel_tls::TlsFiles>,
    ca: &std::path::Path,
    claimed: u64,
    secret: &str,
) -> Option<u16> {
    let tls = match identity {
        Some(files) => ClientTls::with_identity(files).unwrap(),
        None => ClientTls::anonymous(ca.to_owned()).unwrap(),
    };
    let pool = ConnPool::new(1, Duration::from_secs(5), Duration::from_secs(2))
        .with_tls(Some(Arc::new(tls)));
    let req = hyper::Request::post("/internal/clock")
        .header("host", addr)
        .header(keel_protocol::header::CLUSTER_SECRET, secret)
        .header(keel_protocol::header::MEMBER, claimed)
        .header("content-type", "application/x-keel-postcard")
        .body(Full::new(Bytes::from_static(&[])))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), pool.exchange(addr, req, 1 << 16))
        .await
        .unwrap();
    r.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_serves_fails_over_rotates_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tls_cluster(dir.path());
    let leader = c.wait_ready(READY).await.unwrap();
    let admin = c.admin_client();
    keel_harness::seed_test_shop(&admin, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let ca_dir = c.tls().unwrap().dir().to_owned();
    let ca = ca_dir.join(authority::BUNDLE_FILE);
    let token = c.admin_token().to_owned();

    // Plaintext is refused: the node speaks only TLS.
    let plain = Client::new(c.endpoints(), Some(token.clone()));
    assert!(plain.summary().await.is_err(), "plaintext was served");
    // A client that trusts another CA does not accept the nodes.
    let other = tempfile::tempdir().unwrap();
    authority::create(
        other.path(),
        "another CA",
        Validity::from_now(Duration::from_secs(86_400)),
    )
    .unwrap();
    let stranger = Client::with_tls(
        c.endpoints(),
        Some(token.clone()),
        Arc::new(ClientTls::anonymous(other.path().join(authority::BUNDLE_FILE)).unwrap()),
    );
    assert!(
        stranger.summary().await.is_err(),
        "a node's certificate was accepted by another CA's client"
    );

    // The internal endpoints: member 2's certificate speaks as member 2 and
    // for no one else; no certificate, or another CA's, speaks for no one.
    let one = c.addr(1).unwrap();
    let secret = c.cluster_secret().to_owned();
    let two = keel_tls::TlsFiles::in_dir(&ca_dir, "node-2");
    assert_eq!(
        internal_call(&one, Some(two.clone()), &ca, 2, &secret).await,
        Some(200)
    );
    assert_eq!(
        internal_call(&one, Some(two), &ca, 3, &secret).await,
        Some(403)
    );
    assert_eq!(internal_call(&one, None, &ca, 2, &secret).await, Some(403));
    let foreign = authority::issue(
        other.path(),
        &authority::Request {
            subject: Subject::Node { id: 2 },
            dns_names: vec!["localhost".into()],
            ips: vec![[127, 0, 0, 1].into()],
            validity: Validity::from_now(Duration::from_secs(86_400)),
        },
        other.path(),
    )
    .unwrap();
    let foreign = keel_tls::TlsFiles {
        ca: ca.clone(),
        ..foreign
    };
    assert_eq!(
        internal_call(&one, Some(foreign), &ca, 2, &secret).await,
        None
    );

    // Writers run through everything below; none may see an error.
    let client = Arc::new(admin);
    let writer = keel_harness::writer::Writer::start(client.clone(), 4, "tls");
    writer.more(20, READY).await.unwrap();

    // A leader killed: the survivors elect over mutual TLS and go on.
    c.kill(leader).unwrap();
    c.wait_new_leader(leader, READY).await.unwrap();
    writer.more(20, READY).await.unwrap();
    c.restart(leader).unwrap();
    c.wait_ready(READY).await.unwrap();

    // A CA rollover, as an operator runs it, with no restart: trust both,
    // reissue every node, trust only the new CA.
    let t = c.tls().unwrap();
    authority::roll_over(
        &ca_dir,
        "rotated CA",
        Validity::from_now(Duration::from_secs(86_400)),
    )
    .unwrap();
    for id in c.ids() {
        t.issue(Subject::Node { id }, &c.addr(id).unwrap()).unwrap();
    }
    authority::retire_old(&ca_dir).unwrap();
    // Within the reload interval every node serves the new certificate: a
    // client that trusts only the new CA is served by each.
    let fresh = Arc::new(ClientTls::anonymous(ca.clone()).unwrap());
    for id in c.ids() {
        let only = Client::with_tls(
            vec![c.addr(id).unwrap()],
            Some(token.clone()),
            fresh.clone(),
        );
        keel_harness::wait_for(
            "a node serving the new CA's certificate",
            Duration::from_secs(20),
            &mut || {
                let only = &only;
                async move { only.summary().await.ok() }
            },
        )
        .await
        .unwrap();
    }
    // And the nodes still reach one another: writes keep being committed.
    writer.more(20, READY).await.unwrap();

    // Through a TLS gateway too.
    let gw = c.start_gateway_ready(0).await.unwrap();
    let via_gateway = c.client(vec![gw], Some(token.clone()));
    assert!(via_gateway.summary().await.is_ok());

    let (_, failed) = writer.stop().await;
    assert_eq!(failed, 0, "a client saw an error");

    // No secret in any log.
    c.stop_all();
    let mut logs = vec![c.gateway_log_file()];
    logs.extend(c.ids().into_iter().map(|id| c.log_file(id)));
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains(&token),
            "{} holds the admin token",
            log.display()
        );
        assert!(
            !text.contains(&secret),
            "{} holds the cluster secret",
            log.display()
        );
    }
}

#[test]
fn a_node_refuses_to_start_with_another_members_certificate_or_plaintext_outside_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    // The certificates as an operator makes them.
    for args in [&["init"][..], &["node", "--id", "2", "--ip", "127.0.0.1"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(&ca)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "keel certs {args:?}: {err}");
    }

    let node = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("node")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("KEEL_ADMIN_TOKEN", "an-admin-token-of-our-own")
            .env("KEEL_CLUSTER_SECRET", "a-cluster-secret-of-our-own")
            .output()
            .unwrap()
    };
    let port = host::free_port().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    let f = |name: &str| ca.join(name).to_string_lossy().into_owned();
    let out = node(&[
        "--id",
        "1",
        "--listen",
        &listen,
        "--tls-ca",
        &f("ca.pem"),
        "--tls-cert",
        &f("node-2.pem"),
        "--tls-key",
        &f("node-2.key"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not name member 1"),
        "{err}"
    );

    let out = node(&["--id", "1", "--listen", &format!("0.0.0.0:{port}")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("without TLS"),
        "{err}"
    );
}
