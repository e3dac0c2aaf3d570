//! Renders haproxy.cfg for one device from the desired configs of its load balancers.
//!
//! The api service validates every tenant value, but the renderer trusts nothing: every value it
//! writes is either a number, a parsed IP address or network, a keyword it chose itself, or a
//! string checked against a narrow alphabet here, so no input can add a line or a keyword to the
//! config. Certificates go to files of their own ([`Rendered::cert_files`]), checked to hold PEM
//! only.
//!
//! The directives follow OpenStack Octavia's amphora templates: `option forwardfor` and
//! `http-request set-header` for inserted headers, `stick-table`/`stick on src` for SOURCE_IP
//! persistence, `cookie SRV insert indirect nocache` for HTTP_COOKIE, a string stick table fed by
//! the response's cookie for APP_COOKIE, `ssl crt-list` for TERMINATED_HTTPS.
use std::{fmt::Write as _, net::IpAddr, path::Path};

use ipnet::IpNet;
use lbaas::agent::v1::{
    Algorithm, InsertHeader, L7Action, ListenerConfig, ListenerProtocol, LoadBalancerConfig,
    MemberConfig, MonitorConfig, MonitorType, PersistenceType, PoolConfig, ProxyProtocol,
};

use super::{l7, tls};

/// Files the rendered config refers to: name in the certificate directory -> content.
pub type CertFiles = std::collections::BTreeMap<String, String>;

/// A value the renderer refuses to write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct RenderError {
    pub field: String,
    pub reason: String,
}

pub(super) fn reject(field: impl Into<String>, reason: impl Into<String>) -> RenderError {
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

/// A rendered device: the config and the files it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Files (name -> content) that must be in the certificate directory before HAProxy reads
    /// `text`: certificates with their keys, and crt-lists.
    pub cert_files: CertFiles,
}

/// At most this many networks go on one `acl` line (HAProxy reads at most 64 words a line).
const CIDRS_PER_LINE: usize = 50;

impl ConfigRenderer<'_> {
    /// Renders the config text only, with certificates in the `certs` directory beside the stats
    /// socket; [`ConfigRenderer::render_device`] also gives the files to write there.
    pub fn render(&self, load_balancers: &[LoadBalancerConfig]) -> Result<String, RenderError> {
        let cert_dir = self
            .stats_socket
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("certs");
        Ok(self.render_device(load_balancers, &cert_dir)?.text)
    }

    /// Renders the whole device: global and defaults sections, then each load balancer in id
    /// order, so the same desired state always gives the same text; and the files that must be
    /// written to `cert_dir` (which should be absolute: HAProxy reads it from its own working
    /// directory) before HAProxy reads the text.
    pub fn render_device(
        &self,
        load_balancers: &[LoadBalancerConfig],
        cert_dir: &Path,
    ) -> Result<Rendered, RenderError> {
        let socket = self
            .stats_socket
            .to_str()
            .ok_or_else(|| reject("stats_socket", "path is not valid UTF-8"))?;
        check_path(socket, "stats_socket")?;
        let cert_dir = cert_dir
            .to_str()
            .ok_or_else(|| reject("cert_dir", "path is not valid UTF-8"))?;
        check_path(cert_dir, "cert_dir")?;
        let cert_dir = cert_dir.trim_end_matches('/');
        let mut out = String::new();
        // hard-stop-after bounds how long an old worker may linger on long-lived connections
        // after a reload; expose-fd lets a new worker take over the listening sockets. TLS 1.2 is
        // the oldest version spoken, to clients and to re-encrypting pools' members, as Octavia's
        // defaults have it.
        let _ = write!(
            out,
            "# Rendered by the lbaas agent. Do not edit: the next change overwrites it.\n\
             global\n    \
             stats socket {socket} mode 600 level admin expose-fd listeners\n    \
             stats timeout 30s\n    \
             hard-stop-after 60s\n    \
             ssl-default-bind-options ssl-min-ver TLSv1.2\n    \
             ssl-default-server-options ssl-min-ver TLSv1.2\n\n\
             defaults\n    \
             timeout connect 5s\n    \
             timeout client 50s\n    \
             timeout server 50s\n    \
             timeout http-request 10s\n    \
             retries 3\n    \
             option redispatch\n"
        );
        // ACTIVE_STANDBY: this device is the local peer of every pair's peers section.
        let mut local_peers: Vec<&str> = load_balancers
            .iter()
            .filter_map(|lb| lb.vrrp.as_ref())
            .map(|v| v.local_device_id.as_str())
            .collect();
        local_peers.sort_unstable();
        local_peers.dedup();
        match local_peers.as_slice() {
            [] => {}
            [name] => {
                check_id(name, "vrrp.local_device_id")?;
                // After the defaults section HAProxy would not take it: insert it into global.
                out = out.replacen(
                    "\n\ndefaults\n",
                    &format!("\n    localpeer {name}\n\ndefaults\n"),
                    1,
                );
            }
            _ => {
                return Err(reject(
                    "vrrp.local_device_id",
                    "every pair on one device names the same local device",
                ));
            }
        }
        let mut cert_files = CertFiles::new();
        let mut sorted: Vec<&LoadBalancerConfig> = load_balancers.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for lb in sorted {
            render_load_balancer(&mut out, lb, cert_dir, &mut cert_files)?;
        }
        Ok(Rendered {
            text: out,
            cert_files,
        })
    }
}

fn render_load_balancer(
    out: &mut String,
    lb: &LoadBalancerConfig,
    cert_dir: &str,
    cert_files: &mut CertFiles,
) -> Result<(), RenderError> {
    check_id(&lb.id, "loadbalancer.id")?;
    let mut vips: Vec<IpAddr> = vec![
        lb.vip_address
            .parse()
            .map_err(|_| reject("loadbalancer.vip_address", "not an IP address"))?,
    ];
    for (i, extra) in lb.additional_vip_addresses.iter().enumerate() {
        let ip: IpAddr = extra.parse().map_err(|_| {
            reject(
                format!("loadbalancer.additional_vip_addresses[{i}]"),
                "not an IP address",
            )
        })?;
        if vips.contains(&ip) {
            return Err(reject(
                format!("loadbalancer.additional_vip_addresses[{i}]"),
                "the load balancer holds this address already",
            ));
        }
        vips.push(ip);
    }
    let _ = writeln!(out, "\n# load balancer {}", lb.id);
    let peers = render_peers(out, lb)?;
    for (i, listener) in lb.listeners.iter().enumerate() {
        let field = format!("listeners[{i}]");
        render_listener(out, lb, &vips, listener, cert_dir, cert_files, &field)?;
    }
    for (i, pool) in lb.pools.iter().enumerate() {
        // The member timeouts of the listener sending its traffic: by default, else through an
        // L7 policy.
        let timeouts = lb
            .listeners
            .iter()
            .find(|l| l.default_pool_id == pool.id)
            .or_else(|| {
                lb.listeners.iter().find(|l| {
                    l.l7_policies.iter().any(|p| {
                        p.action() == L7Action::RedirectToPool && p.redirect_pool_id == pool.id
                    })
                })
            });
        let mut section = String::new();
        render_pool(&mut section, pool, timeouts, &format!("pools[{i}]"))?;
        if let Some(name) = &peers {
            // The pair shares its stick tables: persistence survives a takeover.
            section = section.replace(" size 10k\n", &format!(" size 10k peers {name}\n"));
        }
        out.push_str(&section);
    }
    Ok(())
}

