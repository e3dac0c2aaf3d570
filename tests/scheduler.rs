//! The scheduler end to end: service types choosing strategies, explain, the admin-only provider
//! API, capacity under 100 concurrent placements across two scheduler replicas on one database,
//! wiring a device to the network a load balancer needs, devices created on demand, and
//! availability zones confining placement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use futures::StreamExt as _;
use lbaas::{
    agent::v1::LoadBalancerConfig,
    api::v1::{self as pb, ProvisioningStatus as Prov},
    scheduler::v1::{
        self as sched, CreateNetworkRequest, CreateServiceTypeRequest, DeployRequest, Device,
        DeviceKind, ExplainPlacementRequest, GetDeviceRequest, GetPlacementRequest,
        HeartbeatRequest, ListAgentsRequest, ListDevicesRequest, Network, RegisterAgentRequest,
        RegisterDeviceRequest, ServiceType,
        agent_registry_service_client::AgentRegistryServiceClient, deploy_event::Event,
        device_service_client::DeviceServiceClient,
        scheduler_service_client::SchedulerServiceClient,
    },
};
use support::{
    Backend, Db, READER_TOKEN, Stack, StackOptions, in_project, poll_until, spread, wait_settled,
    with_token,
};
use tokio::{net::TcpListener, sync::watch};

fn service_type(name: &str, strategy: &str) -> ServiceType {
    ServiceType {
        name: name.into(),
        strategy: strategy.into(),
        ..Default::default()
    }
}

/// A service type whose devices HAProxy agents create on demand, `capacity` load balancers each.
fn elastic(capacity: i32) -> ServiceType {
    ServiceType {
        name: "elastic".into(),
        driver: "haproxy".into(),
        required_labels: [("pool".to_owned(), "elastic".to_owned())].into(),
        device_kind: DeviceKind::Virtual as i32,
        on_demand: true,
        on_demand_capacity: capacity,
        ..Default::default()
    }
}

async fn create_lb(stack: &Stack, project: &str, name: &str, flavor: &str) -> pb::LoadBalancer {
    let mut api = stack.api_client().await;
    let spec = pb::LoadBalancer {
        name: name.into(),
        flavor: flavor.into(),
        ..Default::default()
    };
    support::create_active(&mut api, project, spec).await
}

