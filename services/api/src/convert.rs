//! The edge between wire and domain: `validate_*` turn protobuf input into checked domain values
//! (every problem reported at once, as field violations), and `*_to_proto` turn rows back.
use std::net::IpAddr;

use lbaas::api::v1 as pb;

use crate::{
    entity::{health_monitor, listener, load_balancer, member, pool},
    error::ApiError,
    tls_fields::{self, TlsFields},
};

const MAX_NAME: usize = 255;
const MAX_TAGS: usize = 50;
const MAX_TAG: usize = 64;
/// One load balancer's tree in a single call stays small enough to apply in one go.
const MAX_CHILDREN: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Http,
    Https,
    TerminatedHttps,
    Udp,
    /// Pools only: TCP to members, opened with a PROXY protocol header (v1, or v2).
    Proxy,
    ProxyV2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::TerminatedHttps => "TERMINATED_HTTPS",
            Self::Udp => "UDP",
            Self::Proxy => "PROXY",
            Self::ProxyV2 => "PROXYV2",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" => Some(Self::Tcp),
            "HTTP" => Some(Self::Http),
            "HTTPS" => Some(Self::Https),
            "TERMINATED_HTTPS" => Some(Self::TerminatedHttps),
            "UDP" => Some(Self::Udp),
            "PROXY" => Some(Self::Proxy),
            "PROXYV2" => Some(Self::ProxyV2),
            _ => None,
        }
    }
    /// Octavia's listener/pool protocol compatibility.
    pub fn pool_fits_listener(pool: Self, listener: Self) -> bool {
        matches!(
            (listener, pool),
            (Self::Http, Self::Http)
                | (Self::Tcp, Self::Tcp)
                | (Self::Tcp, Self::Http)
                | (Self::Tcp, Self::Https)
                | (Self::Https, Self::Https)
                | (Self::Https, Self::Tcp)
                | (Self::TerminatedHttps, Self::Http)
                | (Self::Udp, Self::Udp)
                | (
                    Self::Tcp | Self::Http | Self::Https | Self::TerminatedHttps,
                    Self::Proxy | Self::ProxyV2
                )
        )
    }
    /// PROXY and PROXYV2 name how a pool reaches its members; no listener speaks them.
    pub fn is_pool_only(self) -> bool {
        matches!(self, Self::Proxy | Self::ProxyV2)
    }
    /// Listeners that see requests (headers, L7 policies).
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::TerminatedHttps)
    }
}

/// The headers a listener can insert, by their API names.
pub const INSERT_HEADERS: [&str; 3] = ["X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"];
const MAX_CIDRS: usize = 100;
const MAX_SNI: usize = 50;
/// Octavia allows any number; one per address family is what a load balancer needs.
const MAX_ADDITIONAL_VIPS: usize = 4;

#[derive(Debug, Clone)]
pub struct NewLoadBalancer {
    pub name: String,
    pub description: String,
    pub vip_address: Option<IpAddr>,
    pub admin_state_up: bool,
    pub flavor: String,
    pub availability_zone: String,
    /// The access log target in canonical form (`udp://IP:PORT`), or empty.
    pub access_log_target: String,
    pub vip_network_id: String,
    /// (network, address asked for or `None`).
    pub additional_vips: Vec<(String, Option<IpAddr>)>,
    pub tags: Vec<String>,
    pub listeners: Vec<NewListener>,
    pub pools: Vec<NewPool>,
}

#[derive(Debug, Clone)]
pub struct NewListener {
    pub loadbalancer_id: String,
    pub name: String,
    pub description: String,
    pub protocol: Protocol,
    pub port: u16,
    pub connection_limit: i32,
    pub default_pool_id: Option<String>,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub timeout_client_data_ms: i32,
    pub timeout_member_connect_ms: i32,
    pub timeout_member_data_ms: i32,
    pub allowed_cidrs: Vec<String>,
    /// Header names (`INSERT_HEADERS`) set to true.
    pub insert_headers: Vec<String>,
    pub default_tls_container_ref: Option<String>,
    pub sni_container_refs: Vec<String>,
    /// ALPN, versions and ciphers as given (empty: the defaults).
    pub tls: TlsFields,
    pub hsts: Hsts,
    pub default_pool: Option<NewPool>,
}

/// A TERMINATED_HTTPS listener's HTTP Strict Transport Security: none without a max-age.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: Option<i32>,
    pub include_subdomains: bool,
    pub preload: bool,
}

/// Octavia's HSTS rules: TERMINATED_HTTPS listeners only, a max-age of 0 or more, and the two
/// directives only with a max-age.
fn hsts(v: &mut Violations, f: &str, protocol: Protocol, input: &pb::Listener) -> Hsts {
    let h = Hsts {
        max_age: input.hsts_max_age,
        include_subdomains: input.hsts_include_subdomains,
        preload: input.hsts_preload,
    };
    if h == Hsts::default() {
        return h;
    }
    let field = if h.max_age.is_some() {
        "hsts_max_age"
    } else if h.include_subdomains {
        "hsts_include_subdomains"
    } else {
        "hsts_preload"
    };
    if protocol != Protocol::TerminatedHttps {
        v.add(
            format!("{f}.{field}"),
            "HSTS is for TERMINATED_HTTPS listeners",
        );
    } else if h.max_age.is_none() {
        v.add(
            format!("{f}.hsts_max_age"),
            "is required with hsts_include_subdomains or hsts_preload",
        );
    } else if h.max_age.is_some_and(|a| a < 0) {
        v.add(format!("{f}.hsts_max_age"), "must be 0 or more seconds");
    }
    h
}

#[derive(Debug, Clone)]
pub struct NewPool {
    pub loadbalancer_id: String,
    pub listener_id: Option<String>,
    pub name: String,
    pub description: String,
    pub protocol: Protocol,
    pub algorithm: &'static str,
    /// SOURCE_IP, HTTP_COOKIE, APP_COOKIE or empty.
    pub session_persistence: &'static str,
    pub persistence_cookie_name: String,
    pub tls_enabled: bool,
    /// ALPN, versions and ciphers as given (empty: the defaults).
    pub tls: TlsFields,
    pub admin_state_up: bool,
    pub tags: Vec<String>,
    pub members: Vec<NewMember>,
    pub monitor: Option<NewMonitor>,
}

