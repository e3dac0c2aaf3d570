//! The lbaas agent: hosts devices through drivers, applies the desired config of each load
//! balancer the scheduler sends, and keeps itself registered with the scheduler.

pub mod config;
pub mod dataplane;
pub mod devices;
pub mod driver;
pub mod health;
pub mod metrics;
pub mod network;
pub mod private_files;
pub mod reconciler;
pub mod registration;
pub mod service;

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use lbaas::agent::v1::{HostedDevice, agent_service_server::AgentServiceServer};
use tokio::net::TcpListener;

pub use config::AgentConfig;
use devices::{DeviceFactory, DeviceSet};
use registration::Registration;
use service::AgentApi;

const SERVICE_NAME: &str = "lbaas.agent.v1.AgentService";

/// Runs the agent on `listener` until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let local = listener.local_addr()?;
    let (health, health_service) = lbaas::server::health_not_serving(&[SERVICE_NAME]).await;
    let (reflection_v1, reflection_v1alpha) = lbaas::server::reflection_services()?;

    let network = network::build(
        &config.network.network_driver,
        &config.network.interfaces().unwrap_or_default(),
        &config.state_dir,
        &config.agent_id,
    )
    .context("unknown network driver")?;
    let vips = Arc::new(network::Vips::new(network));
    let factory = DeviceFactory {
        vips: vips.clone(),
        agent_id: config.agent_id.clone(),
        state_dir: config.state_dir.clone(),
        haproxy_bin: config.haproxy_bin.clone(),
        dataplane: config.dataplane_command(),
        noop_apply_delay: std::time::Duration::from_millis(config.noop_apply_delay_ms),
        vip_cidr: config.vip_cidr.clone(),
    };
    let devices: service::Devices = Arc::new(DeviceSet::default());
    for n in 0..config.devices {
        let record = HostedDevice {
            id: format!("{}-{}-{n}", config.agent_id, config.driver),
            driver: config.driver.clone(),
            capacity: config.capacity,
            vip_cidr: config.vip_cidr.clone(),
            labels: std::collections::HashMap::new(),
            networks: Vec::new(),
            on_demand: false,
        };
        devices.insert(factory.open(record)?);
    }
    // Devices created on demand before a restart come back too.
    for record in factory.saved_on_demand() {
        if !devices.contains(&record.id) {
            devices.insert(factory.open(record)?);
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (devices_ready, ready) = tokio::sync::oneshot::channel();
    let (health_feed, health_task) = health::spawn(
        config.agent_id.clone(),
        devices.clone(),
        std::time::Duration::from_millis(config.health_interval_ms),
        std::time::Duration::from_millis(config.stats_interval_ms),
        ready,
    );
    let _health = lbaas::server::AbortOnDrop(health_task);
    let api = AgentApi {
        agent_id: config.agent_id.clone(),
        devices: devices.clone(),
        health: health_feed,
        factory,
        creating: tokio::sync::Mutex::new(()),
    };
    let _metrics = lbaas::server::metrics::start(config.metrics_listen).await?;
    let _health_port =
        lbaas::server::serve_health_port(config.tls.health_listen, health_service.clone()).await?;
    let mut server = lbaas::server::server();
    // Mutual TLS: only the scheduler (or an admin) with a certificate from the CA gets in.
    if let Some(tls) = config.tls.server(true)? {
        server = server.tls_config(tls)?;
    }
    let server = server
        .trace_fn(lbaas::server::rpc_span("agent"))
        .layer(lbaas::server::metrics::RpcMetricsLayer::new("agent"))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServiceServer::new(api))
        .serve_with_incoming_shutdown(lbaas::server::incoming(listener), async {
            let _ = stop_rx.await;
        });
    let server = tokio::spawn(server);
    tracing::info!(address = %local, agent = %config.agent_id, driver = %config.driver, network = %config.network.network_driver, "agent listening");

    // Restore every device before reporting ready: a restarted agent serves what it served before.
    for device in devices.values() {
        let restored = device
            .restore()
            .await
            .with_context(|| format!("starting device {}", device.id))?;
        tracing::info!(device = %device.id, restored, "device ready");
    }
    let _ = devices_ready.send(());
    lbaas::server::mark_serving(&health, &[SERVICE_NAME]).await;

    let registration = tokio::spawn(
        Registration {
            agent_id: config.agent_id.clone(),
            scheduler_url: config.scheduler_url.clone(),
            advertise_url: config.tls.url(
                &config
                    .advertise_url
                    .clone()
                    .unwrap_or_else(|| local.to_string()),
            ),
            tls: config.tls.clone(),
            drivers: vec![config.driver.clone()],
            hosted: devices.clone(),
        }
        .run(),
    );

    let _registration = lbaas::server::AbortOnDrop(registration);
    shutdown.await;
    drop(_registration);
    drop(_health);
    let _ = stop_tx.send(());
    server.await??;
    if config.stop_data_plane_on_exit {
        for device in devices.values() {
            if let Err(e) = device.driver.stop().await {
                tracing::warn!(device = %device.id, error = %e, "cannot stop device");
            }
        }
        vips.driver.stop().await;
    }
    tracing::info!("agent stopped");
    Ok(())
}
