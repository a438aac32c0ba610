//! The OpenAPI 3.1 document of the REST API, built from the route table
//! ([`crate::routes::routes`]): every row becomes one operation, with its access
//! level (`security` plus `x-orion-access`), its parameters, its body and answer
//! schemas (derived with `utoipa` from the `orion-api` types) and the error
//! answers every call can get, all with the one JSON error body. A route cannot
//! exist without its entry, and `GET /v1/openapi.json` serves exactly this.
//!
//! Routes that answer something other than JSON say so in the table
//! ([`Answer::EventStream`], [`Answer::Text`], [`Answer::Html`], [`Answer::Asset`]);
//! they are listed with that media type and `x-orion-content`, never left out.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Access;

/// The error answers every operation documents, each with the JSON error body.
pub const ERROR_STATUSES: [u16; 8] = [400, 401, 403, 404, 409, 413, 429, 503];

/// Named schemas collected for `components/schemas`.
pub type Schemas = BTreeMap<String, Value>;

/// Adds a type's schema (and those it refers to) and returns a `$ref` to it.
pub type SchemaFn = fn(&mut Schemas) -> Value;

/// A path parameter's schema: its name and the schema.
pub type PathSchema = (&'static str, fn() -> Value);

/// A header the operation reads: name, description, schema.
pub type HeaderDoc = (&'static str, &'static str, fn() -> Value);

/// What a route answers on success.
#[derive(Clone, Copy)]
pub enum Answer {
    /// A JSON body of this schema.
    Json(SchemaFn),
    /// Server-sent events (`text/event-stream`).
    EventStream,
    /// Plain text, streamed.
    Text,
    /// An HTML page (the dashboard), not part of the JSON API.
    Html,
    /// A static file (script, style, image), not part of the JSON API.
    Asset,
    /// No body (`204 No Content`).
    Empty,
}

/// One route's documentation: what the table says beyond method, path and access.
#[derive(Clone, Default)]
pub struct Doc {
    pub summary: &'static str,
    pub body: Option<SchemaFn>,
    pub query: Option<fn() -> Vec<Parameter>>,
    pub answer: Option<Answer>,
    /// The success status (200 unless set).
    pub status: Option<u16>,
    /// Error answers beyond [`ERROR_STATUSES`] (e.g. 410 for a watch).
    pub extra_errors: &'static [u16],
    /// Path parameters whose schema is not a plain non-empty string.
    pub path_schemas: &'static [PathSchema],
    /// Headers the operation reads: name, description, schema.
    pub headers: &'static [HeaderDoc],
}

/// `$ref` to `T`, adding `T` and every schema it uses.
pub fn schema_of<T: ToSchema>(schemas: &mut Schemas) -> Value {
    let mut used = Vec::new();
    T::schemas(&mut used);
    for (name, schema) in used {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    let name = T::name().into_owned();
    schemas.insert(
        name.clone(),
        serde_json::to_value(T::schema()).unwrap_or(Value::Null),
    );
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An array of `T`.
pub fn list_of<T: ToSchema>(schemas: &mut Schemas) -> Value {
    json!({ "type": "array", "items": schema_of::<T>(schemas) })
}

/// A type's query parameters.
pub fn query_of<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

/// How the document names an access level (`x-orion-access`).
pub fn access_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Read => "read",
        Access::Write => "write",
        Access::Sessions => "sessions",
        Access::Admin => "admin",
        Access::AdminOrPeer => "admin_or_peer",
        Access::Peer => "peer",
        Access::Certified => "certified",
    }
}

/// Who may call a route of this access level, for its description.
fn access_text(access: Access) -> &'static str {
    match access {
        Access::Public => "anyone, no credentials",
        Access::Read => "any API token (readonly, developer, admin)",
        Access::Write => "a developer or admin token",
        Access::Sessions => "a developer or admin token (logs may hold secrets)",
        Access::Admin => "an admin token",
        Access::AdminOrPeer => "an admin token, or a peer's server certificate",
        Access::Peer => "a peer's server certificate",
        Access::Certified => "any certificate of this cluster",
    }
}

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Read | Access::Write | Access::Sessions | Access::Admin => {
            json!([{ "bearer": [] }])
        }
        Access::AdminOrPeer => json!([{ "bearer": [] }, { "peerCertificate": [] }]),
        Access::Peer => json!([{ "peerCertificate": [] }]),
        Access::Certified => json!([{ "clusterCertificate": [] }]),
    }
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Bad input: the message names the field or the limit (`invalid_argument`)",
        401 => "No credentials, or a token that is expired, revoked or not of this cluster (`unauthenticated`)",
        403 => "The credentials may not make this call (`permission_denied`)",
        404 => "The object does not exist (`not_found`); a path no route has is `no_such_route`",
        405 => "The method is not allowed on this path (`method_not_allowed`)",
        409 => "A compare-and-set or create found another revision (`conflict`): `current_revision` and `current_value` say what is there now",
        410 => "The position left the event window: list again (`relist_required`)",
        413 => "The body is over the size limit (`payload_too_large`)",
        429 => "Too many concurrent sessions of this kind (`too_many_requests`)",
        503 => "No leader could be reached within the hold time (`unavailable`); `leader_hint` names the last known leader",
        _ => "An error",
    }
}

