//! The lbaas agent: hosts devices through drivers, applies the desired config of each load
//! balancer the scheduler sends, and keeps itself registered with the scheduler.

pub mod config;
pub mod driver;
pub mod health;
pub mod reconciler;
pub mod registration;
pub mod service;

use std::{collections::HashMap, future::Future, sync::Arc};

use anyhow::Context as _;
use lbaas::{
    agent::v1::agent_service_server::AgentServiceServer,
    scheduler::v1::{Device, DeviceState},
};
use tokio::net::TcpListener;

pub use config::AgentConfig;
use driver::{DriverOptions, build_driver};
use reconciler::DeviceReconciler;
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

    let mut devices = HashMap::new();
    let mut advertised = Vec::new();
    for n in 0..config.devices {
        let device_id = format!("{}-{}-{n}", config.agent_id, config.driver);
        let state_dir = config.state_dir.join(&device_id);
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let options = DriverOptions {
            device_id: device_id.clone(),
            state_dir: state_dir.clone(),
            haproxy_bin: config.haproxy_bin.clone(),
            noop_apply_delay: std::time::Duration::from_millis(config.noop_apply_delay_ms),
        };
        let driver = build_driver(&config.driver, &options)
            .with_context(|| format!("unknown driver {:?}", config.driver))?;
        devices.insert(
            device_id.clone(),
            Arc::new(DeviceReconciler::new(
                device_id.clone(),
                driver,
                state_dir.join("applied.pb"),
            )),
        );
        advertised.push(Device {
            id: device_id,
            driver: config.driver.clone(),
            agent_id: config.agent_id.clone(),
            capacity: config.capacity,
            load: 0,
            vip_cidr: config.vip_cidr.clone(),
            r#virtual: true,
            state: DeviceState::Active as i32,
            labels: HashMap::new(),
        });
    }
    let devices: service::Devices = Arc::new(devices);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (devices_ready, ready) = tokio::sync::oneshot::channel();
    let (health_feed, health_task) = health::spawn(
        config.agent_id.clone(),
        devices.clone(),
        std::time::Duration::from_millis(config.health_interval_ms),
        ready,
    );
    let _health = lbaas::server::AbortOnDrop(health_task);
    let api = AgentApi {
        agent_id: config.agent_id.clone(),
        devices: devices.clone(),
        health: health_feed,
    };
    let server = tonic::transport::Server::builder()
        .trace_fn(lbaas::server::rpc_span)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServiceServer::new(api))
        .serve_with_incoming_shutdown(lbaas::server::incoming(listener), async {
            let _ = stop_rx.await;
        });
    let server = tokio::spawn(server);
    tracing::info!(address = %local, agent = %config.agent_id, driver = %config.driver, "agent listening");

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
            advertise_url: config
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}")),
            devices: advertised,
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
    }
    tracing::info!("agent stopped");
    Ok(())
}
