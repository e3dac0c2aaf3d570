//! Every method of LoadBalancerService on one tree through HAProxy, the address checks, and idempotent creates.
use super::*;

/// Every method of LoadBalancerService on one tree, through HAProxy.
async fn crud_of_every_kind(db: Db) {
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
        pb::LoadBalancer {
            tags: vec!["web".into(), "blue".into()],
            ..populated("crud", 8080, vec![member_at(a.port())])
        },
    )
    .await;
    let lb = active(&api, &project, &lb.id).await;
    let vip = format!("{}:8080", lb.vip_address);
    assert_eq!(spread(&vip, 4).await.get("a"), Some(&4));

    // Update the load balancer: rename with a mask; a stale etag is ABORTED; an immutable path is refused.
    let renamed = api
        .update_load_balancer(in_project(
            &project,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    id: lb.id.clone(),
                    name: "crud-renamed".into(),
                    etag: lb.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "crud-renamed");
    assert_eq!(
        renamed.tags,
        vec!["web".to_string(), "blue".to_string()],
        "fields outside the mask are kept"
    );
    assert_eq!(renamed.generation, lb.generation + 1);
    let stale = api
        .update_load_balancer(in_project(
            &project,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    id: lb.id.clone(),
                    name: "nope".into(),
                    etag: lb.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let immutable = api
        .update_load_balancer(in_project(
            &project,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    id: lb.id.clone(),
                    vip_address: "127.0.0.9".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["vip_address"]),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(immutable.code(), Code::InvalidArgument);
    assert_eq!(
        support::violations(&immutable),
        vec!["update_mask".to_string()]
    );
    active(&api, &project, &lb.id).await;

    // List filters and ordering.
    let other = create(
        &mut api,
        &project,
        pb::LoadBalancer {
            name: "another".into(),
            tags: vec!["web".into()],
            ..Default::default()
        },
    )
    .await;
    active(&api, &project, &other.id).await;
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                name: "another".into(),
                ..Default::default()
            }
        )
        .await,
        vec!["another"]
    );
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                tags: vec!["blue".into()],
                ..Default::default()
            }
        )
        .await,
        vec!["crud-renamed"]
    );
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                tags: vec!["web".into()],
                order_by: "name".into(),
                ..Default::default()
            }
        )
        .await,
        vec!["another", "crud-renamed"]
    );
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                order_by: "name desc".into(),
                ..Default::default()
            }
        )
        .await,
        vec!["crud-renamed", "another"]
    );
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                vip_address: lb.vip_address.clone(),
                ..Default::default()
            }
        )
        .await,
        vec!["crud-renamed"]
    );
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                provisioning_status: Prov::Active as i32,
                order_by: "create_time desc".into(),
                ..Default::default()
            }
        )
        .await,
        vec!["another", "crud-renamed"]
    );

    // Listeners: a second one on port 8081 with its own pool, then update and delete.
    let listener = api
        .create_listener(in_project(
            &project,
            pb::CreateListenerRequest {
                listener: Some(pb::Listener {
                    loadbalancer_id: lb.id.clone(),
                    protocol: pb::Protocol::Http as i32,
                    protocol_port: 8081,
                    name: "second".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let duplicate_port = api
        .create_listener(in_project(
            &project,
            pb::CreateListenerRequest {
                listener: Some(pb::Listener {
                    loadbalancer_id: lb.id.clone(),
                    protocol: pb::Protocol::Tcp as i32,
                    protocol_port: 8081,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate_port.code(), Code::AlreadyExists);
    let pool = api
        .create_pool(in_project(
            &project,
            pb::CreatePoolRequest {
                pool: Some(pb::Pool {
                    loadbalancer_id: lb.id.clone(),
                    listener_id: listener.id.clone(),
                    ..http_pool(vec![member_at(b.port())])
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let got = api
        .get_listener(in_project(
            &project,
            pb::GetListenerRequest {
                id: listener.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.default_pool_id, pool.id);
    active(&api, &project, &lb.id).await;
    let vip2 = format!("{}:8081", lb.vip_address);
    assert_eq!(spread(&vip2, 2).await.get("b"), Some(&2));
    let updated = api
        .update_listener(in_project(
            &project,
            pb::UpdateListenerRequest {
                listener: Some(pb::Listener {
                    id: listener.id.clone(),
                    connection_limit: 100,
                    name: "second-renamed".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["connection_limit", "name"]),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.connection_limit, updated.name.as_str()),
        (100, "second-renamed")
    );
    let listeners = api
        .list_listeners(in_project(
            &project,
            pb::ListListenersRequest {
                loadbalancer_id: lb.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listeners.listeners.len(), 2);

    // Pools: update the algorithm; health monitor CRUD.
    let pool = api
        .update_pool(in_project(
            &project,
            pb::UpdatePoolRequest {
                pool: Some(pb::Pool {
                    id: pool.id.clone(),
                    lb_algorithm: pb::LbAlgorithm::LeastConnections as i32,
                    ..Default::default()
                }),
                update_mask: mask(&["lb_algorithm"]),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool.lb_algorithm(), pb::LbAlgorithm::LeastConnections);
    let monitor = api
        .create_health_monitor(in_project(
            &project,
            pb::CreateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    pool_id: pool.id.clone(),
                    r#type: pb::HealthMonitorType::Http as i32,
                    delay_s: 2,
                    timeout_s: 1,
                    max_retries: 2,
                    url_path: "/healthz".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(monitor.url_path, "/healthz");
    let monitor = api
        .update_health_monitor(in_project(
            &project,
            pb::UpdateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    id: monitor.id.clone(),
                    delay_s: 3,
                    ..Default::default()
                }),
                update_mask: mask(&["delay_s"]),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(monitor.delay_s, 3);
    let bad_monitor = api
        .update_health_monitor(in_project(
            &project,
            pb::UpdateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    id: monitor.id.clone(),
                    timeout_s: 10,
                    ..Default::default()
                }),
                update_mask: mask(&["timeout_s"]),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&bad_monitor),
        vec!["health_monitor.timeout_s".to_string()]
    );
    let monitors = api
        .list_health_monitors(in_project(
            &project,
            pb::ListHealthMonitorsRequest {
                pool_id: pool.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(monitors.health_monitors.len(), 1);
    assert_eq!(
        api.get_pool(in_project(
            &project,
            pb::GetPoolRequest {
                id: pool.id.clone()
            }
        ))
        .await
        .unwrap()
        .into_inner()
        .healthmonitor_id,
        monitor.id
    );
    let lb_now = active(&api, &project, &lb.id).await;
    let got = api
        .get_health_monitor(in_project(
            &project,
            pb::GetHealthMonitorRequest {
                id: monitor.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.provisioning_status(), Prov::Active);
    api.delete_health_monitor(in_project(
        &project,
        pb::DeleteHealthMonitorRequest {
            id: monitor.id.clone(),
        },
    ))
    .await
    .unwrap();

    // Members: update the weight, then a batch update that replaces the list.
    let members = api
        .list_members(in_project(
            &project,
            pb::ListMembersRequest {
                pool_id: pool.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    let member = api
        .update_member(in_project(
            &project,
            pb::UpdateMemberRequest {
                member: Some(pb::Member {
                    id: members[0].id.clone(),
                    weight: Some(5),
                    etag: members[0].etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["weight"]),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(member.weight, Some(5));
    let batch = api
        .batch_update_members(in_project(
            &project,
            pb::BatchUpdateMembersRequest {
                pool_id: pool.id.clone(),
                members: vec![
                    pb::Member {
                        weight: Some(7),
                        ..member_at(b.port())
                    },
                    member_at(a.port()),
                ],
                additive_only: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.members.len(), 2);
    let kept = batch
        .members
        .iter()
        .find(|m| m.protocol_port == b.port())
        .unwrap();
    assert_eq!(
        (kept.id.as_str(), kept.weight),
        (member.id.as_str(), Some(7)),
        "matched on address and port, so updated in place"
    );
    let batch = api
        .batch_update_members(in_project(
            &project,
            pb::BatchUpdateMembersRequest {
                pool_id: pool.id.clone(),
                members: vec![member_at(a.port())],
                additive_only: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.members.len(), 1, "members not listed are removed");
    let batch = api
        .batch_update_members(in_project(
            &project,
            pb::BatchUpdateMembersRequest {
                pool_id: pool.id.clone(),
                members: vec![member_at(b.port())],
                additive_only: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.members.len(), 2, "additive_only keeps the others");
    active(&api, &project, &lb.id).await;
    assert_balanced(&spread(&vip2, 10).await, &["a", "b"]);
    let single = api
        .get_member(in_project(
            &project,
            pb::GetMemberRequest {
                id: batch.members[0].id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    api.delete_member(in_project(
        &project,
        pb::DeleteMemberRequest {
            id: single.id.clone(),
        },
    ))
    .await
    .unwrap();

    // The status tree.
    let tree = api
        .get_load_balancer_status_tree(in_project(
            &project,
            pb::GetLoadBalancerStatusTreeRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tree.load_balancer.unwrap().id, lb.id);
    assert_eq!(tree.listeners.len(), 2);
    assert!(tree.listeners.iter().all(|l| l.pools.len() == 1));

    // Failover: re-placed (only one device, so in place) and redeployed, still serving.
    let failing = api
        .failover_load_balancer(in_project(
            &project,
            pb::FailoverLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failing.provisioning_status(), Prov::PendingUpdate);
    assert!(failing.generation > lb_now.generation);
    active(&api, &project, &lb.id).await;
    assert_eq!(spread(&vip, 2).await.get("a"), Some(&2));

    // Deleting a listener and a pool; the load balancer without cascade is refused while it has children.
    api.delete_listener(in_project(
        &project,
        pb::DeleteListenerRequest {
            id: listener.id.clone(),
        },
    ))
    .await
    .unwrap();
    api.delete_pool(in_project(
        &project,
        pb::DeletePoolRequest {
            id: pool.id.clone(),
        },
    ))
    .await
    .unwrap();
    let refused = api
        .delete_load_balancer(in_project(
            &project,
            pb::DeleteLoadBalancerRequest {
                id: lb.id.clone(),
                cascade: false,
                etag: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    active(&api, &project, &lb.id).await;
    assert!(
        support::http_get(&vip2).await.is_err(),
        "the deleted listener still answers"
    );

    // Cascade delete of both.
    for id in [&lb.id, &other.id] {
        api.delete_load_balancer(in_project(
            &project,
            pb::DeleteLoadBalancerRequest {
                id: id.clone(),
                cascade: true,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    }
    wait_gone(&api, &project, &lb.id).await;
    wait_gone(&api, &project, &other.id).await;
    assert!(
        api.list_pools(in_project(&project, pb::ListPoolsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .pools
            .is_empty()
    );
    assert!(
        api.list_members(in_project(&project, pb::ListMembersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .members
            .is_empty()
    );
    stack.stop().await;
}
on_both_databases!(crud_of_every_kind, haproxy = true);

/// A requested VIP must be a host address of the device's range and free; members cannot be at
/// unspecified, broadcast, multicast or reserved addresses; a negative page size is refused.
/// Nothing refused is stored.
async fn addresses_are_checked(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let net: ipnet::IpNet = stack.vip_cidr.parse().unwrap();
    let with_vip = |vip: String| pb::CreateLoadBalancerRequest {
        load_balancer: Some(pb::LoadBalancer {
            vip_address: vip,
            ..populated("vip", 8080, vec![member_at(9)])
        }),
        request_id: String::new(),
    };
    for vip in [
        "8.8.8.8".to_owned(),
        "127.0.0.1".to_owned(),
        net.network().to_string(),
        net.broadcast().to_string(),
        "::1".to_owned(),
    ] {
        let refused = api
            .create_load_balancer(in_project(&project, with_vip(vip.clone())))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{vip}: {refused:?}");
        assert_eq!(
            support::violations(&refused),
            vec!["load_balancer.vip_address".to_owned()],
            "{vip}"
        );
    }
    // A host address of the range is taken; asking for it again is refused at once.
    let chosen = net.hosts().nth(9).unwrap().to_string();
    let first = api
        .create_load_balancer(in_project(&project, with_vip(chosen.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.vip_address, chosen);
    for other in [project.clone(), support::fresh_project()] {
        let held = api
            .create_load_balancer(in_project(&other, with_vip(chosen.clone())))
            .await
            .unwrap_err();
        assert_eq!(held.code(), Code::AlreadyExists, "{held:?}");
    }
    let first = active(&api, &project, &first.id).await;
    assert_eq!(first.vip_address, chosen);
    let held = api
        .create_load_balancer(in_project(&project, with_vip(chosen.clone())))
        .await
        .unwrap_err();
    assert_eq!(held.code(), Code::AlreadyExists, "{held:?}");

    // Members: whole-tree, pool, member and batch creates all refuse these addresses.
    let pool_id = first.pool_ids[0].clone();
    for address in [
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "224.0.0.1",
        "ff02::1",
        "169.254.169.254",
    ] {
        let member = pb::Member {
            address: address.into(),
            ..member_at(80)
        };
        let tree = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(populated("m", 8081, vec![member.clone()])),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(tree.code(), Code::InvalidArgument, "{address}: {tree:?}");
        assert_eq!(
            support::violations(&tree),
            vec!["load_balancer.listeners[0].default_pool.members[0].address".to_owned()],
            "{address}"
        );
        let single = api
            .create_member(in_project(
                &project,
                pb::CreateMemberRequest {
                    member: Some(pb::Member {
                        pool_id: pool_id.clone(),
                        ..member.clone()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(single.code(), Code::InvalidArgument, "{address}");
        assert_eq!(
            support::violations(&single),
            vec!["member.address".to_owned()],
            "{address}"
        );
        let batch = api
            .batch_update_members(in_project(
                &project,
                pb::BatchUpdateMembersRequest {
                    pool_id: pool_id.clone(),
                    members: vec![member_at(81), member.clone()],
                    additive_only: true,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(batch.code(), Code::InvalidArgument, "{address}");
        assert_eq!(
            support::violations(&batch),
            vec!["members[1].address".to_owned()],
            "{address}"
        );
    }
    let members = support::pool_members(&api, &project, &pool_id).await;
    assert_eq!(members.len(), 1, "a refused member was stored: {members:?}");

    // Pages: below zero is refused.
    let negative = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest {
                page_size: -1,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    assert_eq!(support::violations(&negative), vec!["page_size".to_owned()]);
    // Only the one load balancer exists.
    let all = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .load_balancers;
    assert_eq!(all.len(), 1, "{all:?}");
    stack.stop().await;
}
on_both_databases!(addresses_are_checked, haproxy = false);

/// A create retried with the same request_id returns the first result and makes nothing new, even
/// when the retries race.
async fn idempotent_creates(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let api = stack.api_client().await;
    let attempts = (0..4).map(|_| {
        let mut api = api.clone();
        let project = project.clone();
        tokio::spawn(async move {
            api.create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(populated("once", 80, vec![member_at(9000)])),
                    request_id: "req-1".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .id
        })
    });
    let ids: HashSet<String> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mut api = api.clone();
    assert_eq!(
        list_names(&mut api, &project, pb::ListLoadBalancersRequest::default()).await,
        vec!["once"]
    );
    assert_eq!(
        api.list_members(in_project(&project, pb::ListMembersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .members
            .len(),
        1
    );
    let lb_id = ids.into_iter().next().unwrap();
    let pool_id = get(&mut api, &project, &lb_id).await.unwrap().pool_ids[0].clone();
    let mut member_ids = HashSet::new();
    for _ in 0..3 {
        let m = api
            .create_member(in_project(
                &project,
                pb::CreateMemberRequest {
                    member: Some(pb::Member {
                        pool_id: pool_id.clone(),
                        ..member_at(9001)
                    }),
                    request_id: "req-m".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        member_ids.insert(m.id);
    }
    assert_eq!(member_ids.len(), 1);
    // The same request id in another project is another request.
    let elsewhere = support::fresh_project();
    api.create_load_balancer(in_project(
        &elsewhere,
        pb::CreateLoadBalancerRequest {
            load_balancer: Some(populated("twin", 80, vec![])),
            request_id: "req-1".into(),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        list_names(
            &mut api,
            &elsewhere,
            pb::ListLoadBalancersRequest::default()
        )
        .await,
        vec!["twin"]
    );
    stack.stop().await;
}
on_both_databases!(idempotent_creates, haproxy = false);
