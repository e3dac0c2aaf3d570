//! The end-to-end harness: the three real services on 127.0.0.1:0 with real databases (SQLite
//! files, or PostgreSQL when `LBAAS_TEST_DATABASE_URL` is set), real HAProxy, and tiny HTTP
//! backends that answer with their own name.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// `LBAAS_TEST_LOG=info` (an env filter) prints the in-process services' logs, for chasing a
/// failure; unset, the tests log nothing.
pub fn trace_if_asked() {
    if let Ok(filter) = std::env::var("LBAAS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    }
}

/// Runs a scenario on SQLite and on PostgreSQL. Where the build found no HAProxy (for scenarios
/// that need it) or no `LBAAS_TEST_DATABASE_URL` (for the PostgreSQL run), the test is marked
/// ignored with the reason; CI runs ignored tests too (`--include-ignored`), and there a missing
/// component fails the test.
#[allow(unused_macros)]
macro_rules! on_both_databases {
    // A scenario that also takes the agent's driver, under a module name of its own.
    ($module:ident => $name:ident($driver:expr), haproxy = $haproxy:tt) => {
        mod $module {
            use super::*;

            on_both_databases!(@sqlite $haproxy, async fn sqlite() {
                super::$name(Db::Sqlite, $driver).await;
            });
            on_both_databases!(@postgres $haproxy, async fn postgres() {
                super::$name(Db::Postgres, $driver).await;
            });
        }
    };

    ($name:ident, haproxy = $haproxy:tt) => {
        mod $name {
            use super::*;

            on_both_databases!(@sqlite $haproxy, async fn sqlite() {
                super::$name(Db::Sqlite).await;
            });
            on_both_databases!(@postgres $haproxy, async fn postgres() {
                super::$name(Db::Postgres).await;
            });
        }
    };

    (@sqlite true, $test:item) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(lbaas_no_haproxy, ignore = "haproxy is not installed (apt-get install haproxy)")]
        $test
    };
    (@sqlite false, $test:item) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $test
    };
    (@postgres true, $test:item) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(lbaas_no_haproxy, ignore = "haproxy is not installed (apt-get install haproxy)")]
        #[cfg_attr(
            all(lbaas_no_postgres, not(lbaas_no_haproxy)),
            ignore = "LBAAS_TEST_DATABASE_URL is not set (a PostgreSQL to test against)"
        )]
        $test
    };
    (@postgres false, $test:item) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(
            lbaas_no_postgres,
            ignore = "LBAAS_TEST_DATABASE_URL is not set (a PostgreSQL to test against)"
        )]
        $test
    };
}

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use lbaas::{
    api::v1::{self as pb, load_balancer_service_client::LoadBalancerServiceClient},
    scheduler::v1::device_service_client::DeviceServiceClient,
};
use sea_orm::ConnectionTrait as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tonic::{Request, transport::Channel};

/// Which database the services use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Whether this run is CI, where a missing real component is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The PostgreSQL admin URL. Tests that call this are marked ignored where the build saw no
/// `LBAAS_TEST_DATABASE_URL` (`lbaas_no_postgres`); run anyway (`--include-ignored`, as CI does),
/// they fail here.
pub fn postgres_url() -> String {
    match std::env::var("LBAAS_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "LBAAS_TEST_DATABASE_URL is not set: this PostgreSQL test cannot run (CI sets it)"
        ),
    }
}

