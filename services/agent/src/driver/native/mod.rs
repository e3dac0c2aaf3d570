//! The native data plane's engine, needing nothing installed. It runs in its own process
//! (`lbaas-dataplane`, see `crate::dataplane`), which the native driver (`process.rs`) starts,
//! feeds and adopts, so traffic does not depend on the agent being alive. Each
//! listener is a tokio socket on VIP:port. TCP and HTTPS (passthrough) listeners proxy each
//! connection to a member; HTTP listeners are HTTP/1.1 and HTTP/2 (cleartext) servers (hyper) that
//! balance each request (`http.rs`), with L7 policies (`l7.rs`) and X-Forwarded-* headers;
//! TERMINATED_HTTPS listeners are the same behind TLS, the certificate chosen by SNI (`tls.rs`);
//! UDP listeners relay datagrams in per-client sessions (`udp.rs`). Members are chosen by
//! ROUND_ROBIN (weighted), LEAST_CONNECTIONS or SOURCE_IP, with backup members used only when no
//! primary is usable, and session persistence by source IP, load-balancer cookie or application
//! cookie (`persist.rs`); pools may re-encrypt to members (TLS, certificates not verified); TCP,
//! HTTP, HTTPS and TLS-HELLO health checks (PING is refused); allowed client CIDRs; a connection
//! limit (excess connections wait, as HAProxy's maxconn queues them); connect and member data
//! timeouts (HTTP: connect plus data bound each request, 504 past it); TCP sessions end after the
//! shorter of the client and member data timeouts with nothing moving either way.
//!
//! An apply changes routes in place: listeners that stay keep their socket (TLS certificates
//! included: new connections get the new ones), pools are swapped behind it, member health,
//! active-connection counts and persistence tables carry over, and connections already proxied run
//! to completion even when their listener goes away. Nothing restarts.

mod access_log;
mod balance;
pub mod checks;
mod http;
pub mod l7;
pub mod persist;
pub mod process;
mod proxy_header;
pub mod tls;
mod udp;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use lbaas::{
    agent::v1::{
        InsertHeader, ListenerConfig, ListenerProtocol, LoadBalancerConfig, MemberHealth,
        MemberHealthStatus, MonitorType, PoolConfig,
    },
    server::AbortOnDrop,
};
use persist::{Persistence, StickTable};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{DeviceHealth, Driver, DriverError};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Octavia's default member data timeout.
const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(50);

/// What one member is doing, kept across applies while its pool, id and address stay the same.
#[derive(Debug)]
pub struct MemberState {
    pub up: AtomicBool,
    pub active: AtomicUsize,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub addr: SocketAddr,
    /// Where health checks go (the member's `monitor_address`/`monitor_port`, else `addr`).
    pub check_addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub admin_up: bool,
    pub state: Arc<MemberState>,
}

impl Member {
    /// Takes new connections: enabled, weighted and (as far as checks know) up.
    pub fn usable(&self) -> bool {
        self.admin_up && self.weight > 0 && self.state.up.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Pool {
    pub id: String,
    pub algorithm: lbaas::agent::v1::Algorithm,
    pub members: Vec<Member>,
    pub monitored: bool,
    /// The round-robin position.
    pub next: AtomicUsize,
    pub persistence: Persistence,
    /// Source address or application cookie -> member id; kept across applies while the pool and
    /// its persistence stay.
    pub sticky: Arc<StickTable>,
    /// Connect to members over TLS (not verifying them).
    pub tls: bool,
    /// With `tls`: the pool's client config (its ALPN, versions and ciphers) and the options it
    /// was built from, which key the pooled connections.
    pub member_tls: Option<(http::TlsKey, Arc<rustls::ClientConfig>)>,
    /// Without `tls`: HTTP/2 in clear text (h2c, prior knowledge) to members.
    pub h2c: bool,
    /// Open each member connection (and health check) with a PROXY protocol header.
    pub proxy: lbaas::agent::v1::ProxyProtocol,
}

/// A listener's traffic counters, kept while the listener exists.
#[derive(Debug, Default)]
struct Counters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active: AtomicU64,
    total: AtomicU64,
    errors: AtomicU64,
}

/// What a listener does with what it receives.
#[derive(Clone)]
enum Front {
    /// TCP and HTTPS (passthrough): each connection is proxied whole to one member.
    Tcp,
    /// Each request is balanced.
    Http(Arc<http::Front>),
    /// TLS ends here (certificates by SNI), then as `Http`.
    TerminatedHttps(Arc<http::Front>, Arc<rustls::ServerConfig>),
    /// Datagrams, in per-client sessions.
    Udp,
}

impl Front {
    fn http(&self) -> Option<&Arc<http::Front>> {
        match self {
            Self::Http(front) | Self::TerminatedHttps(front, _) => Some(front),
            Self::Tcp | Self::Udp => None,
        }
    }
}

/// Where a listener sends its connections now.
#[derive(Clone)]
struct Route {
    counters: Arc<Counters>,
    pool: Option<Arc<Pool>>,
    limit: Option<Arc<Semaphore>>,
    limit_n: u32,
    connect_timeout: Duration,
    data_timeout: Duration,
    /// TLS handshakes; the idle time of UDP sessions.
    client_timeout: Duration,
    /// Clients allowed (empty: everyone).
    allowed: Arc<[IpNet]>,
    front: Front,
    /// The listener's id, for access log lines.
    listener_id: Arc<str>,
    /// The load balancer's access log, when it has one.
    log: Option<Arc<access_log::Logger>>,
}

/// Whether a client address may use a listener.
fn allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.is_empty() || nets.iter().any(|n| n.contains(&ip))
}

/// TCP and UDP listeners may share a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Transport {
    Tcp,
    Udp,
}

struct Listener {
    route: Arc<RwLock<Route>>,
    /// A second descriptor of the listening socket, for handing it to a successor process.
    fd: Option<std::os::fd::OwnedFd>,
    _task: AbortOnDrop,
}

