//! `/v1/batch`: up to [`BATCH_COMMANDS_MAX`] commands applied in order as
//! one unit (one Raft entry), a result each.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use keel_domain::command::BATCH_COMMANDS_MAX;
use keel_domain::{Command, DomainError, Envelope, Principal, RequestId};

use crate::http::auth::{admin, Api};
use crate::http::errors::{submit_problem, Problem};
use crate::http::extract::{request_id, Body, BODY_BYTES_MAX};
use crate::http::submit::applied_response;
use crate::proposer::Group;

type Shared = State<Arc<Api>>;

/// `POST /v1/batch`: up to [`BATCH_COMMANDS_MAX`] commands as one unit.
pub async fn batch(State(api): Shared, h: HeaderMap, Body(cmds): Body<Vec<Command>>) -> Response {
    if let Err(p) = admin(&api, &h) {
        return p.into_response();
    }
    if cmds.is_empty() || cmds.len() > BATCH_COMMANDS_MAX {
        return Problem::validation(
            "body",
            format!("must hold 1 to {BATCH_COMMANDS_MAX} commands"),
        )
        .into_response();
    }
    let base = match request_id(&api, &h) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    // Each command gets its own key derived from the request's, so a retried
    // batch replays command by command. A refused command answers at once;
    // the others go to the log as one group (one forward from a follower,
    // one entry, in order), so each sees the effects of those before it.
    let mut results: Vec<Option<Value>> = Vec::with_capacity(cmds.len());
    let mut envs = Vec::with_capacity(cmds.len());
    for (i, command) in cmds.into_iter().enumerate() {
        match batch_envelope(&base, i, command) {
            Ok(env) => {
                envs.push(env);
                results.push(None);
            }
            Err(p) => results.push(Some(result_json(p.into_response()).await)),
        }
    }
    let mut submitted = submit_batch(&api, envs).await.into_iter();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let v = match r.or_else(|| submitted.next()) {
            Some(v) => v,
            None => result_json(Problem::indeterminate("missing result").into_response()).await,
        };
        out.push(v);
    }
    Json(json!({ "results": out })).into_response()
}

/// The `i`th command of the batch keyed `base`, if valid.
fn batch_envelope(base: &RequestId, i: usize, command: Command) -> Result<Envelope, Problem> {
    let request_id = RequestId::new(format!("{}#{i}", base.as_str()))
        .map_err(|e| Problem::validation("Idempotency-Key", e.reason))?;
    command
        .validate()
        .map_err(|f| Problem::from(&DomainError::Validation(f)))?;
    Ok(Envelope {
        request_id,
        principal: Principal::Admin,
        command,
    })
}

/// Applies a batch's valid commands as one group; one result per command,
/// in order (the same problem for each when the group as a whole failed).
async fn submit_batch(api: &Api, envs: Vec<Envelope>) -> Vec<Value> {
    let n = envs.len();
    if n == 0 {
        return Vec::new();
    }
    let submitted = match Group::new(envs) {
        Ok(g) => api.node.submit_group(g).await.map_err(submit_problem),
        // Not reached: the handler admits 1 to BATCH_COMMANDS_MAX commands,
        // the group's own bounds.
        Err(e) => Err(Problem::internal(e.to_string())),
    };
    match submitted {
        Ok(applied) => {
            let mut out = Vec::with_capacity(n);
            for a in &applied {
                out.push(result_json(applied_response(a, false)).await);
            }
            out
        }
        Err(p) => vec![result_json(p.into_response()).await; n],
    }
}

/// One command's response as a batch result: `{"status":..,"body":..}`.
async fn result_json(r: Response) -> Value {
    let status = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), BODY_BYTES_MAX * 4)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    json!({"status": status, "body": body})
}
