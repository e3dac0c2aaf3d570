//! Octavia v2's JSON for each resource, made from the api's proto messages: enum names as plain
//! strings, parents and children as lists of `{"id"}`, delays in seconds, times in ISO 8601.
use lbaas::api::v1 as pb;
use serde::Serialize;

/// `{"id": ...}`: how Octavia links one object to another.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IdRef {
    pub id: String,
}

fn refs<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<IdRef> {
    ids.into_iter()
        .filter(|id| !id.is_empty())
        .map(|id| IdRef { id: id.clone() })
        .collect()
}

fn one_ref(id: &str) -> Vec<IdRef> {
    refs([&id.to_owned()])
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The name of a proto enum value without its type prefix (`PROTOCOL_HTTP` -> `HTTP`).
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_owned()
}

pub fn provisioning(v: i32) -> String {
    let s = pb::ProvisioningStatus::try_from(v).unwrap_or_default();
    match s {
        pb::ProvisioningStatus::Unspecified => "ACTIVE".into(),
        s => enum_name(s.as_str_name(), "PROVISIONING_STATUS_"),
    }
}

pub fn operating(v: i32) -> String {
    let s = pb::OperatingStatus::try_from(v).unwrap_or_default();
    match s {
        pb::OperatingStatus::Unspecified => "OFFLINE".into(),
        s => enum_name(s.as_str_name(), "OPERATING_STATUS_"),
    }
}

pub fn protocol(v: i32) -> String {
    enum_name(
        pb::Protocol::try_from(v).unwrap_or_default().as_str_name(),
        "PROTOCOL_",
    )
}