#[derive(Debug, Clone)]
pub struct NewMember {
    pub pool_id: String,
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: i32,
    pub admin_state_up: bool,
    pub backup: bool,
    pub tags: Vec<String>,
    /// Where health checks go instead of `address` and `port`.
    pub monitor_address: Option<IpAddr>,
    pub monitor_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct NewMonitor {
    /// Empty inside a pool being created.
    pub pool_id: String,
    pub name: String,
    pub monitor_type: &'static str,
    pub delay_s: i32,
    pub timeout_s: i32,
    pub max_retries: i32,
    pub max_retries_down: i32,
    pub http_method: String,
    pub url_path: String,
    pub expected_codes: String,
    /// "1.0" or "1.1"; empty for the default (1.0) and for non-HTTP monitors.
    pub http_version: String,
    pub domain_name: String,
    pub admin_state_up: bool,
}

/// Collects every violation of one request.
#[derive(Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }
}

fn name(v: &mut Violations, field: &str, value: &str, required: bool) -> String {
    if required && value.trim().is_empty() {
        v.add(field, "is required");
    } else if value.chars().count() > MAX_NAME {
        v.add(field, format!("must be at most {MAX_NAME} characters"));
    } else if value.chars().any(char::is_control) {
        v.add(field, "must not contain control characters");
    }
    value.to_owned()
}

fn tags(v: &mut Violations, field: &str, values: &[String]) -> Vec<String> {
    check_tags(v, field, values);
    values.to_vec()
}

/// Tags are printable, without newlines (they separate tags in storage).
pub fn check_tags(v: &mut Violations, field: &str, values: &[String]) {
    if values.len() > MAX_TAGS {
        v.add(field, format!("at most {MAX_TAGS} tags"));
    }
    for (i, t) in values.iter().enumerate() {
        if t.is_empty() || t.chars().count() > MAX_TAG || t.chars().any(char::is_control) {
            v.add(
                format!("{field}[{i}]"),
                format!("must be 1-{MAX_TAG} printable characters"),
            );
        }
    }
}

fn port(v: &mut Violations, field: &str, value: i32) -> u16 {
    match u16::try_from(value) {
        Ok(p) if p > 0 => p,
        _ => {
            v.add(field, "must be between 1 and 65535");
            0
        }
    }
}

fn protocol(v: &mut Violations, field: &str, value: i32) -> Protocol {
    match pb::Protocol::try_from(value) {
        Ok(pb::Protocol::Tcp) => Protocol::Tcp,
        Ok(pb::Protocol::Http) => Protocol::Http,
        Ok(pb::Protocol::Https) => Protocol::Https,
        Ok(pb::Protocol::TerminatedHttps) => Protocol::TerminatedHttps,
        Ok(pb::Protocol::Udp) => Protocol::Udp,
        Ok(pb::Protocol::Proxy) => Protocol::Proxy,
        Ok(pb::Protocol::Proxyv2) => Protocol::ProxyV2,
        Ok(pb::Protocol::Unspecified) => {
            v.add(
                field,
                "is required (TCP, HTTP, HTTPS, TERMINATED_HTTPS or UDP)",
            );
            Protocol::Tcp
        }
        Err(_) => {
            v.add(field, format!("unknown protocol {value}"));
            Protocol::Tcp
        }
    }
}

fn id_ref(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if uuid::Uuid::parse_str(value).is_err() {
        v.add(field, "is not an id");
    }
    Some(value.to_owned())
}

fn required_id(v: &mut Violations, field: &str, value: &str) -> String {
    if value.is_empty() {
        v.add(field, "is required");
    }
    id_ref(v, field, value).unwrap_or_default()
}

/// Octavia's longest listener timeout: 24 days (HAProxy's timers hold up to about 24.8 days).
pub const MAX_TIMEOUT_MS: i32 = 24 * 24 * 60 * 60 * 1000;

fn timeout(v: &mut Violations, field: &str, value: i32) -> i32 {
    if !(0..=MAX_TIMEOUT_MS).contains(&value) {
        v.add(
            field,
            format!("must be between 0 (default) and {MAX_TIMEOUT_MS} ms (24 days)"),
        );
    }
    value
}

pub fn validate_load_balancer(input: &pb::LoadBalancer) -> Result<NewLoadBalancer, ApiError> {
    let mut v = Violations::default();
    let f = "load_balancer";
    let vip_address = if input.vip_address.is_empty() {
        None
    } else {
        match input.vip_address.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                v.add(format!("{f}.vip_address"), "is not an IP address");
                None
            }
        }
    };
    if input.flavor.len() > 64
        || !input
            .flavor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        v.add(
            format!("{f}.flavor"),
            "must be at most 64 letters, digits, '-' or '_'",
        );
    }
    if input.availability_zone.len() > 64
        || !input
            .availability_zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        v.add(
            format!("{f}.availability_zone"),
            "must be at most 64 letters, digits, '-' or '_'",
        );
    }
    let access_log_target = if input.access_log_target.is_empty() {
        String::new()
    } else {
        match parse_log_target(&input.access_log_target) {
            Ok(target) => target.to_string(),
            Err(why) => {
                v.add(format!("{f}.access_log_target"), why);
                String::new()
            }
        }
    };
    if input.vip_network_id.len() > 64
        || !input
            .vip_network_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        v.add(
            format!("{f}.vip_network_id"),
            "must be at most 64 letters, digits, '-' or '_'",
        );
    }
    if input.additional_vips.len() > MAX_ADDITIONAL_VIPS {
        v.add(
            format!("{f}.additional_vips"),
            format!("at most {MAX_ADDITIONAL_VIPS} additional VIPs"),
        );
    }
    if !input.additional_vips.is_empty() && input.vip_network_id.is_empty() {
        v.add(
            format!("{f}.additional_vips"),
            "additional VIPs need vip_network_id as well",
        );
    }
    let mut additional_vips = Vec::new();
    for (i, extra) in input.additional_vips.iter().enumerate() {
        let field = format!("{f}.additional_vips[{i}]");
        if extra.network_id.is_empty()
            || extra.network_id.len() > 64
            || !extra
                .network_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            v.add(
                format!("{field}.network_id"),
                "is required: at most 64 letters, digits, '-' or '_'",
            );
        } else if extra.network_id == input.vip_network_id
            || input.additional_vips[..i]
                .iter()
                .any(|o| o.network_id == extra.network_id)
        {
            v.add(
                format!("{field}.network_id"),
                "the load balancer has a VIP on this network already",
            );
        }
        let address = if extra.ip_address.is_empty() {
            None
        } else {
            match extra.ip_address.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    v.add(format!("{field}.ip_address"), "is not an IP address");
                    None
                }
            }
        };
        additional_vips.push((extra.network_id.clone(), address));
    }
    if input.listeners.len() + input.pools.len() > MAX_CHILDREN {
        v.add(
            f,
            format!("at most {MAX_CHILDREN} listeners and pools in one call"),
        );
    }
    let listeners = input
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| listener_fields(&mut v, &format!("{f}.listeners[{i}]"), l, true))
        .collect::<Vec<_>>();
    let mut ports = std::collections::HashSet::new();
    for (i, l) in listeners.iter().enumerate() {
        if l.port != 0 && !ports.insert(l.port) {
            v.add(
                format!("{f}.listeners[{i}].protocol_port"),
                "another listener of this load balancer uses this port",
            );
        }
    }
    let pools = input
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| pool_fields(&mut v, &format!("{f}.pools[{i}]"), p, true))
        .collect();
    let lb = NewLoadBalancer {
        name: name(&mut v, &format!("{f}.name"), &input.name, true),
        description: name(
            &mut v,
            &format!("{f}.description"),
            &input.description,
            false,
        ),
        vip_address,
        admin_state_up: input.admin_state_up.unwrap_or(true),
        flavor: input.flavor.clone(),
        availability_zone: input.availability_zone.clone(),
        access_log_target,
        vip_network_id: input.vip_network_id.clone(),
        additional_vips,
        tags: tags(&mut v, &format!("{f}.tags"), &input.tags),
        listeners,
        pools,
    };
    v.finish(lb)
}

