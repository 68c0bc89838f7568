//! Real handshakes over loopback sockets with certificates `keel certs`
//! would write: who is let in, who is refused, and a rotation taking effect
//! without a restart.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keel_tls::authority::{self, Request, Subject, Validity};
use keel_tls::{presents_member, ClientTls, PeerCert, ServerTls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn year() -> Validity {
    Validity::from_now(Duration::from_secs(365 * 86_400))
}

fn node(dir: &Path, id: u64, validity: Validity) -> TlsFiles {
    let req = Request {
        subject: Subject::Node { id },
        dns_names: vec!["localhost".into()],
        ips: vec![LOOPBACK],
        validity,
    };
    authority::issue(dir, &req, dir).unwrap()
}

/// A server that completes handshakes with `tls` and, for each, reports
/// the client's certificate (if any) and echoes one byte.
async fn server(
    tls: Arc<ServerTls>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<Option<PeerCert>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(mut s) = tls.accept(s).await {
                    let _ = tx.send(PeerCert::of(&s));
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Whether a client with `tls` completes a handshake and an exchange.
async fn exchange(tls: &ClientTls, addr: &str, host: &str) -> bool {
    let s = TcpStream::connect(addr).await.unwrap();
    let Ok(mut s) = tls.connect(host, s).await else {
        return false;
    };
    if s.write_all(b"x").await.is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.is_ok()
}

#[tokio::test]
async fn members_are_told_apart_and_strangers_refused() {
    let ca = tempfile::tempdir().unwrap();
    authority::create(ca.path(), "test cluster", year()).unwrap();
    let one = node(ca.path(), 1, year());
    let two = node(ca.path(), 2, year());
    let (addr, mut seen) = server(Arc::new(ServerTls::load(one).unwrap())).await;

    // A peer presenting member 2's certificate is member 2, not member 1.
    let as_two = ClientTls::with_identity(two).unwrap();
    assert!(exchange(&as_two, &addr, "127.0.0.1").await);
    let cert = seen.recv().await.unwrap().expect("a client certificate");
    assert!(presents_member(&cert.0, 2));
    assert!(!presents_member(&cert.0, 1));

    // A client without a certificate is served, and is nobody.
    let anonymous = ClientTls::anonymous(ca.path().join("ca.pem")).unwrap();
    assert!(exchange(&anonymous, &addr, "localhost").await);
    assert!(seen.recv().await.unwrap().is_none());

    // The server must be the host dialled.
    assert!(!exchange(&anonymous, &addr, "elsewhere.example").await);

    // A certificate from another CA is refused both ways.
    let other = tempfile::tempdir().unwrap();
    authority::create(other.path(), "another cluster", year()).unwrap();
    let stranger = node(other.path(), 2, year());
    let as_stranger = ClientTls::with_identity(stranger.clone()).unwrap();
    assert!(!exchange(&as_stranger, &addr, "127.0.0.1").await);
    let (other_addr, _) = server(Arc::new(ServerTls::load(stranger).unwrap())).await;
    assert!(!exchange(&anonymous, &other_addr, "127.0.0.1").await);

    // An expired certificate is refused.
    let past = Validity {
        not_before: SystemTime::now() - Duration::from_secs(7_200),
        not_after: SystemTime::now() - Duration::from_secs(60),
    };
    let expired = node(ca.path(), 3, past);
    let as_expired = ClientTls::with_identity(expired).unwrap();
    assert!(!exchange(&as_expired, &addr, "127.0.0.1").await);
}

#[tokio::test]
async fn a_ca_rollover_is_picked_up_without_a_restart() {
    let ca = tempfile::tempdir().unwrap();
    authority::create(ca.path(), "test cluster", year()).unwrap();
    let one = node(ca.path(), 1, year());
    let server_tls = Arc::new(ServerTls::load(one).unwrap());
    let (addr, _seen) = server(server_tls).await;
    let client = ClientTls::anonymous(ca.path().join("ca.pem")).unwrap();
    assert!(exchange(&client, &addr, "127.0.0.1").await);

    // A new CA, trusted beside the old one; the node gets a certificate
    // from it. The running server and client pick both up.
    authority::roll_over(ca.path(), "test cluster 2", year()).unwrap();
    assert_eq!(authority::bundle_len(ca.path()).unwrap(), 2);
    node(ca.path(), 1, year());
    authority::retire_old(ca.path()).unwrap();
    assert_eq!(authority::bundle_len(ca.path()).unwrap(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Within a reload interval both sides use the new files: a client that
    // trusts only the new CA is served.
    let fresh = ClientTls::anonymous(ca.path().join("ca.pem")).unwrap();
    loop {
        if exchange(&fresh, &addr, "127.0.0.1").await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the long-running client, which loaded the old bundle, moved on.
    assert!(exchange(&client, &addr, "127.0.0.1").await);
}

#[test]
fn a_second_ca_in_one_directory_is_refused_and_names_are_checked() {
    let ca = tempfile::tempdir().unwrap();
    authority::create(ca.path(), "c", year()).unwrap();
    assert!(authority::create(ca.path(), "c", year()).is_err());
    let bad = Request {
        subject: Subject::Client {
            name: "no spaces".into(),
        },
        dns_names: vec![],
        ips: vec![],
        validity: year(),
    };
    assert!(authority::issue(ca.path(), &bad, ca.path()).is_err());
    let zero = Request {
        subject: Subject::Node { id: 0 },
        ..bad
    };
    assert!(authority::issue(ca.path(), &zero, ca.path()).is_err());
}
