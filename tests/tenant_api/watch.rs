//! Watch streams: one load balancer, a project, and changes made through another api replica.
use super::*;

/// Watching one load balancer sees PENDING_CREATE then ACTIVE; watching the project sees creates,
/// updates and deletes, starting with what exists.
async fn watch_streams(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        noop_apply_delay_ms: 300,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let existing = create(
        &mut api,
        &project,
        populated("existing", 80, vec![member_at(9000)]),
    )
    .await;
    active(&api, &project, &existing.id).await;
    let mut project_events = api
        .watch_project(in_project(&project, pb::WatchProjectRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = project_events.next().await.unwrap().unwrap();
    assert_eq!(
        (first.kind(), first.load_balancer.unwrap().id),
        (ChangeKind::Initial, existing.id.clone())
    );

    let lb = create(
        &mut api,
        &project,
        populated("watched", 80, vec![member_at(9000)]),
    )
    .await;
    let mut events = api
        .watch_load_balancer(in_project(
            &project,
            pb::WatchLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    let initial = events.next().await.unwrap().unwrap();
    assert_eq!(initial.kind(), ChangeKind::Initial);
    assert_eq!(
        initial.load_balancer.unwrap().provisioning_status(),
        Prov::PendingCreate
    );
    let became_active = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            if event.load_balancer.unwrap().provisioning_status() == Prov::Active {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(became_active);

    api.delete_load_balancer(in_project(
        &project,
        pb::DeleteLoadBalancerRequest {
            id: lb.id.clone(),
            cascade: true,
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    let seen: Vec<(ChangeKind, Prov)> = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while let Some(event) = project_events.next().await {
            let event = event.unwrap();
            let lb_state = event.load_balancer.clone().unwrap();
            if lb_state.id == lb.id {
                seen.push((event.kind(), lb_state.provisioning_status()));
                if event.kind() == ChangeKind::Deleted {
                    break;
                }
            }
        }
        seen
    })
    .await
    .unwrap();
    let statuses: Vec<Prov> = seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses.first(), Some(&Prov::PendingCreate), "{seen:?}");
    assert!(statuses.contains(&Prov::Active), "{seen:?}");
    assert!(statuses.contains(&Prov::PendingDelete), "{seen:?}");
    assert_eq!(
        seen.last(),
        Some(&(ChangeKind::Deleted, Prov::Deleted)),
        "{seen:?}"
    );
    stack.stop().await;
}
on_both_databases!(watch_streams, haproxy = false);

/// Watchers on one api replica see what another replica changes (through the replica's one
/// re-reader): a create, its way to ACTIVE, an update and a delete.
async fn watchers_see_other_replicas(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut writer = stack.api_client().await;
    let replica = stack.start_api_replica().await;
    let mut reader: Api = pb::load_balancer_service_client::LoadBalancerServiceClient::new(
        Channel::from_shared(format!("http://{replica}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut project_events = reader
        .watch_project(in_project(&project, pb::WatchProjectRequest {}))
        .await
        .unwrap()
        .into_inner();
    let lb = create(
        &mut writer,
        &project,
        populated("elsewhere", 80, vec![member_at(9000)]),
    )
    .await;
    active(&writer, &project, &lb.id).await;
    let mut one = reader
        .watch_load_balancer(in_project(
            &project,
            pb::WatchLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        one.next().await.unwrap().unwrap().kind(),
        ChangeKind::Initial
    );
    writer
        .update_load_balancer(in_project(
            &project,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    id: lb.id.clone(),
                    description: "changed elsewhere".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["description"]),
            },
        ))
        .await
        .unwrap();
    let updated = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = one.next().await {
            let lb = event.unwrap().load_balancer.unwrap();
            if lb.description == "changed elsewhere" {
                return lb;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the update made on the other replica was not seen");
    assert_eq!(updated.id, lb.id);
    writer
        .delete_load_balancer(in_project(
            &project,
            pb::DeleteLoadBalancerRequest {
                id: lb.id.clone(),
                cascade: true,
                etag: String::new(),
            },
        ))
        .await
        .unwrap();
    let last = tokio::time::timeout(Duration::from_secs(30), async {
        let mut last = None;
        while let Some(event) = one.next().await {
            last = Some(event.unwrap().kind());
        }
        last
    })
    .await
    .expect("the delete made on the other replica was not seen");
    assert_eq!(last, Some(ChangeKind::Deleted));
    let seen: Vec<(ChangeKind, Prov)> = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(event) = project_events.next().await {
            let event = event.unwrap();
            let state = event.load_balancer.clone().unwrap();
            if state.id == lb.id {
                seen.push((event.kind(), state.provisioning_status()));
                if event.kind() == ChangeKind::Deleted {
                    break;
                }
            }
        }
        seen
    })
    .await
    .expect("the project watch on the other replica missed the delete");
    assert!(seen.iter().any(|(_, s)| *s == Prov::Active), "{seen:?}");
    assert_eq!(seen.last().map(|(k, _)| *k), Some(ChangeKind::Deleted));
    stack.stop().await;
}
on_both_databases!(watchers_see_other_replicas, haproxy = false);