/// A listening socket received from a predecessor process, waiting for the apply that serves
/// its address.
pub enum Inherited {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

#[derive(Default)]
struct Runtime {
    listeners: HashMap<(Transport, SocketAddr), Listener>,
    members: HashMap<(String, String, SocketAddr), Arc<MemberState>>,
    checkers: HashMap<String, (PoolConfig, AbortOnDrop)>,
    pools: HashMap<String, Arc<Pool>>,
    /// By listener id.
    counters: HashMap<String, Arc<Counters>>,
    /// Access logs by load balancer id, kept while their config stays (a TCP target keeps its
    /// connection across applies).
    loggers: HashMap<String, Arc<access_log::Logger>>,
}

/// The in-process data plane: what `lbaas-dataplane` runs.
pub struct Engine {
    runtime: tokio::sync::Mutex<Runtime>,
    /// Sockets handed over by the process this one replaces, by address.
    inherited: std::sync::Mutex<HashMap<(Transport, SocketAddr), Inherited>>,
    upstream: http::Upstream,
    /// For re-encryption and TLS checks (`None` only if rustls could not build it).
    member_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Engine {
    pub fn new() -> Self {
        let member_tls = tls::member_client_config()
            .inspect_err(|e| tracing::error!(error = %e, "no TLS client config for members"))
            .ok();
        Self {
            runtime: tokio::sync::Mutex::new(Runtime::default()),
            inherited: std::sync::Mutex::new(HashMap::new()),
            upstream: http::upstream(),
            member_tls,
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// What the native data plane can do.
pub fn capabilities() -> Vec<String> {
    // ICMP needs raw sockets: PING monitors are refused by apply.
    lbaas::capability::all_except(&["monitor:PING", lbaas::capability::TLS_LEGACY])
}

impl Engine {
    /// Sockets received from the process this one replaces: the next apply serves them instead of
    /// binding its addresses anew (those no apply wants are closed by `drop_inherited`).
    pub fn inherit(&self, sockets: Vec<(Inherited, SocketAddr)>) {
        let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        for (socket, addr) in sockets {
            let transport = match socket {
                Inherited::Tcp(_) => Transport::Tcp,
                Inherited::Udp(_) => Transport::Udp,
            };
            inherited.insert((transport, addr), socket);
        }
    }

    /// Closes inherited sockets that no apply took.
    pub fn drop_inherited(&self) -> usize {
        let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        let n = inherited.len();
        inherited.clear();
        n
    }

    /// A copy of every listening socket, for a successor process: (udp?, address, descriptor).
    pub async fn listening_sockets(&self) -> Vec<(bool, SocketAddr, std::os::fd::OwnedFd)> {
        let rt = self.runtime.lock().await;
        rt.listeners
            .iter()
            .filter_map(|((transport, addr), l)| {
                let fd = l.fd.as_ref()?.try_clone().ok()?;
                Some((*transport == Transport::Udp, *addr, fd))
            })
            .collect()
    }

    /// Stops accepting (a successor holds the sockets now), asks open connections to finish
    /// (HTTP/1 responses say `Connection: close`, HTTP/2 connections get GOAWAY) and waits until
    /// none is open or `timeout` passes. Returns how many were still open.
    pub async fn drain(&self, timeout: Duration) -> usize {
        http::start_draining();
        let counters: Vec<Arc<Counters>> = {
            let mut rt = self.runtime.lock().await;
            rt.listeners.clear();
            rt.checkers.clear();
            rt.counters.values().cloned().collect()
        };
        let open = || {
            counters
                .iter()
                .map(|c| c.active.load(Ordering::Relaxed))
                .sum::<u64>() as usize
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        open()
    }

    /// A socket for `key`: the one a predecessor handed over, or a new one.
    fn take_or_bind(&self, key: (Transport, SocketAddr)) -> std::io::Result<Bound> {
        let inherited = self
            .inherited
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        match (key.0, inherited) {
            (Transport::Tcp, Some(Inherited::Tcp(socket))) => {
                socket.set_nonblocking(true)?;
                Ok(Bound::Tcp(TcpListener::from_std(socket)?))
            }
            (Transport::Udp, Some(Inherited::Udp(socket))) => {
                socket.set_nonblocking(true)?;
                Ok(Bound::Udp(tokio::net::UdpSocket::from_std(socket)?))
            }
            (Transport::Tcp, _) => Ok(Bound::Tcp(bind(key.1)?)),
            (Transport::Udp, _) => Ok(Bound::Udp(bind_udp(key.1)?)),
        }
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(tokio::net::UdpSocket),
}

fn rejected(what: impl Into<String>) -> DriverError {
    DriverError::Rejected(what.into())
}

fn address(ip: &str, port: u32, field: &str) -> Result<SocketAddr, DriverError> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| rejected(format!("{field}: {ip:?} is not an IP address")))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| rejected(format!("{field}: port {port} is out of range")))?;
    Ok(SocketAddr::new(ip, port))
}

fn millis(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

/// What the engine may refuse as unsupported, so the refusal keeps its words across the control
/// socket.
const UNSUPPORTED: &[&str] = &["PING health monitors"];

/// The operation an unsupported refusal names (as `DriverError::Unsupported` needs it static).
pub fn operation_name(message: &str) -> &'static str {
    UNSUPPORTED
        .iter()
        .find(|known| **known == message)
        .copied()
        .unwrap_or("this configuration")
}

fn unsupported(operation: &'static str) -> DriverError {
    DriverError::Unsupported {
        driver: "native",
        operation,
    }
}

/// The pools of a config, ready to serve.
struct Built {
    pools: HashMap<String, Arc<Pool>>,
    members: HashMap<(String, String, SocketAddr), Arc<MemberState>>,
    configs: HashMap<String, PoolConfig>,
}

/// Builds every pool, carrying over member state (same pool, id and address) and persistence
/// tables (same pool and persistence); refuses what the driver cannot do.
fn build_pools(
    rt: &Runtime,
    desired: &[LoadBalancerConfig],
    have_tls: bool,
) -> Result<Built, DriverError> {
    let mut built = Built {
        pools: HashMap::new(),
        members: HashMap::new(),
        configs: HashMap::new(),
    };
    for lb in desired {
        for p in &lb.pools {
            let what = format!("pool {}", p.id);
            let udp = p.protocol() == ListenerProtocol::Udp;
            let persistence = Persistence::from_config(p.persistence.as_ref())
                .map_err(|e| rejected(format!("{what}: {e}")))?;
            if udp && persistence.needs_http() {
                return Err(rejected(format!(
                    "{what}: cookie persistence needs HTTP, not UDP"
                )));
            }
            if udp && p.tls_enabled {
                return Err(rejected(format!("{what}: tls_enabled on a UDP pool")));
            }
            if let Some(monitor) = &p.monitor {
                if MonitorType::try_from(monitor.r#type).is_err() {
                    return Err(rejected(format!(
                        "{what}: unknown monitor type {}",
                        monitor.r#type
                    )));
                }
                match monitor.r#type() {
                    MonitorType::Ping => return Err(unsupported("PING health monitors")),
                    MonitorType::UdpConnect if !udp => {
                        return Err(rejected(format!(
                            "{what}: UDP-CONNECT monitors check UDP pools only"
                        )));
                    }
                    MonitorType::Https | MonitorType::TlsHello if udp => {
                        return Err(rejected(format!(
                            "{what}: UDP pools take UDP-CONNECT, TCP or HTTP monitors"
                        )));
                    }
                    MonitorType::Https | MonitorType::TlsHello if !have_tls => {
                        return Err(DriverError::Unavailable("no TLS client config".into()));
                    }
                    _ => {}
                }
                checks::validate(monitor).map_err(rejected)?;
            }
            if p.tls_enabled && !have_tls {
                return Err(DriverError::Unavailable("no TLS client config".into()));
            }
            let member_tls = if p.tls_enabled {
                let config = tls::pool_client_config(p.tls.as_ref())
                    .map_err(|e| rejected(format!("{what}: {e}")))?;
                Some((http::TlsKey::of(p.tls.as_ref()), config))
            } else {
                None
            };
            let h2c = !p.tls_enabled && p.tls.as_ref().is_some_and(|t| t.alpn_protocols == ["h2"]);
            if h2c && (udp || p.proxy_protocol() != lbaas::agent::v1::ProxyProtocol::None) {
                return Err(rejected(format!(
                    "{what}: HTTP/2 to members needs an HTTP pool"
                )));
            }
            let mut members = Vec::new();
            for m in &p.members {
                let addr = address(&m.address, m.port, &format!("member {}", m.id))?;
                let check_addr = address(
                    if m.monitor_address.is_empty() {
                        &m.address
                    } else {
                        &m.monitor_address
                    },
                    if m.monitor_port == 0 {
                        m.port
                    } else {
                        m.monitor_port
                    },
                    &format!("member {} monitor", m.id),
                )?;
                let key = (p.id.clone(), m.id.clone(), addr);
                let state = rt.members.get(&key).cloned().unwrap_or_else(|| {
                    Arc::new(MemberState {
                        up: AtomicBool::new(true),
                        active: AtomicUsize::new(0),
                    })
                });
                built.members.insert(key, state.clone());
                members.push(Member {
                    id: m.id.clone(),
                    addr,
                    check_addr,
                    weight: m.weight,
                    backup: m.backup,
                    admin_up: m.admin_state_up,
                    state,
                });
            }
            let old = rt.pools.get(&p.id);
            let next = old.map_or(0, |old| old.next.load(Ordering::Relaxed));
            let sticky = old
                .filter(|old| old.persistence == persistence)
                .map(|old| old.sticky.clone())
                .unwrap_or_default();
            built.pools.insert(
                p.id.clone(),
                Arc::new(Pool {
                    id: p.id.clone(),
                    algorithm: p.algorithm(),
                    members,
                    monitored: p.monitor.is_some(),
                    next: AtomicUsize::new(next),
                    persistence,
                    sticky,
                    tls: p.tls_enabled,
                    member_tls,
                    h2c,
                    proxy: p.proxy_protocol(),
                }),
            );
            built.configs.insert(p.id.clone(), p.clone());
        }
    }
    Ok(built)
}

/// A listener's route (and whether it listens on TCP or UDP), its pools taken from `pools`.
fn listener_route(
    l: &ListenerConfig,
    pools: &HashMap<String, Arc<Pool>>,
    configs: &HashMap<String, PoolConfig>,
    counters: Arc<Counters>,
) -> Result<(Transport, Route), DriverError> {
    let what = format!("listener {}", l.id);
    // A pool the listener sends to: `None` while it is disabled.
    let enabled = |id: &str| -> Option<Arc<Pool>> {
        pools
            .get(id)
            .filter(|_| configs.get(id).is_some_and(|p| p.admin_state_up))
            .cloned()
    };
    let protocol = l.protocol();
    let http = matches!(
        protocol,
        ListenerProtocol::Http | ListenerProtocol::TerminatedHttps
    );
    if l.hsts.is_some() && protocol != ListenerProtocol::TerminatedHttps {
        return Err(rejected(format!(
            "{what}: HSTS needs a TERMINATED_HTTPS listener"
        )));
    }
    if !http {
        if !l.insert_headers.is_empty() {
            return Err(rejected(format!(
                "{what}: insert_headers need an HTTP or TERMINATED_HTTPS listener"
            )));
        }
        if !l.l7_policies.is_empty() {
            return Err(rejected(format!(
                "{what}: L7 policies need an HTTP or TERMINATED_HTTPS listener"
            )));
        }
        if let Some(pool) = pools.get(&l.default_pool_id) {
            if pool.persistence.needs_http() {
                return Err(rejected(format!(
                    "{what}: pool {}: cookie persistence needs an HTTP listener",
                    pool.id
                )));
            }
            if pool.tls {
                return Err(rejected(format!(
                    "{what}: pool {}: tls_enabled needs an HTTP listener",
                    pool.id
                )));
            }
        }
    }
    let allowed: Vec<IpNet> = l
        .allowed_cidrs
        .iter()
        .map(|c| {
            c.trim()
                .parse::<IpNet>()
                .or_else(|_| c.trim().parse::<IpAddr>().map(IpNet::from))
                .map(|n| match n {
                    // v4-mapped clients are compared as IPv4.
                    IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                        Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len().saturating_sub(96))
                            .map_or(IpNet::V6(v6), IpNet::V4),
                        None => IpNet::V6(v6),
                    },
                    n => n,
                })
                .map_err(|_| rejected(format!("{what}: allowed_cidrs: {c:?} is not a CIDR")))
        })
        .collect::<Result<_, _>>()?;
    let http_front = || -> Result<Arc<http::Front>, DriverError> {
        let mut front = http::Front {
            port: u16::try_from(l.port).unwrap_or_default(),
            hsts: l
                .hsts
                .as_ref()
                .map(|h| hyper::header::HeaderValue::from_str(&lbaas::tls_options::hsts_header(h)))
                .transpose()
                .map_err(|e| rejected(format!("{what}: hsts: {e}")))?,
            ..Default::default()
        };
        // Raw values: the generated getter would skip ones this agent does not know.
        for raw in &l.insert_headers {
            match InsertHeader::try_from(*raw) {
                Ok(InsertHeader::XForwardedFor) => front.forwarded_for = true,
                Ok(InsertHeader::XForwardedPort) => front.forwarded_port = true,
                Ok(InsertHeader::XForwardedProto) => front.forwarded_proto = true,
                Ok(InsertHeader::Unspecified) | Err(_) => {
                    return Err(rejected(format!(
                        "{what}: insert_headers: unknown header {raw}"
                    )));
                }
            }
        }
        for policy in &l.l7_policies {
            let pool = |id: &str| match pools.get(id) {
                Some(_) => Ok(enabled(id)),
                None => Err(format!("redirect_pool_id {id:?} names no pool")),
            };
            let compiled =
                l7::compile(policy, pool).map_err(|e| rejected(format!("{what}: {e}")))?;
            front.policies.push(compiled);
        }
        Ok(Arc::new(front))
    };
    let (transport, front) = match protocol {
        ListenerProtocol::Tcp | ListenerProtocol::Https => (Transport::Tcp, Front::Tcp),
        ListenerProtocol::Http => (Transport::Tcp, Front::Http(http_front()?)),
        ListenerProtocol::TerminatedHttps => {
            let config = tls::server_config(
                l.default_certificate.as_ref(),
                &l.sni_certificates,
                l.tls.as_ref(),
            )
            .map_err(|e| rejected(format!("{what}: {e}")))?;
            (
                Transport::Tcp,
                Front::TerminatedHttps(http_front()?, config),
            )
        }
        ListenerProtocol::Udp => (Transport::Udp, Front::Udp),
        ListenerProtocol::Unspecified => {
            return Err(rejected(format!("{what}: no protocol")));
        }
    };
    let client_default = match transport {
        Transport::Udp => udp::DEFAULT_IDLE,
        Transport::Tcp => DEFAULT_DATA_TIMEOUT,
    };
    Ok((
        transport,
        Route {
            counters,
            pool: enabled(&l.default_pool_id),
            limit: None,
            limit_n: l.connection_limit,
            connect_timeout: millis(l.timeout_member_connect_ms, DEFAULT_CONNECT_TIMEOUT),
            data_timeout: millis(l.timeout_member_data_ms, DEFAULT_DATA_TIMEOUT),
            client_timeout: millis(l.timeout_client_data_ms, client_default),
            allowed: allowed.into(),
            front,
            listener_id: l.id.as_str().into(),
            log: None,
        },
    ))
}

#[async_trait::async_trait]
impl Driver for Engine {
    fn name(&self) -> &'static str {
        "native"
    }

