//! What a node hands to `keel backup` (admin only): a hot snapshot of its
//! state and its committed log entries. Backups go through these two
//! endpoints, never around the node's storage.
//!
//! - `GET /v1/backup/snapshot` streams a snapshot (Keel's snapshot format,
//!   checksummed) of one consistent read view, written while writes go on.
//!   Headers name its log id, state digest and clock. The node first
//!   catches up to the cluster's commit, so the snapshot holds every write
//!   acknowledged before the request, wherever it was acknowledged.
//! - `GET /v1/backup/log?after=N[&upto=M][&barrier=true]` returns a page of
//!   raw log records with indexes above `N`, up to `M` and never past what
//!   this node has applied (applied means committed), as frames of
//!   [`keel_store::push_log_frame`]. With `barrier=true` the node first
//!   catches up in the same way, so the applied index it reports covers
//!   every acknowledged write. 410 `log_purged` when the node's log no
//!   longer holds index `N + 1`: take a full backup instead.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use keel_protocol::header::{
    BACKUP_APPLIED, BACKUP_CLOCK_MS, BACKUP_INDEX, BACKUP_LEADER_NODE, BACKUP_PURGED, BACKUP_TERM,
    STATE_DIGEST,
};
use keel_protocol::hex;

use crate::export::{ExportError, EXPORTS_MAX};
use crate::http::auth::{Api, Caller};
use crate::http::errors::{read_problem, Problem};
use crate::http::openapi::{BackupProblems, Binary};
use crate::http::submit::record;

/// Read buffer when streaming a snapshot file.
const STREAM_CHUNK_BYTES: usize = 256 << 10;

type Shared = State<Arc<Api>>;

fn header(h: &mut HeaderMap, name: &'static str, v: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn export_problem(e: ExportError) -> Problem {
    match e {
        ExportError::Busy => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_busy",
            "A backup export is already running",
            format!("this node runs at most {EXPORTS_MAX} snapshot export at a time; retry when it ends or use another replica"),
        ),
        ExportError::Store(e) => Problem::internal(e.to_string()),
        ExportError::Task(m) => Problem::internal(m),
    }
}

/// Hot backup: stream one consistent snapshot holding every write
/// acknowledged before the request (headers: log id, digest, clock).
#[utoipa::path(
    get, path = "/v1/backup/snapshot", tag = "backup",
    description = "503 `backup_busy` while another export runs here.",
    responses(
        (status = 200, description = "The snapshot", content_type = "application/octet-stream", body = Binary),
        BackupProblems,
    ),
    security(("bearer" = [])),
)]
pub async fn snapshot(State(api): Shared, caller: Caller) -> Result<Response, Problem> {
    let slot = api.node.backup_export_slot().map_err(export_problem)?;
    // A backup taken from a follower must not miss a write the leader has
    // just acknowledged: wait until this node has applied that far.
    api.node.catch_up().await.map_err(read_problem)?;
    let held = api
        .node
        .export_snapshot(slot)
        .await
        .map_err(export_problem)?;
    let export = &held.export;
    // A full export is recorded once it is taken and before it streams, so
    // the snapshot holds the state the request asked for, not its own
    // record (the log pulls of incremental backups, many per backup, are
    // not recorded: they would crowd the trail out). It waited for the
    // leader above, so the record can commit; one that cannot is not sent.
    let at = export.last_log_id.map_or(0, |l| l.index);
    record(
        &api,
        &caller,
        "backup_snapshot",
        format!("node={} index={at}", api.node.id()),
    )
    .await?;
    let file = tokio::fs::File::open(&export.path)
        .await
        .map_err(|e| Problem::internal(format!("{}: {e}", export.path.display())))?;

    let mut resp = Response::new(Body::empty());
    let hm = resp.headers_mut();
    if let Some(l) = export.last_log_id {
        header(hm, BACKUP_INDEX, l.index);
        header(hm, BACKUP_TERM, l.leader_id.term);
        header(hm, BACKUP_LEADER_NODE, l.leader_id.node_id);
    }
    header(hm, STATE_DIGEST, hex::encode(&export.digest));
    header(hm, BACKUP_CLOCK_MS, export.clock_ms);
    header(hm, "content-length", export.bytes);
    hm.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // The export (whose drop removes the file) and its slot live as long
    // as the stream: to its end, or until the client goes away.
    let state = (file, held);
    let stream = futures::stream::unfold(state, |(mut file, held)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (file, held)))
            }
            Err(e) => Some((Err(e), (file, held))),
        }
    });
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

/// The query of `/v1/backup/log`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Records with indexes above this one.
    #[param(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    after: u64,
    /// At most up to this index (never past this node's applied index).
    #[param(minimum = 0, maximum = 18_446_744_073_709_551_615_u64)]
    upto: Option<u64>,
    /// Catch up to the cluster's commit before reading (see the module).
    #[serde(default)]
    #[param(default = false)]
    barrier: bool,
}

/// Committed log records, one page: frames of `keel_store::push_log_frame`.
#[utoipa::path(
    get, path = "/v1/backup/log", tag = "backup",
    description = "410 `log_purged` when this node's log no longer holds \
                   index `after + 1`: take a full backup, or ask another replica.",
    params(LogQuery),
    responses(
        (status = 200, description = "Log frames", content_type = "application/octet-stream", body = Binary,
         headers(
            ("keel-backup-index" = u64, description = "The last index in the page (`after` when empty)"),
         )),
        BackupProblems,
    ),
    security(("bearer" = [])),
)]
pub async fn log(
    State(api): Shared,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid query",
            format!("{e}; expected after=<index>[&upto=<index>][&barrier=true]"),
        )
    })?;
    if q.barrier {
        api.node.catch_up().await.map_err(read_problem)?;
    }
    // Applied means committed: these entries are never truncated.
    let page = api
        .node
        .log_records(q.after, q.upto)
        .await
        .map_err(export_problem)?;
    let after = q.after;
    if page.purged_past(after) {
        let purged = page.purged;
        return Err(Problem::new(
            StatusCode::GONE,
            "log_purged",
            "Log entries already purged",
            format!(
                "this node's log no longer holds index {} (purged up to {}); take a full backup, or ask a replica that still has it",
                after.saturating_add(1),
                purged.map_or("-".to_string(), |p| p.to_string())
            ),
        )
        .with("purged_index", json!(purged)));
    }
    let last = page.records.last().map_or(after, |(i, _)| *i);
    let mut body = Vec::with_capacity(page.records.iter().map(|(_, r)| r.len() + 12).sum());
    for (index, record) in &page.records {
        keel_store::push_log_frame(&mut body, *index, record);
    }
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response();
    let hm = resp.headers_mut();
    header(hm, BACKUP_INDEX, last);
    if let Some(a) = page.applied {
        header(hm, BACKUP_APPLIED, a);
    }
    if let Some(p) = page.purged {
        header(hm, BACKUP_PURGED, p);
    }
    Ok(resp)
}
