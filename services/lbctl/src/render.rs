//! Every API object as a printable [`Val`]: the proto's fields under the proto's names, in proto
//! order, enums by name; input-only fields (the tree parts of create requests, private keys) left
//! out. Also the columns each `list` shows, after the openstack CLI's. The provider API's objects
//! (devices, service types, networks, agents, placement explained) are at the end.
use lbaas::{api::v1 as pb, scheduler::v1 as spb};

use crate::{
    enums::{self, val},
    output::{Val, obj},
};

/// A string map (headers, labels) as an object, sorted by key.
fn string_map(map: &std::collections::HashMap<String, String>) -> Val {
    let mut fields: Vec<(String, Val)> = map
        .iter()
        .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Val::Obj(fields)
}

pub const LOAD_BALANCER_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "vip_address",
    "provisioning_status",
    "operating_status",
    "flavor",
];

pub fn load_balancer(lb: &pb::LoadBalancer) -> Val {
    obj()
        .field("id", &lb.id)
        .field("project_id", &lb.project_id)
        .field("name", &lb.name)
        .field("description", &lb.description)
        .field("vip_address", &lb.vip_address)
        .field("admin_state_up", lb.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(lb.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(lb.operating_status),
        )
        .field("status_reason", &lb.status_reason)
        .field("generation", lb.generation)
        .field("applied_generation", lb.applied_generation)
        .field("flavor", &lb.flavor)
        .field("availability_zone", &lb.availability_zone)
        .field("access_log_target", &lb.access_log_target)
        .field("tags", &lb.tags)
        .field("etag", &lb.etag)
        .field("create_time_ms", Val::Time(lb.create_time_ms))
        .field("update_time_ms", Val::Time(lb.update_time_ms))
        .field("listener_ids", &lb.listener_ids)
        .field("pool_ids", &lb.pool_ids)
        .field("vip_network_id", &lb.vip_network_id)
        .field(
            "additional_vips",
            &lb.additional_vips
                .iter()
                .map(|v| format!("{} ({})", v.ip_address, v.network_id))
                .collect::<Vec<_>>(),
        )
        .build()
}

pub const LISTENER_COLUMNS: &[&str] = &[
    "id",
    "default_pool_id",
    "name",
    "project_id",
    "protocol",
    "protocol_port",
    "admin_state_up",
];

pub fn listener(l: &pb::Listener) -> Val {
    obj()
        .field("id", &l.id)
        .field("project_id", &l.project_id)
        .field("loadbalancer_id", &l.loadbalancer_id)
        .field("name", &l.name)
        .field("description", &l.description)
        .field("protocol", val::<pb::Protocol>(l.protocol))
        .field("protocol_port", l.protocol_port)
        .field("connection_limit", l.connection_limit)
        .field("default_pool_id", &l.default_pool_id)
        .field("admin_state_up", l.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(l.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(l.operating_status),
        )
        .field("tags", &l.tags)
        .field("timeout_client_data_ms", l.timeout_client_data_ms)
        .field("timeout_member_connect_ms", l.timeout_member_connect_ms)
        .field("timeout_member_data_ms", l.timeout_member_data_ms)
        .field("etag", &l.etag)
        .field("allowed_cidrs", &l.allowed_cidrs)
        .field("insert_headers", string_map(&l.insert_headers))
        .field("default_tls_container_ref", &l.default_tls_container_ref)
        .field("sni_container_refs", &l.sni_container_refs)
        .field("l7policy_ids", &l.l7policy_ids)
        .field("alpn_protocols", &l.alpn_protocols)
        .field("tls_versions", &l.tls_versions)
        .field("tls_ciphers", &l.tls_ciphers)
        .field(
            "hsts_max_age",
            l.hsts_max_age.map_or(Val::Null, |a| Val::Int(i64::from(a))),
        )
        .field("hsts_include_subdomains", l.hsts_include_subdomains)
        .field("hsts_preload", l.hsts_preload)
        .build()
}

pub const POOL_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "protocol",
    "lb_algorithm",
    "admin_state_up",
];

pub fn session_persistence(p: Option<&pb::SessionPersistence>) -> Val {
    match p {
        Some(p) if p.r#type != 0 => obj()
            .field("type", val::<pb::SessionPersistenceType>(p.r#type))
            .field("cookie_name", &p.cookie_name)
            .build(),
        _ => Val::Null,
    }
}

pub fn pool(p: &pb::Pool) -> Val {
    obj()
        .field("id", &p.id)
        .field("project_id", &p.project_id)
        .field("loadbalancer_id", &p.loadbalancer_id)
        .field("listener_id", &p.listener_id)
        .field("name", &p.name)
        .field("description", &p.description)
        .field("protocol", val::<pb::Protocol>(p.protocol))
        .field("lb_algorithm", val::<pb::LbAlgorithm>(p.lb_algorithm))
        .field("admin_state_up", p.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(p.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(p.operating_status),
        )
        .field("tags", &p.tags)
        .field("healthmonitor_id", &p.healthmonitor_id)
        .field("etag", &p.etag)
        .field(
            "session_persistence",
            session_persistence(p.session_persistence.as_ref()),
        )
        .field("tls_enabled", p.tls_enabled)
        .field("alpn_protocols", &p.alpn_protocols)
        .field("tls_versions", &p.tls_versions)
        .field("tls_ciphers", &p.tls_ciphers)
        .build()
}

pub const MEMBER_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "address",
    "protocol_port",
    "operating_status",
    "weight",
];

pub fn member(m: &pb::Member) -> Val {
    obj()
        .field("id", &m.id)
        .field("project_id", &m.project_id)
        .field("pool_id", &m.pool_id)
        .field("name", &m.name)
        .field("address", &m.address)
        .field("protocol_port", m.protocol_port)
        .field("weight", m.weight)
        .field("admin_state_up", m.admin_state_up)
        .field("backup", m.backup)
        .field("monitor_address", &m.monitor_address)
        .field("monitor_port", m.monitor_port)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(m.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(m.operating_status),
        )
        .field("tags", &m.tags)
        .field("etag", &m.etag)
        .build()
}

pub const HEALTH_MONITOR_COLUMNS: &[&str] = &["id", "name", "project_id", "type", "admin_state_up"];

pub fn health_monitor(h: &pb::HealthMonitor) -> Val {
    obj()
        .field("id", &h.id)
        .field("project_id", &h.project_id)
        .field("pool_id", &h.pool_id)
        .field("name", &h.name)
        .field("type", val::<pb::HealthMonitorType>(h.r#type))
        .field("delay_s", h.delay_s)
        .field("timeout_s", h.timeout_s)
        .field("max_retries", h.max_retries)
        .field("max_retries_down", h.max_retries_down)
        .field("http_method", &h.http_method)
        .field("url_path", &h.url_path)
        .field("expected_codes", &h.expected_codes)
        .field("http_version", h.http_version)
        .field("domain_name", &h.domain_name)
        .field("admin_state_up", h.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(h.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(h.operating_status),
        )
        .field("loadbalancer_id", &h.loadbalancer_id)
        .field("etag", &h.etag)
        .build()
}

pub const L7POLICY_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "action",
    "position",
    "admin_state_up",
];

pub fn l7policy(p: &pb::L7Policy) -> Val {
    obj()
        .field("id", &p.id)
        .field("project_id", &p.project_id)
        .field("listener_id", &p.listener_id)
        .field("name", &p.name)
        .field("description", &p.description)
        .field("action", val::<pb::L7PolicyAction>(p.action))
        .field("redirect_pool_id", &p.redirect_pool_id)
        .field("redirect_url", &p.redirect_url)
        .field("redirect_prefix", &p.redirect_prefix)
        .field("redirect_http_code", p.redirect_http_code)
        .field("position", p.position)
        .field("admin_state_up", p.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(p.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(p.operating_status),
        )
        .field("tags", &p.tags)
        .field("rule_ids", &p.rule_ids)
        .field("etag", &p.etag)
        .build()
}

pub const L7RULE_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "provisioning_status",
    "compare_type",
    "type",
    "key",
    "value",
    "invert",
    "admin_state_up",
];

pub fn l7rule(r: &pb::L7Rule) -> Val {
    obj()
        .field("id", &r.id)
        .field("project_id", &r.project_id)
        .field("l7policy_id", &r.l7policy_id)
        .field("type", val::<pb::L7RuleType>(r.r#type))
        .field("compare_type", val::<pb::L7RuleCompareType>(r.compare_type))
        .field("key", &r.key)
        .field("value", &r.value)
        .field("invert", r.invert)
        .field("admin_state_up", r.admin_state_up)
        .field(
            "provisioning_status",
            val::<pb::ProvisioningStatus>(r.provisioning_status),
        )
        .field(
            "operating_status",
            val::<pb::OperatingStatus>(r.operating_status),
        )
        .field("tags", &r.tags)
        .field("etag", &r.etag)
        .build()
}

pub const CERTIFICATE_COLUMNS: &[&str] = &["id", "name", "subject_names", "expire_time_ms"];

pub fn certificate(c: &pb::Certificate) -> Val {
    obj()
        .field("id", &c.id)
        .field("project_id", &c.project_id)
        .field("name", &c.name)
        .field("certificate_pem", &c.certificate_pem)
        .field("subject_names", &c.subject_names)
        .field("expire_time_ms", Val::Time(c.expire_time_ms))
        .field("create_time_ms", Val::Time(c.create_time_ms))
        .build()
}

pub fn stats(s: &pb::Stats) -> Val {
    obj()
        .field("bytes_in", s.bytes_in)
        .field("bytes_out", s.bytes_out)
        .field("active_connections", s.active_connections)
        .field("total_connections", s.total_connections)
        .field("request_errors", s.request_errors)
        .field("observed_ms", Val::Time(s.observed_ms))
        .build()
}

fn status_node(n: Option<&pb::StatusNode>) -> Val {
    match n {
        None => Val::Null,
        Some(n) => obj()
            .field("id", &n.id)
            .field("name", &n.name)
            .field(
                "provisioning_status",
                val::<pb::ProvisioningStatus>(n.provisioning_status),
            )
            .field(
                "operating_status",
                val::<pb::OperatingStatus>(n.operating_status),
            )
            .build(),
    }
}

fn pool_status(p: &pb::PoolStatus) -> Val {
    obj()
        .field("status", status_node(p.status.as_ref()))
        .field(
            "members",
            Val::List(
                p.members
                    .iter()
                    .map(|m| {
                        obj()
                            .field("status", status_node(m.status.as_ref()))
                            .field("address", &m.address)
                            .field("protocol_port", m.protocol_port)
                            .build()
                    })
                    .collect(),
            ),
        )
        .field("health_monitor", status_node(p.health_monitor.as_ref()))
        .build()
}

pub fn status_tree(t: &pb::LoadBalancerStatusTree) -> Val {
    obj()
        .field("load_balancer", status_node(t.load_balancer.as_ref()))
        .field(
            "listeners",
            Val::List(
                t.listeners
                    .iter()
                    .map(|l| {
                        obj()
                            .field("status", status_node(l.status.as_ref()))
                            .field(
                                "pools",
                                Val::List(l.pools.iter().map(pool_status).collect()),
                            )
                            .build()
                    })
                    .collect(),
            ),
        )
        .field(
            "unattached_pools",
            Val::List(t.unattached_pools.iter().map(pool_status).collect()),
        )
        .build()
}

pub fn quota(q: &pb::Quota) -> Val {
    obj()
        .field("project_id", &q.project_id)
        .field("load_balancers", q.load_balancers)
        .field("listeners", q.listeners)
        .field("pools", q.pools)
        .field("members", q.members)
        .field("health_monitors", q.health_monitors)
        .field("l7_policies", q.l7_policies.unwrap_or(-1))
        .field("l7_rules", q.l7_rules.unwrap_or(-1))
        .build()
}

pub fn quota_usage(u: &pb::QuotaUsage) -> Val {
    obj()
        .field("limits", u.limits.as_ref().map_or(Val::Null, quota))
        .field("in_use", u.in_use.as_ref().map_or(Val::Null, quota))
        .build()
}

/// The status tree as an indented outline, for tables.
pub fn status_outline(t: &pb::LoadBalancerStatusTree) -> String {
    fn line(out: &mut String, depth: usize, kind: &str, n: Option<&pb::StatusNode>, extra: &str) {
        let Some(n) = n else {
            return;
        };
        let name = if n.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", n.name)
        };
        out.push_str(&format!(
            "{}{kind} {}{name}{extra}: {} / {}\n",
            "  ".repeat(depth),
            n.id,
            enums::name::<pb::ProvisioningStatus>(n.provisioning_status),
            enums::name::<pb::OperatingStatus>(n.operating_status),
        ));
    }
    fn pool(out: &mut String, depth: usize, p: &pb::PoolStatus) {
        line(out, depth, "pool", p.status.as_ref(), "");
        line(
            out,
            depth + 1,
            "healthmonitor",
            p.health_monitor.as_ref(),
            "",
        );
        for m in &p.members {
            line(
                out,
                depth + 1,
                "member",
                m.status.as_ref(),
                &format!(" {}:{}", m.address, m.protocol_port),
            );
        }
    }
    let mut out = String::new();
    line(&mut out, 0, "loadbalancer", t.load_balancer.as_ref(), "");
    for l in &t.listeners {
        line(&mut out, 1, "listener", l.status.as_ref(), "");
        for p in &l.pools {
            pool(&mut out, 2, p);
        }
    }
    for p in &t.unattached_pools {
        pool(&mut out, 1, p);
    }
    out
}

// The provider API.

pub const DEVICE_COLUMNS: &[&str] = &[
    "id", "agent_id", "driver", "state", "load", "capacity", "vip_cidr",
];

pub fn device(d: &spb::Device) -> Val {
    obj()
        .field("id", &d.id)
        .field("driver", &d.driver)
        .field("agent_id", &d.agent_id)
        .field("capacity", d.capacity)
        .field("load", d.load)
        .field("vip_cidr", &d.vip_cidr)
        .field("virtual", d.r#virtual)
        .field("state", val::<spb::DeviceState>(d.state))
        .field("labels", string_map(&d.labels))
        .field("networks", &d.networks)
        .field("ports", string_map(&d.ports))
        .field("on_demand", d.on_demand)
        .field("capabilities", &d.capabilities)
        .build()
}

/// A placement: the load balancer's devices with their roles.
pub fn placement(p: &spb::Placement) -> Val {
    let mut devices = vec![
        obj()
            .field("device_id", &p.device_id)
            .field("agent_id", &p.agent_id)
            .field("role", "MASTER")
            .build(),
    ];
    if !p.standby_device_id.is_empty() {
        devices.push(
            obj()
                .field("device_id", &p.standby_device_id)
                .field("agent_id", &p.standby_agent_id)
                .field("role", "BACKUP")
                .build(),
        );
    }
    obj()
        .field("loadbalancer_id", &p.loadbalancer_id)
        .field("topology", val::<spb::Topology>(p.topology))
        .field("vip_address", &p.vip_address)
        .field("devices", Val::List(devices))
        .build()
}

pub const FLAVOR_COLUMNS: &[&str] = &[
    "name",
    "driver",
    "strategy",
    "device_kind",
    "required_labels",
    "on_demand",
];

/// A service type, which the openstack CLI calls a flavor.
pub fn flavor(t: &spb::ServiceType) -> Val {
    obj()
        .field("name", &t.name)
        .field("description", &t.description)
        .field("driver", &t.driver)
        .field("strategy", &t.strategy)
        .field("required_labels", string_map(&t.required_labels))
        .field("device_kind", val::<spb::DeviceKind>(t.device_kind))
        .field("on_demand", t.on_demand)
        .field("on_demand_capacity", t.on_demand_capacity)
        .field("topology", val::<spb::Topology>(t.topology))
        .build()
}

pub const ZONE_COLUMNS: &[&str] = &["name", "description", "labels", "enabled"];

pub fn zone(z: &spb::AvailabilityZone) -> Val {
    obj()
        .field("name", &z.name)
        .field("description", &z.description)
        .field("labels", string_map(&z.labels))
        .field("enabled", z.enabled.unwrap_or(true))
        .build()
}

pub const NETWORK_COLUMNS: &[&str] = &[
    "name",
    "cidr",
    "gateway",
    "allocation_start",
    "allocation_end",
];

pub fn network(n: &spb::Network) -> Val {
    obj()
        .field("name", &n.name)
        .field("cidr", &n.cidr)
        .field("gateway", &n.gateway)
        .field("allocation_start", &n.allocation_start)
        .field("allocation_end", &n.allocation_end)
        .build()
}

pub const AGENT_COLUMNS: &[&str] = &[
    "id",
    "address",
    "alive",
    "silent_for_ms",
    "device_ids",
    "drivers",
];

pub fn agent(a: &spb::AgentInfo) -> Val {
    obj()
        .field("id", &a.id)
        .field("address", &a.address)
        .field("alive", a.alive)
        .field("last_heartbeat_ms", Val::Time(a.last_heartbeat_ms))
        .field("silent_for_ms", a.silent_for_ms)
        .field("device_ids", &a.device_ids)
        .field("drivers", &a.drivers)
        .build()
}

pub fn agents(r: &spb::ListAgentsResponse) -> Val {
    obj()
        .field("agents", Val::List(r.agents.iter().map(agent).collect()))
        .field("failover_held", r.failover_held)
        .field("failover_status", &r.failover_status)
        .build()
}

pub const PROVIDER_COLUMNS: &[&str] = &["name", "agents", "devices"];

/// A driver (provider) as `provider list` derives it: the live agents offering it on demand, the
/// devices running it, and what those can do.
pub fn provider(name: &str, agents: &[String], devices: &[String], capabilities: &[String]) -> Val {
    obj()
        .field("name", name)
        .field("agents", agents)
        .field("devices", devices)
        .field("capabilities", capabilities)
        .build()
}

pub const CAPABILITY_COLUMNS: &[&str] = &["name", "devices"];

/// A capability of a provider, and the devices offering it.
pub fn capability(name: &str, devices: &[String]) -> Val {
    obj().field("name", name).field("devices", devices).build()
}

fn candidate(c: &spb::CandidateScore) -> Val {
    obj()
        .field("device_id", &c.device_id)
        .field("eligible", c.eligible)
        .field("rejected_by", &c.rejected_by)
        .field("reason", &c.reason)
        .field("score", c.score)
        .field(
            "weights",
            Val::List(
                c.weights
                    .iter()
                    .map(|w| {
                        obj()
                            .field("weigher", &w.weigher)
                            .field("value", w.value)
                            .field("multiplier", w.multiplier)
                            .build()
                    })
                    .collect(),
            ),
        )
        .build()
}

pub fn explanation(e: &spb::Explanation) -> Val {
    obj()
        .field("strategy", &e.strategy)
        .field("seed", e.seed)
        .field(
            "candidates",
            Val::List(e.candidates.iter().map(candidate).collect()),
        )
        .field("chosen_device_id", &e.chosen_device_id)
        .field("why", &e.why)
        .field("networks", &e.networks)
        .field("availability_zone", &e.availability_zone)
        .field("zone_labels", string_map(&e.zone_labels))
        .build()
}

pub const CANDIDATE_COLUMNS: &[&str] = &[
    "chosen",
    "device_id",
    "eligible",
    "score",
    "weights",
    "rejected_by",
    "reason",
];

/// A candidate as a row of the `explain` table: `*` marks the winner, the score is left out for
/// refused devices, and each weigher is `name value*multiplier`.
pub fn candidate_row(c: &spb::CandidateScore, chosen: &str) -> Val {
    obj()
        .field("chosen", if c.device_id == chosen { "*" } else { "" })
        .field("device_id", &c.device_id)
        .field("eligible", c.eligible)
        .field(
            "score",
            if c.eligible {
                Val::Float(c.score)
            } else {
                Val::Str(String::new())
            },
        )
        .field(
            "weights",
            Val::List(
                c.weights
                    .iter()
                    .map(|w| Val::Str(format!("{} {}*{}", w.weigher, w.value, w.multiplier)))
                    .collect(),
            ),
        )
        .field("rejected_by", &c.rejected_by)
        .field("reason", &c.reason)
        .build()
}
