//! A fault-injecting TCP proxy on every node-to-node link (the job of
//! Toxiproxy, kept small): with namespaces, each node's connections to a
//! peer are redirected (iptables DNAT inside its namespace) to a listener
//! of this proxy on the bridge, which forwards them to the peer. Faults are
//! set at run time for all links at once: added latency (this kernel has
//! no `tc netem`) and dropping every open connection. Runs on its own
//! thread and runtime; stops when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::HarnessError;

/// Chunks in flight on one direction of one connection: bounds the memory a
/// slow link holds.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 64;
/// Read buffer per direction.
const CHUNK_BYTES: usize = 64 << 10;
/// Longest the proxy waits to connect to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The faults in force, shared by every link.
#[derive(Debug, Default)]
struct Faults {
    latency_ms: AtomicU64,
    /// Bumped to drop every open connection.
    generation: AtomicU64,
}

/// The proxies of one cluster.
pub struct LinkProxies {
    faults: Arc<Faults>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LinkProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkProxies")
            .field("faults", &self.faults)
            .finish()
    }
}

/// One directed link: listen on `listen`, forward to `peer`.
pub struct Link {
    /// The listener, already bound (so its port is known before rules are
    /// written).
    pub listener: std::net::TcpListener,
    /// Where connections go.
    pub peer: String,
}

impl LinkProxies {
    /// Starts forwarding on every link.
    pub fn start(links: Vec<Link>) -> Result<Self, HarnessError> {
        let faults = Arc::new(Faults::default());
        let (stop, stopped) = watch::channel(false);
        let f = faults.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HarnessError::Process(format!("link proxy runtime: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("keel-link-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for l in links {
                        let _ = l.listener.set_nonblocking(true);
                        let Ok(listener) = TcpListener::from_std(l.listener) else {
                            continue;
                        };
                        tasks.push(tokio::spawn(serve(
                            listener,
                            l.peer,
                            f.clone(),
                            stopped.clone(),
                        )));
                    }
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                    for t in tasks {
                        t.abort();
                    }
                });
            })
            .map_err(|e| HarnessError::Process(format!("link proxy thread: {e}")))?;
        Ok(Self {
            faults,
            stop,
            thread: Some(thread),
        })
    }

    /// Adds `ms` of latency to every chunk on every link (0 removes it).
    pub fn set_latency_ms(&self, ms: u64) {
        self.faults.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Drops every open connection; new ones are accepted.
    pub fn drop_connections(&self) {
        self.faults.generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for LinkProxies {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    peer: String,
    faults: Arc<Faults>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        let (peer, faults) = (peer.clone(), faults.clone());
        tokio::spawn(async move {
            let gen = faults.generation.load(Ordering::Relaxed);
            let Ok(Ok(upstream)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&peer)).await
            else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let dropped = {
                let faults = faults.clone();
                async move {
                    while faults.generation.load(Ordering::Relaxed) == gen {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            // Either direction ending, or a drop, ends both.
            tokio::select! {
                _ = pipe(cr, uw, faults.clone()) => {}
                _ = pipe(ur, cw, faults.clone()) => {}
                _ = dropped => {}
            }
        });
    }
}

/// Copies one direction, each chunk held back by the latency in force when
/// it was read; chunks keep their order and the link keeps its bandwidth.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT_MAX);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = tokio::time::Instant::now()
                        + Duration::from_millis(faults.latency_ms.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