/// ACTIVE_STANDBY: a peers section joining this device and its pair's other device, so their
/// stick tables are one (HAProxy replicates every entry to the peer, port 10000 + the pair's
/// virtual router id on each device's port). Returns its name, or `None` for SINGLE.
fn render_peers(out: &mut String, lb: &LoadBalancerConfig) -> Result<Option<String>, RenderError> {
    let Some(vrrp) = &lb.vrrp else {
        return Ok(None);
    };
    check_id(&vrrp.local_device_id, "vrrp.local_device_id")?;
    check_id(&vrrp.peer_device_id, "vrrp.peer_device_id")?;
    if vrrp.local_device_id == vrrp.peer_device_id {
        return Err(reject("vrrp.peer_device_id", "the pair needs two devices"));
    }
    if !(1..=255).contains(&vrrp.virtual_router_id) {
        return Err(reject("vrrp.virtual_router_id", "must be 1-255"));
    }
    let address = |text: &str, field: &str| -> Result<IpAddr, RenderError> {
        text.parse()
            .map_err(|_| reject(field, "an IP address is needed for the pair's peers"))
    };
    let local = address(&vrrp.local_address, "vrrp.local_address")?;
    let peer = address(&vrrp.peer_address, "vrrp.peer_address")?;
    if local.is_ipv4() != peer.is_ipv4() {
        return Err(reject(
            "vrrp.peer_address",
            "the pair's two ports must be of one address family",
        ));
    }
    let port = u16::try_from(10_000 + vrrp.virtual_router_id)
        .map_err(|_| reject("vrrp.virtual_router_id", "must be 1-255"))?;
    let name = format!("lbp_{}", lb.id);
    let _ = write!(
        out,
        "peers {name}\n    peer {} {}\n    peer {} {}\n",
        vrrp.local_device_id,
        socket_address(local, port),
        vrrp.peer_device_id,
        socket_address(peer, port)
    );
    Ok(Some(name))
}

/// The proxy mode of a listener's frontend.
fn listener_mode(protocol: ListenerProtocol, field: &str) -> Result<&'static str, RenderError> {
    match protocol {
        ListenerProtocol::Http | ListenerProtocol::TerminatedHttps => Ok("http"),
        ListenerProtocol::Tcp | ListenerProtocol::Https => Ok("tcp"),
        ListenerProtocol::Udp => Err(reject(field, "HAProxy cannot proxy UDP")),
        ListenerProtocol::Unspecified => Err(reject(field, "protocol is required")),
    }
}

/// The proxy mode of a pool's backend.
pub(super) fn pool_mode(
    protocol: ListenerProtocol,
    field: &str,
) -> Result<&'static str, RenderError> {
    match protocol {
        ListenerProtocol::Http => Ok("http"),
        ListenerProtocol::Tcp | ListenerProtocol::Https => Ok("tcp"),
        ListenerProtocol::TerminatedHttps => Err(reject(
            field,
            "pools are HTTP behind TERMINATED_HTTPS listeners (tls_enabled re-encrypts)",
        )),
        ListenerProtocol::Udp => Err(reject(field, "HAProxy cannot proxy UDP")),
        ListenerProtocol::Unspecified => Err(reject(field, "protocol is required")),
    }
}

fn render_listener(
    out: &mut String,
    lb: &LoadBalancerConfig,
    vips: &[IpAddr],
    listener: &ListenerConfig,
    cert_dir: &str,
    cert_files: &mut CertFiles,
    field: &str,
) -> Result<(), RenderError> {
    check_id(&listener.id, &format!("{field}.id"))?;
    let protocol = listener.protocol();
    let mode = listener_mode(protocol, &format!("{field}.protocol"))?;
    let port = check_port(listener.port, &format!("{field}.port"))?;
    let _ = writeln!(out, "frontend l_{}", listener.id);
    let _ = writeln!(out, "    mode {mode}");
    if protocol == ListenerProtocol::TerminatedHttps {
        let ssl = tls::bind_options(listener, cert_dir, cert_files, field)?;
        for vip in vips {
            let _ = writeln!(out, "    bind {} {ssl}", socket_address(*vip, port));
        }
    } else {
        tls::refuse_certificates(listener, field)?;
        for vip in vips {
            let _ = writeln!(out, "    bind {}", socket_address(*vip, port));
        }
    }
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
    if let Some(log) = &lb.access_log {
        render_access_log(out, log, mode == "http")?;
    }
    render_allowed_cidrs(out, listener, field)?;
    if mode == "http" {
        let scheme = if protocol == ListenerProtocol::TerminatedHttps {
            "https"
        } else {
            "http"
        };
        render_insert_headers(out, listener, scheme, field)?;
        if let Some(hsts) = &listener.hsts {
            if protocol != ListenerProtocol::TerminatedHttps {
                return Err(reject(
                    format!("{field}.hsts"),
                    "only TERMINATED_HTTPS listeners send HSTS",
                ));
            }
            let _ = writeln!(
                out,
                "    http-response set-header Strict-Transport-Security \"{}\"",
                lbaas::tls_options::hsts_header(hsts)
            );
        }
        l7::render_policies(out, lb, listener, field)?;
    } else {
        if listener.hsts.is_some() {
            return Err(reject(
                format!("{field}.hsts"),
                "only TERMINATED_HTTPS listeners send HSTS",
            ));
        }
        if !listener.insert_headers.is_empty() {
            return Err(reject(
                format!("{field}.insert_headers"),
                "only HTTP and TERMINATED_HTTPS listeners insert headers",
            ));
        }
        if !listener.l7_policies.is_empty() {
            return Err(reject(
                format!("{field}.l7_policies"),
                "only HTTP and TERMINATED_HTTPS listeners have L7 policies",
            ));
        }
    }
    if !listener.default_pool_id.is_empty() {
        let pool_field = format!("{field}.default_pool_id");
        check_id(&listener.default_pool_id, &pool_field)?;
        let pool = lb
            .pools
            .iter()
            .find(|p| p.id == listener.default_pool_id)
            .ok_or_else(|| reject(&pool_field, "names no pool of this load balancer"))?;
        // HAProxy refuses an HTTP frontend sending to a TCP backend.
        if mode == "http" && pool_mode(pool.protocol(), &pool_field)? != "http" {
            return Err(reject(
                pool_field,
                "HTTP and TERMINATED_HTTPS listeners take HTTP pools",
            ));
        }
        let _ = writeln!(out, "    default_backend p_{}", listener.default_pool_id);
    }
    out.push('\n');
    Ok(())
}

/// The frontend's access log: RFC 5424 lines to the target (UDP, or TCP through HAProxy's
/// implicit ring, which drops lines rather than wait), in the operator's format. The format goes
/// in single quotes, where HAProxy expands nothing; a quote in it closes, escapes and reopens.
fn render_access_log(
    out: &mut String,
    log: &lbaas::agent::v1::AccessLog,
    http: bool,
) -> Result<(), RenderError> {
    let ip: IpAddr = log
        .address
        .parse()
        .map_err(|_| reject("access_log.address", "is not an IP address"))?;
    let port = u16::try_from(log.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| reject("access_log.port", "must be 1-65535"))?;
    let prefix = match log.transport.as_str() {
        "udp" => "",
        "tcp" => "tcp@",
        _ => return Err(reject("access_log.transport", "must be \"udp\" or \"tcp\"")),
    };
    if log.format.is_empty() || log.format.chars().any(char::is_control) {
        return Err(reject(
            "access_log.format",
            "must be one line without control characters",
        ));
    }
    let _ = writeln!(
        out,
        "    log {prefix}{} len 8192 format rfc5424 local0 info",
        socket_address(ip, port)
    );
    let format = if http {
        log.format.clone()
    } else {
        lbaas::logformat::for_tcp(&log.format)
    };
    let _ = writeln!(out, "    log-format '{}'", format.replace('\'', "'\\''"));
    Ok(())
}

