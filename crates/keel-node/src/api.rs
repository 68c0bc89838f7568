//! The public HTTP API (docs/API.md): routes, authentication, idempotency keys,
//! request validation and the mapping of results to HTTP.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use keel_domain::command::BATCH_COMMANDS_MAX;
use keel_domain::query::{self, QueryError};
use keel_domain::{
    AccountId, AccountKind, Applied, Command, Currency, DomainError, Envelope, LineRequest, Minor,
    OrderId, Outcome, Principal, Product, ProductName, RequestId, Sku,
};
use keel_protocol::{header, hex};
use keel_store::StateReader;

use crate::auth::{admin, authed, Api};
use crate::limits::BODY_BYTES_MAX;
use crate::metrics::{Route, RouteStatus};
use crate::node::{Consistency, MembershipError, SubmitError};
use crate::problem::{read_problem, Problem};
use crate::proposer::Group;

/// Largest applied-index lag at which `/readyz` still says ready.
pub const READY_LAG_MAX: u64 = 1_000;

type Shared = State<Arc<Api>>;

fn owner_or_admin(p: &Principal, owner: &AccountId) -> Result<(), Problem> {
    match p {
        Principal::Admin => Ok(()),
        Principal::Customer(c) if c == owner => Ok(()),
        _ => Err(Problem::forbidden(format!(
            "only {owner} or an admin may read this"
        ))),
    }
}

// ----- extractors ----------------------------------------------------------

/// A JSON body whose every rejection is a problem+json (413 above
/// [`BODY_BYTES_MAX`], 400 `validation` otherwise).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_problem(e)),
        }
    }
}

fn json_problem(e: JsonRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("request bodies are limited to {BODY_BYTES_MAX} bytes"),
        )
        .with("limit_bytes", json!(BODY_BYTES_MAX));
    }
    Problem::validation("body", e.body_text())
}

fn request_id(api: &Api, headers: &HeaderMap) -> Result<RequestId, Problem> {
    match headers.get(header::IDEMPOTENCY_KEY) {
        None => Ok(api.generated_key()),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| Problem::validation("Idempotency-Key", "must be printable ASCII"))?;
            RequestId::new(s).map_err(|e| Problem::validation("Idempotency-Key", e.reason))
        }
    }
}

#[derive(Deserialize)]
struct ReadParams {
    consistency: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn consistency(p: &ReadParams) -> Result<Consistency, Problem> {
    match p.consistency.as_deref() {
        None | Some("linearizable") => Ok(Consistency::Linearizable),
        Some("local") => Ok(Consistency::Local),
        Some(other) => Err(Problem::validation(
            "consistency",
            format!("must be linearizable or local, got {other:?}"),
        )),
    }
}

// ----- mapping results -----------------------------------------------------

fn submit_problem(e: SubmitError) -> Problem {
    match e {
        SubmitError::Unavailable(m) => Problem::unavailable(m),
        SubmitError::Overloaded => Problem::unavailable("the leader's proposal queue is full"),
        SubmitError::Indeterminate(m) => Problem::indeterminate(m),
    }
}

fn table_problem(e: keel_domain::TableError) -> Problem {
    Problem::internal(e.to_string())
}

fn query_problem(e: QueryError) -> Problem {
    match e {
        QueryError::Invalid(f) => Problem::validation(&f.field, f.reason),
        QueryError::Table(t) => table_problem(t),
    }
}

/// A product as the API shows it: the record plus `available`.
#[derive(Serialize)]
struct ProductView<'a> {
    #[serde(flatten)]
    product: &'a Product,
    available: u64,
}

fn product_json(p: &Product) -> Value {
    json!(ProductView {
        product: p,
        available: p.stock.available()
    })
}

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Product(p) => product_json(p),
        Outcome::Account(a) => json!(a),
        Outcome::Order(o) => json!(o),
        Outcome::Expired { orders, more_due } => json!({"expired": orders, "more_due": more_due}),
    }
}

