//! The public router: the one module that names every handler, with the
//! middleware every answer goes through (leader hints, request metrics)
//! and the body limit.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use keel_protocol::header;

use crate::http::auth::{authorize, Api};
use crate::http::errors::Problem;
use crate::http::extract::BODY_BYTES_MAX;
use crate::http::{
    access, accounts, backup, batch, cluster, openapi, ops, orders, products, roles,
};

/// The contract: this document, generated from the types and the
/// routes' annotations.
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops",
    description = "OpenAPI 3.1.",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
)]
async fn openapi_json() -> Response {
    static SPEC: OnceLock<String> = OnceLock::new();
    let body = SPEC.get_or_init(|| spec().to_json().unwrap_or_default());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str(),
    )
        .into_response()
}

async fn fallback() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

/// Adds the leader hint to every answer and counts it by route and status.
async fn track(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
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
    api.node
        .observe_request(route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// Every public route with its handler and its contract: the router and
/// the OpenAPI document are both made from this one list.
fn routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(products::upsert, products::list))
        .routes(routes!(products::get))
        .routes(routes!(products::restock))
        .routes(routes!(products::set_stock))
        .routes(routes!(accounts::open))
        .routes(routes!(accounts::get))
        .routes(routes!(accounts::deposit))
        .routes(routes!(accounts::token, accounts::revoke_tokens))
        .routes(routes!(accounts::orders))
        .routes(routes!(orders::place))
        .routes(routes!(orders::get))
        .routes(routes!(orders::pay))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::deliver))
        .routes(routes!(orders::refund))
        .routes(routes!(batch::batch))
        .routes(routes!(ops::summary))
        .routes(routes!(ops::digest))
        .routes(routes!(ops::clock))
        .routes(routes!(ops::alerts))
        .routes(routes!(backup::snapshot))
        .routes(routes!(backup::log))
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::add_learner))
        .routes(routes!(cluster::promote))
        .routes(routes!(cluster::remove))
        .routes(routes!(cluster::transfer_leader))
        .routes(routes!(cluster::compact))
        .routes(routes!(access::create, access::list))
        .routes(routes!(access::revoke))
        .routes(routes!(access::audit))
        .routes(routes!(access::whoami))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI 3.1 document of [`router`]: exactly its routes, each with
/// its roles from [`roles::ROUTE_ROLES`].
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    roles::document(&mut doc);
    doc
}

