//! Who may call each route, written once: this table decides every
//! request's admission (the [`crate::http::auth::authorize`] middleware
//! runs [`admit`] before any handler), and it is the source of every
//! operation's `x-roles` extension and of the `Roles: …` sentence that opens
//! its description in `/openapi.json`. Where a route takes `owner`, the
//! handler checks that a customer acts on its own account or order, since
//! that is known only once the order is read; the state machine checks
//! every write's role again when it applies. The router's tests check that
//! every route has an entry here and that every route not open to the
//! public asks for a bearer token.

use serde_json::json;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::OpenApi;

use keel_domain::Role;

use crate::http::errors::Problem;

/// Who a route admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential.
    Public,
    /// A customer acting on its own account or orders.
    Owner,
    /// A caller of this staff role.
    Staff(Role),
}

impl Access {
    /// The name in the document: `public`, `owner` or the role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Owner => "owner",
            Access::Staff(r) => r.as_str(),
        }
    }

    fn takes(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Owner => role == Role::Customer,
            Access::Staff(r) => r == role && role != Role::Customer,
        }
    }
}

const PUBLIC: &[Access] = &[Access::Public];
/// The admin alone.
pub const ADMIN: &[Access] = &[Access::Staff(Role::Admin)];
const CATALOGUE: &[Access] = &[Access::Staff(Role::Admin), Access::Staff(Role::Merchant)];
const OWNER_ADMIN: &[Access] = &[Access::Owner, Access::Staff(Role::Admin)];
const OWNER_READERS: &[Access] = &[
    Access::Owner,
    Access::Staff(Role::Admin),
    Access::Staff(Role::Support),
];
const OPERATORS: &[Access] = &[Access::Staff(Role::Admin), Access::Staff(Role::Operator)];
const OPS_READERS: &[Access] = &[
    Access::Staff(Role::Admin),
    Access::Staff(Role::Operator),
    Access::Staff(Role::Support),
];
const STAFF_READERS: &[Access] = &[Access::Staff(Role::Admin), Access::Staff(Role::Support)];

/// Every route's roles: method (as the document writes it), path, roles.
pub const ROUTE_ROLES: &[(&str, &str, &[Access])] = &[
    ("post", "/v1/products", CATALOGUE),
    ("get", "/v1/products", PUBLIC),
    ("get", "/v1/products/{sku}", PUBLIC),
    ("post", "/v1/products/{sku}/restock", CATALOGUE),
    ("put", "/v1/products/{sku}/stock", CATALOGUE),
    ("post", "/v1/accounts", ADMIN),
    ("get", "/v1/accounts/{id}", OWNER_READERS),
    ("post", "/v1/accounts/{id}/deposits", ADMIN),
    ("post", "/v1/accounts/{id}/token", ADMIN),
    ("delete", "/v1/accounts/{id}/token", ADMIN),
    ("get", "/v1/accounts/{id}/orders", OWNER_READERS),
    ("post", "/v1/orders", OWNER_ADMIN),
    ("get", "/v1/orders/{id}", OWNER_READERS),
    ("post", "/v1/orders/{id}/pay", OWNER_ADMIN),
    ("post", "/v1/orders/{id}/cancel", OWNER_ADMIN),
    ("post", "/v1/orders/{id}/ship", ADMIN),
    ("post", "/v1/orders/{id}/deliver", ADMIN),
    ("post", "/v1/orders/{id}/refund", ADMIN),
    ("post", "/v1/batch", ADMIN),
    ("get", "/v1/summary", OPS_READERS),
    ("get", "/v1/digest", OPS_READERS),
    ("get", "/v1/clock", OPS_READERS),
    ("get", "/v1/alerts", OPS_READERS),
    ("get", "/v1/backup/snapshot", OPERATORS),
    ("get", "/v1/backup/log", OPERATORS),
    ("get", "/v1/cluster", OPS_READERS),
    ("post", "/v1/cluster/learners", OPERATORS),
    ("post", "/v1/cluster/members", OPERATORS),
    ("delete", "/v1/cluster/members/{id}", OPERATORS),
    ("post", "/v1/cluster/leader", OPERATORS),
    ("post", "/v1/cluster/compact", OPERATORS),
    ("post", "/v1/keys", ADMIN),
    ("get", "/v1/keys", STAFF_READERS),
    ("delete", "/v1/keys/{id}", ADMIN),
    ("get", "/v1/audit", OPS_READERS),
    ("get", "/v1/whoami", PUBLIC),
    ("get", "/healthz", PUBLIC),
    ("get", "/readyz", PUBLIC),
    ("get", "/metrics", PUBLIC),
    ("get", "/openapi.json", PUBLIC),
];

