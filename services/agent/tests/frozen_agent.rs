//! A deploy's deadline holds whatever the agent does: the agent binary, run as its own process, is
//! frozen (SIGSTOP) in the middle of a deploy, so its connection stays open and nothing answers.
//! The load balancer goes to ERROR with a reason once its deadline passes, not PENDING forever;
//! after SIGCONT an update brings it back to ACTIVE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use lbaas::{
    api::v1::{self as pb, load_balancer_service_client::LoadBalancerServiceClient},
    scheduler::v1::{ListDevicesRequest, device_service_client::DeviceServiceClient},
};
use nix::{sys::signal, unistd::Pid};
use tokio::{net::TcpListener, sync::watch};
use tonic::{Request, transport::Channel};

const ADMIN_TOKEN: &str = "admin-secret";
/// The deploy deadline of this test's api.
const DEADLINE_MS: u64 = 3_000;

fn in_project<T>(project: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-project-id", project.parse().unwrap());
    request
}

/// Polls `probe` every 20 ms until it gives a value, for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(api: &LoadBalancerServiceClient<Channel>, id: &str) -> pb::LoadBalancer {
    api.clone()
        .get_load_balancer(in_project(
            "frozen",
            pb::GetLoadBalancerRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the load balancer is in `want` and returns it.
async fn reaches(
    api: &LoadBalancerServiceClient<Channel>,
    id: &str,
    want: pb::ProvisioningStatus,
) -> pb::LoadBalancer {
    poll(
        Duration::from_secs(60),
        "the load balancer to settle",
        || async {
            let lb = status_of(api, id).await;
            (lb.provisioning_status() == want).then_some(lb)
        },
    )
    .await
}

async fn describe(api: &mut LoadBalancerServiceClient<Channel>, id: &str, text: &str) {
    api.update_load_balancer(in_project(
        "frozen",
        pb::UpdateLoadBalancerRequest {
            load_balancer: Some(pb::LoadBalancer {
                id: id.into(),
                description: text.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
        },
    ))
    .await
    .unwrap();
}

/// The agent process, killed when the test ends however it ends.
struct AgentProcess(tokio::process::Child);

impl AgentProcess {
    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.0.id().unwrap()).unwrap())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = signal::kill(self.pid(), signal::Signal::SIGCONT);
        let _ = self.0.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_cannot_hold_a_deploy_past_its_deadline() {
    let dir = std::env::temp_dir().join(format!("lbaas-frozen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{ADMIN_TOKEN} ops admin\n")).unwrap();
    let scheduler_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheduler: SocketAddr = scheduler_listener.local_addr().unwrap();
    let api_address: SocketAddr = api_listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let scheduler_task = tokio::spawn(lbaas_scheduler::run(
        lbaas_scheduler::SchedulerConfig {
            listen: scheduler,
            database_url: format!("sqlite://{}", dir.join("scheduler.db").display()),
            strategy: "least-loaded".into(),
            heartbeat_interval_ms: 200,
            // The frozen agent must not be declared dead (and failed over) during the test.
            agent_timeout_ms: 600_000,
            failover_max_down_share: 0.5,
            placement_seed: 0,
            fleet_refresh_ms: 200,
            token_file: Some(tokens.clone()),
            jwt: lbaas::server::jwt::JwtConfig::default(),
            metrics_listen: None,
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        },
        scheduler_listener,
        until_stopped(stopped.clone()),
    ));
    let api_task = tokio::spawn(lbaas_api::run(
        lbaas_api::ApiConfig {
            rest_listen: None,
            rest_keystone: false,
            listen: api_address,
            database_url: format!("sqlite://{}", dir.join("api.db").display()),
            scheduler_url: format!("http://{scheduler}"),
            token_file: Some(tokens),
            allow_project_header: true,
            deploy_deadline_ms: DEADLINE_MS,
            reconcile_interval_ms: 500,
            reserved_ips: Vec::new(),
            access_log_format: lbaas_api::store::OCTAVIA_TENANT_LOG_FORMAT.into(),
            quota_load_balancers: -1,
            quota_listeners: -1,
            quota_pools: -1,
            quota_members: -1,
            quota_health_monitors: -1,
            quota_l7_policies: -1,
            quota_l7_rules: -1,
            secret_key_file: None,
            jwt: lbaas::server::jwt::JwtConfig::default(),
            metrics_listen: None,
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        },
        api_listener,
        until_stopped(stopped),
    ));

    // The agent: its own process, on a port of its choosing, with applies that take a moment.
    let agent = AgentProcess(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_lbaas-agent"))
            .args(["--agent-id", "frozen", "--listen", "127.0.0.1:0"])
            .args(["--scheduler-url", &format!("http://{scheduler}")])
            .args(["--driver", "noop", "--noop-apply-delay-ms", "300"])
            .args(["--vip-cidr", "127.251.7.0/24", "--plaintext", "true"])
            .arg("--state-dir")
            .arg(dir.join("agent"))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start the lbaas-agent binary"),
    );
    let scheduler_channel = Channel::from_shared(format!("http://{scheduler}"))
        .unwrap()
        .connect_lazy();
    poll(
        Duration::from_secs(30),
        "the agent's device to register",
        || {
            let mut devices = DeviceServiceClient::new(scheduler_channel.clone());
            async move {
                let mut request = Request::new(ListDevicesRequest::default());
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
                );
                let listed = devices.list_devices(request).await.ok()?.into_inner();
                listed
                    .devices
                    .iter()
                    .any(|d| d.agent_id == "frozen")
                    .then_some(())
            }
        },
    )
    .await;

    let mut api = LoadBalancerServiceClient::new(
        Channel::from_shared(format!("http://{api_address}"))
            .unwrap()
            .connect_lazy(),
    );
    let lb = api
        .create_load_balancer(in_project(
            "frozen",
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer {
                    name: "frozen".into(),
                    listeners: vec![pb::Listener {
                        protocol: pb::Protocol::Http as i32,
                        protocol_port: 8080,
                        default_pool: Some(pb::Pool {
                            protocol: pb::Protocol::Http as i32,
                            lb_algorithm: pb::LbAlgorithm::RoundRobin as i32,
                            members: vec![pb::Member {
                                address: "127.0.0.1".into(),
                                protocol_port: 9,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    reaches(&api, &lb.id, pb::ProvisioningStatus::Active).await;

    // An update, and the agent freezes while it is being deployed.
    describe(&mut api, &lb.id, "while the agent is frozen").await;
    signal::kill(agent.pid(), signal::Signal::SIGSTOP).unwrap();
    let failed = reaches(&api, &lb.id, pb::ProvisioningStatus::Error).await;
    assert!(
        failed.status_reason.contains("not applied within"),
        "reason: {}",
        failed.status_reason
    );
    assert!(failed.applied_generation < failed.generation);

    // Thawed, the agent takes the next update.
    signal::kill(agent.pid(), signal::Signal::SIGCONT).unwrap();
    describe(&mut api, &lb.id, "thawed").await;
    let back = reaches(&api, &lb.id, pb::ProvisioningStatus::Active).await;
    assert!(back.status_reason.is_empty(), "{}", back.status_reason);
    assert_eq!(back.applied_generation, back.generation);

    drop(agent);
    let _ = stop_all(stop, api_task, scheduler_task).await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn stop_all(
    stop: watch::Sender<bool>,
    api: tokio::task::JoinHandle<anyhow::Result<()>>,
    scheduler: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let _ = stop.send(true);
    api.await??;
    scheduler.await??;
    Ok(())
}
