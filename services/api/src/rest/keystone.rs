//! A minimal Keystone v3 token endpoint beside the REST API (off unless `--rest-keystone`), for
//! clients that insist on password auth (openstacksdk's functional tests, clouds.yaml with
//! `auth_type: password`): `GET /v3`, `POST /v3/auth/tokens` and `GET`/`HEAD /v3/auth/tokens`.
//! There are no users here: the password is a token the api already accepts (a token-file line
//! or a JWT), the user name must be that token's project, and a scope, when given, must name the
//! same project. The issued token is that same token, so every later call is checked exactly as a
//! gRPC bearer token is; the catalog points load-balancer, network and identity at this origin.
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use lbaas::server::tokens::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Rest, RestError, origin};
use crate::auth::Caller;

/// How long clients may cache an issued token (it stays valid while the api accepts the secret).
const TOKEN_LIFETIME_S: i64 = 12 * 3600;

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    auth: Auth,
}

#[derive(Debug, Deserialize)]
struct Auth {
    identity: Identity,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Identity {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Debug, Deserialize)]
struct PasswordMethod {
    user: User,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    password: String,
}

#[derive(Debug, Deserialize)]
struct TokenMethod {
    id: String,
}

fn unauthorized(message: &str) -> RestError {
    RestError {
        status: StatusCode::UNAUTHORIZED,
        message: message.to_owned(),
    }
}

/// The project and role a secret stands for, as the gRPC API would see it.
fn owner(rest: &Rest, secret: &str) -> Result<Caller, RestError> {
    let mut md = tonic::metadata::MetadataMap::new();
    let bearer = format!("Bearer {secret}")
        .parse()
        .map_err(|_| unauthorized("the credentials are not valid"))?;
    md.insert("authorization", bearer);
    rest.api
        .auth
        .caller(&md)
        .map_err(|_| unauthorized("the credentials are not valid"))
}

/// The project a scope names (by name or id), if it names one.
fn scoped_project(scope: Option<&Value>) -> Option<String> {
    let project = scope?.get("project")?;
    project
        .get("name")
        .or_else(|| project.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Keystone's timestamp form of a Unix time in seconds.
fn iso8601(unix_s: i64) -> String {
    let civil = super::json::iso8601(unix_s.saturating_mul(1000))
        .unwrap_or_else(|| "1970-01-01T00:00:00".to_owned());
    format!("{civil}.000000Z")
}

fn endpoint(kind: &str, name: &str, url: &str) -> Value {
    let endpoints: Vec<Value> = ["public", "internal", "admin"]
        .iter()
        .map(|interface| {
            json!({
                "id": format!("{kind}-{interface}"),
                "interface": interface,
                "region": "RegionOne",
                "region_id": "RegionOne",
                "url": url,
            })
        })
        .collect();
    json!({"type": kind, "name": name, "id": kind, "endpoints": endpoints})
}

/// Keystone's token body for `caller`, with the catalog at `origin`.
fn token_body(caller: &Caller, methods: &[String], origin: &str) -> Value {
    let now = now_s();
    let domain = json!({"id": "default", "name": "Default"});
    let mut roles = vec![json!({"id": "reader", "name": "reader"})];
    if matches!(caller.role, Role::Member | Role::Admin) {
        roles.push(json!({"id": "member", "name": "member"}));
    }
    if caller.role == Role::Admin {
        roles.push(json!({"id": "admin", "name": "admin"}));
    }
    json!({
        "token": {
            "methods": methods,
            "user": {"id": caller.project_id, "name": caller.project_id, "domain": domain},
            "project": {"id": caller.project_id, "name": caller.project_id, "domain": domain},
            "roles": roles,
            "issued_at": iso8601(now),
            "expires_at": iso8601(now + TOKEN_LIFETIME_S),
            "audit_ids": [],
            "catalog": [
                endpoint("load-balancer", "octavia", origin),
                endpoint("network", "neutron", origin),
                endpoint("identity", "keystone", &format!("{origin}/v3")),
            ],
        }
    })
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn with_subject(status: StatusCode, token: &str, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(token) {
        response.headers_mut().insert("x-subject-token", value);
    }
    response
}

/// `GET /v3`: Keystone's version document.
pub async fn discovery(headers: HeaderMap) -> Json<Value> {
    let origin = origin(&headers);
    Json(json!({
        "version": {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": format!("{origin}/v3/")}],
            "media-types": [{"base": "application/json",
                "type": "application/vnd.openstack.identity-v3+json"}],
        }
    }))
}

/// `POST /v3/auth/tokens`: a password (or token) for a token, 201 with `X-Subject-Token`.
pub async fn issue(
    State(rest): State<Rest>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, RestError> {
    let request: TokenRequest =
        serde_json::from_slice(&body).map_err(|e| RestError::bad_request(format!("auth: {e}")))?;
    let identity = request.auth.identity;
    let (secret, user) = if identity.methods.iter().any(|m| m == "password") {
        let password = identity
            .password
            .ok_or_else(|| RestError::bad_request("auth.identity.password is required".into()))?;
        let user = password.user.name.or(password.user.id);
        (password.user.password, user)
    } else if identity.methods.iter().any(|m| m == "token") {
        let token = identity
            .token
            .ok_or_else(|| RestError::bad_request("auth.identity.token is required".into()))?;
        (token.id, None)
    } else {
        return Err(RestError::bad_request(
            "auth.identity.methods: only password and token are supported".into(),
        ));
    };
    let caller = owner(&rest, &secret)?;
    if user.as_deref().is_some_and(|u| u != caller.project_id) {
        return Err(unauthorized("the credentials are not valid"));
    }
    if let Some(project) = scoped_project(request.auth.scope.as_ref())
        && project != caller.project_id
    {
        return Err(unauthorized(
            "the credentials do not give access to that project",
        ));
    }
    Ok(with_subject(
        StatusCode::CREATED,
        &secret,
        token_body(&caller, &identity.methods, &origin(&headers)),
    ))
}

/// `GET /v3/auth/tokens`: validates `X-Subject-Token` (the caller's `X-Auth-Token` must be valid
/// too) and returns its body.
pub async fn validate(State(rest): State<Rest>, headers: HeaderMap) -> Result<Response, RestError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let auth = header("x-auth-token").ok_or_else(|| unauthorized("X-Auth-Token is required"))?;
    owner(&rest, &auth)?;
    let subject = header("x-subject-token").unwrap_or(auth);
    let caller = owner(&rest, &subject).map_err(|_| RestError {
        status: StatusCode::NOT_FOUND,
        message: "the subject token is not valid".into(),
    })?;
    Ok(with_subject(
        StatusCode::OK,
        &subject,
        token_body(&caller, &["token".to_owned()], &origin(&headers)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso8601() {
        assert_eq!(iso8601(1), "1970-01-01T00:00:01.000000Z");
        assert_eq!(iso8601(1_796_400_000), "2026-12-04T16:00:00.000000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn scopes_name_projects_by_name_or_id() {
        let by_name = json!({"project": {"name": "demo", "domain": {"name": "Default"}}});
        assert_eq!(scoped_project(Some(&by_name)).as_deref(), Some("demo"));
        let by_id = json!({"project": {"id": "p1"}});
        assert_eq!(scoped_project(Some(&by_id)).as_deref(), Some("p1"));
        assert_eq!(
            scoped_project(Some(&json!({"system": {"all": true}}))),
            None
        );
        assert_eq!(scoped_project(None), None);
    }
}