/// Whether HAProxy runs here (`haproxy -v`).
pub fn haproxy_installed() -> bool {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the test when HAProxy is missing. Tests that need it are marked ignored where the build
/// found none (`lbaas_no_haproxy`); run anyway (`--include-ignored`, as CI does), they fail here.
pub fn require_haproxy() {
    assert!(
        haproxy_installed(),
        "haproxy is not installed (apt-get install haproxy): this test drives the real HAProxy"
    );
}

/// A VIP range of its own for each stack, so tests running side by side never share an address.
pub fn unique_vip_cidr() -> String {
    // Distinct within this process (a random start, then the next one each time): random picks
    // alone would give two of ~30 concurrent stacks the same range a few times in a hundred runs.
    static NEXT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let n = NEXT
        .get_or_init(|| AtomicU64::new((uuid::Uuid::new_v4().as_u128() % 16_384) as u64))
        .fetch_add(1, Ordering::SeqCst)
        % 16_384;
    format!("127.{}.{}.0/24", 64 + n / 256, n % 256)
}

pub struct StackOptions {
    pub db: Db,
    pub driver: &'static str,
    pub deploy_deadline_ms: u64,
    /// Load balancers the agent's device can host.
    pub capacity: i32,
    /// How long each noop apply takes, to catch deploys in flight.
    pub noop_apply_delay_ms: u64,
    /// The default load balancer quota per project (-1: unlimited).
    pub quota_load_balancers: i32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            driver: "haproxy",
            deploy_deadline_ms: 30_000,
            capacity: 50,
            noop_apply_delay_ms: 0,
            quota_load_balancers: -1,
        }
    }
}

/// Tokens every stack accepts besides `x-project-id`.
pub const ADMIN_TOKEN: &str = "admin-secret";
pub const READER_TOKEN: &str = "reader-secret";
pub const READER_PROJECT: &str = "readers";
pub const JWT_ISSUER: &str = "lbaas-test";
pub const JWT_AUDIENCE: &str = "lbaas";

/// Signs a JWT with `signing_pem` (ES256) for `project` with `role`, expiring `ttl_s` seconds from
/// now (negative: already expired).
pub fn sign_jwt(signing_pem: &str, project: &str, role: &str, ttl_s: i64) -> String {
    sign_jwt_for(signing_pem, JWT_ISSUER, JWT_AUDIENCE, project, role, ttl_s)
}

