//! Who is calling the public HTTP API, and the state its handlers share.
//!
//! A caller proves who it is with one of:
//! - the cluster's admin token (`Authorization: Bearer <token>`): the
//!   `admin` role, for bootstrap and break-glass use;
//! - an API key (`Bearer key_<id>.<secret>`): the role the replicated key
//!   holds; only the secret's hash is stored;
//! - a customer token (`Bearer cust_<account>.<generation>.<expires>.<mac>`):
//!   the `customer` role for that account, a MAC under the cluster secret
//!   that names the account's token generation and its expiry;
//! - a client certificate from the cluster's CA naming an API key
//!   (`<key id>.client.keel`, `keel certs client --name <key id>`): that
//!   key's identity, without its secret.
//!
//! The middleware [`authorize`] checks the caller against the route's roles
//! ([`crate::http::roles::ROUTE_ROLES`]) before any handler runs and hands
//! the handler a [`Caller`]. Credentials are checked against this node's
//! applied state here; every write is checked again by the state machine at
//! its log position, so a key revoked by an earlier entry is refused there
//! on every replica whatever this node had applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use keel_domain::command::ORIGIN_LEN_MAX;
use keel_domain::{AccountId, KeyId, Principal, RequestId, Role};
use keel_protocol::{constant_time_eq, hex};

use crate::http::errors::{read_problem, Problem};
use crate::http::roles;
use crate::node::Node;
use crate::rpc_server::ConnectedPeer;

/// Shared state of the HTTP handlers.
pub struct Api {
    /// The replica.
    pub node: Arc<Node>,
    boot_ms: u64,
    next_key: AtomicU64,
}

impl Api {
    /// Wraps a node.
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        Arc::new(Self {
            node,
            boot_ms: keel_protocol::wall_ms(),
            next_key: AtomicU64::new(0),
        })
    }

    /// A key for a request that came without one: unique per node boot, so
    /// the node's own forwarding retries stay exactly-once. Client retries
    /// need a client key.
    pub(crate) fn generated_key(&self) -> RequestId {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        // Printable ASCII, well under 128 characters: always valid.
        RequestId::new(format!("auto-{}-{}-{n}", self.node.id(), self.boot_ms))
            .unwrap_or_else(|_| unreachable_key())
    }

    /// The signed customer token of `account` for token generation
    /// `generation`, expiring at state time `expires_at_ms`.
    pub fn customer_token(
        &self,
        account: &AccountId,
        generation: u32,
        expires_at_ms: u64,
    ) -> String {
        customer_token(
            &self.node.config().cluster_secret,
            account,
            generation,
            expires_at_ms,
        )
    }
}

fn unreachable_key() -> RequestId {
    // "x" is a valid key; only reached if the format above were broken.
    RequestId::new("x").unwrap_or_else(|_| unreachable_key())
}

/// The bearer token of a customer under a cluster secret: the account, its
/// token generation and expiry, and a MAC of the three.
pub fn customer_token(
    secret: &str,
    account: &AccountId,
    generation: u32,
    expires_at_ms: u64,
) -> String {
    let mac = token_mac(secret, account, generation, expires_at_ms);
    format!("cust_{account}.{generation}.{expires_at_ms}.{mac}")
}

