//! Kept-alive HTTP/1.1 client connections, each driven by the request that
//! holds it.
//!
//! A pooled client that gives every connection a task of its own hands each
//! request over a channel to that task and the reply back over another: two
//! cross-task wake-ups per exchange, often across worker threads. Here a
//! request checks a connection out, drives hyper's connection state machine
//! itself while it waits for the reply (as an nginx worker serves a client
//! and its upstream in one event loop), and checks it back in once the
//! reply is whole. The connection is idle between requests and no task
//! polls it; a close by the server meanwhile is noticed at the next checkout.
//!
//! The gateway reaches the nodes this way, the nodes reach each other
//! (Raft's messages, forwarded writes) and the typed client reaches a
//! cluster: on a machine whose cores the whole cluster shares, the hand-offs
//! a pooled client with connection tasks makes cost as much CPU as a node's
//! own work on a small request.
//!
//! With a [`keel_tls::ClientTls`] every connection is TLS: the handshake
//! happens within the connect timeout, and the server must present a
//! certificate from the cluster's CA naming the host dialled.
#![deny(missing_docs)]

mod stream;

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use keel_tls::ClientTls;
use std::sync::Arc;
use stream::Stream;
use tokio::net::TcpStream;

type Conn = Connection<TokioIo<Stream>, Full<Bytes>>;

/// Why an exchange produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No connection could be made: the request never left.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connect did not finish within its timeout: the request never left.
    #[error("connect: no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed (a certificate refused either way, or a
    /// server that does not speak TLS): the request never left.
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    /// The request may have reached the server, but no whole reply came back.
    #[error("{0}")]
    Lost(String),
}

impl ExchangeError {
    /// Whether the request certainly never reached the server.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Handshake(_)
        )
    }

    /// Whether the server refused the connection (nothing listens there).
    pub fn refused(&self) -> bool {
        matches!(self, Self::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    }
}

/// A connection between requests.
struct Idle {
    sender: SendRequest<Full<Bytes>>,
    conn: Conn,
    since: Instant,
}

/// Kept-alive connections, by server address (`host:port`).
pub struct ConnPool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    idle_per_server: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    tls: Option<Arc<ClientTls>>,
}

impl ConnPool {
    /// Keeps at most `idle_per_server` idle connections to each server, each
    /// for at most `idle_timeout`; a connect may take `connect_timeout`.
    pub fn new(idle_per_server: usize, idle_timeout: Duration, connect_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            idle_per_server,
            idle_timeout,
            connect_timeout,
            tls: None,
        }
    }

    /// The same pool speaking TLS with `tls` on every connection (none
    /// when `tls` is `None`).
    pub fn with_tls(mut self, tls: Option<Arc<ClientTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Whether connections are made over TLS (`https`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends `req` to the server at `addr` and reads its whole reply, up to
    /// `reply_bytes_max` bytes of body. `req`'s URI is sent as it is (origin
    /// form: a path and query) and its headers must already name the `Host`.
    /// No timeout of its own beyond the connect: the caller bounds the whole
    /// exchange, and dropping it mid-way closes the connection.
    pub async fn exchange(
        &self,
        addr: &str,
        req: Request<Full<Bytes>>,
        reply_bytes_max: usize,
    ) -> Result<Response<Bytes>, ExchangeError> {
        let mut c = match self.checkout(addr) {
            Some(c) => c,
            None => self.connect(addr).await?,
        };
        let Idle { sender, conn, .. } = &mut c;
        let work = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| ExchangeError::Lost(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, reply_bytes_max)
                .collect()
                .await
                .map_err(|e| ExchangeError::Lost(format!("reply body: {e}")))?
                .to_bytes();
            Ok(Response::from_parts(parts, bytes))
        };
        let (resp, open) = drive(conn, work).await?;
        // A connection still open goes back for the next request; whether
        // it can take one is checked then (`still_open`), once hyper has
        // seen this reply's end.
        if open {
            c.since = Instant::now();
            self.checkin(addr, c);
        }
        Ok(resp)
    }

    /// The most recently used idle connection to `addr` still open, if any.
    fn checkout(&self, addr: &str) -> Option<Idle> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.get_mut(addr)?;
        while let Some(mut c) = list.pop() {
            if now.duration_since(c.since) < self.idle_timeout && still_open(&mut c) {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, addr: &str, c: Idle) {
        let mut idle = self.lock();
        let list = match idle.get_mut(addr) {
            Some(l) => l,
            None => idle.entry(addr.to_owned()).or_default(),
        };
        // Oldest first: past the cap, or past the idle timeout, they go.
        let expired = list
            .iter()
            .take_while(|c| c.since.elapsed() >= self.idle_timeout)
            .count();
        list.drain(..expired);
        if list.len() >= self.idle_per_server {
            list.remove(0);
        }
        if self.idle_per_server > 0 {
            list.push(c);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Idle>>> {
        // A panic while holding the lock leaves only a list of connections,
        // each whole or absent: safe to go on with.
        keel_protocol::sync::lock(&self.idle)
    }

    async fn connect(&self, addr: &str) -> Result<Idle, ExchangeError> {
        let stream = tokio::time::timeout(self.connect_timeout, self.open(addr))
            .await
            .map_err(|_| ExchangeError::ConnectTimeout(self.connect_timeout))??;
        // The handshake only sets up buffers: nothing is sent yet.
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ExchangeError::Lost(error_chain(&e)))?;
        Ok(Idle {
            sender,
            conn,
            since: Instant::now(),
        })
    }
}

impl ConnPool {
    /// A TCP connection to `addr`, and the TLS handshake on it when the
    /// pool speaks TLS.
    async fn open(&self, addr: &str) -> Result<Stream, ExchangeError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ExchangeError::Connect)?;
        // Small requests and replies: no waiting for a full segment.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let tls = tls
            .connect(keel_tls::host_of(addr), tcp)
            .await
            .map_err(ExchangeError::Handshake)?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// Polls `work` and the connection it uses together until `work` ends, and
/// says whether the connection is still open then. The connection ending
/// first (closed, or broken) while `work` still waits on it means `work`
/// can never finish: the reply is lost.
async fn drive<T>(
    conn: &mut Conn,
    work: impl Future<Output = Result<T, ExchangeError>>,
) -> Result<(T, bool), ExchangeError> {
    let mut work = pin!(work);
    let mut ended: Option<Result<(), hyper::Error>> = None;
    poll_fn(|cx| {
        if ended.is_none() {
            if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                ended = Some(r);
            }
        }
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out.map(|t| (t, ended.is_none())));
        }
        match &ended {
            None => Poll::Pending,
            Some(Ok(())) => Poll::Ready(Err(ExchangeError::Lost(
                "connection closed before the reply was whole".to_owned(),
            ))),
            Some(Err(e)) => Poll::Ready(Err(ExchangeError::Lost(error_chain(e)))),
        }
    })
    .await
}