pub fn validate_listener(input: &pb::Listener) -> Result<NewListener, ApiError> {
    let mut v = Violations::default();
    let listener = listener_fields(&mut v, "listener", input, false);
    v.finish(listener)
}

fn listener_fields(
    v: &mut Violations,
    f: &str,
    input: &pb::Listener,
    in_tree: bool,
) -> NewListener {
    let protocol = protocol(v, &format!("{f}.protocol"), input.protocol);
    if protocol.is_pool_only() {
        v.add(
            format!("{f}.protocol"),
            format!(
                "{} is a pool protocol (the PROXY header to members); listeners take TCP, HTTP, HTTPS, TERMINATED_HTTPS or UDP",
                protocol.as_str()
            ),
        );
    }
    if input.connection_limit < -1 {
        v.add(
            format!("{f}.connection_limit"),
            "must be -1 (unlimited) or more",
        );
    }
    let default_pool = match (&input.default_pool, in_tree) {
        (Some(p), true) => {
            let pool = pool_fields(v, &format!("{f}.default_pool"), p, true);
            if !Protocol::pool_fits_listener(pool.protocol, protocol) {
                v.add(
                    format!("{f}.default_pool.protocol"),
                    format!(
                        "a {} pool cannot serve a {} listener",
                        pool.protocol.as_str(),
                        protocol.as_str()
                    ),
                );
            }
            Some(pool)
        }
        (Some(_), false) => {
            v.add(format!("{f}.default_pool"), "is only accepted inside CreateLoadBalancer; create the pool with listener_id instead");
            None
        }
        (None, _) => None,
    };
    if in_tree && !input.default_pool_id.is_empty() {
        v.add(
            format!("{f}.default_pool_id"),
            "cannot name an existing pool inside CreateLoadBalancer; use default_pool",
        );
    }
    NewListener {
        loadbalancer_id: if in_tree {
            String::new()
        } else {
            required_id(v, &format!("{f}.loadbalancer_id"), &input.loadbalancer_id)
        },
        name: name(v, &format!("{f}.name"), &input.name, false),
        description: name(v, &format!("{f}.description"), &input.description, false),
        protocol,
        port: port(v, &format!("{f}.protocol_port"), input.protocol_port),
        connection_limit: input.connection_limit,
        default_pool_id: if in_tree {
            None
        } else {
            id_ref(v, &format!("{f}.default_pool_id"), &input.default_pool_id)
        },
        admin_state_up: input.admin_state_up.unwrap_or(true),
        tags: tags(v, &format!("{f}.tags"), &input.tags),
        timeout_client_data_ms: timeout(
            v,
            &format!("{f}.timeout_client_data_ms"),
            input.timeout_client_data_ms,
        ),
        timeout_member_connect_ms: timeout(
            v,
            &format!("{f}.timeout_member_connect_ms"),
            input.timeout_member_connect_ms,
        ),
        timeout_member_data_ms: timeout(
            v,
            &format!("{f}.timeout_member_data_ms"),
            input.timeout_member_data_ms,
        ),
        allowed_cidrs: cidrs(v, &format!("{f}.allowed_cidrs"), &input.allowed_cidrs),
        insert_headers: insert_headers(v, f, protocol, &input.insert_headers),
        default_tls_container_ref: tls_refs(v, f, protocol, input),
        sni_container_refs: input.sni_container_refs.clone(),
        tls: tls_fields::listener(
            v,
            f,
            protocol,
            &input.alpn_protocols,
            &input.tls_versions,
            &input.tls_ciphers,
        ),
        hsts: hsts(v, f, protocol, input),
        default_pool,
    }
}

/// CIDRs in canonical form (`10.0.0.0/8`; a bare address is its /32 or /128).
fn cidrs(v: &mut Violations, field: &str, values: &[String]) -> Vec<String> {
    if values.len() > MAX_CIDRS {
        v.add(field, format!("at most {MAX_CIDRS} networks"));
    }
    let mut out = Vec::new();
    for (i, c) in values.iter().enumerate() {
        let parsed = c
            .parse::<ipnet::IpNet>()
            .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => {
                let net = net.trunc().to_string();
                if !out.contains(&net) {
                    out.push(net);
                }
            }
            Err(_) => v.add(
                format!("{field}[{i}]"),
                "is not a network such as 192.0.2.0/24",
            ),
        }
    }
    out
}

