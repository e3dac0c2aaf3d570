//! Octavia's v2 REST API, so the openstack CLI, openstacksdk, Terraform and gophercloud can drive
//! lbaas: `/v2` and `/v2.0` (version discovery at `/`), Octavia's JSON, `X-Auth-Token` carrying the
//! same tokens and JWTs as gRPC's bearer, and Neutron's subnet and network lookups answered from
//! the scheduler's networks. Every call goes through the gRPC service code: one behaviour.
pub mod handlers;
pub mod input;
pub mod json;
pub mod keystone;
pub mod listing;

use std::{future::Future, sync::Arc};

use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use lbaas::scheduler::v1::scheduler_service_client::SchedulerServiceClient;
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};

use crate::service::{QuotaApi, TenantApi};

/// What the REST handlers share: the same service objects the gRPC server runs.
#[derive(Clone)]
pub struct Rest {
    pub api: Arc<TenantApi>,
    pub quotas: Arc<QuotaApi>,
    pub scheduler: SchedulerServiceClient<Channel>,
    /// The scheduler's provider API, for admins' amphora (device) reads; the caller's token goes
    /// with each call, and the scheduler checks it too.
    pub devices: lbaas::scheduler::v1::device_service_client::DeviceServiceClient<Channel>,
    pub quota_defaults: crate::store::QuotaLimits,
    /// Serve the minimal Keystone v3 token endpoint (`keystone.rs`).
    pub keystone: bool,
}

/// An Octavia error: `{"faultcode", "faultstring", "debuginfo"}` with its HTTP code.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub message: String,
}

impl RestError {
    pub fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    pub fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl From<tonic::Status> for RestError {
    fn from(status: tonic::Status) -> Self {
        use tonic_types::StatusExt as _;
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            // Octavia answers an exceeded quota with 403.
            Code::PermissionDenied | Code::ResourceExhausted => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut message = status.message().to_owned();
        if let Some(bad) = status.get_details_bad_request() {
            for v in bad.field_violations {
                let violation = format!("{}: {}", v.field, v.description);
                if !message.contains(&violation) {
                    message.push_str(&format!("; {violation}"));
                }
            }
        }
        Self {
            status: code,
            message,
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let faultcode = if self.status.is_server_error() {
            "Server"
        } else {
            "Client"
        };
        (
            self.status,
            Json(serde_json::json!({
                "faultcode": faultcode,
                "faultstring": self.message,
                "debuginfo": null,
            })),
        )
            .into_response()
    }
}

/// The gRPC metadata a REST call stands for: `X-Auth-Token` becomes the bearer token;
/// `X-Project-Id` passes as it is (honoured only where the operator allows it).
pub fn metadata(headers: &HeaderMap) -> Result<tonic::metadata::MetadataMap, RestError> {
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(token) = headers.get("x-auth-token") {
        let value = token
            .to_str()
            .ok()
            .and_then(|t| format!("Bearer {t}").parse().ok())
            .ok_or_else(|| RestError {
                status: StatusCode::UNAUTHORIZED,
                message: "X-Auth-Token is not a valid token".into(),
            })?;
        md.insert("authorization", value);
    }
    if let Some(project) = headers
        .get("x-project-id")
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.parse().ok())
    {
        md.insert("x-project-id", project);
    }
    Ok(md)
}

/// A gRPC request carrying the REST call's credentials.
pub fn request<T>(headers: &HeaderMap, message: T) -> Result<tonic::Request<T>, RestError> {
    Ok(tonic::Request::from_parts(
        metadata(headers)?,
        Default::default(),
        message,
    ))
}

/// The API's URL as the client reached it (for links): `http://HOST`.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Octavia's API versions: the 2.x line, all served at `/v2`.
const VERSIONS: &[(&str, &str)] = &[("v2.0", "SUPPORTED"), ("v2.27", "CURRENT")];

fn version(origin: &str, id: &str, status: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "status": status,
        "updated": "2023-01-01T00:00:00Z",
        "links": [{"href": format!("{origin}/v2"), "rel": "self"}],
    })
}

async fn versions(headers: HeaderMap) -> Json<serde_json::Value> {
    let origin = origin(&headers);
    Json(serde_json::json!({
        "versions": VERSIONS
            .iter()
            .map(|(id, status)| version(&origin, id, status))
            .collect::<Vec<_>>(),
    }))
}

async fn this_version(headers: HeaderMap) -> Json<serde_json::Value> {
    let origin = origin(&headers);
    let (id, status) = VERSIONS[VERSIONS.len() - 1];
    Json(serde_json::json!({ "version": version(&origin, id, status) }))
}

