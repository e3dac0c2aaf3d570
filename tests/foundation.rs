//! Foundation end to end: one load balancer through the real api, scheduler, agent and each data
//! plane (HAProxy, native), on SQLite and on PostgreSQL; invalid input refused with field violations; grpcurl reflection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::time::Duration;

use lbaas::api::v1 as pb;
use support::{
    Backend, Db, Stack, StackOptions, http_pool, in_project, poll_until, spread, wait_settled,
};

fn member(backend: &Backend) -> pb::Member {
    support::member_at(backend.port())
}

/// The scenario: create with two members, 10/10 split, add a third and see it serve,
/// delete and see the VIP go quiet and the device's load return to zero.
async fn one_load_balancer_end_to_end(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backends = [
        Backend::start("alpha").await,
        Backend::start("beta").await,
        Backend::start("gamma").await,
    ];

    let created = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    name: "web".into(),
                    listeners: vec![pb::Listener {
                        protocol: pb::Protocol::Http as i32,
                        protocol_port: 8080,
                        default_pool: Some(http_pool(vec![
                            member(&backends[0]),
                            member(&backends[1]),
                        ])),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        created.provisioning_status(),
        pb::ProvisioningStatus::PendingCreate
    );
    assert_eq!(created.listener_ids.len(), 1);
    assert_eq!(created.pool_ids.len(), 1);

    let lb = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        lb.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "reason: {}",
        lb.status_reason
    );
    assert_eq!(lb.operating_status(), pb::OperatingStatus::Online);
    assert_eq!(lb.applied_generation, lb.generation);
    let vip_net: ipnet::IpNet = stack.vip_cidr.parse().unwrap();
    let vip: std::net::IpAddr = lb.vip_address.parse().expect("a VIP was allocated");
    assert!(vip_net.contains(&vip), "VIP {vip} outside {vip_net}");
    let vip = format!("{vip}:8080");

    let counts = spread(&vip, 20).await;
    assert_eq!(counts.get("alpha"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("beta"), Some(&10), "{counts:?}");

    // A third member: the load balancer goes PENDING_UPDATE and back to ACTIVE, and it serves.
    let pool_id = lb.pool_ids[0].clone();
    let added = api
        .create_member(in_project(
            &project,
            pb::CreateMemberRequest {
                member: Some(pb::Member {
                    pool_id: pool_id.clone(),
                    ..member(&backends[2])
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect("add member")
        .into_inner();
    let lb = wait_settled(&api, &project, &created.id).await;
    assert_eq!(
        lb.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "reason: {}",
        lb.status_reason
    );
    assert_eq!(lb.generation, 2);
    let counts = spread(&vip, 30).await;
    // The new member joined at runtime (no reload), so it starts at its own point of the round
    // robin cycle: it takes traffic, and over 30 requests the split is within 2 of even.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| (8..=12).contains(n)), "{counts:?}");
    let got = api
        .get_member(in_project(
            &project,
            pb::GetMemberRequest {
                id: added.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.provisioning_status(), pb::ProvisioningStatus::Active);
    let listed = api
        .list_members(in_project(
            &project,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                page_size: 0,
                page_token: String::new(),
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.members.len(), 3);

    // Delete a member: traffic goes back to two.
    api.delete_member(in_project(
        &project,
        pb::DeleteMemberRequest {
            id: added.id.clone(),
        },
    ))
    .await
    .expect("delete member");
    let lb = wait_settled(&api, &project, &created.id).await;
    assert_eq!(lb.provisioning_status(), pb::ProvisioningStatus::Active);
    let counts = spread(&vip, 20).await;
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        vec!["alpha".to_string(), "beta".to_string()]
    );

    // List shows it; another project sees nothing.
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.load_balancers.len(), 1);
    let other = api
        .list_load_balancers(in_project(
            "someone-else",
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(other.load_balancers.is_empty());
    let hidden = api
        .get_load_balancer(in_project(
            "someone-else",
            pb::GetLoadBalancerRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);

    // Delete: PENDING_DELETE, then gone; the VIP stops answering; the device's load is zero.
    let deleting = api
        .delete_load_balancer(in_project(
            &project,
            pb::DeleteLoadBalancerRequest {
                id: created.id.clone(),
                cascade: true,
                etag: String::new(),
            },
        ))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(
        deleting.load_balancer.unwrap().provisioning_status(),
        pb::ProvisioningStatus::PendingDelete
    );
    poll_until(
        Duration::from_secs(30),
        "the load balancer to be gone",
        || {
            let mut api = api.clone();
            let request = in_project(
                &project,
                pb::GetLoadBalancerRequest {
                    id: created.id.clone(),
                },
            );
            async move {
                (api.get_load_balancer(request).await.err()?.code() == tonic::Code::NotFound)
                    .then_some(())
            }
        },
    )
    .await;
    let refused = support::http_get(&vip).await;
    assert!(refused.is_err(), "the VIP still answers: {refused:?}");
    let devices = stack
        .devices()
        .await
        .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(devices.devices.len(), 1);
    assert_eq!(devices.devices[0].load, 0);

    stack.stop().await;
}

on_both_databases!(one_load_balancer_on_haproxy => one_load_balancer_end_to_end("haproxy"), haproxy = true);
on_both_databases!(one_load_balancer_on_native => one_load_balancer_end_to_end("native"), haproxy = false);

/// Each invalid request gets INVALID_ARGUMENT naming the field, and nothing is persisted.
async fn invalid_requests_are_refused(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let valid_listener = || pb::Listener {
        protocol: pb::Protocol::Http as i32,
        protocol_port: 80,
        default_pool: Some(http_pool(vec![pb::Member {
            address: "127.0.0.1".into(),
            protocol_port: 9000,
            ..Default::default()
        }])),
        ..Default::default()
    };
    let valid = || pb::LoadBalancer {
        name: "ok".into(),
        listeners: vec![valid_listener()],
        ..Default::default()
    };
    let cases: Vec<(&str, pb::LoadBalancer, &str)> = vec![
        (
            "empty name",
            pb::LoadBalancer {
                name: String::new(),
                ..valid()
            },
            "load_balancer.name",
        ),
        (
            "over-long name",
            pb::LoadBalancer {
                name: "n".repeat(256),
                ..valid()
            },
            "load_balancer.name",
        ),
        (
            "port 0",
            pb::LoadBalancer {
                listeners: vec![pb::Listener {
                    protocol_port: 0,
                    ..valid_listener()
                }],
                ..valid()
            },
            "load_balancer.listeners[0].protocol_port",
        ),
        (
            "port 65536",
            pb::LoadBalancer {
                listeners: vec![pb::Listener {
                    protocol_port: 65536,
                    ..valid_listener()
                }],
                ..valid()
            },
            "load_balancer.listeners[0].protocol_port",
        ),
        (
            "unknown algorithm",
            pb::LoadBalancer {
                listeners: vec![pb::Listener {
                    default_pool: Some(pb::Pool {
                        lb_algorithm: 99,
                        ..http_pool(vec![])
                    }),
                    ..valid_listener()
                }],
                ..valid()
            },
            "load_balancer.listeners[0].default_pool.lb_algorithm",
        ),
        (
            "member address not an IP",
            pb::LoadBalancer {
                listeners: vec![pb::Listener {
                    default_pool: Some(http_pool(vec![pb::Member {
                        address: "backend.example".into(),
                        protocol_port: 80,
                        ..Default::default()
                    }])),
                    ..valid_listener()
                }],
                ..valid()
            },
            "load_balancer.listeners[0].default_pool.members[0].address",
        ),
    ];
    for (what, lb, field) in cases {
        let status = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb),
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(
            support::violations(&status).iter().any(|f| f == field),
            "{what}: {:?}",
            support::violations(&status)
        );
    }
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.load_balancers.is_empty(),
        "invalid creates persisted something"
    );

    // A pool on a listener of another load balancer.
    let first = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(valid()),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let second = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    name: "second".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let pools_before = api
        .list_pools(in_project(&project, pb::ListPoolsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .pools
        .len();
    let status = api
        .create_pool(in_project(
            &project,
            pb::CreatePoolRequest {
                pool: Some(pb::Pool {
                    loadbalancer_id: second.id.clone(),
                    listener_id: first.listener_ids[0].clone(),
                    ..http_pool(vec![])
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("pool on another load balancer's listener");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        support::violations(&status),
        vec!["pool.listener_id".to_string()]
    );
    let pools_after = api
        .list_pools(in_project(&project, pb::ListPoolsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .pools
        .len();
    assert_eq!(pools_before, pools_after);
    let second_now = api
        .get_load_balancer(in_project(
            &project,
            pb::GetLoadBalancerRequest {
                id: second.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second_now.generation, 1,
        "a refused change bumped the generation"
    );

    // A member with a bad port on an existing pool.
    let status = api
        .create_member(in_project(
            &project,
            pb::CreateMemberRequest {
                member: Some(pb::Member {
                    pool_id: first.pool_ids[0].clone(),
                    address: "::1".into(),
                    protocol_port: 70000,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        support::violations(&status),
        vec!["member.protocol_port".to_string()]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_on_sqlite() {
    invalid_requests_are_refused(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lbaas_no_postgres,
    ignore = "LBAAS_TEST_DATABASE_URL is not set (a PostgreSQL to test against)"
)]
async fn invalid_requests_are_refused_on_postgres() {
    invalid_requests_are_refused(Db::Postgres).await;
}

/// grpcurl (which speaks reflection v1alpha) lists and describes every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_describes_every_service() {
    let grpcurl = std::env::var("LBAAS_GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    if std::process::Command::new(&grpcurl)
        .arg("-version")
        .output()
        .is_err()
    {
        assert!(!support::in_ci(), "CI=true but grpcurl is not installed");
        eprintln!("grpcurl is not installed: this test did not run");
        return;
    }
    let stack = Stack::start(StackOptions {
        driver: "noop",
        ..Default::default()
    })
    .await;
    let expectations = [
        (
            stack.api,
            "lbaas.api.v1.LoadBalancerService",
            "CreateLoadBalancer",
        ),
        (
            stack.api,
            "lbaas.api.v1.CertificateService",
            "CreateCertificate",
        ),
        (
            stack.scheduler,
            "lbaas.scheduler.v1.DeviceService",
            "RegisterDevice",
        ),
        (
            stack.scheduler,
            "lbaas.scheduler.v1.SchedulerService",
            "Deploy",
        ),
        (stack.agent, "lbaas.agent.v1.AgentService", "Apply"),
    ];
    for (addr, service, method) in expectations {
        let run = |args: &[&str]| {
            let output = std::process::Command::new(&grpcurl)
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "grpcurl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let target = addr.to_string();
        let listed = run(&["-plaintext", &target, "list"]);
        assert!(listed.contains(service), "{listed}");
        assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
        let described = run(&["-plaintext", &target, "describe", service]);
        assert!(described.contains(method), "{described}");
        let health = run(&["-plaintext", &target, "grpc.health.v1.Health/Check"]);
        assert!(health.contains("SERVING"), "{health}");
    }
    stack.stop().await;
}
