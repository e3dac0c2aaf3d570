//! What a load balancer's objects need of a driver, as `lbaas::capability` names paired with the
//! field that asks for each, so a capability no device offers comes back as a field violation.
use lbaas::{
    agent::v1::{Algorithm, ListenerProtocol, MonitorType, PersistenceType},
    capability,
};

use crate::convert::{NewListener, NewLoadBalancer, NewPool, Protocol};

/// (capability, field) pairs.
pub type Needs = Vec<(String, String)>;

fn protocol(p: Protocol) -> String {
    capability::protocol(match p {
        Protocol::Tcp => ListenerProtocol::Tcp,
        Protocol::Http => ListenerProtocol::Http,
        Protocol::Https => ListenerProtocol::Https,
        Protocol::TerminatedHttps => ListenerProtocol::TerminatedHttps,
        Protocol::Udp => ListenerProtocol::Udp,
        Protocol::Proxy | Protocol::ProxyV2 => return capability::PROXY_PROTOCOL.to_owned(),
    })
}

pub fn listener(l: &NewListener, f: &str, out: &mut Needs) {
    out.push((protocol(l.protocol), format!("{f}.protocol")));
    if !l.allowed_cidrs.is_empty() {
        out.push((
            capability::ALLOWED_CIDRS.into(),
            format!("{f}.allowed_cidrs"),
        ));
    }
    if !l.insert_headers.is_empty() {
        out.push((
            capability::INSERT_HEADERS.into(),
            format!("{f}.insert_headers"),
        ));
    }
    if l.connection_limit > 0 {
        out.push((
            capability::CONNECTION_LIMIT.into(),
            format!("{f}.connection_limit"),
        ));
    }
    tls_legacy(&l.tls, f, out);
    if let Some(p) = &l.default_pool {
        pool(p, &format!("{f}.default_pool"), out);
    }
}

pub fn pool(p: &NewPool, f: &str, out: &mut Needs) {
    out.push((protocol(p.protocol), format!("{f}.protocol")));
    let algorithm = match p.algorithm {
        "LEAST_CONNECTIONS" => Algorithm::LeastConnections,
        "SOURCE_IP" => Algorithm::SourceIp,
        _ => Algorithm::RoundRobin,
    };
    out.push((
        capability::algorithm(algorithm),
        format!("{f}.lb_algorithm"),
    ));
    let persistence = match p.session_persistence {
        "SOURCE_IP" => Some(PersistenceType::SourceIp),
        "HTTP_COOKIE" => Some(PersistenceType::HttpCookie),
        "APP_COOKIE" => Some(PersistenceType::AppCookie),
        _ => None,
    };
    if let Some(s) = persistence {
        out.push((
            capability::persistence(s),
            format!("{f}.session_persistence.type"),
        ));
    }
    if p.tls_enabled {
        out.push((capability::POOL_TLS.into(), format!("{f}.tls_enabled")));
        tls_legacy(&p.tls, f, out);
    }
    if let Some(m) = &p.monitor {
        let t = match m.monitor_type {
            "HTTP" => MonitorType::Http,
            "HTTPS" => MonitorType::Https,
            "TLS-HELLO" => MonitorType::TlsHello,
            "UDP-CONNECT" => MonitorType::UdpConnect,
            _ => MonitorType::Tcp,
        };
        out.push((capability::monitor(t), format!("{f}.healthmonitor.type")));
    }
}

pub fn load_balancer(lb: &NewLoadBalancer) -> Needs {
    let mut out = Vec::new();
    for (i, l) in lb.listeners.iter().enumerate() {
        listener(l, &format!("load_balancer.listeners[{i}]"), &mut out);
    }
    for (i, p) in lb.pools.iter().enumerate() {
        pool(p, &format!("load_balancer.pools[{i}]"), &mut out);
    }
    out
}

/// An L7 policy needs L7 support.
pub fn l7policy() -> Needs {
    vec![(capability::L7.into(), "l7policy.listener_id".into())]
}

/// TLS options only some drivers have (`capability::TLS_LEGACY`), named by the field that asks.
fn tls_legacy(tls: &crate::tls_fields::TlsFields, f: &str, out: &mut Needs) {
    if lbaas::tls_options::needs_legacy(&tls.tls_versions, &tls.tls_ciphers) {
        let field = if tls.tls_ciphers.is_empty() {
            "tls_versions"
        } else {
            "tls_ciphers"
        };
        out.push((capability::TLS_LEGACY.into(), format!("{f}.{field}")));
    }
}
