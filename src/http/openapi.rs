//! The admin API's OpenAPI 3.0 document, built from one table of
//! operations. A test walks it against the live router, so the document and
//! the routes cannot drift apart unnoticed.
use serde_json::{Map, Value, json};

/// (method, path, operation id, summary, roles, query parameters, request body)
type Op = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
);

const BASE: &str = "/admin/api/v1/realms";

pub const OPERATIONS: &[Op] = &[
    ("get", "", "listRealms", "Realms the caller may read", "realm-admin, auditor", &[], None),
    ("get", "/{realm}", "getRealm", "A realm's settings (with ETag)", "realm-admin, auditor", &[], None),
    (
        "put",
        "/{realm}",
        "updateRealm",
        "Replace a realm's settings (If-Match)",
        "realm-admin",
        &[],
        Some("RealmUpdate"),
    ),
    (
        "get",
        "/{realm}/clients",
        "listClients",
        "Clients of a realm",
        "realm-admin, auditor",
        &["offset", "limit"],
        None,
    ),
    (
        "post",
        "/{realm}/clients",
        "createClient",
        "Register a client; its secret is shown once",
        "realm-admin",
        &[],
        Some("ClientCreate"),
    ),
    ("get", "/{realm}/clients/{client_id}", "getClient", "A client (with ETag)", "realm-admin, auditor", &[], None),
    (
        "put",
        "/{realm}/clients/{client_id}",
        "updateClient",
        "Change or disable a client (If-Match)",
        "realm-admin",
        &[],
        Some("ClientUpdate"),
    ),
    (
        "post",
        "/{realm}/clients/{client_id}/secret",
        "rotateClientSecret",
        "A new client secret, shown once",
        "realm-admin",
        &[],
        None,
    ),
    ("get", "/{realm}/keys", "listKeys", "Signing keys and their state", "realm-admin, auditor", &[], None),
    (
        "post",
        "/{realm}/keys/rotate",
        "rotateKeys",
        "Publish new keys; they sign after the lead time",
        "realm-admin",
        &[],
        Some("KeyRotation"),
    ),
    (
        "get",
        "/{realm}/users",
        "searchUsers",
        "Find a person by phone, email or username (blind index)",
        "realm-admin, helpdesk",
        &["phone", "email", "username"],
        None,
    ),
    (
        "get",
        "/{realm}/users/{id}",
        "getUser",
        "A person, masked; unmasked=true needs pii-reader and is audited",
        "realm-admin, helpdesk, pii-reader",
        &["unmasked"],
        None,
    ),
    (
        "get",
        "/{realm}/users/{id}/enterprises",
        "getUserEnterprises",
        "The enterprises a person represents or acts for, with the agents they appointed",
        "realm-admin, helpdesk, auditor",
        &[],
        None,
    ),
    (
        "post",
        "/{realm}/users/{id}/disable",
        "disableUser",
        "Disable an account and end its sessions",
        "realm-admin, helpdesk",
        &[],
        None,
    ),
    ("post", "/{realm}/users/{id}/enable", "enableUser", "Enable an account", "realm-admin, helpdesk", &[], None),
    (
        "post",
        "/{realm}/users/{id}/sessions/end",
        "endUserSessions",
        "End every session of a person",
        "realm-admin, helpdesk",
        &[],
        None,
    ),
    (
        "post",
        "/{realm}/users/{id}/password/reset",
        "resetUserPassword",
        "Set a one-time password (shown once) and end sessions",
        "realm-admin, helpdesk",
        &[],
        None,
    ),
    (
        "post",
        "/{realm}/users/{id}/identity/in-person",
        "verifyUserInPerson",
        "Record an in-person identity check at a service hall (L5), with who did it",
        "realm-admin, helpdesk",
        &[],
        Some("InPersonCheck"),
    ),
    (
        "post",
        "/{realm}/users/{id}/factors/reset",
        "resetUserFactors",
        "Remove the passkeys and authenticator apps of a person and end sessions",
        "realm-admin, helpdesk",
        &[],
        None,
    ),
    (
        "get",
        "/{realm}/enterprises",
        "searchEnterprises",
        "Claimed enterprises: the one with a credit code (uscc, blind index), or all a page at a time",
        "realm-admin, helpdesk, auditor",
        &["uscc", "offset", "limit"],
        None,
    ),
    (
        "get",
        "/{realm}/enterprises/{enterprise}",
        "getEnterprise",
        "An enterprise: registry status, claim, representative and agents (masked), every delegation; \
         unmasked=true needs pii-reader and is audited",
        "realm-admin, helpdesk, auditor, pii-reader",
        &["unmasked"],
        None,
    ),
    (
        "get",
        "/{realm}/audit",
        "queryAudit",
        "Audit entries, newest first (cursor: before)",
        "realm-admin, auditor",
        &["kind", "actor", "client_id", "since", "until", "before", "limit"],
        None,
    ),
    (
        "get",
        "/{realm}/statistics",
        "statistics",
        "Accounts, sessions, sign-ins and tokens per day",
        "realm-admin, auditor, helpdesk",
        &["days"],
        None,
    ),
    (
        "get",
        "/{realm}/logout-deliveries",
        "listLogoutDeliveries",
        "Back-channel logout deliveries per portal and ended session (pending, delivered, failed), with every attempt, newest first",
        "realm-admin, auditor, helpdesk",
        &["client_id", "state", "user_id", "session_id", "limit"],
        None,
    ),
];

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

