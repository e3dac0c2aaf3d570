//! Renders haproxy.cfg for one device from the desired configs of its load balancers.
//!
//! The api service validates every tenant value, but the renderer trusts nothing: every value it
//! writes is either a number, a parsed IP address, a keyword it chose itself, or a string checked
//! against a narrow alphabet here, so no input can add a line or a keyword to the config.
use std::{fmt::Write as _, net::IpAddr, path::Path};

use lbaas::agent::v1::{
    Algorithm, ListenerConfig, ListenerProtocol, LoadBalancerConfig, MemberConfig, MonitorConfig,
    MonitorType, PoolConfig,
};

/// A value the renderer refuses to write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct RenderError {
    pub field: String,
    pub reason: String,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> RenderError {
    RenderError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Turns desired state into HAProxy configuration text.
pub struct ConfigRenderer<'a> {
    /// Where the runtime API socket lives.
    pub stats_socket: &'a Path,
}

impl ConfigRenderer<'_> {
    /// Renders the whole device: global and defaults sections, then each load balancer in id
    /// order, so the same desired state always gives the same text.
    pub fn render(&self, load_balancers: &[LoadBalancerConfig]) -> Result<String, RenderError> {
        let socket = self
            .stats_socket
            .to_str()
            .ok_or_else(|| reject("stats_socket", "path is not valid UTF-8"))?;
        check_path(socket, "stats_socket")?;
        let mut out = String::new();
        // hard-stop-after bounds how long an old worker may linger on long-lived connections
        // after a reload; expose-fd lets a new worker take over the listening sockets.
        let _ = write!(
            out,
            "# Rendered by the lbaas agent. Do not edit: the next change overwrites it.\n\
             global\n    \
             stats socket {socket} mode 600 level admin expose-fd listeners\n    \
             stats timeout 30s\n    \
             hard-stop-after 60s\n\n\
             defaults\n    \
             timeout connect 5s\n    \
             timeout client 50s\n    \
             timeout server 50s\n    \
             timeout http-request 10s\n    \
             retries 3\n    \
             option redispatch\n"
        );
        let mut sorted: Vec<&LoadBalancerConfig> = load_balancers.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for lb in sorted {
            render_load_balancer(&mut out, lb)?;
        }
        Ok(out)
    }
}

fn render_load_balancer(out: &mut String, lb: &LoadBalancerConfig) -> Result<(), RenderError> {
    check_id(&lb.id, "loadbalancer.id")?;
    let vip: IpAddr = lb
        .vip_address
        .parse()
        .map_err(|_| reject("loadbalancer.vip_address", "not an IP address"))?;
    let _ = writeln!(out, "\n# load balancer {}", lb.id);
    for (i, listener) in lb.listeners.iter().enumerate() {
        render_listener(out, lb, vip, listener, &format!("listeners[{i}]"))?;
    }
    for (i, pool) in lb.pools.iter().enumerate() {
        let timeouts = lb.listeners.iter().find(|l| l.default_pool_id == pool.id);
        render_pool(out, pool, timeouts, &format!("pools[{i}]"))?;
    }
    Ok(())
}

fn mode(protocol: ListenerProtocol, field: &str) -> Result<&'static str, RenderError> {
    match protocol {
        ListenerProtocol::Http => Ok("http"),
        ListenerProtocol::Tcp | ListenerProtocol::Https => Ok("tcp"),
        ListenerProtocol::TerminatedHttps => {
            Err(reject(field, "TERMINATED_HTTPS is not supported yet"))
        }
        ListenerProtocol::Udp => Err(reject(field, "HAProxy cannot proxy UDP")),
        ListenerProtocol::Unspecified => Err(reject(field, "protocol is required")),
    }
}

