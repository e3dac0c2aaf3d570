//! Create-to-ACTIVE latency through the whole stack (api -> scheduler -> agent -> HAProxy, SQLite),
//! and in the same run the bare floor: writing an equivalent haproxy.cfg, checking it and reloading
//! HAProxy by hand. Run: `cargo bench --bench create_to_active` (LBAAS_BENCH_N load balancers, 100
//! by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/haproxy_cli.rs"]
mod haproxy_cli;

use haproxy_cli::{checked_reload, current_worker, socket_command as master, summary};

use std::time::{Duration, Instant};

use lbaas::{
    agent::v1::{
        Algorithm, ListenerConfig, ListenerProtocol, LoadBalancerConfig, MemberConfig, PoolConfig,
    },
    api::v1 as pb,
};
use lbaas_agent::driver::haproxy::render::ConfigRenderer;
use support::{Backend, Stack, StackOptions, in_project};

async fn through_the_stack(n: usize, backend: &Backend) -> Vec<Duration> {
    let stack = Stack::start(StackOptions {
        capacity: i32::try_from(n).unwrap() + 10,
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = "bench";
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let created = api
            .create_load_balancer(in_project(
                project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(support::populated(
                        &format!("bench-{i}"),
                        8080,
                        vec![support::member_at(backend.port())],
                    )),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        // Poll Get at 1 ms: the figure includes up to 1 ms of polling granularity.
        loop {
            let lb = api
                .get_load_balancer(in_project(
                    project,
                    pb::GetLoadBalancerRequest {
                        id: created.id.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            match lb.provisioning_status() {
                pb::ProvisioningStatus::Active => break,
                pb::ProvisioningStatus::Error => {
                    panic!("load balancer went to ERROR: {}", lb.status_reason)
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        samples.push(started.elapsed());
    }
    stack.stop().await;
    samples
}

/// The floor: the same growing config, written, checked with `haproxy -c`, and reloaded through
/// the master CLI, waiting for the new worker, with nothing else around it.
async fn bare_haproxy(n: usize, backend: &Backend) -> Vec<Duration> {
    let dir = std::env::temp_dir().join(format!("lbaas-bench-bare-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    let socket = dir.join("master.sock");
    let stats = dir.join("stats.sock");
    let renderer = ConfigRenderer {
        stats_socket: &stats,
    };
    let n_net = uuid::Uuid::new_v4().as_u128();
    let net = format!("127.{}.{}", 64 + (n_net % 64), (n_net >> 8) % 256);
    std::fs::write(&cfg, renderer.render(&[]).unwrap()).unwrap();
    let status = std::process::Command::new("haproxy")
        .args([
            "-W",
            "-D",
            "-S",
            &format!("{},mode,600", socket.display()),
            "-f",
        ])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    while current_worker(&master(&socket, "show proc").await).is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut lbs = Vec::new();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        lbs.push(LoadBalancerConfig {
            id: format!("lb-{i}"),
            project_id: "bench".into(),
            vip_address: format!("{net}.{}", i + 1),
            admin_state_up: true,
            vrrp: None,
            access_log: None,
            additional_vip_addresses: Vec::new(),
            listeners: vec![ListenerConfig {
                id: format!("l-{i}"),
                protocol: ListenerProtocol::Http as i32,
                port: 8080,
                default_pool_id: format!("p-{i}"),
                admin_state_up: true,
                ..Default::default()
            }],
            pools: vec![PoolConfig {
                id: format!("p-{i}"),
                protocol: ListenerProtocol::Http as i32,
                algorithm: Algorithm::RoundRobin as i32,
                admin_state_up: true,
                members: vec![MemberConfig {
                    id: format!("m-{i}"),
                    address: "127.0.0.1".into(),
                    port: u32::from(backend.addr.port()),
                    weight: 1,
                    admin_state_up: true,
                    backup: false,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let started = Instant::now();
        std::fs::write(&cfg, renderer.render(&lbs).unwrap()).unwrap();
        checked_reload(&socket, &cfg).await;
        samples.push(started.elapsed());
    }
    let answer = master(&socket, "show proc").await;
    if let Some(pid) = answer
        .lines()
        .find(|l| l.contains("master"))
        .and_then(|l| l.split_whitespace().next())
    {
        let _ = std::process::Command::new("kill").arg(pid).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("LBAAS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    support::require_haproxy();
    let backend = Backend::start("bench").await;
    println!(
        "create-to-ACTIVE, {n} load balancers on one HAProxy device (each adds one listener, pool and member)"
    );
    let stack = through_the_stack(n, &backend).await;
    let bare = bare_haproxy(n, &backend).await;
    let (s50, s99) = summary("lbaas create -> ACTIVE (SQLite, HAProxy)", stack);
    let (b50, b99) = summary("bare: write cfg + haproxy -c + reload", bare);
    println!(
        "ratio lbaas/bare: p50 {:.2}x  p99 {:.2}x",
        s50.as_secs_f64() / b50.as_secs_f64(),
        s99.as_secs_f64() / b99.as_secs_f64()
    );
}