    fn capabilities(&self) -> Vec<String> {
        capabilities()
    }

    async fn start(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
        let mut rt = self.runtime.lock().await;

        // Pools, with member state and persistence tables carried over.
        let Built {
            pools,
            members: members_kept,
            configs: pool_configs,
        } = build_pools(&rt, desired, self.member_tls.is_some())?;

        // Listeners: every address to serve, with its route.
        let mut wanted: HashMap<(Transport, SocketAddr), Route> = HashMap::new();
        let mut counters: HashMap<String, Arc<Counters>> = HashMap::new();
        let mut loggers: HashMap<String, Arc<access_log::Logger>> = HashMap::new();
        for lb in desired {
            if !lb.admin_state_up {
                continue;
            }
            let logger = match &lb.access_log {
                None => None,
                Some(config) => Some(match rt.loggers.get(&lb.id) {
                    Some(kept) if kept.config == *config => kept.clone(),
                    _ => Arc::new(
                        access_log::Logger::start(config)
                            .map_err(|why| rejected(format!("load balancer {}: {why}", lb.id)))?,
                    ),
                }),
            };
            if let Some(logger) = &logger {
                loggers.insert(lb.id.clone(), logger.clone());
            }
            for l in &lb.listeners {
                if !l.admin_state_up {
                    continue;
                }
                // The listener serves on the VIP and on every additional VIP.
                let addrs = std::iter::once(&lb.vip_address)
                    .chain(&lb.additional_vip_addresses)
                    .map(|vip| address(vip, l.port, &format!("listener {}", l.id)))
                    .collect::<Result<Vec<_>, _>>()?;
                let listener_counters = rt.counters.get(&l.id).cloned().unwrap_or_default();
                let (transport, mut route) =
                    listener_route(l, &pools, &pool_configs, listener_counters.clone())?;
                route.log.clone_from(&logger);
                counters.insert(l.id.clone(), listener_counters);
                for addr in addrs {
                    if wanted.insert((transport, addr), route.clone()).is_some() {
                        return Err(rejected(format!("two {transport:?} listeners on {addr}")));
                    }
                }
            }
        }
        // Bind what is new before changing anything, so a refused address changes nothing.
        let mut bound = HashMap::new();
        for &(transport, addr) in wanted.keys() {
            if rt.listeners.contains_key(&(transport, addr)) {
                continue;
            }
            let socket = self
                .take_or_bind((transport, addr))
                .map_err(|e| rejected(format!("cannot listen on {addr}: {e}")))?;
            bound.insert((transport, addr), socket);
        }
        rt.listeners.retain(|key, _| wanted.contains_key(key));
        for (key, mut route) in wanted {
            match rt.listeners.get(&key) {
                Some(listener) => {
                    let mut current = listener.route.write().unwrap_or_else(|p| p.into_inner());
                    // Keep the semaphore while the limit stays: connections holding permits
                    // keep counting.
                    route.limit = if current.limit_n == route.limit_n {
                        current.limit.clone()
                    } else {
                        limit(route.limit_n)
                    };
                    *current = route;
                }
                None => {
                    route.limit = limit(route.limit_n);
                    let route = Arc::new(RwLock::new(route));
                    use std::os::fd::AsFd as _;
                    let (task, fd) = match bound.remove(&key) {
                        Some(Bound::Tcp(socket)) => {
                            let fd = socket.as_fd().try_clone_to_owned().ok();
                            let task = tokio::spawn(accept_loop(
                                socket,
                                route.clone(),
                                self.upstream.clone(),
                            ));
                            (task, fd)
                        }
                        Some(Bound::Udp(socket)) => {
                            let fd = socket.as_fd().try_clone_to_owned().ok();
                            (tokio::spawn(udp::serve(socket, route.clone())), fd)
                        }
                        None => continue,
                    };
                    rt.listeners.insert(
                        key,
                        Listener {
                            route,
                            fd,
                            _task: AbortOnDrop(task),
                        },
                    );
                }
            }
        }

        // Health checks: one task per monitored pool, restarted when its config (members
        // included) changes; member states are shared, so health carries over.
        let monitored: HashSet<&String> = pool_configs
            .iter()
            .filter(|(_, p)| p.monitor.is_some())
            .map(|(id, _)| id)
            .collect();
        rt.checkers.retain(|id, _| monitored.contains(id));
        for id in monitored {
            let (Some(config), Some(pool)) = (pool_configs.get(id), pools.get(id)) else {
                continue;
            };
            if rt.checkers.get(id).is_some_and(|(old, _)| old == config) {
                continue;
            }
            // A re-encrypting pool's checks use its own TLS options (its ALPN, versions).
            let check_tls = pool
                .member_tls
                .as_ref()
                .map(|(_, config)| config.clone())
                .or_else(|| self.member_tls.clone());
            let task = tokio::spawn(checks::run(
                pool.clone(),
                config.monitor.clone().unwrap_or_default(),
                check_tls.map(tokio_rustls::TlsConnector::from),
            ));
            rt.checkers
                .insert(id.clone(), (config.clone(), AbortOnDrop(task)));
        }
        rt.members = members_kept;
        rt.counters = counters;
        rt.pools = pools;
        rt.loggers = loggers;
        Ok(())
    }

