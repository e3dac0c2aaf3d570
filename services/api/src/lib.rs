//! The lbaas api service: the tenant-facing API. It validates, authorizes by project, persists
//! through sea-orm and asks the scheduler to deploy, following each deploy to ACTIVE or ERROR.

pub mod auth;
pub mod certs;
pub mod config;
pub mod convert;
pub mod deployer;
pub mod entity;
pub mod error;
pub mod filter;
pub mod health;
pub mod l7;
pub mod migration;
pub mod needs;
pub mod rest;
pub mod service;
pub mod stats;
pub mod status;
pub mod store;
pub mod tls_fields;
pub mod update;
pub mod watch;

use std::{future::Future, time::Duration};

use anyhow::Context as _;
use lbaas::{
    api::v1::{
        certificate_service_server::CertificateServiceServer,
        load_balancer_service_server::LoadBalancerServiceServer,
        quota_service_server::QuotaServiceServer,
    },
    scheduler::v1::scheduler_service_client::SchedulerServiceClient,
};
use sea_orm_migration::MigratorTrait as _;
use tokio::net::TcpListener;

pub use config::ApiConfig;

const SERVICES: &[&str] = &[
    "lbaas.api.v1.LoadBalancerService",
    "lbaas.api.v1.QuotaService",
    "lbaas.api.v1.CertificateService",
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

/// Runs the api service on `listener` (and its Octavia REST face on `--rest-listen`, when set)
/// until `shutdown` resolves.
pub async fn run(
    config: ApiConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let rest = match config.rest_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the REST API on {addr}"))?,
        ),
        None => None,
    };
    run_with_rest(config, listener, rest, shutdown).await
}

/// Runs the api service: gRPC on `listener`, Octavia's v2 REST API on `rest` when given.
pub async fn run_with_rest(
    config: ApiConfig,
    listener: TcpListener,
    rest_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let auth = auth::Authenticator::new(
        config.token_file.as_deref(),
        &config.jwt,
        config.allow_project_header,
    )?;
    let local = listener.local_addr()?;
    let (health, health_service) = lbaas::server::health_not_serving(SERVICES).await;
    let (reflection_v1, reflection_v1alpha) = lbaas::server::reflection_services()?;

    let db = lbaas::server::connect_database(&config.database_url)
        .await
        .context("connecting to the api database")?;
    migration::Migrator::up(&db, None)
        .await
        .context("migrating the api database")?;

    // Lazy: the api serves reads while the scheduler is away, and deploys retry until it is back.
    let channel = lbaas::server::tls::endpoint(&config.scheduler_url, &config.tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let hub = watch::ChangeHub::default();
    let secret = match &config.secret_key_file {
        Some(file) => Some(certs::SecretKey::read(file)?),
        None => None,
    };
    let mut store = store::Store::new(db.clone(), hub.clone(), config.quota_defaults(), secret);
    store
        .access_log_format
        .clone_from(&config.access_log_format);
    let deployer = deployer::Deployer::new(
        store.clone(),
        SchedulerServiceClient::new(channel.clone()),
        Duration::from_millis(config.deploy_deadline_ms),
    );
    let stats = stats::StatsBook::default();
    let health_follower = lbaas::server::AbortOnDrop(tokio::spawn(health::follow(
        store.clone(),
        stats.clone(),
        SchedulerServiceClient::new(channel.clone()),
    )));
    let displaced_follower = lbaas::server::AbortOnDrop(tokio::spawn(health::follow_displaced(
        store.clone(),
        deployer.clone(),
        SchedulerServiceClient::new(channel.clone()),
    )));
    let sweep = lbaas::server::AbortOnDrop(tokio::spawn(
        deployer
            .clone()
            .sweep_forever(Duration::from_millis(config.reconcile_interval_ms)),
    ));
    let rereader = lbaas::server::AbortOnDrop(tokio::spawn(watch::reread_forever(
        store.clone(),
        watch::REREAD,
    )));
    let quotas = std::sync::Arc::new(service::QuotaApi {
        store: store.clone(),
        auth: auth.clone(),
    });
    let certificates = service::CertificateApi {
        store: store.clone(),
        auth: auth.clone(),
    };
    let api = std::sync::Arc::new(service::TenantApi {
        store,
        deployer,
        auth,
        stats,
        reserved_ips: config.reserved_ips.clone(),
    });
    // One shutdown for both faces.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let _shutdown = lbaas::server::AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    }));
    let rest_server = match rest_listener {
        Some(rest_listener) => {
            tracing::info!(address = %rest_listener.local_addr()?, "Octavia v2 REST API listening");
            let rest = rest::Rest {
                api: api.clone(),
                quotas: quotas.clone(),
                scheduler: SchedulerServiceClient::new(channel.clone()),
                devices: lbaas::scheduler::v1::device_service_client::DeviceServiceClient::new(
                    channel,
                ),
                quota_defaults: config.quota_defaults(),
                keystone: config.rest_keystone,
            };
            let stop = stopped();
            Some(tokio::spawn(async move {
                if let Err(e) = rest::serve(rest_listener, rest, stop).await {
                    tracing::warn!(error = %e, "the REST API stopped with an error");
                }
            }))
        }
        None => None,
    };

    lbaas::server::mark_serving(&health, SERVICES).await;
    tracing::info!(address = %local, "api listening");
    let _metrics = lbaas::server::metrics::start(config.metrics_listen).await?;
    let _health_port =
        lbaas::server::serve_health_port(config.tls.health_listen, health_service.clone()).await?;
    let mut server = lbaas::server::server();
    // Tenants reach the api with server-side TLS; mutual TLS is between the services.
    if let Some(tls) = config.tls.server(false)? {
        server = server.tls_config(tls)?;
    }
    let result = server
        .trace_fn(lbaas::server::rpc_span("api"))
        .layer(lbaas::server::metrics::RpcMetricsLayer::new("api"))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(LoadBalancerServiceServer::from_arc(api))
        .add_service(QuotaServiceServer::from_arc(quotas))
        .add_service(CertificateServiceServer::new(certificates))
        .serve_with_incoming_shutdown(lbaas::server::incoming(listener), async move {
            stopped().await;
            // Watch streams would hold the drain open forever: end them.
            hub.close();
        })
        .await;
    if let Some(mut rest) = rest_server {
        // It drains with the gRPC server; a call that hangs past that is cut.
        if tokio::time::timeout(Duration::from_secs(10), &mut rest)
            .await
            .is_err()
        {
            rest.abort();
        }
    }
    drop(sweep);
    drop(rereader);
    drop(health_follower);
    drop(displaced_follower);
    db.close().await.ok();
    tracing::info!("api stopped");
    Ok(result?)
}
