//! Lists: pagination under churn, filters, and admins listing across projects.
use super::*;

/// Paging through a list while others create and delete returns every object that existed
/// throughout exactly once.
async fn pagination_under_churn(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let mut stable = HashSet::new();
    let mut doomed = Vec::new();
    for i in 0..40 {
        let lb = create(
            &mut api,
            &project,
            pb::LoadBalancer {
                name: format!("lb-{i}"),
                ..Default::default()
            },
        )
        .await;
        if i % 4 == 0 {
            doomed.push(lb.id)
        } else {
            stable.insert(lb.id);
        }
    }
    for order_by in ["", "name", "create_time desc"] {
        let churn = {
            let mut api = api.clone();
            let project = project.clone();
            let doomed = doomed.clone();
            tokio::spawn(async move {
                for (i, id) in doomed.iter().enumerate() {
                    create(
                        &mut api,
                        &project,
                        pb::LoadBalancer {
                            name: format!("new-{order_by}-{i}"),
                            ..Default::default()
                        },
                    )
                    .await;
                    let _ = api
                        .delete_load_balancer(in_project(
                            &project,
                            pb::DeleteLoadBalancerRequest {
                                id: id.clone(),
                                cascade: true,
                                etag: String::new(),
                            },
                        ))
                        .await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = api
                .list_load_balancers(in_project(
                    &project,
                    pb::ListLoadBalancersRequest {
                        page_size: 3,
                        page_token: token.clone(),
                        order_by: order_by.into(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            seen.extend(page.load_balancers.into_iter().map(|l| l.id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
            tokio::task::yield_now().await;
        }
        churn.await.unwrap();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "order {order_by:?}: an object came twice"
        );
        for id in &stable {
            assert!(unique.contains(id), "order {order_by:?}: {id} was skipped");
        }
    }
    let bad = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest {
                page_token: "zz".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    stack.stop().await;
}
on_both_databases!(pagination_under_churn, haproxy = false);

fn sorted_names(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// Load balancer lists filter on more attributes and on Octavia's four tag filters, and admins
/// list across projects (all_projects, or another project_id); others may not.
async fn lists_filter_and_span_projects(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let (mine, theirs) = (support::fresh_project(), support::fresh_project());
    for (project, name, tags, description) in [
        (&mine, "red-blue", vec!["red", "blue"], "edge"),
        (&mine, "red", vec!["red"], "core"),
        (&mine, "green", vec!["green"], "edge"),
        (&theirs, "other", vec!["red"], "edge"),
    ] {
        let created = create(
            &mut api,
            project,
            pb::LoadBalancer {
                name: name.into(),
                description: description.into(),
                tags: tags.into_iter().map(str::to_owned).collect(),
                ..Default::default()
            },
        )
        .await;
        active(&api, project, &created.id).await;
    }
    // The operating status filter, against what an unfiltered list shows.
    let all = api
        .list_load_balancers(in_project(&mine, pb::ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .load_balancers;
    let status = all[0].operating_status;
    let with_status = sorted_names(
        all.iter()
            .filter(|l| l.operating_status == status)
            .map(|l| l.name.clone())
            .collect(),
    );
    let filtered = list_names(
        &mut api,
        &mine,
        pb::ListLoadBalancersRequest {
            operating_status: status,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sorted_names(filtered), with_status);
    let sorted = sorted_names;
    let ask = |f: fn(&mut pb::ListLoadBalancersRequest)| {
        let mut r = pb::ListLoadBalancersRequest::default();
        f(&mut r);
        r
    };
    for (request, want) in [
        (
            ask(|r| r.tags_any = vec!["blue".into(), "green".into()]),
            vec!["green", "red-blue"],
        ),
        (
            ask(|r| r.not_tags = vec!["red".into(), "blue".into()]),
            vec!["green", "red"],
        ),
        (
            ask(|r| r.not_tags_any = vec!["blue".into(), "green".into()]),
            vec!["red"],
        ),
        (
            ask(|r| r.description = "edge".into()),
            vec!["green", "red-blue"],
        ),
    ] {
        let got = sorted(list_names(&mut api, &mine, request.clone()).await);
        assert_eq!(got, want, "{request:?}");
    }
    // Across projects: admins only.
    let denied = api
        .list_load_balancers(in_project(&mine, ask(|r| r.all_projects = true)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut other = pb::ListLoadBalancersRequest {
        project_id: theirs.clone(),
        ..Default::default()
    };
    let denied = api
        .list_load_balancers(in_project(&mine, other.clone()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let names = |r: pb::ListLoadBalancersResponse| {
        sorted(r.load_balancers.into_iter().map(|l| l.name).collect())
    };
    let theirs_only = api
        .list_load_balancers(with_token(ADMIN_TOKEN, other.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(theirs_only), vec!["other"]);
    other.project_id = String::new();
    other.all_projects = true;
    other.tags = vec!["red".into()];
    let everyone = api
        .list_load_balancers(with_token(ADMIN_TOKEN, other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(everyone), vec!["other", "red", "red-blue"]);
    stack.stop().await;
}
on_both_databases!(lists_filter_and_span_projects, haproxy = false);

/// The child lists take `ListFilter`: exact matches on any top-level attribute (enums by name,
/// scalars by their text), the four tag filters, and an order on any attribute, paged as a whole;
/// what is not an attribute is refused with the field.
async fn child_lists_filter_and_order(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let tagged = |protocol: pb::Protocol, port: i32, tags: &[&str], members: Vec<pb::Member>| {
        let pool_protocol = if protocol == pb::Protocol::Http {
            pb::Protocol::Http
        } else {
            pb::Protocol::Tcp
        };
        pb::Listener {
            protocol: protocol as i32,
            protocol_port: port,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            default_pool: Some(pb::Pool {
                protocol: pool_protocol as i32,
                lb_algorithm: pb::LbAlgorithm::RoundRobin as i32,
                members,
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let weighted = |port: i32, weight: i32, backup: bool| pb::Member {
        weight: Some(weight),
        backup,
        ..member_at(port)
    };
    let lb = create(
        &mut api,
        &project,
        pb::LoadBalancer {
            name: "filtered".into(),
            listeners: vec![
                tagged(
                    pb::Protocol::Http,
                    80,
                    &["a", "b"],
                    vec![
                        weighted(9001, 1, false),
                        weighted(9002, 10, false),
                        weighted(9003, 5, true),
                    ],
                ),
                tagged(pb::Protocol::Tcp, 81, &["b"], Vec::new()),
                tagged(pb::Protocol::Http, 82, &[], Vec::new()),
            ],
            ..Default::default()
        },
    )
    .await;
    active(&api, &project, &lb.id).await;
    let filter = |equals: &[(&str, &str)], order_by: &str| pb::ListFilter {
        equals: equals
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        order_by: order_by.to_owned(),
        ..Default::default()
    };
    let listeners = |filter: pb::ListFilter, page_size: i32, page_token: String| {
        let mut api = api.clone();
        let (project, lb) = (project.clone(), lb.id.clone());
        async move {
            api.list_listeners(in_project(
                &project,
                pb::ListListenersRequest {
                    loadbalancer_id: lb,
                    page_size,
                    page_token,
                    filter: Some(filter),
                    ..Default::default()
                },
            ))
            .await
        }
    };
    let ports = |f: pb::ListFilter| {
        let listeners = &listeners;
        async move {
            listeners(f, 0, String::new())
                .await
                .unwrap()
                .into_inner()
                .listeners
                .iter()
                .map(|l| l.protocol_port)
                .collect::<Vec<_>>()
        }
    };

    // Exact matches: an enum by its short or full name, a number.
    assert_eq!(ports(filter(&[("protocol", "HTTP")], "")).await.len(), 2);
    assert_eq!(
        ports(filter(&[("protocol", "PROTOCOL_HTTP")], "protocol_port")).await,
        vec![80, 82]
    );
    assert_eq!(
        ports(filter(&[("protocol_port", "81")], "")).await,
        vec![81]
    );
    assert_eq!(
        ports(filter(&[("protocol", "HTTP"), ("protocol_port", "81")], "")).await,
        Vec::<i32>::new()
    );
    // Tags, ordered by port.
    let tags = |tags: &[&str], any: &[&str], not: &[&str], not_any: &[&str]| {
        let own = |t: &[&str]| t.iter().map(|t| (*t).to_owned()).collect();
        pb::ListFilter {
            tags: own(tags),
            tags_any: own(any),
            not_tags: own(not),
            not_tags_any: own(not_any),
            order_by: "protocol_port".into(),
            ..Default::default()
        }
    };
    assert_eq!(ports(tags(&["b"], &[], &[], &[])).await, vec![80, 81]);
    assert_eq!(ports(tags(&[], &["a"], &[], &[])).await, vec![80]);
    assert_eq!(ports(tags(&[], &[], &["a", "b"], &[])).await, vec![81, 82]);
    assert_eq!(ports(tags(&[], &[], &[], &["b"])).await, vec![82]);
    // Ordered on any attribute, and paged in that order one at a time.
    assert_eq!(
        ports(filter(&[], "protocol_port desc")).await,
        vec![82, 81, 80]
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = listeners(filter(&[], "protocol_port desc"), 1, token)
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.listeners.iter().map(|l| l.protocol_port));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, vec![82, 81, 80]);

    // Members: by weight, by a boolean.
    let listed = listeners(filter(&[("protocol_port", "80")], ""), 0, String::new())
        .await
        .unwrap()
        .into_inner()
        .listeners;
    let pool_id = listed[0].default_pool_id.clone();
    let members = |f: pb::ListFilter| {
        let mut api = api.clone();
        let (project, pool_id) = (project.clone(), pool_id.clone());
        async move {
            api.list_members(in_project(
                &project,
                pb::ListMembersRequest {
                    pool_id,
                    filter: Some(f),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| {
                r.into_inner()
                    .members
                    .iter()
                    .map(|m| m.weight.unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        members(filter(&[], "weight desc")).await.unwrap(),
        vec![10, 5, 1]
    );
    assert_eq!(
        members(filter(&[("backup", "true")], "")).await.unwrap(),
        vec![5]
    );
    assert_eq!(
        members(filter(&[("weight", "10")], "")).await.unwrap(),
        vec![10]
    );

    // Refused with the field: not an attribute, not a singular one, a bad order, tags on what
    // has none.
    for (f, field) in [
        (filter(&[("nope", "x")], ""), "filter.equals"),
        (filter(&[], "tags"), "filter.order_by"),
        (filter(&[], "weight sideways"), "filter.order_by"),
    ] {
        let err = members(f).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(support::violations(&err), vec![field.to_owned()]);
    }
    let err = api
        .list_health_monitors(in_project(
            &project,
            pb::ListHealthMonitorsRequest {
                pool_id: pool_id.clone(),
                filter: Some(pb::ListFilter {
                    tags: vec!["a".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(support::violations(&err), vec!["filter.tags".to_owned()]);

    // Admins list other projects' objects (one project, or all); anyone else is refused.
    let scoped = |all_projects: bool, project_id: &str| pb::ListListenersRequest {
        all_projects,
        project_id: project_id.to_owned(),
        ..Default::default()
    };
    for request in [scoped(false, &project), scoped(true, "")] {
        let seen = api
            .clone()
            .list_listeners(with_token(ADMIN_TOKEN, request))
            .await
            .unwrap()
            .into_inner()
            .listeners;
        let mut ports: Vec<i32> = seen.iter().map(|l| l.protocol_port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [80, 81, 82]);
    }
    for request in [scoped(true, ""), scoped(false, "someone-else")] {
        let err = api
            .clone()
            .list_listeners(in_project(&project, request))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let admin_members = api
        .clone()
        .list_members(with_token(
            ADMIN_TOKEN,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                project_id: project.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(admin_members.len(), 3);

    // Load balancers order by any attribute too (beyond id, name and create_time).
    for (name, description) in [("second", "b"), ("first", "a")] {
        create(
            &mut api,
            &project,
            pb::LoadBalancer {
                name: name.into(),
                description: description.into(),
                ..Default::default()
            },
        )
        .await;
    }
    let ordered = |order_by: &str, page_size: i32, page_token: String| {
        let mut api = api.clone();
        let project = project.clone();
        let order_by = order_by.to_owned();
        async move {
            api.list_load_balancers(in_project(
                &project,
                pb::ListLoadBalancersRequest {
                    order_by,
                    page_size,
                    page_token,
                    ..Default::default()
                },
            ))
            .await
        }
    };
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = ordered("description desc", 2, token)
            .await
            .unwrap()
            .into_inner();
        names.extend(page.load_balancers.into_iter().map(|l| l.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["second", "first", "filtered"]);
    let matched = api
        .clone()
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest {
                filter: Some(filter(&[("description", "a")], "")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .load_balancers;
    assert_eq!(
        matched.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["first"]
    );
    let err = ordered("listeners", 0, String::new()).await.unwrap_err();
    assert_eq!(support::violations(&err), vec!["order_by".to_owned()]);
    stack.stop().await;
}
on_both_databases!(child_lists_filter_and_order, haproxy = false);
