//! The agent's gRPC API: Apply streams ACCEPTED, APPLYING, then ACTIVE or ERROR; Remove; status.
use std::{pin::Pin, sync::Arc, time::Instant};

use futures::Stream;
use lbaas::agent::v1::{
    ApplyEvent, ApplyPhase, ApplyRequest, AttachNetworkRequest, AttachNetworkResponse,
    CreateDeviceRequest, DeviceStatus, DiagnosticsRequest, DiagnosticsResponse, DiscoverRequest,
    DiscoverResponse, GetStatusRequest, GetStatusResponse, HealthReport, HostedDevice,
    LoadBalancerStatus, RemoveRequest, RemoveResponse, WatchHealthRequest,
    agent_service_server::AgentService,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    driver::DriverError,
    reconciler::{ApplyOutcome, DeviceReconciler, ReconcileError},
};

/// The devices this agent hosts, by id.
pub type Devices = Arc<crate::devices::DeviceSet>;

pub struct AgentApi {
    pub agent_id: String,
    pub devices: Devices,
    pub health: crate::health::HealthFeed,
    pub factory: crate::devices::DeviceFactory,
    /// One device creation at a time, so two never take the same id.
    pub creating: tokio::sync::Mutex<()>,
}

impl AgentApi {
    fn device(&self, id: &str) -> Result<Arc<DeviceReconciler>, Status> {
        self.devices.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "device {id:?} is not hosted by agent {}",
                self.agent_id
            ))
        })
    }
}