/// The REST routes under `/v2` and `/v2.0`, and discovery at `/`.
pub fn router(rest: Rest) -> Router {
    use handlers as h;
    let mut router = Router::new().route("/", get(versions));
    for v in ["/v2", "/v2.0"] {
        let lbaas = format!("{v}/lbaas");
        router = router
            .route(v, get(this_version))
            .route(
                &format!("{lbaas}/loadbalancers"),
                get(h::list_load_balancers).post(h::create_load_balancer),
            )
            .route(
                &format!("{lbaas}/loadbalancers/{{id}}"),
                get(h::get_load_balancer)
                    .put(h::update_load_balancer)
                    .delete(h::delete_load_balancer),
            )
            .route(
                &format!("{lbaas}/loadbalancers/{{id}}/status"),
                get(h::load_balancer_status),
            )
            .route(
                &format!("{lbaas}/loadbalancers/{{id}}/stats"),
                get(h::load_balancer_stats),
            )
            .route(
                &format!("{lbaas}/loadbalancers/{{id}}/failover"),
                put(h::failover_load_balancer),
            )
            .route(
                &format!("{lbaas}/listeners"),
                get(h::list_listeners).post(h::create_listener),
            )
            .route(
                &format!("{lbaas}/listeners/{{id}}"),
                get(h::get_listener)
                    .put(h::update_listener)
                    .delete(h::delete_listener),
            )
            .route(
                &format!("{lbaas}/listeners/{{id}}/stats"),
                get(h::listener_stats),
            )
            .route(
                &format!("{lbaas}/pools"),
                get(h::list_pools).post(h::create_pool),
            )
            .route(
                &format!("{lbaas}/pools/{{id}}"),
                get(h::get_pool).put(h::update_pool).delete(h::delete_pool),
            )
            .route(
                &format!("{lbaas}/pools/{{id}}/members"),
                get(h::list_members)
                    .post(h::create_member)
                    .put(h::batch_members),
            )
            .route(
                &format!("{lbaas}/pools/{{id}}/members/{{member}}"),
                get(h::get_member)
                    .put(h::update_member)
                    .delete(h::delete_member),
            )
            .route(
                &format!("{lbaas}/healthmonitors"),
                get(h::list_health_monitors).post(h::create_health_monitor),
            )
            .route(
                &format!("{lbaas}/healthmonitors/{{id}}"),
                get(h::get_health_monitor)
                    .put(h::update_health_monitor)
                    .delete(h::delete_health_monitor),
            )
            .route(
                &format!("{lbaas}/l7policies"),
                get(h::list_l7_policies).post(h::create_l7_policy),
            )
            .route(
                &format!("{lbaas}/l7policies/{{id}}"),
                get(h::get_l7_policy)
                    .put(h::update_l7_policy)
                    .delete(h::delete_l7_policy),
            )
            .route(
                &format!("{lbaas}/l7policies/{{id}}/rules"),
                get(h::list_l7_rules).post(h::create_l7_rule),
            )
            .route(
                &format!("{lbaas}/l7policies/{{id}}/rules/{{rule}}"),
                get(h::get_l7_rule)
                    .put(h::update_l7_rule)
                    .delete(h::delete_l7_rule),
            )
            .route(&format!("{lbaas}/quotas"), get(h::list_quotas))
            .route(&format!("{lbaas}/quotas/defaults"), get(h::quota_defaults))
            .route(
                &format!("{lbaas}/quotas/{{project}}"),
                get(h::get_quota).put(h::set_quota).delete(h::reset_quota),
            )
            .route(&format!("{lbaas}/providers"), get(h::list_providers))
            .route(
                &format!("{lbaas}/providers/{{provider}}/flavor_capabilities"),
                get(h::provider_flavor_capabilities),
            )
            .route(
                &format!("{lbaas}/providers/{{provider}}/availability_zone_capabilities"),
                get(h::provider_zone_capabilities),
            )
            .route(&format!("{lbaas}/flavors"), get(h::list_flavors))
            .route(&format!("{lbaas}/flavors/{{id}}"), get(h::get_flavor))
            .route(
                &format!("{lbaas}/availabilityzones"),
                get(h::list_availability_zones),
            )
            .route(
                &format!("{lbaas}/availabilityzones/{{name}}"),
                get(h::get_availability_zone),
            )
            .route(&format!("{v}/octavia/amphorae"), get(h::list_amphorae))
            .route(&format!("{v}/octavia/amphorae/{{id}}"), get(h::get_amphora))
            .route(&format!("{v}/subnets"), get(h::list_subnets))
            .route(&format!("{v}/subnets/{{id}}"), get(h::get_subnet))
            .route(&format!("{v}/networks"), get(h::list_networks))
            .route(&format!("{v}/networks/{{id}}"), get(h::get_network));
    }
    // Keystone's project lookups (the CLI resolves `quota show PROJECT` through them).
    for prefix in ["", "/v3"] {
        router = router
            .route(&format!("{prefix}/projects"), get(h::list_projects))
            .route(&format!("{prefix}/projects/{{id}}"), get(h::get_project));
    }
    if rest.keystone {
        use keystone as k;
        router = router.route("/v3", get(k::discovery)).route(
            "/v3/auth/tokens",
            axum::routing::post(k::issue)
                .get(k::validate)
                .head(k::validate),
        );
    }
    router
        .fallback(|| async {
            RestError::not_found("no such resource in this API (Octavia v2 lives under /v2)".into())
        })
        .with_state(rest)
}

/// Serves the REST API on `listener` until `shutdown` resolves. A trailing slash is the same URL
/// without it (clients differ on it).
pub async fn serve(
    listener: TcpListener,
    rest: Rest,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt as _;
    let app = router(rest).map_request(|mut req: axum::extract::Request| {
        let path = req.uri().path();
        if path.len() > 1 && path.ends_with('/') {
            let trimmed = path.trim_end_matches('/');
            let rebuilt = match req.uri().query() {
                Some(q) => format!("{trimmed}?{q}"),
                None => trimmed.to_owned(),
            };
            if let Ok(uri) = rebuilt.parse() {
                *req.uri_mut() = uri;
            }
        }
        req
    });
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