fn insert_headers(
    v: &mut Violations,
    f: &str,
    protocol: Protocol,
    values: &std::collections::HashMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in values {
        let Some(name) = INSERT_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(key)) else {
            v.add(
                format!("{f}.insert_headers[{key}]"),
                format!(
                    "is not a header lbaas inserts ({})",
                    INSERT_HEADERS.join(", ")
                ),
            );
            continue;
        };
        match value.to_ascii_lowercase().as_str() {
            "true" => out.push((*name).to_owned()),
            "false" => {}
            _ => v.add(
                format!("{f}.insert_headers[{key}]"),
                "must be \"true\" or \"false\"",
            ),
        }
    }
    if !out.is_empty() && !protocol.is_http() {
        v.add(
            format!("{f}.insert_headers"),
            format!(
                "a {} listener cannot insert headers (HTTP or TERMINATED_HTTPS only)",
                protocol.as_str()
            ),
        );
    }
    out.sort();
    out
}

fn tls_refs(
    v: &mut Violations,
    f: &str,
    protocol: Protocol,
    input: &pb::Listener,
) -> Option<String> {
    let default = id_ref(
        v,
        &format!("{f}.default_tls_container_ref"),
        &input.default_tls_container_ref,
    );
    if input.sni_container_refs.len() > MAX_SNI {
        v.add(
            format!("{f}.sni_container_refs"),
            format!("at most {MAX_SNI} certificates"),
        );
    }
    for (i, r) in input.sni_container_refs.iter().enumerate() {
        if uuid::Uuid::parse_str(r).is_err() {
            v.add(format!("{f}.sni_container_refs[{i}]"), "is not an id");
        }
    }
    if protocol == Protocol::TerminatedHttps {
        if default.is_none() {
            v.add(
                format!("{f}.default_tls_container_ref"),
                "is required for a TERMINATED_HTTPS listener",
            );
        }
    } else if default.is_some() || !input.sni_container_refs.is_empty() {
        v.add(
            format!("{f}.default_tls_container_ref"),
            "certificates need a TERMINATED_HTTPS listener",
        );
    }
    default
}

pub fn validate_pool(input: &pb::Pool) -> Result<NewPool, ApiError> {
    let mut v = Violations::default();
    let pool = pool_fields(&mut v, "pool", input, false);
    v.finish(pool)
}

fn pool_fields(v: &mut Violations, f: &str, input: &pb::Pool, in_tree: bool) -> NewPool {
    let algorithm = match pb::LbAlgorithm::try_from(input.lb_algorithm) {
        Ok(pb::LbAlgorithm::RoundRobin) => "ROUND_ROBIN",
        Ok(pb::LbAlgorithm::LeastConnections) => "LEAST_CONNECTIONS",
        Ok(pb::LbAlgorithm::SourceIp) => "SOURCE_IP",
        Ok(pb::LbAlgorithm::Unspecified) => {
            v.add(
                format!("{f}.lb_algorithm"),
                "is required (ROUND_ROBIN, LEAST_CONNECTIONS or SOURCE_IP)",
            );
            "ROUND_ROBIN"
        }
        Err(_) => {
            v.add(
                format!("{f}.lb_algorithm"),
                format!("unknown algorithm {}", input.lb_algorithm),
            );
            "ROUND_ROBIN"
        }
    };
    if input.members.len() > MAX_CHILDREN {
        v.add(
            format!("{f}.members"),
            format!("at most {MAX_CHILDREN} members in one call"),
        );
    }
    let members = input
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| member_fields(v, &format!("{f}.members[{i}]"), m, true))
        .collect();
    let monitor = input
        .healthmonitor
        .as_ref()
        .map(|m| monitor_fields(v, &format!("{f}.healthmonitor"), m));
    let pool_protocol = protocol(v, &format!("{f}.protocol"), input.protocol);
    if pool_protocol == Protocol::TerminatedHttps {
        v.add(
            format!("{f}.protocol"),
            "TERMINATED_HTTPS is a listener protocol; its pools are HTTP",
        );
    }
    if let Some(m) = &monitor
        && let Err(why) = monitor_fits_pool(m.monitor_type, pool_protocol.as_str())
    {
        v.add(format!("{f}.healthmonitor.type"), why);
    }
    let (session_persistence, persistence_cookie_name) = persistence(
        v,
        &format!("{f}.session_persistence"),
        pool_protocol,
        input.session_persistence.as_ref(),
    );
    if input.tls_enabled && pool_protocol != Protocol::Http {
        v.add(
            format!("{f}.tls_enabled"),
            format!(
                "re-encryption needs an HTTP pool, not {}",
                pool_protocol.as_str()
            ),
        );
    }
    NewPool {
        loadbalancer_id: if in_tree {
            String::new()
        } else {
            required_id(v, &format!("{f}.loadbalancer_id"), &input.loadbalancer_id)
        },
        listener_id: if in_tree {
            None
        } else {
            id_ref(v, &format!("{f}.listener_id"), &input.listener_id)
        },
        name: name(v, &format!("{f}.name"), &input.name, false),
        description: name(v, &format!("{f}.description"), &input.description, false),
        protocol: pool_protocol,
        algorithm,
        session_persistence,
        persistence_cookie_name,
        tls_enabled: input.tls_enabled,
        tls: tls_fields::pool(
            v,
            f,
            pool_protocol,
            input.tls_enabled,
            &input.alpn_protocols,
            &input.tls_versions,
            &input.tls_ciphers,
        ),
        admin_state_up: input.admin_state_up.unwrap_or(true),
        tags: tags(v, &format!("{f}.tags"), &input.tags),
        members,
        monitor,
    }
}

