//! The accept loop Keel's processes serve HTTP/1.1 with: the gateway for
//! its clients, a node for clients, the gateway and its peers.
//!
//! Each connection is served on a task of its own by hyper's HTTP/1.1
//! server directly (no protocol sniffing: nothing here speaks HTTP/2). At
//! most [`ServeLimits::connections`] connections are served at once;
//! past that, each accept loop holds one accepted connection until a slot
//! frees and the rest wait in the kernel's listen backlog, so a flood of
//! clients costs a queue in the kernel rather than memory here. A client
//! that sends no request head for [`ServeLimits::header_read_timeout`] is
//! dropped, which also ends idle kept-alive connections. On stop, the
//! listener closes, requests in flight may finish for
//! [`ServeLimits::shutdown_grace`], and then every connection is dropped.
//!
//! With a [`keel_tls::ServerTls`], every connection first completes a TLS
//! handshake, within the header read timeout, on its own task (a slow
//! handshake never holds up the accept loop), and the service for it learns
//! the certificate the client presented ([`Peer::cert`]).
#![deny(missing_docs)]

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use keel_tls::{PeerCert, ServerTls};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long accepting pauses after the OS refused an accept (out of file
/// descriptors, say), so a persistent failure does not spin a core.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The slots connections are served in: the cap on connections served at
/// once, shared by every accept loop given a clone (a server that accepts
/// on several threads keeps one cap).
#[derive(Clone, Debug)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    /// `max` slots (at least one).
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max.max(1))))
    }
}

/// The bounds of one server.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Most connections served at once, across every accept loop sharing
    /// these slots.
    pub connections: ConnectionSlots,
    /// Longest wait for a request head, between requests too.
    pub header_read_timeout: Duration,
    /// Longest wait for requests in flight once stopping.
    pub shutdown_grace: Duration,
}

/// Whom a connection is with.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The certificate the client presented over TLS (verified against the
    /// CA bundle), if it presented one.
    pub cert: Option<PeerCert>,
}