/// The public router.
pub fn router(api: Arc<Api>) -> Router {
    let (router, _spec) = routes().split_for_parts();
    router
        // Every routed request is admitted by the route table first.
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), authorize))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(api.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use std::collections::BTreeSet;

    use serde_json::Value;

    use keel_domain::command::{
        DEPOSIT_MAX, LINE_QTY_MAX, ORDER_LINES_MAX, ORDER_TTL_MAX_S, PRICE_MAX, STOCK_QTY_MAX,
    };
    use keel_domain::ids::ID_LEN_MAX;
    use keel_domain::query::PAGE_LIMIT_MAX;

    use super::*;
    use crate::http::openapi::PROBLEM_TYPES;

    fn doc() -> Value {
        serde_json::to_value(spec()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
        ops
    }

    /// The `METHOD /path` items of docs/API.md's endpoint table.
    fn documented_routes() -> BTreeSet<String> {
        let api_md = include_str!("../../../../docs/API.md");
        let table = api_md
            .split("## Endpoints")
            .nth(1)
            .unwrap()
            .split("\n\n|")
            .nth(1)
            .unwrap();
        let mut routes = BTreeSet::new();
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let first_cell = row.split(" | ").next().unwrap();
            for item in first_cell.split('`').skip(1).step_by(2) {
                let mut words = item.splitn(2, ' ');
                let (method, path) = (words.next().unwrap(), words.next().unwrap_or(""));
                if ["GET", "POST", "PUT", "DELETE"].contains(&method) {
                    routes.insert(format!("{method} {path}"));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_is_openapi_3_1_and_lists_the_routes_docs_api_md_lists() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let served: BTreeSet<String> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        assert_eq!(served, documented_routes());
    }

    #[test]
    fn every_operation_names_its_roles_and_all_but_public_ones_need_a_token() {
        for (method, path, op) in operations(&doc()) {
            let roles: Vec<&str> = op["x-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} names no x-roles"))
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert!(!roles.is_empty(), "{method} {path}");
            assert!(
                roles.iter().all(|r| [
                    "admin", "operator", "support", "merchant", "owner", "public"
                ]
                .contains(r)),
                "{method} {path}: {roles:?}"
            );
            let public = roles == ["public"];
            assert_eq!(
                op["security"].is_array(),
                !public,
                "{method} {path}: roles {roles:?}, security {}",
                op["security"]
            );
            if !public {
                assert_eq!(op["security"][0]["bearer"], serde_json::json!([]));
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} has no 401"
                );
            }
        }
    }

    #[test]
    fn the_roles_table_has_exactly_the_served_routes() {
        let served: BTreeSet<String> = operations(&doc())
            .into_iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        let table: BTreeSet<String> = roles::ROUTE_ROLES
            .iter()
            .map(|(m, p, _)| format!("{} {p}", m.to_uppercase()))
            .collect();
        assert_eq!(served, table);
        assert_eq!(
            table.len(),
            roles::ROUTE_ROLES.len(),
            "a route listed twice"
        );
    }

    #[test]
    fn each_description_opens_with_the_roles_it_lists() {
        for (method, path, op) in operations(&doc()) {
            let roles: Vec<&str> = op["x-roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let description = op["description"].as_str().unwrap();
            assert!(
                description.starts_with(&format!("Roles: {}.", roles.join(", "))),
                "{method} {path}: {description}"
            );
        }
    }

    #[test]
    fn every_error_answer_is_a_problem_json() {
        for (method, path, op) in operations(&doc()) {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.as_str() < "400" {
                    continue;
                }
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem"
                );
            }
        }
        let problem = &doc()["components"]["schemas"]["Problem"];
        let types: Vec<&str> = problem["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(types.len(), PROBLEM_TYPES.len());
        for code in [
            "validation",
            "not_found",
            "already_exists",
            "out_of_stock",
            "insufficient_funds",
            "invalid_transition",
            "below_reserved",
            "idempotency_conflict",
            "forbidden",
            "overflow",
        ] {
            assert!(types.contains(&code), "{code} missing from {types:?}");
        }
    }

    /// The numbers the schemas state are the ones the validators check
    /// (the schemas repeat them as literals, which the derive requires).
    #[test]
    fn schema_bounds_are_the_validators_limits() {
        let doc = doc();
        let s = &doc["components"]["schemas"];
        let max = |v: &Value| v["maximum"].as_u64().unwrap();
        assert_eq!(
            max(&s["ProductBody"]["properties"]["price"]),
            PRICE_MAX as u64
        );
        assert_eq!(max(&s["QtyBody"]["properties"]["qty"]), STOCK_QTY_MAX);
        assert_eq!(max(&s["StockBody"]["properties"]["on_hand"]), STOCK_QTY_MAX);
        assert_eq!(
            max(&s["AmountBody"]["properties"]["amount"]),
            DEPOSIT_MAX as u64
        );
        assert_eq!(max(&s["PlaceLine"]["properties"]["qty"]), LINE_QTY_MAX);
        let place = &s["PlaceBody"]["properties"];
        assert_eq!(
            place["lines"]["items"]["$ref"],
            "#/components/schemas/PlaceLine"
        );
        assert_eq!(
            place["lines"]["maxItems"].as_u64().unwrap(),
            ORDER_LINES_MAX as u64
        );
        assert_eq!(max(&place["ttl_seconds"]), u64::from(ORDER_TTL_MAX_S));
        assert_eq!(s["Sku"]["maxLength"].as_u64().unwrap(), ID_LEN_MAX as u64);
        let limit = doc["paths"]["/v1/products"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(max(&limit["schema"]), PAGE_LIMIT_MAX as u64);
        // A batch's commands state their types' ranges: the rules of
        // Command::validate are answered per command, in a 200.
        let commands = doc["components"]["schemas"]["BatchBody"]["items"]["oneOf"]
            .as_array()
            .unwrap()
            .clone();
        let field = |variant: &str, name: &str| {
            commands
                .iter()
                .find_map(|c| c["properties"].get(variant))
                .unwrap_or_else(|| panic!("no {variant}"))["properties"][name]
                .clone()
        };
        assert_eq!(max(&field("restock", "qty")), u64::MAX);
        assert_eq!(max(&field("pay_order", "order")), u64::MAX);
        assert_eq!(field("pay_order", "order")["minimum"], 0);
        assert_eq!(
            max(&field("place_order", "ttl_seconds")),
            u64::from(u32::MAX)
        );
        assert_eq!(max(&s["LineRequest"]["properties"]["qty"]), u64::MAX);
        assert_eq!(s["Minor"]["maximum"].as_i64().unwrap(), i64::MAX);
        assert_eq!(s["Minor"]["minimum"].as_i64().unwrap(), i64::MIN);
        for c in &commands {
            assert_eq!(c["additionalProperties"], false, "{c}");
        }
    }
}
