//! The tenant API end to end, on SQLite and PostgreSQL: every method, coalesced rapid updates,
//! services killed mid-deploy, deadlines, watch streams, pagination under churn, idempotent
//! creates, project isolation and quotas; the Octavia REST face against gRPC (`tenant_api/rest.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{collections::HashSet, time::Duration};

use futures::StreamExt as _;
use lbaas::api::v1::{self as pb, ChangeKind, ProvisioningStatus as Prov};
use prost_types::FieldMask;
use support::{
    ADMIN_TOKEN, Backend, Db, READER_TOKEN, Stack, StackOptions, http_pool, in_project, member_at,
    poll_until, populated, spread, wait_settled, with_token,
};
use tonic::{Code, transport::Channel};

type Api = pb::load_balancer_service_client::LoadBalancerServiceClient<Channel>;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn create(api: &mut Api, project: &str, lb: pb::LoadBalancer) -> pb::LoadBalancer {
    api.create_load_balancer(in_project(
        project,
        pb::CreateLoadBalancerRequest {
            load_balancer: Some(lb),
            request_id: String::new(),
        },
    ))
    .await
    .expect("create load balancer")
    .into_inner()
}

async fn get(api: &mut Api, project: &str, id: &str) -> Result<pb::LoadBalancer, tonic::Status> {
    api.get_load_balancer(in_project(
        project,
        pb::GetLoadBalancerRequest { id: id.into() },
    ))
    .await
    .map(|r| r.into_inner())
}

async fn active(api: &Api, project: &str, id: &str) -> pb::LoadBalancer {
    let lb = wait_settled(api, project, id).await;
    assert_eq!(
        lb.provisioning_status(),
        Prov::Active,
        "reason: {}",
        lb.status_reason
    );
    assert_eq!(lb.applied_generation, lb.generation);
    lb
}

async fn wait_gone(api: &Api, project: &str, id: &str) {
    poll_until(
        Duration::from_secs(30),
        "the load balancer to be gone",
        || {
            let mut api = api.clone();
            let (project, id) = (project.to_owned(), id.to_owned());
            async move {
                (get(&mut api, &project, &id).await.err()?.code() == Code::NotFound).then_some(())
            }
        },
    )
    .await;
}

