//! The connection to the tenant API: the three services with the caller's credentials on every
//! request, gRPC errors turned into readable ones, names resolved to ids, and every page of a list.
//! Also the connection to the scheduler's provider API, for the operator commands.
use std::time::Duration;

use anyhow::Context as _;
use lbaas::{
    api::v1::{
        self as pb, certificate_service_client::CertificateServiceClient,
        load_balancer_service_client::LoadBalancerServiceClient,
        quota_service_client::QuotaServiceClient,
    },
    scheduler::v1::{self as spb, device_service_client::DeviceServiceClient},
};
use tonic::{
    metadata::{Ascii, AsciiMetadataValue, MetadataKey},
    service::interceptor::InterceptedService,
    transport::Channel,
};

/// Adds the caller's credentials: `authorization: Bearer TOKEN`, or `x-project-id`.
#[derive(Clone)]
pub struct Credentials {
    key: MetadataKey<Ascii>,
    value: AsciiMetadataValue,
}

impl Credentials {
    pub fn new(project: &str, token: Option<&str>) -> anyhow::Result<Self> {
        Ok(match token {
            Some(token) => Self {
                key: MetadataKey::from_static("authorization"),
                value: format!("Bearer {token}")
                    .parse()
                    .context("the token is not printable ASCII")?,
            },
            None => Self {
                key: MetadataKey::from_static("x-project-id"),
                value: project
                    .parse()
                    .context("the project is not printable ASCII")?,
            },
        })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(self.key.clone(), self.value.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Credentials>;

/// A gRPC error as the CLI shows it: `CODE: message`, then each field violation on a line.
#[derive(Debug)]
pub struct ApiError {
    pub code: tonic::Code,
    pub message: String,
    pub violations: Vec<(String, String)>,
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`): the one table, beside the metrics that
/// label calls with it.
pub use lbaas::server::metrics::code_name;

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic_types::StatusExt as _;
        let violations: Vec<(String, String)> = status
            .get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| (v.field, v.description))
                    .collect()
            })
            .unwrap_or_default();
        // The api repeats the violations in its message; they are listed below instead.
        let joined = violations
            .iter()
            .map(|(f, d)| format!("{f}: {d}"))
            .collect::<Vec<_>>()
            .join("; ");
        let message = match status.message().strip_suffix(&joined) {
            Some(head) if !joined.is_empty() => head.trim_end_matches([':', ' ']).to_owned(),
            _ => status.message().to_owned(),
        };
        Self {
            code: status.code(),
            message,
            violations,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", code_name(self.code), self.message)?;
        for (field, description) in &self.violations {
            write!(f, "\n  {field}: {description}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// `.api()?` on a call's result: the message, or a readable error.
pub trait CallExt<T> {
    fn api(self) -> Result<T, ApiError>;
}

impl<T> CallExt<T> for Result<tonic::Response<T>, tonic::Status> {
    fn api(self) -> Result<T, ApiError> {
        self.map(tonic::Response::into_inner)
            .map_err(ApiError::from)
    }
}

/// Whether `s` looks like an id (a UUID), as opposed to a name.
pub fn is_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The one id among `candidates` (id, name) named `arg`.
fn pick(kind: &str, arg: &str, candidates: Vec<(String, String)>) -> anyhow::Result<String> {
    let mut found: Vec<String> = candidates
        .into_iter()
        .filter(|(id, name)| id == arg || name == arg)
        .map(|(id, _)| id)
        .collect();
    match found.len() {
        0 => anyhow::bail!("no {kind} with the name or id {arg:?}"),
        1 => Ok(found.remove(0)),
        n => anyhow::bail!("{n} {kind}s are named {arg:?}; use the id"),
    }
}

const PAGE: i32 = 1000;

/// A channel to `url`, or an error naming `what` could not be reached.
async fn channel(url: &str, what: &str) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url:?} is not a URL"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the {what} at {url}"))
}

#[derive(Clone)]
pub struct Api {
    pub lb: LoadBalancerServiceClient<Authed>,
    pub certs: CertificateServiceClient<Authed>,
    pub quotas: QuotaServiceClient<Authed>,
}

impl Api {
    pub async fn connect(api: &str, project: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let credentials = Credentials::new(project, token)?;
        let channel = channel(api, "api").await?;
        Ok(Self {
            lb: LoadBalancerServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            certs: CertificateServiceClient::with_interceptor(channel.clone(), credentials.clone()),
            quotas: QuotaServiceClient::with_interceptor(channel, credentials),
        })
    }

    // Every page of each list.

    pub async fn load_balancers(
        &self,
        filter: pb::ListLoadBalancersRequest,
    ) -> anyhow::Result<Vec<pb::LoadBalancer>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_load_balancers(pb::ListLoadBalancersRequest {
                    page_size: PAGE,
                    page_token: token,
                    ..filter.clone()
                })
                .await
                .api()?;
            out.extend(page.load_balancers);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn listeners(
        &self,
        loadbalancer_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::Listener>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_listeners(pb::ListListenersRequest {
                    loadbalancer_id: loadbalancer_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.listeners);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn pools(
        &self,
        loadbalancer_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::Pool>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_pools(pb::ListPoolsRequest {
                    loadbalancer_id: loadbalancer_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.pools);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn members(
        &self,
        pool_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::Member>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_members(pb::ListMembersRequest {
                    pool_id: pool_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.members);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn health_monitors(
        &self,
        pool_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::HealthMonitor>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_health_monitors(pb::ListHealthMonitorsRequest {
                    pool_id: pool_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.health_monitors);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn l7policies(
        &self,
        listener_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::L7Policy>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_l7_policies(pb::ListL7PoliciesRequest {
                    listener_id: listener_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.l7policies);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn l7rules(
        &self,
        l7policy_id: &str,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::L7Rule>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .lb
                .clone()
                .list_l7_rules(pb::ListL7RulesRequest {
                    l7policy_id: l7policy_id.to_owned(),
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                    all_projects: false,
                    project_id: String::new(),
                })
                .await
                .api()?;
            out.extend(page.rules);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn certificates(
        &self,
        filter: Option<&pb::ListFilter>,
    ) -> anyhow::Result<Vec<pb::Certificate>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .certs
                .clone()
                .list_certificates(pb::ListCertificatesRequest {
                    page_size: PAGE,
                    page_token: token,
                    filter: filter.cloned(),
                })
                .await
                .api()?;
            out.extend(page.certificates);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    // Names or ids to ids.

    pub async fn lb_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self
            .load_balancers(pb::ListLoadBalancersRequest {
                name: arg.to_owned(),
                ..Default::default()
            })
            .await?;
        pick(
            "load balancer",
            arg,
            found.into_iter().map(|l| (l.id, l.name)).collect(),
        )
    }

    pub async fn listener_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.listeners("", None).await?;
        pick(
            "listener",
            arg,
            found.into_iter().map(|l| (l.id, l.name)).collect(),
        )
    }

    pub async fn pool_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.pools("", None).await?;
        pick(
            "pool",
            arg,
            found.into_iter().map(|p| (p.id, p.name)).collect(),
        )
    }

    /// A member of `pool_id` by id, name or ADDRESS:PORT.
    pub async fn member_id(&self, pool_id: &str, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.members(pool_id, None).await?;
        let by_address: Vec<(String, String)> = found
            .iter()
            .map(|m| (m.id.clone(), format!("{}:{}", m.address, m.protocol_port)))
            .filter(|(_, a)| a == arg)
            .collect();
        if by_address.len() == 1 {
            return pick("member", arg, by_address);
        }
        pick(
            "member",
            arg,
            found.into_iter().map(|m| (m.id, m.name)).collect(),
        )
    }

    pub async fn health_monitor_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.health_monitors("", None).await?;
        pick(
            "health monitor",
            arg,
            found.into_iter().map(|h| (h.id, h.name)).collect(),
        )
    }

    pub async fn l7policy_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.l7policies("", None).await?;
        pick(
            "L7 policy",
            arg,
            found.into_iter().map(|p| (p.id, p.name)).collect(),
        )
    }

    pub async fn certificate_id(&self, arg: &str) -> anyhow::Result<String> {
        if is_id(arg) {
            return Ok(arg.to_owned());
        }
        let found = self.certificates(None).await?;
        pick(
            "certificate",
            arg,
            found.into_iter().map(|c| (c.id, c.name)).collect(),
        )
    }

    // Single objects.

    pub async fn get_lb(&self, id: &str) -> anyhow::Result<pb::LoadBalancer> {
        Ok(self
            .lb
            .clone()
            .get_load_balancer(pb::GetLoadBalancerRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_listener(&self, id: &str) -> anyhow::Result<pb::Listener> {
        Ok(self
            .lb
            .clone()
            .get_listener(pb::GetListenerRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_pool(&self, id: &str) -> anyhow::Result<pb::Pool> {
        Ok(self
            .lb
            .clone()
            .get_pool(pb::GetPoolRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_member(&self, id: &str) -> anyhow::Result<pb::Member> {
        Ok(self
            .lb
            .clone()
            .get_member(pb::GetMemberRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_health_monitor(&self, id: &str) -> anyhow::Result<pb::HealthMonitor> {
        Ok(self
            .lb
            .clone()
            .get_health_monitor(pb::GetHealthMonitorRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_l7policy(&self, id: &str) -> anyhow::Result<pb::L7Policy> {
        Ok(self
            .lb
            .clone()
            .get_l7_policy(pb::GetL7PolicyRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_l7rule(&self, id: &str) -> anyhow::Result<pb::L7Rule> {
        Ok(self
            .lb
            .clone()
            .get_l7_rule(pb::GetL7RuleRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn get_certificate(&self, id: &str) -> anyhow::Result<pb::Certificate> {
        Ok(self
            .certs
            .clone()
            .get_certificate(pb::GetCertificateRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    /// The load balancer an L7 policy's listener belongs to.
    pub async fn lb_of_l7policy(&self, policy: &pb::L7Policy) -> anyhow::Result<String> {
        Ok(self
            .get_listener(&policy.listener_id)
            .await?
            .loadbalancer_id)
    }
}

/// The scheduler's provider API (devices, service types, networks, agents, placement explained):
/// admin only when the scheduler has credentials, so the caller sends its `--token`.
#[derive(Clone)]
pub struct Provider {
    pub devices: DeviceServiceClient<Authed>,
}

impl Provider {
    pub async fn connect(
        scheduler: &str,
        project: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let credentials = Credentials::new(project, token)?;
        let channel = channel(scheduler, "scheduler").await?;
        Ok(Self {
            devices: DeviceServiceClient::with_interceptor(channel, credentials),
        })
    }

    /// Every device (of one agent, when `agent_id` is not empty).
    pub async fn list_devices(&self, agent_id: &str) -> anyhow::Result<Vec<spb::Device>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .devices
                .clone()
                .list_devices(spb::ListDevicesRequest {
                    page_size: PAGE,
                    page_token: token,
                    agent_id: agent_id.to_owned(),
                })
                .await
                .api()?;
            out.extend(page.devices);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub async fn get_device(&self, id: &str) -> anyhow::Result<spb::Device> {
        Ok(self
            .devices
            .clone()
            .get_device(spb::GetDeviceRequest { id: id.to_owned() })
            .await
            .api()?)
    }

    pub async fn list_agents(&self) -> anyhow::Result<spb::ListAgentsResponse> {
        Ok(self
            .devices
            .clone()
            .list_agents(spb::ListAgentsRequest {})
            .await
            .api()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(is_id("0b6c5a52-93d5-4f0e-8f55-0e6c2c5e2b1a"));
        assert!(!is_id("web"));
        assert!(!is_id("0b6c5a52-93d5-4f0e-8f55-0e6c2c5e2b1"));
        let candidates = vec![
            ("1".to_owned(), "web".to_owned()),
            ("2".to_owned(), "db".to_owned()),
            ("3".to_owned(), "db".to_owned()),
        ];
        assert_eq!(pick("pool", "web", candidates.clone()).unwrap(), "1");
        assert_eq!(
            pick("pool", "db", candidates.clone())
                .unwrap_err()
                .to_string(),
            "2 pools are named \"db\"; use the id"
        );
        assert!(pick("pool", "x", candidates).is_err());
    }

    #[test]
    fn errors_list_field_violations() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("listener.protocol_port", "must be between 1 and 65535");
        details.add_bad_request_violation("listener.protocol", "is required");
        use tonic_types::StatusExt as _;
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "invalid request: listener.protocol_port: must be between 1 and 65535; listener.protocol: is required",
            details,
        );
        assert_eq!(
            ApiError::from(status).to_string(),
            "INVALID_ARGUMENT: invalid request\n  listener.protocol_port: must be between 1 and 65535\n  listener.protocol: is required"
        );
        let plain = tonic::Status::not_found("load balancer x not found");
        assert_eq!(
            ApiError::from(plain).to_string(),
            "NOT_FOUND: load balancer x not found"
        );
    }
}