/// Whether an idle connection is still usable: one turn of hyper's state
/// machine without waiting, which finishes the last reply's bookkeeping
/// and finds a close the server sent while the connection sat idle.
fn still_open(c: &mut Idle) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    c.conn.poll_without_shutdown(&mut cx).is_pending() && c.sender.is_ready()
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .uri(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// A server speaking raw HTTP/1.1: answers each request on a
    /// connection with `body`, closing after `per_conn` replies; counts
    /// the connections it accepted.
    async fn server(per_conn: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tx.send(()).unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for n in 0..per_conn {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            let k = s.read(&mut buf).await.unwrap_or(0);
                            if k == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..k]);
                        }
                        let body = format!("reply {n}");
                        let close = if n + 1 == per_conn {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n",
                            body.len()
                        );
                        s.write_all(head.as_bytes()).await.unwrap();
                        s.write_all(body.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (addr, rx)
    }

    fn upstream() -> ConnPool {
        ConnPool::new(4, Duration::from_secs(60), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn a_kept_alive_connection_serves_the_next_request() {
        let (addr, mut accepted) = server(100).await;
        let up = upstream();
        for n in 0..3 {
            let r = up.exchange(&addr, get("/x", &addr), 1024).await.unwrap();
            assert_eq!(r.body(), &Bytes::from(format!("reply {n}")));
        }
        accepted.recv().await.unwrap();
        assert!(accepted.try_recv().is_err(), "one connection for all three");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        // Closes after each reply, saying so: the next request reconnects.
        let (addr, mut accepted) = server(1).await;
        let up = upstream();
        for _ in 0..3 {
            let r = up.exchange(&addr, get("/x", &addr), 1024).await.unwrap();
            assert_eq!(r.body(), &Bytes::from("reply 0"));
        }
        for _ in 0..3 {
            accepted.recv().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_refused_connect_is_not_sent_and_an_oversized_reply_is_lost() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = l.local_addr().unwrap().to_string();
        drop(l);
        let up = upstream();
        let e = up.exchange(&dead, get("/", &dead), 1024).await.unwrap_err();
        assert!(e.not_sent() && e.refused(), "{e}");

        let (addr, _accepted) = server(100).await;
        let e = up.exchange(&addr, get("/", &addr), 3).await.unwrap_err();
        assert!(!e.not_sent(), "{e}");
    }

    #[tokio::test]
    async fn idle_connections_are_capped_per_server() {
        let (addr, _accepted) = server(100).await;
        let up = ConnPool::new(2, Duration::from_secs(60), Duration::from_secs(1));
        let reqs = (0..5).map(|_| up.exchange(&addr, get("/", &addr), 1024));
        for r in futures_join_all(reqs).await {
            r.unwrap();
        }
        assert_eq!(up.lock().get(&addr).map_or(0, Vec::len), 2);
    }

    /// Runs the futures concurrently on this task.
    async fn futures_join_all<F: Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut set: Vec<_> = fs.map(|f| Some(Box::pin(f))).collect();
        let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        poll_fn(|cx| {
            let mut pending = false;
            for (f, o) in set.iter_mut().zip(out.iter_mut()) {
                if let Some(fut) = f {
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(v) => {
                            *o = Some(v);
                            *f = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        out.into_iter().flatten().collect()
    }
}
