//! The native driver: a data plane inside the agent process, needing nothing installed. Each
//! listener is a tokio socket on VIP:port. TCP and HTTPS (passthrough) listeners proxy each
//! connection to a member; HTTP listeners are HTTP/1.1 and HTTP/2 (cleartext) servers (hyper) that
//! balance each request (`http.rs`). Members are chosen by ROUND_ROBIN (weighted),
//! LEAST_CONNECTIONS or SOURCE_IP, with backup members used only when no primary is usable; TCP or
//! HTTP health checks; a connection limit (excess connections wait, as HAProxy's maxconn queues
//! them); connect and member data timeouts. TERMINATED_HTTPS and UDP listeners are refused with a
//! clear error (not supported by this driver yet).
//!
//! An apply changes routes in place: listeners that stay keep their socket, pools are swapped
//! behind it, member health and active-connection counts carry over, and connections already
//! proxied run to completion even when their listener goes away. Nothing restarts.

mod balance;
mod checks;
mod http;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use lbaas::{
    agent::v1::{
        ListenerProtocol, LoadBalancerConfig, MemberHealth, MemberHealthStatus, PoolConfig,
    },
    server::AbortOnDrop,
};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{DeviceHealth, Driver, DriverError, DriverOptions};

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

/// Where a listener sends its connections now.
#[derive(Clone)]
struct Route {
    counters: Arc<Counters>,
    pool: Option<Arc<Pool>>,
    limit: Option<Arc<Semaphore>>,
    limit_n: u32,
    connect_timeout: Duration,
    data_timeout: Duration,
    /// HTTP listeners balance each request; the others each connection.
    http: bool,
}

struct Listener {
    route: Arc<RwLock<Route>>,
    _accept: AbortOnDrop,
}

#[derive(Default)]
struct Runtime {
    listeners: HashMap<SocketAddr, Listener>,
    members: HashMap<(String, String, SocketAddr), Arc<MemberState>>,
    checkers: HashMap<String, (PoolConfig, AbortOnDrop)>,
    pools: HashMap<String, Arc<Pool>>,
    /// By listener id.
    counters: HashMap<String, Arc<Counters>>,
}

pub struct NativeDriver {
    runtime: tokio::sync::Mutex<Runtime>,
    upstream: http::Upstream,
}

impl NativeDriver {
    pub fn new(_options: &DriverOptions) -> Self {
        Self {
            runtime: tokio::sync::Mutex::new(Runtime::default()),
            upstream: http::upstream(),
        }
    }
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

#[async_trait::async_trait]
impl Driver for NativeDriver {
    fn name(&self) -> &'static str {
        "native"
    }

    fn capabilities(&self) -> Vec<String> {
        lbaas::capability::all_except(&[
            "protocol:UDP",
            "protocol:TERMINATED_HTTPS",
            "monitor:PING",
            "l7",
            "allowed_cidrs",
            "insert_headers",
            "pool_tls",
            "persistence:SOURCE_IP",
            "persistence:HTTP_COOKIE",
            "persistence:APP_COOKIE",
        ])
    }

