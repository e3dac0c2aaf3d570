//! Keeps the agent registered with the scheduler: register, heartbeat, and on any failure back off
//! and register again, for as long as the agent runs. Devices keep serving meanwhile.
use std::time::Duration;

use lbaas::scheduler::v1::{
    DriverCapabilities, HeartbeatRequest, RegisterAgentRequest,
    agent_registry_service_client::AgentRegistryServiceClient,
};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the agent tells the scheduler about itself.
#[derive(Clone)]
pub struct Registration {
    pub agent_id: String,
    pub scheduler_url: String,
    /// Where the scheduler reaches this agent.
    pub advertise_url: String,
    /// The drivers this agent can create devices for.
    pub drivers: Vec<String>,
    /// How to reach the scheduler (TLS or plaintext).
    pub tls: lbaas::server::tls::TlsConfig,
    /// The devices themselves, to stop serving what moved away.
    pub hosted: crate::service::Devices,
}

impl Registration {
    /// Runs until the task is dropped.
    pub async fn run(self) {
        let mut backoff = lbaas::server::Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        loop {
            match self.session().await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(scheduler = %self.scheduler_url, error = %e, retry_in_ms = pause.as_millis() as u64, "scheduler unreachable");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One registration followed by heartbeats; returns when the scheduler forgets the agent.
    async fn session(&self) -> Result<(), tonic::Status> {
        let endpoint = lbaas::server::tls::endpoint(&self.scheduler_url, &self.tls)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut client = AgentRegistryServiceClient::new(channel);
        let devices = self.hosted.advertised(&self.agent_id);
        let loadbalancer_ids = self
            .hosted
            .values()
            .into_iter()
            .flat_map(|d| d.applied_generations().into_iter().map(|(id, _)| id))
            .collect();
        let registered = client
            .register_agent(RegisterAgentRequest {
                agent_id: self.agent_id.clone(),
                address: self.advertise_url.clone(),
                devices: devices.clone(),
                loadbalancer_ids,
                drivers: self.drivers.clone(),
                driver_capabilities: self
                    .drivers
                    .iter()
                    .map(|d| DriverCapabilities {
                        driver: d.clone(),
                        capabilities: crate::driver::capabilities_of(d),
                    })
                    .collect(),
            })
            .await?
            .into_inner();
        for moved in &registered.moved {
            for device in self.hosted.values() {
                if device
                    .applied_generations()
                    .iter()
                    .any(|(id, _)| *id == moved.loadbalancer_id)
                {
                    tracing::warn!(loadbalancer = %moved.loadbalancer_id, now_on = %moved.device_id, device = %device.id, "moved away while this agent was gone: no longer serving it");
                    if let Err(e) = device.remove(&moved.loadbalancer_id).await {
                        tracing::warn!(error = %e, "could not remove a load balancer that moved away");
                    }
                }
            }
        }
        tracing::info!(scheduler = %self.scheduler_url, devices = devices.len(), "registered with scheduler");
        let interval = Duration::from_millis(
            u64::try_from(registered.heartbeat_interval_ms)
                .unwrap_or(1000)
                .max(50),
        );
        loop {
            tokio::time::sleep(interval).await;
            let answer = client
                .heartbeat(HeartbeatRequest {
                    agent_id: self.agent_id.clone(),
                })
                .await?
                .into_inner();
            if !answer.known {
                tracing::info!("scheduler no longer knows this agent; registering again");
                return Ok(());
            }
        }
    }
}
