//! The data plane under change, on each driver: continuous traffic through a VIP while 100
//! configuration changes are applied (member weights, a member added and removed, a listener added
//! and removed, the pool's algorithm switched) and not one request fails; suspend and enable;
//! traffic counters that rise with traffic and survive reloads; HTTP listeners balancing each
//! request over keep-alive and HTTP/2 connections; connection limits; Libra's DISCOVER and
//! DIAGNOSTICS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use lbaas::api::v1::{self as pb, ProvisioningStatus as Prov};
use prost_types::FieldMask;
use support::{Backend, Db, Stack, StackOptions, in_project, member_at, populated, wait_settled};

fn mask(path: &str) -> Option<FieldMask> {
    Some(FieldMask {
        paths: vec![path.to_owned()],
    })
}

async fn changes_under_load_drop_nothing(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = support::create_active(
        &mut api,
        &project,
        populated("busy", 8080, vec![member_at(a.port()), member_at(b.port())]),
    )
    .await;
    let pool_id = lb.pool_ids[0].clone();
    let members = support::pool_members(&api, &project, &pool_id).await;
    let member_a = members
        .iter()
        .find(|m| m.protocol_port == a.port())
        .unwrap()
        .id
        .clone();

    // A client that never stops asking, one new connection per request.
    let vip = format!("{}:8080", lb.vip_address);
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (running, ok, failed, vip) = (running.clone(), ok.clone(), failed.clone(), vip.clone());
        tokio::spawn(async move {
            let mut errors = Vec::new();
            while running.load(Ordering::Relaxed) {
                match support::http_get(&vip).await {
                    Ok(body) if ["a", "b", "c"].iter().any(|n| body.contains(n)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
                // Paced, so that other tests running beside this one still get the CPU.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            errors
        })
    };

    let started = Instant::now();
    let mut extra_member: Option<String> = None;
    let mut extra_listener: Option<String> = None;
    for i in 0..100u32 {
        match i % 4 {
            0 => {
                api.update_member(in_project(
                    &project,
                    pb::UpdateMemberRequest {
                        member: Some(pb::Member {
                            id: member_a.clone(),
                            weight: Some(i32::try_from(i % 5 + 1).unwrap()),
                            ..Default::default()
                        }),
                        update_mask: mask("weight"),
                    },
                ))
                .await
                .unwrap();
            }
            1 => match extra_member.take() {
                Some(id) => {
                    api.delete_member(in_project(&project, pb::DeleteMemberRequest { id }))
                        .await
                        .unwrap();
                }
                None => {
                    let m = api
                        .create_member(in_project(
                            &project,
                            pb::CreateMemberRequest {
                                member: Some(pb::Member {
                                    pool_id: pool_id.clone(),
                                    ..member_at(c.port())
                                }),
                                request_id: String::new(),
                            },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    extra_member = Some(m.id);
                }
            },
            2 => match extra_listener.take() {
                Some(id) => {
                    api.delete_listener(in_project(&project, pb::DeleteListenerRequest { id }))
                        .await
                        .unwrap();
                }
                None => {
                    let l = api
                        .create_listener(in_project(
                            &project,
                            pb::CreateListenerRequest {
                                listener: Some(pb::Listener {
                                    loadbalancer_id: lb.id.clone(),
                                    protocol: pb::Protocol::Http as i32,
                                    protocol_port: 8081,
                                    ..Default::default()
                                }),
                                request_id: String::new(),
                            },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    extra_listener = Some(l.id);
                }
            },
            _ => {
                let algorithm = if i % 8 == 3 {
                    pb::LbAlgorithm::LeastConnections
                } else {
                    pb::LbAlgorithm::RoundRobin
                };
                api.update_pool(in_project(
                    &project,
                    pb::UpdatePoolRequest {
                        pool: Some(pb::Pool {
                            id: pool_id.clone(),
                            lb_algorithm: algorithm as i32,
                            ..Default::default()
                        }),
                        update_mask: mask("lb_algorithm"),
                    },
                ))
                .await
                .unwrap();
            }
        }
        let settled = wait_settled(&api, &project, &lb.id).await;
        assert_eq!(
            settled.provisioning_status(),
            Prov::Active,
            "change {i}: {}",
            settled.status_reason
        );
    }
    let took = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let errors = client.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "{driver}: 100 changes in {} ms, {ok} requests served, {failed} failed",
        took.as_millis()
    );
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(ok >= 100, "the client barely ran: {ok} requests");
    stack.stop().await;
}
on_both_databases!(changes_under_load_on_haproxy => changes_under_load_drop_nothing("haproxy"), haproxy = true);
on_both_databases!(changes_under_load_on_native => changes_under_load_drop_nothing("native"), haproxy = false);

/// Libra's SUSPEND and ENABLE are the load balancer's admin state: down stops traffic (the VIP
/// refuses connections), up restores it, on each driver.
async fn suspend_and_enable(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("up").await;
    let lb = support::create_active(
        &mut api,
        &project,
        populated("pausable", 8080, vec![member_at(backend.port())]),
    )
    .await;
    let vip = format!("{}:8080", lb.vip_address);
    assert_eq!(support::http_get(&vip).await.unwrap(), "up");
    for (admin_state_up, serving) in [(false, false), (true, true)] {
        api.update_load_balancer(in_project(
            &project,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    id: lb.id.clone(),
                    admin_state_up: Some(admin_state_up),
                    ..Default::default()
                }),
                update_mask: mask("admin_state_up"),
            },
        ))
        .await
        .unwrap();
        let settled = wait_settled(&api, &project, &lb.id).await;
        assert_eq!(
            settled.provisioning_status(),
            Prov::Active,
            "{}",
            settled.status_reason
        );
        let answer = support::http_get(&vip).await;
        assert_eq!(
            answer.is_ok(),
            serving,
            "admin_state_up {admin_state_up}: {answer:?}"
        );
    }
    stack.stop().await;
}
on_both_databases!(suspend_on_haproxy => suspend_and_enable("haproxy"), haproxy = true);
on_both_databases!(suspend_on_native => suspend_and_enable("native"), haproxy = false);

/// Traffic counters rise with traffic and keep rising across a structural change (on HAProxy, a
/// reload that starts a new worker whose own counters begin at zero); per load balancer and per
/// listener, and only for the project that owns them.
async fn stats_rise_with_traffic(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("counted").await;
    let lb = support::create_active(
        &mut api,
        &project,
        populated("counted", 8080, vec![member_at(backend.port())]),
    )
    .await;
    let vip = format!("{}:8080", lb.vip_address);
    let (lb_id, listener_id) = (lb.id.clone(), lb.listener_ids[0].clone());
    let (reader, reader_project, reader_lb) = (api.clone(), project.clone(), lb_id.clone());
    let stats_at_least = move |connections: u64| {
        let (api, project, id) = (reader.clone(), reader_project.clone(), reader_lb.clone());
        support::poll_until(
            std::time::Duration::from_secs(10),
            "the counters to catch up",
            move || {
                let (mut api, project, id) = (api.clone(), project.clone(), id.clone());
                async move {
                    let stats = api
                        .get_load_balancer_stats(in_project(
                            &project,
                            pb::GetLoadBalancerStatsRequest { id },
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    (stats.total_connections >= connections).then_some(stats)
                }
            },
        )
    };
    for _ in 0..20 {
        support::http_get(&vip).await.unwrap();
    }
    let first = stats_at_least(20).await;
    assert!(
        first.bytes_in > 0 && first.bytes_out > first.bytes_in,
        "{first:?}"
    );
    assert!(first.observed_ms > 0);

    // A structural change: a second listener (a reload on HAProxy).
    api.create_listener(in_project(
        &project,
        pb::CreateListenerRequest {
            listener: Some(pb::Listener {
                loadbalancer_id: lb.id.clone(),
                protocol: pb::Protocol::Http as i32,
                protocol_port: 8081,
                ..Default::default()
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    let settled = wait_settled(&api, &project, &lb.id).await;
    assert_eq!(
        settled.provisioning_status(),
        Prov::Active,
        "{}",
        settled.status_reason
    );
    for _ in 0..10 {
        support::http_get(&vip).await.unwrap();
    }
    let second = stats_at_least(30).await;
    assert!(
        second.bytes_in > first.bytes_in && second.bytes_out > first.bytes_out,
        "{second:?}"
    );
    assert_eq!(
        second.total_connections, 30,
        "nothing lost or counted twice: {second:?}"
    );
    let listener = api
        .get_listener_stats(in_project(
            &project,
            pb::GetListenerStatsRequest { id: listener_id },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listener.total_connections, 30);
    let hidden = api
        .get_load_balancer_stats(in_project(
            "someone-else",
            pb::GetLoadBalancerStatsRequest { id: lb_id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    stack.stop().await;
}
on_both_databases!(stats_on_haproxy => stats_rise_with_traffic("haproxy"), haproxy = true);
on_both_databases!(stats_on_native => stats_rise_with_traffic("native"), haproxy = false);

/// Sends `n` GETs over one connection (HTTP/1.1 keep-alive, or HTTP/2 with prior knowledge) and
/// counts the answers per body.
async fn one_connection(
    addr: &str,
    n: usize,
    http2: bool,
) -> std::collections::BTreeMap<String, usize> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;
    let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    // HTTP/1.1 in origin form with a Host; HTTP/2 carries the authority in the URI.
    let request = || {
        let builder = if http2 {
            hyper::Request::builder().uri(format!("http://{addr}/"))
        } else {
            hyper::Request::builder()
                .uri("/")
                .header(hyper::header::HOST, "lbaas-test")
        };
        builder.body(Empty::<Bytes>::new()).unwrap()
    };
    let mut counts = std::collections::BTreeMap::new();
    let mut count = |body: Bytes| {
        *counts
            .entry(String::from_utf8_lossy(&body).into_owned())
            .or_insert(0) += 1;
    };
    if http2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        for _ in 0..n {
            let response = sender.send_request(request()).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            count(response.into_body().collect().await.unwrap().to_bytes());
        }
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..n {
            sender.ready().await.unwrap();
            let response = sender.send_request(request()).await.unwrap();
            assert_eq!(response.status(), 200);
            count(response.into_body().collect().await.unwrap().to_bytes());
        }
    }
    counts
}

/// HTTP listeners balance each request, not each connection: 20 requests over one keep-alive
/// connection split 10/10; on the native driver HTTP/2 clients (prior knowledge) are served and
/// balanced the same way.
async fn http_listeners_balance_each_request(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = support::create_active(
        &mut api,
        &project,
        populated(
            "per-request",
            8080,
            vec![member_at(a.port()), member_at(b.port())],
        ),
    )
    .await;
    let vip = format!("{}:8080", lb.vip_address);
    let even = std::collections::BTreeMap::from([("a".to_owned(), 10), ("b".to_owned(), 10)]);
    assert_eq!(one_connection(&vip, 20, false).await, even);
    if driver == "native" {
        assert_eq!(one_connection(&vip, 20, true).await, even);
    }
    stack.stop().await;
}
on_both_databases!(per_request_on_haproxy => http_listeners_balance_each_request("haproxy"), haproxy = true);
on_both_databases!(per_request_on_native => http_listeners_balance_each_request("native"), haproxy = false);

/// Libra's DISCOVER and DIAGNOSTICS: the agent names its drivers and versions; each driver checks
/// its device, and one without diagnostics says so (UNIMPLEMENTED).
async fn discover_and_diagnostics(db: Db, driver: &'static str) {
    use lbaas::agent::v1::{
        DiagnosticsRequest, DiscoverRequest, agent_service_client::AgentServiceClient,
    };
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("diag").await;
    let lb = support::create_active(
        &mut api,
        &project,
        populated("diag", 8080, vec![member_at(backend.port())]),
    )
    .await;

    let mut agent = AgentServiceClient::new(support::channel(stack.agent).await);
    let found = agent
        .discover(DiscoverRequest {})
        .await
        .unwrap()
        .into_inner();
    let drivers: std::collections::BTreeMap<String, bool> = found
        .drivers
        .iter()
        .map(|d| (d.name.clone(), d.available))
        .collect();
    assert_eq!(drivers.get("native"), Some(&true));
    assert_eq!(drivers.get("haproxy"), Some(&support::haproxy_installed()));
    if support::haproxy_installed() {
        let haproxy = found.drivers.iter().find(|d| d.name == "haproxy").unwrap();
        assert!(haproxy.version.starts_with("2."), "{haproxy:?}");
    }
    assert_eq!(found.devices.len(), 1);
    let device_id = found.devices[0].id.clone();
    assert_eq!(found.devices[0].driver, driver);

    let answer = agent
        .diagnostics(DiagnosticsRequest {
            device_id: device_id.clone(),
        })
        .await;
    match driver {
        "noop" => {
            let err = answer.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unimplemented);
            assert!(
                err.message().contains("does not support diagnostics"),
                "{}",
                err.message()
            );
        }
        _ => {
            let report = answer.unwrap().into_inner();
            assert_eq!(report.driver, driver);
            assert!(!report.checks.is_empty());
            for check in &report.checks {
                assert!(check.ok, "{check:?}");
            }
            let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
            if driver == "haproxy" {
                assert_eq!(names, vec!["binary", "master", "config", "stats socket"]);
            } else {
                assert!(
                    names.contains(&format!("listener {}:8080", lb.vip_address).as_str()),
                    "{names:?}"
                );
            }
        }
    }
    let err = agent
        .diagnostics(DiagnosticsRequest {
            device_id: "no-such-device".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    stack.stop().await;
}
on_both_databases!(diagnostics_on_haproxy => discover_and_diagnostics("haproxy"), haproxy = true);
on_both_databases!(diagnostics_on_native => discover_and_diagnostics("native"), haproxy = false);
on_both_databases!(diagnostics_on_noop => discover_and_diagnostics("noop"), haproxy = false);

/// A listener's connection limit: with the limit taken by an open connection, a new client waits
/// (HAProxy's maxconn queues it; so does the native driver) and is served once a slot frees.
async fn connection_limit_holds(db: Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let project = support::fresh_project();
    let mut api = stack.api_client().await;
    let backend = Backend::start("limited").await;
    let mut spec = populated("limited", 8080, vec![member_at(backend.port())]);
    spec.listeners[0].connection_limit = 1;
    let lb = support::create_active(&mut api, &project, spec).await;
    let vip = format!("{}:8080", lb.vip_address);
    assert_eq!(support::http_get(&vip).await.unwrap(), "limited");

    // Hold the only slot with an idle connection that has sent nothing.
    let holder = tokio::net::TcpStream::connect(&vip).await.unwrap();
    let mut waiting = tokio::spawn({
        let vip = vip.clone();
        async move { support::http_get(&vip).await }
    });
    // Not served while the slot is held (a bounded wait for something that must not happen).
    let early = tokio::time::timeout(std::time::Duration::from_millis(700), &mut waiting).await;
    assert!(
        early.is_err(),
        "a second connection was served past the limit of 1: {early:?}"
    );
    drop(holder);
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client is served once the slot frees")
        .unwrap();
    assert_eq!(served.unwrap(), "limited");
    stack.stop().await;
}
on_both_databases!(limit_on_haproxy => connection_limit_holds("haproxy"), haproxy = true);
on_both_databases!(limit_on_native => connection_limit_holds("native"), haproxy = false);
