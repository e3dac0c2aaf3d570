//! UDP listeners of the native driver. One socket on VIP:port receives every client's datagrams;
//! each client address (ip:port) gets a session: its own upstream socket connected to a member
//! chosen by the pool's algorithm and persistence (SOURCE_IP keeps a client's address on its
//! member across sessions), relaying datagrams both ways. A session ends after `idle` without a
//! datagram either way (the listener's client data timeout, 30 s by default), or at once when its
//! member goes down or leaves the pool (the next datagram opens a session on another member).
//!
//! Sessions are owned by the listener's task: when the listener goes away its sessions end with
//! it (their tasks are aborted), so its address is free again at once. Counters: a session counts
//! as a connection (total, and active while open); bytes in and out are datagram payloads.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use lbaas::server::AbortOnDrop;
use tokio::{net::UdpSocket, sync::mpsc};

use super::{Active, Counters, MemberState, Open, Route, allowed, balance};

/// Default idle time of a UDP session.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

struct Session {
    id: u64,
    member: Arc<MemberState>,
    upstream: Arc<UdpSocket>,
    /// When a datagram last passed, in ms since the listener started.
    last: Arc<AtomicU64>,
    task: AbortOnDrop,
}

/// Receives and relays until aborted; each new session reads the listener's current route.
pub async fn serve(socket: UdpSocket, route: Arc<RwLock<Route>>) {
    let socket = Arc::new(socket);
    let started = Instant::now();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            Some((client, id)) = ended.recv() => {
                if sessions.get(&client).is_some_and(|s| s.id == id) {
                    sessions.remove(&client);
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        // e.g. an ICMP error for an earlier reply to a client that is gone.
                        tracing::debug!(error = %e, "udp receive failed");
                        if !matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionReset
                        ) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        continue;
                    }
                };
                let current = route.read().unwrap_or_else(|p| p.into_inner()).clone();
                if !allowed(&current.allowed, client.ip()) {
                    current.counters.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let datagram = &buf[..n];
                let now = started.elapsed().as_millis() as u64;
                if let Some(session) = sessions.get(&client) {
                    if !session.task.0.is_finished() && still_usable(&current, &session.member) {
                        session.last.store(now, Ordering::Relaxed);
                        if session.upstream.send(datagram).await.is_ok() {
                            current.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        continue;
                    }
                    // Its member went down or left the pool (or it just expired): start over.
                    sessions.remove(&client);
                }
                next_id += 1;
                let Some(session) = open(
                    &current,
                    client,
                    next_id,
                    socket.clone(),
                    started,
                    ended_tx.clone(),
                )
                .await
                else {
                    current.counters.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                session.last.store(now, Ordering::Relaxed);
                if session.upstream.send(datagram).await.is_ok() {
                    current.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                sessions.insert(client, session);
            }
        }
    }
}

/// Whether a session's member may still take the client's datagrams: it is in the listener's
/// current pool (member state carries over applies while the member stays) and usable.
fn still_usable(route: &Route, member: &Arc<MemberState>) -> bool {
    route.pool.as_ref().is_some_and(|pool| {
        pool.members
            .iter()
            .any(|m| Arc::ptr_eq(&m.state, member) && m.usable())
    })
}

/// Opens a session for `client` on a member, or `None` when no member can take it (or the
/// listener's session limit is reached).
async fn open(
    route: &Route,
    client: SocketAddr,
    id: u64,
    listener: Arc<UdpSocket>,
    started: Instant,
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
) -> Option<Session> {
    let pool = route.pool.as_ref()?;
    let permit = match &route.limit {
        Some(limit) => Some(limit.clone().try_acquire_owned().ok()?),
        None => None,
    };
    let member = balance::pick_persistent(pool, client.ip().to_canonical(), None)?;
    let local: IpAddr = match member.addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let upstream = UdpSocket::bind(SocketAddr::new(local, 0)).await.ok()?;
    upstream.connect(member.addr).await.ok()?;
    let upstream = Arc::new(upstream);
    let counters = route.counters.clone();
    counters.total.fetch_add(1, Ordering::Relaxed);
    counters.active.fetch_add(1, Ordering::Relaxed);
    member.state.active.fetch_add(1, Ordering::Relaxed);
    let guards = (Open(counters.clone()), Active(member.state.clone()), permit);
    let last = Arc::new(AtomicU64::new(started.elapsed().as_millis() as u64));
    let task = tokio::spawn(relay(
        Relay {
            listener,
            upstream: upstream.clone(),
            client,
            last: last.clone(),
            started,
            idle: route.client_timeout,
            counters,
        },
        move || {
            drop(guards);
            let _ = ended.send((client, id));
        },
    ));
    Some(Session {
        id,
        member: member.state.clone(),
        upstream,
        last,
        task: AbortOnDrop(task),
    })
}

struct Relay {
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    last: Arc<AtomicU64>,
    started: Instant,
    idle: Duration,
    counters: Arc<Counters>,
}