/// Milliseconds since the epoch as Octavia writes times: `2026-12-05T02:19:05` (UTC).
pub fn iso8601(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

#[derive(Debug, Serialize)]
pub struct AdditionalVip {
    pub subnet_id: String,
    pub ip_address: String,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    pub vip_address: String,
    pub vip_network_id: Option<String>,
    pub vip_subnet_id: Option<String>,
    pub vip_port_id: Option<String>,
    pub vip_qos_policy_id: Option<String>,
    pub additional_vips: Vec<AdditionalVip>,
    pub listeners: Vec<IdRef>,
    pub pools: Vec<IdRef>,
    pub provider: String,
    pub flavor_id: Option<String>,
    pub availability_zone: Option<String>,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// The one provider lbaas is: the scheduler places each load balancer on a device of its flavor.
pub const PROVIDER: &str = "lbaas";

impl From<&pb::LoadBalancer> for LoadBalancer {
    fn from(lb: &pb::LoadBalancer) -> Self {
        Self {
            id: lb.id.clone(),
            name: lb.name.clone(),
            description: lb.description.clone(),
            project_id: lb.project_id.clone(),
            tenant_id: lb.project_id.clone(),
            provisioning_status: provisioning(lb.provisioning_status),
            operating_status: operating(lb.operating_status),
            admin_state_up: lb.admin_state_up.unwrap_or(true),
            vip_address: lb.vip_address.clone(),
            // A network is one subnet: both carry the network's name.
            vip_network_id: opt(&lb.vip_network_id),
            vip_subnet_id: opt(&lb.vip_network_id),
            vip_port_id: None,
            vip_qos_policy_id: None,
            additional_vips: lb
                .additional_vips
                .iter()
                .map(|v| AdditionalVip {
                    subnet_id: v.network_id.clone(),
                    ip_address: v.ip_address.clone(),
                })
                .collect(),
            listeners: refs(&lb.listener_ids),
            pools: refs(&lb.pool_ids),
            provider: PROVIDER.into(),
            flavor_id: opt(&lb.flavor),
            availability_zone: opt(&lb.availability_zone),
            tags: lb.tags.clone(),
            created_at: iso8601(lb.create_time_ms),
            updated_at: iso8601(lb.update_time_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Listener {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    pub protocol: String,
    pub protocol_port: i32,
    pub connection_limit: i32,
    pub default_pool_id: Option<String>,
    pub default_tls_container_ref: Option<String>,
    pub sni_container_refs: Vec<String>,
    pub loadbalancers: Vec<IdRef>,
    pub l7policies: Vec<IdRef>,
    pub insert_headers: std::collections::BTreeMap<String, String>,
    pub timeout_client_data: i32,
    pub timeout_member_connect: i32,
    pub timeout_member_data: i32,
    pub timeout_tcp_inspect: i32,
    pub allowed_cidrs: Option<Vec<String>>,
    pub alpn_protocols: Vec<String>,
    pub tls_versions: Vec<String>,
    pub tls_ciphers: Option<String>,
    pub client_ca_tls_container_ref: Option<String>,
    pub client_authentication: String,
    pub client_crl_container_ref: Option<String>,
    pub hsts_max_age: Option<i32>,
    pub hsts_include_subdomains: bool,
    pub hsts_preload: bool,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::Listener> for Listener {
    fn from(l: &pb::Listener) -> Self {
        Self {
            id: l.id.clone(),
            name: l.name.clone(),
            description: l.description.clone(),
            project_id: l.project_id.clone(),
            tenant_id: l.project_id.clone(),
            provisioning_status: provisioning(l.provisioning_status),
            operating_status: operating(l.operating_status),
            admin_state_up: l.admin_state_up.unwrap_or(true),
            protocol: protocol(l.protocol),
            protocol_port: l.protocol_port,
            connection_limit: if l.connection_limit == 0 {
                -1
            } else {
                l.connection_limit
            },
            default_pool_id: opt(&l.default_pool_id),
            default_tls_container_ref: opt(&l.default_tls_container_ref),
            sni_container_refs: l.sni_container_refs.clone(),
            loadbalancers: one_ref(&l.loadbalancer_id),
            l7policies: refs(&l.l7policy_ids),
            insert_headers: l
                .insert_headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout_client_data: l.timeout_client_data_ms,
            timeout_member_connect: l.timeout_member_connect_ms,
            timeout_member_data: l.timeout_member_data_ms,
            timeout_tcp_inspect: 0,
            allowed_cidrs: (!l.allowed_cidrs.is_empty()).then(|| l.allowed_cidrs.clone()),
            alpn_protocols: l.alpn_protocols.clone(),
            tls_versions: l.tls_versions.clone(),
            tls_ciphers: opt(&l.tls_ciphers),
            client_ca_tls_container_ref: None,
            client_authentication: "NONE".into(),
            client_crl_container_ref: None,
            hsts_max_age: l.hsts_max_age,
            hsts_include_subdomains: l.hsts_include_subdomains,
            hsts_preload: l.hsts_preload,
            tags: l.tags.clone(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionPersistence {
    #[serde(rename = "type")]
    pub kind: String,
    pub cookie_name: Option<String>,
    pub persistence_timeout: Option<i32>,
    pub persistence_granularity: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Pool {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    pub protocol: String,
    pub lb_algorithm: String,
    pub session_persistence: Option<SessionPersistence>,
    pub loadbalancers: Vec<IdRef>,
    pub listeners: Vec<IdRef>,
    pub members: Vec<IdRef>,
    pub healthmonitor_id: Option<String>,
    pub tls_enabled: bool,
    pub tls_container_ref: Option<String>,
    pub ca_tls_container_ref: Option<String>,
    pub crl_container_ref: Option<String>,
    pub alpn_protocols: Vec<String>,
    pub tls_versions: Vec<String>,
    pub tls_ciphers: Option<String>,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::Pool> for Pool {
    fn from(p: &pb::Pool) -> Self {
        let session_persistence = p.session_persistence.as_ref().and_then(|s| {
            let kind = pb::SessionPersistenceType::try_from(s.r#type).ok()?;
            (kind != pb::SessionPersistenceType::Unspecified).then(|| SessionPersistence {
                kind: enum_name(kind.as_str_name(), "SESSION_PERSISTENCE_TYPE_"),
                cookie_name: opt(&s.cookie_name),
                persistence_timeout: None,
                persistence_granularity: None,
            })
        });
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            project_id: p.project_id.clone(),
            tenant_id: p.project_id.clone(),
            provisioning_status: provisioning(p.provisioning_status),
            operating_status: operating(p.operating_status),
            admin_state_up: p.admin_state_up.unwrap_or(true),
            protocol: protocol(p.protocol),
            lb_algorithm: enum_name(
                pb::LbAlgorithm::try_from(p.lb_algorithm)
                    .unwrap_or_default()
                    .as_str_name(),
                "LB_ALGORITHM_",
            ),
            session_persistence,
            loadbalancers: one_ref(&p.loadbalancer_id),
            listeners: one_ref(&p.listener_id),
            members: p
                .members
                .iter()
                .map(|m| IdRef { id: m.id.clone() })
                .collect(),
            healthmonitor_id: opt(&p.healthmonitor_id),
            tls_enabled: p.tls_enabled,
            tls_container_ref: None,
            ca_tls_container_ref: None,
            crl_container_ref: None,
            alpn_protocols: p.alpn_protocols.clone(),
            tls_versions: p.tls_versions.clone(),
            tls_ciphers: opt(&p.tls_ciphers),
            tags: p.tags.clone(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    pub address: String,
    pub protocol_port: i32,
    pub weight: i32,
    pub backup: bool,
    pub subnet_id: Option<String>,
    pub monitor_address: Option<String>,
    pub monitor_port: Option<i32>,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::Member> for Member {
    fn from(m: &pb::Member) -> Self {
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            project_id: m.project_id.clone(),
            tenant_id: m.project_id.clone(),
            provisioning_status: provisioning(m.provisioning_status),
            operating_status: operating(m.operating_status),
            admin_state_up: m.admin_state_up.unwrap_or(true),
            address: m.address.clone(),
            protocol_port: m.protocol_port,
            weight: m.weight.unwrap_or(1),
            backup: m.backup,
            subnet_id: None,
            monitor_address: opt(&m.monitor_address),
            monitor_port: (m.monitor_port != 0).then_some(m.monitor_port),
            tags: m.tags.clone(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HealthMonitor {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub delay: i32,
    pub timeout: i32,
    pub max_retries: i32,
    pub max_retries_down: i32,
    pub http_method: Option<String>,
    pub url_path: Option<String>,
    pub expected_codes: Option<String>,
    pub http_version: Option<f64>,
    pub domain_name: Option<String>,
    pub pools: Vec<IdRef>,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::HealthMonitor> for HealthMonitor {
    fn from(h: &pb::HealthMonitor) -> Self {
        Self {
            id: h.id.clone(),
            name: h.name.clone(),
            project_id: h.project_id.clone(),
            tenant_id: h.project_id.clone(),
            provisioning_status: provisioning(h.provisioning_status),
            operating_status: operating(h.operating_status),
            admin_state_up: h.admin_state_up.unwrap_or(true),
            // Octavia's names: TLS-HELLO, UDP-CONNECT.
            kind: enum_name(
                pb::HealthMonitorType::try_from(h.r#type)
                    .unwrap_or_default()
                    .as_str_name(),
                "HEALTH_MONITOR_TYPE_",
            )
            .replace('_', "-"),
            delay: h.delay_s,
            timeout: h.timeout_s,
            max_retries: h.max_retries,
            max_retries_down: h.max_retries_down,
            http_method: opt(&h.http_method),
            url_path: opt(&h.url_path),
            expected_codes: opt(&h.expected_codes),
            http_version: (h.http_version > 0.0).then_some(h.http_version),
            domain_name: opt(&h.domain_name),
            pools: one_ref(&h.pool_id),
            tags: Vec::new(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct L7Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    pub listener_id: String,
    pub action: String,
    pub position: i32,
    pub redirect_pool_id: Option<String>,
    pub redirect_url: Option<String>,
    pub redirect_prefix: Option<String>,
    pub redirect_http_code: Option<i32>,
    pub rules: Vec<IdRef>,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::L7Policy> for L7Policy {
    fn from(p: &pb::L7Policy) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            project_id: p.project_id.clone(),
            tenant_id: p.project_id.clone(),
            provisioning_status: provisioning(p.provisioning_status),
            operating_status: operating(p.operating_status),
            admin_state_up: p.admin_state_up.unwrap_or(true),
            listener_id: p.listener_id.clone(),
            action: enum_name(
                pb::L7PolicyAction::try_from(p.action)
                    .unwrap_or_default()
                    .as_str_name(),
                "L7_POLICY_ACTION_",
            ),
            position: p.position,
            redirect_pool_id: opt(&p.redirect_pool_id),
            redirect_url: opt(&p.redirect_url),
            redirect_prefix: opt(&p.redirect_prefix),
            redirect_http_code: (p.redirect_http_code != 0).then_some(p.redirect_http_code),
            rules: refs(&p.rule_ids),
            tags: p.tags.clone(),
            created_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct L7Rule {
    pub id: String,
    pub project_id: String,
    pub tenant_id: String,
    pub provisioning_status: String,
    pub operating_status: String,
    pub admin_state_up: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub compare_type: String,
    pub key: Option<String>,
    pub value: String,
    pub invert: bool,
    pub tags: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<&pb::L7Rule> for L7Rule {
    fn from(r: &pb::L7Rule) -> Self {
        Self {
            id: r.id.clone(),
            project_id: r.project_id.clone(),
            tenant_id: r.project_id.clone(),
            provisioning_status: provisioning(r.provisioning_status),
            operating_status: operating(r.operating_status),
            admin_state_up: r.admin_state_up.unwrap_or(true),
            kind: enum_name(
                pb::L7RuleType::try_from(r.r#type)
                    .unwrap_or_default()
                    .as_str_name(),
                "L7_RULE_TYPE_",
            ),
            compare_type: enum_name(
                pb::L7RuleCompareType::try_from(r.compare_type)
                    .unwrap_or_default()
                    .as_str_name(),
                "L7_RULE_COMPARE_TYPE_",
            ),
            key: opt(&r.key),
            value: r.value.clone(),
            invert: r.invert,
            tags: r.tags.clone(),
            created_at: None,
            updated_at: None,
        }
    }
}

/// Octavia's quota object: every key in both of its spellings.
pub fn quota(q: &pb::Quota) -> serde_json::Value {
    serde_json::json!({
        "project_id": q.project_id,
        "load_balancer": q.load_balancers,
        "loadbalancer": q.load_balancers,
        "listener": q.listeners,
        "pool": q.pools,
        "member": q.members,
        "health_monitor": q.health_monitors,
        "healthmonitor": q.health_monitors,
        "l7policy": q.l7_policies.unwrap_or(-1),
        "l7rule": q.l7_rules.unwrap_or(-1),
    })
}

pub fn stats(s: &pb::Stats) -> serde_json::Value {
    serde_json::json!({
        "stats": {
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "active_connections": s.active_connections,
            "total_connections": s.total_connections,
            "request_errors": s.request_errors,
        }
    })
}

fn status_node(n: Option<&pb::StatusNode>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(n) = n {
        m.insert("id".into(), n.id.clone().into());
        m.insert("name".into(), n.name.clone().into());
        m.insert(
            "provisioning_status".into(),
            provisioning(n.provisioning_status).into(),
        );
        m.insert(
            "operating_status".into(),
            operating(n.operating_status).into(),
        );
    }
    m
}

fn pool_status(p: &pb::PoolStatus) -> serde_json::Value {
    let mut m = status_node(p.status.as_ref());
    m.insert(
        "members".into(),
        p.members
            .iter()
            .map(|member| {
                let mut n = status_node(member.status.as_ref());
                n.insert("address".into(), member.address.clone().into());
                n.insert("protocol_port".into(), member.protocol_port.into());
                serde_json::Value::Object(n)
            })
            .collect(),
    );
    if let Some(hm) = p.health_monitor.as_ref().filter(|h| !h.id.is_empty()) {
        m.insert(
            "health_monitor".into(),
            serde_json::Value::Object(status_node(Some(hm))),
        );
    }
    serde_json::Value::Object(m)
}

/// `GET .../loadbalancers/{id}/status`: `{"statuses": {"loadbalancer": {... "listeners": [...]}}}`.
pub fn status_tree(t: &pb::LoadBalancerStatusTree) -> serde_json::Value {
    let mut lb = status_node(t.load_balancer.as_ref());
    lb.insert(
        "listeners".into(),
        t.listeners
            .iter()
            .map(|l| {
                let mut n = status_node(l.status.as_ref());
                n.insert("pools".into(), l.pools.iter().map(pool_status).collect());
                n.insert(
                    "l7policies".into(),
                    l.l7policies
                        .iter()
                        .map(|p| {
                            let mut n = status_node(p.status.as_ref());
                            n.insert(
                                "rules".into(),
                                p.rules
                                    .iter()
                                    .map(|r| serde_json::Value::Object(status_node(Some(r))))
                                    .collect(),
                            );
                            serde_json::Value::Object(n)
                        })
                        .collect(),
                );
                serde_json::Value::Object(n)
            })
            .collect(),
    );
    lb.insert(
        "pools".into(),
        t.unattached_pools.iter().map(pool_status).collect(),
    );
    serde_json::json!({ "statuses": { "loadbalancer": lb } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso8601() {
        assert_eq!(iso8601(0), None);
        assert_eq!(iso8601(1_000).as_deref(), Some("1970-01-01T00:00:01"));
        // 2026-12-05T02:19:05Z
        assert_eq!(
            iso8601(1_796_437_145_000).as_deref(),
            Some("2026-12-05T02:19:05")
        );
        // A leap day.
        assert_eq!(
            iso8601(951_782_400_000).as_deref(),
            Some("2000-02-29T00:00:00")
        );
    }

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(
            protocol(pb::Protocol::TerminatedHttps as i32),
            "TERMINATED_HTTPS"
        );
        assert_eq!(
            provisioning(pb::ProvisioningStatus::PendingCreate as i32),
            "PENDING_CREATE"
        );
        assert_eq!(
            operating(pb::OperatingStatus::NoMonitor as i32),
            "NO_MONITOR"
        );
    }
}