    async fn health(&self) -> DeviceHealth {
        let rt = self.runtime.lock().await;
        DeviceHealth {
            healthy: true,
            detail: format!("{} listeners in process", rt.listeners.len()),
        }
    }

    async fn member_health(&self) -> Result<Vec<MemberHealthStatus>, DriverError> {
        let rt = self.runtime.lock().await;
        let mut out = Vec::new();
        for pool in rt.pools.values() {
            for m in &pool.members {
                let health = if !m.admin_up {
                    MemberHealth::Maint
                } else if !pool.monitored {
                    MemberHealth::NoCheck
                } else if !m.state.up.load(Ordering::Relaxed) {
                    MemberHealth::Down
                } else if m.weight == 0 {
                    MemberHealth::Drain
                } else {
                    MemberHealth::Up
                };
                out.push(MemberHealthStatus {
                    pool_id: pool.id.clone(),
                    member_id: m.id.clone(),
                    health: health as i32,
                });
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<Vec<lbaas::agent::v1::ListenerStats>, DriverError> {
        let rt = self.runtime.lock().await;
        Ok(rt
            .counters
            .iter()
            .map(|(id, c)| lbaas::agent::v1::ListenerStats {
                listener_id: id.clone(),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
                active_connections: c.active.load(Ordering::Relaxed),
                total_connections: c.total.load(Ordering::Relaxed),
                request_errors: c.errors.load(Ordering::Relaxed),
            })
            .collect())
    }

    async fn diagnostics(&self) -> Result<Vec<lbaas::agent::v1::DiagnosticCheck>, DriverError> {
        let (addrs, checkers, pools): (Vec<(Transport, SocketAddr)>, usize, usize) = {
            let rt = self.runtime.lock().await;
            (
                rt.listeners.keys().copied().collect(),
                rt.checkers.len(),
                rt.pools.len(),
            )
        };
        let mut checks = Vec::new();
        for (transport, addr) in addrs {
            if transport == Transport::Udp {
                checks.push(lbaas::agent::v1::DiagnosticCheck {
                    name: format!("udp listener {addr}"),
                    ok: true,
                    detail: "socket bound".into(),
                });
                continue;
            }
            let accepts =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await;
            checks.push(lbaas::agent::v1::DiagnosticCheck {
                name: format!("listener {addr}"),
                ok: matches!(accepts, Ok(Ok(_))),
                detail: match accepts {
                    Ok(Ok(_)) => "accepts connections".into(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "connect timed out".into(),
                },
            });
        }
        checks.push(lbaas::agent::v1::DiagnosticCheck {
            name: "health checks".into(),
            ok: true,
            detail: format!("{checkers} of {pools} pools checked"),
        });
        Ok(checks)
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let mut rt = self.runtime.lock().await;
        *rt = Runtime::default();
        Ok(())
    }
}

fn limit(n: u32) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n as usize)))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

async fn accept_loop(socket: TcpListener, route: Arc<RwLock<Route>>, upstream: http::Upstream) {
    loop {
        let (client, peer) = match socket.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let current = route.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !allowed(&current.allowed, peer.ip()) {
            // Closed at once: no member hears of it.
            current.counters.errors.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let counters = current.counters.clone();
        counters.total.fetch_add(1, Ordering::Relaxed);
        counters.active.fetch_add(1, Ordering::Relaxed);
        let open = Open(counters.clone());
        // The slot is taken here, in accept order, not in the connection's task: tasks race, and a
        // later client must not overtake one already waiting. While the listener is full nothing
        // more is accepted (new clients wait in the backlog), as HAProxy's maxconn does.
        let permit = match &current.limit {
            Some(limit) => match limit.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => continue,
            },
            None => None,
        };
        let (route, upstream) = (route.clone(), upstream.clone());
        tokio::spawn(async move {
            let _open = open;
            let _permit = permit;
            let _ = client.set_nodelay(true);
            match &current.front {
                Front::Http(_) => {
                    let local = client.local_addr().unwrap_or(peer);
                    let io = http::Counted::new(client, counters);
                    http::serve(io, peer, local, false, false, route, upstream).await;
                }
                Front::TerminatedHttps(_, config) => {
                    let local = client.local_addr().unwrap_or(peer);
                    let io = http::Counted::new(client, counters.clone());
                    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                    match tokio::time::timeout(current.client_timeout, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            http::serve(tls, peer, local, true, h2, route, upstream).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Front::Tcp | Front::Udp => proxy(client, peer, current).await,
            }
        });
    }
}

/// Counts a connection on a member for as long as it lives.
struct Active(Arc<MemberState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts an open connection on a listener for as long as it lives.
struct Open(Arc<Counters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Proxies one TCP connection to a member (one retry on another member if the connect fails),
/// and logs it when the load balancer has an access log.
async fn proxy(client: tokio::net::TcpStream, peer: SocketAddr, route: Route) {
    let Some(log) = route.log.clone() else {
        proxy_once(client, peer, route, None).await;
        return;
    };
    let mut entry = access_log::Entry {
        listener: route.listener_id.clone(),
        client: Some(peer),
        local: client.local_addr().ok(),
        accepted: Some(std::time::SystemTime::now()),
        started: Some(std::time::Instant::now()),
        termination: "----",
        ..Default::default()
    };
    proxy_once(client, peer, route, Some(&mut entry)).await;
    log.log(&entry);
}

async fn proxy_once(
    mut client: tokio::net::TcpStream,
    peer: SocketAddr,
    route: Route,
    mut entry: Option<&mut access_log::Entry>,
) {
    let counters = route.counters.clone();
    let Some(pool) = route.pool else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = entry {
            e.termination = "SC--";
        }
        return;
    };
    if let Some(e) = entry.as_deref_mut() {
        e.pool = Some(pool.id.clone());
    }
    // One retry on another member when a connect fails, as HAProxy's redispatch does.
    let mut tried: Option<SocketAddr> = None;
    for _ in 0..2 {
        let Some(member) = balance::pick_persistent(&pool, peer.ip().to_canonical(), tried) else {
            break;
        };
        tried = Some(member.addr);
        member.state.active.fetch_add(1, Ordering::Relaxed);
        let active = Active(member.state.clone());
        let connected = tokio::time::timeout(
            route.connect_timeout,
            tokio::net::TcpStream::connect(member.addr),
        )
        .await;
        let Ok(Ok(mut server)) = connected else {
            drop(active);
            continue;
        };
        let _ = server.set_nodelay(true);
        if pool.proxy != lbaas::agent::v1::ProxyProtocol::None {
            use tokio::io::AsyncWriteExt as _;
            let local = client.local_addr().unwrap_or(peer);
            let header = proxy_header::header(pool.proxy, peer, local);
            if server.write_all(&header).await.is_err() {
                drop(active);
                continue;
            }
        }
        let idle = route.client_timeout.min(route.data_timeout);
        let (sent, received) = relay(&mut client, &mut server, idle).await;
        counters.bytes_in.fetch_add(sent, Ordering::Relaxed);
        counters.bytes_out.fetch_add(received, Ordering::Relaxed);
        drop(active);
        if let Some(e) = entry {
            e.member = Some(member.id.clone());
            (e.bytes_in, e.bytes_out) = (sent, received);
        }
        return;
    }
    // No member could take it.
    counters.errors.fetch_add(1, Ordering::Relaxed);
    if let Some(e) = entry {
        e.termination = "SC--";
    }
}

/// Copies both ways until both sides have closed, one fails, or nothing has moved either way for
/// `idle` (the shorter of the listener's client and member data timeouts, as HAProxy closes a
/// silent TCP session when either expires). Returns the bytes sent to the member and back.
async fn relay(
    client: &mut tokio::net::TcpStream,
    server: &mut tokio::net::TcpStream,
    idle: Duration,
) -> (u64, u64) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let (mut up, mut down) = (0u64, 0u64);
    let (mut up_buf, mut down_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_open, mut server_open) = (true, true);
    while client_open || server_open {
        tokio::select! {
            read = client_read.read(&mut up_buf), if client_open => match read {
                Ok(0) => {
                    client_open = false;
                    let _ = server_write.shutdown().await;
                }
                Ok(n) => {
                    if server_write.write_all(&up_buf[..n]).await.is_err() {
                        break;
                    }
                    up += n as u64;
                }
                Err(_) => break,
            },
            read = server_read.read(&mut down_buf), if server_open => match read {
                Ok(0) => {
                    server_open = false;
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    if client_write.write_all(&down_buf[..n]).await.is_err() {
                        break;
                    }
                    down += n as u64;
                }
                Err(_) => break,
            },
            () = tokio::time::sleep(idle) => break,
        }
    }
    (up, down)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::{collections::BTreeMap, convert::Infallible};

    use http_body_util::{BodyExt as _, Full};
    use hyper::{
        Request, Response,
        body::{Bytes, Incoming},
    };
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use lbaas::agent::v1::{
        Algorithm, L7Action, L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType, MemberConfig,
        MonitorConfig, PersistenceType, SessionPersistence, TlsCertificate,
    };

    use super::*;

    pub fn member(id: &str, addr: SocketAddr) -> MemberConfig {
        MemberConfig {
            id: id.into(),
            address: addr.ip().to_string(),
            port: u32::from(addr.port()),
            weight: 1,
            admin_state_up: true,
            backup: false,
            ..Default::default()
        }
    }

    pub fn pool_config(
        id: &str,
        protocol: ListenerProtocol,
        members: Vec<MemberConfig>,
        persistence: PersistenceType,
    ) -> PoolConfig {
        PoolConfig {
            id: id.into(),
            protocol: protocol as i32,
            algorithm: Algorithm::RoundRobin as i32,
            admin_state_up: true,
            members,
            monitor: None,
            persistence: Some(SessionPersistence {
                r#type: persistence as i32,
                cookie_name: "JSESSIONID".into(),
            }),
            tls_enabled: false,
            proxy_protocol: 0,
            tls: None,
        }
    }

    pub fn listener_config(protocol: ListenerProtocol, pool: &str) -> ListenerConfig {
        ListenerConfig {
            id: "l".into(),
            protocol: protocol as i32,
            port: 80,
            default_pool_id: pool.into(),
            admin_state_up: true,
            ..Default::default()
        }
    }

    /// The route apply would build for this listener over these pools.
    pub fn route(listener: &ListenerConfig, pools: Vec<PoolConfig>) -> Route {
        let lb = LoadBalancerConfig {
            pools,
            ..Default::default()
        };
        let built = build_pools(&Runtime::default(), &[lb], true).unwrap();
        let (_, route) =
            listener_route(listener, &built.pools, &built.configs, Arc::default()).unwrap();
        route
    }

    /// Serves a route on 127.0.0.1:0 as a listener does.
    pub async fn serve(route: Route) -> (SocketAddr, Arc<RwLock<Route>>, AbortOnDrop) {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let route = Arc::new(RwLock::new(route));
        let upstream = http::upstream();
        let task = tokio::spawn(accept_loop(socket, route.clone(), upstream));
        (addr, route, AbortOnDrop(task))
    }

    /// An HTTP member: answers its name, echoes the X-Forwarded-* and Cookie headers it got as
    /// `seen-*`, and sets JSESSIONID=<name>-<n> when the request carries none.
    pub async fn http_member(
        name: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> (SocketAddr, Arc<AtomicUsize>, AbortOnDrop) {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = socket.accept().await else {
                    continue;
                };
                let hits = counted.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let n = hits.fetch_add(1, Ordering::Relaxed);
                        let mut resp = Response::new(Full::new(Bytes::from(name)));
                        for (h, seen) in [
                            ("x-forwarded-for", "seen-xff"),
                            ("x-forwarded-port", "seen-xfport"),
                            ("x-forwarded-proto", "seen-xfproto"),
                            ("cookie", "seen-cookie"),
                        ] {
                            if let Some(v) = req.headers().get(h) {
                                resp.headers_mut().insert(seen, v.clone());
                            }
                        }
                        if l7::cookie(req.headers(), "JSESSIONID").is_none() {
                            resp.headers_mut().insert(
                                "set-cookie",
                                format!("JSESSIONID={name}-{n}; Path=/").parse().unwrap(),
                            );
                        }
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(config) => {
                            if let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                            {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        (addr, hits, AbortOnDrop(task))
    }

    #[derive(Debug)]
    struct Got {
        status: u16,
        headers: hyper::HeaderMap,
        body: String,
    }

    impl Got {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }
    }

    async fn send<I>(io: I, path: &str, headers: &[(&str, &str)]) -> Got
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder().uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request = request.header("host", "lb.example.net");
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = sender
            .send_request(request.body(http_body_util::Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Got {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
        send(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            path,
            headers,
        )
        .await
    }

    fn rule(r#type: L7RuleType, compare: L7CompareType, value: &str) -> L7RuleConfig {
        L7RuleConfig {
            id: format!("{type:?}-{value}"),
            r#type: r#type as i32,
            compare_type: compare as i32,
            key: String::new(),
            value: value.into(),
            invert: false,
        }
    }

    #[tokio::test]
    async fn http_listener_policies_headers_and_cookie_persistence() {
        let (a1, _, _m1) = http_member("a1", None).await;
        let (a2, _, _m2) = http_member("a2", None).await;
        let (b1, _, _m3) = http_member("b1", None).await;
        let mut listener = listener_config(ListenerProtocol::Http, "A");
        listener.insert_headers = vec![
            InsertHeader::XForwardedFor as i32,
            InsertHeader::XForwardedPort as i32,
            InsertHeader::XForwardedProto as i32,
        ];
        listener.l7_policies = vec![
            L7PolicyConfig {
                id: "reject-admin".into(),
                action: L7Action::Reject as i32,
                rules: vec![rule(L7RuleType::Path, L7CompareType::StartsWith, "/admin")],
                ..Default::default()
            },
            L7PolicyConfig {
                id: "moved".into(),
                action: L7Action::RedirectPrefix as i32,
                redirect_prefix: "https://new.example/".into(),
                redirect_http_code: 301,
                rules: vec![rule(
                    L7RuleType::HostName,
                    L7CompareType::EqualTo,
                    "old.example",
                )],
                ..Default::default()
            },
            L7PolicyConfig {
                id: "url".into(),
                action: L7Action::RedirectToUrl as i32,
                redirect_url: "https://status.example/".into(),
                rules: vec![rule(L7RuleType::FileType, L7CompareType::EqualTo, "php")],
                ..Default::default()
            },
            L7PolicyConfig {
                id: "to-b".into(),
                action: L7Action::RedirectToPool as i32,
                redirect_pool_id: "B".into(),
                rules: vec![rule(L7RuleType::Path, L7CompareType::StartsWith, "/b/")],
                ..Default::default()
            },
        ];
        let pools = vec![
            pool_config(
                "A",
                ListenerProtocol::Http,
                vec![member("a1", a1), member("a2", a2)],
                PersistenceType::HttpCookie,
            ),
            pool_config(
                "B",
                ListenerProtocol::Http,
                vec![member("b1", b1)],
                PersistenceType::None,
            ),
        ];
        let (addr, _route, _task) = serve(route(&listener, pools)).await;

        // Headers: the client's address appended, the listener's port and protocol.
        let got = get(addr, "/", &[("x-forwarded-for", "192.0.2.7")]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("seen-xff"), Some("192.0.2.7, 127.0.0.1"));
        assert_eq!(got.header("seen-xfport"), Some("80"));
        assert_eq!(got.header("seen-xfproto"), Some("http"));
        // No cookie: one is set naming the member that served.
        let first = got.body.clone();
        let set: Vec<&str> = got
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert!(
            set.contains(&format!("SRV={first}; path=/").as_str()),
            "{set:?}"
        );
        // With the cookie, the same member every time (round robin would alternate); the member
        // never sees SRV; no new cookie.
        for _ in 0..4 {
            let got = get(
                addr,
                "/",
                &[("cookie", &format!("theme=dark; SRV={first}"))],
            )
            .await;
            assert_eq!(got.body, first);
            assert_eq!(got.header("seen-cookie"), Some("theme=dark"));
            assert!(
                got.headers
                    .get_all("set-cookie")
                    .iter()
                    .all(|c| !c.to_str().unwrap().starts_with("SRV="))
            );
        }
        let other = if first == "a1" { "a2" } else { "a1" };
        let got = get(addr, "/", &[("cookie", &format!("SRV={other}"))]).await;
        assert_eq!(got.body, other);
        // A cookie naming no member: balanced, and a fresh cookie.
        let got = get(addr, "/", &[("cookie", "SRV=gone")]).await;
        let srv = format!("SRV={}; path=/", got.body);
        assert!(
            got.headers
                .get_all("set-cookie")
                .iter()
                .any(|c| *c == srv.as_str())
        );

        // L7: first matching policy decides.
        assert_eq!(get(addr, "/admin/users", &[]).await.status, 403);
        let got = get(addr, "/x/y?z=1", &[("host", "OLD.example:80")]).await;
        assert_eq!(got.status, 301);
        assert_eq!(got.header("location"), Some("https://new.example/x/y?z=1"));
        let got = get(addr, "/index.php", &[]).await;
        assert_eq!(got.status, 302);
        assert_eq!(got.header("location"), Some("https://status.example/"));
        for _ in 0..3 {
            assert_eq!(get(addr, "/b/thing", &[]).await.body, "b1");
        }
        assert_ne!(get(addr, "/c/thing", &[]).await.body, "b1");
    }

    #[tokio::test]
    async fn app_cookie_persistence_follows_the_member_that_set_it() {
        let (a1, _, _m1) = http_member("a1", None).await;
        let (a2, _, _m2) = http_member("a2", None).await;
        let listener = listener_config(ListenerProtocol::Http, "A");
        let pools = vec![pool_config(
            "A",
            ListenerProtocol::Http,
            vec![member("a1", a1), member("a2", a2)],
            PersistenceType::AppCookie,
        )];
        let (addr, route, _task) = serve(route(&listener, pools.clone())).await;
        let got = get(addr, "/", &[]).await;
        let owner = got.body.clone();
        let cookie = got
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            cookie.starts_with(&format!("JSESSIONID={owner}-")),
            "{cookie}"
        );
        for _ in 0..4 {
            assert_eq!(get(addr, "/", &[("cookie", &cookie)]).await.body, owner);
        }
        // Sessions the table does not know are balanced, then kept where they landed.
        let mut seen = BTreeMap::new();
        for i in 0..4 {
            let cookie = format!("JSESSIONID=unknown-{i}");
            let landed = get(addr, "/", &[("cookie", &cookie)]).await.body;
            assert_eq!(get(addr, "/", &[("cookie", &cookie)]).await.body, landed);
            *seen.entry(landed).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        // The owner goes down: the session moves.
        {
            let current = route.read().unwrap();
            let pool = current.pool.as_ref().unwrap();
            let m = pool.members.iter().find(|m| m.id == owner).unwrap();
            m.state.up.store(false, Ordering::Relaxed);
        }
        let moved = get(addr, "/", &[("cookie", &cookie)]).await.body;
        assert_ne!(moved, owner);
        assert_eq!(get(addr, "/", &[("cookie", &cookie)]).await.body, moved);
    }

    /// TLS client config for tests: any certificate, the given ALPN.
    fn client_tls(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut config = (*tls::member_client_config().unwrap()).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn tls_connect(
        addr: SocketAddr,
        sni: &str,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        client_tls(alpn)
            .connect(
                rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
                tcp,
            )
            .await
            .unwrap()
    }

    fn cert_der(cert: &TlsCertificate) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(cert.certificate_pem.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn terminated_https_to_a_tls_pool() {
        // The member serves TLS with a self-signed certificate: re-encryption does not verify it.
        let member_cert = tls::tests::cert("member", &["member.internal"]);
        let member_tls = tls::server_config(Some(&member_cert), &[], None).unwrap();
        let (m1, hits, _m1) = http_member("secure", Some(member_tls)).await;
        let default = tls::tests::cert("default", &["lb.example.net"]);
        let shop = tls::tests::cert("shop", &["*.shop.example"]);
        let mut listener = listener_config(ListenerProtocol::TerminatedHttps, "S");
        listener.port = 443;
        listener.insert_headers = vec![
            InsertHeader::XForwardedProto as i32,
            InsertHeader::XForwardedPort as i32,
        ];
        listener.default_certificate = Some(default.clone());
        listener.sni_certificates = vec![shop.clone()];
        let mut pool = pool_config(
            "S",
            ListenerProtocol::Http,
            vec![member("m1", m1)],
            PersistenceType::None,
        );
        pool.tls_enabled = true;
        let (addr, route_lock, _task) = serve(route(&listener, vec![pool.clone()])).await;

        let stream = tls_connect(addr, "www.shop.example", &[b"h2", b"http/1.1"]).await;
        assert_eq!(
            stream.get_ref().1.peer_certificates().unwrap()[0],
            cert_der(&shop)
        );
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // HTTP/2 over TLS.
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let response = sender
            .send_request(
                Request::builder()
                    .uri("https://www.shop.example/")
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers().get("seen-xfproto").unwrap(), "https");
        assert_eq!(response.headers().get("seen-xfport").unwrap(), "443");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"secure");

        // HTTP/1.1, another name: the default certificate.
        let stream = tls_connect(addr, "other.example", &[b"http/1.1"]).await;
        assert_eq!(
            stream.get_ref().1.peer_certificates().unwrap()[0],
            cert_der(&default)
        );
        let got = send(stream, "/", &[]).await;
        assert_eq!((got.status, got.body.as_str()), (200, "secure"));
        assert_eq!(hits.load(Ordering::Relaxed), 2);

        // New certificates reach new connections on the same socket (what apply does).
        let renewed = tls::tests::cert("renewed", &["lb.example.net"]);
        listener.default_certificate = Some(renewed.clone());
        *route_lock.write().unwrap() = route(&listener, vec![pool]);
        let stream = tls_connect(addr, "lb.example.net", &[b"http/1.1"]).await;
        assert_eq!(
            stream.get_ref().1.peer_certificates().unwrap()[0],
            cert_der(&renewed)
        );
    }

    #[tokio::test]
    async fn clients_outside_allowed_cidrs_are_closed_at_once() {
        let (m1, hits, _m1) = http_member("m1", None).await;
        let mut listener = listener_config(ListenerProtocol::Tcp, "P");
        listener.allowed_cidrs = vec!["10.0.0.0/8".into(), "192.0.2.1".into()];
        let pools = vec![pool_config(
            "P",
            ListenerProtocol::Tcp,
            vec![member("m1", m1)],
            PersistenceType::SourceIp,
        )];
        let (addr, route_lock, _task) = serve(route(&listener, pools.clone())).await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        use tokio::io::AsyncReadExt as _;
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(hits.load(Ordering::Relaxed), 0);
        let counters = route_lock.read().unwrap().counters.clone();
        assert_eq!(counters.total.load(Ordering::Relaxed), 0);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 1);
        // Allowed: proxied (TCP, source-IP persistence).
        listener.allowed_cidrs = vec!["127.0.0.0/8".into()];
        *route_lock.write().unwrap() = route(&listener, pools.clone());
        assert_eq!(get(addr, "/", &[]).await.body, "m1");
        // IPv4-mapped networks hold IPv4 clients; a bare address is a host.
        listener.allowed_cidrs = vec!["::ffff:127.0.0.0/104".into(), "192.0.2.1".into()];
        let mapped = route(&listener, pools);
        assert!(allowed(&mapped.allowed, "127.0.0.1".parse().unwrap()));
        assert!(allowed(
            &mapped.allowed,
            "::ffff:127.0.0.1".parse().unwrap()
        ));
        assert!(allowed(&mapped.allowed, "192.0.2.1".parse().unwrap()));
        assert!(!allowed(&mapped.allowed, "192.0.2.2".parse().unwrap()));
    }

    fn lb(listeners: Vec<ListenerConfig>, pools: Vec<PoolConfig>) -> LoadBalancerConfig {
        LoadBalancerConfig {
            id: "lb".into(),
            vip_address: "127.0.0.1".into(),
            admin_state_up: true,
            listeners,
            pools,
            ..Default::default()
        }
    }

    /// A port free on 127.0.0.1 for both TCP and UDP just now (the driver binds what the config
    /// names, so the test asks the kernel for one first).
    fn free_port() -> u16 {
        loop {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }

    /// Through `apply`: a TERMINATED_HTTPS and a UDP listener on one port; a second apply changes
    /// the certificate and the UDP pool's members behind the same sockets, counters carrying on.
    #[tokio::test]
    async fn applies_swap_certificates_and_udp_routes_in_place() {
        let driver = Engine::new();
        let (web, _, _web) = http_member("web", None).await;
        let echo_a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (ua, ub) = (echo_a.local_addr().unwrap(), echo_b.local_addr().unwrap());
        let mut echoes = Vec::new();
        for (name, socket) in [("a", echo_a), ("b", echo_b)] {
            echoes.push(AbortOnDrop(tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    let mut reply = name.as_bytes().to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = socket.send_to(&reply, from).await;
                }
            })));
        }
        let port = free_port();
        let first = tls::tests::cert("first", &["lb.example.net"]);
        let config = |cert: &TlsCertificate, udp_member: SocketAddr| {
            let mut https = listener_config(ListenerProtocol::TerminatedHttps, "H");
            https.id = "https".into();
            https.port = u32::from(port);
            https.default_certificate = Some(cert.clone());
            let mut udp = listener_config(ListenerProtocol::Udp, "U");
            udp.id = "udp".into();
            udp.port = u32::from(port);
            lb(
                vec![https, udp],
                vec![
                    pool_config(
                        "H",
                        ListenerProtocol::Http,
                        vec![member("web", web)],
                        PersistenceType::None,
                    ),
                    pool_config(
                        "U",
                        ListenerProtocol::Udp,
                        vec![member("u", udp_member)],
                        PersistenceType::SourceIp,
                    ),
                ],
            )
        };
        driver.apply(&[config(&first, ua)]).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = tls_connect(addr, "lb.example.net", &[b"http/1.1"]).await;
        assert_eq!(
            stream.get_ref().1.peer_certificates().unwrap()[0],
            cert_der(&first)
        );
        assert_eq!(send(stream, "/", &[]).await.body, "web");
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = async |text: &str| {
            client.send_to(text.as_bytes(), addr).await.unwrap();
            let mut buf = [0u8; 1500];
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(ask("1").await, "a1");

        let second = tls::tests::cert("second", &["lb.example.net"]);
        driver.apply(&[config(&second, ub)]).await.unwrap();
        let stream = tls_connect(addr, "lb.example.net", &[b"http/1.1"]).await;
        assert_eq!(
            stream.get_ref().1.peer_certificates().unwrap()[0],
            cert_der(&second)
        );
        // The UDP member left the pool: the client's session moves to the new one.
        assert_eq!(ask("2").await, "b2");
        let stats: BTreeMap<String, (u64, u64)> = driver
            .stats()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.listener_id, (s.total_connections, s.active_connections)))
            .collect();
        assert_eq!(stats["udp"], (2, 1));
        assert_eq!(stats["https"].0, 2);
        let diagnostics = driver.diagnostics().await.unwrap();
        assert!(diagnostics.iter().all(|c| c.ok), "{diagnostics:?}");
        driver.stop().await.unwrap();
    }

    /// Everything the driver cannot do is refused before anything is bound.
    #[tokio::test]
    async fn apply_refuses_what_it_cannot_do() {
        let driver = Engine::new();
        let m = member("m", "127.0.0.1:9".parse().unwrap());
        let http_pool = || {
            pool_config(
                "P",
                ListenerProtocol::Http,
                vec![m.clone()],
                PersistenceType::None,
            )
        };
        let mut ping = http_pool();
        ping.monitor = Some(MonitorConfig {
            r#type: MonitorType::Ping as i32,
            ..Default::default()
        });
        let unsupported = driver
            .apply(&[lb(
                vec![listener_config(ListenerProtocol::Http, "P")],
                vec![ping],
            )])
            .await;
        assert!(
            matches!(unsupported, Err(DriverError::Unsupported { .. })),
            "{unsupported:?}"
        );
        assert!(!driver.capabilities().iter().any(|c| c == "monitor:PING"));
        for c in [
            "protocol:UDP",
            "protocol:TERMINATED_HTTPS",
            "l7",
            "allowed_cidrs",
            "insert_headers",
            "pool_tls",
            "persistence:SOURCE_IP",
            "persistence:HTTP_COOKIE",
            "persistence:APP_COOKIE",
            "monitor:HTTPS",
            "monitor:TLS_HELLO",
        ] {
            assert!(driver.capabilities().iter().any(|have| have == c), "{c}");
        }

        let mut cases: Vec<(&str, LoadBalancerConfig)> = Vec::new();
        let mut l = listener_config(ListenerProtocol::Http, "P");
        l.l7_policies = vec![L7PolicyConfig {
            id: "bad".into(),
            action: L7Action::Reject as i32,
            rules: vec![rule(L7RuleType::Path, L7CompareType::Regex, "([")],
            ..Default::default()
        }];
        cases.push(("bad regex", lb(vec![l], vec![http_pool()])));
        let l = listener_config(ListenerProtocol::TerminatedHttps, "P");
        cases.push(("no certificate", lb(vec![l], vec![http_pool()])));
        let mut l = listener_config(ListenerProtocol::TerminatedHttps, "P");
        let mut bad = tls::tests::cert("bad", &["x.example"]);
        bad.private_key_pem = "garbage".into();
        l.default_certificate = Some(bad);
        cases.push(("bad pem", lb(vec![l], vec![http_pool()])));
        let mut l = listener_config(ListenerProtocol::Tcp, "P");
        l.insert_headers = vec![InsertHeader::XForwardedFor as i32];
        cases.push(("headers on TCP", lb(vec![l], vec![http_pool()])));
        let cookie_pool = pool_config(
            "P",
            ListenerProtocol::Tcp,
            vec![m.clone()],
            PersistenceType::HttpCookie,
        );
        cases.push((
            "cookies on TCP",
            lb(
                vec![listener_config(ListenerProtocol::Tcp, "P")],
                vec![cookie_pool],
            ),
        ));
        let mut udp_monitored = pool_config(
            "P",
            ListenerProtocol::Udp,
            vec![m.clone()],
            PersistenceType::None,
        );
        udp_monitored.monitor = Some(MonitorConfig {
            r#type: MonitorType::Https as i32,
            ..Default::default()
        });
        cases.push((
            "HTTPS monitor on UDP",
            lb(
                vec![listener_config(ListenerProtocol::Udp, "P")],
                vec![udp_monitored],
            ),
        ));
        let mut l = listener_config(ListenerProtocol::Http, "P");
        l.allowed_cidrs = vec!["10.0.0.0/33".into()];
        cases.push(("bad cidr", lb(vec![l], vec![http_pool()])));
        let mut l = listener_config(ListenerProtocol::Http, "P");
        l.l7_policies = vec![L7PolicyConfig {
            id: "to-nowhere".into(),
            action: L7Action::RedirectToPool as i32,
            redirect_pool_id: "nope".into(),
            ..Default::default()
        }];
        cases.push(("unknown pool", lb(vec![l], vec![http_pool()])));
        for (what, config) in cases {
            let result = driver.apply(&[config]).await;
            assert!(
                matches!(result, Err(DriverError::Rejected(_))),
                "{what}: {result:?}"
            );
        }
        assert!(driver.runtime.lock().await.listeners.is_empty());
    }

    #[test]
    fn persistence_tables_outlive_applies_while_the_pool_stays() {
        let m = member("m", "127.0.0.1:9".parse().unwrap());
        let config = |persistence| {
            lb(
                vec![],
                vec![pool_config(
                    "P",
                    ListenerProtocol::Http,
                    vec![m.clone()],
                    persistence,
                )],
            )
        };
        let mut rt = Runtime::default();
        let first = build_pools(&rt, &[config(PersistenceType::SourceIp)], true).unwrap();
        first.pools["P"].sticky.put("10.0.0.1", "m");
        rt.pools = first.pools;
        rt.members = first.members;
        let second = build_pools(&rt, &[config(PersistenceType::SourceIp)], true).unwrap();
        assert!(Arc::ptr_eq(
            &rt.pools["P"].sticky,
            &second.pools["P"].sticky
        ));
        assert_eq!(
            second.pools["P"].sticky.get("10.0.0.1").as_deref(),
            Some("m")
        );
        assert!(Arc::ptr_eq(
            &rt.pools["P"].members[0].state,
            &second.pools["P"].members[0].state
        ));
        // Another persistence type starts afresh.
        let third = build_pools(&rt, &[config(PersistenceType::AppCookie)], true).unwrap();
        assert_eq!(third.pools["P"].sticky.len(), 0);
    }
}