/// A cookie name: an HTTP token, at most 64 characters.
pub fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn persistence(
    v: &mut Violations,
    field: &str,
    protocol: Protocol,
    input: Option<&pb::SessionPersistence>,
) -> (&'static str, String) {
    let Some(input) = input else {
        return ("", String::new());
    };
    let kind = match pb::SessionPersistenceType::try_from(input.r#type) {
        Ok(pb::SessionPersistenceType::Unspecified) => "",
        Ok(pb::SessionPersistenceType::SourceIp) => "SOURCE_IP",
        Ok(pb::SessionPersistenceType::HttpCookie) => "HTTP_COOKIE",
        Ok(pb::SessionPersistenceType::AppCookie) => "APP_COOKIE",
        Err(_) => {
            v.add(
                format!("{field}.type"),
                format!("unknown type {}", input.r#type),
            );
            ""
        }
    };
    if matches!(kind, "HTTP_COOKIE" | "APP_COOKIE") && protocol != Protocol::Http {
        v.add(
            format!("{field}.type"),
            format!("{kind} needs an HTTP pool, not {}", protocol.as_str()),
        );
    }
    if kind == "APP_COOKIE" {
        if !valid_cookie_name(&input.cookie_name) {
            v.add(
                format!("{field}.cookie_name"),
                "is required for APP_COOKIE: 1-64 letters, digits, '-', '_' or '.'",
            );
        }
    } else if !input.cookie_name.is_empty() {
        v.add(
            format!("{field}.cookie_name"),
            "only APP_COOKIE persistence takes a cookie name",
        );
    }
    (kind, input.cookie_name.clone())
}

/// An access log target: where a load balancer's syslog lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTarget {
    pub tcp: bool,
    pub addr: std::net::SocketAddr,
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tcp { "tcp" } else { "udp" };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// Reads `udp://IP:PORT` or `tcp://IP:PORT` (IPv6 in brackets; no host names: the device
/// resolves nothing). The address must be one a server can have and the port 1-65535.
pub fn parse_log_target(text: &str) -> Result<LogTarget, String> {
    let (tcp, rest) = if let Some(rest) = text.strip_prefix("udp://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        (true, rest)
    } else {
        return Err("must be udp://ADDRESS:PORT or tcp://ADDRESS:PORT".into());
    };
    let addr: std::net::SocketAddr = rest.parse().map_err(|_| {
        "must be udp://ADDRESS:PORT or tcp://ADDRESS:PORT with an IP address (IPv6 in brackets)"
            .to_owned()
    })?;
    if addr.port() == 0 {
        return Err("needs a port from 1 to 65535".into());
    }
    if let Some(why) = unusable_member_address(addr.ip()) {
        return Err(format!("{} {why}", addr.ip()));
    }
    Ok(LogTarget { tcp, addr })
}

/// Why no member can be at `ip`: an unspecified, broadcast or multicast address reaches no one
/// server.
fn unusable_member_address(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("is the unspecified address")
    } else if ip.is_multicast() {
        Some("is a multicast address")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// The violations of members at an address the operator reserved (Octavia's `reserved_ips`,
/// e.g. the metadata service's 169.254.169.254), with each member's field path.
pub fn reserved_member_addresses<'a>(
    members: impl IntoIterator<Item = (String, &'a NewMember)>,
    reserved: &[IpAddr],
) -> Result<(), ApiError> {
    let violations: Vec<(String, String)> = members
        .into_iter()
        .flat_map(|(path, m)| {
            [
                ("address", Some(m.address)),
                ("monitor_address", m.monitor_address),
            ]
            .into_iter()
            .filter_map(|(field, ip)| ip.map(|ip| (field, ip)))
            .filter(|(_, ip)| reserved.contains(ip))
            .map(|(field, ip)| {
                (
                    format!("{path}.{field}"),
                    format!("{ip} is reserved by the operator"),
                )
            })
            .collect::<Vec<_>>()
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(violations))
    }
}

/// Every member of a whole-tree create, with its field path.
pub fn tree_members(new: &NewLoadBalancer) -> Vec<(String, &NewMember)> {
    let mut found = Vec::new();
    for (i, listener) in new.listeners.iter().enumerate() {
        if let Some(pool) = &listener.default_pool {
            for (j, m) in pool.members.iter().enumerate() {
                found.push((
                    format!("load_balancer.listeners[{i}].default_pool.members[{j}]"),
                    m,
                ));
            }
        }
    }
    for (i, pool) in new.pools.iter().enumerate() {
        for (j, m) in pool.members.iter().enumerate() {
            found.push((format!("load_balancer.pools[{i}].members[{j}]"), m));
        }
    }
    found
}

pub fn validate_member(input: &pb::Member) -> Result<NewMember, ApiError> {
    let mut v = Violations::default();
    let member = member_fields(&mut v, "member", input, false);
    v.finish(member)
}

fn member_fields(v: &mut Violations, f: &str, input: &pb::Member, in_tree: bool) -> NewMember {
    let address = match input.address.parse::<IpAddr>() {
        Ok(ip) => {
            if let Some(why) = unusable_member_address(ip) {
                v.add(format!("{f}.address"), why);
            }
            ip
        }
        Err(_) => {
            v.add(
                format!("{f}.address"),
                if input.address.is_empty() {
                    "is required"
                } else {
                    "is not an IP address"
                },
            );
            IpAddr::from([0, 0, 0, 0])
        }
    };
    let weight = input.weight.unwrap_or(1);
    if !(0..=256).contains(&weight) {
        v.add(format!("{f}.weight"), "must be between 0 and 256");
    }
    let monitor_address = match input.monitor_address.as_str() {
        "" => None,
        given => match given.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(why) = unusable_member_address(ip) {
                    v.add(format!("{f}.monitor_address"), why);
                }
                Some(ip)
            }
            Err(_) => {
                v.add(format!("{f}.monitor_address"), "is not an IP address");
                None
            }
        },
    };
    let monitor_port = match input.monitor_port {
        0 => None,
        given => Some(port(v, &format!("{f}.monitor_port"), given)),
    };
    NewMember {
        monitor_address,
        monitor_port,
        pool_id: if in_tree {
            String::new()
        } else {
            required_id(v, &format!("{f}.pool_id"), &input.pool_id)
        },
        name: name(v, &format!("{f}.name"), &input.name, false),
        address,
        port: port(v, &format!("{f}.protocol_port"), input.protocol_port),
        weight,
        admin_state_up: input.admin_state_up.unwrap_or(true),
        backup: input.backup,
        tags: tags(v, &format!("{f}.tags"), &input.tags),
    }
}

pub fn validate_health_monitor(input: &pb::HealthMonitor) -> Result<NewMonitor, ApiError> {
    let mut v = Violations::default();
    let mut monitor = monitor_fields(&mut v, "health_monitor", input);
    monitor.pool_id = required_id(&mut v, "health_monitor.pool_id", &input.pool_id);
    v.finish(monitor)
}