fn event(
    lb: &str,
    generation: i64,
    phase: ApplyPhase,
    message: String,
    started: Instant,
) -> ApplyEvent {
    ApplyEvent {
        loadbalancer_id: lb.to_owned(),
        generation,
        phase: phase as i32,
        message,
        elapsed_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        retryable: false,
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ApplyStream = Pin<Box<dyn Stream<Item = Result<ApplyEvent, Status>> + Send>>;

    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<Self::ApplyStream>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let device = self.device(&request.device_id)?;
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let lb = config.id.clone();
        let generation = request.generation;
        let (tx, rx) = mpsc::channel(4);
        // The apply runs to completion even if the caller goes away: the device must converge.
        // It stays in the request's span, so its logs carry the caller's trace id.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = tx
                    .send(Ok(event(
                        &lb,
                        generation,
                        ApplyPhase::Accepted,
                        String::new(),
                        started,
                    )))
                    .await;
                let _ = tx
                    .send(Ok(event(
                        &lb,
                        generation,
                        ApplyPhase::Applying,
                        String::new(),
                        started,
                    )))
                    .await;
                let last = match device.apply(generation, config).await {
                    Ok(ApplyOutcome::Applied) => event(
                        &lb,
                        generation,
                        ApplyPhase::Active,
                        "applied".into(),
                        started,
                    ),
                    Ok(ApplyOutcome::AlreadyApplied) => event(
                        &lb,
                        generation,
                        ApplyPhase::Active,
                        "already applied".into(),
                        started,
                    ),
                    Ok(ApplyOutcome::Superseded { by }) => event(
                        &lb,
                        generation,
                        ApplyPhase::Superseded,
                        format!("superseded by generation {by}"),
                        started,
                    ),
                    Err(e) => {
                        tracing::warn!(loadbalancer = %lb, generation, error = %e, "apply failed");
                        let retryable = !matches!(
                            e,
                            ReconcileError::Driver(
                                DriverError::Rejected(_) | DriverError::Unsupported { .. }
                            )
                        );
                        ApplyEvent {
                            retryable,
                            ..event(&lb, generation, ApplyPhase::Error, e.to_string(), started)
                        }
                    }
                };
                tracing::info!(loadbalancer = %lb, generation, phase = ?last.phase(), elapsed_ms = last.elapsed_ms, "apply finished");
                let _ = tx.send(Ok(last)).await;
            },
            span,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        let request = request.into_inner();
        let device = self.device(&request.device_id)?;
        device
            .remove(&request.loadbalancer_id)
            .await
            .map_err(|e| match e {
                ReconcileError::Driver(d) => Status::unavailable(d.to_string()),
                ReconcileError::Network(n) => Status::unavailable(n.to_string()),
                ReconcileError::Poisoned => Status::internal("agent state unavailable"),
            })?;
        Ok(Response::new(RemoveResponse {}))
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let mut devices = Vec::new();
        let mut load_balancers = Vec::new();
        for device in self.devices.values() {
            let id = &device.id;
            let health = device.driver.health().await;
            devices.push(DeviceStatus {
                device_id: id.clone(),
                driver: device.driver.name().into(),
                healthy: health.healthy,
                detail: health.detail,
            });
            for (lb, generation) in device.applied_generations() {
                load_balancers.push(LoadBalancerStatus {
                    loadbalancer_id: lb,
                    device_id: id.clone(),
                    applied_generation: generation,
                });
            }
        }
        Ok(Response::new(GetStatusResponse {
            agent_id: self.agent_id.clone(),
            devices,
            load_balancers,
        }))
    }

    type WatchHealthStream = Pin<Box<dyn Stream<Item = Result<HealthReport, Status>> + Send>>;

    async fn watch_health(
        &self,
        _request: Request<WatchHealthRequest>,
    ) -> Result<Response<Self::WatchHealthStream>, Status> {
        let mut feed = self.health.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let current = feed.borrow_and_update().clone();
                if let Some(report) = current
                    && tx.send(Ok((*report).clone())).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    changed = feed.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn attach_network(
        &self,
        request: Request<AttachNetworkRequest>,
    ) -> Result<Response<AttachNetworkResponse>, Status> {
        let r = request.into_inner();
        self.device(&r.device_id)?;
        let net: ipnet::IpNet = r
            .cidr
            .parse()
            .map_err(|_| Status::invalid_argument(format!("{:?} is not a CIDR", r.cidr)))?;
        let address = if r.address.is_empty() {
            None
        } else {
            Some(r.address.parse::<ipnet::IpNet>().map_err(|_| {
                Status::invalid_argument(format!(
                    "{:?} is not an address with a prefix length",
                    r.address
                ))
            })?)
        };
        self.factory
            .vips
            .driver
            .attach(&r.network, net, address)
            .await
            .map_err(|e| match e {
                crate::network::NetworkError::Unusable(why) => Status::failed_precondition(why),
                crate::network::NetworkError::Failed(why) => Status::unavailable(why),
            })?;
        let networks = self
            .devices
            .attach(&r.device_id, &r.network)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(device = %r.device_id, network = %r.network, cidr = %r.cidr, "attached to network");
        Ok(Response::new(AttachNetworkResponse { networks }))
    }

    async fn create_device(
        &self,
        request: Request<CreateDeviceRequest>,
    ) -> Result<Response<HostedDevice>, Status> {
        let r = request.into_inner();
        if !crate::driver::known_driver_names().contains(&r.driver.as_str()) {
            return Err(Status::invalid_argument(format!(
                "driver {:?} is unknown here (known: {})",
                r.driver,
                crate::driver::known_driver_names().join(", ")
            )));
        }
        if !(1..=100_000).contains(&r.capacity) {
            return Err(Status::invalid_argument(
                "capacity must be between 1 and 100000",
            ));
        }
        let _one_at_a_time = self.creating.lock().await;
        let id = (0..)
            .map(|n| format!("{}-{}-od{n}", self.agent_id, r.driver))
            .find(|id| !self.devices.contains(id))
            .ok_or_else(|| Status::internal("no device id left"))?;
        let record = HostedDevice {
            id: id.clone(),
            driver: r.driver,
            capacity: r.capacity,
            vip_cidr: self.factory.vip_cidr.clone(),
            labels: r.labels,
            networks: Vec::new(),
            on_demand: true,
        };
        let hosted = self
            .factory
            .open(record)
            .map_err(|e| Status::internal(format!("cannot create device {id}: {e:#}")))?;
        let reconciler = hosted.reconciler.clone();
        let record = hosted.record.clone();
        reconciler
            .restore()
            .await
            .map_err(|e| Status::unavailable(format!("device {id} did not start: {e}")))?;
        self.devices.insert(hosted);
        tracing::info!(device = %id, driver = %record.driver, capacity = record.capacity, "created a device on demand");
        Ok(Response::new(record))
    }

    async fn discover(
        &self,
        _request: Request<DiscoverRequest>,
    ) -> Result<Response<DiscoverResponse>, Status> {
        Ok(Response::new(DiscoverResponse {
            agent_id: self.agent_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            drivers: crate::driver::discover(&self.factory.haproxy_bin).await,
            devices: self.devices.records(),
        }))
    }

    async fn diagnostics(
        &self,
        request: Request<DiagnosticsRequest>,
    ) -> Result<Response<DiagnosticsResponse>, Status> {
        let id = request.into_inner().device_id;
        let device = self.device(&id)?;
        let checks = device.driver.diagnostics().await.map_err(|e| match e {
            DriverError::Unsupported { .. } => Status::unimplemented(e.to_string()),
            other => Status::unavailable(other.to_string()),
        })?;
        Ok(Response::new(DiagnosticsResponse {
            device_id: id,
            driver: device.driver.name().into(),
            checks,
        }))
    }
}
