//! Who is calling the public HTTP API (bearer tokens: the admin's and the
//! customers'), and the state its handlers share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;

use keel_domain::{AccountId, Principal, RequestId};
use keel_protocol::{constant_time_eq, hex};

use crate::http::errors::Problem;
use crate::node::Node;

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

    /// The customer token for `id`: a keyed hash under the cluster secret,
    /// so any node can check it without shared state.
    pub fn customer_token(&self, id: &AccountId) -> String {
        customer_token(&self.node.config().cluster_secret, id)
    }
}

fn unreachable_key() -> RequestId {
    // "x" is a valid key; only reached if the format above were broken.
    RequestId::new("x").unwrap_or_else(|_| unreachable_key())
}

/// The bearer token of a customer under a cluster secret.
pub fn customer_token(secret: &str, id: &AccountId) -> String {
    let key = blake3::derive_key("keel customer token v1", secret.as_bytes());
    let mac = blake3::keyed_hash(&key, id.as_str().as_bytes());
    format!("cust_{id}.{}", hex::encode(&mac.as_bytes()[..16]))
}

// ----- authentication ------------------------------------------------------

fn principal(api: &Api, headers: &HeaderMap) -> Option<Principal> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = h.strip_prefix("Bearer ")?.trim();
    if constant_time_eq(token.as_bytes(), api.node.config().admin_token.as_bytes()) {
        return Some(Principal::Admin);
    }
    let rest = token.strip_prefix("cust_")?;
    let (id, _) = rest.rsplit_once('.')?;
    let id = AccountId::new(id).ok()?;
    constant_time_eq(token.as_bytes(), api.customer_token(&id).as_bytes())
        .then_some(Principal::Customer(id))
}

/// The caller, or 401 `unauthorized`.
pub(crate) fn authed(api: &Api, headers: &HeaderMap) -> Result<Principal, Problem> {
    principal(api, headers).ok_or_else(Problem::unauthorized)
}

/// Ok for the admin; 401 without a valid token, 403 for a customer.
pub(crate) fn admin(api: &Api, headers: &HeaderMap) -> Result<(), Problem> {
    match authed(api, headers)? {
        Principal::Admin => Ok(()),
        _ => Err(Problem::forbidden("this endpoint needs the admin token")),
    }
}

/// Ok for the admin and for the customer `owner`; 403 for anyone else.
pub(crate) fn owner_or_admin(p: &Principal, owner: &AccountId) -> Result<(), Problem> {
    match p {
        Principal::Admin => Ok(()),
        Principal::Customer(c) if c == owner => Ok(()),
        _ => Err(Problem::forbidden(format!(
            "only {owner} or an admin may read this"
        ))),
    }
}
