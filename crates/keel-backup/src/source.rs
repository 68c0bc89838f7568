//! Reading a running cluster for a backup, through the node's backup
//! endpoints (`/v1/backup/snapshot`, `/v1/backup/log`) and never around
//! them. A hot backup is taken from a follower when one is healthy, so the
//! leader's disk and CPU stay with the shoppers.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::frames::LogSpan;

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
    /// Bytes of the snapshot file.
    pub bytes: u64,
    /// The node it came from.
    pub node: String,
}

/// A connection to one node's backup endpoints.
#[derive(Clone)]
pub struct NodeSource {
    http: reqwest::Client,
    base: String,
    token: String,
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

fn base_url(addr: &str) -> String {
    let a = addr.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

impl NodeSource {
    /// A source reading from the node at `addr` (`host:port` or a URL) with
    /// the admin token.
    pub fn new(addr: &str, token: &str) -> Result<Self, SourceError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| SourceError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url(addr),
            token: token.to_string(),
        })
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Asks the given nodes for the cluster and returns a source on a
    /// healthy follower (a voter that is not the leader), else the leader,
    /// else the first node that answered.
    pub async fn pick(nodes: &[String], token: &str) -> Result<Self, SourceError> {
        let mut last_err = String::from("no node given");
        for n in nodes {
            let s = Self::new(n, token)?;
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
                Some(m) => Self::new(&m.addr, token),
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

    /// Streams a hot snapshot of the node's state into `path` (fsynced) and
    /// verifies it in full before returning.
    pub async fn snapshot_to(&self, path: &Path) -> Result<SnapshotInfo, SourceError> {
        let url = format!("{}/v1/backup/snapshot", self.base);
        let mut resp = self.send(&url).await?;
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
        let index = num("keel-backup-index")?;
        let term = num("keel-backup-term")?;
        let clock_ms = num("keel-backup-clock-ms")?;
        let digest = h
            .get("keel-state-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let io = |e: std::io::Error| SourceError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let mut f = tokio::fs::File::create(path).await.map_err(io)?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| SourceError::Unreachable(format!("{url}: {e}")))?
        {
            bytes += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io)?;
        }
        // fsync the local copy: it is what the backup is made of.
        f.sync_all().await.map_err(io)?;
        drop(f);
        let p = path.to_path_buf();
        let header = tokio::task::spawn_blocking(move || keel_store::snapshot::verify(&p))
            .await
            .map_err(|e| SourceError::Bad {
                url: url.clone(),
                detail: e.to_string(),
            })?
            .map_err(|e| SourceError::Bad {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        if header.last_log_id.map(|l| l.index) != Some(index) {
            return Err(SourceError::Bad {
                url,
                detail: format!(
                    "snapshot holds {:?}, the header said index {index}",
                    header.last_log_id
                ),
            });
        }
        Ok(SnapshotInfo {
            index,
            term,
            digest,
            clock_ms,
            bytes,
            node: self.base.clone(),
        })
    }

    /// The node's applied index now (entries up to it are committed).
    pub async fn applied_index(&self) -> Result<u64, SourceError> {
        let url = format!("{}/v1/backup/log?after={}", self.base, u64::MAX - 1);
        let resp = self.send(&url).await?;
        resp.headers()
            .get("keel-backup-applied")
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
                span.add(index, &record)
                    .map_err(|detail| SourceError::Bad {
                        url: url.clone(),
                        detail,
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
