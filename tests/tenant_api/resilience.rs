//! Convergence under stress: rapid updates, services killed mid-deploy, the data plane outliving its agent, errors with reasons that recover, and HAProxy killed outright.
use super::*;

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
