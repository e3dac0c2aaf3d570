//! `lbctl stack`: the whole stack on one machine. The three services run in this process, each on
//! its own port and with its own SQLite file, exactly as they run apart.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch};

#[derive(clap::Args, Debug)]
pub struct StackArgs {
    /// Where the databases and device files live.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9001")]
    api_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9002")]
    scheduler_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9003")]
    agent_listen: SocketAddr,
    /// Octavia's v2 REST API (the openstack CLI, openstacksdk); 9876 is Octavia's own port.
    #[arg(long, default_value = "127.0.0.1:9876")]
    rest_listen: SocketAddr,
    /// The local agent's driver: auto (haproxy when installed, else the embedded native data
    /// plane), haproxy, native or noop.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// The VIP range of the local device.
    #[arg(long, default_value = "127.0.10.0/24")]
    vip_cidr: String,
    /// OTLP/gRPC endpoint for traces; off when unset.
    #[arg(long, env = "LBAAS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

fn haproxy_installed() -> bool {
    std::process::Command::new("haproxy")
        .arg("-v")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `auto` is haproxy when installed, else the embedded native data plane; other names stay.
pub(crate) fn resolve_driver(asked: &str) -> String {
    match asked {
        "auto" if haproxy_installed() => "haproxy".to_owned(),
        "auto" => {
            tracing::info!("HAProxy is not installed: devices run the embedded native data plane");
            "native".to_owned()
        }
        other => other.to_owned(),
    }
}

pub async fn run(args: StackArgs) -> anyhow::Result<()> {
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-stack".into(),
        otlp_endpoint: args.otlp_endpoint.clone(),
        json_logs: false,
    })?;
    let driver = resolve_driver(&args.driver);
    let data_dir = std::path::absolute(&args.data_dir)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let sqlite = |name: &str| format!("sqlite://{}", data_dir.join(name).display());
    let secret_key_file = secret_key(&data_dir)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let scheduler_listener = TcpListener::bind(args.scheduler_listen)
        .await
        .context("binding the scheduler")?;
    let api_listener = TcpListener::bind(args.api_listen)
        .await
        .context("binding the api")?;
    let agent_listener = TcpListener::bind(args.agent_listen)
        .await
        .context("binding the agent")?;
    let rest_listener = TcpListener::bind(args.rest_listen)
        .await
        .context("binding the REST API")?;
    let rest_addr = rest_listener.local_addr()?;
    let scheduler_addr = scheduler_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let agent_addr = agent_listener.local_addr()?;

    let scheduler = scheduler_config(scheduler_addr, sqlite("scheduler.db"), 1000, 5000);
    let mut api = api_config(
        api_addr,
        sqlite("api.db"),
        format!("http://{scheduler_addr}"),
        secret_key_file,
    );
    // The REST API's clients send a token: one for the project `demo`, admin in it, kept with the
    // databases (gRPC callers may still name their project with x-project-id).
    let (token_file, token) = rest_token(&data_dir)?;
    api.token_file = Some(token_file);
    let agent = lbaas_agent::AgentConfig {
        agent_id: "local".into(),
        listen: agent_addr,
        scheduler_url: format!("http://{scheduler_addr}"),
        advertise_url: None,
        driver: driver.clone(),
        devices: 1,
        capacity: 100,
        vip_cidr: args.vip_cidr.clone(),
        state_dir: data_dir.join("agent"),
        haproxy_bin: "haproxy".into(),
        dataplane_bin: None,
        // The native data plane is this binary too: `lbctl dataplane`.
        dataplane_command: crate::common::dataplane_command(),
        noop_apply_delay_ms: 0,
        health_interval_ms: 100,
        stats_interval_ms: 1000,
        // A laptop stack owns its HAProxy: stopping the stack stops the data plane too.
        stop_data_plane_on_exit: true,
        metrics_listen: None,
        network: Default::default(),
        tls: lbaas::server::tls::TlsConfig::plaintext(),
    };
    scheduler.validate()?;
    api.validate()?;
    agent.validate()?;

    let mut services = tokio::task::JoinSet::new();
    services.spawn(lbaas_scheduler::run(
        scheduler,
        scheduler_listener,
        stopped(stop_rx.clone()),
    ));
    services.spawn(lbaas_api::run_with_rest(
        api,
        api_listener,
        Some(rest_listener),
        stopped(stop_rx.clone()),
    ));
    services.spawn(lbaas_agent::run(
        agent,
        agent_listener,
        stopped(stop_rx.clone()),
    ));

