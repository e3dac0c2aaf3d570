//! `render_native`: the native data plane's route compiler (desired configs -> routes).
//!
//! The driver builds routes in `apply` (`build_pools`, then `listener_route` per listener), which
//! also binds sockets and starts health checks, so it is not called here. This runs the same
//! compile steps, through the driver's own functions, on every pool and listener of the input:
//! - pools: `persist::Persistence::from_config`, `checks::validate` of the monitor,
//!   `tls::pool_client_config` of re-encrypting pools' TLS options, members' addresses, into the
//!   driver's `Pool`;
//! - HTTP and TERMINATED_HTTPS listeners: `l7::compile` of each policy, REDIRECT_TO_POOL resolved
//!   as `listener_route` resolves it; TERMINATED_HTTPS: `tls::server_config` (PEM parsing, key
//!   checks, SNI table, ALPN, versions and ciphers);
//! - then `l7::decide` for a few fixed requests and one built from the listener's own rules.
//!
//! Properties: nothing panics, and a decided policy is one with rules (a policy without rules
//! never matches).
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize},
    },
};

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use lbaas::agent::v1::{
    L7CompareType, L7RuleType, ListenerConfig, ListenerProtocol, LoadBalancerConfig,
};
use lbaas_agent::driver::native::{
    Member, MemberState, Pool, checks, l7, persist::Persistence, tls,
};
use prost::Message as _;

use crate::Device;

pub fn render_native(data: &[u8]) {
    let Ok(device) = Device::decode(data) else {
        return;
    };
    let _refused = compile(&device);
}

/// Compiles every pool and listener of the device; returns what the driver would refuse.
pub fn compile(device: &Device) -> Vec<String> {
    let mut refused = Vec::new();
    for lb in &device.load_balancers {
        compile_load_balancer(lb, &mut refused);
    }
    refused
}

fn compile_load_balancer(lb: &LoadBalancerConfig, refused: &mut Vec<String>) {
    // Pools, as build_pools makes them (each on its own: one bad pool does not hide the others).
    let mut pools: HashMap<&str, (Arc<Pool>, bool)> = HashMap::new();
    for p in &lb.pools {
        let persistence = match Persistence::from_config(p.persistence.as_ref()) {
            Ok(persistence) => persistence,
            Err(e) => {
                refused.push(format!("pool {}: {e}", p.id));
                continue;
            }
        };
        if let Some(monitor) = &p.monitor
            && let Err(e) = checks::validate(monitor)
        {
            refused.push(format!("pool {}: {e}", p.id));
            continue;
        }
        if p.tls_enabled
            && let Err(e) = tls::pool_client_config(p.tls.as_ref())
        {
            refused.push(format!("pool {}: {e}", p.id));
            continue;
        }
        let mut members = Vec::new();
        for m in &p.members {
            let (Ok(ip), Ok(port)) = (m.address.parse::<IpAddr>(), u16::try_from(m.port)) else {
                refused.push(format!("member {}: address", m.id));
                continue;
            };
            members.push(Member {
                id: m.id.clone(),
                addr: SocketAddr::new(ip, port),
                check_addr: SocketAddr::new(ip, port),
                weight: m.weight,
                backup: m.backup,
                admin_up: m.admin_state_up,
                state: Arc::new(MemberState {
                    up: AtomicBool::new(true),
                    active: AtomicUsize::new(0),
                }),
            });
        }
        let pool = Pool {
            id: p.id.clone(),
            algorithm: p.algorithm(),
            members,
            monitored: p.monitor.is_some(),
            next: AtomicUsize::new(0),
            persistence,
            sticky: Arc::default(),
            tls: p.tls_enabled,
            member_tls: None,
            h2c: !p.tls_enabled && p.tls.as_ref().is_some_and(|t| t.alpn_protocols == ["h2"]),
            proxy: p.proxy_protocol(),
        };
        pools.insert(&p.id, (Arc::new(pool), p.admin_state_up));
    }
    for l in &lb.listeners {
        if let Err(e) = compile_listener(l, &pools) {
            refused.push(format!("listener {}: {e}", l.id));
        }
    }
}

