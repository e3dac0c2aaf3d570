//! Change latency through the whole stack on one HAProxy device, each next to the bare HAProxy
//! operation measured in the same run on the same instance:
//! - a member weight change, from the API call until HAProxy's runtime API reports the new weight,
//!   next to a bare `set server ... weight` on the stats socket;
//! - a structural change (the pool's algorithm), from the API call until the load balancer is
//!   ACTIVE again, next to a bare `haproxy -c` plus master-CLI reload of the same config.
//!
//! Run: `cargo bench --bench member_change` (`LBAAS_BENCH_N` changes each, 100 by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/haproxy_cli.rs"]
mod haproxy_cli;

use haproxy_cli::{checked_reload, socket_command, summary};

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use lbaas::api::v1 as pb;
use prost_types::FieldMask;
use support::{Backend, Stack, StackOptions, in_project};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("LBAAS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    support::require_haproxy();
    let backend = Backend::start("bench").await;
    let stack = Stack::start(StackOptions::default()).await;
    let mut api = stack.api_client().await;
    let project = "bench";
    let lb = api
        .create_load_balancer(in_project(
            project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(support::populated(
                    "bench",
                    8080,
                    vec![support::member_at(backend.port())],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lb = support::wait_settled(&api, project, &lb.id).await;
    let pool_id = lb.pool_ids[0].clone();
    let member = api
        .list_members(in_project(
            project,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members
        .remove(0);
    let device: PathBuf = stack.dir.join("agent").join("agent-e2e-haproxy-0");
    let stats = device.join("stats.sock");
    let master = device.join("master.sock");
    let server = format!("p_{pool_id}/m_{}", member.id);

    // Member weight: API call -> the device reports the weight.
    let mut through_api = Vec::with_capacity(n);
    for i in 0..n {
        let weight = 2 + (i % 200) as i32;
        let started = Instant::now();
        api.update_member(in_project(
            project,
            pb::UpdateMemberRequest {
                member: Some(pb::Member {
                    id: member.id.clone(),
                    weight: Some(weight),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["weight".into()],
                }),
            },
        ))
        .await
        .unwrap();
        let want = format!("{weight} ");
        while !socket_command(&stats, &format!("get weight {server}"))
            .await
            .starts_with(&want)
        {}
        through_api.push(started.elapsed());
    }
    support::wait_settled(&api, project, &lb.id).await;
    let mut bare_runtime = Vec::with_capacity(n);
    for i in 0..n {
        let weight = 2 + (i % 200);
        let started = Instant::now();
        let answer = socket_command(&stats, &format!("set server {server} weight {weight}")).await;
        assert!(answer.trim().is_empty(), "{answer}");
        bare_runtime.push(started.elapsed());
    }

    // Structural: flip the algorithm -> ACTIVE again (a checked, seamless reload underneath).
    let mut structural = Vec::with_capacity(n);
    for i in 0..n {
        let algorithm = if i % 2 == 0 {
            pb::LbAlgorithm::LeastConnections
        } else {
            pb::LbAlgorithm::RoundRobin
        };
        let started = Instant::now();
        api.update_pool(in_project(
            project,
            pb::UpdatePoolRequest {
                pool: Some(pb::Pool {
                    id: pool_id.clone(),
                    lb_algorithm: algorithm as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["lb_algorithm".into()],
                }),
            },
        ))
        .await
        .unwrap();
        loop {
            let now = api
                .get_load_balancer(in_project(
                    project,
                    pb::GetLoadBalancerRequest { id: lb.id.clone() },
                ))
                .await
                .unwrap()
                .into_inner();
            if now.provisioning_status() == pb::ProvisioningStatus::Active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        structural.push(started.elapsed());
    }
    let mut bare_reload = Vec::with_capacity(n);
    let cfg = device.join("haproxy.cfg");
    for _ in 0..n {
        let started = Instant::now();
        checked_reload(&master, &cfg).await;
        bare_reload.push(started.elapsed());
    }
    stack.stop().await;

    println!("one HAProxy 2.6 device, one load balancer; SQLite");
    let (m50, m99) = summary("member weight: API call -> device reports it", through_api);
    let (r50, r99) = summary("bare: set server weight on the stats socket", bare_runtime);
    println!(
        "ratio: p50 {:.1}x  p99 {:.1}x",
        m50.as_secs_f64() / r50.as_secs_f64(),
        m99.as_secs_f64() / r99.as_secs_f64()
    );
    let (s50, s99) = summary("pool algorithm: API call -> ACTIVE", structural);
    let (b50, b99) = summary(
        "bare: haproxy -c + master reload -> new worker",
        bare_reload,
    );
    println!(
        "ratio: p50 {:.2}x  p99 {:.2}x",
        s50.as_secs_f64() / b50.as_secs_f64(),
        s99.as_secs_f64() / b99.as_secs_f64()
    );
}
