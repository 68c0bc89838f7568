//! `/v1/batch`: up to [`BATCH_COMMANDS_MAX`] commands applied in order as
//! one unit (one Raft entry), a result each.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use keel_domain::command::BATCH_COMMANDS_MAX;
use keel_domain::{Command, DomainError, Envelope, Principal, RequestId};

use crate::http::auth::{Api, Caller};
use crate::http::errors::{submit_problem, Problem};
use crate::http::extract::{request_id, Body, IdempotencyKey, BODY_BYTES_MAX};
use crate::http::openapi::WriteProblems;
use crate::http::submit::applied_response;
use crate::proposer::Group;

type Shared = State<Arc<Api>>;

/// The body of `POST /v1/batch` (documentation only: the handler reads a
/// `Vec<Command>` and checks the count itself).
pub struct BatchBody;

/// The command schema with each variant's wrapper object closed: a command
/// is an object of exactly one key (serde refuses a second), which
/// `oneOf` alone does not say when the extra key names no variant.
fn closed_command() -> RefOr<Schema> {
    let schema = Command::schema();
    let RefOr::T(Schema::OneOf(mut one_of)) = schema else {
        return schema;
    };
    // Only the commands a batch accepts.
    one_of.items.retain(|item| match item {
        RefOr::T(Schema::Object(o)) => !o
            .properties
            .keys()
            .any(|k| Command::NOT_IN_BATCH.contains(&k.as_str())),
        _ => true,
    });
    for item in &mut one_of.items {
        if let RefOr::T(Schema::Object(o)) = item {
            o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
    RefOr::T(Schema::OneOf(one_of))
}

impl PartialSchema for BatchBody {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(closed_command())
            .min_items(Some(1))
            .max_items(Some(BATCH_COMMANDS_MAX))
            .description(Some(
                "1 to 1000 commands, each externally tagged: {\"restock\": {\"sku\": \"A\", \"qty\": 3}}",
            ))
            .into()
    }
}

impl ToSchema for BatchBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            <Command as ToSchema>::name().into_owned(),
            Command::schema(),
        ));
        <Command as ToSchema>::schemas(schemas);
    }
}

/// One command's answer in a batch: the status and body it would have had
/// as a request of its own.
#[derive(Clone, Serialize, ToSchema)]
pub struct BatchResult {
    /// Its HTTP status.
    #[schema(minimum = 200, maximum = 599)]
    pub status: u16,
    /// Its body: the outcome, or a problem.
    pub body: Value,
}

/// The answer of `POST /v1/batch`: one result per command, in order.
#[derive(Serialize, ToSchema)]
pub struct BatchResults {
    /// The results.
    pub results: Vec<BatchResult>,
}

/// Up to 1,000 commands applied in order as one unit (one Raft entry), a
/// result each.
#[utoipa::path(
    post, path = "/v1/batch", tag = "batch",
    description = "Command `i` is keyed `{Idempotency-Key}#{i}`; a refused \
                   command answers in its place and the rest still apply.",
    params(IdempotencyKey),
    request_body = BatchBody,
    responses((status = 200, description = "One result per command", body = BatchResults), WriteProblems),
    security(("bearer" = [])),
)]
pub async fn batch(
    State(api): Shared,
    h: HeaderMap,
    caller: Caller,
    Body(cmds): Body<Vec<Command>>,
) -> Response {
    let principal = match caller.principal() {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
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
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(cmds.len());
    let mut envs = Vec::with_capacity(cmds.len());
    for (i, command) in cmds.into_iter().enumerate() {
        match batch_envelope(&base, i, command, &principal, &caller) {
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
    Json(BatchResults { results: out }).into_response()
}

/// The `i`th command of the batch keyed `base`, if valid.
fn batch_envelope(
    base: &RequestId,
    i: usize,
    command: Command,
    principal: &Principal,
    caller: &Caller,
) -> Result<Envelope, Problem> {
    let request_id = RequestId::new(format!("{}#{i}", base.as_str()))
        .map_err(|e| Problem::validation("Idempotency-Key", e.reason))?;
    if !command.in_batch() {
        return Err(Problem::validation(
            "command",
            format!(
                "{} is not accepted in a batch; use its own route",
                command.name()
            ),
        ));
    }
    command
        .validate()
        .map_err(|f| Problem::from(&DomainError::Validation(f)))?;
    Ok(Envelope {
        request_id,
        principal: principal.clone(),
        origin: caller.origin_text(),
        command,
    })
}

/// Applies a batch's valid commands as one group; one result per command,
/// in order (the same problem for each when the group as a whole failed).
async fn submit_batch(api: &Api, envs: Vec<Envelope>) -> Vec<BatchResult> {
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

/// One command's response as a batch result.
async fn result_json(r: Response) -> BatchResult {
    let status = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), BODY_BYTES_MAX * 4)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    BatchResult { status, body }
}
