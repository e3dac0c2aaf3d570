//! Octavia v2's request bodies, read into the api's proto messages: Octavia's field names and
//! units in, the update mask made of the fields a body names. Integers may arrive as strings.
//! Octavia fields lbaas does not implement are accepted only when empty (null, "", [] or {}), and
//! refused with the field named otherwise, so nothing a client asks for is silently dropped.
use lbaas::api::v1 as pb;
use prost_types::FieldMask;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::RestError;

/// An integer given as a JSON number or as a string of digits.
fn int_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a 32-bit integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i32>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "{other} is not an integer"
        ))),
    }
}

/// A boolean given as JSON or as the strings "true"/"false".
fn bool_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "{other} is not a boolean"
        ))),
    }
}

/// A number given as JSON or as a string (HTTP versions: 1.0, 1.1).
fn float_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number"))),
        Some(other) => Err(serde::de::Error::custom(format!("{other} is not a number"))),
    }
}

fn is_empty(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// Refuses Octavia fields lbaas does not implement, unless they are empty.
fn unsupported(fields: &[(&str, &Option<Value>)], why: &str) -> Result<(), RestError> {
    for (name, value) in fields {
        if !is_empty(value) {
            return Err(RestError::bad_request(format!(
                "{name}: not supported by lbaas ({why})"
            )));
        }
    }
    Ok(())
}

fn parse_enum<E>(
    field: &str,
    given: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Option<E>,
    allowed: &[&str],
) -> Result<E, RestError> {
    parse(&format!("{prefix}{}", given.to_ascii_uppercase())).ok_or_else(|| {
        RestError::bad_request(format!(
            "{field}: {given:?} is not one of {}",
            allowed.join(", ")
        ))
    })
}

fn protocol(field: &str, given: &str) -> Result<i32, RestError> {
    parse_enum(
        field,
        given,
        "PROTOCOL_",
        pb::Protocol::from_str_name,
        &[
            "TCP",
            "HTTP",
            "HTTPS",
            "TERMINATED_HTTPS",
            "UDP",
            "PROXY",
            "PROXYV2",
        ],
    )
    .map(|p| p as i32)
}

/// The keys a JSON object names, mapped to the proto paths of an update mask.
fn mask(
    body: &serde_json::Map<String, Value>,
    rename: &[(&str, &str)],
    skip: &[&str],
) -> FieldMask {
    let paths = body
        .keys()
        .filter(|k| !skip.contains(&k.as_str()))
        .map(|k| {
            rename
                .iter()
                .find(|(from, _)| from == k)
                .map_or_else(|| k.clone(), |(_, to)| (*to).to_owned())
        })
        .collect();
    FieldMask { paths }
}

/// Reads `{"<wrapper>": {...}}` into `T`, with the object's keys for the update mask.
pub fn unwrap<T: serde::de::DeserializeOwned>(
    body: &Value,
    wrapper: &str,
) -> Result<(T, serde_json::Map<String, Value>), RestError> {
    let inner = body
        .get(wrapper)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            RestError::bad_request(format!("the body must be {{\"{wrapper}\": {{...}}}}"))
        })?;
    let parsed = serde_json::from_value(Value::Object(inner.clone()))
        .map_err(|e| RestError::bad_request(format!("{wrapper}: {e}")))?;
    Ok((parsed, inner.clone()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerBody {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub vip_address: Option<String>,
    pub vip_subnet_id: Option<String>,
    pub vip_network_id: Option<String>,
    pub vip_port_id: Option<String>,
    pub flavor_id: Option<String>,
    pub provider: Option<String>,
    pub tags: Option<Vec<String>>,
    pub additional_vips: Option<Vec<AdditionalVipBody>>,
    pub vip_qos_policy_id: Option<Value>,
    pub availability_zone: Option<String>,
    pub vip_sg_ids: Option<Value>,
    pub vip_vnic_type: Option<Value>,
    pub listeners: Option<Value>,
    pub pools: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalVipBody {
    pub subnet_id: String,
    pub ip_address: Option<String>,
}

impl LoadBalancerBody {
    /// The load balancer to create (or the fields to update).
    pub fn into_proto(self) -> Result<pb::LoadBalancer, RestError> {
        unsupported(
            &[
                ("vip_qos_policy_id", &self.vip_qos_policy_id),
                ("vip_sg_ids", &self.vip_sg_ids),
                ("listeners", &self.listeners),
                ("pools", &self.pools),
            ],
            "create the children one by one",
        )?;
        if let Some(t) = self.vip_vnic_type.as_ref().and_then(Value::as_str)
            && t != "normal"
        {
            return Err(RestError::bad_request(format!(
                "vip_vnic_type: only \"normal\" is supported, not {t:?}"
            )));
        }
        if let Some(p) = &self.provider
            && p != super::json::PROVIDER
        {
            return Err(RestError::bad_request(format!(
                "provider: {p:?} is not a provider here; the one provider is {:?}",
                super::json::PROVIDER
            )));
        }
        if self.vip_port_id.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(RestError::bad_request(
                "vip_port_id: lbaas allocates VIPs itself and has no Neutron ports; give vip_subnet_id or vip_network_id (and vip_address to choose the address)"
                    .to_owned(),
            ));
        }
        // A network is one subnet, both named by the network's name.
        let vip_network_id = match (self.vip_subnet_id, self.vip_network_id) {
            (Some(s), Some(n)) if s != n => {
                return Err(RestError::bad_request(format!(
                    "vip_subnet_id {s:?} is not a subnet of vip_network_id {n:?}"
                )));
            }
            (Some(s), _) => s,
            (None, Some(n)) => n,
            (None, None) => String::new(),
        };
        Ok(pb::LoadBalancer {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            vip_address: self.vip_address.unwrap_or_default(),
            vip_network_id,
            flavor: self.flavor_id.unwrap_or_default(),
            availability_zone: self.availability_zone.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            additional_vips: self
                .additional_vips
                .unwrap_or_default()
                .into_iter()
                .map(|v| pb::AdditionalVip {
                    network_id: v.subnet_id,
                    ip_address: v.ip_address.unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        // A flavor_id on update is a resize.
        mask(body, &[("flavor_id", "flavor")], &[])
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerBody {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub loadbalancer_id: Option<String>,
    pub protocol: Option<String>,
    #[serde(default, deserialize_with = "int_opt")]
    pub protocol_port: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub connection_limit: Option<i32>,
    pub default_pool_id: Option<String>,
    pub default_tls_container_ref: Option<String>,
    pub sni_container_refs: Option<Vec<String>>,
    pub insert_headers: Option<std::collections::HashMap<String, String>>,
    #[serde(default, deserialize_with = "int_opt")]
    pub timeout_client_data: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub timeout_member_connect: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub timeout_member_data: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub timeout_tcp_inspect: Option<i32>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub alpn_protocols: Option<Vec<String>>,
    pub tls_versions: Option<Vec<String>>,
    pub tls_ciphers: Option<String>,
    pub client_ca_tls_container_ref: Option<Value>,
    pub client_authentication: Option<Value>,
    pub client_crl_container_ref: Option<Value>,
    #[serde(default, deserialize_with = "int_opt")]
    pub hsts_max_age: Option<i32>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub hsts_include_subdomains: Option<bool>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub hsts_preload: Option<bool>,
    pub default_pool: Option<Value>,
    pub l7policies: Option<Value>,
}

impl ListenerBody {
    pub fn into_proto(self) -> Result<pb::Listener, RestError> {
        unsupported(
            &[
                (
                    "client_ca_tls_container_ref",
                    &self.client_ca_tls_container_ref,
                ),
                ("client_crl_container_ref", &self.client_crl_container_ref),
                ("default_pool", &self.default_pool),
                ("l7policies", &self.l7policies),
            ],
            "not implemented yet; see the README",
        )?;
        if let Some(a) = self.client_authentication.as_ref().and_then(Value::as_str)
            && a != "NONE"
        {
            return Err(RestError::bad_request(format!(
                "client_authentication: {a:?} is not supported yet (only NONE)"
            )));
        }
        if self.timeout_tcp_inspect.is_some_and(|t| t != 0) {
            return Err(RestError::bad_request(
                "timeout_tcp_inspect: lbaas does not wait for content on TCP listeners; give 0"
                    .to_owned(),
            ));
        }
        Ok(pb::Listener {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            loadbalancer_id: self.loadbalancer_id.unwrap_or_default(),
            protocol: match &self.protocol {
                Some(p) => protocol("protocol", p)?,
                None => 0,
            },
            protocol_port: self.protocol_port.unwrap_or_default(),
            connection_limit: self.connection_limit.unwrap_or(-1),
            default_pool_id: self.default_pool_id.unwrap_or_default(),
            default_tls_container_ref: self.default_tls_container_ref.unwrap_or_default(),
            sni_container_refs: self.sni_container_refs.unwrap_or_default(),
            insert_headers: self.insert_headers.unwrap_or_default(),
            timeout_client_data_ms: self.timeout_client_data.unwrap_or_default(),
            timeout_member_connect_ms: self.timeout_member_connect.unwrap_or_default(),
            timeout_member_data_ms: self.timeout_member_data.unwrap_or_default(),
            allowed_cidrs: self.allowed_cidrs.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            alpn_protocols: self.alpn_protocols.unwrap_or_default(),
            tls_versions: self.tls_versions.unwrap_or_default(),
            tls_ciphers: self.tls_ciphers.unwrap_or_default(),
            hsts_max_age: self.hsts_max_age,
            hsts_include_subdomains: self.hsts_include_subdomains.unwrap_or_default(),
            hsts_preload: self.hsts_preload.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(
            body,
            &[
                ("timeout_client_data", "timeout_client_data_ms"),
                ("timeout_member_connect", "timeout_member_connect_ms"),
                ("timeout_member_data", "timeout_member_data_ms"),
            ],
            &[
                "timeout_tcp_inspect",
                "client_authentication",
                "client_ca_tls_container_ref",
                "client_crl_container_ref",
            ],
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPersistenceBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub cookie_name: Option<String>,
    pub persistence_timeout: Option<Value>,
    pub persistence_granularity: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub loadbalancer_id: Option<String>,
    pub listener_id: Option<String>,
    pub protocol: Option<String>,
    pub lb_algorithm: Option<String>,
    pub session_persistence: Option<SessionPersistenceBody>,
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub tls_enabled: Option<bool>,
    pub alpn_protocols: Option<Vec<String>>,
    pub tls_versions: Option<Vec<String>>,
    pub tls_ciphers: Option<String>,
    pub tls_container_ref: Option<Value>,
    pub ca_tls_container_ref: Option<Value>,
    pub crl_container_ref: Option<Value>,
    pub healthmonitor: Option<Value>,
    pub members: Option<Value>,
}

impl PoolBody {
    pub fn into_proto(self) -> Result<pb::Pool, RestError> {
        unsupported(
            &[
                ("tls_container_ref", &self.tls_container_ref),
                ("ca_tls_container_ref", &self.ca_tls_container_ref),
                ("crl_container_ref", &self.crl_container_ref),
                ("healthmonitor", &self.healthmonitor),
                ("members", &self.members),
            ],
            "not implemented yet; see the README",
        )?;
        let session_persistence = match self.session_persistence {
            None => None,
            Some(s) => {
                unsupported(
                    &[
                        (
                            "session_persistence.persistence_timeout",
                            &s.persistence_timeout,
                        ),
                        (
                            "session_persistence.persistence_granularity",
                            &s.persistence_granularity,
                        ),
                    ],
                    "UDP persistence is not implemented",
                )?;
                let kind = match s.kind.as_deref() {
                    None | Some("") => 0,
                    Some(k) => parse_enum(
                        "session_persistence.type",
                        k,
                        "SESSION_PERSISTENCE_TYPE_",
                        pb::SessionPersistenceType::from_str_name,
                        &["SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE"],
                    )? as i32,
                };
                Some(pb::SessionPersistence {
                    r#type: kind,
                    cookie_name: s.cookie_name.unwrap_or_default(),
                })
            }
        };
        Ok(pb::Pool {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            loadbalancer_id: self.loadbalancer_id.unwrap_or_default(),
            listener_id: self.listener_id.unwrap_or_default(),
            protocol: match &self.protocol {
                Some(p) => protocol("protocol", p)?,
                None => 0,
            },
            lb_algorithm: match &self.lb_algorithm {
                Some(a) => parse_enum(
                    "lb_algorithm",
                    a,
                    "LB_ALGORITHM_",
                    pb::LbAlgorithm::from_str_name,
                    &["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"],
                )? as i32,
                None => 0,
            },
            session_persistence,
            tags: self.tags.unwrap_or_default(),
            tls_enabled: self.tls_enabled.unwrap_or_default(),
            alpn_protocols: self.alpn_protocols.unwrap_or_default(),
            tls_versions: self.tls_versions.unwrap_or_default(),
            tls_ciphers: self.tls_ciphers.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(
            body,
            &[],
            &[
                "tls_container_ref",
                "ca_tls_container_ref",
                "crl_container_ref",
            ],
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub address: Option<String>,
    #[serde(default, deserialize_with = "int_opt")]
    pub protocol_port: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub weight: Option<i32>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub backup: Option<bool>,
    pub subnet_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub monitor_address: Option<String>,
    #[serde(default, deserialize_with = "int_opt")]
    pub monitor_port: Option<i32>,
    pub vnic_type: Option<Value>,
    pub request_sriov: Option<Value>,
}

impl MemberBody {
    pub fn into_proto(self) -> Result<pb::Member, RestError> {
        if self.request_sriov.as_ref().and_then(Value::as_bool) == Some(true) {
            return Err(RestError::bad_request(
                "request_sriov: SR-IOV is not supported".to_owned(),
            ));
        }
        Ok(pb::Member {
            id: self.id.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            address: self.address.unwrap_or_default(),
            protocol_port: self.protocol_port.unwrap_or_default(),
            weight: self.weight,
            backup: self.backup.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            monitor_address: self.monitor_address.unwrap_or_default(),
            monitor_port: self.monitor_port.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(body, &[], &[])
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthMonitorBody {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub pool_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "int_opt")]
    pub delay: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub timeout: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub max_retries: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub max_retries_down: Option<i32>,
    pub http_method: Option<String>,
    pub url_path: Option<String>,
    pub expected_codes: Option<String>,
    #[serde(default, deserialize_with = "float_opt")]
    pub http_version: Option<f64>,
    pub domain_name: Option<String>,
    pub tags: Option<Value>,
}

impl HealthMonitorBody {
    pub fn into_proto(self) -> Result<pb::HealthMonitor, RestError> {
        unsupported(&[("tags", &self.tags)], "health monitors carry no tags yet")?;
        Ok(pb::HealthMonitor {
            name: self.name.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            pool_id: self.pool_id.unwrap_or_default(),
            r#type: match &self.kind {
                Some(k) => parse_enum(
                    "type",
                    k,
                    "HEALTH_MONITOR_TYPE_",
                    pb::HealthMonitorType::from_str_name,
                    &["TCP", "HTTP", "HTTPS", "TLS-HELLO", "UDP-CONNECT", "PING"],
                )
                .or_else(|e| {
                    // Octavia writes TLS-HELLO and UDP-CONNECT with a hyphen.
                    pb::HealthMonitorType::from_str_name(&format!(
                        "HEALTH_MONITOR_TYPE_{}",
                        k.to_ascii_uppercase().replace('-', "_")
                    ))
                    .ok_or(e)
                })? as i32,
                None => 0,
            },
            delay_s: self.delay.unwrap_or_default(),
            timeout_s: self.timeout.unwrap_or_default(),
            max_retries: self.max_retries.unwrap_or_default(),
            max_retries_down: self.max_retries_down.unwrap_or_default(),
            http_method: self.http_method.unwrap_or_default(),
            url_path: self.url_path.unwrap_or_default(),
            expected_codes: self.expected_codes.unwrap_or_default(),
            http_version: self.http_version.unwrap_or_default(),
            domain_name: self.domain_name.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(
            body,
            &[("delay", "delay_s"), ("timeout", "timeout_s")],
            &["tags"],
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L7PolicyBody {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    pub listener_id: Option<String>,
    pub action: Option<String>,
    pub redirect_pool_id: Option<String>,
    pub redirect_url: Option<String>,
    pub redirect_prefix: Option<String>,
    #[serde(default, deserialize_with = "int_opt")]
    pub redirect_http_code: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub position: Option<i32>,
    pub tags: Option<Vec<String>>,
    pub rules: Option<Value>,
}

impl L7PolicyBody {
    pub fn into_proto(self) -> Result<pb::L7Policy, RestError> {
        unsupported(&[("rules", &self.rules)], "create rules one by one")?;
        Ok(pb::L7Policy {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            admin_state_up: self.admin_state_up,
            listener_id: self.listener_id.unwrap_or_default(),
            action: match &self.action {
                Some(a) => parse_enum(
                    "action",
                    a,
                    "L7_POLICY_ACTION_",
                    pb::L7PolicyAction::from_str_name,
                    &[
                        "REJECT",
                        "REDIRECT_TO_URL",
                        "REDIRECT_PREFIX",
                        "REDIRECT_TO_POOL",
                    ],
                )? as i32,
                None => 0,
            },
            redirect_pool_id: self.redirect_pool_id.unwrap_or_default(),
            redirect_url: self.redirect_url.unwrap_or_default(),
            redirect_prefix: self.redirect_prefix.unwrap_or_default(),
            redirect_http_code: self.redirect_http_code.unwrap_or_default(),
            position: self.position.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(body, &[], &[])
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L7RuleBody {
    #[serde(default, deserialize_with = "bool_opt")]
    pub admin_state_up: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub compare_type: Option<String>,
    pub key: Option<String>,
    pub value: Option<String>,
    #[serde(default, deserialize_with = "bool_opt")]
    pub invert: Option<bool>,
    pub tags: Option<Vec<String>>,
}

impl L7RuleBody {
    pub fn into_proto(self, policy: &str) -> Result<pb::L7Rule, RestError> {
        Ok(pb::L7Rule {
            l7policy_id: policy.to_owned(),
            admin_state_up: self.admin_state_up,
            r#type: match &self.kind {
                Some(k) => parse_enum(
                    "type",
                    k,
                    "L7_RULE_TYPE_",
                    pb::L7RuleType::from_str_name,
                    &["HOST_NAME", "PATH", "FILE_TYPE", "HEADER", "COOKIE"],
                )? as i32,
                None => 0,
            },
            compare_type: match &self.compare_type {
                Some(c) => parse_enum(
                    "compare_type",
                    c,
                    "L7_RULE_COMPARE_TYPE_",
                    pb::L7RuleCompareType::from_str_name,
                    &["EQUAL_TO", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "REGEX"],
                )? as i32,
                None => 0,
            },
            key: self.key.unwrap_or_default(),
            value: self.value.unwrap_or_default(),
            invert: self.invert.unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            ..Default::default()
        })
    }

    pub fn mask(body: &serde_json::Map<String, Value>) -> FieldMask {
        mask(body, &[], &[])
    }
}

/// Octavia's quota body: either spelling of each key; absent keys keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    #[serde(default, deserialize_with = "int_opt")]
    pub load_balancer: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub loadbalancer: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub listener: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub pool: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub member: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub health_monitor: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub healthmonitor: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub l7policy: Option<i32>,
    #[serde(default, deserialize_with = "int_opt")]
    pub l7rule: Option<i32>,
}

impl QuotaBody {
    /// `current` with the keys this body names set.
    pub fn apply(self, mut current: pb::Quota) -> Result<pb::Quota, RestError> {
        if let Some(v) = self.l7policy {
            current.l7_policies = Some(v);
        }
        if let Some(v) = self.l7rule {
            current.l7_rules = Some(v);
        }
        if let Some(v) = self.load_balancer.or(self.loadbalancer) {
            current.load_balancers = v;
        }
        if let Some(v) = self.listener {
            current.listeners = v;
        }
        if let Some(v) = self.pool {
            current.pools = v;
        }
        if let Some(v) = self.member {
            current.members = v;
        }
        if let Some(v) = self.health_monitor.or(self.healthmonitor) {
            current.health_monitors = v;
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integers_may_be_strings_and_unknown_fields_are_refused() {
        let body = serde_json::json!({"listener": {
            "protocol": "http", "protocol_port": "80", "loadbalancer_id": "lb",
            "timeout_client_data": 5000
        }});
        let (l, keys): (ListenerBody, _) = unwrap(&body, "listener").unwrap();
        let l = l.into_proto().unwrap();
        assert_eq!(l.protocol, pb::Protocol::Http as i32);
        assert_eq!(l.protocol_port, 80);
        assert_eq!(l.timeout_client_data_ms, 5000);
        assert_eq!(
            ListenerBody::mask(&keys).paths,
            [
                "loadbalancer_id",
                "protocol",
                "protocol_port",
                "timeout_client_data_ms"
            ]
        );
        let bad = serde_json::json!({"listener": {"protocol_port": 80, "colour": "red"}});
        let e = unwrap::<ListenerBody>(&bad, "listener").unwrap_err();
        assert!(e.message.contains("colour"), "{}", e.message);
        let bad = serde_json::json!({"listener": {"protocol": "SCTP"}});
        let (l, _): (ListenerBody, _) = unwrap(&bad, "listener").unwrap();
        assert!(l.into_proto().unwrap_err().message.contains("protocol"));
    }

    #[test]
    fn unsupported_fields_pass_only_when_empty() {
        let ok = serde_json::json!({"loadbalancer": {"name": "a", "vip_sg_ids": null}});
        let (lb, _): (LoadBalancerBody, _) = unwrap(&ok, "loadbalancer").unwrap();
        assert_eq!(lb.into_proto().unwrap().name, "a");
        let bad = serde_json::json!({"loadbalancer": {"name": "a", "vip_sg_ids": ["sg"]}});
        let (lb, _): (LoadBalancerBody, _) = unwrap(&bad, "loadbalancer").unwrap();
        assert!(lb.into_proto().unwrap_err().message.contains("vip_sg_ids"));
        // A member's monitor target, with the port sent as a string, reaches the proto.
        let member = serde_json::json!({"member": {"address": "10.0.0.1", "protocol_port": 80,
            "monitor_address": "10.0.0.2", "monitor_port": "8080"}});
        let (m, _): (MemberBody, _) = unwrap(&member, "member").unwrap();
        let m = m.into_proto().unwrap();
        assert_eq!(
            (m.monitor_address.as_str(), m.monitor_port),
            ("10.0.0.2", 8080)
        );
    }

    #[test]
    fn subnet_and_network_name_the_same_vip_network() {
        let lb = LoadBalancerBody {
            vip_subnet_id: Some("lab".into()),
            ..Default::default()
        };
        assert_eq!(lb.into_proto().unwrap().vip_network_id, "lab");
        let lb = LoadBalancerBody {
            vip_subnet_id: Some("a".into()),
            vip_network_id: Some("b".into()),
            ..Default::default()
        };
        assert!(lb.into_proto().is_err());
    }
}