/// Serves connections from `listener` until `stopped` turns true, each
/// with the service `make` builds for its peer, over TLS when `tls` is
/// given.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: ServeLimits,
    tls: Option<Arc<ServerTls>>,
    make: M,
    mut stopped: watch::Receiver<bool>,
) where
    M: Fn(Peer) -> S + Send + Sync + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let make = Arc::new(make);
    let permits = limits.connections.0.clone();
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut connections = JoinSet::new();
    loop {
        // Accept first, then wait for a slot: a loop waiting for a slot
        // with no connection in hand could hold one that another loop
        // sharing the slots needs for a connection it has accepted.
        let (stream, peer) = tokio::select! {
            () = until_stopped(&mut stopped) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let permit = tokio::select! {
            () = until_stopped(&mut stopped) => break,
            // The semaphore is never closed, so acquiring only waits.
            p = permits.clone().acquire_owned() => p,
        };
        // Reap finished connections so the set stays bounded by the cap.
        while connections.try_join_next().is_some() {}
        // Small requests and replies: no waiting for a full segment.
        let _ = stream.set_nodelay(true);
        let (http, make, tls, watcher) =
            (http.clone(), make.clone(), tls.clone(), graceful.watcher());
        let handshake_within = limits.header_read_timeout;
        connections.spawn(async move {
            let _slot = permit;
            let Some(tls) = tls else {
                let service = make(Peer {
                    addr: peer,
                    cert: None,
                });
                return serve_one(&http, watcher, TokioIo::new(stream), service, peer).await;
            };
            let stream = match tokio::time::timeout(handshake_within, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no TLS handshake in time");
                    return;
                }
            };
            let cert = PeerCert::of(&stream);
            let service = make(Peer { addr: peer, cert });
            serve_one(&http, watcher, TokioIo::new(stream), service, peer).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it ends (or the graceful stop ends it).
async fn serve_one<I, S, B>(
    http: &hyper::server::conn::http1::Builder,
    watcher: Watcher,
    io: I,
    service: S,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Err(e) = watcher.watch(http.serve_connection(io, service)).await {
        tracing::debug!(error = %e, %peer, "connection ended");
    }
}

/// Completes once shutdown was asked for (or its sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::Notify;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    /// Reads one whole reply of the fixed body "ok" (or times out).
    async fn reply(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            while !got.ends_with(b"ok") {
                let n = s.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Some(String::from_utf8_lossy(&got).into_owned())
        })
        .await
        .ok()
        .flatten()
    }

    /// A server on `slots` whose `/slow` requests say they started on
    /// `started` and then wait for `gate`; every other request is answered
    /// at once.
    async fn start(
        slots: ConnectionSlots,
        started: Arc<Notify>,
        gate: Arc<Notify>,
    ) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        start_with(slots, Duration::from_secs(30), started, gate).await
    }

    /// [`start`] with a header-read timeout of `head_within`.
    async fn start_with(
        slots: ConnectionSlots,
        head_within: Duration,
        started: Arc<Notify>,
        gate: Arc<Notify>,
    ) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(
            l,
            ServeLimits {
                connections: slots,
                header_read_timeout: head_within,
                shutdown_grace: Duration::from_secs(5),
            },
            None,
            move |_| {
                let (started, gate) = (started.clone(), gate.clone());
                service_fn(move |req: Request<Incoming>| {
                    let (started, gate) = (started.clone(), gate.clone());
                    async move {
                        if req.uri().path() == "/slow" {
                            started.notify_one();
                            gate.notified().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                    }
                })
            },
            stopped,
        ));
        (addr, stop, server)
    }

    /// A client of `first` is served; one of `second` is not while it
    /// stays connected (the one slot is taken), and is once it goes.
    async fn the_slot_passes_from_first_to_second(first: SocketAddr, second: SocketAddr) {
        let mut a = TcpStream::connect(first).await.unwrap();
        a.write_all(GET).await.unwrap();
        assert!(reply(&mut a, Duration::from_secs(5)).await.is_some());
        let mut b = TcpStream::connect(second).await.unwrap();
        b.write_all(GET).await.unwrap();
        assert!(reply(&mut b, Duration::from_millis(300)).await.is_none());
        drop(a);
        assert!(reply(&mut b, Duration::from_secs(5)).await.is_some());
    }

    /// Whether the server closes `s` (end of stream or reset) within
    /// `within`, without sending anything more.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_client_that_sends_no_whole_head_in_time_is_dropped() {
        let idle = Arc::new(Notify::new());
        let (addr, _stop, _server) = start_with(
            ConnectionSlots::new(8),
            Duration::from_millis(200),
            idle.clone(),
            idle,
        )
        .await;
        // A head begun and never finished (a slow-loris client).
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        // A kept-alive client idle after its one request.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(GET).await.unwrap();
        assert!(reply(&mut kept, Duration::from_secs(5)).await.is_some());
        assert!(closed_within(&mut partial, Duration::from_secs(5)).await);
        assert!(closed_within(&mut kept, Duration::from_secs(5)).await);
        // The timeout is per head: a client that keeps sending whole
        // requests within it is served across many timeouts' worth.
        let mut busy = TcpStream::connect(addr).await.unwrap();
        for _ in 0..6 {
            busy.write_all(GET).await.unwrap();
            assert!(reply(&mut busy, Duration::from_secs(5)).await.is_some());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_connection_past_the_cap_waits_until_one_closes() {
        let idle = Arc::new(Notify::new());
        let (addr, _stop, _server) = start(ConnectionSlots::new(1), idle.clone(), idle).await;
        // The first client is kept alive and holds the only slot.
        the_slot_passes_from_first_to_second(addr, addr).await;
    }

    #[tokio::test]
    async fn accept_loops_sharing_slots_keep_one_cap_and_serve_whichever_gets_the_client() {
        let slots = ConnectionSlots::new(1);
        let idle = Arc::new(Notify::new());
        let (one, _stop_one, _one) = start(slots.clone(), idle.clone(), idle.clone()).await;
        let (two, _stop_two, _two) = start(slots, idle.clone(), idle).await;
        // Whichever loop a client reaches serves it while the slot is free,
        // and the other loop does not serve a second client past the cap.
        for (first, second) in [(one, two), (two, one), (one, two)] {
            the_slot_passes_from_first_to_second(first, second).await;
        }
    }

    #[tokio::test]
    async fn a_stop_lets_the_request_in_flight_finish_and_refuses_new_ones() {
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (addr, stop, server) =
            start(ConnectionSlots::new(8), started.clone(), gate.clone()).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        a.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Stop once the request is being served.
        tokio::time::timeout(Duration::from_secs(5), started.notified())
            .await
            .unwrap();
        stop.send(true).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        // New connections are refused once the listener is closed.
        loop {
            if TcpStream::connect(addr).await.is_err() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "listener still open"
            );
            tokio::task::yield_now().await;
        }
        assert!(!server.is_finished(), "waits for the request in flight");
        gate.notify_one();
        assert!(reply(&mut a, Duration::from_secs(5)).await.is_some());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