/// Sends the member's datagrams back to the client until the session is idle for too long; then
/// `done` (aborting skips it, but the guards it holds drop all the same).
async fn relay(r: Relay, done: impl FnOnce()) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let now = r.started.elapsed();
        let last = Duration::from_millis(r.last.load(Ordering::Relaxed));
        let quiet = now.saturating_sub(last);
        if quiet >= r.idle {
            break;
        }
        match tokio::time::timeout(r.idle - quiet, r.upstream.recv(&mut buf)).await {
            // Time to look at `last` again: the client may have sent meanwhile.
            Err(_) => {}
            Ok(Ok(n)) => {
                r.last
                    .store(r.started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if r.listener.send_to(&buf[..n], r.client).await.is_ok() {
                    r.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            // The member's port is closed (ICMP): the datagram is lost, as it would be anyway.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => {
                tracing::debug!(client = %r.client, error = %e, "udp session failed");
                break;
            }
        }
    }
    done();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeMap, BTreeSet};

    use lbaas::agent::v1::{Algorithm, ListenerProtocol, PersistenceType};

    use super::*;
    use crate::driver::native::tests::{listener_config, member, pool_config, route};

    /// A UDP member answering each datagram with "<name>:<datagram>".
    async fn echo(name: &'static str) -> (SocketAddr, AbortOnDrop) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let mut reply = format!("{name}:").into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        (addr, AbortOnDrop(task))
    }

    async fn listen(route: Route) -> (SocketAddr, Arc<Counters>, AbortOnDrop) {
        let (addr, counters, _, task) = listen_with(route).await;
        (addr, counters, task)
    }

    async fn listen_with(
        route: Route,
    ) -> (SocketAddr, Arc<Counters>, Arc<RwLock<Route>>, AbortOnDrop) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let counters = route.counters.clone();
        let route = Arc::new(RwLock::new(route));
        let task = tokio::spawn(serve(socket, route.clone()));
        (addr, counters, route, AbortOnDrop(task))
    }

    /// Sends `text` and returns the member's name from the reply.
    async fn ask(client: &UdpSocket, to: SocketAddr, text: &str) -> String {
        client.send_to(text.as_bytes(), to).await.unwrap();
        let mut buf = [0u8; 1024];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, to);
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (name, echoed) = reply.split_once(':').unwrap();
        assert_eq!(echoed, text);
        name.to_owned()
    }

    /// Polls until `done` (the relay runs on its own; no fixed sleeps).
    async fn until(mut done: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn datagrams_are_balanced_per_client_and_clients_stay_on_their_member() {
        let (a, _a) = echo("a").await;
        let (b, _b) = echo("b").await;
        let pools = vec![pool_config(
            "U",
            ListenerProtocol::Udp,
            vec![member("a", a), member("b", b)],
            PersistenceType::None,
        )];
        let (addr, counters, route, _task) =
            listen_with(route(&listener_config(ListenerProtocol::Udp, "U"), pools)).await;
        let mut by_member: BTreeMap<String, usize> = BTreeMap::new();
        let mut clients = Vec::new();
        for c in 0..4 {
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut names = BTreeSet::new();
            for i in 0..5 {
                names.insert(ask(&client, addr, &format!("client {c} datagram {i}")).await);
            }
            assert_eq!(names.len(), 1, "client {c} moved: {names:?}");
            let name = names.into_iter().next().unwrap();
            *by_member.entry(name.clone()).or_default() += 1;
            clients.push((client, name));
        }
        assert_eq!(
            by_member,
            BTreeMap::from([("a".into(), 2), ("b".into(), 2)])
        );
        assert_eq!(counters.total.load(Ordering::Relaxed), 4);
        assert_eq!(counters.active.load(Ordering::Relaxed), 4);
        assert!(counters.bytes_in.load(Ordering::Relaxed) > 0);
        assert!(
            counters.bytes_out.load(Ordering::Relaxed) > counters.bytes_in.load(Ordering::Relaxed)
        );
        // A member goes down: its clients move at their next datagram, the others stay.
        let (moving, from) = &clients[0];
        {
            let current = route.read().unwrap();
            let pool = current.pool.as_ref().unwrap();
            let m = pool.members.iter().find(|m| m.id == *from).unwrap();
            m.state.up.store(false, Ordering::Relaxed);
        }
        assert_ne!(ask(moving, addr, "moved?").await, *from);
        for (client, name) in &clients[1..] {
            if name != from {
                assert_eq!(ask(client, addr, "stayed?").await, *name);
            }
        }
        assert_eq!(counters.total.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn sessions_expire_and_persistence_outlives_them() {
        let (a, _a) = echo("a").await;
        let (b, _b) = echo("b").await;
        let mut pool = pool_config(
            "U",
            ListenerProtocol::Udp,
            vec![member("a", a), member("b", b)],
            PersistenceType::SourceIp,
        );
        pool.algorithm = Algorithm::RoundRobin as i32;
        let mut listener = listener_config(ListenerProtocol::Udp, "U");
        listener.timeout_client_data_ms = 100;
        let (addr, counters, _task) = listen(route(&listener, vec![pool])).await;
        // Every client address of 127.0.0.1 shares the source IP: all on one member, each
        // client port its own session.
        let mut names = BTreeSet::new();
        for _ in 0..3 {
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            names.insert(ask(&client, addr, "hello").await);
        }
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(counters.total.load(Ordering::Relaxed), 3);
        // Idle sessions end.
        until(|| counters.active.load(Ordering::Relaxed) == 0).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(names.contains(&ask(&client, addr, "again").await));
        assert_eq!(counters.total.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn datagrams_from_outside_allowed_cidrs_are_dropped() {
        let (a, _a) = echo("a").await;
        let pools = vec![pool_config(
            "U",
            ListenerProtocol::Udp,
            vec![member("a", a)],
            PersistenceType::None,
        )];
        let mut listener = listener_config(ListenerProtocol::Udp, "U");
        listener.allowed_cidrs = vec!["10.0.0.0/8".into()];
        let (addr, counters, _task) = listen(route(&listener, pools)).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"let me in", addr).await.unwrap();
        until(|| counters.errors.load(Ordering::Relaxed) == 1).await;
        assert_eq!(counters.total.load(Ordering::Relaxed), 0);
        assert_eq!(counters.bytes_in.load(Ordering::Relaxed), 0);
    }
}
