//! Who sees what: project isolation and quotas.
use super::*;

/// Another project sees nothing and gets NOT_FOUND on every method; a reader cannot write.
async fn project_isolation(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let owner = support::fresh_project();
    let intruder = support::fresh_project();
    let mut api = stack.api_client().await;
    let lb = create(
        &mut api,
        &owner,
        populated("private", 80, vec![member_at(9000)]),
    )
    .await;
    let lb = active(&api, &owner, &lb.id).await;
    let listener_id = lb.listener_ids[0].clone();
    let pool_id = lb.pool_ids[0].clone();
    let member_id = api
        .list_members(in_project(
            &owner,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members[0]
        .id
        .clone();
    let monitor_id = api
        .create_health_monitor(in_project(
            &owner,
            pb::CreateHealthMonitorRequest {
                health_monitor: Some(pb::HealthMonitor {
                    pool_id: pool_id.clone(),
                    r#type: pb::HealthMonitorType::Tcp as i32,
                    delay_s: 5,
                    timeout_s: 2,
                    max_retries: 3,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let p = intruder.as_str();
    let codes: Vec<(&str, Code)> = vec![
        (
            "GetLoadBalancer",
            api.get_load_balancer(in_project(
                p,
                pb::GetLoadBalancerRequest { id: lb.id.clone() },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "UpdateLoadBalancer",
            api.update_load_balancer(in_project(
                p,
                pb::UpdateLoadBalancerRequest {
                    load_balancer: Some(pb::LoadBalancer {
                        id: lb.id.clone(),
                        name: "x".into(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DeleteLoadBalancer",
            api.delete_load_balancer(in_project(
                p,
                pb::DeleteLoadBalancerRequest {
                    id: lb.id.clone(),
                    cascade: true,
                    etag: String::new(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "GetLoadBalancerStatusTree",
            api.get_load_balancer_status_tree(in_project(
                p,
                pb::GetLoadBalancerStatusTreeRequest { id: lb.id.clone() },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "FailoverLoadBalancer",
            api.failover_load_balancer(in_project(
                p,
                pb::FailoverLoadBalancerRequest { id: lb.id.clone() },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "WatchLoadBalancer",
            api.watch_load_balancer(in_project(
                p,
                pb::WatchLoadBalancerRequest { id: lb.id.clone() },
            ))
            .await
            .err()
            .unwrap()
            .code(),
        ),
        (
            "CreateListener",
            api.create_listener(in_project(
                p,
                pb::CreateListenerRequest {
                    listener: Some(pb::Listener {
                        loadbalancer_id: lb.id.clone(),
                        protocol: pb::Protocol::Tcp as i32,
                        protocol_port: 81,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "GetListener",
            api.get_listener(in_project(
                p,
                pb::GetListenerRequest {
                    id: listener_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "UpdateListener",
            api.update_listener(in_project(
                p,
                pb::UpdateListenerRequest {
                    listener: Some(pb::Listener {
                        id: listener_id.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DeleteListener",
            api.delete_listener(in_project(
                p,
                pb::DeleteListenerRequest {
                    id: listener_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "CreatePool",
            api.create_pool(in_project(
                p,
                pb::CreatePoolRequest {
                    pool: Some(pb::Pool {
                        loadbalancer_id: lb.id.clone(),
                        ..http_pool(vec![])
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "GetPool",
            api.get_pool(in_project(
                p,
                pb::GetPoolRequest {
                    id: pool_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "UpdatePool",
            api.update_pool(in_project(
                p,
                pb::UpdatePoolRequest {
                    pool: Some(pb::Pool {
                        id: pool_id.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DeletePool",
            api.delete_pool(in_project(
                p,
                pb::DeletePoolRequest {
                    id: pool_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "CreateMember",
            api.create_member(in_project(
                p,
                pb::CreateMemberRequest {
                    member: Some(pb::Member {
                        pool_id: pool_id.clone(),
                        ..member_at(9009)
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "GetMember",
            api.get_member(in_project(
                p,
                pb::GetMemberRequest {
                    id: member_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "UpdateMember",
            api.update_member(in_project(
                p,
                pb::UpdateMemberRequest {
                    member: Some(pb::Member {
                        id: member_id.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DeleteMember",
            api.delete_member(in_project(
                p,
                pb::DeleteMemberRequest {
                    id: member_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "BatchUpdateMembers",
            api.batch_update_members(in_project(
                p,
                pb::BatchUpdateMembersRequest {
                    pool_id: pool_id.clone(),
                    members: vec![],
                    additive_only: false,
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "CreateHealthMonitor",
            api.create_health_monitor(in_project(
                p,
                pb::CreateHealthMonitorRequest {
                    health_monitor: Some(pb::HealthMonitor {
                        pool_id: pool_id.clone(),
                        r#type: pb::HealthMonitorType::Tcp as i32,
                        delay_s: 5,
                        timeout_s: 2,
                        max_retries: 3,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "GetHealthMonitor",
            api.get_health_monitor(in_project(
                p,
                pb::GetHealthMonitorRequest {
                    id: monitor_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "UpdateHealthMonitor",
            api.update_health_monitor(in_project(
                p,
                pb::UpdateHealthMonitorRequest {
                    health_monitor: Some(pb::HealthMonitor {
                        id: monitor_id.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
        (
            "DeleteHealthMonitor",
            api.delete_health_monitor(in_project(
                p,
                pb::DeleteHealthMonitorRequest {
                    id: monitor_id.clone(),
                },
            ))
            .await
            .unwrap_err()
            .code(),
        ),
    ];
    for (method, code) in codes {
        assert_eq!(code, Code::NotFound, "{method}");
    }
    assert!(
        api.list_load_balancers(in_project(p, pb::ListLoadBalancersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .load_balancers
            .is_empty()
    );
    assert!(
        api.list_listeners(in_project(
            p,
            pb::ListListenersRequest {
                loadbalancer_id: lb.id.clone(),
                ..Default::default()
            }
        ))
        .await
        .unwrap()
        .into_inner()
        .listeners
        .is_empty()
    );
    assert!(
        api.list_pools(in_project(p, pb::ListPoolsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .pools
            .is_empty()
    );
    assert!(
        api.list_members(in_project(
            p,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                ..Default::default()
            }
        ))
        .await
        .unwrap()
        .into_inner()
        .members
        .is_empty()
    );
    assert!(
        api.list_health_monitors(in_project(p, pb::ListHealthMonitorsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .health_monitors
            .is_empty()
    );
    let mut watch = api
        .watch_project(in_project(p, pb::WatchProjectRequest {}))
        .await
        .unwrap()
        .into_inner();
    api.update_load_balancer(in_project(
        &owner,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: lb.id.clone(),
                name: "still-private".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        },
    ))
    .await
    .unwrap();
    active(&api, &owner, &lb.id).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.next())
            .await
            .is_err(),
        "the intruder's watch saw the owner's change"
    );
    // Nothing changed for the owner.
    let after = get(&mut api, &owner, &lb.id).await.unwrap();
    assert_eq!(after.name, "still-private");

    // Tokens: a reader reads but cannot write; an unknown token and no credentials are UNAUTHENTICATED.
    let read = api
        .list_load_balancers(with_token(
            READER_TOKEN,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap();
    assert!(read.into_inner().load_balancers.is_empty());
    let denied = api
        .create_load_balancer(with_token(
            READER_TOKEN,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(populated("r", 80, vec![])),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = api
        .list_load_balancers(with_token("nope", pb::ListLoadBalancersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let anonymous = api
        .list_load_balancers(tonic::Request::new(pb::ListLoadBalancersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    stack.stop().await;
}
on_both_databases!(project_isolation, haproxy = false);

/// Going over a quota is RESOURCE_EXHAUSTED and persists nothing; admins set quotas (L7 policies
/// and rules included) and read the defaults.
async fn quotas(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        quota_load_balancers: 2,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let mut quota = stack.quota_client().await;
    create(&mut api, &project, populated("one", 80, vec![])).await;
    create(&mut api, &project, populated("two", 80, vec![])).await;
    let over = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(populated("three", 80, vec![])),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert_eq!(
        list_names(
            &mut api,
            &project,
            pb::ListLoadBalancersRequest {
                order_by: "name".into(),
                ..Default::default()
            }
        )
        .await,
        vec!["one", "two"]
    );
    let usage = quota
        .get_quota(in_project(&project, pb::GetQuotaRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            usage.limits.unwrap().load_balancers,
            usage.in_use.as_ref().unwrap().load_balancers,
            usage.in_use.unwrap().pools
        ),
        (2, 2, 2)
    );

    // Only an admin sets quotas.
    let set = |p: &str, load_balancers: i32, members: i32| pb::SetQuotaRequest {
        quota: Some(pb::Quota {
            project_id: p.to_owned(),
            load_balancers,
            listeners: -1,
            pools: -1,
            members,
            health_monitors: -1,
            ..Default::default()
        }),
    };
    let denied = quota
        .set_quota(in_project(&project, set(&project, 10, -1)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    quota
        .set_quota(with_token(ADMIN_TOKEN, set(&project, 3, 1)))
        .await
        .unwrap();
    create(
        &mut api,
        &project,
        populated("three", 80, vec![member_at(9000)]),
    )
    .await;
    // Four members where one is allowed: refused, and no part of the tree is persisted.
    quota
        .set_quota(with_token(ADMIN_TOKEN, set(&project, 10, 1)))
        .await
        .unwrap();
    let over = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(populated(
                    "four",
                    80,
                    vec![member_at(9001), member_at(9002)],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert_eq!(
        list_names(&mut api, &project, pb::ListLoadBalancersRequest::default())
            .await
            .len(),
        3
    );
    assert_eq!(
        api.list_pools(in_project(&project, pb::ListPoolsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .pools
            .len(),
        3
    );
    let bad = quota
        .set_quota(with_token(ADMIN_TOKEN, set(&project, -5, 1)))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&bad),
        vec!["quota.load_balancers".to_string()]
    );
    quota
        .reset_quota(with_token(
            ADMIN_TOKEN,
            pb::ResetQuotaRequest {
                project_id: project.clone(),
            },
        ))
        .await
        .unwrap();
    let usage = quota
        .get_quota(in_project(&project, pb::GetQuotaRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        usage.limits.unwrap().load_balancers,
        2,
        "back to the default"
    );

    // L7 policies and rules have quotas too; a SetQuota without them keeps them.
    let listener_id = api
        .list_listeners(in_project(&project, pb::ListListenersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .listeners[0]
        .id
        .clone();
    quota
        .set_quota(with_token(
            ADMIN_TOKEN,
            pb::SetQuotaRequest {
                quota: Some(pb::Quota {
                    l7_policies: Some(1),
                    l7_rules: Some(1),
                    ..set(&project, 10, -1).quota.unwrap()
                }),
            },
        ))
        .await
        .unwrap();
    let kept = quota
        .set_quota(with_token(ADMIN_TOKEN, set(&project, 10, -1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((kept.l7_policies, kept.l7_rules), (Some(1), Some(1)));
    let rule = |value: &str| pb::L7Rule {
        r#type: pb::L7RuleType::Path as i32,
        compare_type: pb::L7RuleCompareType::StartsWith as i32,
        value: value.into(),
        ..Default::default()
    };
    let policy = |rules: Vec<pb::L7Rule>| pb::CreateL7PolicyRequest {
        l7policy: Some(pb::L7Policy {
            listener_id: listener_id.clone(),
            action: pb::L7PolicyAction::Reject as i32,
            rules,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let over = api
        .create_l7_policy(in_project(&project, policy(vec![rule("/a"), rule("/b")])))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(over.message().contains("l7rule"), "{}", over.message());
    let created = api
        .create_l7_policy(in_project(&project, policy(vec![rule("/a")])))
        .await
        .unwrap()
        .into_inner();
    let over = api
        .create_l7_policy(in_project(&project, policy(vec![])))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert!(over.message().contains("l7policy"), "{}", over.message());
    let over = api
        .create_l7_rule(in_project(
            &project,
            pb::CreateL7RuleRequest {
                rule: Some(pb::L7Rule {
                    l7policy_id: created.id.clone(),
                    ..rule("/c")
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    let usage = quota
        .get_quota(in_project(&project, pb::GetQuotaRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let in_use = usage.in_use.unwrap();
    assert_eq!((in_use.l7_policies, in_use.l7_rules), (Some(1), Some(1)));

    // The defaults: admins read them, others may not.
    let defaults = quota
        .get_quota_defaults(with_token(ADMIN_TOKEN, pb::GetQuotaDefaultsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (defaults.load_balancers, defaults.l7_policies),
        (2, Some(-1))
    );
    let denied = quota
        .get_quota_defaults(in_project(&project, pb::GetQuotaDefaultsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    stack.stop().await;
}
on_both_databases!(quotas, haproxy = false);