fn token_mac(secret: &str, account: &AccountId, generation: u32, expires_at_ms: u64) -> String {
    let key = blake3::derive_key("keel customer token v2", secret.as_bytes());
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(account.as_str().as_bytes());
    h.update(&[0]);
    h.update(&generation.to_be_bytes());
    h.update(&expires_at_ms.to_be_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// The bearer token of an API key: its id and its secret.
pub fn key_token(id: &KeyId, secret: &str) -> String {
    format!("key_{id}.{secret}")
}

/// The caller of a request: who (for the log and the state machine), in
/// which role, and from where.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, when authenticated.
    pub principal: Option<Principal>,
    /// The role, when authenticated.
    pub role: Option<Role>,
    /// The account a customer acts for.
    pub account: Option<AccountId>,
    /// The connection's remote address, as this node saw it.
    pub origin: Option<std::net::SocketAddr>,
}

impl Caller {
    /// The origin as an envelope carries it (at most
    /// [`ORIGIN_LEN_MAX`] bytes), for the audit trail.
    pub fn origin_text(&self) -> Option<String> {
        self.origin.map(|a| {
            let mut s = a.to_string();
            s.truncate(ORIGIN_LEN_MAX);
            s
        })
    }

    /// The principal, or 401 for an anonymous caller.
    pub fn principal(&self) -> Result<Principal, Problem> {
        self.principal.clone().ok_or_else(Problem::unauthorized)
    }

    /// Ok for staff and for the customer `owner`; 403 for anyone else.
    pub fn owner_or_staff(&self, owner: &AccountId) -> Result<(), Problem> {
        match (self.role, &self.account) {
            (Some(Role::Customer), Some(a)) if a == owner => Ok(()),
            (Some(Role::Customer), _) | (None, _) => Err(Problem::forbidden(format!(
                "only {owner} or staff may do this"
            ))),
            (Some(_), _) => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        // Inserted by `authorize`, which every routed request passes.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Problem::internal("a handler ran without the authorize middleware"))
    }
}

/// The address a connection came from, set per connection by the server.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// Checks the caller against the route's roles, then runs the handler with
/// its [`Caller`]: 401 without a credential where one is needed (or with a
/// bad one anywhere), 403 for a role the route does not take.
pub async fn authorize(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let access = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| roles::roles_of(req.method().as_str(), path.as_str()))
        // A route missing from the table (the router's tests forbid it)
        // is the admin's alone.
        .unwrap_or(roles::ADMIN);
    let origin = req.extensions().get::<RemoteAddr>().map(|a| a.0);
    let cert = req
        .extensions()
        .get::<ConnectedPeer>()
        .and_then(|p| p.0.clone());
    let caller = match authenticate(&api, req.headers(), cert.as_ref(), origin).await {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    if let Err(p) = roles::admit(access, caller.role) {
        return p.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Who the request's credential names, checked against this node's state.
async fn authenticate(
    api: &Api,
    headers: &HeaderMap,
    cert: Option<&keel_tls::PeerCert>,
    origin: Option<std::net::SocketAddr>,
) -> Result<Caller, Problem> {
    let anonymous = Caller {
        principal: None,
        role: None,
        account: None,
        origin,
    };
    let bearer = match headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| Problem::bad_credential("send Authorization: Bearer <token>"))?,
        ),
    };
    let Some(token) = bearer else {
        return match cert.and_then(|c| keel_tls::client_name(&c.0)) {
            Some(name) => {
                let id = KeyId::new(name).map_err(|_| {
                    Problem::bad_credential("the client certificate names no API key")
                })?;
                let key = live_key(api, &id).await?;
                Ok(key_caller(anonymous, id, &key))
            }
            None => Ok(anonymous),
        };
    };
    if constant_time_eq(token.as_bytes(), api.node.config().admin_token.as_bytes()) {
        return Ok(Caller {
            principal: Some(Principal::Admin),
            role: Some(Role::Admin),
            ..anonymous
        });
    }
    if let Some(rest) = token.strip_prefix("key_") {
        let (id, secret) = rest
            .rsplit_once('.')
            .ok_or_else(|| Problem::bad_credential("a key token is key_<id>.<secret>"))?;
        let id = KeyId::new(id).map_err(|_| Problem::bad_credential("the key id is malformed"))?;
        let key = live_key(api, &id).await?;
        let presented = keel_domain::identity::secret_hash(secret);
        if !constant_time_eq(&presented, &key.secret_hash) {
            return Err(Problem::bad_credential("the key's secret does not match"));
        }
        return Ok(key_caller(anonymous, id, &key));
    }
    if let Some(rest) = token.strip_prefix("cust_") {
        return customer_caller(api, rest, anonymous).await;
    }
    Err(Problem::bad_credential(
        "the token is not one this cluster issued",
    ))
}

/// The key `id`, when this node's state holds it unexpired.
async fn live_key(api: &Api, id: &KeyId) -> Result<keel_domain::ApiKey, Problem> {
    let (key, clock_ms) = api.node.read_key(id).await.map_err(read_problem)?;
    let key =
        key.ok_or_else(|| Problem::bad_credential("the key does not exist or was revoked"))?;
    if key.info.expired_at(clock_ms) {
        return Err(Problem::bad_credential("the key has expired"));
    }
    Ok(key)
}

fn key_caller(anonymous: Caller, id: KeyId, key: &keel_domain::ApiKey) -> Caller {
    Caller {
        principal: Some(Principal::Key(id)),
        role: Some(key.info.role),
        account: key.info.account.clone(),
        ..anonymous
    }
}

async fn customer_caller(api: &Api, rest: &str, anonymous: Caller) -> Result<Caller, Problem> {
    let malformed = || {
        Problem::bad_credential("a customer token is cust_<account>.<generation>.<expires>.<mac>")
    };
    let mut parts = rest.rsplitn(4, '.');
    let (Some(mac), Some(expires), Some(generation), Some(account)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let account = AccountId::new(account).map_err(|_| malformed())?;
    let generation: u32 = generation.parse().map_err(|_| malformed())?;
    let expires_at_ms: u64 = expires.parse().map_err(|_| malformed())?;
    let expected = token_mac(
        &api.node.config().cluster_secret,
        &account,
        generation,
        expires_at_ms,
    );
    if !constant_time_eq(mac.as_bytes(), expected.as_bytes()) {
        return Err(Problem::bad_credential(
            "the customer token's signature does not match",
        ));
    }
    let (current, clock_ms) = api
        .node
        .read_token_generation(&account)
        .await
        .map_err(read_problem)?;
    if clock_ms >= expires_at_ms {
        return Err(Problem::bad_credential(
            "the customer token has expired; ask for a new one",
        ));
    }
    if generation != current {
        return Err(Problem::bad_credential(
            "the customer's tokens were revoked; ask for a new one",
        ));
    }
    Ok(Caller {
        principal: Some(Principal::Customer {
            account: account.clone(),
            generation,
        }),
        role: Some(Role::Customer),
        account: Some(account),
        ..anonymous
    })
}
