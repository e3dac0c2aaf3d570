//! Failover time for many load balancers: N load balancers on one HAProxy device, a second agent
//! with an empty device, then the first host dies (agent and HAProxy killed). Measured from the
//! first agent's last heartbeat to every load balancer ACTIVE again on the survivor, and to every
//! VIP answering. Run: `cargo bench --bench failover` (`LBAAS_BENCH_N`, 100 by default). The agent
//! timeout is the test harness's 2 s; production defaults to 5 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use lbaas::api::v1::{self as pb, ProvisioningStatus as Prov};
use support::{Backend, Stack, StackOptions, in_project};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("LBAAS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    support::require_haproxy();
    let backend = Backend::start("up").await;
    let capacity = i32::try_from(n).unwrap() + 10;
    let mut stack = Stack::start(StackOptions {
        capacity,
        ..Default::default()
    })
    .await;
    let api = stack.api_client().await;
    let project = "bench";
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let lb = api
            .clone()
            .create_load_balancer(in_project(
                project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(support::populated(
                        &format!("lb-{i}"),
                        8080,
                        vec![support::member_at(backend.port())],
                    )),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(lb.id);
    }
    let mut vips = Vec::with_capacity(n);
    for id in &ids {
        let lb = support::wait_settled(&api, project, id).await;
        assert_eq!(lb.provisioning_status(), Prov::Active);
        vips.push(format!("{}:8080", lb.vip_address));
    }
    stack.add_agent("survivor").await;

    // The agent heartbeats every 200 ms: the last one is at most that long before the kill.
    stack.kill_agent_host().await;
    let killed = Instant::now();
    let heartbeat = Duration::from_millis(200);
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let lb = api
                .clone()
                .get_load_balancer(in_project(
                    project,
                    pb::GetLoadBalancerRequest { id: id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            if !(lb.provisioning_status() == Prov::Active
                && lb.status_reason.is_empty()
                && lb.generation > 1)
            {
                still.push(id);
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "{} still not failed over",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let all_active = killed.elapsed();
    for vip in &vips {
        while support::http_get(vip).await.is_err() {
            assert!(killed.elapsed() < Duration::from_secs(120));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let all_serving = killed.elapsed();
    stack.stop().await;
    println!("failover of {n} load balancers (agent timeout 2000 ms, heartbeat every 200 ms)");
    println!(
        "host killed -> all ACTIVE again:   {:>6} ms  (from the last heartbeat: at most {} ms more)",
        all_active.as_millis(),
        heartbeat.as_millis()
    );
    println!(
        "host killed -> every VIP answers: {:>6} ms",
        all_serving.as_millis()
    );
    println!(
        "after the 2000 ms timeout, re-placing and redeploying took {} ms",
        all_active.as_millis().saturating_sub(2000)
    );
}
