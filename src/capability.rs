//! Capabilities: what a driver can do, named so the scheduler can match a load balancer's needs
//! against what a device offers ("protocol:UDP", "persistence:APP_COOKIE", "l7", ...).
use std::collections::BTreeSet;

use crate::agent::v1::{
    Algorithm, ListenerProtocol, LoadBalancerConfig, MonitorType, PersistenceType,
};

/// L7 policies on HTTP listeners.
pub const L7: &str = "l7";
/// `allowed_cidrs` on listeners.
pub const ALLOWED_CIDRS: &str = "allowed_cidrs";
/// `insert_headers` on listeners.
pub const INSERT_HEADERS: &str = "insert_headers";
/// Pools with `tls_enabled` (re-encryption to members).
pub const POOL_TLS: &str = "pool_tls";
/// Connection limits on listeners.
pub const CONNECTION_LIMIT: &str = "connection_limit";
/// Pools that open member connections with a PROXY protocol header (PROXY, PROXYV2).
pub const PROXY_PROTOCOL: &str = "proxy_protocol";
/// TLS beyond what every driver has: SSLv3, TLS 1.0 or 1.1, or ciphers other than the
/// forward-secret AEAD suites (`tls_options::MODERN_CIPHERS`), on a listener or a pool.
pub const TLS_LEGACY: &str = "tls_legacy";

pub fn protocol(p: ListenerProtocol) -> String {
    format!(
        "protocol:{}",
        p.as_str_name().trim_start_matches("LISTENER_PROTOCOL_")
    )
}

pub fn algorithm(a: Algorithm) -> String {
    format!(
        "algorithm:{}",
        a.as_str_name().trim_start_matches("ALGORITHM_")
    )
}

pub fn persistence(p: PersistenceType) -> String {
    format!(
        "persistence:{}",
        p.as_str_name().trim_start_matches("PERSISTENCE_TYPE_")
    )
}

pub fn monitor(m: MonitorType) -> String {
    format!(
        "monitor:{}",
        m.as_str_name().trim_start_matches("MONITOR_TYPE_")
    )
}

/// Everything a load balancer's config uses.
pub fn required(config: &LoadBalancerConfig) -> BTreeSet<String> {
    let mut need = BTreeSet::new();
    for l in &config.listeners {
        need.insert(protocol(l.protocol()));
        if !l.allowed_cidrs.is_empty() {
            need.insert(ALLOWED_CIDRS.to_owned());
        }
        if !l.insert_headers.is_empty() {
            need.insert(INSERT_HEADERS.to_owned());
        }
        if !l.l7_policies.is_empty() {
            need.insert(L7.to_owned());
        }
        if l.connection_limit > 0 {
            need.insert(CONNECTION_LIMIT.to_owned());
        }
        if let Some(tls) = &l.tls
            && crate::tls_options::needs_legacy(&tls.tls_versions, &tls.tls_ciphers)
        {
            need.insert(TLS_LEGACY.to_owned());
        }
    }
    for p in &config.pools {
        need.insert(protocol(p.protocol()));
        need.insert(algorithm(p.algorithm()));
        if let Some(s) = &p.persistence
            && s.r#type() != PersistenceType::None
        {
            need.insert(persistence(s.r#type()));
        }
        if p.tls_enabled {
            need.insert(POOL_TLS.to_owned());
            if let Some(tls) = &p.tls
                && crate::tls_options::needs_legacy(&tls.tls_versions, &tls.tls_ciphers)
            {
                need.insert(TLS_LEGACY.to_owned());
            }
        }
        if p.proxy_protocol() != crate::agent::v1::ProxyProtocol::None {
            need.insert(PROXY_PROTOCOL.to_owned());
        }
        if let Some(m) = &p.monitor {
            need.insert(monitor(m.r#type()));
        }
    }
    need
}

/// Every capability there is, for drivers that accept anything (noop).
pub fn all() -> Vec<String> {
    let mut all: Vec<String> = [
        L7,
        ALLOWED_CIDRS,
        INSERT_HEADERS,
        POOL_TLS,
        CONNECTION_LIMIT,
        PROXY_PROTOCOL,
        TLS_LEGACY,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for p in [
        ListenerProtocol::Tcp,
        ListenerProtocol::Http,
        ListenerProtocol::Https,
        ListenerProtocol::TerminatedHttps,
        ListenerProtocol::Udp,
    ] {
        all.push(protocol(p));
    }
    for a in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::SourceIp,
    ] {
        all.push(algorithm(a));
    }
    for s in [
        PersistenceType::SourceIp,
        PersistenceType::HttpCookie,
        PersistenceType::AppCookie,
    ] {
        all.push(persistence(s));
    }
    for m in [
        MonitorType::Tcp,
        MonitorType::Http,
        MonitorType::Https,
        MonitorType::TlsHello,
        MonitorType::Ping,
        MonitorType::UdpConnect,
    ] {
        all.push(monitor(m));
    }
    all
}

/// Everything but these.
pub fn all_except(missing: &[&str]) -> Vec<String> {
    all()
        .into_iter()
        .filter(|c| !missing.contains(&c.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::agent::v1::{ListenerConfig, PoolConfig, SessionPersistence};

    #[test]
    fn names_what_a_config_uses() {
        let config = LoadBalancerConfig {
            listeners: vec![ListenerConfig {
                protocol: ListenerProtocol::Udp as i32,
                allowed_cidrs: vec!["10.0.0.0/8".into()],
                ..Default::default()
            }],
            pools: vec![PoolConfig {
                protocol: ListenerProtocol::Udp as i32,
                algorithm: Algorithm::SourceIp as i32,
                persistence: Some(SessionPersistence {
                    r#type: PersistenceType::SourceIp as i32,
                    cookie_name: String::new(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let need: Vec<String> = required(&config).into_iter().collect();
        assert_eq!(
            need,
            vec![
                "algorithm:SOURCE_IP",
                "allowed_cidrs",
                "persistence:SOURCE_IP",
                "protocol:UDP"
            ]
        );
        assert!(all().iter().any(|c| c == "protocol:TERMINATED_HTTPS"));
        assert!(
            !all_except(&["protocol:UDP"])
                .iter()
                .any(|c| c == "protocol:UDP")
        );
    }
}
