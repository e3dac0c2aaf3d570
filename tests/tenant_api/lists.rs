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