fn query_param(name: &str) -> Value {
    let schema = match name {
        "offset" | "limit" | "since" | "until" | "before" | "days" => json!({ "type": "integer", "format": "int64" }),
        "unmasked" => json!({ "type": "boolean" }),
        _ => json!({ "type": "string" }),
    };
    json!({ "name": name, "in": "query", "required": false, "schema": schema })
}

fn responses(method: &str, has_etag: bool) -> Value {
    let problem =
        json!({ "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } });
    let mut ok =
        json!({ "description": "success", "content": { "application/json": { "schema": { "type": "object" } } } });
    if has_etag && let Some(o) = ok.as_object_mut() {
        o.insert("headers".into(), json!({ "ETag": { "schema": { "type": "string" } } }));
    }
    let mut r = Map::new();
    r.insert(if method == "post" && has_etag { "201".into() } else { "200".into() }, ok);
    for (code, what) in [
        ("400", "malformed request"),
        ("401", "no valid admin token"),
        ("403", "role not allowed in this realm"),
        ("404", "not found"),
        ("503", "storage unavailable"),
    ] {
        let mut p = problem.clone();
        if let Some(o) = p.as_object_mut() {
            o.insert("description".into(), json!(what));
        }
        r.insert(code.into(), p);
    }
    if method == "put" {
        r.insert("412".into(), json!({ "description": "the ETag in If-Match is stale" }));
        r.insert("428".into(), json!({ "description": "If-Match is required" }));
    }
    Value::Object(r)
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, id, summary, roles, query, body) in OPERATIONS {
        let full = format!("{BASE}{path}");
        let mut params = path_params(&full);
        params.extend(query.iter().map(|q| query_param(q)));
        if *method == "put" {
            params
                .push(json!({ "name": "If-Match", "in": "header", "required": true, "schema": { "type": "string" } }));
        }
        let has_etag = (*method == "get"
            && path.contains('{')
            && !path.ends_with("users")
            && !path.ends_with("audit")
            && !path.contains("enterprises")
            && !path.ends_with("logout-deliveries"))
            || *method == "put"
            || (*method == "post" && *id == "createClient");
        let mut op = json!({
            "operationId": id,
            "summary": summary,
            "description": format!("Roles: {roles}."),
            "parameters": params,
            "responses": responses(method, has_etag),
            "security": [{ "adminToken": [] }],
        });
        if let (Some(schema), Some(o)) = (body, op.as_object_mut()) {
            o.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
            );
        }
        let entry = paths.entry(full).or_insert_with(|| json!({}));
        if let Some(o) = entry.as_object_mut() {
            o.insert(method.to_string(), op);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "civid admin API",
            "version": "1",
            "description": "Operators' API. Authenticate with an access token of the admin realm issued for the audience urn:civid:admin-api (resource parameter). Every change is audited.",
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "adminToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Problem": { "type": "object", "properties": {
                    "type": { "type": "string" }, "title": { "type": "string" },
                    "status": { "type": "integer" }, "detail": { "type": "string" } } },
                "RealmUpdate": { "type": "object", "required": ["settings"], "properties": { "settings": { "type": "object" } } },
                "ClientCreate": { "type": "object", "required": ["client_id", "settings"], "properties": {
                    "client_id": { "type": "string" }, "settings": { "type": "object" } } },
                "ClientUpdate": { "type": "object", "required": ["settings"], "properties": {
                    "settings": { "type": "object" }, "enabled": { "type": "boolean" } } },
                "InPersonCheck": { "type": "object", "required": ["id_number", "name"], "properties": {
                    "id_number": { "type": "string" }, "name": { "type": "string" } } },
                "KeyRotation": { "type": "object", "properties": {
                    "algs": { "type": "array", "items": { "type": "string", "enum": ["RS256", "ES256", "EdDSA"] } },
                    "lead_secs": { "type": "integer" } } },
            },
        },
    })
}