fn compile_listener(
    l: &ListenerConfig,
    pools: &HashMap<&str, (Arc<Pool>, bool)>,
) -> Result<(), String> {
    match l.protocol() {
        ListenerProtocol::Http => {}
        ListenerProtocol::TerminatedHttps => {
            tls::server_config(
                l.default_certificate.as_ref(),
                &l.sni_certificates,
                l.tls.as_ref(),
            )?;
        }
        // No routing to compile: the connection goes to the default pool.
        _ => return Ok(()),
    }
    // listener_route: a pool that does not exist refuses the policy; a disabled one is `None`.
    let pool = |id: &str| match pools.get(id) {
        Some((pool, enabled)) => Ok(enabled.then(|| pool.clone())),
        None => Err(format!("redirect_pool_id {id:?} names no pool")),
    };
    let mut policies = Vec::new();
    for policy in &l.l7_policies {
        // An error refuses the listener.
        policies.push(l7::compile(policy, pool)?);
    }
    for (uri, headers) in requests(l) {
        let Some(decided) = l7::decide(&policies, &uri, &headers) else {
            continue;
        };
        let index = policies
            .iter()
            .position(|p| std::ptr::eq(p, decided))
            .expect("decide returns one of the policies it was given");
        assert!(
            !l.l7_policies[index].rules.is_empty(),
            "policy {:?} has no rules but matched {uri}",
            decided.id
        );
        match &decided.action {
            l7::Action::RedirectPrefix { prefix, .. } => {
                // What http.rs does with it.
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                let _ = HeaderValue::from_str(&format!("{prefix}{target}"));
            }
            l7::Action::Reject | l7::Action::RedirectTo { .. } | l7::Action::Pool(_) => {}
        }
    }
    Ok(())
}

/// A few fixed requests, and one that the listener's rules describe.
fn requests(l: &ListenerConfig) -> Vec<(Uri, HeaderMap)> {
    let fixed: [(&str, &[(&str, &str)]); 4] = [
        ("/", &[("host", "www.example.com")]),
        (
            "/admin/users?page=2",
            &[
                ("host", "a.example:8443"),
                ("x-admin", "yes"),
                ("cookie", "session=vip-42; JSESSIONID=\"abc\""),
            ],
        ),
        (
            "/static/img/logo.PNG?x=1",
            &[("host", "IMG.B.EXAMPLE."), ("user-agent", "curl/8.5.0")],
        ),
        ("http://user@[2001:db8::1]:8080/index.php", &[]),
    ];
    let mut out = Vec::new();
    for (uri, headers) in fixed {
        let Ok(uri) = uri.parse::<Uri>() else {
            continue;
        };
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        out.push((uri, map));
    }

    let mut path = None;
    let mut headers = HeaderMap::new();
    let mut cookies = Vec::new();
    for rule in l.l7_policies.iter().flat_map(|p| &p.rules) {
        if rule.compare_type() == L7CompareType::Regex {
            continue;
        }
        let value = rule.value.as_str();
        match rule.r#type() {
            L7RuleType::Path if path.is_none() && value.starts_with('/') => {
                path = Some(value.to_owned());
            }
            L7RuleType::FileType if path.is_none() => path = Some(format!("/f.{value}")),
            L7RuleType::HostName => {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.entry(header::HOST).or_insert(v);
                }
            }
            L7RuleType::Header => {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(rule.key.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(k, v);
                }
            }
            L7RuleType::Cookie => cookies.push(format!("{}={value}", rule.key)),
            _ => {}
        }
    }
    if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
        headers.append(header::COOKIE, v);
    }
    if let Ok(uri) = path.as_deref().unwrap_or("/").parse::<Uri>() {
        out.push((uri, headers));
    }
    out
}
