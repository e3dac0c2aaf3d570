//! Member health driving operating status, and member changes through HAProxy's runtime API.
use super::*;

/// A member whose backend stops goes ERROR and degrades its pool and load balancer, within the
/// monitor's delay times its retries plus half a second; traffic avoids it; it comes back ONLINE.
async fn member_health_drives_operating_status(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let b_port = b.addr.port();
    let mut lb_spec = populated(
        "checked",
        8080,
        vec![member_at(a.port()), member_at(b.port())],
    );
    lb_spec.listeners[0]
        .default_pool
        .as_mut()
        .unwrap()
        .healthmonitor = Some(pb::HealthMonitor {
        r#type: pb::HealthMonitorType::Http as i32,
        delay_s: 1,
        timeout_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        url_path: "/".into(),
        ..Default::default()
    });
    let lb = create(&mut api, &project, lb_spec).await;
    let lb = active(&api, &project, &lb.id).await;
    let pool_id = lb.pool_ids[0].clone();
    let member_status = |api: &Api, port: i32| {
        let api = api.clone();
        let (project, pool_id) = (project.clone(), pool_id.clone());
        async move {
            support::pool_members(&api, &project, &pool_id)
                .await
                .into_iter()
                .find(|m| m.protocol_port == port)
                .unwrap()
                .operating_status()
        }
    };
    let lb_status = |api: &Api| {
        let mut api = api.clone();
        let (project, id) = (project.clone(), lb.id.clone());
        async move {
            get(&mut api, &project, &id)
                .await
                .unwrap()
                .operating_status()
        }
    };
    poll_until(Duration::from_secs(10), "both members ONLINE", || async {
        (member_status(&api, a.port()).await == pb::OperatingStatus::Online
            && member_status(&api, b.port()).await == pb::OperatingStatus::Online)
            .then_some(())
    })
    .await;
    assert_eq!(lb_status(&api).await, pb::OperatingStatus::Online);

    drop(b);
    let stopped = std::time::Instant::now();
    poll_until(Duration::from_secs(10), "member b to go ERROR", || async {
        (member_status(&api, i32::from(b_port)).await == pb::OperatingStatus::Error).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    eprintln!(
        "member ERROR {} ms after its backend stopped (monitor: 1 s delay, 1 retry)",
        took.as_millis()
    );
    assert!(took < Duration::from_millis(1500 + 500), "took {took:?}");
    assert_eq!(lb_status(&api).await, pb::OperatingStatus::Degraded);
    let tree = api
        .get_load_balancer_status_tree(in_project(
            &project,
            pb::GetLoadBalancerStatusTreeRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    let pool = &tree.listeners[0].pools[0];
    assert_eq!(
        pool.status.as_ref().unwrap().operating_status(),
        pb::OperatingStatus::Degraded
    );
    assert_eq!(
        tree.listeners[0]
            .status
            .as_ref()
            .unwrap()
            .operating_status(),
        pb::OperatingStatus::Degraded
    );
    let vip = format!("{}:8080", lb.vip_address);
    assert_eq!(
        spread(&vip, 10).await.get("a"),
        Some(&10),
        "traffic went to the stopped member"
    );

    let _b = Backend::start_on("b", b_port).await;
    poll_until(Duration::from_secs(10), "member b back ONLINE", || async {
        (member_status(&api, i32::from(b_port)).await == pb::OperatingStatus::Online).then_some(())
    })
    .await;
    assert_eq!(lb_status(&api).await, pb::OperatingStatus::Online);
    assert_balanced(&spread(&vip, 10).await, &["a", "b"]);
    stack.stop().await;
}
on_both_databases!(member_health_on_haproxy => member_health_drives_operating_status("haproxy"), haproxy = true);
on_both_databases!(member_health_on_native => member_health_drives_operating_status("native"), haproxy = false);

/// Member add, weight, disable, enable and delete reach HAProxy through its runtime API: traffic
/// follows each change and HAProxy is never reloaded.
async fn member_changes_need_no_reload(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = create(
        &mut api,
        &project,
        populated("runtime", 8080, vec![member_at(a.port())]),
    )
    .await;
    let lb = active(&api, &project, &lb.id).await;
    let vip = format!("{}:8080", lb.vip_address);
    let pool_id = lb.pool_ids[0].clone();
    let reloads = haproxy_runtime_master_reloads(&stack).await;

    let added = api
        .create_member(in_project(
            &project,
            pb::CreateMemberRequest {
                member: Some(pb::Member {
                    pool_id: pool_id.clone(),
                    ..member_at(b.port())
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    active(&api, &project, &lb.id).await;
    assert_balanced(&spread(&vip, 10).await, &["a", "b"]);

    let set_member = |weight: Option<i32>, up: Option<bool>| pb::UpdateMemberRequest {
        member: Some(pb::Member {
            id: added.id.clone(),
            weight,
            admin_state_up: up,
            ..Default::default()
        }),
        update_mask: mask(&[if weight.is_some() {
            "weight"
        } else {
            "admin_state_up"
        }]),
    };
    api.update_member(in_project(&project, set_member(Some(3), None)))
        .await
        .unwrap();
    active(&api, &project, &lb.id).await;
    let counts = spread(&vip, 20).await;
    let b_share = counts.get("b").copied().unwrap_or(0);
    assert!(
        (13..=17).contains(&b_share),
        "after weight 3 (expect about 15 of 20): {counts:?}"
    );

    api.update_member(in_project(&project, set_member(None, Some(false))))
        .await
        .unwrap();
    active(&api, &project, &lb.id).await;
    assert_eq!(spread(&vip, 6).await.get("a"), Some(&6), "after disable");
    api.update_member(in_project(&project, set_member(None, Some(true))))
        .await
        .unwrap();
    active(&api, &project, &lb.id).await;
    assert!(spread(&vip, 8).await.contains_key("b"), "after enable");

    api.delete_member(in_project(
        &project,
        pb::DeleteMemberRequest {
            id: added.id.clone(),
        },
    ))
    .await
    .unwrap();
    active(&api, &project, &lb.id).await;
    assert_eq!(spread(&vip, 6).await.get("a"), Some(&6), "after delete");
    assert_eq!(
        haproxy_runtime_master_reloads(&stack).await,
        reloads,
        "a member change reloaded HAProxy"
    );

    // The rendered config kept up, so a structural change (which reloads) keeps the members.
    api.update_pool(in_project(
        &project,
        pb::UpdatePoolRequest {
            pool: Some(pb::Pool {
                id: pool_id.clone(),
                lb_algorithm: pb::LbAlgorithm::LeastConnections as i32,
                ..Default::default()
            }),
            update_mask: mask(&["lb_algorithm"]),
        },
    ))
    .await
    .unwrap();
    active(&api, &project, &lb.id).await;
    assert_eq!(haproxy_runtime_master_reloads(&stack).await, reloads + 1);
    assert_eq!(spread(&vip, 4).await.get("a"), Some(&4));
    stack.stop().await;
}
on_both_databases!(member_changes_need_no_reload, haproxy = true);