    println!("lbaas stack is up (data in {})", data_dir.display());
    println!("  api        http://{api_addr}   (tenant API: lbaas.api.v1.LoadBalancerService)");
    println!("  scheduler  http://{scheduler_addr}   (devices, placement)");
    println!(
        "  REST       http://{rest_addr}   (Octavia v2; token in {}/rest-token)",
        data_dir.display()
    );
    println!(
        "             openstack --os-auth-type admin_token --os-endpoint http://{rest_addr} --os-token {token} loadbalancer list"
    );
    println!(
        "             or with a password (Keystone v3 at http://{rest_addr}/v3: user and project demo, the token as password):"
    );
    println!(
        "             openstack --os-auth-url http://{rest_addr}/v3 --os-username demo --os-password {token} --os-project-name demo --os-user-domain-name Default --os-project-domain-name Default loadbalancer list"
    );
    println!(
        "  agent      http://{agent_addr}   (driver {driver}, VIPs from {})",
        args.vip_cidr
    );
    println!("Press Ctrl-C to stop.");

    let early = tokio::select! {
        () = lbaas::server::shutdown_signal() => None,
        Some(exit) = services.join_next() => Some(exit),
    };
    let _ = stop_tx.send(true);
    let mut result = match early {
        Some(Ok(Ok(()))) => Err(anyhow::anyhow!("a service stopped on its own")),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(anyhow::anyhow!("a service panicked: {e}")),
        None => Ok(()),
    };
    while let Some(exit) = services.join_next().await {
        match exit {
            Ok(Ok(())) => {}
            Ok(Err(e)) if result.is_ok() => result = Err(e),
            Ok(Err(e)) => eprintln!("also: {e:#}"),
            Err(e) => eprintln!("a service panicked: {e}"),
        }
    }
    result
}

/// A scheduler with SQLite that fails a device over after `agent_timeout_ms` of silence from its
/// agent (held while over half the devices are DOWN at once).
pub(crate) fn scheduler_config(
    listen: SocketAddr,
    database_url: String,
    heartbeat_interval_ms: i64,
    agent_timeout_ms: i64,
) -> lbaas_scheduler::SchedulerConfig {
    lbaas_scheduler::SchedulerConfig {
        listen,
        database_url,
        strategy: "least-loaded".into(),
        heartbeat_interval_ms,
        agent_timeout_ms,
        failover_max_down_share: 0.5,
        placement_seed: 0,
        fleet_refresh_ms: 1000,
        token_file: None,
        jwt: Default::default(),
        metrics_listen: None,
        tls: lbaas::server::tls::TlsConfig::plaintext(),
    }
}

/// An api on this machine with SQLite, tenants named by the x-project-id header, no quotas.
pub(crate) fn api_config(
    listen: SocketAddr,
    database_url: String,
    scheduler_url: String,
    secret_key_file: PathBuf,
) -> lbaas_api::ApiConfig {
    lbaas_api::ApiConfig {
        rest_listen: None,
        rest_keystone: true,
        listen,
        database_url,
        scheduler_url,
        token_file: None,
        allow_project_header: true,
        deploy_deadline_ms: 60_000,
        reconcile_interval_ms: 2_000,
        reserved_ips: vec![std::net::IpAddr::from([169, 254, 169, 254])],
        access_log_format: lbaas_api::store::OCTAVIA_TENANT_LOG_FORMAT.into(),
        quota_load_balancers: -1,
        quota_listeners: -1,
        quota_pools: -1,
        quota_members: -1,
        quota_health_monitors: -1,
        quota_l7_policies: -1,
        quota_l7_rules: -1,
        secret_key_file: Some(secret_key_file),
        jwt: Default::default(),
        metrics_listen: None,
        tls: lbaas::server::tls::TlsConfig::plaintext(),
    }
}

/// The key certificate keys are sealed with: made once, kept with the databases.
pub(crate) fn secret_key(data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let secret_key_file = data_dir.join("secret.key");
    if !secret_key_file.exists() {
        write_private(
            &secret_key_file,
            &lbaas_api::certs::SecretKey::generate_hex(),
        )?;
    }
    Ok(secret_key_file)
}

/// The stack's REST token (made once, kept with the databases) and the token file naming it.
fn rest_token(data_dir: &std::path::Path) -> anyhow::Result<(PathBuf, String)> {
    let token_file = data_dir.join("rest-token");
    if !token_file.exists() {
        write_private(&token_file, &lbaas_api::certs::SecretKey::generate_hex())?;
    }
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?
        .trim()
        .to_owned();
    let tokens = data_dir.join("tokens");
    std::fs::write(&tokens, format!("{token} demo admin\n"))
        .with_context(|| format!("writing {}", tokens.display()))?;
    let mut perms = std::fs::metadata(&tokens)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&tokens, perms)?;
    Ok((tokens, token))
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
