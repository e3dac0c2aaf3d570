//! Session persistence: SOURCE_IP, HTTP_COOKIE and APP_COOKIE keep a client on its member.
use super::*;

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