/// Like `sign_jwt`, from issuer `iss` for audience `aud`.
pub fn sign_jwt_for(
    signing_pem: &str,
    iss: &str,
    aud: &str,
    project: &str,
    role: &str,
    ttl_s: i64,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": iss, "aud": aud, "exp": now + ttl_s, "sub": "tester",
        "project_id": project, "role": role,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(signing_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A running stack. Each service can be killed (its task aborted, as a crash would) and started
/// again on the same address; `stop` shuts everything down gracefully (the agent stops HAProxy).
pub struct Stack {
    pub api: SocketAddr,
    pub scheduler: SocketAddr,
    pub agent: SocketAddr,
    pub vip_cidr: String,
    /// The private key (PEM) the stack's JWT keys accept.
    pub jwt_signing_pem: String,
    pub dir: PathBuf,
    api_config: lbaas_api::ApiConfig,
    scheduler_config: lbaas_scheduler::SchedulerConfig,
    pub agent_config: lbaas_agent::AgentConfig,
    stop: watch::Sender<bool>,
    api_task: Option<JoinHandle<anyhow::Result<()>>>,
    scheduler_task: Option<JoinHandle<anyhow::Result<()>>>,
    agent_task: Option<JoinHandle<anyhow::Result<()>>>,
    /// More agents, each with one device of its own.
    extra_agents: Vec<(
        lbaas_agent::AgentConfig,
        Option<JoinHandle<anyhow::Result<()>>>,
    )>,
    databases: Vec<(String, String)>,
    /// More api replicas (`start_api_replica`).
    replicas: Vec<JoinHandle<anyhow::Result<()>>>,
    stopped: bool,
}

pub async fn create_postgres_database(admin_url: &str, name: &str) -> String {
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    if let Ok(admin) = sea_orm::Database::connect(admin_url).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        admin.close().await.ok();
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Binds the address a service had before it was killed (free again once its task is gone).
async fn rebind(addr: SocketAddr) -> TcpListener {
    poll_until(
        Duration::from_secs(10),
        "the old port to be free",
        || async move { TcpListener::bind(addr).await.ok() },
    )
    .await
}

async fn kill(task: &mut Option<JoinHandle<anyhow::Result<()>>>) {
    if let Some(task) = task.take() {
        task.abort();
        let _ = task.await;
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> Self {
        trace_if_asked();
        if options.driver == "haproxy" {
            require_haproxy();
        }
        let dir = std::env::temp_dir().join(format!("lbaas-e2e-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens");
        std::fs::write(
            &tokens,
            format!("{ADMIN_TOKEN} ops admin\n{READER_TOKEN} {READER_PROJECT} reader\n"),
        )
        .unwrap();
        // JWTs: a key pair per stack; tests mint tokens with `Stack::jwt`.
        let jwt_key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("jwt.pem"), jwt_key.public_key_pem()).unwrap();
        let jwt_config = lbaas::server::jwt::JwtConfig {
            keys: Some(dir.join("jwt.pem")),
            issuer: JWT_ISSUER.into(),
            audience: JWT_AUDIENCE.into(),
        };
        let jwt_signing_pem = jwt_key.serialize_pem();
        let secret_key = dir.join("secret.key");
        std::fs::write(&secret_key, lbaas_api::certs::SecretKey::generate_hex()).unwrap();
        let mut databases = Vec::new();
        let (api_db, scheduler_db) = match options.db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.join("api.db").display()),
                format!("sqlite://{}", dir.join("scheduler.db").display()),
            ),
            Db::Postgres => {
                let admin = postgres_url();
                let stem = format!("lbaas_test_{}", uuid::Uuid::new_v4().simple());
                let api = create_postgres_database(&admin, &format!("{stem}_api")).await;
                let scheduler =
                    create_postgres_database(&admin, &format!("{stem}_scheduler")).await;
                databases.push((admin.clone(), format!("{stem}_api")));
                databases.push((admin, format!("{stem}_scheduler")));
                (api, scheduler)
            }
        };
        let scheduler_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheduler = scheduler_listener.local_addr().unwrap();
        let api = api_listener.local_addr().unwrap();
        let agent = agent_listener.local_addr().unwrap();
        let vip_cidr = unique_vip_cidr();
        let scheduler_config = lbaas_scheduler::SchedulerConfig {
            listen: scheduler,
            database_url: scheduler_db,
            strategy: "least-loaded".into(),
            heartbeat_interval_ms: 200,
            agent_timeout_ms: 2000,
            failover_max_down_share: 0.5,
            placement_seed: 0,
            fleet_refresh_ms: 200,
            token_file: Some(tokens.clone()),
            jwt: jwt_config.clone(),
            metrics_listen: None,
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let api_config = lbaas_api::ApiConfig {
            rest_listen: None,
            rest_keystone: false,
            listen: api,
            database_url: api_db,
            scheduler_url: format!("http://{scheduler}"),
            token_file: Some(tokens),
            allow_project_header: true,
            deploy_deadline_ms: options.deploy_deadline_ms,
            reconcile_interval_ms: 500,
            reserved_ips: vec![std::net::IpAddr::from([169, 254, 169, 254])],
            access_log_format: lbaas_api::store::OCTAVIA_TENANT_LOG_FORMAT.into(),
            quota_load_balancers: options.quota_load_balancers,
            quota_listeners: -1,
            quota_pools: -1,
            quota_members: -1,
            quota_health_monitors: -1,
            quota_l7_policies: -1,
            quota_l7_rules: -1,
            secret_key_file: Some(secret_key.clone()),
            jwt: jwt_config.clone(),
            metrics_listen: None,
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let agent_config = lbaas_agent::AgentConfig {
            agent_id: "agent-e2e".into(),
            listen: agent,
            scheduler_url: format!("http://{scheduler}"),
            advertise_url: None,
            driver: options.driver.into(),
            devices: 1,
            capacity: options.capacity,
            vip_cidr: vip_cidr.clone(),
            state_dir: dir.join("agent"),
            haproxy_bin: "haproxy".into(),
            dataplane_bin: Some(dataplane_bin()),
            dataplane_command: Vec::new(),
            noop_apply_delay_ms: options.noop_apply_delay_ms,
            health_interval_ms: 100,
            stats_interval_ms: 500,
            stop_data_plane_on_exit: true,
            metrics_listen: None,
            network: Default::default(),
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let (stop, rx) = watch::channel(false);
        let scheduler_task = tokio::spawn(lbaas_scheduler::run(
            scheduler_config.clone(),
            scheduler_listener,
            stopped(rx.clone()),
        ));
        let api_task = tokio::spawn(lbaas_api::run(
            api_config.clone(),
            api_listener,
            stopped(rx.clone()),
        ));
        let agent_task = tokio::spawn(lbaas_agent::run(
            agent_config.clone(),
            agent_listener,
            stopped(rx),
        ));
        let stack = Self {
            api,
            scheduler,
            agent,
            vip_cidr,
            jwt_signing_pem,
            dir,
            api_config,
            scheduler_config,
            agent_config,
            stop,
            api_task: Some(api_task),
            scheduler_task: Some(scheduler_task),
            agent_task: Some(agent_task),
            extra_agents: Vec::new(),
            databases,
            replicas: Vec::new(),
            stopped: false,
        };
        let mut stack = stack;
        for (name, addr) in [
            ("scheduler", stack.scheduler),
            ("api", stack.api),
            ("agent", stack.agent),
        ] {
            let task = match name {
                "scheduler" => &mut stack.scheduler_task,
                "api" => &mut stack.api_task,
                _ => &mut stack.agent_task,
            };
            wait_up(name, addr, task).await;
        }
        stack.wait_for_device().await;
        stack
    }

    /// Waits until the agent's device is registered, so the first create has somewhere to go.
    pub async fn wait_for_device(&self) {
        let devices = self.devices().await;
        poll_until(
            Duration::from_secs(20),
            "the agent's device to register",
            || {
                let mut devices = devices.clone();
                async move {
                    devices
                        .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
                        .await
                        .ok()
                        .filter(|r| !r.get_ref().devices.is_empty())
                        .map(|_| ())
                }
            },
        )
        .await;
    }

    /// Kills the scheduler as a crash would: its task is aborted, connections drop.
    pub async fn kill_scheduler(&mut self) {
        kill(&mut self.scheduler_task).await;
    }

    pub async fn start_scheduler(&mut self) {
        let listener = rebind(self.scheduler).await;
        let rx = self.stop.subscribe();
        self.scheduler_task = Some(tokio::spawn(lbaas_scheduler::run(
            self.scheduler_config.clone(),
            listener,
            stopped(rx),
        )));
        wait_serving(self.scheduler).await;
    }

    /// Kills the agent as a crash would; its HAProxy keeps running.
    pub async fn kill_agent(&mut self) {
        kill(&mut self.agent_task).await;
    }

    pub async fn start_agent(&mut self) {
        let listener = rebind(self.agent).await;
        let rx = self.stop.subscribe();
        self.agent_task = Some(tokio::spawn(lbaas_agent::run(
            self.agent_config.clone(),
            listener,
            stopped(rx),
        )));
        wait_serving(self.agent).await;
    }

    /// Starts another agent with one device (same driver and capacity, its own VIP range) and
    /// waits until the scheduler lists its device. Returns its device id.
    pub async fn add_agent(&mut self, agent_id: &str) -> String {
        let driver = self.agent_config.driver.clone();
        self.add_agent_with_driver(agent_id, &driver).await.0
    }

    /// Like `add_agent`, with a driver of its own. Returns its device id and VIP range.
    pub async fn add_agent_with_driver(
        &mut self,
        agent_id: &str,
        driver: &str,
    ) -> (String, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = self.agent_config.clone();
        config.driver = driver.into();
        config.agent_id = agent_id.into();
        config.listen = listener.local_addr().unwrap();
        config.vip_cidr = unique_vip_cidr();
        config.state_dir = self.dir.join(format!("agent-{agent_id}"));
        let device = format!("{agent_id}-{}-0", config.driver);
        let rx = self.stop.subscribe();
        let task = tokio::spawn(lbaas_agent::run(config.clone(), listener, stopped(rx)));
        wait_serving(config.listen).await;
        self.extra_agents.push((config, Some(task)));
        let devices = self.devices().await;
        poll_until(
            Duration::from_secs(20),
            "the new agent's device to register",
            || {
                let mut devices = devices.clone();
                let device = device.clone();
                async move {
                    devices
                        .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
                        .await
                        .ok()
                        .filter(|r| r.get_ref().devices.iter().any(|d| d.id == device))
                        .map(|_| ())
                }
            },
        )
        .await;
        let vip_cidr = self
            .extra_agents
            .last()
            .map(|(c, _)| c.vip_cidr.clone())
            .unwrap_or_default();
        (device, vip_cidr)
    }

    /// Kills the first agent and its data plane (HAProxy or lbaas-dataplane), as the death of their
    /// host would.
    pub async fn kill_agent_host(&mut self) {
        kill(&mut self.agent_task).await;
        let pid_file = self
            .agent_config
            .state_dir
            .join(format!(
                "{}-{}-0",
                self.agent_config.agent_id, self.agent_config.driver
            ))
            .join("haproxy.pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            // The workers follow their master out.
            let _ = std::process::Command::new("pkill")
                .args(["-9", "-P", pid.trim()])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
        }
        let dataplane = pid_file.with_file_name(lbaas_agent::dataplane::PID_FILE);
        if let Ok(pid) = std::fs::read_to_string(&dataplane) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
        }
    }

    pub async fn kill_api(&mut self) {
        kill(&mut self.api_task).await;
    }

    pub async fn start_api(&mut self) {
        let listener = rebind(self.api).await;
        let rx = self.stop.subscribe();
        self.api_task = Some(tokio::spawn(lbaas_api::run(
            self.api_config.clone(),
            listener,
            stopped(rx),
        )));
        wait_serving(self.api).await;
    }

    /// Another api replica on the same database (and scheduler), until the stack stops; returns
    /// its address.
    pub async fn start_api_replica(&mut self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let config = lbaas_api::ApiConfig {
            rest_listen: None,
            rest_keystone: false,
            listen: address,
            ..self.api_config.clone()
        };
        let task = tokio::spawn(lbaas_api::run(
            config,
            listener,
            stopped(self.stop.subscribe()),
        ));
        let mut task = Some(task);
        wait_up("api replica", address, &mut task).await;
        self.replicas.extend(task);
        address
    }

    /// Another api replica that also serves the Octavia REST face; returns (gRPC, REST) addresses.
    pub async fn start_api_replica_with_rest(&mut self) -> (SocketAddr, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = rest_listener.local_addr().unwrap();
        let config = lbaas_api::ApiConfig {
            rest_listen: Some(rest),
            rest_keystone: false,
            listen: address,
            ..self.api_config.clone()
        };
        let task = tokio::spawn(lbaas_api::run_with_rest(
            config,
            listener,
            Some(rest_listener),
            stopped(self.stop.subscribe()),
        ));
        let mut task = Some(task);
        wait_up("api replica", address, &mut task).await;
        self.replicas.extend(task);
        (address, rest)
    }

    pub async fn api_client(&self) -> LoadBalancerServiceClient<Channel> {
        LoadBalancerServiceClient::new(channel(self.api).await)
    }

    pub async fn certificate_client(
        &self,
    ) -> lbaas::api::v1::certificate_service_client::CertificateServiceClient<Channel> {
        lbaas::api::v1::certificate_service_client::CertificateServiceClient::new(
            channel(self.api).await,
        )
    }

    pub async fn quota_client(
        &self,
    ) -> lbaas::api::v1::quota_service_client::QuotaServiceClient<Channel> {
        lbaas::api::v1::quota_service_client::QuotaServiceClient::new(channel(self.api).await)
    }

    /// The scheduler's provider API, with the admin token.
    pub async fn devices(&self) -> Devices {
        admin_devices(self.scheduler).await
    }

    /// Kills the HAProxy instances and native data planes this stack started that are still
    /// running (a test that panicked never reached `stop`). Only processes whose command line names this stack's
    /// directory are touched.
    fn kill_leftover_haproxy(&self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let dir = self.dir.display().to_string();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next().unwrap_or_default();
            let ours = program.starts_with("haproxy") || program.ends_with("lbaas-dataplane");
            if ours && cmdline.contains(&dir) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let extra: Vec<_> = self
            .extra_agents
            .iter_mut()
            .filter_map(|(_, t)| t.take())
            .collect();
        for task in [
            self.scheduler_task.take(),
            self.api_task.take(),
            self.agent_task.take(),
        ]
        .into_iter()
        .flatten()
        .chain(extra)
        .chain(std::mem::take(&mut self.replicas))
        {
            task.await
                .expect("service task panicked")
                .expect("service exited with an error");
        }
        for (admin, name) in &self.databases {
            drop_postgres_database(admin, name).await;
        }
        self.kill_leftover_haproxy();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.stopped = true;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill_leftover_haproxy();
        }
    }
}

/// The native data plane binary: `lbaas-dataplane` beside the test binaries (`target/<profile>/`),
/// which `cargo test --workspace` builds with the agent. Missing, it fails loudly with how to build
/// it: a native-driver test never runs on an old or absent data plane without saying so.
pub fn dataplane_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile.join("lbaas-dataplane");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p lbaas-agent --bin lbaas-dataplane` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Waits on grpc.health.v1 until the server reports SERVING.
/// Waits until the service reports SERVING; if its task ends first, fails with the reason it
/// gave, instead of waiting out the timeout.
async fn wait_up(name: &str, addr: SocketAddr, task: &mut Option<JoinHandle<anyhow::Result<()>>>) {
    tokio::select! {
        () = wait_serving(addr) => {}
        ended = async {
            match task.as_mut() {
                Some(t) => t.await,
                None => std::future::pending().await,
            }
        } => panic!("the {name} stopped before it was SERVING: {ended:?}"),
    }
}

pub async fn wait_serving(addr: SocketAddr) {
    let channel = channel(addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    poll_until(
        Duration::from_secs(30),
        "a service to report SERVING",
        || {
            let mut health = health.clone();
            async move {
                let answer = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .ok()?;
                (answer.get_ref().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
            }
        },
    )
    .await;
    let _ = &mut health;
}

/// Polls `probe` (backing off from 5 ms to 100 ms) until it yields, failing after `limit`.
pub async fn poll_until<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A request in the given project.
pub fn in_project<T>(project: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-project-id", project.parse().unwrap());
    request
}

/// Polls GetLoadBalancer until it leaves PENDING_* and returns it.
pub async fn wait_settled(
    api: &LoadBalancerServiceClient<Channel>,
    project: &str,
    id: &str,
) -> pb::LoadBalancer {
    poll_until(
        Duration::from_secs(30),
        "the load balancer to settle",
        || {
            let mut api = api.clone();
            let request = in_project(project, pb::GetLoadBalancerRequest { id: id.to_owned() });
            async move {
                let lb = api.get_load_balancer(request).await.ok()?.into_inner();
                let status = lb.provisioning_status();
                matches!(
                    status,
                    pb::ProvisioningStatus::Active | pb::ProvisioningStatus::Error
                )
                .then_some(lb)
            }
        },
    )
    .await
}

/// A health monitor of `kind` that decides fast: every second, one try to go down or up.
pub fn quick_monitor(kind: pb::HealthMonitorType) -> pb::HealthMonitor {
    pb::HealthMonitor {
        r#type: kind as i32,
        delay_s: 1,
        timeout_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        ..Default::default()
    }
}

/// The members of a pool (the first page, which holds them all in tests).
pub async fn pool_members(
    api: &LoadBalancerServiceClient<Channel>,
    project: &str,
    pool_id: &str,
) -> Vec<pb::Member> {
    api.clone()
        .list_members(in_project(
            project,
            pb::ListMembersRequest {
                pool_id: pool_id.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members
}

/// An HTTP backend that answers every request with its name and counts what it served.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, 0).await
    }

    /// A backend on a given port (0: any), e.g. to bring a stopped one back where it was.
    pub async fn start_on(name: &str, port: u16) -> Self {
        let listener = poll_until(
            Duration::from_secs(10),
            "the backend port to be free",
            || async move { TcpListener::bind(("127.0.0.1", port)).await.ok() },
        )
        .await;
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let body = name.to_owned();
        let counter = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let body = body.clone();
                let cookie = body.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    // Read the request head; the tests send no bodies.
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if read == buf.len() {
                            return;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    // `/headers` answers with the request head, so tests can see what the load
                    // balancer added; every answer sets an application cookie naming the backend.
                    let head = String::from_utf8_lossy(&buf[..read]).into_owned();
                    let body = if head.starts_with("GET /headers") {
                        head
                    } else {
                        body
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nset-cookie: JSESSIONID={name}; path=/\r\nconnection: close\r\n\r\n{}",
                        body.len(),
                        body,
                        name = cookie,
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            served,
            task,
        }
    }

    pub fn port(&self) -> i32 {
        i32::from(self.addr.port())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 GET on a new connection; returns the body, or the error.
pub async fn http_get(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: lbaas-test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no HTTP response: {text:?}"),
        )
    })?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "status line {:?}",
            head.lines().next()
        )));
    }
    Ok(body.to_owned())
}

/// Sends `n` requests and counts the answers per body.
pub async fn spread(addr: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let body = http_get(addr)
            .await
            .unwrap_or_else(|e| panic!("request to {addr} failed: {e}"));
        *counts.entry(body).or_default() += 1;
    }
    counts
}

/// The field violations of an INVALID_ARGUMENT status.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A project name no other test uses.
pub fn fresh_project() -> String {
    format!(
        "p{}-{}",
        COUNTER.fetch_add(1, Ordering::SeqCst),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The provider API client the tests use: every call carries the admin token.
pub type Devices = DeviceServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        fn(Request<()>) -> Result<Request<()>, tonic::Status>,
    >,
>;

fn add_admin_token(mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}")
            .parse()
            .map_err(|_| tonic::Status::internal("bad token"))?,
    );
    Ok(request)
}

/// The provider API of the scheduler at `addr`, as admin.
pub async fn admin_devices(addr: SocketAddr) -> Devices {
    DeviceServiceClient::with_interceptor(
        channel(addr).await,
        add_admin_token as fn(Request<()>) -> Result<Request<()>, tonic::Status>,
    )
}

/// A request carrying a bearer token.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// An HTTP ROUND_ROBIN pool with these members.
pub fn http_pool(members: Vec<pb::Member>) -> pb::Pool {
    pb::Pool {
        protocol: pb::Protocol::Http as i32,
        lb_algorithm: pb::LbAlgorithm::RoundRobin as i32,
        members,
        ..Default::default()
    }
}

/// A member on 127.0.0.1 at `port`.
pub fn member_at(port: i32) -> pb::Member {
    pb::Member {
        address: "127.0.0.1".into(),
        protocol_port: port,
        ..Default::default()
    }
}

/// Creates a load balancer in `project` and waits until it is ACTIVE.
pub async fn create_active(
    api: &mut LoadBalancerServiceClient<Channel>,
    project: &str,
    spec: pb::LoadBalancer,
) -> pb::LoadBalancer {
    let lb = api
        .create_load_balancer(in_project(
            project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(spec),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create load balancer")
        .into_inner();
    let lb = wait_settled(api, project, &lb.id).await;
    assert_eq!(
        lb.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "{}",
        lb.status_reason
    );
    lb
}

/// A load balancer with one HTTP listener on `port` and its ROUND_ROBIN pool, created in one call.
pub fn populated(name: &str, port: i32, members: Vec<pb::Member>) -> pb::LoadBalancer {
    pb::LoadBalancer {
        name: name.into(),
        listeners: vec![pb::Listener {
            protocol: pb::Protocol::Http as i32,
            protocol_port: port,
            default_pool: Some(http_pool(members)),
            ..Default::default()
        }],
        ..Default::default()
    }
}
