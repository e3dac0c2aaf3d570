//! Access control and headers: allowed CIDRs (a second loopback address as the outsider) and
//! X-Forwarded-*.
use super::*;

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