fn applied_response(a: &Applied, created: bool) -> Response {
    let mut resp = match &a.result {
        Ok(o) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(outcome_json(o))).into_response()
        }
        Err(e) => Problem::from(e).into_response(),
    };
    if a.replayed {
        resp.headers_mut().insert(
            header::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    resp
}

async fn write(
    api: &Api,
    headers: &HeaderMap,
    principal: Principal,
    command: Command,
    created: bool,
) -> Response {
    let request_id = match request_id(api, headers) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    // Stateless checks first: a malformed command never enters the log.
    if let Err(f) = command.validate() {
        return Problem::from(&DomainError::Validation(f)).into_response();
    }
    let env = Envelope {
        request_id,
        principal,
        command,
    };
    match api.node.submit(env).await {
        Ok(a) => applied_response(&a, created),
        Err(e) => submit_problem(e).into_response(),
    }
}

/// An admin-only write: checks the token first, then builds the command
/// from the request (path parsing may refuse it), then submits it.
async fn admin_write(
    api: &Api,
    h: &HeaderMap,
    created: bool,
    build: impl FnOnce() -> Result<Command, Problem>,
) -> Response {
    match admin(api, h).and_then(|_| build()) {
        Ok(cmd) => write(api, h, Principal::Admin, cmd, created).await,
        Err(p) => p.into_response(),
    }
}

fn local_header(mut resp: Response, reader: &StateReader) -> Response {
    if let Ok(Some(id)) = reader.applied() {
        if let Ok(v) = HeaderValue::from_str(&id.index.to_string()) {
            resp.headers_mut().insert(header::APPLIED_INDEX, v);
        }
    }
    resp
}

async fn reader(api: &Api, params: &ReadParams) -> Result<StateReader, Problem> {
    let c = consistency(params)?;
    api.node.read(c).await.map_err(read_problem)
}

// ----- handlers: catalogue -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    sku: Sku,
    name: ProductName,
    price: Minor,
    currency: Currency,
    #[serde(default = "yes")]
    active: bool,
}
fn yes() -> bool {
    true
}

async fn upsert_product(State(api): Shared, h: HeaderMap, Body(b): Body<ProductBody>) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::UpsertProduct {
            sku: b.sku,
            name: b.name,
            price: b.price,
            currency: b.currency,
            active: b.active,
        })
    })
    .await
}

async fn list_products(
    State(api): Shared,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let r = reader(&api, &q).await?;
    let page = query::products(&r, q.cursor.as_deref(), q.limit).map_err(query_problem)?;
    let items: Vec<Value> = page.items.iter().map(product_json).collect();
    let resp = Json(json!({"items": items, "next_cursor": page.next_cursor})).into_response();
    Ok(local_header(resp, &r))
}

fn parse_sku(s: &str) -> Result<Sku, Problem> {
    Sku::new(s).map_err(|e| Problem::validation("sku", e.reason))
}
fn parse_account(s: &str) -> Result<AccountId, Problem> {
    AccountId::new(s).map_err(|e| Problem::validation("account", e.reason))
}
fn parse_order(s: &str) -> Result<OrderId, Problem> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(OrderId)
        .ok_or_else(|| {
            Problem::validation("order", format!("must be a positive integer, got {s:?}"))
        })
}

