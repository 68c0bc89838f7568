//! `/openapi.json`, generated from [`ROUTES`]: the same table a test checks
//! against the live router, so the spec cannot list a route that does not
//! exist or miss one that does.

use serde_json::{json, Map, Value};

use crate::http::extract::BODY_BYTES_MAX;

/// One documented endpoint.
pub struct RouteDoc {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Who may call it.
    pub who: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Whether it takes a JSON body.
    pub body: bool,
}

/// Every public endpoint.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc { method: "post", path: "/v1/products", who: "admin", summary: "Create or update a product", body: true },
    RouteDoc { method: "get", path: "/v1/products", who: "any", summary: "Catalogue with available stock (cursor pagination)", body: false },
    RouteDoc { method: "get", path: "/v1/products/{sku}", who: "any", summary: "One product with available stock", body: false },
    RouteDoc { method: "post", path: "/v1/products/{sku}/restock", who: "admin", summary: "Add stock: {qty}", body: true },
    RouteDoc { method: "put", path: "/v1/products/{sku}/stock", who: "admin", summary: "Set stock: {on_hand}; refused below reserved", body: true },
    RouteDoc { method: "post", path: "/v1/accounts", who: "admin", summary: "Open an account: {id, kind, currency}", body: true },
    RouteDoc { method: "get", path: "/v1/accounts/{id}", who: "owner, admin", summary: "Account with balance", body: false },
    RouteDoc { method: "post", path: "/v1/accounts/{id}/deposits", who: "admin", summary: "Credit from the external account: {amount}", body: true },
    RouteDoc { method: "post", path: "/v1/accounts/{id}/token", who: "admin", summary: "Issue the customer's bearer token", body: false },
    RouteDoc { method: "get", path: "/v1/accounts/{id}/orders", who: "owner, admin", summary: "A customer's orders, newest first", body: false },
    RouteDoc { method: "post", path: "/v1/orders", who: "owner, admin", summary: "Place an order: {customer, lines:[{sku, qty}], ttl_seconds?}; 409 out_of_stock lists short lines", body: true },
    RouteDoc { method: "get", path: "/v1/orders/{id}", who: "owner, admin", summary: "One order", body: false },
    RouteDoc { method: "post", path: "/v1/orders/{id}/{action}", who: "pay/cancel: owner or admin; ship/deliver/refund: admin", summary: "Transition: action is pay, cancel, ship, deliver or refund ({restock})", body: false },
    RouteDoc { method: "post", path: "/v1/batch", who: "admin", summary: "Up to 1,000 commands, applied in order as one unit, a result each", body: true },
    RouteDoc { method: "get", path: "/v1/summary", who: "admin", summary: "Counts and totals for conservation checks", body: false },
    RouteDoc { method: "get", path: "/v1/digest", who: "admin", summary: "This replica's state digest at its applied index", body: false },
    RouteDoc { method: "get", path: "/v1/clock", who: "admin", summary: "This node's wall clock, its peers' offsets and whether its clock may lead", body: false },
    RouteDoc { method: "get", path: "/v1/backup/snapshot", who: "admin", summary: "Hot backup: stream a snapshot of one consistent state of every acknowledged write (headers: log id, digest, clock)", body: false },
    RouteDoc { method: "get", path: "/v1/backup/log", who: "admin", summary: "Backup: committed log records after=N[&upto=M][&barrier=true: catch up to the commit first], one page; 410 log_purged when gone", body: false },
    RouteDoc { method: "get", path: "/v1/cluster", who: "admin", summary: "Members, roles, term, leader, indexes, lag, health", body: false },
    RouteDoc { method: "post", path: "/v1/cluster/learners", who: "admin", summary: "Add a learner: {id, addr}", body: true },
    RouteDoc { method: "post", path: "/v1/cluster/members", who: "admin", summary: "Promote a learner to voter: {id}", body: true },
    RouteDoc { method: "delete", path: "/v1/cluster/members/{id}", who: "admin", summary: "Remove a member; refused if quorum would be lost", body: false },
    RouteDoc { method: "post", path: "/v1/cluster/compact", who: "admin", summary: "Snapshot this node's state now and purge its log up to the snapshot: {snapshot_index, purged_index}", body: false },
    RouteDoc { method: "get", path: "/healthz", who: "any", summary: "Liveness", body: false },
    RouteDoc { method: "get", path: "/readyz", who: "any", summary: "Readiness: has a leader and is caught up", body: false },
    RouteDoc { method: "get", path: "/metrics", who: "any", summary: "Prometheus metrics", body: false },
    RouteDoc { method: "get", path: "/openapi.json", who: "any", summary: "This document", body: false },
];

/// The OpenAPI 3.1 document.
pub fn spec() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "description": format!("Who: {}.", r.who),
            "parameters": params,
            "responses": {
                "2XX": {"description": "Success"},
                "default": {"description": "Problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        if r.body {
            op["requestBody"] = json!({
                "required": true,
                "description": format!("JSON, at most {BODY_BYTES_MAX} bytes (413 payload_too_large above)"),
                "content": {"application/json": {}}
            });
        }
        if r.method == "post" {
            if let Some(list) = op["parameters"].as_array_mut() {
                list.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "1 to 128 printable ASCII. Same key and body replays the original response with Idempotent-Replayed: true. Client retries need a key.",
                    "schema": {"type": "string"}}));
            }
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Keel API", "version": "v1"},
        "paths": paths,
        "components": {"schemas": {"Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "description": "stable code: validation, not_found, out_of_stock, insufficient_funds, invalid_transition, below_reserved, already_exists, idempotency_conflict, unauthorized, forbidden, unavailable, indeterminate, payload_too_large, membership_refused, not_leader, internal"},
                "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}
            }
        }}}
    })
}
