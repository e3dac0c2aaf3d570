//! Failover end to end: two agents with HAProxy devices; one host dies (agent and HAProxy); its
//! load balancer serves again from the other device, moving through PENDING_UPDATE back to ACTIVE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use lbaas::{
    api::v1::{self as pb, ProvisioningStatus as Prov},
    scheduler::v1::{
        DeviceState, GetPlacementRequest, ListDevicesRequest,
        scheduler_service_client::SchedulerServiceClient,
    },
};
use support::{Backend, Db, Stack, StackOptions, in_project, poll_until, spread, wait_settled};

fn populated(name: &str, backend: &Backend) -> pb::LoadBalancer {
    support::populated(name, 8080, vec![support::member_at(backend.port())])
}

async fn a_dead_host_fails_over(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let survivor_device = stack.add_agent("agent-b").await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("up").await;
    let mut scheduler = SchedulerServiceClient::new(support::channel(stack.scheduler).await);
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let lb = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(populated(name, &backend)),
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
        ids.push(lb);
    }
    // Least-loaded put one on each device.
    let mut on_doomed = None;
    let mut on_survivor = None;
    for lb in &ids {
        let placement = scheduler
            .get_placement(GetPlacementRequest {
                loadbalancer_id: lb.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if placement.device_id == survivor_device {
            on_survivor = Some(lb.clone())
        } else {
            on_doomed = Some(lb.clone())
        }
    }
    let (doomed, safe) = (
        on_doomed.expect("a load balancer on the first device"),
        on_survivor.expect("one on the second"),
    );
    let doomed_vip = format!("{}:8080", doomed.vip_address);
    let safe_vip = format!("{}:8080", safe.vip_address);
    assert_eq!(spread(&doomed_vip, 2).await.get("up"), Some(&2));

    let mut events = api
        .watch_load_balancer(in_project(
            &project,
            pb::WatchLoadBalancerRequest {
                id: doomed.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        events.next().await.unwrap().unwrap().kind(),
        pb::ChangeKind::Initial
    );
    stack.kill_agent_host().await;
    let died = Instant::now();
    poll_until(
        Duration::from_secs(5),
        "the dead host's HAProxy to be gone",
        || {
            let vip = doomed_vip.clone();
            async move { support::http_get(&vip).await.is_err().then_some(()) }
        },
    )
    .await;
    assert_eq!(
        spread(&safe_vip, 2).await.get("up"),
        Some(&2),
        "the other device was disturbed"
    );

    // The watch shows the load balancer pass through PENDING_UPDATE and back to ACTIVE.
    let statuses = tokio::time::timeout(Duration::from_secs(30), async {
        let mut statuses = Vec::new();
        while let Some(event) = events.next().await {
            let lb = event.unwrap().load_balancer.unwrap();
            statuses.push(lb.provisioning_status());
            if lb.provisioning_status() == Prov::Active
                && lb.applied_generation > doomed.applied_generation
            {
                break;
            }
        }
        statuses
    })
    .await
    .expect("the load balancer to fail over");
    let active_after = died.elapsed();
    poll_until(
        Duration::from_secs(10),
        "the VIP to answer from the survivor",
        || {
            let vip = doomed_vip.clone();
            async move { support::http_get(&vip).await.ok() }
        },
    )
    .await;
    let serving_after = died.elapsed();
    eprintln!(
        "failover: ACTIVE {} ms and serving {} ms after the host died (agent timeout 2000 ms)",
        active_after.as_millis(),
        serving_after.as_millis()
    );
    assert!(statuses.contains(&Prov::PendingUpdate), "{statuses:?}");
    assert_eq!(spread(&doomed_vip, 4).await.get("up"), Some(&4));
    let placement = scheduler
        .get_placement(GetPlacementRequest {
            loadbalancer_id: doomed.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placement.device_id, survivor_device);
    assert_eq!(
        placement.vip_address, doomed.vip_address,
        "the VIP moves with the load balancer"
    );
    let devices = stack
        .devices()
        .await
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices;
    let dead = devices.iter().find(|d| d.id != survivor_device).unwrap();
    assert_eq!(dead.state(), DeviceState::Down);
    assert_eq!(dead.load, 0);
    assert!(
        serving_after < Duration::from_secs(2) + Duration::from_secs(8),
        "took {serving_after:?}"
    );
    let after = api
        .get_load_balancer(in_project(
            &project,
            pb::GetLoadBalancerRequest {
                id: doomed.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(after.status_reason.is_empty(), "{}", after.status_reason);
    stack.stop().await;
}

on_both_databases!(a_dead_host_fails_over, haproxy = true);

/// Draining a device moves its load balancers to another device (VIP kept), under traffic; the
/// drained device can then be removed.
async fn draining_moves_load_balancers_off(db: Db) {
    let mut stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("up").await;
    let lb = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(populated("mover", &backend)),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lb = wait_settled(&api, &project, &lb.id).await;
    assert_eq!(lb.provisioning_status(), Prov::Active);
    let mut scheduler = SchedulerServiceClient::new(support::channel(stack.scheduler).await);
    let first = scheduler
        .get_placement(GetPlacementRequest {
            loadbalancer_id: lb.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .device_id;
    let second = stack.add_agent("agent-b").await;
    let vip = format!("{}:8080", lb.vip_address);

    // Traffic throughout the move, counting what fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = traffic_until(&vip, &stop);
    let mut events = api
        .watch_load_balancer(in_project(
            &project,
            pb::WatchLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut devices = stack.devices().await;
    let drained = devices
        .drain_device(lbaas::scheduler::v1::DrainDeviceRequest { id: first.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.state(), DeviceState::Draining);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            let now = event.unwrap().load_balancer.unwrap();
            if now.provisioning_status() == Prov::Active
                && now.applied_generation > lb.applied_generation
            {
                break;
            }
        }
    })
    .await
    .expect("the load balancer to move");
    let placement = scheduler
        .get_placement(GetPlacementRequest {
            loadbalancer_id: lb.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (placement.device_id.as_str(), placement.vip_address.as_str()),
        (second.as_str(), lb.vip_address.as_str())
    );
    // The old device lets go of it in the background.
    poll_until(
        Duration::from_secs(10),
        "the drained device to be empty",
        || {
            let mut devices = devices.clone();
            let first = first.clone();
            async move {
                let d = devices
                    .get_device(lbaas::scheduler::v1::GetDeviceRequest { id: first })
                    .await
                    .ok()?
                    .into_inner();
                (d.load == 0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(spread(&vip, 4).await.get("up"), Some(&4));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    eprintln!("drain under traffic: {ok} requests served, {failed} failed");
    assert!(ok > 0);
    // The old device lets go only after the new one serves, and HAProxy takes a listener out of
    // the kernel's reuseport group before closing it: a sequential client loses nothing.
    assert_eq!(failed, 0, "requests failed during the drain");
    devices
        .delete_device(lbaas::scheduler::v1::DeleteDeviceRequest { id: first.clone() })
        .await
        .expect("an empty device can be removed");
    stack.stop().await;
}

on_both_databases!(draining_moves_load_balancers_off, haproxy = true);

/// Sequential HTTP GETs against `vip` until `stop` is set: (served, failed).
fn traffic_until(
    vip: &str,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u32, u32)> {
    let (vip, stop) = (vip.to_owned(), stop.clone());
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match support::http_get(&vip).await {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        (ok, failed)
    })
}

/// A flavor update with `flavor` in the mask.
async fn resize(
    api: &mut pb::load_balancer_service_client::LoadBalancerServiceClient<
        tonic::transport::Channel,
    >,
    project: &str,
    id: &str,
    flavor: &str,
) -> Result<pb::LoadBalancer, tonic::Status> {
    api.update_load_balancer(in_project(
        project,
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: id.to_owned(),
                flavor: flavor.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["flavor".into()],
            }),
        },
    ))
    .await
    .map(tonic::Response::into_inner)
}

/// Resize (issue 15 item 7): a flavor update moves the load balancer, VIP kept, to a device of the
/// new flavor under traffic with no failed request, and the old device lets go; a flavor the
/// current device also serves keeps it in place. Unknown flavors, a topology change and a flavor
/// with no device able to take it are refused with nothing changed; a flavor in use cannot be
/// deleted.
async fn resize_moves_to_a_device_of_the_new_flavor(db: Db) {
    use lbaas::scheduler::v1::{
        CreateServiceTypeRequest, DeleteServiceTypeRequest, Device, ListAgentsRequest, ServiceType,
        Topology, UpdateDeviceRequest,
    };
    let mut stack = Stack::start(StackOptions {
        db,
        ..Default::default()
    })
    .await;
    let mut devices = stack.devices().await;
    let small_device = devices
        .list_agents(ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents[0]
        .device_ids[0]
        .clone();
    let large_device = stack.add_agent("agent-b").await;
    for (device, size) in [(&small_device, "small"), (&large_device, "large")] {
        devices
            .update_device(UpdateDeviceRequest {
                device: Some(Device {
                    id: device.clone(),
                    labels: [("size".to_owned(), size.to_owned())].into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
            })
            .await
            .unwrap();
    }
    let sized = |name: &str, size: &str| ServiceType {
        name: name.into(),
        required_labels: [("size".to_owned(), size.to_owned())].into(),
        ..Default::default()
    };
    for service_type in [
        sized("small", "small"),
        sized("large", "large"),
        sized("huge", "huge"),
        ServiceType {
            name: "any".into(),
            ..Default::default()
        },
        ServiceType {
            name: "pair".into(),
            topology: Topology::ActiveStandby as i32,
            ..Default::default()
        },
    ] {
        devices
            .create_service_type(CreateServiceTypeRequest {
                service_type: Some(service_type),
            })
            .await
            .unwrap();
    }
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("up").await;
    let mut spec = populated("growing", &backend);
    spec.flavor = "small".into();
    let lb = support::create_active(&mut api, &project, spec).await;
    let mut scheduler = SchedulerServiceClient::new(support::channel(stack.scheduler).await);
    let placement = |scheduler: &mut SchedulerServiceClient<tonic::transport::Channel>| {
        let mut scheduler = scheduler.clone();
        let id = lb.id.clone();
        async move {
            scheduler
                .get_placement(GetPlacementRequest {
                    loadbalancer_id: id,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(placement(&mut scheduler).await.device_id, small_device);

    // Refused, nothing changed: an unknown flavor and a topology change (INVALID_ARGUMENT on the
    // field), a flavor no device can take now (FAILED_PRECONDITION, with the reason).
    for (flavor, code) in [
        ("no-such-flavor", tonic::Code::InvalidArgument),
        ("pair", tonic::Code::InvalidArgument),
        ("huge", tonic::Code::FailedPrecondition),
    ] {
        let err = resize(&mut api, &project, &lb.id, flavor)
            .await
            .expect_err(flavor);
        assert_eq!(err.code(), code, "{flavor}: {err:?}");
        if code == tonic::Code::InvalidArgument {
            assert_eq!(
                support::violations(&err),
                vec!["load_balancer.flavor".to_owned()],
                "{flavor}"
            );
        } else {
            assert!(
                err.message().contains("size"),
                "{flavor}: {}",
                err.message()
            );
        }
        let now = wait_settled(&api, &project, &lb.id).await;
        assert_eq!(
            (
                now.flavor.as_str(),
                now.generation,
                now.provisioning_status()
            ),
            ("small", lb.generation, Prov::Active),
            "{flavor}"
        );
    }

    // small -> large under traffic: the load balancer moves to the large device, VIP kept.
    let vip = format!("{}:8080", lb.vip_address);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = traffic_until(&vip, &stop);
    let mut events = api
        .watch_load_balancer(in_project(
            &project,
            pb::WatchLoadBalancerRequest { id: lb.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    let resized = resize(&mut api, &project, &lb.id, "large").await.unwrap();
    assert_eq!(resized.flavor, "large");
    assert_eq!(resized.provisioning_status(), Prov::PendingUpdate);
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            let now = event.unwrap().load_balancer.unwrap();
            if now.provisioning_status() == Prov::Active
                && now.applied_generation >= resized.generation
            {
                break;
            }
        }
    })
    .await
    .expect("the resize to apply");
    let moved = placement(&mut scheduler).await;
    assert_eq!(
        (moved.device_id.as_str(), moved.vip_address.as_str()),
        (large_device.as_str(), lb.vip_address.as_str())
    );
    poll_until(
        Duration::from_secs(10),
        "the small device to let go",
        || {
            let mut devices = devices.clone();
            let small = small_device.clone();
            async move {
                let d = devices
                    .get_device(lbaas::scheduler::v1::GetDeviceRequest { id: small })
                    .await
                    .ok()?
                    .into_inner();
                (d.load == 0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(spread(&vip, 4).await.get("up"), Some(&4));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = traffic.await.unwrap();
    eprintln!("resize under traffic: {ok} requests served, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during the resize");

    // The flavor in use cannot be deleted; the one left behind can.
    let err = devices
        .delete_service_type(DeleteServiceTypeRequest {
            name: "large".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    devices
        .delete_service_type(DeleteServiceTypeRequest {
            name: "small".into(),
        })
        .await
        .expect("no load balancer uses small any more");

    // large -> any: the large device serves "any" too, so the load balancer stays where it is.
    let kept = resize(&mut api, &project, &lb.id, "any").await.unwrap();
    let kept = wait_settled(&api, &project, &kept.id).await;
    assert_eq!(
        (kept.provisioning_status(), kept.flavor.as_str()),
        (Prov::Active, "any"),
        "{}",
        kept.status_reason
    );
    assert_eq!(placement(&mut scheduler).await.device_id, large_device);
    assert_eq!(spread(&vip, 2).await.get("up"), Some(&2));
    stack.stop().await;
}

on_both_databases!(resize_moves_to_a_device_of_the_new_flavor, haproxy = true);
