//! L7 policies and rules: every rule type and compare type, every action, by position.
use super::*;

async fn policy(
    api: &mut Api,
    project: &str,
    listener_id: &str,
    spec: pb::L7Policy,
) -> pb::L7Policy {
    api.create_l7_policy(in_project(
        project,
        pb::CreateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                listener_id: listener_id.into(),
                ..spec
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("create L7 policy: {e}"))
    .into_inner()
}

async fn l7_routing(driver: &'static str) {
    use pb::{L7PolicyAction as Act, L7RuleCompareType as Cmp, L7RuleType as Rule};
    let (stack, mut api, project) = start(driver).await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let one = |backend: &Backend| {
        pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![member_at(backend.port())],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        pb::LoadBalancer {
            pools: vec![
                pb::Pool {
                    name: "b".into(),
                    ..one(&b)
                },
                pb::Pool {
                    name: "c".into(),
                    ..one(&c)
                },
            ],
            ..lb("routed", vec![http(8080, one(&a))])
        },
    )
    .await;
    let pools = api
        .list_pools(in_project(
            &project,
            pb::ListPoolsRequest {
                loadbalancer_id: created.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pools;
    let pool_named = |n: &str| pools.iter().find(|p| p.name == n).unwrap().id.clone();
    let (pool_b, pool_c) = (pool_named("b"), pool_named("c"));
    let listener = created.listener_ids[0].clone();
    let to_pool = |pool: &str, rules: Vec<pb::L7Rule>| pb::L7Policy {
        action: Act::RedirectToPool as i32,
        redirect_pool_id: pool.into(),
        rules,
        ..Default::default()
    };
    let by_host = policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_b,
            vec![rule(
                Rule::HostName,
                Cmp::EqualTo,
                "",
                "b.example.com",
                false,
            )],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_c,
            vec![rule(Rule::Path, Cmp::StartsWith, "", "/c/", false)],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            rules: vec![rule(Rule::FileType, Cmp::EqualTo, "", "exe", false)],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::RedirectToUrl as i32,
            redirect_url: "http://example.com/moved".into(),
            redirect_http_code: 301,
            rules: vec![rule(Rule::Header, Cmp::EqualTo, "X-Move", "yes", false)],
            ..Default::default()
        },
    )
    .await;
    let prefix_policy = policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::RedirectPrefix as i32,
            redirect_prefix: "https://secure.example.com".into(),
            rules: vec![rule(Rule::Cookie, Cmp::Contains, "session", "admin", false)],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_b,
            vec![rule(
                Rule::Path,
                Cmp::Regex,
                "",
                "^/api/v\\d+/items(\\.json)?$",
                false,
            )],
        ),
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            rules: vec![
                rule(Rule::Path, Cmp::StartsWith, "", "/private", false),
                rule(Rule::Header, Cmp::EqualTo, "X-Token", "secret", true),
            ],
            ..Default::default()
        },
    )
    .await;
    policy(
        &mut api,
        &project,
        &listener,
        to_pool(
            &pool_c,
            vec![rule(
                Rule::HostName,
                Cmp::EndsWith,
                "",
                ".c.example.com",
                false,
            )],
        ),
    )
    .await;
    let settled = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        settled.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "{}",
        settled.status_reason
    );
    // The status tree shows the policies in position order, each with its rules, all ACTIVE.
    let tree = api
        .get_load_balancer_status_tree(in_project(
            &project,
            pb::GetLoadBalancerStatusTreeRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let shown = &tree.listeners[0].l7policies;
    assert_eq!(shown.len(), 8);
    assert_eq!(shown[0].status.as_ref().unwrap().id, by_host.id);
    assert!(shown.iter().all(|p| {
        !p.rules.is_empty()
            && p.status.as_ref().unwrap().provisioning_status() == pb::ProvisioningStatus::Active
    }));
    let vip = format!("{}:8080", created.vip_address);
    let expect = |reply: Reply, status: u16, body: &str| {
        assert_eq!(reply.status, status, "{driver}: {reply:?}");
        if status == 200 {
            assert_eq!(reply.body, body, "{driver}: {reply:?}");
        }
    };
    expect(get(&vip, "/", &[]).await, 200, "a");
    expect(get(&vip, "/", &[("host", "b.example.com")]).await, 200, "b");
    expect(
        get(&vip, "/", &[("host", "B.Example.COM:8080")]).await,
        200,
        "b",
    );
    expect(get(&vip, "/c/x", &[]).await, 200, "c");
    expect(get(&vip, "/file.exe", &[]).await, 403, "");
    expect(get(&vip, "/file.exe.txt", &[]).await, 200, "a");
    expect(get(&vip, "/dir.exe/file", &[]).await, 200, "a");
    let moved = get(&vip, "/x", &[("x-move", "yes")]).await;
    assert_eq!(moved.status, 301, "{driver}: {moved:?}");
    assert_eq!(moved.header("location"), Some("http://example.com/moved"));
    let prefixed = get(&vip, "/some/path?q=1", &[("cookie", "session=xadminx")]).await;
    assert_eq!(prefixed.status, 302, "{driver}: {prefixed:?}");
    assert_eq!(
        prefixed.header("location"),
        Some("https://secure.example.com/some/path?q=1")
    );
    expect(get(&vip, "/api/v2/items", &[]).await, 200, "b");
    expect(get(&vip, "/api/vx/items", &[]).await, 200, "a");
    // The backslashes reach the regex engine: `\.` is a dot, not any character.
    expect(get(&vip, "/api/v2/items.json", &[]).await, 200, "b");
    expect(get(&vip, "/api/v2/itemsXjson", &[]).await, 200, "a");
    expect(get(&vip, "/private/x", &[]).await, 403, "");
    expect(
        get(&vip, "/private/x", &[("x-token", "secret")]).await,
        200,
        "a",
    );
    expect(
        get(&vip, "/", &[("host", "x.c.example.com")]).await,
        200,
        "c",
    );
    // Order: the host policy comes before the path one.
    expect(
        get(&vip, "/c/x", &[("host", "b.example.com")]).await,
        200,
        "b",
    );

    // A policy put first wins over the rest.
    policy(
        &mut api,
        &project,
        &listener,
        pb::L7Policy {
            action: Act::Reject as i32,
            position: 1,
            rules: vec![rule(Rule::Header, Cmp::EqualTo, "X-Block", "1", false)],
            ..Default::default()
        },
    )
    .await;
    wait_settled(&api, &project, &created.id).await;
    expect(
        get(&vip, "/", &[("host", "b.example.com"), ("x-block", "1")]).await,
        403,
        "",
    );
    let listed = api
        .list_l7_policies(in_project(
            &project,
            pb::ListL7PoliciesRequest {
                listener_id: listener.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .l7policies;
    let positions: Vec<i32> = listed.iter().map(|p| p.position).collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=9).collect::<Vec<_>>());
    assert_eq!(
        listed.iter().find(|p| p.id == by_host.id).unwrap().position,
        2
    );
    let shown = api
        .get_listener(in_project(
            &project,
            pb::GetListenerRequest {
                id: listener.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.l7policy_ids.len(), 9);
    assert_eq!(
        shown.l7policy_ids[1], by_host.id,
        "policies in position order"
    );

    // Deleting the host policy sends that host to the default pool again.
    api.delete_l7_policy(in_project(
        &project,
        pb::DeleteL7PolicyRequest {
            id: by_host.id.clone(),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/", &[("host", "b.example.com")]).await, 200, "a");

    // Live changes to a policy and its rules. Each redirect code, set by update, is what the
    // client gets.
    let cookie = [("cookie", "session=xadminx")];
    for code in [301, 303, 307, 308, 302] {
        api.update_l7_policy(in_project(
            &project,
            pb::UpdateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    id: prefix_policy.id.clone(),
                    redirect_http_code: code,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["redirect_http_code".into()],
                }),
            },
        ))
        .await
        .unwrap();
        wait_settled(&api, &project, &created.id).await;
        let reply = get(&vip, "/p", &cookie).await;
        assert_eq!(reply.status, code as u16, "{driver}: {reply:?}");
        assert_eq!(
            reply.header("location"),
            Some("https://secure.example.com/p")
        );
    }
    // A second rule added to the live policy: both must match (rules are ANDed).
    let added = api
        .create_l7_rule(in_project(
            &project,
            pb::CreateL7RuleRequest {
                rule: Some(pb::L7Rule {
                    l7policy_id: prefix_policy.id.clone(),
                    ..rule(Rule::Path, Cmp::StartsWith, "", "/secure", false)
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/p", &cookie).await, 200, "a");
    assert_eq!(get(&vip, "/secure/x", &cookie).await.status, 302);
    // The rule's value changed in place.
    api.update_l7_rule(in_project(
        &project,
        pb::UpdateL7RuleRequest {
            rule: Some(pb::L7Rule {
                id: added.id.clone(),
                value: "/vault".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["value".into()],
            }),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/secure/x", &cookie).await, 200, "a");
    assert_eq!(get(&vip, "/vault/x", &cookie).await.status, 302);
    // The rule deleted: the cookie alone redirects again.
    api.delete_l7_rule(in_project(
        &project,
        pb::DeleteL7RuleRequest {
            id: added.id.clone(),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    assert_eq!(get(&vip, "/p", &cookie).await.status, 302);

    // Moving a policy: the X-Block reject (position 1) moved last, behind the path policy that
    // sends /c to pool c, so /c with X-Block is routed instead of refused; other paths still are.
    let blocker = api
        .list_l7_policies(in_project(
            &project,
            pb::ListL7PoliciesRequest {
                listener_id: listener.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .l7policies
        .into_iter()
        .find(|p| p.position == 1)
        .unwrap();
    expect(get(&vip, "/c/x", &[("x-block", "1")]).await, 403, "");
    api.update_l7_policy(in_project(
        &project,
        pb::UpdateL7PolicyRequest {
            l7policy: Some(pb::L7Policy {
                id: blocker.id.clone(),
                position: 8,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["position".into()],
            }),
        },
    ))
    .await
    .unwrap();
    wait_settled(&api, &project, &created.id).await;
    expect(get(&vip, "/c/x", &[("x-block", "1")]).await, 200, "c");
    expect(get(&vip, "/", &[("x-block", "1")]).await, 403, "");
    stack.stop().await;
}
on_each_driver!(l7_routing);