async fn list_names(
    api: &mut Api,
    project: &str,
    request: pb::ListLoadBalancersRequest,
) -> Vec<String> {
    api.list_load_balancers(in_project(project, request))
        .await
        .unwrap()
        .into_inner()
        .load_balancers
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// A command on the HAProxy runtime API of the stack's device.
async fn haproxy_runtime(stack: &Stack, command: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = stack
        .dir
        .join("agent")
        .join("agent-e2e-haproxy-0")
        .join("stats.sock");
    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("stats socket");
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

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

/// 50 updates fired back to back are all accepted; the device ends with the last one.
async fn rapid_member_updates_converge(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("only").await;
    let lb = create(
        &mut api,
        &project,
        populated("rapid", 8080, vec![member_at(backend.port())]),
    )
    .await;
    let lb = active(&api, &project, &lb.id).await;
    let member = api
        .list_members(in_project(
            &project,
            pb::ListMembersRequest {
                pool_id: lb.pool_ids[0].clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members
        .remove(0);
    let reloads_before = haproxy_runtime_master_reloads(&stack).await;
    for weight in 1..=50 {
        api.update_member(in_project(
            &project,
            pb::UpdateMemberRequest {
                member: Some(pb::Member {
                    id: member.id.clone(),
                    weight: Some(weight),
                    ..Default::default()
                }),
                update_mask: mask(&["weight"]),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("update {weight} refused: {s:?}"));
    }
    let settled = active(&api, &project, &lb.id).await;
    assert_eq!(settled.generation, lb.generation + 50);
    let weight = haproxy_runtime(
        &stack,
        &format!("get weight p_{}/m_{}", lb.pool_ids[0], member.id),
    )
    .await;
    assert!(weight.starts_with("50 "), "device weight: {weight:?}");
    let reloads = haproxy_runtime_master_reloads(&stack).await - reloads_before;
    eprintln!("50 updates cost {reloads} HAProxy reloads");
    assert!(reloads <= 50);
    stack.stop().await;
}
on_both_databases!(rapid_member_updates_converge, haproxy = true);

async fn haproxy_runtime_master_reloads(stack: &Stack) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = stack
        .dir
        .join("agent")
        .join("agent-e2e-haproxy-0")
        .join("master.sock");
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(b"show proc\n").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .lines()
        .find(|l| l.contains("master"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Waits until the scheduler has bound the load balancer: its deploy has reached the agent.
async fn wait_bound(stack: &Stack, id: &str) {
    let channel = support::channel(stack.scheduler).await;
    let scheduler =
        lbaas::scheduler::v1::scheduler_service_client::SchedulerServiceClient::new(channel);
    poll_until(
        Duration::from_secs(10),
        "the scheduler to place the load balancer",
        || {
            let mut scheduler = scheduler.clone();
            let id = id.to_owned();
            async move {
                scheduler
                    .get_placement(lbaas::scheduler::v1::GetPlacementRequest {
                        loadbalancer_id: id,
                    })
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await;
}

#[derive(Clone, Copy)]
enum Victim {
    Scheduler,
    Agent,
}

/// A service dies while a deploy is in flight (its apply takes 1.5 s); once the service is back,
/// the load balancer converges to ACTIVE with no client action.
async fn killed_mid_deploy(db: Db, victim: Victim) {
    let mut stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        noop_apply_delay_ms: 1500,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let lb = create(
        &mut api,
        &project,
        populated("survivor", 80, vec![member_at(9000)]),
    )
    .await;
    wait_bound(&stack, &lb.id).await;
    match victim {
        Victim::Scheduler => stack.kill_scheduler().await,
        Victim::Agent => stack.kill_agent().await,
    }
    assert!(
        get(&mut api, &project, &lb.id)
            .await
            .unwrap()
            .provisioning_status()
            == Prov::PendingCreate
    );
    match victim {
        Victim::Scheduler => stack.start_scheduler().await,
        Victim::Agent => stack.start_agent().await,
    }
    active(&api, &project, &lb.id).await;
    stack.stop().await;
}

async fn scheduler_killed_mid_deploy(db: Db) {
    killed_mid_deploy(db, Victim::Scheduler).await;
}
on_both_databases!(scheduler_killed_mid_deploy, haproxy = false);

async fn agent_killed_mid_deploy(db: Db) {
    killed_mid_deploy(db, Victim::Agent).await;
}
on_both_databases!(agent_killed_mid_deploy, haproxy = false);

/// HAProxy serves while its agent is down; the restarted agent adopts it and applies new changes.
async fn data_plane_outlives_the_agent(db: Db) {
    let mut stack = Stack::start(StackOptions {
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
        populated("steady", 8080, vec![member_at(a.port())]),
    )
    .await;
    let lb = active(&api, &project, &lb.id).await;
    let vip = format!("{}:8080", lb.vip_address);
    stack.kill_agent().await;
    assert_eq!(
        spread(&vip, 5).await.get("a"),
        Some(&5),
        "traffic stopped with the agent"
    );
    // A change made while the agent is away is applied once it is back.
    api.create_member(in_project(
        &project,
        pb::CreateMemberRequest {
            member: Some(pb::Member {
                pool_id: lb.pool_ids[0].clone(),
                ..member_at(b.port())
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    stack.start_agent().await;
    active(&api, &project, &lb.id).await;
    let counts = spread(&vip, 10).await;
    assert_balanced(&counts, &["a", "b"]);
    stack.stop().await;
}
on_both_databases!(data_plane_outlives_the_agent, haproxy = true);

/// A deploy the device can never apply (its port is taken by another process) reaches ERROR at
/// once, with the address in the reason, and the load balancer can still be deleted; an agent outage past the deadline is ERROR
/// too, and an update or a failover brings the load balancer back.
async fn errors_have_reasons_and_recover(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        deploy_deadline_ms: 2_000,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("ok").await;
    // The last address of the stack's VIP range, its port held by a socket of ours.
    let last = last_host(&stack.vip_cidr);
    let holder = tokio::net::TcpListener::bind((last, 0)).await.unwrap();
    let taken = i32::from(holder.local_addr().unwrap().port());
    let doomed = create(
        &mut api,
        &project,
        pb::LoadBalancer {
            vip_address: last.to_string(),
            ..populated("doomed", taken, vec![member_at(backend.port())])
        },
    )
    .await;
    let started = std::time::Instant::now();
    let failed = wait_settled(&api, &project, &doomed.id).await;
    assert_eq!(failed.provisioning_status(), Prov::Error);
    assert!(
        failed
            .status_reason
            .contains(&format!("cannot listen on {last}:{taken}")),
        "reason: {}",
        failed.status_reason
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // The device still takes other load balancers.
    let fine = create(
        &mut api,
        &project,
        populated("fine", 8080, vec![member_at(backend.port())]),
    )
    .await;
    let fine = active(&api, &project, &fine.id).await;
    assert_eq!(
        spread(&format!("{}:8080", fine.vip_address), 2)
            .await
            .get("ok"),
        Some(&2)
    );
    api.delete_load_balancer(in_project(
        &project,
        pb::DeleteLoadBalancerRequest {
            id: doomed.id.clone(),
            cascade: true,
            etag: String::new(),
        },
    ))
    .await
    .unwrap();
    wait_gone(&api, &project, &doomed.id).await;

    // The agent is away past the deadline: ERROR, then an update brings it back.
    stack.kill_agent().await;
    api.update_load_balancer(in_project(
        &project,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: fine.id.clone(),
                description: "while the agent is away".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
        },
    ))
    .await
    .unwrap();
    let stuck = wait_settled(&api, &project, &fine.id).await;
    assert_eq!(stuck.provisioning_status(), Prov::Error);
    assert!(!stuck.status_reason.is_empty());
    stack.start_agent().await;
    api.update_load_balancer(in_project(
        &project,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: fine.id.clone(),
                description: "back".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
        },
    ))
    .await
    .unwrap();
    let back = active(&api, &project, &fine.id).await;
    assert!(back.status_reason.is_empty());

    // And again, brought back by a failover this time.
    stack.kill_agent().await;
    api.update_load_balancer(in_project(
        &project,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: fine.id.clone(),
                description: "away again".into(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        wait_settled(&api, &project, &fine.id)
            .await
            .provisioning_status(),
        Prov::Error
    );
    stack.start_agent().await;
    api.failover_load_balancer(in_project(
        &project,
        pb::FailoverLoadBalancerRequest {
            id: fine.id.clone(),
        },
    ))
    .await
    .unwrap();
    active(&api, &project, &fine.id).await;
    assert_eq!(
        spread(&format!("{}:8080", fine.vip_address), 2)
            .await
            .get("ok"),
        Some(&2)
    );
    stack.stop().await;
}
on_both_databases!(errors_have_reasons_and_recover, haproxy = true);

/// The last host address of an IPv4 range.
fn last_host(cidr: &str) -> std::net::IpAddr {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    net.hosts().last().unwrap()
}

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

/// HAProxy killed outright (master and workers) is restarted by the agent with every load
/// balancer it served, and later changes still apply.
async fn killed_haproxy_comes_back(db: Db) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
        populated("phoenix", 8080, vec![member_at(a.port())]),
    )
    .await;
    let lb = active(&api, &project, &lb.id).await;
    let vip = format!("{}:8080", lb.vip_address);
    assert_eq!(spread(&vip, 2).await.get("a"), Some(&2));

    let socket = stack
        .dir
        .join("agent")
        .join("agent-e2e-haproxy-0")
        .join("master.sock");
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(b"show proc\n").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let pids: Vec<String> = answer
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(pids.len() >= 2, "{answer}");
    let killed = std::time::Instant::now();
    assert!(
        std::process::Command::new("kill")
            .arg("-9")
            .args(&pids)
            .status()
            .unwrap()
            .success()
    );
    poll_until(Duration::from_secs(15), "the VIP to answer again", || {
        let vip = vip.clone();
        async move { support::http_get(&vip).await.ok() }
    })
    .await;
    eprintln!(
        "HAProxy back {} ms after it was killed",
        killed.elapsed().as_millis()
    );
    assert_eq!(spread(&vip, 2).await.get("a"), Some(&2));
    api.create_member(in_project(
        &project,
        pb::CreateMemberRequest {
            member: Some(pb::Member {
                pool_id: lb.pool_ids[0].clone(),
                ..member_at(b.port())
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    active(&api, &project, &lb.id).await;
    assert_balanced(&spread(&vip, 10).await, &["a", "b"]);
    stack.stop().await;
}
on_both_databases!(killed_haproxy_comes_back, haproxy = true);

/// Round robin right after a server joins at runtime starts it at its own point of the cycle, so
/// a short run is close to even, not exactly even: every backend serves, none is off by more than 2.
fn assert_balanced(counts: &std::collections::BTreeMap<String, usize>, names: &[&str]) {
    let total: usize = counts.values().sum();
    let even = total / names.len();
    for name in names {
        let got = counts.get(*name).copied().unwrap_or(0);
        assert!(
            got + 2 >= even && got <= even + 2,
            "{name} served {got} of {total}: {counts:?}"
        );
    }
    assert_eq!(counts.len(), names.len(), "{counts:?}");
}

#[path = "tenant_api/rest.rs"]
mod rest;
