//! Client source IP: PROXY and PROXYV2 pools, the member reading the client's address from the
//! header.
use super::*;

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
