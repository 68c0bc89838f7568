//! The parts of `/openapi.json` that are not a route: the document's head,
//! the bearer security scheme, the problem+json schema with its stable
//! `type` values, and the sets of problem responses routes share. The
//! routes themselves, with their `#[utoipa::path]` annotations, are
//! gathered by [`crate::http::router`], so the document lists exactly the
//! routes the router serves.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

use keel_domain::ShortLine;

use crate::http::extract::BODY_BYTES_MAX;

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

/// Every `type` a problem of this node can carry (docs/API.md), with the
/// status it comes with. The gateway adds `rate_limited` (429) of its own.
pub const PROBLEM_TYPES: &[(&str, u16)] = &[
    ("validation", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("not_found", 404),
    ("already_exists", 409),
    ("out_of_stock", 409),
    ("insufficient_funds", 409),
    ("invalid_transition", 409),
    ("below_reserved", 409),
    ("idempotency_conflict", 409),
    ("membership_refused", 409),
    ("membership_at_risk", 409),
    ("transfer_refused", 409),
    ("nothing_to_compact", 409),
    ("log_purged", 410),
    ("payload_too_large", 413),
    ("overflow", 422),
    ("internal", 500),
    ("unavailable", 503),
    ("not_leader", 503),
    ("transfer_failed", 503),
    ("backup_busy", 503),
    ("indeterminate", 504),
];

/// The document's head: title, version, the bearer scheme and the problem
/// schema. [`crate::http::router`] adds every route to it.
pub fn base() -> OpenApi {
    let mut doc = OpenApi::new(
        utoipa::openapi::InfoBuilder::new()
            .title("Keel API")
            .version("v1")
            .description(Some(
                "The public HTTP API of a Keel node (docs/API.md). Errors are \
                 application/problem+json with a stable `type`. Roles: `admin` (the \
                 admin token) may call everything; `owner` (a customer's token) may \
                 call the routes that name it for its own account and orders; \
                 routes without a security requirement are public. Each operation \
                 lists its roles in `x-roles`.",
            ))
            .build(),
        utoipa::openapi::Paths::new(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The admin token (`--admin-token-file` or `KEEL_ADMIN_TOKEN`), or a customer's token from \
                     `POST /v1/accounts/{id}/token`",
                ))
                .build(),
        ),
    );
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    doc
}

/// The schema of a problem+json answer (documentation only: answers are
/// built by [`crate::http::errors::Problem`]).
pub struct Problem;

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let types: Vec<&str> = PROBLEM_TYPES.iter().map(|(t, _)| *t).collect();
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some(
                "RFC 9457 problem details. Typed fields beside the four standard ones \
                 depend on `type` (e.g. `field` of `validation`, `lines` of \
                 `out_of_stock`, the entity of `not_found`).",
            ))
            .property(
                "type",
                string()
                    .enum_values(Some(types))
                    .description(Some("A stable short code")),
            )
            .required("type")
            .property("title", string().description(Some("The type's summary")))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", string().description(Some("What happened here")))
            .required("detail")
            .property(
                "field",
                string().description(Some("`validation`: the field refused")),
            )
            .property(
                "lines",
                ArrayBuilder::new()
                    .items(ShortLine::schema())
                    .description(Some("`out_of_stock`: every short line")),
            )
            .property(
                "limit_bytes",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("`payload_too_large`: the body limit")),
            )
            .into()
    }
}

impl ToSchema for Problem {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ShortLine::name().into_owned(), ShortLine::schema()));
    }
}

/// The schema of a binary body (`application/octet-stream`).
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for Binary {}

/// One problem response per status in `statuses`, each a [`Problem`] in
/// [`PROBLEM_JSON`] naming the types that come with that status.
fn problem_responses(statuses: &[u16]) -> BTreeMap<String, RefOr<Response>> {
    statuses
        .iter()
        .map(|status| {
            let types: Vec<&str> = PROBLEM_TYPES
                .iter()
                .filter(|(_, s)| s == status)
                .map(|(t, _)| *t)
                .collect();
            let mut description = format!("Problem: {}", types.join(", "));
            if *status == 413 {
                description.push_str(&format!(" (bodies are limited to {BODY_BYTES_MAX} bytes)"));
            }
            let content = ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    Problem::name(),
                ))))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

macro_rules! problems {
    ($(#[$doc:meta])* $name:ident: $($status:literal),+) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem_responses(&[$($status),+])
            }
        }
    };
}

problems!(
    /// What a write through the log may answer besides its outcome: a
    /// refused request or command, an unknown entity, a state that refuses
    /// it, a body too large, an amount out of range, a failed store,
    /// nothing applied (503) or an unknown outcome (504).
    WriteProblems: 400, 401, 403, 404, 409, 413, 422, 500, 503, 504
);
problems!(
    /// What a read behind a token may answer besides its value.
    ReadProblems: 400, 401, 403, 404, 500, 503
);
problems!(
    /// What a public read may answer besides its value.
    PublicReadProblems: 400, 404, 500, 503
);
problems!(
    /// What an admin's status read (local, no read index) may answer.
    AdminProblems: 401, 403, 500, 503
);
problems!(
    /// What an admin's call on a path value, with no read or write, may
    /// answer.
    AdminPathProblems: 400, 401, 403
);
problems!(
    /// What a membership change may answer besides the new status.
    MembershipProblems: 400, 401, 403, 409, 413, 503
);
problems!(
    /// What a backup read may answer besides its bytes.
    BackupProblems: 400, 401, 403, 410, 500, 503
);
problems!(
    /// What any route may answer when it is not ready.
    Unavailable: 503
);
