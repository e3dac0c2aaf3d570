//! UDP listeners on the native data plane, refused where no driver has them, placement by
//! capability, and UDP pools' health monitors (UDP-CONNECT, and TCP at a member's monitor port).
use super::*;

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

/// UDP pools are health checked (Octavia's UDP-CONNECT; a TCP monitor at a member's monitor
/// port works too): a member whose socket closes answers ICMP port unreachable, goes ERROR and
/// new sessions go to the other; monitors a UDP pool cannot take, and UDP-CONNECT on a TCP pool,
/// are refused with the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_members_are_health_checked() {
    let (stack, mut api, project) = start("native").await;
    let (port_a, a) = udp_member("a").await;
    let (port_b, b) = udp_member("b").await;
    let mut spec = single("checked", pb::Protocol::Udp, 5354, &[port_a, port_b]);
    let pool = spec.listeners[0].default_pool.as_mut().unwrap();
    pool.members[0].name = "a".into();
    pool.members[1].name = "b".into();
    pool.healthmonitor = Some(support::quick_monitor(pb::HealthMonitorType::UdpConnect));
    let created = support::create_active(&mut api, &project, spec).await;
    let pool_id = created.pool_ids[0].clone();
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
    let monitors = api
        .list_health_monitors(in_project(
            &project,
            pb::ListHealthMonitorsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .health_monitors;
    assert_eq!(monitors[0].r#type(), pb::HealthMonitorType::UdpConnect);

    // a's socket closes: port unreachable, ERROR, and new sessions go to b only.
    a.abort();
    let _ = a.await;
    members_become(
        &api,
        &project,
        &pool_id,
        &[("a", pb::OperatingStatus::Error)],
        "a ERROR",
    )
    .await;
    let vip = format!("{}:5354", created.vip_address);
    for _ in 0..6 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(udp_ask(&client, &vip).await, "b");
    }

    // Refused: an HTTPS monitor on a UDP pool; UDP-CONNECT on a TCP pool.
    for (protocol, monitor) in [
        (pb::Protocol::Udp, pb::HealthMonitorType::Https),
        (pb::Protocol::Tcp, pb::HealthMonitorType::UdpConnect),
    ] {
        let mut spec = single("refused", protocol, 5355, &[port_b]);
        spec.listeners[0]
            .default_pool
            .as_mut()
            .unwrap()
            .healthmonitor = Some(support::quick_monitor(monitor));
        let refused = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(spec),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert_eq!(
            support::violations(&refused),
            vec!["load_balancer.listeners[0].default_pool.healthmonitor.type".to_owned()],
            "{monitor:?} on {protocol:?}"
        );
    }

    // A TCP monitor on a UDP pool, at the member's TCP health port (monitor_port).
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_port = health.local_addr().unwrap().port();
    let health_task = tokio::spawn(async move {
        while let Ok((socket, _)) = health.accept().await {
            drop(socket);
        }
    });
    let mut spec = single("tcp-checked", pb::Protocol::Udp, 5356, &[port_b]);
    let pool = spec.listeners[0].default_pool.as_mut().unwrap();
    pool.members[0].name = "b".into();
    pool.members[0].monitor_port = i32::from(health_port);
    pool.healthmonitor = Some(support::quick_monitor(pb::HealthMonitorType::Tcp));
    let created = support::create_active(&mut api, &project, spec).await;
    let tcp_pool = created.pool_ids[0].clone();
    members_become(
        &api,
        &project,
        &tcp_pool,
        &[("b", pb::OperatingStatus::Online)],
        "b ONLINE by TCP",
    )
    .await;
    health_task.abort();
    let _ = health_task.await;
    members_become(
        &api,
        &project,
        &tcp_pool,
        &[("b", pb::OperatingStatus::Error)],
        "b ERROR by TCP",
    )
    .await;
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