async fn get_product(
    State(api): Shared,
    Path(sku): Path<String>,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let sku = parse_sku(&sku)?;
    let r = reader(&api, &q).await?;
    let p = query::product(&r, &sku)
        .map_err(table_problem)?
        .ok_or_else(|| Problem::not_found(format!("product {sku} not found")))?;
    Ok(local_header(Json(product_json(&p)).into_response(), &r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QtyBody {
    qty: u64,
}

async fn restock(
    State(api): Shared,
    Path(sku): Path<String>,
    h: HeaderMap,
    Body(b): Body<QtyBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::Restock {
            sku: parse_sku(&sku)?,
            qty: b.qty,
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBody {
    on_hand: u64,
}

async fn set_stock(
    State(api): Shared,
    Path(sku): Path<String>,
    h: HeaderMap,
    Body(b): Body<StockBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::SetStock {
            sku: parse_sku(&sku)?,
            on_hand: b.on_hand,
        })
    })
    .await
}

// ----- handlers: accounts --------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    id: AccountId,
    kind: AccountKind,
    currency: Currency,
}

async fn open_account(State(api): Shared, h: HeaderMap, Body(b): Body<AccountBody>) -> Response {
    admin_write(&api, &h, true, || {
        Ok(Command::OpenAccount {
            id: b.id,
            kind: b.kind,
            currency: b.currency,
        })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    amount: Minor,
}

async fn deposit(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Body(b): Body<AmountBody>,
) -> Response {
    admin_write(&api, &h, false, || {
        Ok(Command::Deposit {
            account: parse_account(&id)?,
            amount: b.amount,
        })
    })
    .await
}

async fn get_account(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = parse_account(&id)?;
    owner_or_admin(&authed(&api, &h)?, &id)?;
    let r = reader(&api, &q).await?;
    let a = query::account(&r, &id)
        .map_err(table_problem)?
        .ok_or_else(|| Problem::not_found(format!("account {id} not found")))?;
    Ok(local_header(Json(json!(a)).into_response(), &r))
}

async fn account_token(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let id = parse_account(&id)?;
    Ok(Json(json!({"account": id, "token": api.customer_token(&id)})).into_response())
}

async fn customer_orders(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = parse_account(&id)?;
    owner_or_admin(&authed(&api, &h)?, &id)?;
    let r = reader(&api, &q).await?;
    let page =
        query::customer_orders(&r, &id, q.cursor.as_deref(), q.limit).map_err(query_problem)?;
    Ok(local_header(Json(json!(page)).into_response(), &r))
}

// ----- handlers: orders ----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceBody {
    customer: AccountId,
    lines: Vec<LineRequest>,
    ttl_seconds: Option<u32>,
}

async fn place_order(State(api): Shared, h: HeaderMap, Body(b): Body<PlaceBody>) -> Response {
    let p = match authed(&api, &h) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let cmd = Command::PlaceOrder {
        customer: b.customer,
        lines: b.lines,
        ttl_seconds: b.ttl_seconds,
    };
    write(&api, &h, p, cmd, true).await
}

async fn get_order(
    State(api): Shared,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    let id = parse_order(&id)?;
    let p = authed(&api, &h)?;
    let r = reader(&api, &q).await?;
    let o = query::order(&r, id)
        .map_err(table_problem)?
        .ok_or_else(|| Problem::not_found(format!("order {id} not found")))?;
    owner_or_admin(&p, &o.customer)?;
    Ok(local_header(Json(json!(o)).into_response(), &r))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    #[serde(default)]
    restock: bool,
}

async fn transition(
    State(api): Shared,
    Path((id, action)): Path<(String, String)>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let cmd = (|| {
        let p = authed(&api, &h)?;
        let order = parse_order(&id)?;
        let cmd = match action.as_str() {
            "pay" => Command::PayOrder { order },
            "cancel" => Command::CancelOrder { order },
            "ship" => Command::ShipOrder { order },
            "deliver" => Command::DeliverOrder { order },
            "refund" => {
                let b: RefundBody = if body.is_empty() {
                    RefundBody::default()
                } else {
                    serde_json::from_slice(&body)
                        .map_err(|e| Problem::validation("body", e.to_string()))?
                };
                Command::RefundOrder {
                    order,
                    restock: b.restock,
                }
            }
            other => return Err(Problem::not_found(format!("no order action {other:?}"))),
        };
        Ok((p, cmd))
    })();
    match cmd {
        Ok((p, cmd)) => write(&api, &h, p, cmd, false).await,
        Err(p) => p.into_response(),
    }
}

async fn batch(State(api): Shared, h: HeaderMap, Body(cmds): Body<Vec<Command>>) -> Response {
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

// ----- handlers: operations ------------------------------------------------

async fn summary(
    State(api): Shared,
    h: HeaderMap,
    Query(q): Query<ReadParams>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let r = reader(&api, &q).await?;
    let s = query::summary(&r).map_err(table_problem)?;
    Ok(local_header(Json(json!(s)).into_response(), &r))
}

/// `GET /v1/clock`: this node's wall clock and what it knows of its peers',
/// so an operator (or the chaos suite's clock nemesis) can see a skew and
/// why a node does not lead.
async fn clock(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    let node = &api.node;
    let now = std::time::Instant::now();
    let peers: serde_json::Map<String, Value> = node
        .clock
        .samples()
        .into_iter()
        .map(|(id, s)| {
            (
                id.to_string(),
                json!({
                    "offset_ms": s.offset_ms,
                    "rtt_ms": s.rtt.as_secs_f64() * 1e3,
                    "age_ms": now.saturating_duration_since(s.at).as_millis() as u64,
                }),
            )
        })
        .collect();
    Ok(Json(json!({
        "node_id": node.id,
        "wall_ms": keel_protocol::wall_ms(),
        "clock_offset_max_ms": node.config.clock_offset_max_ms,
        "may_lead": node.clock.may_lead(),
        "stepping_down": node.clock.stepping_down(),
        "peers": peers,
    }))
    .into_response())
}

async fn digest(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    // Reading commits applied entries first and then hashes every table:
    // a blocking thread.
    let sm = api.node.sm.clone();
    let (applied, d) = tokio::task::spawn_blocking(move || {
        let r = sm.reader()?;
        Ok::<_, keel_store::StoreError>((r.applied()?, r.digest()?))
    })
    .await
    .map_err(|e| Problem::internal(format!("the digest did not run: {e}")))?
    .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(json!({
        "node_id": api.node.id,
        "applied_index": applied.map(|l| l.index),
        "digest": hex::encode(&d),
    }))
    .into_response())
}

async fn cluster(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

fn membership_problem(e: MembershipError) -> Problem {
    match e {
        MembershipError::Refused(m) => Problem::new(
            StatusCode::CONFLICT,
            "membership_refused",
            "Membership change refused",
            m,
        ),
        MembershipError::NotLeader(l) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            "Not the leader",
            "membership changes are made on the leader",
        )
        .with("leader_id", json!(l.as_ref().map(|l| l.0)))
        .with("leader_addr", json!(l.map(|l| l.1))),
        MembershipError::Failed(m) => Problem::unavailable(m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnerBody {
    id: u64,
    addr: String,
}

async fn add_learner(
    State(api): Shared,
    h: HeaderMap,
    Body(b): Body<LearnerBody>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    if b.addr.is_empty() || b.addr.len() > 255 || b.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(Problem::validation(
            "addr",
            "must be host:port of the new node, e.g. 127.0.0.1:7104",
        ));
    }
    api.node
        .add_learner(b.id, b.addr)
        .await
        .map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    id: u64,
}

async fn promote(
    State(api): Shared,
    h: HeaderMap,
    Body(b): Body<MemberBody>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    api.node.promote(b.id).await.map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

async fn remove_member(
    State(api): Shared,
    h: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Response, Problem> {
    admin(&api, &h)?;
    api.node.remove(id).await.map_err(membership_problem)?;
    Ok(Json(json!(api.node.cluster_status().await)).into_response())
}

/// Snapshots this node's state and purges its log up to the snapshot.
async fn compact(State(api): Shared, h: HeaderMap) -> Result<Response, Problem> {
    admin(&api, &h)?;
    match api.node.compact().await {
        Ok(c) => Ok(Json(json!(c)).into_response()),
        Err(e @ crate::node::CompactError::NothingApplied) => Err(Problem::new(
            StatusCode::CONFLICT,
            "nothing_to_compact",
            "Nothing to compact",
            e.to_string(),
        )),
        Err(e @ crate::node::CompactError::Unavailable(_)) => {
            Err(Problem::unavailable(e.to_string()))
        }
    }
}

async fn healthz(State(api): Shared) -> Response {
    Json(json!({"status": "alive", "node_id": api.node.id})).into_response()
}

async fn readyz(State(api): Shared) -> Response {
    let s = api.node.self_status();
    let lag = s
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(s.applied_index.unwrap_or(0));
    if s.leader_id.is_some() && lag <= READY_LAG_MAX {
        Json(json!({"status": "ready", "node_id": s.id, "leader_id": s.leader_id, "lag": lag}))
            .into_response()
    } else {
        Problem::unavailable(format!(
            "not ready: leader {:?}, apply lag {lag}",
            s.leader_id
        ))
        .into_response()
    }
}

async fn metrics(State(api): Shared) -> Response {
    crate::node::refresh_raft_gauges(&api.node);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        api.node.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    Json(crate::openapi::spec()).into_response()
}

async fn fallback() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

async fn track(State(api): Shared, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let start = Instant::now();
    let mut resp = next.run(req).await;
    if let Some((id, addr)) = api.node.leader() {
        if let Ok(v) = HeaderValue::from_str(&header::leader_hint(id, &addr)) {
            resp.headers_mut().insert(header::LEADER, v);
        }
        resp.headers_mut()
            .insert(header::TERM, HeaderValue::from(api.node.term()));
    }
    let m = &api.node.metrics;
    m.request_seconds
        .get_or_create(&Route {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteStatus {
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// The public router.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/products", post(upsert_product).get(list_products))
        .route("/v1/products/{sku}", get(get_product))
        .route("/v1/products/{sku}/restock", post(restock))
        .route("/v1/products/{sku}/stock", put(set_stock))
        .route("/v1/accounts", post(open_account))
        .route("/v1/accounts/{id}", get(get_account))
        .route("/v1/accounts/{id}/deposits", post(deposit))
        .route("/v1/accounts/{id}/token", post(account_token))
        .route("/v1/accounts/{id}/orders", get(customer_orders))
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/{action}", post(transition))
        .route("/v1/batch", post(batch))
        .route("/v1/summary", get(summary))
        .route("/v1/digest", get(digest))
        .route("/v1/clock", get(clock))
        .route("/v1/backup/snapshot", get(crate::backup::snapshot))
        .route("/v1/backup/log", get(crate::backup::log))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/learners", post(add_learner))
        .route("/v1/cluster/members", post(promote))
        .route("/v1/cluster/members/{id}", delete(remove_member))
        .route("/v1/cluster/compact", post(compact))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(api.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(api)
}
