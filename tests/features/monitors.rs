//! Health checks: HTTP version and Host header of HTTP monitors, seen by the member.
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