fn monitor_fields(v: &mut Violations, f: &str, input: &pb::HealthMonitor) -> NewMonitor {
    let monitor_type = match pb::HealthMonitorType::try_from(input.r#type) {
        Ok(pb::HealthMonitorType::Tcp) => "TCP",
        Ok(pb::HealthMonitorType::Http) => "HTTP",
        Ok(pb::HealthMonitorType::Https) => "HTTPS",
        Ok(pb::HealthMonitorType::TlsHello) => "TLS-HELLO",
        Ok(pb::HealthMonitorType::UdpConnect) => "UDP-CONNECT",
        Ok(pb::HealthMonitorType::Ping) => {
            v.add(
                format!("{f}.type"),
                "PING is not supported by any driver yet",
            );
            "TCP"
        }
        Ok(pb::HealthMonitorType::Unspecified) => {
            v.add(format!("{f}.type"), "is required");
            "TCP"
        }
        Err(_) => {
            v.add(
                format!("{f}.type"),
                format!("unknown type {}", input.r#type),
            );
            "TCP"
        }
    };
    if !(1..=86_400).contains(&input.delay_s) {
        v.add(format!("{f}.delay_s"), "must be between 1 and 86400");
    }
    if !(1..=86_400).contains(&input.timeout_s) || input.timeout_s > input.delay_s.max(1) {
        v.add(format!("{f}.timeout_s"), "must be between 1 and the delay");
    }
    if !(1..=10).contains(&input.max_retries) {
        v.add(format!("{f}.max_retries"), "must be between 1 and 10");
    }
    let max_retries_down = if input.max_retries_down == 0 {
        3
    } else {
        input.max_retries_down
    };
    if !(1..=10).contains(&max_retries_down) {
        v.add(format!("{f}.max_retries_down"), "must be between 1 and 10");
    }
    let http = matches!(monitor_type, "HTTP" | "HTTPS");
    let http_method = if input.http_method.is_empty() && http {
        "GET".to_owned()
    } else {
        input.http_method.clone()
    };
    let url_path = if input.url_path.is_empty() && http {
        "/".to_owned()
    } else {
        input.url_path.clone()
    };
    let expected_codes = if input.expected_codes.is_empty() && http {
        "200".to_owned()
    } else {
        input.expected_codes.clone()
    };
    if http {
        if !matches!(
            http_method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH" | "CONNECT" | "TRACE"
        ) {
            v.add(
                format!("{f}.http_method"),
                "must be an HTTP method such as GET",
            );
        }
        if !url_path.starts_with('/')
            || url_path.len() > 2048
            || !url_path
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '#' | '"' | '\'' | '\\'))
        {
            v.add(
                format!("{f}.url_path"),
                "must start with '/' and hold visible ASCII without quotes, '#' or '\\'",
            );
        }
        if !valid_expected_codes(&expected_codes) {
            v.add(
                format!("{f}.expected_codes"),
                "must be a code, a list such as 200,202, or a range such as 200-204",
            );
        }
    } else if !input.http_method.is_empty()
        || !input.url_path.is_empty()
        || !input.expected_codes.is_empty()
        || input.http_version != 0.0
        || !input.domain_name.is_empty()
    {
        v.add(
            format!("{f}.type"),
            "http_method, url_path, expected_codes, http_version and domain_name need an HTTP or HTTPS monitor",
        );
    }
    #[allow(clippy::float_cmp)]
    let http_version = if input.http_version == 0.0 {
        String::new()
    } else if input.http_version == 1.0 {
        "1.0".to_owned()
    } else if input.http_version == 1.1 {
        "1.1".to_owned()
    } else {
        v.add(format!("{f}.http_version"), "must be 1.0 or 1.1");
        String::new()
    };
    if !input.domain_name.is_empty() {
        if !valid_domain_name(&input.domain_name) {
            v.add(
                format!("{f}.domain_name"),
                "must be a host name (letters, digits, '-' and dots, at most 253 characters)",
            );
        } else if http && http_version != "1.1" {
            v.add(
                format!("{f}.domain_name"),
                "needs http_version 1.1 (HTTP/1.0 requests carry no Host header)",
            );
        }
    }
    NewMonitor {
        pool_id: String::new(),
        name: name(v, &format!("{f}.name"), &input.name, false),
        monitor_type,
        delay_s: input.delay_s,
        timeout_s: input.timeout_s,
        max_retries: input.max_retries,
        max_retries_down,
        http_method,
        url_path,
        expected_codes,
        http_version,
        domain_name: input.domain_name.clone(),
        admin_state_up: input.admin_state_up.unwrap_or(true),
    }
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits and '-', none starting or
/// ending with '-', 253 characters at most.
fn valid_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn valid_expected_codes(spec: &str) -> bool {
    let code = |s: &str| s.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
    match spec.split_once('-') {
        Some((lo, hi)) => code(lo) && code(hi) && lo <= hi,
        None => spec.split(',').all(code),
    }
}

pub fn provisioning_status(s: &str) -> pb::ProvisioningStatus {
    pb::ProvisioningStatus::from_str_name(&format!("PROVISIONING_STATUS_{s}"))
        .unwrap_or(pb::ProvisioningStatus::Unspecified)
}

pub fn operating_status(s: &str) -> pb::OperatingStatus {
    pb::OperatingStatus::from_str_name(&format!("OPERATING_STATUS_{s}"))
        .unwrap_or(pb::OperatingStatus::Unspecified)
}

/// Additional VIPs are stored a line each, `network=address` (`network=` until allocated).
pub fn join_additional_vips(vips: &[(String, String)]) -> String {
    vips.iter()
        .map(|(network, address)| format!("{network}={address}\n"))
        .collect()
}

pub fn split_additional_vips(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, a)| (n.to_owned(), a.to_owned()))
        .collect()
}

/// Tags are stored between newlines (`\na\nb\n`), so "carries tag t" is `LIKE '%\nt\n%'`.
pub fn join_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!("\n{}\n", tags.join("\n"))
    }
}