fn render_listener(
    out: &mut String,
    lb: &LoadBalancerConfig,
    vip: IpAddr,
    listener: &ListenerConfig,
    field: &str,
) -> Result<(), RenderError> {
    check_id(&listener.id, &format!("{field}.id"))?;
    let mode = mode(listener.protocol(), &format!("{field}.protocol"))?;
    let port = check_port(listener.port, &format!("{field}.port"))?;
    let _ = writeln!(out, "frontend l_{}", listener.id);
    let _ = writeln!(out, "    mode {mode}");
    let _ = writeln!(out, "    bind {}", socket_address(vip, port));
    if !lb.admin_state_up || !listener.admin_state_up {
        let _ = writeln!(out, "    disabled");
    }
    if listener.connection_limit > 0 {
        let _ = writeln!(out, "    maxconn {}", listener.connection_limit);
    }
    if listener.timeout_client_data_ms > 0 {
        let _ = writeln!(
            out,
            "    timeout client {}ms",
            listener.timeout_client_data_ms
        );
    }
    if mode == "http" {
        let _ = writeln!(out, "    option httplog");
    }
    if !listener.default_pool_id.is_empty() {
        check_id(
            &listener.default_pool_id,
            &format!("{field}.default_pool_id"),
        )?;
        if !lb.pools.iter().any(|p| p.id == listener.default_pool_id) {
            return Err(reject(
                format!("{field}.default_pool_id"),
                "names no pool of this load balancer",
            ));
        }
        let _ = writeln!(out, "    default_backend p_{}", listener.default_pool_id);
    }
    out.push('\n');
    Ok(())
}

fn render_pool(
    out: &mut String,
    pool: &PoolConfig,
    listener: Option<&ListenerConfig>,
    field: &str,
) -> Result<(), RenderError> {
    check_id(&pool.id, &format!("{field}.id"))?;
    let mode = mode(pool.protocol(), &format!("{field}.protocol"))?;
    let balance = match pool.algorithm() {
        Algorithm::RoundRobin => "roundrobin",
        Algorithm::LeastConnections => "leastconn",
        Algorithm::SourceIp => "source",
        Algorithm::Unspecified => return Err(reject(format!("{field}.algorithm"), "is required")),
    };
    let _ = writeln!(out, "backend p_{}", pool.id);
    let _ = writeln!(out, "    mode {mode}");
    let _ = writeln!(out, "    balance {balance}");
    if !pool.admin_state_up {
        let _ = writeln!(out, "    disabled");
    }
    if let Some(listener) = listener {
        if listener.timeout_member_connect_ms > 0 {
            let _ = writeln!(
                out,
                "    timeout connect {}ms",
                listener.timeout_member_connect_ms
            );
        }
        if listener.timeout_member_data_ms > 0 {
            let _ = writeln!(
                out,
                "    timeout server {}ms",
                listener.timeout_member_data_ms
            );
        }
    }
    let check = match &pool.monitor {
        Some(monitor) => Some(render_monitor(out, monitor, &format!("{field}.monitor"))?),
        None => None,
    };
    for (i, member) in pool.members.iter().enumerate() {
        render_member(
            out,
            member,
            check.as_deref(),
            &format!("{field}.members[{i}]"),
        )?;
    }
    out.push('\n');
    Ok(())
}

/// Writes the backend's check options and returns what each server line needs to enable them.
fn render_monitor(
    out: &mut String,
    monitor: &MonitorConfig,
    field: &str,
) -> Result<String, RenderError> {
    let delay = monitor.delay_s.max(1);
    let fall = monitor.max_retries_down.max(1);
    let rise = monitor.max_retries.max(1);
    if monitor.timeout_s > 0 {
        let _ = writeln!(out, "    timeout check {}s", monitor.timeout_s);
    }
    let mut server_opts = format!("check inter {delay}s fall {fall} rise {rise}");
    match monitor.r#type() {
        MonitorType::Tcp => {}
        MonitorType::TlsHello => {
            let _ = writeln!(out, "    option ssl-hello-chk");
        }
        MonitorType::Http | MonitorType::Https => {
            let method = if monitor.http_method.is_empty() {
                "GET"
            } else {
                monitor.http_method.as_str()
            };
            if !matches!(
                method,
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "DELETE"
                    | "OPTIONS"
                    | "PATCH"
                    | "CONNECT"
                    | "TRACE"
            ) {
                return Err(reject(format!("{field}.http_method"), "not an HTTP method"));
            }
            let path = if monitor.url_path.is_empty() {
                "/"
            } else {
                monitor.url_path.as_str()
            };
            check_url_path(path, &format!("{field}.url_path"))?;
            let codes =
                expected_codes(&monitor.expected_codes, &format!("{field}.expected_codes"))?;
            let _ = writeln!(out, "    option httpchk");
            let _ = writeln!(out, "    http-check send meth {method} uri {path}");
            let _ = writeln!(out, "    http-check expect rstatus ^({})$", codes.join("|"));
            if monitor.r#type() == MonitorType::Https {
                server_opts.push_str(" check-ssl verify none");
            }
        }
        MonitorType::Ping => {
            return Err(reject(
                format!("{field}.type"),
                "HAProxy cannot send PING checks",
            ));
        }
        MonitorType::Unspecified => return Err(reject(format!("{field}.type"), "is required")),
    }
    Ok(server_opts)
}