/// Admits a caller of `role` (`None`: anonymous) to a route taking
/// `access`: 401 for an anonymous caller of a route that needs a
/// credential, 403 for a role the route does not take.
pub fn admit(access: &[Access], role: Option<Role>) -> Result<(), Problem> {
    if access.contains(&Access::Public) {
        return Ok(());
    }
    let Some(role) = role else {
        return Err(Problem::unauthorized());
    };
    if access.iter().any(|a| a.takes(role)) {
        return Ok(());
    }
    let names: Vec<&str> = access.iter().map(|a| a.as_str()).collect();
    Err(Problem::forbidden(format!(
        "this endpoint takes the roles {}; the caller's role is {}",
        names.join(", "),
        role.as_str()
    )))
}

/// The roles of `method path`, if the table has the route (the method
/// in any case: the table writes it as the document does, an HTTP request
/// in capitals).
pub fn roles_of(method: &str, path: &str) -> Option<&'static [Access]> {
    ROUTE_ROLES
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
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

fn describe(op: &mut Operation, roles: &[Access]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole matrix: every route against every role and no role, as
    /// the table says, so a change to the table is a change to this test's
    /// expectations written out below.
    #[test]
    fn admission_follows_the_table_for_every_role() {
        use axum::http::StatusCode;
        let callers: [Option<Role>; 6] = [
            None,
            Some(Role::Admin),
            Some(Role::Operator),
            Some(Role::Support),
            Some(Role::Merchant),
            Some(Role::Customer),
        ];
        for (method, path, access) in ROUTE_ROLES {
            for role in callers {
                let got = admit(access, role).map_err(|p| p.0.status);
                let public = access.contains(&Access::Public);
                let expected = match role {
                    _ if public => Ok(()),
                    None => Err(StatusCode::UNAUTHORIZED),
                    Some(Role::Customer) if access.contains(&Access::Owner) => Ok(()),
                    Some(r) if r != Role::Customer && access.contains(&Access::Staff(r)) => Ok(()),
                    Some(_) => Err(StatusCode::FORBIDDEN),
                };
                assert_eq!(got, expected, "{method} {path} as {role:?}");
            }
        }
    }

    #[test]
    fn the_roles_of_the_issue_hold() {
        let takes = |m: &str, p: &str, r: Role| admit(roles_of(m, p).unwrap(), Some(r)).is_ok();
        // operator: membership, backups; not the catalogue or money.
        assert!(takes("post", "/v1/cluster/learners", Role::Operator));
        assert!(takes("get", "/v1/backup/snapshot", Role::Operator));
        assert!(!takes("post", "/v1/products", Role::Operator));
        // support: reads everything, changes nothing.
        for (m, p, _) in ROUTE_ROLES {
            if *m != "get" {
                assert!(!takes(m, p, Role::Support), "support may {m} {p}");
            }
        }
        assert!(takes("get", "/v1/orders/{id}", Role::Support));
        // merchant: the catalogue and its stock.
        assert!(takes("put", "/v1/products/{sku}/stock", Role::Merchant));
        assert!(!takes("post", "/v1/accounts/{id}/deposits", Role::Merchant));
        // customer: its own orders (the handler checks whose).
        assert!(takes("post", "/v1/orders", Role::Customer));
        assert!(!takes("post", "/v1/orders/{id}/refund", Role::Customer));
        // keys: the admin's.
        for r in [
            Role::Operator,
            Role::Support,
            Role::Merchant,
            Role::Customer,
        ] {
            assert!(!takes("post", "/v1/keys", r));
        }
    }
}