pub fn split_tags(s: &str) -> Vec<String> {
    s.lines()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn proto_protocol(s: &str) -> i32 {
    pb::Protocol::from_str_name(&format!("PROTOCOL_{s}")).map_or(0, |p| p as i32)
}

pub fn load_balancer_to_proto(
    m: load_balancer::Model,
    listener_ids: Vec<String>,
    pool_ids: Vec<String>,
) -> pb::LoadBalancer {
    pb::LoadBalancer {
        etag: load_balancer_etag(&m),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        name: m.name,
        description: m.description,
        vip_address: m.vip_address,
        admin_state_up: Some(m.admin_state_up),
        status_reason: m.status_reason,
        generation: m.generation,
        applied_generation: m.applied_generation,
        flavor: m.flavor,
        availability_zone: m.availability_zone,
        access_log_target: m.access_log_target,
        vip_network_id: m.vip_network_id,
        additional_vips: split_additional_vips(&m.additional_vips)
            .into_iter()
            .map(|(network_id, ip_address)| pb::AdditionalVip {
                network_id,
                ip_address,
            })
            .collect(),
        create_time_ms: m.created_ms,
        update_time_ms: m.updated_ms,
        listener_ids,
        pool_ids,
        listeners: Vec::new(),
        pools: Vec::new(),
    }
}

/// A load balancer's etag changes with every change to it or anything under it.
pub fn load_balancer_etag(m: &load_balancer::Model) -> String {
    format!("g{}", m.generation)
}

/// A child's etag changes with every update of that child.
pub fn revision_etag(revision: i64) -> String {
    format!("r{revision}")
}

pub fn listener_to_proto(m: listener::Model) -> pb::Listener {
    let tls = TlsFields::from_columns(&m.alpn_protocols, &m.tls_versions, &m.tls_ciphers)
        .listener_effective(Protocol::parse(&m.protocol).unwrap_or(Protocol::Tcp));
    pb::Listener {
        etag: revision_etag(m.revision),
        protocol: proto_protocol(&m.protocol),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        loadbalancer_id: m.loadbalancer_id,
        name: m.name,
        description: m.description,
        protocol_port: m.protocol_port,
        connection_limit: m.connection_limit,
        default_pool_id: m.default_pool_id.unwrap_or_default(),
        admin_state_up: Some(m.admin_state_up),
        default_pool: None,
        timeout_client_data_ms: m.timeout_client_data_ms,
        timeout_member_connect_ms: m.timeout_member_connect_ms,
        timeout_member_data_ms: m.timeout_member_data_ms,
        allowed_cidrs: split_tags(&m.allowed_cidrs),
        insert_headers: INSERT_HEADERS
            .iter()
            .map(|h| {
                let on = m.insert_headers.lines().any(|l| l == *h);
                ((*h).to_owned(), on.to_string())
            })
            .filter(|(_, on)| on == "true")
            .collect(),
        default_tls_container_ref: m.default_tls_container_ref.unwrap_or_default(),
        sni_container_refs: split_tags(&m.sni_container_refs),
        l7policy_ids: Vec::new(),
        alpn_protocols: tls.alpn_protocols,
        tls_versions: tls.tls_versions,
        tls_ciphers: tls.tls_ciphers,
        hsts_max_age: m.hsts_max_age,
        hsts_include_subdomains: m.hsts_include_subdomains,
        hsts_preload: m.hsts_preload,
    }
}

pub fn pool_to_proto(m: pool::Model, monitor_id: Option<String>) -> pb::Pool {
    let tls = TlsFields::from_columns(&m.alpn_protocols, &m.tls_versions, &m.tls_ciphers)
        .pool_effective(m.tls_enabled);
    pb::Pool {
        etag: revision_etag(m.revision),
        protocol: proto_protocol(&m.protocol),
        lb_algorithm: pb::LbAlgorithm::from_str_name(&format!("LB_ALGORITHM_{}", m.lb_algorithm))
            .map_or(0, |a| a as i32),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        loadbalancer_id: m.loadbalancer_id,
        listener_id: m.listener_id.unwrap_or_default(),
        name: m.name,
        description: m.description,
        admin_state_up: Some(m.admin_state_up),
        members: Vec::new(),
        healthmonitor: None,
        healthmonitor_id: monitor_id.unwrap_or_default(),
        session_persistence: (!m.session_persistence.is_empty()).then(|| pb::SessionPersistence {
            r#type: pb::SessionPersistenceType::from_str_name(&format!(
                "SESSION_PERSISTENCE_TYPE_{}",
                m.session_persistence
            ))
            .map_or(0, |t| t as i32),
            cookie_name: m.persistence_cookie_name,
        }),
        tls_enabled: m.tls_enabled,
        alpn_protocols: tls.alpn_protocols,
        tls_versions: tls.tls_versions,
        tls_ciphers: tls.tls_ciphers,
    }
}

pub fn member_to_proto(m: member::Model) -> pb::Member {
    pb::Member {
        etag: revision_etag(m.revision),
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        tags: split_tags(&m.tags),
        id: m.id,
        project_id: m.project_id,
        pool_id: m.pool_id,
        name: m.name,
        address: m.address,
        protocol_port: m.protocol_port,
        weight: Some(m.weight),
        admin_state_up: Some(m.admin_state_up),
        backup: m.backup,
        monitor_address: m.monitor_address,
        monitor_port: m.monitor_port,
    }
}

pub fn health_monitor_to_proto(m: health_monitor::Model) -> pb::HealthMonitor {
    let monitor_type = match m.monitor_type.as_str() {
        "HTTP" => pb::HealthMonitorType::Http,
        "HTTPS" => pb::HealthMonitorType::Https,
        "TLS-HELLO" => pb::HealthMonitorType::TlsHello,
        "UDP-CONNECT" => pb::HealthMonitorType::UdpConnect,
        _ => pb::HealthMonitorType::Tcp,
    };
    pb::HealthMonitor {
        etag: revision_etag(m.revision),
        r#type: monitor_type as i32,
        provisioning_status: provisioning_status(&m.provisioning_status) as i32,
        operating_status: operating_status(&m.operating_status) as i32,
        id: m.id,
        project_id: m.project_id,
        pool_id: m.pool_id,
        loadbalancer_id: m.loadbalancer_id,
        name: m.name,
        delay_s: m.delay_s,
        timeout_s: m.timeout_s,
        max_retries: m.max_retries,
        max_retries_down: m.max_retries_down,
        http_method: m.http_method,
        url_path: m.url_path,
        expected_codes: m.expected_codes,
        http_version: m.http_version.parse().unwrap_or(0.0),
        domain_name: m.domain_name,
        admin_state_up: Some(m.admin_state_up),
    }
}

