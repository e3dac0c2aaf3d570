//! Load-balancing features proven by real traffic on each driver, the way Octavia's scenario tests
//! prove theirs: balance counts per algorithm, weights, backups, stickiness per persistence type,
//! allowed CIDRs (a second loopback address as the outsider), inserted headers, every L7 rule type
//! and action, TLS termination with the right certificate per SNI name, re-encryption to members,
//! and UDP. Each test runs on HAProxy and on the native data plane (UDP: native only; HAProxy
//! refuses it with the missing capability named).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;
#[path = "features/grpc.rs"]
mod grpc;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use lbaas::api::v1::{self as pb, load_balancer_service_client::LoadBalancerServiceClient};
use support::{Backend, Stack, StackOptions, in_project, member_at, wait_settled};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tonic::transport::Channel;

type Api = LoadBalancerServiceClient<Channel>;

/// Runs a scenario on HAProxy and on the native data plane (SQLite; the data plane does not care
/// which database the api uses).
macro_rules! on_each_driver {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                lbaas_no_haproxy,
                ignore = "haproxy is not installed (apt-get install haproxy)"
            )]
            async fn haproxy() {
                super::$name("haproxy").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn native() {
                super::$name("native").await;
            }
        }
    };
}

async fn start(driver: &'static str) -> (Stack, Api, String) {
    let stack = Stack::start(StackOptions {
        driver,
        ..Default::default()
    })
    .await;
    let api = stack.api_client().await;
    (stack, api, support::fresh_project())
}

fn pool(protocol: pb::Protocol, algorithm: pb::LbAlgorithm, members: Vec<pb::Member>) -> pb::Pool {
    pb::Pool {
        protocol: protocol as i32,
        lb_algorithm: algorithm as i32,
        members,
        ..Default::default()
    }
}

fn listener(protocol: pb::Protocol, port: i32, default_pool: pb::Pool) -> pb::Listener {
    pb::Listener {
        protocol: protocol as i32,
        protocol_port: port,
        default_pool: Some(default_pool),
        ..Default::default()
    }
}

fn http(port: i32, default_pool: pb::Pool) -> pb::Listener {
    listener(pb::Protocol::Http, port, default_pool)
}

fn weighted(port: i32, weight: i32) -> pb::Member {
    pb::Member {
        weight: Some(weight),
        ..member_at(port)
    }
}

fn lb(name: &str, listeners: Vec<pb::Listener>) -> pb::LoadBalancer {
    pb::LoadBalancer {
        name: name.into(),
        listeners,
        ..Default::default()
    }
}

/// A load balancer with one `protocol` listener on `port` and a round-robin pool (of the
/// protocol the listener takes) over members on `ports`.
fn single(name: &str, protocol: pb::Protocol, port: i32, ports: &[u16]) -> pb::LoadBalancer {
    let pool_protocol = pool_protocol_for(protocol);
    let members = ports.iter().map(|p| member_at(i32::from(*p))).collect();
    lb(
        name,
        vec![listener(
            protocol,
            port,
            pool(pool_protocol, pb::LbAlgorithm::RoundRobin, members),
        )],
    )
}

/// One HTTP/1.1 response: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut head = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("host: lbaas-test\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no HTTP response: {text:?}"),
        )
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn connect_from(
    addr: &str,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// One GET on a new connection, from `source` when given.
async fn get_from(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    source: Option<IpAddr>,
) -> std::io::Result<Reply> {
    exchange(connect_from(addr, source).await?, path, headers).await
}

async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get_from(addr, path, headers, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr} failed: {e}"))
}

/// Bodies of `n` requests, counted.
async fn counts(addr: &str, n: usize, headers: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for _ in 0..n {
        let reply = get(addr, "/", headers).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *c.entry(reply.body).or_default() += 1;
    }
    c
}