/// `allowed_cidrs`: connections from anywhere else are closed as they are accepted.
fn render_allowed_cidrs(
    out: &mut String,
    listener: &ListenerConfig,
    field: &str,
) -> Result<(), RenderError> {
    if listener.allowed_cidrs.is_empty() {
        return Ok(());
    }
    let mut networks: Vec<String> = Vec::new();
    for (i, cidr) in listener.allowed_cidrs.iter().enumerate() {
        let network = cidr
            .parse::<IpNet>()
            .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                reject(
                    format!("{field}.allowed_cidrs[{i}]"),
                    "is not a network such as 192.0.2.0/24",
                )
            })?
            .trunc()
            .to_string();
        if !networks.contains(&network) {
            networks.push(network);
        }
    }
    // Lines of one ACL name add up: the ACL matches a source in any of them.
    for chunk in networks.chunks(CIDRS_PER_LINE) {
        let _ = writeln!(out, "    acl allowed_cidrs src {}", chunk.join(" "));
    }
    let _ = writeln!(
        out,
        "    tcp-request connection reject unless allowed_cidrs"
    );
    Ok(())
}

/// `insert_headers`, as Octavia renders them.
fn render_insert_headers(
    out: &mut String,
    listener: &ListenerConfig,
    scheme: &str,
    field: &str,
) -> Result<(), RenderError> {
    let (mut forwarded_for, mut port, mut proto) = (false, false, false);
    for (i, header) in listener.insert_headers.iter().enumerate() {
        match InsertHeader::try_from(*header) {
            Ok(InsertHeader::XForwardedFor) => forwarded_for = true,
            Ok(InsertHeader::XForwardedPort) => port = true,
            Ok(InsertHeader::XForwardedProto) => proto = true,
            Ok(InsertHeader::Unspecified) | Err(_) => {
                return Err(reject(
                    format!("{field}.insert_headers[{i}]"),
                    "is not a header the listener can insert",
                ));
            }
        }
    }
    if forwarded_for {
        let _ = writeln!(out, "    option forwardfor");
    }
    if port {
        let _ = writeln!(
            out,
            "    http-request set-header X-Forwarded-Port %[dst_port]"
        );
    }
    if proto {
        let _ = writeln!(
            out,
            "    http-request set-header X-Forwarded-Proto {scheme}"
        );
    }
    Ok(())
}

fn render_pool(
    out: &mut String,
    pool: &PoolConfig,
    listener: Option<&ListenerConfig>,
    field: &str,
) -> Result<(), RenderError> {
    check_id(&pool.id, &format!("{field}.id"))?;
    let mode = pool_mode(pool.protocol(), &format!("{field}.protocol"))?;
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
    let cookie = render_persistence(out, pool, mode, field)?;
    let options = server_options(out, pool, field)?;
    if pool.tls_enabled {
        let _ = writeln!(
            out,
            "    # Re-encryption: members' certificates are not verified (verify none)."
        );
    }
    for (i, member) in pool.members.iter().enumerate() {
        let field = format!("{field}.members[{i}]");
        let args = member_args(member, &options, cookie, &field)?;
        let _ = write!(out, "    server m_{} {args}", member.id);
        if !member.admin_state_up {
            out.push_str(" disabled");
        }
        out.push('\n');
    }
    out.push('\n');
    Ok(())
}

/// Writes the pool's session persistence; returns whether each server needs a `cookie`.
fn render_persistence(
    out: &mut String,
    pool: &PoolConfig,
    mode: &str,
    field: &str,
) -> Result<bool, RenderError> {
    let Some(persistence) = &pool.persistence else {
        return Ok(false);
    };
    let field = format!("{field}.persistence");
    let kind = PersistenceType::try_from(persistence.r#type)
        .map_err(|_| reject(format!("{field}.type"), "is not a persistence type"))?;
    let name = &persistence.cookie_name;
    if kind == PersistenceType::AppCookie {
        check_cookie_name(name, &format!("{field}.cookie_name"))?;
    } else if !name.is_empty() {
        return Err(reject(
            format!("{field}.cookie_name"),
            "only APP_COOKIE persistence takes a cookie name",
        ));
    }
    if matches!(
        kind,
        PersistenceType::HttpCookie | PersistenceType::AppCookie
    ) && mode != "http"
    {
        return Err(reject(
            format!("{field}.type"),
            "cookie persistence needs an HTTP pool",
        ));
    }
    match kind {
        PersistenceType::None => Ok(false),
        PersistenceType::SourceIp => {
            // An ipv6 table also keeps IPv4 clients (as ::ffff:a.b.c.d); an ip one would
            // silently not stick IPv6 clients.
            let _ = writeln!(out, "    stick-table type ipv6 size 10k");
            let _ = writeln!(out, "    stick on src");
            Ok(false)
        }
        PersistenceType::HttpCookie => {
            let _ = writeln!(out, "    cookie SRV insert indirect nocache");
            Ok(true)
        }
        PersistenceType::AppCookie => {
            let _ = writeln!(out, "    stick-table type string len 64 size 10k");
            let _ = writeln!(out, "    stick store-response res.cook({name})");
            let _ = writeln!(out, "    stick match req.cook({name})");
            Ok(false)
        }
    }
}

/// A cookie name: 1-64 letters, digits, '-', '_' or '.'.
fn check_cookie_name(name: &str, field: &str) -> Result<(), RenderError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(reject(
            field,
            "must be 1-64 letters, digits, '-', '_' or '.' (required for APP_COOKIE)",
        ));
    }
    Ok(())
}

/// Writes the backend's check options (into `out`) and returns what every server line of the
/// pool carries after its weight: TLS to the member, then health checks.
fn server_options(out: &mut String, pool: &PoolConfig, field: &str) -> Result<String, RenderError> {
    let mut options = String::new();
    if pool.tls_enabled {
        if pool.protocol() == ListenerProtocol::Https {
            return Err(reject(
                format!("{field}.tls_enabled"),
                "HTTPS pools pass the client's TLS through; re-encryption is for HTTP pools",
            ));
        }
        options.push_str(" ssl verify none");
        if let Some(tls_options) = &pool.tls {
            options.push_str(&tls::options(tls_options, &format!("{field}.tls"))?);
        }
    } else if pool
        .tls
        .as_ref()
        .is_some_and(|t| t.alpn_protocols == ["h2"])
    {
        // HTTP/2 in clear text (h2c), as gRPC servers speak; health checks too.
        if pool.protocol() != ListenerProtocol::Http {
            return Err(reject(
                format!("{field}.tls.alpn_protocols"),
                "HTTP/2 to members needs an HTTP pool",
            ));
        }
        options.push_str(" proto h2");
    }
    // PROXY pools: every connection to a member (and its health checks, which HAProxy sends
    // through the same protocol) starts with the header.
    match pool.proxy_protocol() {
        ProxyProtocol::None => {}
        ProxyProtocol::V1 => options.push_str(" send-proxy"),
        ProxyProtocol::V2 => options.push_str(" send-proxy-v2"),
    }
    if let Some(monitor) = &pool.monitor {
        options.push(' ');
        options.push_str(&render_monitor(
            out,
            monitor,
            pool.tls_enabled,
            &format!("{field}.monitor"),
        )?);
    }
    Ok(options)
}