pub fn monitor_type_to_agent(s: &str) -> lbaas::agent::v1::MonitorType {
    use lbaas::agent::v1::MonitorType;
    match s {
        "HTTP" => MonitorType::Http,
        "HTTPS" => MonitorType::Https,
        "TLS-HELLO" => MonitorType::TlsHello,
        "UDP-CONNECT" => MonitorType::UdpConnect,
        _ => MonitorType::Tcp,
    }
}

/// Whether a monitor type can check a pool of this protocol (Octavia's rules): UDP pools take
/// UDP-CONNECT, TCP and HTTP monitors; UDP-CONNECT checks only UDP pools.
pub fn monitor_fits_pool(monitor_type: &str, pool_protocol: &str) -> Result<(), String> {
    match (pool_protocol == "UDP", monitor_type) {
        (true, "UDP-CONNECT" | "TCP" | "HTTP")
        | (false, "TCP" | "HTTP" | "HTTPS" | "TLS-HELLO") => Ok(()),
        (true, other) => Err(format!(
            "UDP pools take UDP-CONNECT, TCP or HTTP monitors, not {other}"
        )),
        (false, other) => Err(format!("{other} monitors check UDP pools only")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid(v) => v.into_iter().map(|(f, _)| f).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn load_balancer_violations_are_reported_together() {
        let input = pb::LoadBalancer {
            name: String::new(),
            vip_address: "nope".into(),
            listeners: vec![pb::Listener {
                protocol: pb::Protocol::Http as i32,
                protocol_port: 70000,
                default_pool: Some(pb::Pool {
                    protocol: pb::Protocol::Http as i32,
                    lb_algorithm: 42,
                    members: vec![pb::Member {
                        address: "10.0.0.999".into(),
                        protocol_port: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = fields(validate_load_balancer(&input).unwrap_err());
        for want in [
            "load_balancer.name",
            "load_balancer.vip_address",
            "load_balancer.listeners[0].protocol_port",
            "load_balancer.listeners[0].default_pool.lb_algorithm",
            "load_balancer.listeners[0].default_pool.members[0].address",
            "load_balancer.listeners[0].default_pool.members[0].protocol_port",
        ] {
            assert!(got.iter().any(|f| f == want), "{want} missing from {got:?}");
        }
    }

    #[test]
    fn additional_vips_are_checked() {
        let extra = |network_id: &str, ip_address: &str| pb::AdditionalVip {
            network_id: network_id.into(),
            ip_address: ip_address.into(),
        };
        let lb = |vip_network_id: &str, additional_vips| pb::LoadBalancer {
            name: "dual".into(),
            vip_network_id: vip_network_id.into(),
            additional_vips,
            ..Default::default()
        };
        let ok = validate_load_balancer(&lb("v4", vec![extra("v6", "fd00::10")])).unwrap();
        assert_eq!(
            ok.additional_vips,
            vec![("v6".to_owned(), Some("fd00::10".parse().unwrap()))]
        );
        let got = fields(validate_load_balancer(&lb("", vec![extra("v6", "")])).unwrap_err());
        assert_eq!(got, ["load_balancer.additional_vips"]);
        let got = fields(
            validate_load_balancer(&lb(
                "v4",
                vec![
                    extra("v4", ""),
                    extra("v6", "nope"),
                    extra("v6", ""),
                    extra("", ""),
                ],
            ))
            .unwrap_err(),
        );
        assert_eq!(
            got,
            [
                "load_balancer.additional_vips[0].network_id",
                "load_balancer.additional_vips[1].ip_address",
                "load_balancer.additional_vips[2].network_id",
                "load_balancer.additional_vips[3].network_id",
            ]
        );
        assert_eq!(
            split_additional_vips(&join_additional_vips(&[
                ("v6".into(), "fd00::10".into()),
                ("w".into(), String::new())
            ])),
            [
                ("v6".to_owned(), "fd00::10".to_owned()),
                ("w".into(), String::new())
            ]
        );
    }

    #[test]
    fn over_long_name_and_bad_monitor_path() {
        let input = pb::LoadBalancer {
            name: "x".repeat(256),
            ..Default::default()
        };
        assert_eq!(
            fields(validate_load_balancer(&input).unwrap_err()),
            vec!["load_balancer.name"]
        );
        let pool = pb::Pool {
            loadbalancer_id: uuid::Uuid::new_v4().to_string(),
            protocol: pb::Protocol::Http as i32,
            lb_algorithm: pb::LbAlgorithm::RoundRobin as i32,
            healthmonitor: Some(pb::HealthMonitor {
                r#type: pb::HealthMonitorType::Http as i32,
                delay_s: 5,
                timeout_s: 2,
                max_retries: 3,
                url_path: "/a\nserver x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fields(validate_pool(&pool).unwrap_err()),
            vec!["pool.healthmonitor.url_path"]
        );
    }

    #[test]
    fn valid_member_defaults() {
        let m = validate_member(&pb::Member {
            pool_id: uuid::Uuid::new_v4().to_string(),
            address: "::1".into(),
            protocol_port: 80,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.weight, 1);
        assert!(m.admin_state_up);
    }

    #[test]
    fn access_log_targets_are_udp_or_tcp_to_an_address() {
        let ok = |t: &str| parse_log_target(t).map(|t| t.to_string());
        assert_eq!(
            ok("udp://127.0.0.1:514").as_deref(),
            Ok("udp://127.0.0.1:514")
        );
        assert_eq!(ok("tcp://[::1]:6514").as_deref(), Ok("tcp://[::1]:6514"));
        for bad in [
            "127.0.0.1:514",
            "syslog://127.0.0.1:514",
            "udp://127.0.0.1",
            "udp://127.0.0.1:0",
            "udp://logs.example.com:514",
            "udp://0.0.0.0:514",
            "udp://224.0.0.1:514",
            "udp://255.255.255.255:514",
            "udp://127.0.0.1:514\n",
        ] {
            assert!(parse_log_target(bad).is_err(), "{bad}");
        }
    }
}
