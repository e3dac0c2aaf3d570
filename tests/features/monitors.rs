//! Health checks: HTTP version and Host header of HTTP monitors, seen by the member; members
//! checked at another address and port than their traffic's.
use super::*;

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

/// Members checked elsewhere than where traffic goes (Octavia's monitor_address and
/// monitor_port): when only the check target of member "a" dies, "a" goes ERROR and takes no
/// traffic although its traffic port still answers; cleared, "a" is checked at its own port and
/// serves again. A bad monitor address or port is refused with its field.
async fn members_are_checked_at_their_monitor_target(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let target = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let target_task = tokio::spawn(async move {
        // A TCP check only needs the connection accepted.
        while let Ok((socket, _)) = target.accept().await {
            drop(socket);
        }
    });
    let member = |name: &str, port: i32| pb::Member {
        name: name.into(),
        ..member_at(port)
    };
    let checked_elsewhere = pb::Member {
        monitor_address: "127.0.0.2".into(),
        monitor_port: i32::from(target_port),
        ..member("a", a.port())
    };
    let monitored = pb::Pool {
        healthmonitor: Some(support::quick_monitor(pb::HealthMonitorType::Tcp)),
        ..pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![checked_elsewhere, member("b", b.port())],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb("elsewhere", vec![http(8096, monitored)]),
    )
    .await;
    let pool_id = created.pool_ids[0].clone();
    let vip = format!("{}:8096", created.vip_address);
    members_become(
        &api,
        &project,
        &pool_id,
        &[
            ("a", pb::OperatingStatus::Online),
            ("b", pb::OperatingStatus::Online),
        ],
        "both members ONLINE",
    )
    .await;
    let stored = support::pool_members(&api, &project, &pool_id).await;
    let a_member = stored.iter().find(|m| m.name == "a").unwrap().clone();
    assert_eq!(a_member.monitor_address, "127.0.0.2");
    assert_eq!(a_member.monitor_port, i32::from(target_port));

    // The check target dies; a's traffic port does not.
    target_task.abort();
    let _ = target_task.await;
    members_become(
        &api,
        &project,
        &pool_id,
        &[
            ("a", pb::OperatingStatus::Error),
            ("b", pb::OperatingStatus::Online),
        ],
        "a ERROR by its check target",
    )
    .await;
    assert_eq!(support::http_get(&a.addr.to_string()).await.unwrap(), "a");
    let spread = support::spread(&vip, 6).await;
    assert_eq!(spread.get("b"), Some(&6), "{driver}: {spread:?}");

    // Cleared: checked at its own port again, and back in rotation.
    api.update_member(in_project(
        &project,
        pb::UpdateMemberRequest {
            member: Some(pb::Member {
                id: a_member.id.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["monitor_address".into(), "monitor_port".into()],
            }),
        },
    ))
    .await
    .unwrap();
    members_become(
        &api,
        &project,
        &pool_id,
        &[
            ("a", pb::OperatingStatus::Online),
            ("b", pb::OperatingStatus::Online),
        ],
        "a ONLINE at its own port",
    )
    .await;
    let spread = support::spread(&vip, 6).await;
    assert_eq!(spread.get("a"), Some(&3), "{driver}: {spread:?}");

    for (bad, field) in [
        (
            pb::Member {
                monitor_address: "not-an-ip".into(),
                ..member_at(1)
            },
            "monitor_address",
        ),
        (
            pb::Member {
                monitor_port: 70_000,
                ..member_at(1)
            },
            "monitor_port",
        ),
        (
            pb::Member {
                monitor_address: "224.0.0.1".into(),
                ..member_at(1)
            },
            "monitor_address",
        ),
    ] {
        let refused = api
            .create_member(in_project(
                &project,
                pb::CreateMemberRequest {
                    member: Some(pb::Member {
                        pool_id: pool_id.clone(),
                        ..bad
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert_eq!(
            support::violations(&refused),
            vec![format!("member.{field}")]
        );
    }
    assert_eq!(
        support::pool_members(&api, &project, &pool_id).await.len(),
        2,
        "nothing stored"
    );
    stack.stop().await;
}
on_each_driver!(members_are_checked_at_their_monitor_target);