/// Writes the backend's check options and returns what each server line needs to enable them.
/// On a re-encrypting pool (`ssl` servers) every check runs over TLS already.
fn render_monitor(
    out: &mut String,
    monitor: &MonitorConfig,
    tls: bool,
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
            // Over TLS, a connect check is a whole handshake; an SSLv3 hello inside TLS would
            // fail.
            if !tls {
                let _ = writeln!(out, "    option ssl-hello-chk");
            }
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
            let mut send = format!("    http-check send meth {method} uri {path}");
            match monitor.http_version.as_str() {
                "" | "1.0" => {}
                "1.1" => send.push_str(" ver HTTP/1.1"),
                _ => {
                    return Err(reject(
                        format!("{field}.http_version"),
                        "must be 1.0 or 1.1",
                    ));
                }
            }
            if !monitor.domain_name.is_empty() {
                let host = &monitor.domain_name;
                if host.len() > 253
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(reject(format!("{field}.domain_name"), "not a host name"));
                }
                let _ = write!(send, " hdr Host {host}");
            }
            let _ = writeln!(out, "{send}");
            let _ = writeln!(out, "    http-check expect rstatus ^({})$", codes.join("|"));
            if monitor.r#type() == MonitorType::Https && !tls {
                server_opts.push_str(" check-ssl verify none");
            }
        }
        MonitorType::Ping => {
            return Err(reject(
                format!("{field}.type"),
                "HAProxy cannot send PING checks",
            ));
        }
        MonitorType::UdpConnect => {
            return Err(reject(
                format!("{field}.type"),
                "HAProxy cannot send UDP checks",
            ));
        }
        MonitorType::Unspecified => return Err(reject(format!("{field}.type"), "is required")),
    }
    Ok(server_opts)
}

/// `ADDRESS:PORT weight W <pool options> [addr CHECK-ADDRESS] [port CHECK-PORT] [backup] [cookie ID]`.
fn member_args(
    member: &MemberConfig,
    pool_options: &str,
    cookie: bool,
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
    let mut args = format!(
        "{} weight {}{pool_options}",
        socket_address(address, port),
        member.weight
    );
    if !member.monitor_address.is_empty() {
        let check: IpAddr = member
            .monitor_address
            .parse()
            .map_err(|_| reject(format!("{field}.monitor_address"), "not an IP address"))?;
        let _ = write!(args, " addr {check}");
    }
    if member.monitor_port != 0 {
        let check_port = check_port(member.monitor_port, &format!("{field}.monitor_port"))?;
        let _ = write!(args, " port {check_port}");
    }
    if member.backup {
        args.push_str(" backup");
    }
    if cookie {
        let _ = write!(args, " cookie {}", member.id);
    }
    Ok(args)
}

/// A server's address and options, as a `server` line and the runtime API's `add server` take
/// them: `ADDRESS:PORT weight W [ssl verify none] [check ...] [backup] [cookie ID]`.
pub fn server_args(
    pool: &PoolConfig,
    member: &MemberConfig,
    field: &str,
) -> Result<String, RenderError> {
    let mode = pool_mode(pool.protocol(), "pool.protocol")?;
    let cookie = render_persistence(&mut String::new(), pool, mode, "pool")?;
    let options = server_options(&mut String::new(), pool, "pool")?;
    member_args(member, &options, cookie, field)
}