/// `{name}` and `{*name}` segments of an axum path, and the path as OpenAPI
/// writes it (`{name}` for both).
fn path_template(path: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*').to_string();
                    let out = format!("{{{name}}}");
                    names.push(name);
                    out
                }
                None => segment.to_string(),
            },
        )
        .collect();
    (segments.join("/"), names)
}

fn success_content(answer: Answer, schemas: &mut Schemas) -> (Value, &'static str) {
    match answer {
        Answer::Json(f) => (
            json!({ "application/json": { "schema": f(schemas) } }),
            "json",
        ),
        Answer::EventStream => (
            json!({ "text/event-stream": { "schema": {
                "type": "object",
                "description": "one server-sent event: `event` is `put`, `delete` or `error`; `data` the JSON event (or error body); `id` its cursor REV.SEQ",
                "properties": {
                    "event": { "type": "string" },
                    "data": { "type": "string" },
                    "id": { "type": "string" },
                    "retry": { "type": "integer" }
                }
            } } }),
            "event_stream",
        ),
        Answer::Text => (
            json!({ "text/plain": { "schema": { "type": "string" } } }),
            "text",
        ),
        Answer::Html => (
            json!({ "text/html": { "schema": { "type": "string" } } }),
            "html",
        ),
        Answer::Asset => (
            json!({ "application/octet-stream": { "schema": { "type": "string" } } }),
            "asset",
        ),
        Answer::Empty => (Value::Null, "empty"),
    }
}

/// One route's operation object.
fn operation(
    method: &Method,
    path: &str,
    access: Access,
    doc: &Doc,
    schemas: &mut Schemas,
) -> Value {
    let (_, names) = path_template(path);
    let mut parameters: Vec<Value> = names
        .iter()
        .map(|name| {
            let schema = doc
                .path_schemas
                .iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| json!({ "type": "string", "minLength": 1 }), |(_, f)| f());
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    if let Some(query) = doc.query {
        parameters.extend(
            query()
                .into_iter()
                .map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
        );
    }
    for (name, description, schema) in doc.headers {
        parameters.push(json!({
            "name": name, "in": "header", "required": false,
            "description": description, "schema": schema()
        }));
    }
    let mut responses = Map::new();
    let status = doc.status.unwrap_or(200);
    let (content, kind) = match doc.answer {
        Some(answer) => success_content(answer, schemas),
        None => (json!({}), "none"),
    };
    let success = if content.is_null() {
        json!({ "description": "Success, no content" })
    } else {
        json!({ "description": "Success", "content": content })
    };
    responses.insert(status.to_string(), success);
    let mut errors: Vec<u16> = ERROR_STATUSES.to_vec();
    errors.extend(doc.extra_errors);
    errors.sort_unstable();
    errors.dedup();
    for e in errors {
        responses.insert(
            e.to_string(),
            json!({ "$ref": format!("#/components/responses/Error{e}") }),
        );
    }
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(method, path)));
    op.insert("summary".into(), json!(doc.summary));
    op.insert(
        "description".into(),
        json!(format!("Access: {}.", access_text(access))),
    );
    op.insert("security".into(), security(access));
    op.insert("x-orion-access".into(), json!(access_name(access)));
    op.insert("x-orion-content".into(), json!(kind));
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = doc.body {
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": body(schemas) } } }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// `get_v1_variables_path`: unique per method and path.
fn operation_id(method: &Method, path: &str) -> String {
    let mut id = method.as_str().to_ascii_lowercase();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

/// The whole document, from `(method, path, access, doc)` rows.
pub fn document<'a>(
    rows: impl IntoIterator<Item = (&'a Method, &'a str, Access, &'a Doc)>,
) -> Value {
    let mut schemas = Schemas::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (method, path, access, doc) in rows {
        let (template, _) = path_template(path);
        let op = operation(method, path, access, doc, &mut schemas);
        paths
            .entry(template)
            .or_default()
            .insert(method.as_str().to_ascii_lowercase(), op);
    }
    let error_ref = schema_of::<orion_api::ErrorBody>(&mut schemas);
    let error_responses: Map<String, Value> = [400, 401, 403, 404, 405, 409, 410, 413, 429, 503]
        .into_iter()
        .map(|e: u16| {
            (
                format!("Error{e}"),
                json!({
                    "description": error_description(e),
                    "content": { "application/json": { "schema": error_ref.clone() } }
                }),
            )
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Orion",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API every Orion peer serves. Every error answer is `{\"error\": {\"code\", \"message\", ...}}` with a stable machine-readable `code`; a 409 also carries `current_revision` and `current_value`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": error_responses,
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "orion token",
                    "description": "`Authorization: Bearer orion.…`, from `orion token create`"
                },
                "peerCertificate": {
                    "type": "mutualTLS",
                    "description": "the client certificate of a peer (role server) of this cluster"
                },
                "clusterCertificate": {
                    "type": "mutualTLS",
                    "description": "any client certificate this cluster's CA issued"
                }
            }
        }
    })
}

/// The document pretty-printed, as `docs/openapi.json` holds it (with a final newline).
pub fn document_text(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_drop_the_wildcard_star() {
        assert_eq!(
            path_template("/v1/variables/{*path}"),
            ("/v1/variables/{path}".to_string(), vec!["path".to_string()])
        );
        assert_eq!(
            operation_id(&Method::DELETE, "/v1/cluster/members/{id}"),
            "delete_v1_cluster_members_id"
        );
    }
}