    async fn start(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
        let mut rt = self.runtime.lock().await;

        // Pools, with member state carried over.
        let mut pools: HashMap<String, Arc<Pool>> = HashMap::new();
        let mut members_kept = HashMap::new();
        let mut pool_configs: HashMap<String, PoolConfig> = HashMap::new();
        for lb in desired {
            for p in &lb.pools {
                let mut members = Vec::new();
                for m in &p.members {
                    let addr = address(&m.address, m.port, &format!("member {}", m.id))?;
                    let key = (p.id.clone(), m.id.clone(), addr);
                    let state = rt.members.get(&key).cloned().unwrap_or_else(|| {
                        Arc::new(MemberState {
                            up: AtomicBool::new(true),
                            active: AtomicUsize::new(0),
                        })
                    });
                    members_kept.insert(key, state.clone());
                    members.push(Member {
                        id: m.id.clone(),
                        addr,
                        weight: m.weight,
                        backup: m.backup,
                        admin_up: m.admin_state_up,
                        state,
                    });
                }
                if let Some(monitor) = &p.monitor {
                    checks::validate(monitor).map_err(rejected)?;
                }
                let next = rt
                    .pools
                    .get(&p.id)
                    .map_or(0, |old| old.next.load(Ordering::Relaxed));
                pools.insert(
                    p.id.clone(),
                    Arc::new(Pool {
                        id: p.id.clone(),
                        algorithm: p.algorithm(),
                        members,
                        monitored: p.monitor.is_some(),
                        next: AtomicUsize::new(next),
                    }),
                );
                pool_configs.insert(p.id.clone(), p.clone());
            }
        }

        // Listeners: every address to serve, with its route.
        let mut wanted: HashMap<SocketAddr, Route> = HashMap::new();
        let mut counters: HashMap<String, Arc<Counters>> = HashMap::new();
        for lb in desired {
            if !lb.admin_state_up {
                continue;
            }
            for l in &lb.listeners {
                if !l.admin_state_up {
                    continue;
                }
                let addr = address(&lb.vip_address, l.port, &format!("listener {}", l.id))?;
                let http = match l.protocol() {
                    ListenerProtocol::Http => true,
                    ListenerProtocol::Tcp | ListenerProtocol::Https => false,
                    ListenerProtocol::TerminatedHttps => {
                        return Err(DriverError::Unsupported {
                            driver: "native",
                            operation: "TERMINATED_HTTPS listeners",
                        });
                    }
                    ListenerProtocol::Udp => {
                        return Err(DriverError::Unsupported {
                            driver: "native",
                            operation: "UDP listeners",
                        });
                    }
                    ListenerProtocol::Unspecified => {
                        return Err(rejected(format!("listener {}: no protocol", l.id)));
                    }
                };
                let pool = pools
                    .get(&l.default_pool_id)
                    .filter(|_| {
                        pool_configs
                            .get(&l.default_pool_id)
                            .is_some_and(|p| p.admin_state_up)
                    })
                    .cloned();
                let limit_n = l.connection_limit;
                let listener_counters = rt.counters.get(&l.id).cloned().unwrap_or_default();
                counters.insert(l.id.clone(), listener_counters.clone());
                if wanted
                    .insert(
                        addr,
                        Route {
                            counters: listener_counters,
                            pool,
                            limit: None,
                            limit_n,
                            connect_timeout: millis(
                                l.timeout_member_connect_ms,
                                DEFAULT_CONNECT_TIMEOUT,
                            ),
                            data_timeout: millis(l.timeout_member_data_ms, DEFAULT_DATA_TIMEOUT),
                            http,
                        },
                    )
                    .is_some()
                {
                    return Err(rejected(format!("two listeners on {addr}")));
                }
            }
        }
        // Bind what is new before changing anything, so a refused address changes nothing.
        let mut bound = HashMap::new();
        for addr in wanted.keys() {
            if rt.listeners.contains_key(addr) {
                continue;
            }
            let socket =
                bind(*addr).map_err(|e| rejected(format!("cannot listen on {addr}: {e}")))?;
            bound.insert(*addr, socket);
        }
        rt.listeners.retain(|addr, _| wanted.contains_key(addr));
        for (addr, mut route) in wanted {
            match rt.listeners.get(&addr) {
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
                    let Some(socket) = bound.remove(&addr) else {
                        continue;
                    };
                    route.limit = limit(route.limit_n);
                    let route = Arc::new(RwLock::new(route));
                    let accept =
                        tokio::spawn(accept_loop(socket, route.clone(), self.upstream.clone()));
                    rt.listeners.insert(
                        addr,
                        Listener {
                            route,
                            _accept: AbortOnDrop(accept),
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
            let task = tokio::spawn(checks::run(
                pool.clone(),
                config.monitor.clone().unwrap_or_default(),
            ));
            rt.checkers
                .insert(id.clone(), (config.clone(), AbortOnDrop(task)));
        }
        rt.members = members_kept;
        rt.counters = counters;
        rt.pools = pools;
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
        let (addrs, checkers, pools): (Vec<SocketAddr>, usize, usize) = {
            let rt = self.runtime.lock().await;
            (
                rt.listeners.keys().copied().collect(),
                rt.checkers.len(),
                rt.pools.len(),
            )
        };
        let mut checks = Vec::new();
        for addr in addrs {
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
        let (route, upstream) = (route.clone(), upstream.clone());
        tokio::spawn(async move {
            let counters = current.counters.clone();
            counters.total.fetch_add(1, Ordering::Relaxed);
            counters.active.fetch_add(1, Ordering::Relaxed);
            let _open = Open(counters.clone());
            let _permit = match &current.limit {
                Some(limit) => match limit.clone().acquire_owned().await {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                None => None,
            };
            let _ = client.set_nodelay(true);
            if current.http {
                http::serve(client, peer, route, counters, upstream).await;
            } else {
                proxy(client, peer, current).await;
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

/// Proxies one TCP connection to a member (one retry on another member if the connect fails).
async fn proxy(mut client: tokio::net::TcpStream, peer: SocketAddr, route: Route) {
    let counters = route.counters.clone();
    let Some(pool) = route.pool else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // One retry on another member when a connect fails, as HAProxy's redispatch does.
    let mut tried: Option<SocketAddr> = None;
    for _ in 0..2 {
        let Some(member) = balance::pick(&pool, peer.ip(), tried) else {
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
        if let Ok((sent, received)) = tokio::io::copy_bidirectional(&mut client, &mut server).await
        {
            counters.bytes_in.fetch_add(sent, Ordering::Relaxed);
            counters.bytes_out.fetch_add(received, Ordering::Relaxed);
        }
        drop(active);
        return;
    }
    // No member could take it.
    counters.errors.fetch_add(1, Ordering::Relaxed);
}