/// Whether HAProxy 2.6's `add server` can add a member to this pool with everything its line in
/// the config has: the backend's algorithm must be dynamic (not `source`), and `cookie` is not
/// among the keywords `add server` takes, so HTTP_COOKIE pools take new members by a reload. (A
/// dynamic server gets a server id, so stick tables, SOURCE_IP and APP_COOKIE, stick to it.)
pub fn can_add_at_runtime(pool: &PoolConfig) -> bool {
    matches!(
        pool.algorithm(),
        Algorithm::RoundRobin | Algorithm::LeastConnections
    ) && pool
        .persistence
        .as_ref()
        .is_none_or(|p| p.r#type() != PersistenceType::HttpCookie)
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
pub(super) fn check_id(id: &str, field: &str) -> Result<(), RenderError> {
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
            vrrp: None,
            access_log: None,
            additional_vip_addresses: Vec::new(),
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
                    ..Default::default()
                }],
                monitor: None,
                ..Default::default()
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
    fn every_listener_binds_every_vip() {
        let mut dual = lb();
        dual.additional_vip_addresses = vec!["fd00:65:1::10".into()];
        let text = render(&[dual.clone()]).unwrap();
        assert!(
            text.contains("    bind 127.0.10.1:8080\n    bind [fd00:65:1::10]:8080\n"),
            "{text}"
        );
        dual.additional_vip_addresses = vec!["127.0.10.1".into()];
        assert!(render(&[dual.clone()]).is_err(), "the VIP twice");
        dual.additional_vip_addresses = vec!["fd00::1:80".into(), "nope".into()];
        let e = render(&[dual]).unwrap_err().to_string();
        assert!(e.contains("additional_vip_addresses[1]"), "{e}");
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
            ..Default::default()
        });
        let text = render(&[with_monitor]).unwrap();
        assert!(text.contains("http-check send meth HEAD uri /healthz"));
        let mut hosted = lb();
        hosted.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::Http as i32,
            http_version: "1.1".into(),
            domain_name: "health.example.com".into(),
            ..Default::default()
        });
        let hosted_text = render(&[hosted.clone()]).unwrap();
        assert!(
            hosted_text.contains("uri / ver HTTP/1.1 hdr Host health.example.com\n"),
            "{hosted_text}"
        );
        hosted.pools[0].monitor.as_mut().unwrap().domain_name = "x\n    server evil".into();
        assert!(render(&[hosted]).is_err());
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

    // --- listener features ---

    use lbaas::agent::v1::{
        L7CompareType, L7PolicyConfig, L7RuleType, SessionPersistence, TlsCertificate,
    };

    use super::super::fixtures::{self, Ports, TestCa, haproxy_bin, rule};

    fn render_files(lbs: &[LoadBalancerConfig]) -> Result<Rendered, RenderError> {
        ConfigRenderer {
            stats_socket: Path::new("/tmp/s.sock"),
        }
        .render_device(lbs, Path::new("/state/certs"))
    }

    /// The frontend or backend section named `name`.
    fn section<'a>(text: &'a str, name: &str) -> &'a str {
        let start = text.find(&format!("{name}\n")).unwrap();
        let end = text[start..].find("\n\n").map_or(text.len(), |e| start + e);
        &text[start..end]
    }

    #[test]
    fn allowed_cidrs_reject_other_sources() {
        let mut with_cidrs = lb();
        with_cidrs.listeners[0].allowed_cidrs = vec![
            "10.1.2.3/8".into(),
            "192.168.1.0/24".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
            "10.0.0.0/8".into(),
        ];
        let text = render(&[with_cidrs.clone()]).unwrap();
        assert!(text.contains(
            "    acl allowed_cidrs src 10.0.0.0/8 192.168.1.0/24 2001:db8::/32 192.0.2.7/32\n    \
             tcp-request connection reject unless allowed_cidrs\n"
        ));
        // TCP listeners too.
        with_cidrs.listeners[0].protocol = ListenerProtocol::Tcp as i32;
        with_cidrs.pools[0].protocol = ListenerProtocol::Tcp as i32;
        assert!(
            render(&[with_cidrs])
                .unwrap()
                .contains("reject unless allowed_cidrs")
        );
        // Many networks: several lines of one ACL.
        let mut many = lb();
        many.listeners[0].allowed_cidrs = (0..120).map(|i| format!("10.{i}.0.0/16")).collect();
        let text = render(&[many]).unwrap();
        assert_eq!(text.matches("acl allowed_cidrs src").count(), 3);
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/8 1.2.3.4",
            "any",
            "10.0.0.0/8\n    server x",
        ] {
            let mut bad_lb = lb();
            bad_lb.listeners[0].allowed_cidrs = vec!["10.0.0.0/8".into(), bad.into()];
            assert_eq!(
                render(&[bad_lb]).unwrap_err().field,
                "listeners[0].allowed_cidrs[1]",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn insert_headers_on_http_listeners_only() {
        let mut with_headers = lb();
        with_headers.listeners[0].insert_headers = vec![
            InsertHeader::XForwardedProto as i32,
            InsertHeader::XForwardedFor as i32,
            InsertHeader::XForwardedPort as i32,
        ];
        let text = render(&[with_headers.clone()]).unwrap();
        assert!(text.contains(
            "    option forwardfor\n    \
             http-request set-header X-Forwarded-Port %[dst_port]\n    \
             http-request set-header X-Forwarded-Proto http\n"
        ));
        let mut tcp = with_headers;
        tcp.listeners[0].protocol = ListenerProtocol::Tcp as i32;
        tcp.pools[0].protocol = ListenerProtocol::Tcp as i32;
        assert_eq!(
            render(&[tcp]).unwrap_err().field,
            "listeners[0].insert_headers"
        );
        let mut unknown = lb();
        unknown.listeners[0].insert_headers = vec![0];
        assert!(render(&[unknown]).is_err());
    }

    fn terminated(ca: &TestCa) -> LoadBalancerConfig {
        let [default, a, b] = fixtures::certificates(ca).map(|c| c.tls);
        let mut lb = lb();
        let listener = &mut lb.listeners[0];
        listener.protocol = ListenerProtocol::TerminatedHttps as i32;
        listener.port = 8443;
        listener.default_certificate = Some(default);
        listener.sni_certificates = vec![a, b];
        listener.insert_headers = vec![InsertHeader::XForwardedProto as i32];
        lb
    }

    #[test]
    fn terminated_https_binds_with_a_crt_list() {
        let ca = TestCa::new();
        let lb = terminated(&ca);
        let rendered = render_files(std::slice::from_ref(&lb)).unwrap();
        let frontend = section(&rendered.text, "frontend l_l-1");
        assert!(frontend.contains(
            "    mode http\n    bind 127.0.10.1:8443 ssl crt-list /state/certs/l_l-1.crtlist alpn h2,http/1.1\n"
        ));
        assert!(frontend.contains("http-request set-header X-Forwarded-Proto https"));
        assert_eq!(
            rendered.cert_files.keys().collect::<Vec<_>>(),
            ["c-a.pem", "c-b.pem", "c-default.pem", "l_l-1.crtlist"]
        );
        assert_eq!(
            rendered.cert_files["l_l-1.crtlist"],
            "/state/certs/c-default.pem\n/state/certs/c-a.pem\n/state/certs/c-b.pem\n"
        );
        // Chain, then key.
        let default = lb.listeners[0].default_certificate.clone().unwrap();
        assert_eq!(
            rendered.cert_files["c-default.pem"],
            format!("{}{}", default.certificate_pem, default.private_key_pem)
        );
        // The text alone names the same files, beside the stats socket by default.
        assert!(
            render(std::slice::from_ref(&lb))
                .unwrap()
                .contains("ssl crt-list /tmp/certs/l_l-1.crtlist")
        );

        // A default certificate is required; certificates need TERMINATED_HTTPS.
        let mut no_default = lb.clone();
        no_default.listeners[0].default_certificate = None;
        assert_eq!(
            render_files(&[no_default]).unwrap_err().field,
            "listeners[0].default_certificate"
        );
        let mut plain = lb.clone();
        plain.listeners[0].protocol = ListenerProtocol::Http as i32;
        plain.listeners[0].insert_headers.clear();
        assert!(render_files(&[plain]).is_err());
        // TERMINATED_HTTPS listeners take HTTP pools; pools are never TERMINATED_HTTPS.
        let mut tcp_pool = lb.clone();
        tcp_pool.pools[0].protocol = ListenerProtocol::Tcp as i32;
        assert_eq!(
            render_files(&[tcp_pool]).unwrap_err().field,
            "listeners[0].default_pool_id"
        );
        let mut terminated_pool = lb;
        terminated_pool.pools[0].protocol = ListenerProtocol::TerminatedHttps as i32;
        assert!(render_files(&[terminated_pool]).is_err());
    }

    #[test]
    fn certificates_cannot_inject() {
        let ca = TestCa::new();
        let lb = terminated(&ca);
        let cert = lb.listeners[0].default_certificate.clone().unwrap();
        let with = |edit: &dyn Fn(&mut TlsCertificate)| {
            let mut bad = lb.clone();
            let mut cert = cert.clone();
            edit(&mut cert);
            bad.listeners[0].default_certificate = Some(cert);
            render_files(&[bad]).unwrap_err().field
        };
        assert_eq!(
            with(&|c| c.id = "../../etc/passwd".into()),
            "listeners[0].default_certificate.id"
        );
        assert_eq!(
            with(&|c| c.id = "c\n    bind :1".into()),
            "listeners[0].default_certificate.id"
        );
        assert_eq!(
            with(&|c| c.certificate_pem.push_str("\nbind 0.0.0.0:1\n")),
            "listeners[0].default_certificate.certificate_pem"
        );
        assert_eq!(
            with(&|c| c.private_key_pem = format!("{}{}", c.private_key_pem, c.private_key_pem)),
            "listeners[0].default_certificate.private_key_pem"
        );
        assert_eq!(
            with(&|c| std::mem::swap(&mut c.private_key_pem, &mut c.certificate_pem)),
            "listeners[0].default_certificate.certificate_pem"
        );
        // One id cannot stand for two certificates.
        assert_eq!(
            with(&|c| c.id = "c-a".into()),
            "listeners[0].sni_certificates[0].id"
        );
    }

    fn with_persistence(kind: PersistenceType, name: &str) -> LoadBalancerConfig {
        let mut lb = lb();
        lb.pools[0].persistence = Some(SessionPersistence {
            r#type: kind as i32,
            cookie_name: name.into(),
        });
        lb
    }

    #[test]
    fn an_active_standby_pair_shares_its_stick_tables() {
        let mut lb = with_persistence(PersistenceType::SourceIp, "");
        lb.vrrp = Some(lbaas::agent::v1::VrrpConfig {
            role: "BACKUP".into(),
            priority: 90,
            virtual_router_id: 7,
            local_address: "10.101.1.12".into(),
            peer_address: "10.101.1.10".into(),
            advert_interval_ms: 1000,
            local_device_id: "h2-haproxy-0".into(),
            peer_device_id: "h1-haproxy-0".into(),
        });
        let text = render(&[lb.clone()]).unwrap();
        assert!(
            text.contains("    localpeer h2-haproxy-0\n\ndefaults\n"),
            "{text}"
        );
        assert!(text.contains(
            "peers lbp_lb-1\n    peer h2-haproxy-0 10.101.1.12:10007\n    peer h1-haproxy-0 10.101.1.10:10007\n"
        ));
        assert!(text.contains("    stick-table type ipv6 size 10k peers lbp_lb-1\n"));
        // Nothing from the pair's config reaches the file unchecked.
        let mut bad = lb.clone();
        bad.vrrp.as_mut().unwrap().peer_address = "10.0.0.1:1\n    bind :1".into();
        assert_eq!(render(&[bad]).unwrap_err().field, "vrrp.peer_address");
        let mut bad = lb;
        bad.vrrp.as_mut().unwrap().peer_device_id = "x y".into();
        assert_eq!(render(&[bad]).unwrap_err().field, "vrrp.peer_device_id");
    }

    #[test]
    fn session_persistence() {
        let text = render(&[with_persistence(PersistenceType::SourceIp, "")]).unwrap();
        assert!(text.contains("    stick-table type ipv6 size 10k\n    stick on src\n"));
        let text = render(&[with_persistence(PersistenceType::HttpCookie, "")]).unwrap();
        assert!(text.contains("    cookie SRV insert indirect nocache\n"));
        assert!(text.contains("    server m_m-1 127.0.0.1:9000 weight 1 cookie m-1\n"));
        let text = render(&[with_persistence(PersistenceType::AppCookie, "JSESSIONID")]).unwrap();
        assert!(text.contains(
            "    stick-table type string len 64 size 10k\n    \
             stick store-response res.cook(JSESSIONID)\n    \
             stick match req.cook(JSESSIONID)\n"
        ));
        assert!(!text.contains(" cookie m-1"));
        let text = render(&[with_persistence(PersistenceType::None, "")]).unwrap();
        assert!(!text.contains("stick") && !text.contains("cookie"));

        for (kind, name) in [
            (PersistenceType::AppCookie, ""),
            (PersistenceType::AppCookie, "a)"),
            (PersistenceType::AppCookie, "a b"),
            (PersistenceType::AppCookie, "x\n    server e 1.2.3.4:1"),
            (PersistenceType::AppCookie, &"a".repeat(65)),
            (PersistenceType::HttpCookie, "SRV"),
            (PersistenceType::SourceIp, "x"),
        ] {
            assert_eq!(
                render(&[with_persistence(kind, name)]).unwrap_err().field,
                "pools[0].persistence.cookie_name",
                "{kind:?} {name:?}"
            );
        }
        // Cookies need HTTP.
        for kind in [PersistenceType::HttpCookie, PersistenceType::AppCookie] {
            let mut tcp = with_persistence(
                kind,
                if kind == PersistenceType::AppCookie {
                    "c"
                } else {
                    ""
                },
            );
            tcp.listeners[0].protocol = ListenerProtocol::Tcp as i32;
            tcp.pools[0].protocol = ListenerProtocol::Tcp as i32;
            assert_eq!(
                render(&[tcp]).unwrap_err().field,
                "pools[0].persistence.type"
            );
        }
        let mut tcp = with_persistence(PersistenceType::SourceIp, "");
        tcp.listeners[0].protocol = ListenerProtocol::Tcp as i32;
        tcp.pools[0].protocol = ListenerProtocol::Tcp as i32;
        assert!(render(&[tcp]).unwrap().contains("stick on src"));
    }

    #[test]
    fn tls_options_render_on_binds_and_servers() {
        use lbaas::agent::v1::TlsOptions;
        let ca = TestCa::new();
        let mut lb = terminated(&ca);
        lb.listeners[0].tls = Some(TlsOptions {
            alpn_protocols: vec!["h2".into(), "http/1.1".into(), "http/1.0".into()],
            tls_versions: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            tls_ciphers: "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384".into(),
        });
        lb.pools[0].tls_enabled = true;
        lb.pools[0].tls = Some(TlsOptions {
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            tls_versions: vec!["TLSv1".into(), "TLSv1.1".into(), "TLSv1.2".into()],
            tls_ciphers: "AES128-SHA".into(),
        });
        let text = render(std::slice::from_ref(&lb)).unwrap();
        assert!(
            text.contains(
                "ssl crt-list /tmp/certs/l_l-1.crtlist alpn h2,http/1.1,http/1.0 ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 ciphers ECDHE-RSA-AES128-GCM-SHA256 ciphersuites TLS_AES_256_GCM_SHA384\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "weight 1 ssl verify none alpn h2,http/1.1 ssl-min-ver TLSv1.0 ssl-max-ver TLSv1.2 ciphers AES128-SHA\n"
            ),
            "{text}"
        );
        // h2c: HTTP/2 in clear text to members.
        let mut h2c = lb.clone();
        h2c.pools[0].tls_enabled = false;
        h2c.pools[0].tls = Some(TlsOptions {
            alpn_protocols: vec!["h2".into()],
            ..Default::default()
        });
        assert!(render(&[h2c]).unwrap().contains("weight 1 proto h2\n"));
        // Names that are not known never reach the config.
        for (field, options) in [
            (
                "listeners[0].tls.alpn_protocols[0]",
                TlsOptions {
                    alpn_protocols: vec!["h2 crt /etc/passwd".into()],
                    ..Default::default()
                },
            ),
            (
                "listeners[0].tls.tls_versions",
                TlsOptions {
                    tls_versions: vec!["TLSv1.2 ciphers".into()],
                    ..Default::default()
                },
            ),
            (
                "listeners[0].tls.tls_ciphers",
                TlsOptions {
                    tls_ciphers: "AES128-SHA\n    bind :1".into(),
                    ..Default::default()
                },
            ),
        ] {
            let mut bad = lb.clone();
            bad.listeners[0].tls = Some(options);
            assert_eq!(render(&[bad]).unwrap_err().field, field);
        }
    }

    #[test]
    fn tls_enabled_pools_re_encrypt_without_verifying() {
        let mut tls = lb();
        tls.pools[0].tls_enabled = true;
        tls.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::TlsHello as i32,
            ..Default::default()
        });
        let text = render(&[tls.clone()]).unwrap();
        assert!(text.contains("members' certificates are not verified"));
        assert!(text.contains(
            "    server m_m-1 127.0.0.1:9000 weight 1 ssl verify none check inter 1s fall 1 rise 1\n"
        ));
        // Checks run over TLS already: no SSLv3 hello inside it.
        assert!(!text.contains("ssl-hello-chk"));
        // The runtime API adds servers with the same options.
        assert_eq!(
            server_args(&tls.pools[0], &tls.pools[0].members[0], "m").unwrap(),
            "127.0.0.1:9000 weight 1 ssl verify none check inter 1s fall 1 rise 1"
        );
        let mut passthrough = tls;
        passthrough.listeners[0].protocol = ListenerProtocol::Https as i32;
        passthrough.pools[0].protocol = ListenerProtocol::Https as i32;
        assert_eq!(
            render(&[passthrough]).unwrap_err().field,
            "pools[0].tls_enabled"
        );
    }

    #[test]
    fn members_may_be_checked_elsewhere() {
        let mut checked = lb();
        checked.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::Tcp as i32,
            ..Default::default()
        });
        checked.pools[0].members[0].monitor_address = "::1".into();
        checked.pools[0].members[0].monitor_port = 9100;
        assert_eq!(
            server_args(&checked.pools[0], &checked.pools[0].members[0], "m").unwrap(),
            "127.0.0.1:9000 weight 1 check inter 1s fall 1 rise 1 addr ::1 port 9100"
        );
        checked.pools[0].members[0].monitor_address = "not an address".into();
        assert_eq!(
            render(&[checked.clone()]).unwrap_err().field,
            "pools[0].members[0].monitor_address"
        );
        checked.pools[0].members[0].monitor_address = String::new();
        checked.pools[0].members[0].monitor_port = 70_000;
        assert_eq!(
            render(&[checked]).unwrap_err().field,
            "pools[0].members[0].monitor_port"
        );
    }

    #[test]
    fn runtime_adds_need_dynamic_options() {
        let plain = lb();
        assert!(can_add_at_runtime(&plain.pools[0]));
        assert!(can_add_at_runtime(
            &with_persistence(PersistenceType::SourceIp, "").pools[0]
        ));
        assert!(can_add_at_runtime(
            &with_persistence(PersistenceType::AppCookie, "c").pools[0]
        ));
        let cookie = with_persistence(PersistenceType::HttpCookie, "");
        assert!(!can_add_at_runtime(&cookie.pools[0]));
        assert_eq!(
            server_args(&cookie.pools[0], &cookie.pools[0].members[0], "m").unwrap(),
            "127.0.0.1:9000 weight 1 cookie m-1"
        );
        let mut source = lb();
        source.pools[0].algorithm = Algorithm::SourceIp as i32;
        assert!(!can_add_at_runtime(&source.pools[0]));
    }

    fn with_policies(policies: Vec<L7PolicyConfig>) -> LoadBalancerConfig {
        let mut lb = lb();
        let mut other = lb.pools[0].clone();
        other.id = "p-2".into();
        other.members[0].id = "m-2".into();
        lb.pools.push(other);
        lb.listeners[0].l7_policies = policies;
        lb
    }

    fn policy(
        id: &str,
        action: L7Action,
        rules: Vec<lbaas::agent::v1::L7RuleConfig>,
    ) -> L7PolicyConfig {
        L7PolicyConfig {
            id: id.into(),
            action: action as i32,
            rules,
            ..Default::default()
        }
    }

    #[test]
    fn l7_policies_first_match_decides() {
        use L7CompareType::*;
        use L7RuleType::*;
        let mut to_pool = policy(
            "pol-pool",
            L7Action::RedirectToPool,
            vec![
                rule("r-host", HostName, EqualTo, "", "WWW.Example.com", false),
                rule("r-path", Path, StartsWith, "", "/api", true),
            ],
        );
        to_pool.redirect_pool_id = "p-2".into();
        let mut url = policy(
            "pol-url",
            L7Action::RedirectToUrl,
            vec![rule("r-ext", FileType, EndsWith, "", "pg", false)],
        );
        url.redirect_url = "https://example.com/a%20b".into();
        url.redirect_http_code = 308;
        let mut prefix = policy(
            "pol-prefix",
            L7Action::RedirectPrefix,
            vec![rule(
                "r-hdr",
                Header,
                Contains,
                "X-Forwarded-Host",
                "-f",
                false,
            )],
        );
        prefix.redirect_prefix = "https://new.example".into();
        let deny = policy(
            "pol-deny",
            L7Action::Reject,
            vec![rule(
                "r-cookie",
                Cookie,
                Regex,
                "session",
                "^(a|b)[0-9]+$",
                false,
            )],
        );
        let never = policy("pol-never", L7Action::Reject, vec![]);
        let lb = with_policies(vec![to_pool, url, prefix, deny, never]);
        let text = render(&[lb]).unwrap();
        let frontend = section(&text, "frontend l_l-1");
        let expected = "    acl l7_decided var(txn.l7p) -m found\n    \
            acl r_r-host req.hdr(host),lower,regsub(:[0-9]+$,) -i -m str -- www.example.com\n    \
            acl r_r-path path -m beg -- /api\n    \
            acl l7p_pol-pool var(txn.l7p) -m str pol-pool\n    \
            acl r_r-ext var(txn.l7ext) -m end -- pg\n    \
            acl l7p_pol-url var(txn.l7p) -m str pol-url\n    \
            acl r_r-hdr req.hdr(X-Forwarded-Host) -m sub -- -f\n    \
            acl l7p_pol-prefix var(txn.l7p) -m str pol-prefix\n    \
            acl r_r-cookie req.cook(session) -m reg -- '^(a|b)[0-9]+$'\n    \
            acl l7p_pol-deny var(txn.l7p) -m str pol-deny\n    \
            http-request set-var(txn.l7ext) path,regsub(^.*/,),regsub(^.*[.],) if { path -m reg [.][^/]*$ }\n    \
            http-request set-var(txn.l7p) str(pol-pool) if !l7_decided r_r-host !r_r-path\n    \
            http-request set-var(txn.l7p) str(pol-url) if !l7_decided r_r-ext\n    \
            http-request set-var(txn.l7p) str(pol-prefix) if !l7_decided r_r-hdr\n    \
            http-request set-var(txn.l7p) str(pol-deny) if !l7_decided r_r-cookie\n    \
            # policy pol-never has no rules: it never matches\n    \
            http-request redirect code 308 location https://example.com/a%%20b if l7p_pol-url\n    \
            http-request redirect code 302 prefix https://new.example if l7p_pol-prefix\n    \
            http-request deny if l7p_pol-deny\n    \
            use_backend p_p-2 if l7p_pol-pool\n    \
            default_backend p_p-1";
        assert!(frontend.ends_with(expected), "{frontend}");
        // The redirect pool is a backend of its own.
        assert!(text.contains("backend p_p-2\n"));
    }

    #[test]
    fn l7_values_cannot_inject() {
        use L7CompareType::*;
        use L7RuleType::*;
        let with_rule = |r: lbaas::agent::v1::L7RuleConfig| {
            render(&[with_policies(vec![policy(
                "pol",
                L7Action::Reject,
                vec![r],
            )])])
            .unwrap_err()
            .field
        };
        for value in [
            "",
            "a b",
            "a\"b",
            "a'b",
            "a\\b",
            "a#b",
            "a\nhttp-request deny",
            "é",
            "a\tb",
        ] {
            assert_eq!(
                with_rule(rule("r", Path, EqualTo, "", value, false)),
                "listeners[0].l7_policies[0].rules[0].value",
                "{value:?}"
            );
        }
        // A regular expression may hold a backslash (it is written strongly quoted), but nothing
        // that could end the quotes or the line.
        for value in ["a b", "a'b", "a\"b", "a#b", "a\nb", "é"] {
            assert_eq!(
                with_rule(rule("r", Path, Regex, "", value, false)),
                "listeners[0].l7_policies[0].rules[0].value",
                "{value:?}"
            );
        }
        let text = render(&[with_policies(vec![policy(
            "pol",
            L7Action::Reject,
            vec![rule("r", Path, Regex, "", "^/v\\d+\\.json$", false)],
        )])])
        .unwrap();
        assert!(
            text.contains("acl r_r path -m reg -- '^/v\\d+\\.json$'\n"),
            "{text}"
        );
        for key in ["", "X-A)", "X(A", "a,b", "a b", "a#", "a'"] {
            assert_eq!(
                with_rule(rule("r", Header, EqualTo, key, "v", false)),
                "listeners[0].l7_policies[0].rules[0].key",
                "{key:?}"
            );
        }
        assert_eq!(
            with_rule(rule("r x", Path, EqualTo, "", "/", false)),
            "listeners[0].l7_policies[0].rules[0].id"
        );
        assert_eq!(
            with_rule(rule("r", Path, L7CompareType::Unspecified, "", "/", false)),
            "listeners[0].l7_policies[0].rules[0].compare_type"
        );
        assert_eq!(
            with_rule(rule("r", L7RuleType::Unspecified, EqualTo, "", "/", false)),
            "listeners[0].l7_policies[0].rules[0].type"
        );
        let redirect = |action: L7Action, target: &str, code: u32| {
            let mut p = policy(
                "pol",
                action,
                vec![rule("r", Path, EqualTo, "", "/", false)],
            );
            p.redirect_url = target.into();
            p.redirect_prefix = target.into();
            p.redirect_pool_id = target.into();
            p.redirect_http_code = code;
            render(&[with_policies(vec![p])]).map_err(|e| e.field)
        };
        for target in [
            "",
            "https://x/ y",
            "https://x/\"",
            "https://x/#a",
            "https://x/\\",
        ] {
            assert_eq!(
                redirect(L7Action::RedirectToUrl, target, 0).unwrap_err(),
                "listeners[0].l7_policies[0].redirect_url"
            );
            assert_eq!(
                redirect(L7Action::RedirectPrefix, target, 0).unwrap_err(),
                "listeners[0].l7_policies[0].redirect_prefix"
            );
        }
        assert_eq!(
            redirect(L7Action::RedirectToUrl, "https://x/", 304).unwrap_err(),
            "listeners[0].l7_policies[0].redirect_http_code"
        );
        for code in [301, 302, 303, 307, 308] {
            assert!(redirect(L7Action::RedirectPrefix, "https://x", code).is_ok());
        }
        // Pools: of this load balancer, HTTP.
        assert_eq!(
            redirect(L7Action::RedirectToPool, "p-9", 0).unwrap_err(),
            "listeners[0].l7_policies[0].redirect_pool_id"
        );
        assert_eq!(
            redirect(L7Action::RedirectToPool, "p-2\n    bind :1", 0).unwrap_err(),
            "listeners[0].l7_policies[0].redirect_pool_id"
        );
        let mut tcp_pool = with_policies(vec![]);
        tcp_pool.pools[1].protocol = ListenerProtocol::Tcp as i32;
        let mut p = policy(
            "pol",
            L7Action::RedirectToPool,
            vec![rule("r", Path, EqualTo, "", "/", false)],
        );
        p.redirect_pool_id = "p-2".into();
        tcp_pool.listeners[0].l7_policies = vec![p];
        assert_eq!(
            render(&[tcp_pool]).unwrap_err().field,
            "listeners[0].l7_policies[0].redirect_pool_id"
        );
        // Ids name ACLs: each once per listener.
        let twice = with_policies(vec![
            policy(
                "pol",
                L7Action::Reject,
                vec![rule("r", Path, EqualTo, "", "/", false)],
            ),
            policy(
                "pol-2",
                L7Action::Reject,
                vec![rule("r", Path, EqualTo, "", "/a", false)],
            ),
        ]);
        assert_eq!(
            render(&[twice]).unwrap_err().field,
            "listeners[0].l7_policies[1].rules[0].id"
        );
        let too_many = (0..=l7::MAX_RULES_PER_POLICY)
            .map(|i| rule(&format!("r-{i}"), Path, EqualTo, "", "/", false))
            .collect();
        assert_eq!(
            render(&[with_policies(vec![policy(
                "pol",
                L7Action::Reject,
                too_many
            )])])
            .unwrap_err()
            .field,
            "listeners[0].l7_policies[0].rules"
        );
        // Only HTTP listeners have policies.
        let mut tcp = with_policies(vec![policy("pol", L7Action::Reject, vec![])]);
        tcp.listeners[0].protocol = ListenerProtocol::Tcp as i32;
        tcp.pools[0].protocol = ListenerProtocol::Tcp as i32;
        assert_eq!(
            render(&[tcp]).unwrap_err().field,
            "listeners[0].l7_policies"
        );
    }

    /// Every feature at once, checked by the real HAProxy (`haproxy -c`), which must find nothing
    /// to warn about.
    #[test]
    #[cfg_attr(
        lbaas_no_haproxy,
        ignore = "haproxy is not installed (apt-get install haproxy)"
    )]
    fn haproxy_accepts_a_config_with_every_feature() {
        let bin = haproxy_bin();
        let dir = std::env::temp_dir().join(format!("lbaas-render-{}", uuid::Uuid::new_v4()));
        let cert_dir = dir.join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        let ca = TestCa::new();
        let ports = Ports {
            https: 18443,
            http: 18080,
            tcp: 18081,
            web: [19001, 19002],
            app: [19003, 19004],
            images: 19005,
            tcp_member: 19006,
        };
        let everything = fixtures::everything(&ca, &ports);
        let mut second = lb();
        second.id = "lb-2".into();
        second.listeners[0].insert_headers = vec![InsertHeader::XForwardedFor as i32];
        // Long lines stay within HAProxy's 64 words: many networks, a policy with the most rules.
        second.listeners[0].allowed_cidrs = (0..120).map(|i| format!("10.{i}.0.0/16")).collect();
        let rules = (0..l7::MAX_RULES_PER_POLICY)
            .map(|i| {
                let value = format!("/p{i}");
                rule(
                    &format!("r-{i}"),
                    L7RuleType::Path,
                    L7CompareType::EqualTo,
                    "",
                    &value,
                    true,
                )
            })
            .collect();
        second.listeners[0].l7_policies = vec![policy("pol-long", L7Action::Reject, rules)];
        // Checks sent elsewhere than the traffic (Octavia's monitor_address and monitor_port).
        second.pools[0].monitor = Some(MonitorConfig {
            r#type: MonitorType::Tcp as i32,
            ..Default::default()
        });
        second.pools[0].members[0].monitor_address = "127.0.0.9".into();
        second.pools[0].members[0].monitor_port = 19100;
        let rendered = ConfigRenderer {
            stats_socket: &dir.join("stats.sock"),
        }
        .render_device(&[everything, second], &cert_dir)
        .unwrap();
        for (name, content) in &rendered.cert_files {
            std::fs::write(cert_dir.join(name), content).unwrap();
        }
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, &rendered.text).unwrap();
        let output = std::process::Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "haproxy -c refused:\n{stderr}{stdout}\n{}",
            rendered.text
        );
        // `option httplog` without a `log` target is the one known warning (logging is not set up).
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("WARNING") || l.contains("ALERT"))
            .filter(|l| !l.contains("log format ignored"))
            .collect();
        assert!(
            warnings.is_empty(),
            "haproxy -c warned:\n{stderr}\n{}",
            rendered.text
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
