//! The tenant API end to end, on SQLite and PostgreSQL, one module per concern in one test binary:
//! every method (`crud`), convergence when services die and errors recover (`resilience`), watch
//! streams (`watch`), pagination and filters (`lists`), project isolation and quotas (`access`),
//! member health and runtime member changes (`health`), and the Octavia REST face against gRPC
//! (`rest`). Shared helpers live here.
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

/// The last host address of an IPv4 range.
fn last_host(cidr: &str) -> std::net::IpAddr {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    net.hosts().last().unwrap()
}

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

#[path = "tenant_api/access.rs"]
mod access;
#[path = "tenant_api/crud.rs"]
mod crud;
#[path = "tenant_api/health.rs"]
mod health;
#[path = "tenant_api/lists.rs"]
mod lists;
#[path = "tenant_api/resilience.rs"]
mod resilience;
#[path = "tenant_api/rest.rs"]
mod rest;
#[path = "tenant_api/watch.rs"]
mod watch;