fn render_member(
    out: &mut String,
    member: &MemberConfig,
    check: Option<&str>,
    field: &str,
) -> Result<(), RenderError> {
    let args = server_args(member, check, field)?;
    let _ = write!(out, "    server m_{} {args}", member.id);
    if !member.admin_state_up {
        out.push_str(" disabled");
    }
    out.push('\n');
    Ok(())
}

/// A server's address and options, as a `server` line and the runtime API's `add server` take
/// them: `ADDRESS:PORT weight W [check ...] [backup]`.
pub fn server_args(
    member: &MemberConfig,
    check: Option<&str>,
    field: &str,
) -> Result<String, RenderError> {
    check_id(&member.id, &format!("{field}.id"))?;
    let address: IpAddr = member
        .address
        .parse()
        .map_err(|_| reject(format!("{field}.address"), "not an IP address"))?;
    let port = check_port(member.port, &format!("{field}.port"))?;
    if member.weight > 256 {
        return Err(reject(format!("{field}.weight"), "must be 0..=256"));
    }
    let mut args = format!("{} weight {}", socket_address(address, port), member.weight);
    if let Some(check) = check {
        args.push(' ');
        args.push_str(check);
    }
    if member.backup {
        args.push_str(" backup");
    }
    Ok(args)
}

/// The options each server of a pool with this monitor carries (`check inter ...`).
pub fn check_options(monitor: Option<&MonitorConfig>) -> Result<Option<String>, RenderError> {
    match monitor {
        Some(m) => render_monitor(&mut String::new(), m, "monitor").map(Some),
        None => Ok(None),
    }
}

fn socket_address(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn check_port(port: u32, field: &str) -> Result<u16, RenderError> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(reject(field, "must be 1..=65535")),
    }
}

/// Ids become proxy and server names; HAProxy allows letters, digits, '-', '_', '.' and ':'.
fn check_id(id: &str, field: &str) -> Result<(), RenderError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(reject(field, "must be 1-64 letters, digits or '-'"));
    }
    Ok(())
}

fn check_path(path: &str, field: &str) -> Result<(), RenderError> {
    if path.chars().any(|c| {
        c.is_whitespace() || c.is_control() || c == '#' || c == '"' || c == '\'' || c == '\\'
    }) {
        return Err(reject(field, "contains a character the config cannot hold"));
    }
    Ok(())
}

/// A URL path for a check: starts with '/', visible ASCII only, no quoting or comment characters.
fn check_url_path(path: &str, field: &str) -> Result<(), RenderError> {
    if !path.starts_with('/') || path.len() > 2048 {
        return Err(reject(
            field,
            "must start with '/' and be at most 2048 characters",
        ));
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '#' | '"' | '\'' | '\\'))
    {
        return Err(reject(
            field,
            "must be visible ASCII without quotes, '#' or '\\'",
        ));
    }
    Ok(())
}

