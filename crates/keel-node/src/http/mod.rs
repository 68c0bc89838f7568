//! The public HTTP API (docs/API.md). [`router`] is the only module that
//! knows every handler; the handlers live by resource ([`products`],
//! [`accounts`], [`orders`], [`batch`], [`cluster`], [`backup`], [`ops`],
//! [`access`] for keys and the audit trail) and share [`auth`] (who is
//! calling), [`extract`] (bodies, keys, query parameters, path values),
//! [`errors`] (problem+json), [`roles`] (who may call each route: the one
//! table that admits requests and that the document's roles come from) and the
//! two ways a request reaches the state: [`submit`] for writes, [`read`]
//! for reads.
//! Every handler goes through [`crate::node::Node`]'s methods, never to the
//! store or Raft.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod backup;
pub mod batch;
pub mod cluster;
pub mod errors;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod products;
pub mod read;
pub mod roles;
pub mod router;
pub mod submit;
