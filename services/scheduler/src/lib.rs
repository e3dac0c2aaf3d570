//! The lbaas scheduler: the placement component. It owns the device registry, binds each load
//! balancer to a device with a pluggable strategy, and forwards deploys to the owning agent.

pub mod addressing;
pub mod config;
pub mod deploy;
pub mod devices;
pub mod entity;
pub mod error;
pub mod failover;
pub mod health;
pub mod migration;
pub mod placement;
pub mod strategy;

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use lbaas::scheduler::v1::{
    agent_registry_service_server::AgentRegistryServiceServer,
    device_service_server::DeviceServiceServer, scheduler_service_server::SchedulerServiceServer,
};
use sea_orm::EntityTrait as _;
use sea_orm_migration::MigratorTrait as _;
use tokio::net::TcpListener;

pub use config::SchedulerConfig;

const SERVICES: &[&str] = &[
    "lbaas.scheduler.v1.SchedulerService",
    "lbaas.scheduler.v1.DeviceService",
    "lbaas.scheduler.v1.AgentRegistryService",
];

pub use lbaas::server::now_ms;

/// Brings the database at `database_url` to this version's schema (what start-up does first;
/// `--migrate-only` runs just this, for a deploy's migration job).
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let db = lbaas::server::connect_database(database_url)
        .await
        .context("connecting to the database")?;
    migration::Migrator::up(&db, None)
        .await
        .context("migrating the database")?;
    db.close().await.ok();
    tracing::info!("database migrated");
    Ok(())
}

/// Runs the scheduler on `listener` until `shutdown` resolves.
pub async fn run(
    config: SchedulerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let local = listener.local_addr()?;
    let (health, health_service) = lbaas::server::health_not_serving(SERVICES).await;
    let (reflection_v1, reflection_v1alpha) = lbaas::server::reflection_services()?;
    let credentials =
        lbaas::server::tokens::Credentials::new(config.token_file.as_deref(), &config.jwt)?;
    let tokens = if credentials.configured() {
        Some(Arc::new(credentials))
    } else {
        tracing::warn!(
            "no token file or JWT keys: the provider API is open to anyone who can reach it (local use only)"
        );
        None
    };

    let db = lbaas::server::connect_database(&config.database_url)
        .await
        .context("connecting to the scheduler database")?;
    migration::Migrator::up(&db, None)
        .await
        .context("migrating the scheduler database")?;

    let agents = Arc::new(deploy::AgentClients::new(config.tls.clone()));
    let placer = Arc::new(placement::Placer::new(
        db.clone(),
        config.strategy.clone(),
        config.placement_seed,
        config.agent_timeout_ms,
        agents.clone(),
    ));
    placer
        .refresh()
        .await
        .context("reading the device registry")?;
    let refresher = placer.clone();
    let refresh_every = std::time::Duration::from_millis(config.fleet_refresh_ms);
    let _refresh_task = lbaas::server::AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh_every).await;
            if let Err(e) = refresher.refresh().await {
                tracing::warn!(error = %e, "could not refresh the fleet");
            }
        }
    }));
    let health_relay = Arc::new(health::HealthRelay::new(agents.clone()));
    // Agents registered before a restart do not register again: follow them from the registry.
    for known in entity::agent::Entity::find()
        .all(&db)
        .await
        .context("reading the agent registry")?
    {
        health_relay.follow(&known.id, &known.address);
    }
    let failover = failover::FailoverMonitor::new(
        db.clone(),
        config.agent_timeout_ms,
        config.failover_max_down_share,
    );
    let check_every = std::time::Duration::from_millis(
        u64::try_from(config.agent_timeout_ms / 4)
            .unwrap_or(250)
            .max(50),
    );
    let _failover_task =
        lbaas::server::AbortOnDrop(tokio::spawn(failover.clone().run(check_every)));
    let scheduler = deploy::SchedulerApi {
        db: db.clone(),
        placer: placer.clone(),
        agents,
        health: health_relay.clone(),
        failover: failover.clone(),
    };
    let devices = devices::DeviceApi {
        db: db.clone(),
        placer: placer.clone(),
        agent_timeout_ms: config.agent_timeout_ms,
        failover: failover.clone(),
    };
    let registry = devices::AgentRegistryApi {
        db: db.clone(),
        placer: placer.clone(),
        heartbeat_interval_ms: config.heartbeat_interval_ms,
        health: health_relay,
    };
    lbaas::server::mark_serving(&health, SERVICES).await;
    tracing::info!(address = %local, database = %redact(&config.database_url), "scheduler listening");
    let _metrics = lbaas::server::metrics::start(config.metrics_listen).await?;
    let _health_port =
        lbaas::server::serve_health_port(config.tls.health_listen, health_service.clone()).await?;
    let mut server = lbaas::server::server();
    // Mutual TLS: the api, agents and admins present certificates from the CA.
    if let Some(tls) = config.tls.server(true)? {
        server = server.tls_config(tls)?;
    }
    server
        .trace_fn(lbaas::server::rpc_span("scheduler"))
        .layer(lbaas::server::metrics::RpcMetricsLayer::new("scheduler"))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SchedulerServiceServer::new(scheduler))
        .add_service(DeviceServiceServer::with_interceptor(
            devices,
            move |request: tonic::Request<()>| {
                if let Some(tokens) = &tokens {
                    tokens.require_admin(request.metadata())?;
                }
                Ok(request)
            },
        ))
        .add_service(AgentRegistryServiceServer::new(registry))
        .serve_with_incoming_shutdown(lbaas::server::incoming(listener), shutdown)
        .await?;
    db.close().await.ok();
    tracing::info!("scheduler stopped");
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
