//! Balancing: each algorithm's counts, weights (0 drains) and backup members.
use super::*;

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