async fn device_of(stack: &Stack, lb: &str) -> String {
    let mut scheduler = SchedulerServiceClient::new(support::channel(stack.scheduler).await);
    scheduler
        .get_placement(GetPlacementRequest {
            loadbalancer_id: lb.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .device_id
}

/// Service types pick their strategy: "together" keeps a project on one device, "apart" spreads
/// it; an unknown flavor is refused at create with a field violation and nothing is persisted.
async fn service_types_choose_strategies(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    stack.add_agent("agent-b").await;
    let mut devices = stack.devices().await;
    for (name, strategy) in [
        ("together", "tenant-affinity"),
        ("apart", "tenant-anti-affinity"),
    ] {
        devices
            .create_service_type(CreateServiceTypeRequest {
                service_type: Some(service_type(name, strategy)),
            })
            .await
            .unwrap();
    }
    let listed = devices
        .list_service_types(sched::ListServiceTypesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.service_types.len(), 2);

    let project = support::fresh_project();
    let a = create_lb(&stack, &project, "a", "together").await;
    let b = create_lb(&stack, &project, "b", "together").await;
    let c = create_lb(&stack, &project, "c", "together").await;
    let (da, db_, dc) = (
        device_of(&stack, &a.id).await,
        device_of(&stack, &b.id).await,
        device_of(&stack, &c.id).await,
    );
    assert_eq!(
        (da.as_str(), db_.as_str()),
        (dc.as_str(), dc.as_str()),
        "tenant-affinity keeps them together"
    );

    let spread_project = support::fresh_project();
    let x = create_lb(&stack, &spread_project, "x", "apart").await;
    let y = create_lb(&stack, &spread_project, "y", "apart").await;
    assert_ne!(
        device_of(&stack, &x.id).await,
        device_of(&stack, &y.id).await,
        "anti-affinity spreads them"
    );

    let mut api = stack.api_client().await;
    for (lb, field) in [
        (
            pb::LoadBalancer {
                name: "bad".into(),
                flavor: "no-such-type".into(),
                ..Default::default()
            },
            "load_balancer.flavor",
        ),
        (
            pb::LoadBalancer {
                name: "bad".into(),
                vip_network_id: "no-such-net".into(),
                ..Default::default()
            },
            "load_balancer.vip_network_id",
        ),
    ] {
        let err = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(support::violations(&err), vec![field.to_owned()]);
    }
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.load_balancers.len(),
        3,
        "the refused creates persisted nothing"
    );
    stack.stop().await;
}
on_both_databases!(service_types_choose_strategies, haproxy = false);

/// A dry-run placement for project "p".
async fn explain(
    devices: &mut support::Devices,
    loadbalancer_id: &str,
    flavor: &str,
    strategy: &str,
) -> sched::Explanation {
    devices
        .explain_placement(ExplainPlacementRequest {
            loadbalancer_id: loadbalancer_id.into(),
            project_id: "p".into(),
            flavor: flavor.into(),
            strategy: strategy.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The provider API is admin only; service types are validated; explain scores every device and
/// names the filter that refused the others.
async fn provider_api_and_explain(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let raw = DeviceServiceClient::new(support::channel(stack.scheduler).await);
    let err = raw
        .clone()
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = raw
        .clone()
        .list_agents(with_token(READER_TOKEN, ListAgentsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = raw
        .clone()
        .register_device(with_token("forged", RegisterDeviceRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut devices = stack.devices().await;
    let agents = devices
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents.agents.len(), 1);
    assert!(agents.agents[0].alive);
    assert_eq!(agents.agents[0].drivers, vec!["noop".to_owned()]);
    assert_eq!(agents.agents[0].device_ids.len(), 1);
    assert!(!agents.failover_held);
    assert_eq!(agents.failover_status, "armed: no device is DOWN");
    let agent_id = agents.agents[0].id.clone();
    let hosted = agents.agents[0].device_ids[0].clone();

    // Bad service types: every problem at once, nothing stored.
    let err = devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(ServiceType {
                name: "has space".into(),
                strategy: "magic*2".into(),
                on_demand: true,
                device_kind: DeviceKind::Physical as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let fields = support::violations(&err);
    for f in [
        "service_type.name",
        "service_type.strategy",
        "service_type.driver",
        "service_type.on_demand",
    ] {
        assert!(fields.contains(&f.to_owned()), "{fields:?}");
    }
    let gold = ServiceType {
        name: "gold".into(),
        driver: "noop".into(),
        strategy: "least-loaded".into(),
        required_labels: [("tier".to_owned(), "gold".to_owned())].into(),
        ..Default::default()
    };
    devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(gold.clone()),
        })
        .await
        .unwrap();
    let err = devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(gold),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    // Two gold devices (one busier) besides the agent's own unlabelled one.
    for (id, capacity) in [("gold-big", 100), ("gold-small", 2)] {
        devices
            .register_device(RegisterDeviceRequest {
                device: Some(Device {
                    id: id.into(),
                    driver: "noop".into(),
                    agent_id: agent_id.clone(),
                    capacity,
                    vip_cidr: stack.vip_cidr.clone(),
                    r#virtual: true,
                    labels: [("tier".to_owned(), "gold".to_owned())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    // The fleet is a cache the scheduler refreshes: wait until both new devices count.
    let explained = poll_until(
        Duration::from_secs(10),
        "both gold devices to be eligible",
        || {
            let mut devices = devices.clone();
            async move {
                let e = explain(&mut devices, "lb-x", "gold", "").await;
                (e.candidates.iter().filter(|c| c.eligible).count() == 2).then_some(e)
            }
        },
    )
    .await;
    assert_eq!(explained.strategy, "load");
    assert_eq!(explained.chosen_device_id, "gold-big", "{explained:?}");
    let order: Vec<(&str, bool, &str)> = explained
        .candidates
        .iter()
        .map(|c| (c.device_id.as_str(), c.eligible, c.rejected_by.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("gold-big", true, ""),
            ("gold-small", true, ""),
            (hosted.as_str(), false, "labels")
        ]
    );
    assert!(explained.why.contains("gold-big"), "{}", explained.why);
    assert_eq!(explained.candidates[0].weights[0].weigher, "load");

    // A strategy override and a fleet where nothing fits.
    let none = explain(&mut devices, "lb-y", "gold", "random").await;
    assert_eq!(none.strategy, "random");
    assert!(!none.chosen_device_id.is_empty());
    for id in ["gold-big", "gold-small"] {
        devices
            .drain_device(sched::DrainDeviceRequest { id: id.into() })
            .await
            .unwrap();
    }
    let none = explain(&mut devices, "lb-z", "gold", "").await;
    assert!(none.chosen_device_id.is_empty());
    assert!(
        none.why.contains("refused by state") && none.why.contains("refused by labels"),
        "{}",
        none.why
    );
    stack.stop().await;
}
on_both_databases!(provider_api_and_explain, haproxy = false);

/// A scheduler replica of its own on `database_url`.
async fn replica(database_url: &str, stop: watch::Receiver<bool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = lbaas_scheduler::SchedulerConfig {
        listen: addr,
        database_url: database_url.into(),
        strategy: "least-loaded".into(),
        heartbeat_interval_ms: 200,
        agent_timeout_ms: 5000,
        failover_max_down_share: 0.5,
        placement_seed: 0,
        fleet_refresh_ms: 100,
        token_file: None,
        jwt: Default::default(),
        metrics_listen: None,
        tls: lbaas::server::tls::TlsConfig::plaintext(),
    };
    let mut stop = stop;
    tokio::spawn(lbaas_scheduler::run(config, listener, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    support::wait_serving(addr).await;
    addr
}

/// 100 placements at once, split across two scheduler replicas sharing one database, onto three
/// devices with room for 30: exactly 30 are placed, the rest get RESOURCE_EXHAUSTED, and no
/// device holds more than its capacity.
async fn capacity_holds_under_concurrency(db: Db) {
    let dir = std::env::temp_dir().join(format!("lbaas-capacity-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, cleanup) = match db {
        Db::Sqlite => (
            format!("sqlite://{}", dir.join("scheduler.db").display()),
            None,
        ),
        Db::Postgres => {
            let admin = support::postgres_url();
            let name = format!("lbaas_capacity_{}", uuid::Uuid::new_v4().simple());
            (
                support::create_postgres_database(&admin, &name).await,
                Some((admin, name)),
            )
        }
    };
    let (stop, rx) = watch::channel(false);
    let first = replica(&url, rx.clone()).await;
    let second = replica(&url, rx).await;
    let vip_cidr = support::unique_vip_cidr();
    let mut registry = AgentRegistryServiceClient::new(support::channel(first).await);
    registry
        .register_agent(RegisterAgentRequest {
            agent_id: "agent-cap".into(),
            // Nobody listens there: only placement is under test.
            address: "http://127.0.0.1:1".into(),
            devices: (0..3)
                .map(|i| Device {
                    id: format!("cap-{i}"),
                    driver: "noop".into(),
                    agent_id: "agent-cap".into(),
                    capacity: 10,
                    vip_cidr: vip_cidr.clone(),
                    r#virtual: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Keep the agent alive for both replicas (the second hears of it through the database).
    let beat = tokio::spawn(async move {
        loop {
            let _ = registry
                .heartbeat(HeartbeatRequest {
                    agent_id: "agent-cap".into(),
                })
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut second_devices = DeviceServiceClient::new(support::channel(second).await);
    poll_until(
        Duration::from_secs(10),
        "the second replica to see the devices",
        || {
            let mut d = second_devices.clone();
            async move {
                d.explain_placement(ExplainPlacementRequest {
                    loadbalancer_id: "probe".into(),
                    ..Default::default()
                })
                .await
                .ok()
                .filter(|e| e.get_ref().candidates.iter().filter(|c| c.eligible).count() == 3)
            }
        },
    )
    .await;

    let clients = [
        SchedulerServiceClient::new(support::channel(first).await),
        SchedulerServiceClient::new(support::channel(second).await),
    ];
    let mut attempts = Vec::new();
    for i in 0..100 {
        let mut client = clients[i % 2].clone();
        attempts.push(tokio::spawn(async move {
            let request = DeployRequest {
                generation: 1,
                config: Some(LoadBalancerConfig {
                    id: format!("lb-{i:03}"),
                    project_id: format!("p{}", i % 7),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match client.deploy(request).await {
                Ok(stream) => match stream.into_inner().next().await {
                    Some(Ok(sched::DeployEvent {
                        event: Some(Event::Placed(p)),
                    })) => Ok(p),
                    other => panic!("expected the placement first, got {other:?}"),
                },
                Err(status) => Err(status.code()),
            }
        }));
    }
    let mut placed = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok(p) => placed.push(p),
            Err(tonic::Code::ResourceExhausted) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((placed.len(), refused), (30, 70));
    let mut per_device: BTreeMap<String, usize> = BTreeMap::new();
    for p in &placed {
        *per_device.entry(p.device_id.clone()).or_default() += 1;
    }
    assert_eq!(
        per_device.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{per_device:?}"
    );
    let vips: std::collections::HashSet<_> = placed.iter().map(|p| p.vip_address.clone()).collect();
    assert_eq!(vips.len(), 30, "every VIP is distinct");
    let listed = second_devices
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.devices.iter().all(|d| d.load == 10),
        "{:?}",
        listed.devices
    );

    beat.abort();
    let _ = stop.send(true);
    if let Some((admin, name)) = cleanup {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(conn) = sea_orm::Database::connect(&admin).await {
            use sea_orm::ConnectionTrait as _;
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
on_both_databases!(capacity_holds_under_concurrency, haproxy = false);

/// A load balancer whose VIP network the device is not on yet: the scheduler has the agent attach
/// the device first (the agent keeps the attachment across restarts), the VIP comes from the
/// network, and traffic flows through HAProxy. Member networks are wired the same way.
async fn wiring_attaches_devices_to_networks(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let mut devices = stack.devices().await;
    let vip_net = support::unique_vip_cidr();
    devices
        .create_network(CreateNetworkRequest {
            network: Some(Network {
                name: "blue".into(),
                cidr: vip_net.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    devices
        .create_network(CreateNetworkRequest {
            network: Some(Network {
                name: "backends".into(),
                cidr: "127.0.0.0/24".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let device_id = devices
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices[0]
        .id
        .clone();
    let before = devices
        .get_device(GetDeviceRequest {
            id: device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(before.networks.is_empty());

    let backend = Backend::start("blue-backend").await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let mut lb = support::populated("wired", 8080, vec![support::member_at(backend.port())]);
    lb.vip_network_id = "blue".into();
    let lb = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lb.vip_network_id, "blue");
    let lb = wait_settled(&api, &project, &lb.id).await;
    assert_eq!(
        lb.provisioning_status(),
        Prov::Active,
        "{}",
        lb.status_reason
    );
    let net: ipnet::IpNet = vip_net.parse().unwrap();
    assert!(
        net.contains(&lb.vip_address.parse::<std::net::IpAddr>().unwrap()),
        "{} in {vip_net}",
        lb.vip_address
    );
    let after = devices
        .get_device(GetDeviceRequest {
            id: device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.networks,
        vec!["backends".to_owned(), "blue".to_owned()]
    );
    assert_eq!(
        spread(&format!("{}:8080", lb.vip_address), 4)
            .await
            .get("blue-backend"),
        Some(&4)
    );
    // The device got a port on each network, from the network's range, never the VIP.
    let blue_port = after.ports.get("blue").cloned().unwrap_or_default();
    assert!(
        net.contains(&blue_port.parse::<std::net::IpAddr>().unwrap()),
        "{:?}",
        after.ports
    );
    assert_ne!(blue_port, lb.vip_address);
    assert!(after.ports.contains_key("backends"), "{:?}", after.ports);

    // Networks never overlap, and their gateway and range lie inside them.
    let bad_network = |cidr: &str, gateway: &str| Network {
        name: "bad".into(),
        cidr: cidr.into(),
        gateway: gateway.into(),
        ..Default::default()
    };
    for (network, field) in [
        (bad_network(&vip_net, ""), "network.cidr"),
        (bad_network("127.0.0.128/25", ""), "network.cidr"),
        (
            bad_network("127.1.250.0/24", "127.1.251.1"),
            "network.gateway",
        ),
    ] {
        let err = devices
            .create_network(CreateNetworkRequest {
                network: Some(network),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert_eq!(support::violations(&err), vec![field.to_owned()]);
    }
    // A VIP outside its network is refused, and so is the address of a device's port.
    for (vip, code) in [
        ("10.9.9.9", tonic::Code::InvalidArgument),
        (blue_port.as_str(), tonic::Code::AlreadyExists),
    ] {
        let mut spec = support::populated("clash", 8080, vec![support::member_at(backend.port())]);
        spec.vip_network_id = "blue".into();
        spec.vip_address = vip.into();
        let err = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(spec),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{vip}: {err:?}");
    }

    // The agent remembers: after a restart it registers the device with its networks.
    stack.kill_agent().await;
    stack.start_agent().await;
    let agent_record = std::fs::read(
        stack
            .agent_config
            .state_dir
            .join(&device_id)
            .join("device.pb"),
    )
    .unwrap();
    let record =
        <lbaas::agent::v1::HostedDevice as prost::Message>::decode(agent_record.as_slice())
            .unwrap();
    assert_eq!(
        record.networks,
        vec!["backends".to_owned(), "blue".to_owned()]
    );
    // A network in use cannot be deleted.
    let err = devices
        .delete_network(sched::DeleteNetworkRequest {
            name: "blue".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    stack.stop().await;
}
on_both_databases!(wiring_attaches_devices_to_networks, haproxy = true);

/// A service type that allows devices on demand: when no device fits, the scheduler has the agent
/// start a new HAProxy instance, registers it and places there; the load balancer serves traffic.
async fn devices_are_created_on_demand(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let mut devices = stack.devices().await;
    devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(elastic(1)),
        })
        .await
        .unwrap();
    let backend = Backend::start("elastic-backend").await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let mut ids = Vec::new();
    for name in ["e1", "e2"] {
        let mut lb = support::populated(name, 8080, vec![support::member_at(backend.port())]);
        lb.flavor = "elastic".into();
        let lb = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let lb = wait_settled(&api, &project, &lb.id).await;
        assert_eq!(
            lb.provisioning_status(),
            Prov::Active,
            "{}",
            lb.status_reason
        );
        assert_eq!(
            spread(&format!("{}:8080", lb.vip_address), 2)
                .await
                .get("elastic-backend"),
            Some(&2)
        );
        ids.push(lb.id);
    }
    let listed = devices
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let created: Vec<&Device> = listed.devices.iter().filter(|d| d.on_demand).collect();
    assert_eq!(
        created.len(),
        2,
        "capacity 1 each: one device per load balancer: {:?}",
        listed.devices
    );
    for d in &created {
        assert!(d.r#virtual);
        assert_eq!(d.driver, "haproxy");
        assert_eq!(d.labels.get("pool").map(String::as_str), Some("elastic"));
        assert_eq!(d.load, 1);
    }
    let placed: std::collections::HashSet<String> =
        futures::future::join_all(ids.iter().map(|id| device_of(&stack, id)))
            .await
            .into_iter()
            .collect();
    let created_ids: std::collections::HashSet<String> =
        created.iter().map(|d| d.id.clone()).collect();
    assert_eq!(placed, created_ids);
    // The agent lists them among its devices.
    let agents = devices
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agents.agents[0].device_ids.len(), 3);
    stack.stop().await;
}
on_both_databases!(devices_are_created_on_demand, haproxy = true);

/// A zone as the operator defines it.
fn zone(name: &str, labels: &[(&str, &str)]) -> sched::AvailabilityZone {
    sched::AvailabilityZone {
        name: name.into(),
        description: format!("zone {name}"),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        enabled: None,
    }
}

/// Availability zones: the operator defines them by device labels; a load balancer created in one
/// is placed only on its devices (the agent's own, and one created on demand in the same zone)
/// and serves traffic there; a zone with no device leaves the load balancer in ERROR saying so;
/// unknown, disabled and contradictory zones are refused with a field violation and nothing
/// stored; explain shows the zone; a zone in use cannot be deleted.
async fn availability_zones_confine_placement(db: Db) {
    let stack = Stack::start(StackOptions {
        db,
        deploy_deadline_ms: 8_000,
        ..Default::default()
    })
    .await;
    let mut devices = stack.devices().await;
    let hosted = devices
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents[0]
        .device_ids[0]
        .clone();
    devices
        .update_device(sched::UpdateDeviceRequest {
            device: Some(Device {
                id: hosted.clone(),
                labels: [("zone".to_owned(), "a".to_owned())].into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
        })
        .await
        .unwrap();

    // Bad zones: every problem at once, nothing stored.
    let err = devices
        .create_availability_zone(sched::CreateAvailabilityZoneRequest {
            availability_zone: Some(zone("has space", &[])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let fields = support::violations(&err);
    for f in ["availability_zone.name", "availability_zone.labels"] {
        assert!(fields.contains(&f.to_owned()), "{fields:?}");
    }
    for z in [
        zone("az-a", &[("zone", "a")]),
        zone("az-b", &[("zone", "b")]),
        zone("az-c", &[("zone", "c")]),
    ] {
        let created = devices
            .create_availability_zone(sched::CreateAvailabilityZoneRequest {
                availability_zone: Some(z),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.enabled, Some(true));
    }
    let err = devices
        .create_availability_zone(sched::CreateAvailabilityZoneRequest {
            availability_zone: Some(zone("az-a", &[("zone", "a")])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    let listed = devices
        .list_availability_zones(sched::ListAvailabilityZonesRequest {})
        .await
        .unwrap()
        .into_inner()
        .availability_zones;
    assert_eq!(
        listed.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
        ["az-a", "az-b", "az-c"]
    );
    // az-c takes nothing new; a flavor whose labels contradict a zone's cannot be used in it.
    devices
        .update_availability_zone(sched::UpdateAvailabilityZoneRequest {
            availability_zone: Some(sched::AvailabilityZone {
                name: "az-c".into(),
                enabled: Some(false),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
        })
        .await
        .unwrap();
    let err = devices
        .update_availability_zone(sched::UpdateAvailabilityZoneRequest {
            availability_zone: Some(zone("az-a", &[("zone", "b")])),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(ServiceType {
                name: "in-b".into(),
                required_labels: [("zone".to_owned(), "b".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    devices
        .create_service_type(CreateServiceTypeRequest {
            service_type: Some(elastic(5)),
        })
        .await
        .unwrap();

    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    // Tenants see the zones (not their labels) and the flavors they may name.
    let seen = api
        .list_availability_zones(in_project(&project, pb::ListAvailabilityZonesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .availability_zones;
    assert_eq!(
        seen.iter()
            .map(|z| (z.name.as_str(), z.enabled))
            .collect::<Vec<_>>(),
        [("az-a", true), ("az-b", true), ("az-c", false)]
    );
    let flavors = api
        .list_flavors(in_project(&project, pb::ListFlavorsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .flavors;
    let mut names: Vec<(&str, &str)> = flavors
        .iter()
        .map(|f| (f.name.as_str(), f.topology.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("elastic", "SINGLE"), ("in-b", "SINGLE")]);
    for (zone_name, flavor, why) in [
        ("nowhere", "", "no availability zone is named"),
        ("az-c", "", "is disabled"),
        ("az-a", "in-b", "needs zone=b"),
        ("bad zone", "", "letters, digits"),
    ] {
        let mut lb = support::populated("refused", 8080, vec![support::member_at(1)]);
        lb.availability_zone = zone_name.into();
        lb.flavor = flavor.into();
        let err = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{zone_name}");
        assert_eq!(
            support::violations(&err),
            vec!["load_balancer.availability_zone".to_owned()],
            "{zone_name}"
        );
        assert!(
            err.message().contains(why),
            "{zone_name}: {}",
            err.message()
        );
    }
    let stored = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .load_balancers;
    assert!(stored.is_empty(), "refused creates stored {stored:?}");

    // In az-a: on the agent's own device, and (flavor elastic) on a device created on demand in
    // the zone; both serve traffic.
    let backend = Backend::start("zone-backend").await;
    let mut placed = Vec::new();
    for (name, flavor, port) in [("in-a", "", 8081), ("elastic-in-a", "elastic", 8082)] {
        let mut lb = support::populated(name, port, vec![support::member_at(backend.port())]);
        lb.availability_zone = "az-a".into();
        lb.flavor = flavor.into();
        let created = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let lb = wait_settled(&api, &project, &created.id).await;
        assert_eq!(
            lb.provisioning_status(),
            Prov::Active,
            "{}",
            lb.status_reason
        );
        assert_eq!(lb.availability_zone, "az-a");
        assert_eq!(
            spread(&format!("{}:{port}", lb.vip_address), 2)
                .await
                .get("zone-backend"),
            Some(&2)
        );
        placed.push(device_of(&stack, &lb.id).await);
    }
    assert_eq!(placed[0], hosted);
    let on_demand = devices
        .get_device(GetDeviceRequest {
            id: placed[1].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(on_demand.on_demand, "{on_demand:?}");
    assert_eq!(on_demand.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(
        on_demand.labels.get("pool").map(String::as_str),
        Some("elastic")
    );

    // In az-b: no device is in it, so the load balancer ends in ERROR, saying why.
    let mut lb = support::populated("in-b", 8083, vec![support::member_at(backend.port())]);
    lb.availability_zone = "az-b".into();
    let created = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lb = wait_settled(&api, &project, &created.id).await;
    assert_eq!(lb.provisioning_status(), Prov::Error);
    assert!(
        lb.status_reason.contains("not in availability zone az-b"),
        "{}",
        lb.status_reason
    );

    // Explain names the zone and the filter that refuses devices outside it.
    let explained = devices
        .explain_placement(ExplainPlacementRequest {
            project_id: "p".into(),
            availability_zone: "az-b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.availability_zone, "az-b");
    assert_eq!(
        explained.zone_labels.get("zone").map(String::as_str),
        Some("b")
    );
    assert!(explained.chosen_device_id.is_empty());
    assert!(
        explained
            .candidates
            .iter()
            .all(|c| !c.eligible && c.rejected_by == "availability-zone"),
        "{explained:?}"
    );
    let explained = devices
        .explain_placement(ExplainPlacementRequest {
            project_id: "p".into(),
            availability_zone: "az-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!explained.chosen_device_id.is_empty(), "{explained:?}");

    // A zone that holds load balancers stays; an empty one goes.
    let err = devices
        .delete_availability_zone(sched::DeleteAvailabilityZoneRequest {
            name: "az-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    devices
        .delete_availability_zone(sched::DeleteAvailabilityZoneRequest {
            name: "az-c".into(),
        })
        .await
        .unwrap();
    stack.stop().await;
}
on_both_databases!(availability_zones_confine_placement, haproxy = true);