/// Octavia's expected_codes: "200", "200,202" or "200-204"; an empty value means 200.
pub fn expected_codes(spec: &str, field: &str) -> Result<Vec<String>, RenderError> {
    if spec.is_empty() {
        return Ok(vec!["200".into()]);
    }
    let bad = || {
        reject(
            field,
            "must be a code, a list such as 200,202 or a range such as 200-204",
        )
    };
    let code = |s: &str| -> Result<u16, RenderError> {
        match s.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(bad()),
        }
    };
    let mut codes = Vec::new();
    if let Some((lo, hi)) = spec.split_once('-') {
        let (lo, hi) = (code(lo)?, code(hi)?);
        if lo > hi {
            return Err(bad());
        }
        codes.extend((lo..=hi).map(|c| c.to_string()));
    } else {
        for part in spec.split(',') {
            codes.push(code(part)?.to_string());
        }
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lb() -> LoadBalancerConfig {
        LoadBalancerConfig {
            id: "lb-1".into(),
            project_id: "p".into(),
            vip_address: "127.0.10.1".into(),
            admin_state_up: true,
            listeners: vec![ListenerConfig {
                id: "l-1".into(),
                protocol: ListenerProtocol::Http as i32,
                port: 8080,
                default_pool_id: "p-1".into(),
                admin_state_up: true,
                ..Default::default()
            }],
            pools: vec![PoolConfig {
                id: "p-1".into(),
                protocol: ListenerProtocol::Http as i32,
                algorithm: Algorithm::RoundRobin as i32,
                admin_state_up: true,
                members: vec![MemberConfig {
                    id: "m-1".into(),
                    address: "127.0.0.1".into(),
                    port: 9000,
                    weight: 1,
                    admin_state_up: true,
                    backup: false,
                }],
                monitor: None,
            }],
        }
    }

    fn render(lbs: &[LoadBalancerConfig]) -> Result<String, RenderError> {
        ConfigRenderer {
            stats_socket: Path::new("/tmp/s.sock"),
        }
        .render(lbs)
    }

    #[test]
    fn renders_frontend_backend_and_servers() {
        let text = render(&[lb()]).unwrap();
        assert!(text.contains("frontend l_l-1\n    mode http\n    bind 127.0.10.1:8080\n"));
        assert!(text.contains("default_backend p_p-1"));
        assert!(text.contains("backend p_p-1\n    mode http\n    balance roundrobin\n"));
        assert!(text.contains("    server m_m-1 127.0.0.1:9000 weight 1\n"));
    }

    #[test]
    fn same_state_renders_the_same_text() {
        let mut other = lb();
        other.id = "lb-0".into();
        let a = render(&[lb(), other.clone()]).unwrap();
        let b = render(&[other, lb()]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn refuses_values_that_would_inject() {
        let mut bad = lb();
        bad.pools[0].members[0].id = "m\n    server evil 1.2.3.4:80".into();
        assert_eq!(render(&[bad]).unwrap_err().field, "pools[0].members[0].id");
        let mut bad = lb();
        bad.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::Http as i32,
            url_path: "/x\n    server evil 1.2.3.4:80".into(),
            ..Default::default()
        });
        assert_eq!(
            render(&[bad]).unwrap_err().field,
            "pools[0].monitor.url_path"
        );
        let mut bad = lb();
        bad.vip_address = "127.0.0.1:80 \n".into();
        assert!(render(&[bad]).is_err());
    }

    #[test]
    fn http_monitor_renders_checks() {
        let mut with_monitor = lb();
        with_monitor.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::Http as i32,
            delay_s: 2,
            timeout_s: 1,
            max_retries: 2,
            max_retries_down: 3,
            http_method: "HEAD".into(),
            url_path: "/healthz".into(),
            expected_codes: "200-202".into(),
        });
        let text = render(&[with_monitor]).unwrap();
        assert!(text.contains("http-check send meth HEAD uri /healthz"));
        assert!(text.contains("http-check expect rstatus ^(200|201|202)$"));
        assert!(text.contains("check inter 2s fall 3 rise 2"));
    }

    #[test]
    fn expected_codes_forms() {
        assert_eq!(expected_codes("", "f").unwrap(), vec!["200"]);
        assert_eq!(expected_codes("200,204", "f").unwrap(), vec!["200", "204"]);
        assert!(expected_codes("204-200", "f").is_err());
        assert!(expected_codes("abc", "f").is_err());
    }
}
