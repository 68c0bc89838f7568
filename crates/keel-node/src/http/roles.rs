//! Who may call each route, written once: this table is the source of
//! every operation's `x-roles` extension and of the `Roles: …` sentence
//! that opens its description in `/openapi.json`. The handlers enforce it
//! through [`crate::http::auth`] (`admin`, `owner_or_admin`), since whether
//! a caller owns an account or order is known only once it is read; the
//! router's tests check that every route has an entry here and that every
//! route not open to the public asks for a bearer token.

use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::OpenApi;

/// A kind of caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Anyone, without a token.
    Public,
    /// The customer the account or order belongs to, with its token.
    Owner,
    /// The operator, with the admin token.
    Admin,
}

impl Role {
    /// The role's name in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }
}

const PUBLIC: &[Role] = &[Role::Public];
const ADMIN: &[Role] = &[Role::Admin];
const OWNER_ADMIN: &[Role] = &[Role::Owner, Role::Admin];

/// Every route's roles: method (as the document writes it), path, roles.
pub const ROUTE_ROLES: &[(&str, &str, &[Role])] = &[
    ("post", "/v1/products", ADMIN),
    ("get", "/v1/products", PUBLIC),
    ("get", "/v1/products/{sku}", PUBLIC),
    ("post", "/v1/products/{sku}/restock", ADMIN),
    ("put", "/v1/products/{sku}/stock", ADMIN),
    ("post", "/v1/accounts", ADMIN),
    ("get", "/v1/accounts/{id}", OWNER_ADMIN),
    ("post", "/v1/accounts/{id}/deposits", ADMIN),
    ("post", "/v1/accounts/{id}/token", ADMIN),
    ("get", "/v1/accounts/{id}/orders", OWNER_ADMIN),
    ("post", "/v1/orders", OWNER_ADMIN),
    ("get", "/v1/orders/{id}", OWNER_ADMIN),
    ("post", "/v1/orders/{id}/pay", OWNER_ADMIN),
    ("post", "/v1/orders/{id}/cancel", OWNER_ADMIN),
    ("post", "/v1/orders/{id}/ship", ADMIN),
    ("post", "/v1/orders/{id}/deliver", ADMIN),
    ("post", "/v1/orders/{id}/refund", ADMIN),
    ("post", "/v1/batch", ADMIN),
    ("get", "/v1/summary", ADMIN),
    ("get", "/v1/digest", ADMIN),
    ("get", "/v1/clock", ADMIN),
    ("get", "/v1/backup/snapshot", ADMIN),
    ("get", "/v1/backup/log", ADMIN),
    ("get", "/v1/cluster", ADMIN),
    ("post", "/v1/cluster/learners", ADMIN),
    ("post", "/v1/cluster/members", ADMIN),
    ("delete", "/v1/cluster/members/{id}", ADMIN),
    ("post", "/v1/cluster/compact", ADMIN),
    ("get", "/healthz", PUBLIC),
    ("get", "/readyz", PUBLIC),
    ("get", "/metrics", PUBLIC),
    ("get", "/openapi.json", PUBLIC),
];

/// The roles of `method path`, if the table has the route.
pub fn roles_of(method: &str, path: &str) -> Option<&'static [Role]> {
    ROUTE_ROLES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, roles)| *roles)
}

/// Writes each operation's roles from [`ROUTE_ROLES`] into `doc`: the
/// `x-roles` extension, and `Roles: …` before its description. A route
/// missing from the table is left without (the router's tests refuse it).
pub fn document(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, op) in operations {
            if let (Some(op), Some(roles)) = (op.as_mut(), roles_of(method, path)) {
                describe(op, roles);
            }
        }
    }
}

fn describe(op: &mut Operation, roles: &[Role]) {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let sentence = format!("Roles: {}.", names.join(", "));
    op.description = Some(match op.description.take().filter(|d| !d.is_empty()) {
        Some(note) => format!("{sentence} {note}"),
        None => sentence,
    });
    let extension = ExtensionsBuilder::new()
        .add("x-roles", json!(names))
        .build();
    match &mut op.extensions {
        Some(e) => e.merge(extension),
        None => op.extensions = Some(extension),
    }
}
