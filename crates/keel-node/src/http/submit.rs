//! How a write goes through the cluster and answers: the idempotency key
//! becomes the request id, the stateless checks run first (a malformed
//! command never enters the log), and the applied result maps to HTTP.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use keel_domain::{Applied, Command, DomainError, Envelope, Outcome, Product};
use keel_protocol::header;

use crate::http::auth::{Api, Caller};
use crate::http::errors::{submit_problem, Problem};
use crate::http::extract::request_id;

/// A product as the API shows it: the record plus `available`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductView {
    /// The product with its stock.
    #[serde(flatten)]
    pub product: Product,
    /// Units that can still be reserved: `on_hand - reserved`.
    pub available: u64,
}

impl ProductView {
    /// The view of `product`.
    pub fn of(product: &Product) -> Self {
        Self {
            product: product.clone(),
            available: product.stock.available(),
        }
    }
}

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Product(p) => json!(ProductView::of(p)),
        Outcome::Account(a) => json!(a),
        Outcome::Order(o) => json!(o),
        Outcome::Expired { orders, more_due } => json!({"expired": orders, "more_due": more_due}),
        Outcome::KeyCreated(k) | Outcome::KeyRevoked(k) => json!(k),
        Outcome::CustomerToken {
            account,
            generation,
            expires_at_ms,
        } => json!({"account": account, "generation": generation, "expires_at_ms": expires_at_ms}),
        Outcome::CustomerTokensRevoked {
            account,
            generation,
        } => json!({"account": account, "generation": generation}),
        Outcome::Recorded => json!({}),
    }
}

/// The problem of a command the state machine refused. Every command
/// passed its stateless checks before it was proposed, so a `validation`
/// refusal from the state machine is about the state (a product not
/// active, another currency, an account of the wrong kind): the request
/// was well-formed and conflicts with what is stored, 409, not 400.
fn refusal(e: &DomainError) -> Problem {
    let mut p = Problem::from(e);
    if matches!(e, DomainError::Validation(_)) {
        p.0.status = StatusCode::CONFLICT;
    }
    p
}

/// The response of one applied command: its outcome (201 when `created`)
/// or its refusal, marked when it was a replay.
pub(crate) fn applied_response(a: &Applied, created: bool) -> Response {
    let mut resp = match &a.result {
        Ok(o) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(outcome_json(o))).into_response()
        }
        Err(e) => refusal(e).into_response(),
    };
    if a.replayed {
        resp.headers_mut().insert(
            header::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// Submits `command` for `caller` under the request's key and returns
/// what the state machine made of it.
pub(crate) async fn submit(
    api: &Api,
    headers: &HeaderMap,
    caller: &Caller,
    command: Command,
) -> Result<Applied, Problem> {
    let request_id = request_id(api, headers)?;
    // Stateless checks first: a malformed command never enters the log.
    command
        .validate()
        .map_err(|f| Problem::from(&DomainError::Validation(f)))?;
    let env = Envelope {
        request_id,
        principal: caller.principal()?,
        origin: caller.origin_text(),
        command,
    };
    api.node.submit(env).await.map_err(submit_problem)
}

/// Submits `command` for `caller` and answers with its outcome (201 when
/// `created`) or its refusal.
pub(crate) async fn write(
    api: &Api,
    headers: &HeaderMap,
    caller: &Caller,
    command: Command,
    created: bool,
) -> Response {
    match submit(api, headers, caller, command).await {
        Ok(a) => applied_response(&a, created),
        Err(p) => p.into_response(),
    }
}

/// A write whose command is built from the request (path parsing may
/// refuse it) once the route table has admitted the caller.
pub(crate) async fn build_write(
    api: &Api,
    h: &HeaderMap,
    caller: &Caller,
    created: bool,
    build: impl FnOnce() -> Result<Command, Problem>,
) -> Response {
    match build() {
        Ok(cmd) => write(api, h, caller, cmd, created).await,
        Err(p) => p.into_response(),
    }
}

/// Records an operation the state machine does not perform (a backup
/// read) in the replicated audit trail before it is performed: one whose
/// record cannot be written is not done.
pub(crate) async fn record(
    api: &Api,
    caller: &Caller,
    action: &str,
    detail: String,
) -> Result<(), Problem> {
    let env = Envelope {
        request_id: api.generated_key(),
        principal: caller.principal()?,
        origin: caller.origin_text(),
        command: Command::Record {
            action: action.to_owned(),
            detail,
        },
    };
    let applied = api.node.submit(env).await.map_err(submit_problem)?;
    match applied.result {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(&e)),
    }
}

/// Records an operation that has just succeeded (a membership change,
/// which may be what restores a quorum, or a compaction, which needs none,
/// must not wait on the log first). A record that cannot be written is
/// logged: the operation stands, and its membership change is in the Raft
/// log regardless.
pub(crate) async fn record_done(api: &Api, caller: &Caller, action: &str, detail: String) {
    if let Err(p) = record(api, caller, action, detail.clone()).await {
        tracing::warn!(action, detail, problem = %p.0.detail, "an operation was done but its audit record could not be written");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use keel_domain::{FieldError, OrderId, OrderStatus};

    use super::*;

    fn refused(e: DomainError) -> Response {
        applied_response(
            &Applied {
                result: Err(e),
                replayed: false,
            },
            false,
        )
    }

    #[test]
    fn a_validation_refusal_of_the_state_machine_is_a_conflict() {
        let r = refused(DomainError::Validation(FieldError::new(
            "account",
            "deposits credit customer or merchant accounts, not the external one",
        )));
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = refused(DomainError::InvalidTransition {
            order: OrderId(1),
            from: OrderStatus::Paid,
            action: "cancel".into(),
        });
        assert_eq!(r.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn other_refusals_keep_their_status() {
        let r = refused(DomainError::NotFound {
            entity: "order".into(),
            id: "7".into(),
        });
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = refused(DomainError::Overflow {
            what: "total".into(),
        });
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