fn split(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

// ---- algorithms, weights, backups ----

async fn algorithms_weights_and_backups(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let two = || vec![member_at(a.port()), member_at(b.port())];
    let monitored = pb::Pool {
        healthmonitor: Some(support::quick_monitor(pb::HealthMonitorType::Tcp)),
        ..pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![
                member_at(a.port()),
                pb::Member {
                    backup: true,
                    ..member_at(b.port())
                },
            ],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "algorithms",
            vec![
                http(
                    8081,
                    pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, two()),
                ),
                http(
                    8082,
                    pool(pb::Protocol::Http, pb::LbAlgorithm::LeastConnections, two()),
                ),
                http(
                    8083,
                    pool(pb::Protocol::Http, pb::LbAlgorithm::SourceIp, two()),
                ),
                http(
                    8084,
                    pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![
                            weighted(a.port(), 3),
                            weighted(b.port(), 1),
                            weighted(c.port(), 0),
                        ],
                    ),
                ),
                http(8085, monitored),
                // Least connections over TCP, starting with member a alone (b joins later).
                listener(
                    pb::Protocol::Tcp,
                    8086,
                    pool(
                        pb::Protocol::Tcp,
                        pb::LbAlgorithm::LeastConnections,
                        vec![member_at(a.port())],
                    ),
                ),
            ],
        ),
    )
    .await;
    let vip = |port: u16| format!("{}:{port}", created.vip_address);

    // ROUND_ROBIN: an equal split over 20 requests.
    assert_eq!(
        counts(&vip(8081), 20, &[]).await,
        split(&[("a", 10), ("b", 10)])
    );
    // LEAST_CONNECTIONS: with no connection held, both members take requests.
    let lc = counts(&vip(8082), 20, &[]).await;
    assert!(lc.len() == 2 && lc.values().all(|n| *n >= 5), "{lc:?}");
    // SOURCE_IP: one client address, one member; twenty addresses spread over both members.
    let sticky = counts(&vip(8083), 20, &[]).await;
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    for host in 1..=20u8 {
        let source = IpAddr::from([127, 0, 0, host]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let reply = get_from(&vip(8083), "/", &[], Some(source)).await.unwrap();
            seen.insert(reply.body);
        }
        assert_eq!(seen.len(), 1, "{source} moved between members: {seen:?}");
        *by_source
            .entry(seen.into_iter().next().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        by_source.len(),
        2,
        "20 sources all on one member: {by_source:?}"
    );
    // Weights 3:1, and weight 0 drains.
    assert_eq!(
        counts(&vip(8084), 40, &[]).await,
        split(&[("a", 30), ("b", 10)])
    );
    // The backup serves only once the primary is down.
    assert_eq!(counts(&vip(8085), 10, &[]).await, split(&[("a", 10)]));
    let a_port = a.addr.port();
    drop(a);
    support::poll_until(Duration::from_secs(20), "the backup to take over", || {
        let vip = vip(8085);
        async move {
            let r = get_from(&vip, "/", &[], None).await.ok()?;
            (r.status == 200 && r.body == "b").then_some(())
        }
    })
    .await;
    assert_eq!(counts(&vip(8085), 10, &[]).await, split(&[("b", 10)]));
    // The primary back: it takes everything again.
    let _a = Backend::start_on("a", a_port).await;
    support::poll_until(Duration::from_secs(20), "the primary to return", || {
        let vip = vip(8085);
        async move {
            let r = get_from(&vip, "/", &[], None).await.ok()?;
            (r.body == "a").then_some(())
        }
    })
    .await;
    assert_eq!(counts(&vip(8085), 10, &[]).await, split(&[("a", 10)]));

    // LEAST_CONNECTIONS under load: three connections held open on a (each has sent half a
    // request head, so the member waits for the rest), then b joins the pool. New requests all go
    // to b, the member with fewer connections; round robin would have sent half of them to a.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(&vip(8086), None).await.unwrap();
        stream
            .write_all(b"GET /held HTTP/1.1\r\nhost: lbaas-test\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let lc_listener = api
        .list_listeners(in_project(
            &project,
            pb::ListListenersRequest {
                loadbalancer_id: created.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .listeners
        .into_iter()
        .find(|l| l.protocol_port == 8086)
        .unwrap();
    // The data plane reports the three connections open (stats arrive about every second).
    support::poll_until(
        Duration::from_secs(10),
        "three connections open on 8086",
        || {
            let mut api = api.clone();
            let request = in_project(
                &project,
                pb::GetListenerStatsRequest {
                    id: lc_listener.id.clone(),
                },
            );
            async move {
                let stats = api.get_listener_stats(request).await.ok()?.into_inner();
                (stats.active_connections >= 3).then_some(())
            }
        },
    )
    .await;
    let lc_pool = lc_listener.default_pool_id;
    api.create_member(in_project(
        &project,
        pb::CreateMemberRequest {
            member: Some(pb::Member {
                pool_id: lc_pool,
                ..member_at(b.port())
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    assert_eq!(counts(&vip(8086), 10, &[]).await, split(&[("b", 10)]));
    // Once a's connections end, the two share again.
    drop(held);
    support::poll_until(Duration::from_secs(10), "a to take requests again", || {
        let vip = vip(8086);
        async move {
            let r = get_from(&vip, "/", &[], None).await.ok()?;
            (r.body == "a").then_some(())
        }
    })
    .await;
    stack.stop().await;
}
on_each_driver!(algorithms_weights_and_backups);

// ---- timeouts ----

/// A member that accepts connections (and reads requests) but never answers.
async fn silent_member() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (port, task)
}

/// A member that never completes a TCP handshake: a listener whose accept queue is full (it
/// never accepts), so the kernel drops further SYNs and a connect hangs. Keep what it returns.
async fn unreachable_member() -> (u16, tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            // A connect that hangs: the queue is full.
            Err(_) => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    (addr.port(), listener, fillers)
}

async fn timeouts(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, task) = silent_member().await;
    let (unreachable, _queue_full, _fillers) = unreachable_member().await;
    let member = || vec![member_at(i32::from(port))];
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "impatient",
            vec![
                pb::Listener {
                    timeout_client_data_ms: 500,
                    ..listener(
                        pb::Protocol::Tcp,
                        9001,
                        pool(pb::Protocol::Tcp, pb::LbAlgorithm::RoundRobin, member()),
                    )
                },
                pb::Listener {
                    timeout_member_connect_ms: 500,
                    timeout_member_data_ms: 500,
                    ..http(
                        9002,
                        pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, member()),
                    )
                },
                pb::Listener {
                    timeout_member_connect_ms: 300,
                    timeout_member_data_ms: 60_000,
                    ..http(
                        9003,
                        pool(
                            pb::Protocol::Http,
                            pb::LbAlgorithm::RoundRobin,
                            vec![member_at(i32::from(unreachable))],
                        ),
                    )
                },
            ],
        ),
    )
    .await;
    // A silent TCP client is let go after the client timeout (the default would be 50 s).
    let mut idle = connect_from(&format!("{}:9001", created.vip_address), None)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "{driver}: the idle connection was not closed: {closed:?}"
    );
    // A member that does not answer within the data timeout: 504.
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        get_from(&format!("{}:9002", created.vip_address), "/", &[], None),
    )
    .await
    .expect("no answer within 15 s")
    .unwrap();
    assert_eq!(reply.status, 504, "{driver}: {reply:?}");
    // A member that never accepts: 503 once the connect timeout (and the retries) ran out; the
    // kernel alone would keep trying for about two minutes, the data timeout is a minute.
    let asked = std::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        get_from(&format!("{}:9003", created.vip_address), "/", &[], None),
    )
    .await
    .expect("no answer within 15 s: the connect timeout was not applied")
    .unwrap();
    assert_eq!(reply.status, 503, "{driver}: {reply:?}");
    eprintln!(
        "{driver}: 503 {} ms after asking a member that never accepts (connect timeout 300 ms)",
        asked.elapsed().as_millis()
    );
    // Octavia's longest timeouts (24 days) are taken and served; a millisecond more is refused.
    let longest = 24 * 24 * 60 * 60 * 1000;
    let answering = Backend::start("patient").await;
    let answers = || vec![member_at(i32::from(answering.addr.port()))];
    let patient = support::create_active(
        &mut api,
        &project,
        lb(
            "patient",
            vec![pb::Listener {
                timeout_client_data_ms: longest,
                timeout_member_connect_ms: longest,
                timeout_member_data_ms: longest,
                ..http(
                    9004,
                    pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, answers()),
                )
            }],
        ),
    )
    .await;
    let reply = get(&format!("{}:9004", patient.vip_address), "/", &[]).await;
    assert_eq!(reply.status, 200, "{driver}: {reply:?}");
    let refused = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb(
                    "too-patient",
                    vec![pb::Listener {
                        timeout_member_data_ms: longest + 1,
                        ..http(
                            9005,
                            pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, member()),
                        )
                    }],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&refused),
        ["load_balancer.listeners[0].timeout_member_data_ms"]
    );
    task.abort();
    stack.stop().await;
}
on_each_driver!(timeouts);

// ---- session persistence ----

fn cookie_value(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
}

