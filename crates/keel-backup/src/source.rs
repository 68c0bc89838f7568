//! Reading a running cluster for a backup, through the node's backup
//! endpoints (`/v1/backup/snapshot`, `/v1/backup/log`) and never around
//! them. A hot backup is taken from a follower when one is healthy, so the
//! leader's disk and CPU stay with the shoppers.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use keel_protocol::header as keel_header;

use crate::frames::LogSpan;
use crate::queue::QueueReader;

/// Longest wait to connect to a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest silence while reading a response (a snapshot streams for as long
/// as it needs, but a stalled node is given up on).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of a small request (cluster status, one log page).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most log pages one backup reads (each up to the node's page limit): a
/// bound on a runaway loop, far above any real backlog.
pub const LOG_PAGES_MAX: usize = 1_000_000;
/// Received pieces of a snapshot queued towards the repository, and again
/// towards its verifier: a bounded buffer between the network and the
/// slower sealing.
pub const STREAM_QUEUE_CHUNKS: usize = 64;

/// Why reading the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No node could be reached or none answered usefully.
    #[error("cluster unreachable: {0}")]
    Unreachable(String),
    /// A node answered with a problem.
    #[error("{url}: {status} {kind}: {detail}")]
    Problem {
        /// The request.
        url: String,
        /// HTTP status.
        status: u16,
        /// The problem's `type`.
        kind: String,
        /// The problem's `detail`.
        detail: String,
    },
    /// The CA bundle to reach the nodes with could not be used.
    #[error("CA bundle {ca}: {detail}")]
    Tls {
        /// The bundle.
        ca: std::path::PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The entries asked for are no longer in the node's log.
    #[error("{0}")]
    LogPurged(String),
    /// A response did not have the expected shape or a record failed its
    /// checksum.
    #[error("bad response from {url}: {detail}")]
    Bad {
        /// The request.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Writing the local copy failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What a snapshot export holds.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// Last log index in the state.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// State digest at that index (hex).
    pub digest: String,
    /// The state's clock (latest leader time applied), ms.
    pub clock_ms: u64,
    /// The node it came from.
    pub node: String,
}

/// A connection to one node's backup endpoints.
#[derive(Clone)]
pub struct NodeSource {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The most bytes per second a full backup reads and seals (`None` or
    /// 0: as fast as it goes; [`crate::Pace`] reads it).
    rate_bytes_per_s: Option<u64>,
}

#[derive(Deserialize)]
struct ClusterView {
    leader_id: Option<u64>,
    members: Vec<MemberView>,
}

#[derive(Deserialize)]
struct MemberView {
    id: u64,
    addr: String,
    membership: String,
    healthy: bool,
}

fn base_url(addr: &str, tls: bool) -> String {
    let a = addr.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else if tls {
        format!("https://{a}")
    } else {
        format!("http://{a}")
    }
}

impl NodeSource {
    /// A source reading from the node at `addr` (`host:port` or a URL) with
    /// the admin token, over TLS trusting only the CAs in the PEM bundle
    /// `ca` when one is given (the node must present a certificate naming
    /// the host dialled).
    pub fn new(addr: &str, token: &str, ca: Option<&Path>) -> Result<Self, SourceError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| SourceError::Tls {
                ca: ca.to_owned(),
                detail: e.to_string(),
            })?;
            let roots =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SourceError::Tls {
                    ca: ca.to_owned(),
                    detail: e.to_string(),
                })?;
            builder = builder.use_rustls_tls().tls_built_in_root_certs(false);
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder
            .build()
            .map_err(|e| SourceError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url(addr, ca.is_some()),
            token: token.to_string(),
            rate_bytes_per_s: None,
        })
    }

    /// The same source with full backups paced at `bytes_per_s` (see
    /// [`crate::pace`]); `None` or 0 for no limit.
    pub fn with_rate(mut self, bytes_per_s: Option<u64>) -> Self {
        self.rate_bytes_per_s = bytes_per_s;
        self
    }

    /// The pace full backups from this source keep.
    pub fn pace(&self) -> crate::Pace {
        crate::Pace::new(self.rate_bytes_per_s)
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Asks the given nodes for the cluster and returns a source on a
    /// healthy follower (a voter that is not the leader), else the leader,
    /// else the first node that answered.
    pub async fn pick(
        nodes: &[String],
        token: &str,
        ca: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let mut last_err = String::from("no node given");
        for n in nodes {
            let s = Self::new(n, token, ca)?;
            let url = format!("{}/v1/cluster", s.base);
            let view = match s.get_json::<ClusterView>(&url).await {
                Ok(v) => v,
                Err(e) => {
                    last_err = e.to_string();
                    continue;
                }
            };
            let healthy = |m: &&MemberView| m.healthy && m.membership == "voter";
            let follower = view
                .members
                .iter()
                .filter(healthy)
                .find(|m| Some(m.id) != view.leader_id);
            let leader = view
                .members
                .iter()
                .filter(healthy)
                .find(|m| Some(m.id) == view.leader_id);
            return match follower.or(leader) {
                Some(m) => Self::new(&m.addr, token, ca),
                None => Ok(s),
            };
        }
        Err(SourceError::Unreachable(last_err))
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response, SourceError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| SourceError::Unreachable(format!("{url}: {e}")))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        let kind = body["type"].as_str().unwrap_or("unknown").to_string();
        let detail = body["detail"].as_str().unwrap_or("").to_string();
        if kind == "log_purged" {
            return Err(SourceError::LogPurged(detail));
        }
        Err(SourceError::Problem {
            url: url.to_string(),
            status,
            kind,
            detail,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, SourceError> {
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.send(url)
                .await?
                .json::<T>()
                .await
                .map_err(|e| SourceError::Bad {
                    url: url.to_string(),
                    detail: e.to_string(),
                })
        })
        .await
        .map_err(|_| SourceError::Unreachable(format!("{url}: timed out")))??;
        Ok(resp)
    }

    /// A hot snapshot of the node's state: its log id, digest and clock
    /// from the headers, and its bytes as they arrive, for the repository
    /// to store as they come (nothing is written locally). Every byte also
    /// goes through Keel's snapshot reader on its own thread; the stream
    /// ends only once that reader has accepted the whole snapshot as the one
    /// the headers named, and fails otherwise, so a damaged, truncated or
    /// mismatched snapshot is never stored. Read at this source's pace.
    pub async fn snapshot_stream(&self) -> Result<(SnapshotInfo, SnapshotStream), SourceError> {
        let url = format!("{}/v1/backup/snapshot", self.base);
        let resp = self.send(&url).await?;
        let h = resp.headers();
        let num = |name: &str| -> Result<u64, SourceError> {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| SourceError::Bad {
                    url: url.clone(),
                    detail: format!("missing or bad header {name}"),
                })
        };
        let info = SnapshotInfo {
            index: num(keel_header::BACKUP_INDEX)?,
            term: num(keel_header::BACKUP_TERM)?,
            clock_ms: num(keel_header::BACKUP_CLOCK_MS)?,
            digest: h
                .get(keel_header::STATE_DIGEST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            node: self.base.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE_CHUNKS);
        tokio::spawn(relay_snapshot(resp, url, info.index, self.pace(), tx));
        Ok((
            info,
            SnapshotStream {
                rx,
                current: Bytes::new(),
            },
        ))
    }

    /// The node's applied index once it has caught up to the cluster's
    /// commit: entries up to it are committed, and every write acknowledged
    /// before this call is among them.
    pub async fn applied_index(&self) -> Result<u64, SourceError> {
        let url = format!(
            "{}/v1/backup/log?after={}&barrier=true",
            self.base,
            u64::MAX - 1
        );
        let resp = self.send(&url).await?;
        resp.headers()
            .get(keel_header::BACKUP_APPLIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SourceError::Bad {
                url,
                detail: "no applied index: the node has applied nothing".into(),
            })
    }

    /// Writes the committed log records after `after` up to `upto` to
    /// `out` as frames, verifying each, and returns the span read. Fails
    /// with [`SourceError::LogPurged`] if the node no longer has them.
    pub async fn log_to(
        &self,
        after: u64,
        upto: u64,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<LogSpan, SourceError> {
        let mut span = LogSpan::empty(after);
        let mut next = after;
        for _ in 0..LOG_PAGES_MAX {
            if next >= upto {
                return Ok(span);
            }
            let url = format!("{}/v1/backup/log?after={next}&upto={upto}", self.base);
            let body = tokio::time::timeout(REQUEST_TIMEOUT, async {
                self.send(&url)
                    .await?
                    .bytes()
                    .await
                    .map_err(|e| SourceError::Unreachable(format!("{url}: {e}")))
            })
            .await
            .map_err(|_| SourceError::Unreachable(format!("{url}: timed out")))??;
            if body.is_empty() {
                // The node has not applied that far (another node's view).
                return Err(SourceError::Bad {
                    url,
                    detail: format!(
                        "the node has nothing after index {next}, expected up to {upto}"
                    ),
                });
            }
            let mut frames = Vec::with_capacity(body.len());
            let mut r = &body[..];
            while let Some((index, record)) =
                keel_store::read_log_frame(&mut r).map_err(|e| SourceError::Bad {
                    url: url.clone(),
                    detail: e.to_string(),
                })?
            {
                span.add(index, &record).map_err(|e| SourceError::Bad {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
                keel_store::push_log_frame(&mut frames, index, &record);
                next = index;
            }
            out.write_all(&frames).await.map_err(|e| SourceError::Io {
                path: "log copy".into(),
                source: e,
            })?;
        }
        Err(SourceError::Bad {
            url: self.base.clone(),
            detail: format!("more than {LOG_PAGES_MAX} log pages"),
        })
    }
}

/// The bytes of a hot snapshot as [`NodeSource::snapshot_stream`] relays
/// them: ends when the snapshot was whole and verified, fails otherwise.
pub struct SnapshotStream {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl AsyncRead for SnapshotStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(buf.remaining());
                let piece = self.current.split_to(n);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => self.current = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // The relay ends the stream only after the verifier's yes.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Moves a snapshot from the node's response to the repository, through a
/// verifier, at `pace`; the last word on `tx` is an error unless the
/// verifier accepted the snapshot as the one at `index`.
async fn relay_snapshot(
    mut resp: reqwest::Response,
    url: String,
    index: u64,
    mut pace: crate::Pace,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    let (vtx, vrx) = tokio::sync::mpsc::channel::<Bytes>(STREAM_QUEUE_CHUNKS);
    let source = url.clone();
    let verifier = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(
            keel_store::snapshot::IO_BUFFER_BYTES,
            QueueReader::new(vrx),
        );
        keel_store::snapshot::read_from(Path::new(&source), reader, |_, _, _| Ok(()))
    });
    let received: Result<(), String> = async {
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            // Reading no faster than the pace slows the node's send too.
            pace.take(chunk.len() as u64).await;
            // A verifier that stopped has found the fault; its verdict
            // below says which.
            if vtx.send(chunk.clone()).await.is_err() {
                return Ok(());
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Err("the repository stopped reading".to_string());
            }
        }
        Ok(())
    }
    .await;
    drop(vtx);
    let verdict = verifier.await;
    let fault = match (received, verdict) {
        (Err(e), _) => Some(e),
        (Ok(()), Err(e)) => Some(format!("verifying {url}: {e}")),
        (Ok(()), Ok(Err(e))) => Some(format!("{url}: {e}")),
        (Ok(()), Ok(Ok(header))) if header.last_log_id.map(|l| l.index) == Some(index) => None,
        (Ok(()), Ok(Ok(header))) => Some(format!(
            "{url}: snapshot holds {:?}, the header said index {index}",
            header.last_log_id
        )),
    };
    if let Some(f) = fault {
        let _ = tx.send(Err(std::io::Error::other(f))).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;
    use keel_store::snapshot::{SnapshotHeader, SnapshotWriter};
    use tokio::io::AsyncReadExt;

    /// A snapshot at log index 7 with a few rows, as a node would send it.
    fn snapshot_bytes() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let last = openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), 7);
        let h = SnapshotHeader::new("s".into(), Some(last), Default::default());
        let mut w = SnapshotWriter::create(std::fs::File::create(&path).unwrap(), &h).unwrap();
        let table = keel_domain::Table::ALL[0];
        for i in 0u32..1_000 {
            w.row(table, &i.to_be_bytes(), &[7; 100]).unwrap();
        }
        w.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    /// What the repository would read from a relayed body.
    async fn relayed(body: Vec<u8>, index: u64) -> std::io::Result<Vec<u8>> {
        let resp = reqwest::Response::from(http::Response::new(body));
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE_CHUNKS);
        tokio::spawn(relay_snapshot(
            resp,
            "test".into(),
            index,
            crate::Pace::new(None),
            tx,
        ));
        let mut s = SnapshotStream {
            rx,
            current: Bytes::new(),
        };
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn a_whole_snapshot_passes_and_a_damaged_one_never_ends_cleanly() {
        let good = snapshot_bytes();
        assert_eq!(relayed(good.clone(), 7).await.unwrap(), good);

        let truncated = good[..good.len() - 40].to_vec();
        assert!(relayed(truncated, 7).await.is_err(), "truncated");

        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(relayed(flipped, 7).await.is_err(), "a flipped bit");

        let e = relayed(good, 8).await.unwrap_err();
        assert!(e.to_string().contains("index 8"), "{e}");
    }
}