async fn session_persistence(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let persistent = |kind: pb::SessionPersistenceType, cookie: &str| pb::Pool {
        session_persistence: Some(pb::SessionPersistence {
            r#type: kind as i32,
            cookie_name: cookie.into(),
        }),
        ..pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![member_at(a.port()), member_at(b.port())],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "sticky",
            vec![
                http(8081, persistent(pb::SessionPersistenceType::SourceIp, "")),
                http(8082, persistent(pb::SessionPersistenceType::HttpCookie, "")),
                http(
                    8083,
                    persistent(pb::SessionPersistenceType::AppCookie, "JSESSIONID"),
                ),
            ],
        ),
    )
    .await;
    let vip = |port: u16| format!("{}:{port}", created.vip_address);

    // SOURCE_IP: a round-robin pool, yet one client stays on one member.
    let by_source = counts(&vip(8081), 20, &[]).await;
    assert_eq!(by_source.len(), 1, "{by_source:?}");
    // Twelve clients (source addresses), each on its member...
    let sources: Vec<IpAddr> = (10..22).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    let member_of = |source: IpAddr| {
        let vip = vip(8081);
        async move {
            get_from(&vip, "/", &[], Some(source))
                .await
                .unwrap_or_else(|e| panic!("GET from {source}: {e}"))
                .body
        }
    };
    let mut before = Vec::new();
    for source in &sources {
        before.push(member_of(*source).await);
    }
    assert_eq!(
        before
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2,
        "round robin spreads new clients: {before:?}"
    );
    // ... stays on it across a change of the load balancer (a reload on HAProxy, whose tables
    // the driver carries over): had the table been lost, each client would be balanced afresh.
    api.create_listener(in_project(
        &project,
        pb::CreateListenerRequest {
            listener: Some(pb::Listener {
                loadbalancer_id: created.id.clone(),
                protocol: pb::Protocol::Http as i32,
                protocol_port: 8084,
                ..Default::default()
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    let settled = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        settled.provisioning_status(),
        pb::ProvisioningStatus::Active
    );
    let mut after = Vec::new();
    for source in &sources {
        after.push(member_of(*source).await);
    }
    assert_eq!(after, before, "{driver}: SOURCE_IP across a reload");

    // HTTP_COOKIE: the load balancer's cookie keeps a client on its member; without it, the
    // pool balances.
    let first = get(&vip(8082), "/", &[]).await;
    let srv = cookie_value(&first, "SRV").unwrap_or_else(|| panic!("no SRV cookie set: {first:?}"));
    let cookie = format!("SRV={srv}");
    let with_cookie = counts(&vip(8082), 10, &[("cookie", &cookie)]).await;
    assert_eq!(with_cookie, split(&[(first.body.as_str(), 10)]));
    assert_eq!(counts(&vip(8082), 10, &[]).await.len(), 2);

    // APP_COOKIE: the member that set JSESSIONID=v gets every request carrying it.
    for member in ["a", "b"] {
        let cookie = format!("JSESSIONID={member}");
        // Learn: requests until that member has answered (and set its cookie) once.
        support::poll_until(
            Duration::from_secs(10),
            "the member to set its cookie",
            || {
                let vip = vip(8083);
                async move { (get(&vip, "/", &[]).await.body == member).then_some(()) }
            },
        )
        .await;
        assert_eq!(
            counts(&vip(8083), 10, &[("cookie", &cookie)]).await,
            split(&[(member, 10)]),
            "{driver}: APP_COOKIE {cookie}"
        );
    }
    stack.stop().await;
}
on_each_driver!(session_persistence);

// ---- allowed CIDRs and inserted headers ----

async fn access_control_and_headers(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let a = Backend::start("a").await;
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "guarded",
            vec![pb::Listener {
                allowed_cidrs: vec!["127.0.0.1/32".into()],
                insert_headers: [
                    ("X-Forwarded-For", "true"),
                    ("X-Forwarded-Port", "true"),
                    ("X-Forwarded-Proto", "true"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
                ..http(
                    8081,
                    pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![member_at(a.port())],
                    ),
                )
            }],
        ),
    )
    .await;
    let vip = format!("{}:8081", created.vip_address);
    let listener_id = created.listener_ids[0].clone();

    // Headers the member sees.
    let seen = get(&vip, "/headers", &[]).await.body.to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(seen.contains("x-forwarded-port: 8081"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");

    // A client outside the allowed network gets nothing.
    let outsider: IpAddr = "127.0.0.2".parse().unwrap();
    let refused = get_from(&vip, "/", &[], Some(outsider)).await;
    assert!(refused.is_err(), "127.0.0.2 was served: {refused:?}");

    // Widen the list: the outsider is let in.
    api.update_listener(in_project(
        &project,
        pb::UpdateListenerRequest {
            listener: Some(pb::Listener {
                id: listener_id,
                allowed_cidrs: vec!["127.0.0.0/8".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["allowed_cidrs".into()],
            }),
        },
    ))
    .await
    .unwrap();
    let settled = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        settled.provisioning_status(),
        pb::ProvisioningStatus::Active
    );
    let reply = get_from(&vip, "/", &[], Some(outsider)).await.unwrap();
    assert_eq!(reply.body, "a");
    stack.stop().await;
}
on_each_driver!(access_control_and_headers);

// ---- L7 policies and rules ----

fn rule(
    kind: pb::L7RuleType,
    compare: pb::L7RuleCompareType,
    key: &str,
    value: &str,
    invert: bool,
) -> pb::L7Rule {
    pb::L7Rule {
        r#type: kind as i32,
        compare_type: compare as i32,
        key: key.into(),
        value: value.into(),
        invert,
        ..Default::default()
    }
}

async fn policy(
    api: &mut Api,
    project: &str,
    listener_id: &str,
    spec: pb::L7Policy,
) -> pb::L7Policy {
    api.create_l7_policy(in_project(
        project,
        pb::CreateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                listener_id: listener_id.into(),
                ..spec
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("create L7 policy: {e}"))
    .into_inner()
}

async fn l7_routing(driver: &'static str) {
    use pb::{L7PolicyAction as Act, L7RuleCompareType as Cmp, L7RuleType as Rule};
    let (stack, mut api, project) = start(driver).await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let one = |backend: &Backend| {
        pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![member_at(backend.port())],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        pb::LoadBalancer {
            pools: vec![
                pb::Pool {
                    name: "b".into(),
                    ..one(&b)
                },
                pb::Pool {
                    name: "c".into(),
                    ..one(&c)
                },
            ],
            ..lb("routed", vec![http(8080, one(&a))])
        },
    )
    .await;
    let pools = api
        .list_pools(in_project(
            &project,
            pb::ListPoolsRequest {
                loadbalancer_id: created.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pools;
    let pool_named = |n: &str| pools.iter().find(|p| p.name == n).unwrap().id.clone();
    let (pool_b, pool_c) = (pool_named("b"), pool_named("c"));
    let listener = created.listener_ids[0].clone();
    let to_pool = |pool: &str, rules: Vec<pb::L7Rule>| pb::L7Policy {
        action: Act::RedirectToPool as i32,
        redirect_pool_id: pool.into(),
        rules,
        ..Default::default()
    };
    let by_host = policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_b,
            vec![rule(
                Rule::HostName,
                Cmp::EqualTo,
                "",
                "b.example.com",
                false,
            )],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_c,
            vec![rule(Rule::Path, Cmp::StartsWith, "", "/c/", false)],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            rules: vec![rule(Rule::FileType, Cmp::EqualTo, "", "exe", false)],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::RedirectToUrl as i32,
            redirect_url: "http://example.com/moved".into(),
            redirect_http_code: 301,
            rules: vec![rule(Rule::Header, Cmp::EqualTo, "X-Move", "yes", false)],
            ..Default::default()
        },
    )
    .await;
    let prefix_policy = policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::RedirectPrefix as i32,
            redirect_prefix: "https://secure.example.com".into(),
            rules: vec![rule(Rule::Cookie, Cmp::Contains, "session", "admin", false)],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_b,
            vec![rule(
                Rule::Path,
                Cmp::Regex,
                "",
                "^/api/v\\d+/items(\\.json)?$",
                false,
            )],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            rules: vec![
                rule(Rule::Path, Cmp::StartsWith, "", "/private", false),
                rule(Rule::Header, Cmp::EqualTo, "X-Token", "secret", true),
            ],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_c,
            vec![rule(
                Rule::HostName,
                Cmp::EndsWith,
                "",
                ".c.example.com",
                false,
            )],
        ),
    )
    .await;
    let settled = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        settled.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "{}",
        settled.status_reason
    );
    // The status tree shows the policies in position order, each with its rules, all ACTIVE.
    let tree = api
        .get_load_balancer_status_tree(in_project(
            &project,
            pb::GetLoadBalancerStatusTreeRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let shown = &tree.listeners[0].l7policies;
    assert_eq!(shown.len(), 8);
    assert_eq!(shown[0].status.as_ref().unwrap().id, by_host.id);
    assert!(shown.iter().all(|p| {
        !p.rules.is_empty()
            && p.status.as_ref().unwrap().provisioning_status() == pb::ProvisioningStatus::Active
    }));
    let vip = format!("{}:8080", created.vip_address);
    let expect = |reply: Reply, status: u16, body: &str| {
        assert_eq!(reply.status, status, "{driver}: {reply:?}");
        if status == 200 {
            assert_eq!(reply.body, body, "{driver}: {reply:?}");
        }
    };
    expect(get(&vip, "/", &[]).await, 200, "a");
    expect(get(&vip, "/", &[("host", "b.example.com")]).await, 200, "b");
    expect(
        get(&vip, "/", &[("host", "B.Example.COM:8080")]).await,
        200,
        "b",
    );
    expect(get(&vip, "/c/x", &[]).await, 200, "c");
    expect(get(&vip, "/file.exe", &[]).await, 403, "");
    expect(get(&vip, "/file.exe.txt", &[]).await, 200, "a");
    expect(get(&vip, "/dir.exe/file", &[]).await, 200, "a");
    let moved = get(&vip, "/x", &[("x-move", "yes")]).await;
    assert_eq!(moved.status, 301, "{driver}: {moved:?}");
    assert_eq!(moved.header("location"), Some("http://example.com/moved"));
    let prefixed = get(&vip, "/some/path?q=1", &[("cookie", "session=xadminx")]).await;
    assert_eq!(prefixed.status, 302, "{driver}: {prefixed:?}");
    assert_eq!(
        prefixed.header("location"),
        Some("https://secure.example.com/some/path?q=1")
    );
    expect(get(&vip, "/api/v2/items", &[]).await, 200, "b");
    expect(get(&vip, "/api/vx/items", &[]).await, 200, "a");
    // The backslashes reach the regex engine: `\.` is a dot, not any character.
    expect(get(&vip, "/api/v2/items.json", &[]).await, 200, "b");
    expect(get(&vip, "/api/v2/itemsXjson", &[]).await, 200, "a");
    expect(get(&vip, "/private/x", &[]).await, 403, "");
    expect(
        get(&vip, "/private/x", &[("x-token", "secret")]).await,
        200,
        "a",
    );
    expect(
        get(&vip, "/", &[("host", "x.c.example.com")]).await,
        200,
        "c",
    );
    // Order: the host policy comes before the path one.
    expect(
        get(&vip, "/c/x", &[("host", "b.example.com")]).await,
        200,
        "b",
    );

    // A policy put first wins over the rest.
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            position: 1,
            rules: vec![rule(Rule::Header, Cmp::EqualTo, "X-Block", "1", false)],
            ..Default::default()
        },
    )
    .await;
    wait_settled(&api, &project, &created.id).await;
    expect(
        get(&vip, "/", &[("host", "b.example.com"), ("x-block", "1")]).await,
        403,
        "",
    );
    let listed = api
        .list_l7_policies(in_project(
            &project,
            pb::ListL7PoliciesRequest {
                listener_id: listener.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .l7policies;
    let positions: Vec<i32> = listed.iter().map(|p| p.position).collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=9).collect::<Vec<_>>());
    assert_eq!(
        listed.iter().find(|p| p.id == by_host.id).unwrap().position,
        2
    );
    let shown = api
        .get_listener(in_project(
            &project,
            pb::GetListenerRequest {
                id: listener.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.l7policy_ids.len(), 9);
    assert_eq!(
        shown.l7policy_ids[1], by_host.id,
        "policies in position order"
    );

    // Deleting the host policy sends that host to the default pool again.
    api.delete_l7_policy(in_project(
        &project,
        pb::DeleteL7PolicyRequest {
            id: by_host.id.clone(),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/", &[("host", "b.example.com")]).await, 200, "a");

    // Live changes to a policy and its rules. Each redirect code, set by update, is what the
    // client gets.
    let cookie = [("cookie", "session=xadminx")];
    for code in [301, 303, 307, 308, 302] {
        api.update_l7_policy(in_project(
            &project,
            pb::UpdateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    id: prefix_policy.id.clone(),
                    redirect_http_code: code,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["redirect_http_code".into()],
                }),
            },
        ))
        .await
        .unwrap();
        wait_settled(&api, &project, &created.id).await;
        let reply = get(&vip, "/p", &cookie).await;
        assert_eq!(reply.status, code as u16, "{driver}: {reply:?}");
        assert_eq!(
            reply.header("location"),
            Some("https://secure.example.com/p")
        );
    }
    // A second rule added to the live policy: both must match (rules are ANDed).
    let added = api
        .create_l7_rule(in_project(
            &project,
            pb::CreateL7RuleRequest {
                rule: Some(pb::L7Rule {
                    l7policy_id: prefix_policy.id.clone(),
                    ..rule(Rule::Path, Cmp::StartsWith, "", "/secure", false)
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/p", &cookie).await, 200, "a");
    assert_eq!(get(&vip, "/secure/x", &cookie).await.status, 302);
    // The rule's value changed in place.
    api.update_l7_rule(in_project(
        &project,
        pb::UpdateL7RuleRequest {
            rule: Some(pb::L7Rule {
                id: added.id.clone(),
                value: "/vault".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["value".into()],
            }),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/secure/x", &cookie).await, 200, "a");
    assert_eq!(get(&vip, "/vault/x", &cookie).await.status, 302);
    // The rule deleted: the cookie alone redirects again.
    api.delete_l7_rule(in_project(
        &project,
        pb::DeleteL7RuleRequest {
            id: added.id.clone(),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    assert_eq!(get(&vip, "/p", &cookie).await.status, 302);

    // Moving a policy: the X-Block reject (position 1) moved last, behind the path policy that
    // sends /c to pool c, so /c with X-Block is routed instead of refused; other paths still are.
    let blocker = api
        .list_l7_policies(in_project(
            &project,
            pb::ListL7PoliciesRequest {
                listener_id: listener.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .l7policies
        .into_iter()
        .find(|p| p.position == 1)
        .unwrap();
    expect(get(&vip, "/c/x", &[("x-block", "1")]).await, 403, "");
    api.update_l7_policy(in_project(
        &project,
        pb::UpdateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                id: blocker.id.clone(),
                position: 8,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["position".into()],
            }),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/c/x", &[("x-block", "1")]).await, 200, "c");
    expect(get(&vip, "/", &[("x-block", "1")]).await, 403, "");
    stack.stop().await;
}
on_each_driver!(l7_routing);

// ---- TLS ----

mod tls {
    use std::sync::Arc;

    use rustls::{
        DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    };
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any server certificate: the tests check which one was served themselves.
    #[derive(Debug)]
    pub struct AcceptAny;

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub fn connector() -> tokio_rustls::TlsConnector {
        offering(&[])
    }

    /// A connector that offers these ALPN protocols.
    pub fn offering(alpn: &[&str]) -> tokio_rustls::TlsConnector {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

struct Generated {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn generate(names: &[&str]) -> Generated {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    Generated {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().to_vec(),
    }
}

/// A path and its permission bits.
type Mode = (std::path::PathBuf, u32);

/// The files under `root` holding `key_pem`'s body: each with its mode and the modes of the
/// folders from `root` down to it.
fn private_key_files(
    root: &std::path::Path,
    key_pem: &str,
) -> Vec<(std::path::PathBuf, u32, Vec<Mode>)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let body = key_pem.lines().nth(1).unwrap().as_bytes().to_vec();
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(body.len())
                .any(|w| w == body.as_slice())
            {
                let above = path
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(root))
                    .map(|a| (a.to_path_buf(), mode(a)))
                    .collect();
                found.push((path.clone(), mode(&path), above));
            }
        }
    }
    found
}

/// Connects with TLS (SNI `name`, or none for an IP address) and returns the certificate served
/// and the reply to a GET of `path`.
async fn tls_get(addr: &str, name: &str, path: &str) -> (Vec<u8>, Reply) {
    let tcp = connect_from(addr, None).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = tls::connector().connect(server_name, tcp).await.unwrap();
    let served = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap();
    let reply = exchange(stream, path, &[]).await.unwrap();
    (served, reply)
}

async fn tls_termination_with_sni(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let member = Backend::start("plain").await;
    let mut certs = stack.certificate_client().await;
    let upload = |g: &Generated, name: &str| {
        in_project(
            &project,
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    name: name.into(),
                    certificate_pem: g.cert_pem.clone(),
                    private_key_pem: g.key_pem.clone(),
                    ..Default::default()
                }),
            },
        )
    };
    let (default, one, two) = (
        generate(&["default.example.com"]),
        generate(&["one.example.com"]),
        generate(&["*.two.example.com"]),
    );
    let default_id = certs
        .create_certificate(upload(&default, "default"))
        .await
        .unwrap()
        .into_inner();
    assert!(default_id.private_key_pem.is_empty(), "a key came back");
    assert_eq!(default_id.subject_names, vec!["default.example.com"]);
    let one_id = certs
        .create_certificate(upload(&one, "one"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let two_id = certs
        .create_certificate(upload(&two, "two"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let fetched = certs
        .get_certificate(in_project(
            &project,
            pb::GetCertificateRequest { id: one_id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.private_key_pem.is_empty());
    // At rest, the key is sealed: the database file holds no PEM key.
    let mut stored = std::fs::read(stack.dir.join("api.db")).unwrap();
    stored.extend(std::fs::read(stack.dir.join("api.db-wal")).unwrap_or_default());
    assert!(
        stored.windows(one_id.len()).any(|w| w == one_id.as_bytes()),
        "the certificate is not in the files read"
    );
    let key_body = one.key_pem.lines().nth(1).unwrap().as_bytes();
    assert!(
        !stored.windows(key_body.len()).any(|w| w == key_body)
            && !stored.windows(11).any(|w| w == b"PRIVATE KEY"),
        "a private key is stored in clear"
    );
    // Another project sees nothing.
    let other = certs
        .get_certificate(in_project(
            &support::fresh_project(),
            pb::GetCertificateRequest { id: one_id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
    // Lists carry no key either.
    let listed = certs
        .list_certificates(in_project(&project, pb::ListCertificatesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|c| c.private_key_pem.is_empty()),
        "a key was listed"
    );
    // Another project's listener cannot use these certificates.
    let stolen = api
        .create_load_balancer(in_project(
            &support::fresh_project(),
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb(
                    "thief",
                    vec![pb::Listener {
                        default_tls_container_ref: default_id.id.clone(),
                        ..listener(
                            pb::Protocol::TerminatedHttps,
                            443,
                            pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, vec![]),
                        )
                    }],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), tonic::Code::InvalidArgument, "{stolen:?}");
    assert_eq!(
        support::violations(&stolen),
        vec!["load_balancer.listeners[0].default_tls_container_ref".to_owned()]
    );

    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "secure",
            vec![pb::Listener {
                default_tls_container_ref: default_id.id.clone(),
                sni_container_refs: vec![one_id.clone(), two_id.clone()],
                insert_headers: [("X-Forwarded-Proto".to_owned(), "true".to_owned())]
                    .into_iter()
                    .collect(),
                ..listener(
                    pb::Protocol::TerminatedHttps,
                    8443,
                    pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![member_at(member.port())],
                    ),
                )
            }],
        ),
    )
    .await;
    let vip = format!("{}:8443", created.vip_address);
    for (name, want) in [
        ("one.example.com", &one.der),
        ("x.two.example.com", &two.der),
        ("default.example.com", &default.der),
        ("unknown.example.net", &default.der),
        (created.vip_address.as_str(), &default.der),
    ] {
        let (served, reply) = tls_get(&vip, name, "/").await;
        assert!(
            served == *want,
            "{driver}: SNI {name} got the wrong certificate"
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, "plain");
    }
    // On the agent's disk, every file holding a key is 0600 and every folder above it 0700.
    let key_files = private_key_files(&stack.agent_config.state_dir, &one.key_pem);
    assert!(
        !key_files.is_empty(),
        "{driver}: no file of the agent holds the key"
    );
    for (file, mode, folders) in &key_files {
        assert_eq!(*mode, 0o600, "{driver}: {} is {mode:o}", file.display());
        for (folder, mode) in folders {
            assert_eq!(*mode, 0o700, "{driver}: {} is {mode:o}", folder.display());
        }
    }
    // HTTP/2 by ALPN: a client offering h2 gets it and is answered over it; one offering only
    // HTTP/1.1 gets that.
    for (offer, want) in [
        (&["h2", "http/1.1"][..], "h2"),
        (&["http/1.1"][..], "http/1.1"),
    ] {
        let tcp = connect_from(&vip, None).await.unwrap();
        let server_name = rustls_pki_types::ServerName::try_from("one.example.com").unwrap();
        let stream = tls::offering(offer)
            .connect(server_name, tcp)
            .await
            .unwrap();
        let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(want.as_bytes()), "{driver}");
        if want == "h2" {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let request = hyper::Request::get("https://one.example.com/")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{driver}: h2");
            assert_eq!(response.version(), hyper::Version::HTTP_2);
        }
    }
    let (_, seen) = tls_get(&vip, "one.example.com", "/headers").await;
    assert!(
        seen.body
            .to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{}",
        seen.body
    );

    // A certificate in use cannot go.
    let refused = certs
        .delete_certificate(in_project(
            &project,
            pb::DeleteCertificateRequest { id: one_id },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    stack.stop().await;
}
on_each_driver!(tls_termination_with_sni);

/// A member that speaks HTTPS (a self-signed certificate) and answers with its name.
async fn tls_backend(name: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let (port, task, _) = tls_backend_with_cert(name).await;
    (port, task)
}

/// A member that speaks HTTPS and answers with its name; also returns its certificate (DER).
async fn tls_backend_with_cert(name: &'static str) -> (u16, tokio::task::JoinHandle<()>, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["member.example.com".to_owned()]).unwrap();
    let der = made.cert.der().to_vec();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if read == buf.len() {
                        return;
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, task, der)
}

/// HTTPS passthrough: the load balancer forwards TLS untouched, so the client completes its
/// handshake with a member (and sees that member's own certificate), balanced round robin.
async fn https_passthrough(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (x_port, x_task, x_der) = tls_backend_with_cert("x").await;
    let (y_port, y_task, y_der) = tls_backend_with_cert("y").await;
    let created = support::create_active(
        &mut api,
        &project,
        single("passthrough", pb::Protocol::Https, 8443, &[x_port, y_port]),
    )
    .await;
    let vip = format!("{}:8443", created.vip_address);
    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        let (served, reply) = tls_get(&vip, "member.example.com", "/").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let expected = if reply.body == "x" { &x_der } else { &y_der };
        assert!(
            served == *expected,
            "{driver}: the certificate seen is not member {}'s own",
            reply.body
        );
        *seen.entry(reply.body).or_insert(0usize) += 1;
    }
    assert_eq!(seen, split(&[("x", 5), ("y", 5)]), "{driver}");
    x_task.abort();
    y_task.abort();
    stack.stop().await;
}
on_each_driver!(https_passthrough);

async fn re_encryption(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, task) = tls_backend("encrypted").await;
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "re-encrypted",
            vec![http(
                8080,
                pb::Pool {
                    tls_enabled: true,
                    ..pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![member_at(i32::from(port))],
                    )
                },
            )],
        ),
    )
    .await;
    let vip = format!("{}:8080", created.vip_address);
    assert_eq!(counts(&vip, 3, &[]).await, split(&[("encrypted", 3)]));
    task.abort();
    stack.stop().await;
}
on_each_driver!(re_encryption);

/// Health monitors that speak TLS, on HTTPS (passthrough) pools: an HTTPS monitor (TLS, then an
/// HTTP request) and a TLS-HELLO monitor see TLS members ONLINE, a plain-HTTP member ERROR (a TCP
/// check would have passed it), and a TLS member that stops ERROR while the other stays ONLINE.
async fn tls_health_monitors(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (x_port, x_task) = tls_backend("x").await;
    let (y_port, y_task) = tls_backend("y").await;
    let plain = Backend::start("z").await;
    let members = || {
        vec![
            member_at(i32::from(x_port)),
            member_at(i32::from(y_port)),
            member_at(plain.port()),
        ]
    };
    let monitored = |kind: pb::HealthMonitorType| pb::Pool {
        healthmonitor: Some(pb::HealthMonitor {
            url_path: if kind == pb::HealthMonitorType::Https {
                "/".into()
            } else {
                String::new()
            },
            ..support::quick_monitor(kind)
        }),
        ..pool(pb::Protocol::Https, pb::LbAlgorithm::RoundRobin, members())
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "tls-checked",
            vec![
                listener(
                    pb::Protocol::Https,
                    8443,
                    monitored(pb::HealthMonitorType::Https),
                ),
                listener(
                    pb::Protocol::Https,
                    8444,
                    monitored(pb::HealthMonitorType::TlsHello),
                ),
            ],
        ),
    )
    .await;
    // Each pool's members: port -> operating status.
    let statuses = |api: &Api| {
        let api = api.clone();
        let (project, pools) = (project.clone(), created.pool_ids.clone());
        async move {
            let mut all = Vec::new();
            for pool_id in pools {
                let members = support::pool_members(&api, &project, &pool_id).await;
                all.push(
                    members
                        .iter()
                        .map(|m| (m.protocol_port, m.operating_status()))
                        .collect::<BTreeMap<_, _>>(),
                );
            }
            all
        }
    };
    let want = |x, y, z| {
        BTreeMap::from([
            (i32::from(x_port), x),
            (i32::from(y_port), y),
            (plain.port(), z),
        ])
    };
    use pb::OperatingStatus::{Error, Online};
    support::poll_until(Duration::from_secs(20), "x, y ONLINE and z ERROR", || {
        let expected = vec![want(Online, Online, Error); 2];
        let api = api.clone();
        async move { (statuses(&api).await == expected).then_some(()) }
    })
    .await;
    y_task.abort();
    support::poll_until(Duration::from_secs(20), "y ERROR too", || {
        let expected = vec![want(Online, Error, Error); 2];
        let api = api.clone();
        async move { (statuses(&api).await == expected).then_some(()) }
    })
    .await;
    // Traffic goes to the one healthy member.
    for _ in 0..4 {
        let (_, reply) = tls_get(
            &format!("{}:8443", created.vip_address),
            "member.example.com",
            "/",
        )
        .await;
        assert_eq!(reply.body, "x", "{driver}: {reply:?}");
    }
    x_task.abort();
    stack.stop().await;
}
on_each_driver!(tls_health_monitors);

// ---- UDP ----

/// Waits until the scheduler knows what the stack's device can do (its agent has registered it).
async fn capabilities_known(stack: &Stack) {
    let devices = stack.devices().await;
    support::poll_until(Duration::from_secs(10), "the device's capabilities", || {
        let mut devices = devices.clone();
        async move {
            let listed = devices
                .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
                .await
                .ok()?
                .into_inner();
            listed
                .devices
                .iter()
                .any(|d| !d.capabilities.is_empty())
                .then_some(())
        }
    })
    .await;
}

/// A UDP member that answers every datagram with its name.
async fn udp_member(name: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((_, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let _ = socket.send_to(name.as_bytes(), from).await;
        }
    });
    (port, task)
}

async fn udp_ask(socket: &tokio::net::UdpSocket, vip: &str) -> String {
    socket.send_to(b"ping", vip).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no UDP answer from {vip}"))
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_is_balanced_on_native() {
    let (stack, mut api, project) = start("native").await;
    let (port_a, a) = udp_member("a").await;
    let (port_b, b) = udp_member("b").await;
    let created = support::create_active(
        &mut api,
        &project,
        single("datagrams", pb::Protocol::Udp, 5353, &[port_a, port_b]),
    )
    .await;
    let vip = format!("{}:5353", created.vip_address);
    // Each new client (source port) is a new session: sessions alternate between members.
    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        *seen.entry(udp_ask(&client, &vip).await).or_insert(0usize) += 1;
    }
    assert_eq!(seen, split(&[("a", 5), ("b", 5)]));
    // One client keeps its member.
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = udp_ask(&client, &vip).await;
    for _ in 0..5 {
        assert_eq!(udp_ask(&client, &vip).await, first);
    }
    a.abort();
    b.abort();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lbaas_no_haproxy,
    ignore = "haproxy is not installed (apt-get install haproxy)"
)]
async fn udp_is_refused_where_no_driver_supports_it() {
    let (stack, mut api, project) = start("haproxy").await;
    capabilities_known(&stack).await;
    let refused = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(single("datagrams", pb::Protocol::Udp, 5353, &[53])),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let fields = support::violations(&refused);
    assert!(
        fields.contains(&"load_balancer.listeners[0].protocol".to_owned()),
        "{fields:?}: {}",
        refused.message()
    );
    assert!(
        refused.message().contains("protocol:UDP"),
        "{}",
        refused.message()
    );
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.load_balancers.is_empty(),
        "a refused load balancer was stored"
    );
    stack.stop().await;
}

/// A mixed fleet (an HAProxy device and a native one): UDP load balancers go only to the device
/// whose driver can serve them, even where least-loaded would pick the other; what both can serve
/// still goes to the less loaded device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lbaas_no_haproxy,
    ignore = "haproxy is not installed (apt-get install haproxy)"
)]
async fn placement_follows_capabilities() {
    let (mut stack, mut api, project) = start("haproxy").await;
    capabilities_known(&stack).await;
    let (_, native_cidr) = stack.add_agent_with_driver("udp-host", "native").await;
    let native_net: ipnet::IpNet = native_cidr.parse().unwrap();
    let haproxy_net: ipnet::IpNet = stack.vip_cidr.parse().unwrap();
    let (port_a, a) = udp_member("a").await;
    let udp = |name: &str| single(name, pb::Protocol::Udp, 5353, &[port_a]);
    let mut vips = Vec::new();
    for i in 0..3 {
        let created = support::create_active(&mut api, &project, udp(&format!("udp-{i}"))).await;
        let vip: IpAddr = created.vip_address.parse().unwrap();
        assert!(
            native_net.contains(&vip),
            "UDP load balancer {i} placed at {vip}, outside the native device's {native_net}"
        );
        vips.push(vip);
    }
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(udp_ask(&client, &format!("{}:5353", vips[2])).await, "a");
    // An HTTP load balancer can go anywhere: the HAProxy device, empty, is the less loaded.
    let backend = Backend::start("web").await;
    let web = support::create_active(
        &mut api,
        &project,
        single("web", pb::Protocol::Http, 8080, &[backend.addr.port()]),
    )
    .await;
    let vip: IpAddr = web.vip_address.parse().unwrap();
    assert!(
        haproxy_net.contains(&vip),
        "{vip} not on the HAProxy device"
    );
    assert_eq!(get(&format!("{vip}:8080"), "/", &[]).await.body, "web");
    a.abort();
    stack.stop().await;
}

// ---- the protocol x algorithm x driver matrix, and combinations refused ----

/// The pool protocol a listener protocol takes.
fn pool_protocol_for(listener: pb::Protocol) -> pb::Protocol {
    match listener {
        pb::Protocol::TerminatedHttps => pb::Protocol::Http,
        other => other,
    }
}

async fn protocol_algorithm_matrix(db: support::Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let mut certs = stack.certificate_client().await;
    let cert = generate(&["matrix.example.com"]);
    let cert_id = certs
        .create_certificate(in_project(
            &project,
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    certificate_pem: cert.cert_pem,
                    private_key_pem: cert.key_pem,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    capabilities_known(&stack).await;
    let supported = |p: pb::Protocol| !(driver == "haproxy" && p == pb::Protocol::Udp);
    let mut port = 7000;
    for protocol in [
        pb::Protocol::Tcp,
        pb::Protocol::Http,
        pb::Protocol::Https,
        pb::Protocol::TerminatedHttps,
        pb::Protocol::Udp,
    ] {
        for algorithm in [
            pb::LbAlgorithm::RoundRobin,
            pb::LbAlgorithm::LeastConnections,
            pb::LbAlgorithm::SourceIp,
        ] {
            port += 1;
            let mut l = listener(
                protocol,
                port,
                pool(pool_protocol_for(protocol), algorithm, vec![member_at(9)]),
            );
            if protocol == pb::Protocol::TerminatedHttps {
                l.default_tls_container_ref = cert_id.clone();
            }
            let what = format!("{driver}: {protocol:?} x {algorithm:?}");
            let created = api
                .create_load_balancer(in_project(
                    &project,
                    pb::CreateLoadBalancerRequest {
                        load_balancer: Some(lb(&format!("m{port}"), vec![l])),
                        request_id: String::new(),
                    },
                ))
                .await;
            if supported(protocol) {
                let created = created
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .into_inner();
                let settled = wait_settled(&api, &project, &created.id).await;
                assert_eq!(
                    settled.provisioning_status(),
                    pb::ProvisioningStatus::Active,
                    "{what}: {}",
                    settled.status_reason
                );
                api.delete_load_balancer(in_project(
                    &project,
                    pb::DeleteLoadBalancerRequest {
                        id: created.id,
                        cascade: true,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
            } else {
                let status = created.expect_err(&what);
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
                assert!(
                    support::violations(&status)
                        .contains(&"load_balancer.listeners[0].protocol".to_owned()),
                    "{what}: {status:?}"
                );
            }
        }
    }
    stack.stop().await;
}
on_both_databases!(matrix_on_haproxy => protocol_algorithm_matrix("haproxy"), haproxy = true);
on_both_databases!(matrix_on_native => protocol_algorithm_matrix("native"), haproxy = false);

use support::Db;

/// Combinations no driver can serve are refused with the field named, and nothing is stored.
async fn invalid_combinations_refused(db: Db) {
    use pb::{Protocol as P, SessionPersistenceType as S};
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let with_persistence = |protocol: P, kind: S, cookie: &str| pb::Pool {
        session_persistence: Some(pb::SessionPersistence {
            r#type: kind as i32,
            cookie_name: cookie.into(),
        }),
        ..pool(protocol, pb::LbAlgorithm::RoundRobin, vec![])
    };
    let headers = |l: pb::Listener| pb::Listener {
        insert_headers: [("X-Forwarded-For".to_owned(), "true".to_owned())]
            .into_iter()
            .collect(),
        ..l
    };
    let tcp_pool = || pool(P::Tcp, pb::LbAlgorithm::RoundRobin, vec![]);
    let http_pool = || pool(P::Http, pb::LbAlgorithm::RoundRobin, vec![]);
    let some_id = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(&str, pb::Listener, &str)> = vec![
        (
            "HTTP_COOKIE on a TCP pool",
            listener(P::Tcp, 80, with_persistence(P::Tcp, S::HttpCookie, "")),
            "load_balancer.listeners[0].default_pool.session_persistence.type",
        ),
        (
            "APP_COOKIE without a cookie name",
            http(80, with_persistence(P::Http, S::AppCookie, "")),
            "load_balancer.listeners[0].default_pool.session_persistence.cookie_name",
        ),
        (
            "a cookie name without APP_COOKIE",
            http(80, with_persistence(P::Http, S::SourceIp, "JSESSIONID")),
            "load_balancer.listeners[0].default_pool.session_persistence.cookie_name",
        ),
        (
            "headers on a TCP listener",
            headers(listener(P::Tcp, 80, tcp_pool())),
            "load_balancer.listeners[0].insert_headers",
        ),
        (
            "an unknown header",
            pb::Listener {
                insert_headers: [("X-Evil".to_owned(), "true".to_owned())]
                    .into_iter()
                    .collect(),
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].insert_headers[X-Evil]",
        ),
        (
            "a TCP pool behind a UDP listener",
            listener(P::Udp, 53, tcp_pool()),
            "load_balancer.listeners[0].default_pool.protocol",
        ),
        (
            "a TCP pool behind an HTTP listener",
            http(80, tcp_pool()),
            "load_balancer.listeners[0].default_pool.protocol",
        ),
        (
            "TERMINATED_HTTPS without a certificate",
            listener(P::TerminatedHttps, 443, http_pool()),
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "a certificate on an HTTP listener",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "a certificate that does not exist",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "re-encryption on a TCP pool",
            listener(
                P::Tcp,
                80,
                pb::Pool {
                    tls_enabled: true,
                    ..tcp_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.tls_enabled",
        ),
        (
            "a bad CIDR",
            pb::Listener {
                allowed_cidrs: vec!["10.0.0.0/33".into()],
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].allowed_cidrs[0]",
        ),
        (
            "a monitor on a UDP pool",
            listener(
                P::Udp,
                53,
                pb::Pool {
                    healthmonitor: Some(pb::HealthMonitor {
                        r#type: pb::HealthMonitorType::Tcp as i32,
                        delay_s: 1,
                        timeout_s: 1,
                        max_retries: 1,
                        ..Default::default()
                    }),
                    ..pool(P::Udp, pb::LbAlgorithm::RoundRobin, vec![])
                },
            ),
            "load_balancer.listeners[0].default_pool.healthmonitor",
        ),
        (
            "an unknown ALPN protocol",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                alpn_protocols: vec!["h2".into(), "spdy/3".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].alpn_protocols[1]",
        ),
        (
            "an unknown TLS version",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_versions: vec!["TLSv1.2".into(), "TLSv2".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "TLS versions with a gap",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_versions: vec!["TLSv1.1".into(), "TLSv1.3".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "an unknown cipher",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_ciphers: "ECDHE-RSA-AES128-GCM-SHA256:RC4-MD5".into(),
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_ciphers",
        ),
        (
            "TLS options on an HTTP listener",
            pb::Listener {
                tls_versions: vec!["TLSv1.3".into()],
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "an unknown ALPN protocol on a pool",
            http(
                80,
                pb::Pool {
                    tls_enabled: true,
                    alpn_protocols: vec!["h3".into()],
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols[0]",
        ),
        (
            "h2 among others on a clear-text pool (nothing negotiates)",
            http(
                80,
                pb::Pool {
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols",
        ),
        (
            "ALPN on a TCP pool",
            listener(
                P::Tcp,
                80,
                pb::Pool {
                    alpn_protocols: vec!["h2".into()],
                    ..tcp_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols",
        ),
        (
            "an unknown cipher on a pool",
            http(
                80,
                pb::Pool {
                    tls_enabled: true,
                    tls_ciphers: "NULL-SHA".into(),
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.tls_ciphers",
        ),
    ];
    for (what, l, field) in cases {
        let status = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb("bad", vec![l])),
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        let fields = support::violations(&status);
        assert!(fields.contains(&field.to_owned()), "{what}: {fields:?}");
    }

    // L7 policies need an HTTP listener; a rule's value cannot carry config syntax.
    let tcp_lb = support::create_active(
        &mut api,
        &project,
        lb("tcp", vec![listener(P::Tcp, 80, tcp_pool())]),
    )
    .await;
    let status = api
        .create_l7_policy(in_project(
            &project,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: tcp_lb.listener_ids[0].clone(),
                    action: pb::L7PolicyAction::Reject as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(support::violations(&status), vec!["l7policy.listener_id"]);
    let http_lb =
        support::create_active(&mut api, &project, lb("http", vec![http(80, http_pool())])).await;
    let status = api
        .create_l7_policy(in_project(
            &project,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: http_lb.listener_ids[0].clone(),
                    action: pb::L7PolicyAction::Reject as i32,
                    rules: vec![rule(
                        pb::L7RuleType::Path,
                        pb::L7RuleCompareType::EqualTo,
                        "",
                        "/x\n    server evil 10.0.0.1:80",
                        false,
                    )],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&status),
        vec!["l7policy.rules[0].value"]
    );

    // Nothing refused was stored.
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.load_balancers.len(), 2);
    let policies = api
        .list_l7_policies(in_project(&project, pb::ListL7PoliciesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(policies.l7policies.is_empty());
    stack.stop().await;
}
on_both_databases!(invalid_combinations_refused, haproxy = false);

// ---- client source IP: PROXY and PROXYV2 pools ----

/// A member behind a PROXY pool: it reads the PROXY protocol header (version 1 or 2) at the start
/// of each connection, then answers one HTTP request with `v<version> <client address>` from the
/// header. A connection without a header gets nothing. Counts the requests for /health (the
/// health checks) that came with a header.
async fn proxy_aware_member() -> (
    u16,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = checks.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let parsed = loop {
                    if let Some(found) = parse_proxy_header(&seen) {
                        break found;
                    }
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if seen.len() > 65536 {
                        return;
                    }
                };
                let Some((version, client, used)) = parsed else {
                    return;
                };
                let mut rest = seen[used..].to_vec();
                while !rest.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => rest.extend_from_slice(&buf[..n]),
                    }
                }
                if rest.starts_with(b"GET /health ") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let body = match client {
                    Some(client) => format!("v{version} {client}"),
                    None => format!("v{version} local"),
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, checks, task)
}

/// `None` while more bytes are needed; `Some(None)` for a connection that opens without a header;
/// otherwise the version, the client's address (`None` for the load balancer's own connections,
/// its health checks: v1 `PROXY UNKNOWN`, v2 LOCAL) and the header's length.
#[allow(clippy::option_option)]
fn parse_proxy_header(seen: &[u8]) -> Option<Option<(u8, Option<IpAddr>, usize)>> {
    const V2: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    if seen.len() < 12 {
        return None;
    }
    if seen.starts_with(b"PROXY ") {
        let end = seen.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&seen[..end]).ok()?;
        if line == "PROXY UNKNOWN" || line.starts_with("PROXY UNKNOWN ") {
            return Some(Some((1, None, end + 2)));
        }
        let client = line.split(' ').nth(2).and_then(|a| a.parse().ok());
        return Some(client.map(|c| (1, Some(c), end + 2)));
    }
    if seen[..12] == V2 {
        if seen.len() < 16 {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([seen[14], seen[15]]));
        if seen.len() < 16 + length {
            return None;
        }
        let client = match (seen[12], seen[13]) {
            // LOCAL: the proxy's own connection, no addresses.
            (0x20, _) => None,
            (0x21, 0x11) => Some(IpAddr::from(<[u8; 4]>::try_from(&seen[16..20]).ok()?)),
            (0x21, 0x21) => Some(IpAddr::from(<[u8; 16]>::try_from(&seen[16..32]).ok()?)),
            _ => return Some(None),
        };
        return Some(Some((2, client, 16 + length)));
    }
    Some(None)
}

/// PROXY and PROXYV2 pools: the member learns the client's address from the header, behind an
/// HTTP and a TCP listener; health checks pass (they carry the header too); a listener cannot
/// speak PROXY, and a UDP listener cannot use a PROXY pool.
async fn client_source_ip(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, checks, _member) = proxy_aware_member().await;
    let proxied = |protocol: pb::Protocol| pb::Pool {
        healthmonitor: Some(pb::HealthMonitor {
            url_path: "/health".into(),
            ..support::quick_monitor(pb::HealthMonitorType::Http)
        }),
        ..pool(
            protocol,
            pb::LbAlgorithm::RoundRobin,
            vec![member_at(i32::from(port))],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "source-ip",
            vec![
                http(8091, proxied(pb::Protocol::Proxy)),
                listener(pb::Protocol::Tcp, 8092, proxied(pb::Protocol::Proxyv2)),
            ],
        ),
    )
    .await;
    // The health checks carry the header (the member counts only those) and pass: after a few
    // (one failure would mark it down), the member is ONLINE in both pools.
    support::poll_until(
        Duration::from_secs(20),
        "health checks with a header",
        || {
            let seen = checks.load(std::sync::atomic::Ordering::SeqCst);
            async move { (seen >= 4).then_some(()) }
        },
    )
    .await;
    support::poll_until(Duration::from_secs(20), "the member ONLINE", || {
        let (api, project, pools) = (api.clone(), project.clone(), created.pool_ids.clone());
        async move {
            for pool_id in pools {
                let members = support::pool_members(&api, &project, &pool_id).await;
                if members[0].operating_status() != pb::OperatingStatus::Online {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let client = IpAddr::from([127, 0, 0, 77]);
    for (listener_port, version) in [(8091, "v1"), (8092, "v2")] {
        let vip = format!("{}:{listener_port}", created.vip_address);
        for _ in 0..3 {
            let reply = get_from(&vip, "/", &[], Some(client)).await.unwrap();
            assert_eq!(reply.status, 200, "{driver} {vip}: {reply:?}");
            assert_eq!(reply.body, format!("{version} {client}"), "{driver} {vip}");
        }
    }

    // Refused: a PROXY listener; a PROXY pool behind a UDP listener.
    for (listener_protocol, pool_protocol, field) in [
        (
            pb::Protocol::Proxy,
            pb::Protocol::Tcp,
            "load_balancer.listeners[0].protocol",
        ),
        (
            pb::Protocol::Udp,
            pb::Protocol::Proxy,
            "load_balancer.listeners[0].default_pool.protocol",
        ),
    ] {
        let refused = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb(
                        "bad",
                        vec![listener(
                            listener_protocol,
                            9000,
                            pool(pool_protocol, pb::LbAlgorithm::RoundRobin, vec![]),
                        )],
                    )),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        let fields = support::violations(&refused);
        assert!(fields.iter().any(|f| f == field), "{field}: {fields:?}");
    }
    stack.stop().await;
}
on_each_driver!(client_source_ip);

// ---- health checks: HTTP version and Host ----

/// A member that answers every request with 200 and records the request line and Host header
/// of each request for /health (the health checks).
async fn recording_member() -> (
    u16,
    Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                if line.starts_with("GET /health ") {
                    let host = text
                        .lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
                                .map(|(_, v)| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    recorded.lock().unwrap().push(format!("{line} host={host}"));
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, seen, task)
}

/// HTTP monitors send the HTTP version and Host header they are given (Octavia's http_version and
/// domain_name); a Host without HTTP/1.1, a bad host name or version, and those fields on a TCP
/// monitor are refused with their fields.
async fn monitor_http_version_and_host(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, seen, _member) = recording_member().await;
    let monitored = pb::Pool {
        healthmonitor: Some(pb::HealthMonitor {
            url_path: "/health".into(),
            http_version: 1.1,
            domain_name: "health.example.com".into(),
            ..support::quick_monitor(pb::HealthMonitorType::Http)
        }),
        ..pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![member_at(i32::from(port))],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb("checked", vec![http(8095, monitored)]),
    )
    .await;
    support::poll_until(Duration::from_secs(20), "a health check", || {
        let first = seen.lock().unwrap().first().cloned();
        async move { first }
    })
    .await;
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(
        first, "GET /health HTTP/1.1 host=health.example.com",
        "{driver}"
    );
    // The monitor reads back as given.
    let monitors = api
        .list_health_monitors(in_project(
            &project,
            pb::ListHealthMonitorsRequest {
                page_size: 10,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .health_monitors;
    assert_eq!(monitors.len(), 1);
    assert!((monitors[0].http_version - 1.1).abs() < f64::EPSILON);
    assert_eq!(monitors[0].domain_name, "health.example.com");
    let _ = created;

    for (monitor, field) in [
        (
            pb::HealthMonitor {
                domain_name: "health.example.com".into(),
                ..support::quick_monitor(pb::HealthMonitorType::Http)
            },
            "domain_name",
        ),
        (
            pb::HealthMonitor {
                http_version: 2.0,
                ..support::quick_monitor(pb::HealthMonitorType::Http)
            },
            "http_version",
        ),
        (
            pb::HealthMonitor {
                http_version: 1.1,
                domain_name: "bad host\nname".into(),
                ..support::quick_monitor(pb::HealthMonitorType::Http)
            },
            "domain_name",
        ),
        (
            pb::HealthMonitor {
                domain_name: "health.example.com".into(),
                ..support::quick_monitor(pb::HealthMonitorType::Tcp)
            },
            "type",
        ),
    ] {
        let refused = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb(
                        "bad",
                        vec![http(
                            9001,
                            pb::Pool {
                                healthmonitor: Some(monitor),
                                ..pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, vec![])
                            },
                        )],
                    )),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        let want = format!("load_balancer.listeners[0].default_pool.healthmonitor.{field}");
        let fields = support::violations(&refused);
        assert!(fields.contains(&want), "{want}: {fields:?}");
    }
    stack.stop().await;
}
on_each_driver!(monitor_http_version_and_host);

use grpc::{grpc_through_terminated_https, legacy_tls};
on_each_driver!(grpc_through_terminated_https);
on_each_driver!(legacy_tls);
