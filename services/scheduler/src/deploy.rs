//! The internal deploy API the api service calls: place, forward to the owning agent, relay.
use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt as _};
use lbaas::{
    agent::v1::{
        ApplyRequest, RemoveRequest, VrrpConfig, agent_service_client::AgentServiceClient,
    },
    scheduler::v1::{
        AdditionalVip, DeployEvent, DeployRequest, GetPlacementRequest, Placement, Topology,
        UndeployRequest, UndeployResponse, ValidatePlacementRequest, ValidatePlacementResponse,
        deploy_event::Event, scheduler_service_server::SchedulerService,
    },
};
use sea_orm::{DatabaseConnection, EntityTrait as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, transport::Channel};

use crate::{
    entity::{agent, availability_zone, binding, device},
    error::SchedulerError,
    placement::{PlacementAsk, Placer},
};

/// VRRP adverts between the two devices of an ACTIVE_STANDBY pair: the BACKUP takes the VIP
/// after three missed adverts (RFC 5798's master-down interval, plus a skew under one advert).
const VRRP_ADVERT_MS: u32 = 1000;

/// gRPC channels to agents, one per address, reused across deploys.
/// The longest the scheduler waits on an agent's apply or remove, whatever the caller allows.
const MAX_APPLY_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct AgentClients {
    channels: std::sync::Mutex<HashMap<String, Channel>>,
    tls: lbaas::server::tls::TlsConfig,
}

impl AgentClients {
    pub fn new(tls: lbaas::server::tls::TlsConfig) -> Self {
        Self {
            channels: std::sync::Mutex::default(),
            tls,
        }
    }

    pub fn client(&self, address: &str) -> Result<AgentServiceClient<Channel>, SchedulerError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| SchedulerError::Unavailable("agent client cache poisoned".into()))?;
        if let Some(channel) = channels.get(address) {
            return Ok(AgentServiceClient::new(channel.clone()));
        }
        let channel = lbaas::server::tls::endpoint(address, &self.tls)
            .map_err(|e| {
                SchedulerError::Unavailable(format!("bad agent address {address:?}: {e}"))
            })?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(AgentServiceClient::new(channel))
    }
}

pub struct SchedulerApi {
    pub db: DatabaseConnection,
    pub placer: Arc<Placer>,
    pub agents: Arc<AgentClients>,
    pub health: Arc<crate::health::HealthRelay>,
    pub failover: Arc<crate::failover::FailoverMonitor>,
}

impl SchedulerApi {
    /// The device and agent address a binding points at.
    async fn route(
        &self,
        binding: &binding::Model,
    ) -> Result<(device::Model, String), SchedulerError> {
        self.route_device(&binding.device_id).await
    }

    /// A device and its agent's address.
    async fn route_device(
        &self,
        device_id: &str,
    ) -> Result<(device::Model, String), SchedulerError> {
        let device = device::Entity::find_by_id(device_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                SchedulerError::Unavailable(format!("device {device_id} is no longer registered"))
            })?;
        let agent = agent::Entity::find_by_id(&device.agent_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                SchedulerError::Unavailable(format!("agent {} has not registered", device.agent_id))
            })?;
        Ok((device, agent.address))
    }

    /// A resize from flavor `from` to `ask.flavor`: SINGLE to SINGLE (a pair would have to move
    /// both devices), and a device of the new flavor can take the load balancer now (its own
    /// device, when the new flavor allows it, or another).
    async fn check_resize(
        &self,
        from: &str,
        ask: &PlacementAsk,
        loadbalancer_id: &str,
    ) -> Result<(), SchedulerError> {
        let (was, now) = (
            self.placer.topology(from).await?,
            self.placer.topology(&ask.flavor).await?,
        );
        if was != Topology::Single || now != Topology::Single {
            let name = |t: Topology| t.as_str_name().trim_start_matches("TOPOLOGY_").to_owned();
            return Err(SchedulerError::Invalid(vec![(
                "flavor".into(),
                format!(
                    "a resize moves a SINGLE load balancer to another SINGLE flavor; {} is {} and {} is {}",
                    if from.is_empty() {
                        "the default flavor"
                    } else {
                        from
                    },
                    name(was),
                    ask.flavor,
                    name(now)
                ),
            )]));
        }
        let current = binding::Entity::find_by_id(loadbalancer_id)
            .one(&self.db)
            .await?;
        if let Some(b) = current
            && self.placer.fits_where_it_is(ask, &b.device_id).await?
        {
            return Ok(());
        }
        self.placer.can_take(ask).await?.map_err(|why| {
            SchedulerError::FailedPrecondition(format!(
                "no device of flavor {} can take the load balancer now: {why}",
                if ask.flavor.is_empty() {
                    "(default)"
                } else {
                    &ask.flavor
                }
            ))
        })
    }

    /// A VIP the tenant asked for: inside the VIP network's range or, with no network, some
    /// allowed device's range (never a network or broadcast address), and held by no other load
    /// balancer.
    async fn check_requested_vip(
        &self,
        requested: &str,
        plan: &crate::placement::Plan,
        loadbalancer_id: &str,
    ) -> Result<(), SchedulerError> {
        let invalid = |why: String| SchedulerError::Invalid(vec![("vip_address".into(), why)]);
        let ip: std::net::IpAddr = requested
            .parse()
            .map_err(|_| invalid("is not an IP address".into()))?;
        match &plan.vip_range {
            Some(range) => {
                if let Some(why) = range.refuses(ip) {
                    return Err(invalid(why));
                }
            }
            None => {
                let ranges: Vec<String> = device::Entity::find()
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .filter(|d| {
                        plan.request
                            .driver
                            .as_ref()
                            .is_none_or(|driver| d.driver == *driver)
                    })
                    .map(|d| d.vip_cidr)
                    .collect();
                if !ranges
                    .iter()
                    .any(|r| crate::placement::vip_outside(ip, r).is_none())
                {
                    let mut ranges = ranges;
                    ranges.sort();
                    ranges.dedup();
                    return Err(invalid(format!(
                        "{ip} is a host address of no device's VIP range ({}); name a network or leave it empty",
                        if ranges.is_empty() {
                            "there are no devices".to_owned()
                        } else {
                            ranges.join(", ")
                        }
                    )));
                }
            }
        }
        self.check_free(ip, loadbalancer_id).await
    }

    /// An additional VIP the tenant asked for: inside its network's range and free.
    async fn check_extra_vip(
        &self,
        index: usize,
        requested: &str,
        range: &crate::addressing::Range,
        loadbalancer_id: &str,
    ) -> Result<(), SchedulerError> {
        let field = format!("additional_vips[{index}].address");
        let ip: std::net::IpAddr = requested.parse().map_err(|_| {
            SchedulerError::Invalid(vec![(field.clone(), "is not an IP address".into())])
        })?;
        if let Some(why) = range.refuses(ip) {
            return Err(SchedulerError::Invalid(vec![(field, why)]));
        }
        self.check_free(ip, loadbalancer_id).await
    }

    /// ALREADY_EXISTS when a load balancer other than `loadbalancer_id` holds `ip` (as its VIP or
    /// an additional VIP), or a device's port has it.
    async fn check_free(
        &self,
        ip: std::net::IpAddr,
        loadbalancer_id: &str,
    ) -> Result<(), SchedulerError> {
        use crate::entity::extra_vip;
        use sea_orm::{ColumnTrait as _, QueryFilter as _};
        let held = binding::Entity::find()
            .filter(binding::Column::VipAddress.eq(ip.to_string()))
            .filter(binding::Column::LoadbalancerId.ne(loadbalancer_id))
            .one(&self.db)
            .await?;
        if held.is_some() {
            return Err(SchedulerError::AlreadyExists(format!(
                "VIP {ip} is held by another load balancer"
            )));
        }
        let port = crate::entity::port::Entity::find()
            .filter(crate::entity::port::Column::Address.eq(ip.to_string()))
            .one(&self.db)
            .await?;
        if let Some(port) = port {
            return Err(SchedulerError::AlreadyExists(format!(
                "{ip} is the port of device {} on network {}",
                port.device_id, port.network
            )));
        }
        let extra = extra_vip::Entity::find()
            .filter(extra_vip::Column::Address.eq(ip.to_string()))
            .filter(extra_vip::Column::LoadbalancerId.ne(loadbalancer_id))
            .one(&self.db)
            .await?;
        if extra.is_some() {
            return Err(SchedulerError::AlreadyExists(format!(
                "{ip} is an additional VIP of another load balancer"
            )));
        }
        Ok(())
    }
}

/// Why an ACTIVE_STANDBY load balancer cannot have additional VIPs (yet).
const ACTIVE_STANDBY_EXTRA_VIPS: &str = "additional VIPs are not available with the ACTIVE_STANDBY topology yet (one VRRP instance holds one VIP family); use a SINGLE flavor";

/// The additional VIPs as the API shows them.
fn additional(extras: &[crate::entity::extra_vip::Model]) -> Vec<AdditionalVip> {
    extras
        .iter()
        .map(|v| AdditionalVip {
            network: v.network.clone(),
            address: v.address.clone(),
        })
        .collect()
}

fn placement(binding: &binding::Model, agent_id: &str) -> Placement {
    Placement {
        loadbalancer_id: binding.loadbalancer_id.clone(),
        device_id: binding.device_id.clone(),
        agent_id: agent_id.to_owned(),
        vip_address: binding.vip_address.clone(),
        strategy: binding.strategy.clone(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SchedulerService for SchedulerApi {
    type DeployStream = Pin<Box<dyn Stream<Item = Result<DeployEvent, Status>> + Send>>;

    async fn deploy(
        &self,
        request: Request<DeployRequest>,
    ) -> Result<Response<Self::DeployStream>, Status> {
        // The device gets what is left of the caller's deadline, never more than MAX_APPLY_WAIT.
        let budget = lbaas::server::grpc_timeout(request.metadata())
            .unwrap_or(MAX_APPLY_WAIT)
            .min(MAX_APPLY_WAIT);
        let request = request.into_inner();
        let Some(mut config) = request.config else {
            return Err(
                SchedulerError::Invalid(vec![("config".into(), "is required".into())]).into(),
            );
        };
        if config.id.is_empty() {
            return Err(
                SchedulerError::Invalid(vec![("config.id".into(), "is required".into())]).into(),
            );
        }
        let ask = PlacementAsk {
            loadbalancer_id: config.id.clone(),
            project_id: config.project_id.clone(),
            vip_address: config.vip_address.clone(),
            flavor: request.flavor.clone(),
            vip_network: request.vip_network.clone(),
            member_addresses: config
                .pools
                .iter()
                .flat_map(|p| p.members.iter().map(|m| m.address.clone()))
                .collect(),
            strategy_override: String::new(),
            capabilities: lbaas::capability::required(&config).into_iter().collect(),
            additional_vips: request
                .additional_vips
                .iter()
                .map(|v| (v.network.clone(), v.address.clone()))
                .collect(),
            availability_zone: request.availability_zone.clone(),
        };
        let topology = self.placer.topology(&request.flavor).await?;
        let pair = topology == Topology::ActiveStandby;
        if pair && !ask.additional_vips.is_empty() {
            return Err(
                SchedulerError::FailedPrecondition(ACTIVE_STANDBY_EXTRA_VIPS.into()).into(),
            );
        }
        let placed_before = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .is_some();
        if pair && !placed_before {
            self.placer.check_pair_possible(&ask).await?;
        }
        let (binding, left) = match (request.failover, pair) {
            (true, true) => self.placer.promote(&ask).await?,
            (true, false) => self.placer.replace(&ask).await?,
            (false, _) => (self.placer.place(&ask).await?, None),
        };
        // ACTIVE_STANDBY: the standby (kept, or chosen on another host) and each side's VRRP.
        let mut standby_apply = None;
        let mut standby_left = None;
        if pair {
            let standby = match self.placer.standby(&ask, &binding).await {
                Ok((standby, replaced)) => {
                    standby_left = replaced;
                    Some(standby)
                }
                Err(e) if !placed_before => {
                    // Never a half-built pair: the first placement goes again.
                    self.placer.release(binding.clone()).await?;
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::warn!(loadbalancer = %binding.loadbalancer_id, error = %e, "no standby for now: the primary serves alone");
                    None
                }
            };
            if let Some(standby) = standby {
                let vrrp = |local: &str, peer: &str, role: &str, priority: u32| {
                    let placer = self.placer.clone();
                    let (local, peer, role) = (local.to_owned(), peer.to_owned(), role.to_owned());
                    let network = ask.vip_network.clone();
                    let vrid = u32::try_from(standby.vrid).unwrap_or(0);
                    async move {
                        let address = |device: String| {
                            let placer = placer.clone();
                            let network = network.clone();
                            async move {
                                placer
                                    .port_address(&device, &network)
                                    .await?
                                    .ok_or_else(|| {
                                        SchedulerError::FailedPrecondition(format!(
                                            "device {device} has no port on network {network}"
                                        ))
                                    })
                            }
                        };
                        Ok::<_, SchedulerError>(VrrpConfig {
                            role,
                            priority,
                            virtual_router_id: vrid,
                            local_address: address(local.clone()).await?,
                            peer_address: address(peer.clone()).await?,
                            advert_interval_ms: VRRP_ADVERT_MS,
                            local_device_id: local,
                            peer_device_id: peer,
                        })
                    }
                };
                config.vrrp =
                    Some(vrrp(&binding.device_id, &standby.device_id, "MASTER", 255).await?);
                let mut backup = config.clone();
                backup.vip_address = binding.vip_address.clone();
                backup.vrrp =
                    Some(vrrp(&standby.device_id, &binding.device_id, "BACKUP", 90).await?);
                let (device, address) = self.route_device(&standby.device_id).await?;
                standby_apply = Some((device, self.agents.client(&address)?, backup));
            }
        }
        // The device left lets go only once the new one serves, so the VIP never goes dark; in the
        // background, as the device left is often unreachable.
        let mut leave = left.map(|old_device| {
            let (db, agents, lb) = (
                self.db.clone(),
                self.agents.clone(),
                binding.loadbalancer_id.clone(),
            );
            async move { remove_from(&db, &agents, &old_device, &lb).await }
        });
        if let Some(old) = standby_left {
            let (db, agents, lb) = (
                self.db.clone(),
                self.agents.clone(),
                binding.loadbalancer_id.clone(),
            );
            tokio::spawn(async move { remove_from(&db, &agents, &old, &lb).await });
        }
        let (device, address) = self.route(&binding).await?;
        let mut client = self.agents.client(&address)?;
        config.vip_address = binding.vip_address.clone();
        let extras = self.placer.extra_vips(&binding.loadbalancer_id).await?;
        config.additional_vip_addresses = extras.iter().map(|v| v.address.clone()).collect();
        let (tx, rx) = mpsc::channel(8);
        let mut placed = placement(&binding, &device.agent_id);
        placed.additional_vips = additional(&extras);
        if let Some((standby_device, _, _)) = &standby_apply {
            placed.standby_device_id = standby_device.id.clone();
            placed.standby_agent_id = standby_device.agent_id.clone();
            placed.topology = Topology::ActiveStandby as i32;
        }
        let _ = tx
            .send(Ok(DeployEvent {
                event: Some(Event::Placed(placed)),
            }))
            .await;
        // The standby applies at the same time; the deploy is ACTIVE once both are.
        let mut standby_done = standby_apply.map(|(standby_device, mut standby_client, backup)| {
            let mut apply = lbaas::server::traced(ApplyRequest {
                device_id: standby_device.id.clone(),
                generation: request.generation,
                config: Some(backup),
            });
            apply.set_timeout(budget);
            tokio::spawn(async move {
                let outcome = async {
                    let mut stream = standby_client
                        .apply(apply)
                        .await
                        .map_err(|s| s.message().to_owned())?
                        .into_inner();
                    let mut last = None;
                    while let Some(item) = stream.next().await {
                        last = Some(item.map_err(|s| s.message().to_owned())?);
                    }
                    match last {
                        Some(e) if e.phase() == lbaas::agent::v1::ApplyPhase::Active => Ok(()),
                        Some(e) if e.phase() == lbaas::agent::v1::ApplyPhase::Superseded => Ok(()),
                        Some(e) => Err(e.message),
                        None => Err("the apply stream ended without a result".to_owned()),
                    }
                };
                tokio::time::timeout(budget, outcome)
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_owned()))
                    .map_err(|why| {
                        format!(
                            "standby device {} (agent {}): {why}",
                            standby_device.id, standby_device.agent_id
                        )
                    })
            })
        });
        // The agent's Apply continues this request's trace.
        let mut apply = lbaas::server::traced(ApplyRequest {
            device_id: device.id.clone(),
            generation: request.generation,
            config: Some(config),
        });
        apply.set_timeout(budget);
        tokio::spawn(async move {
            let relay_tx = tx.clone();
            let agent_id = device.agent_id.clone();
            let relay = async move {
                match client.apply(apply).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        while let Some(mut item) = stream.next().await {
                            let active = item
                                .as_ref()
                                .is_ok_and(|e| e.phase() == lbaas::agent::v1::ApplyPhase::Active);
                            // ACTIVE_STANDBY: the pair is ACTIVE when the standby is too.
                            if active && let Some(done) = standby_done.take() {
                                let standby = done.await.unwrap_or_else(|e| {
                                    Err(format!("standby apply panicked: {e}"))
                                });
                                if let (Err(why), Ok(event)) = (standby, item.as_mut()) {
                                    event.set_phase(lbaas::agent::v1::ApplyPhase::Error);
                                    event.retryable = true;
                                    event.message = why;
                                }
                            }
                            if item
                                .as_ref()
                                .is_ok_and(|e| e.phase() == lbaas::agent::v1::ApplyPhase::Active)
                                && let Some(leave) = leave.take()
                            {
                                tokio::spawn(leave);
                            }
                            let relayed = item.map(|e| DeployEvent {
                                event: Some(Event::Apply(e)),
                            });
                            if relay_tx.send(relayed).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(status) => {
                        tracing::warn!(device = %device.id, agent = %device.agent_id, error = %status, "agent apply failed");
                        let _ = relay_tx
                            .send(Err(Status::unavailable(format!(
                                "agent {} unreachable: {}",
                                device.agent_id,
                                status.message()
                            ))))
                            .await;
                    }
                }
            };
            // Whatever the agent does (a frozen process keeps its socket open and says nothing),
            // the wait ends at the deadline, or as soon as the caller has gone.
            tokio::select! {
                () = relay => {}
                () = tx.closed() => {}
                () = tokio::time::sleep(budget) => {
                    tracing::warn!(agent = %agent_id, budget_ms = budget.as_millis() as u64, "agent apply did not finish in time");
                    let _ = tx
                        .send(Err(Status::deadline_exceeded(format!(
                            "agent {agent_id} did not finish the apply within {:.1}s",
                            budget.as_secs_f64()
                        ))))
                        .await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn undeploy(
        &self,
        request: Request<UndeployRequest>,
    ) -> Result<Response<UndeployResponse>, Status> {
        let budget = lbaas::server::grpc_timeout(request.metadata())
            .unwrap_or(MAX_APPLY_WAIT)
            .min(MAX_APPLY_WAIT);
        let id = request.into_inner().loadbalancer_id;
        let Some(binding) = binding::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
        else {
            return Ok(Response::new(UndeployResponse {
                was_deployed: false,
            }));
        };
        match self.route(&binding).await {
            Ok((device, address)) => {
                let mut client = self.agents.client(&address)?;
                let mut remove = lbaas::server::traced(RemoveRequest {
                    device_id: device.id.clone(),
                    loadbalancer_id: id.clone(),
                });
                remove.set_timeout(budget);
                tokio::time::timeout(budget, client.remove(remove))
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(format!(
                            "agent {} did not answer within {:.1}s",
                            device.agent_id,
                            budget.as_secs_f64()
                        ))
                    })?
                    .map_err(|s| {
                        Status::unavailable(format!(
                            "agent {} could not remove it: {}",
                            device.agent_id,
                            s.message()
                        ))
                    })?;
            }
            // The device is gone from the registry: nothing is left to remove it from.
            Err(SchedulerError::Unavailable(why)) if why.contains("no longer registered") => {}
            Err(e) => return Err(e.into()),
        }
        // An ACTIVE_STANDBY standby goes too (best effort: a lost standby host has nothing left).
        if let Some(standby) = crate::entity::standby::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
        {
            remove_from(&self.db, &self.agents, &standby.device_id, &id).await;
        }
        self.placer.release(binding).await?;
        tracing::info!(loadbalancer = %id, "undeployed");
        Ok(Response::new(UndeployResponse { was_deployed: true }))
    }

    async fn get_placement(
        &self,
        request: Request<GetPlacementRequest>,
    ) -> Result<Response<Placement>, Status> {
        Ok(Response::new(
            placement_of(&self.db, &request.into_inner().loadbalancer_id).await?,
        ))
    }

    async fn validate_placement(
        &self,
        request: Request<ValidatePlacementRequest>,
    ) -> Result<Response<ValidatePlacementResponse>, Status> {
        let r = request.into_inner();
        let ask = PlacementAsk {
            flavor: r.flavor,
            vip_network: r.vip_network,
            capabilities: r.capabilities,
            additional_vips: r
                .additional_vips
                .iter()
                .map(|v| (v.network.clone(), v.address.clone()))
                .collect(),
            availability_zone: r.availability_zone,
            ..Default::default()
        };
        let plan = self.placer.plan(&ask, None).await?;
        if !ask.additional_vips.is_empty()
            && self.placer.topology(&ask.flavor).await? == Topology::ActiveStandby
        {
            return Err(
                SchedulerError::FailedPrecondition(ACTIVE_STANDBY_EXTRA_VIPS.into()).into(),
            );
        }
        for (i, ((_, requested), range)) in ask
            .additional_vips
            .iter()
            .zip(&plan.extra_ranges)
            .enumerate()
        {
            if !requested.is_empty() {
                self.check_extra_vip(i, requested, range, &r.loadbalancer_id)
                    .await?;
            }
        }
        let placed = !r.loadbalancer_id.is_empty()
            && binding::Entity::find_by_id(&r.loadbalancer_id)
                .one(&self.db)
                .await
                .map_err(SchedulerError::from)?
                .is_some();
        if !placed {
            self.placer.check_pair_possible(&ask).await?;
            // A disabled zone keeps what it holds but takes nothing new.
            if !ask.availability_zone.is_empty()
                && availability_zone::Entity::find_by_id(&ask.availability_zone)
                    .one(&self.db)
                    .await
                    .map_err(SchedulerError::from)?
                    .is_some_and(|z| !z.enabled)
            {
                return Err(SchedulerError::Invalid(vec![(
                    "availability_zone".into(),
                    format!(
                        "availability zone {} is disabled: it takes no new load balancers",
                        ask.availability_zone
                    ),
                )])
                .into());
            }
        }
        if !r.vip_address.is_empty() {
            self.check_requested_vip(&r.vip_address, &plan, &r.loadbalancer_id)
                .await?;
        }
        if let Some(from) = &r.resize_from {
            self.check_resize(from, &ask, &r.loadbalancer_id).await?;
        }
        let device = if r.loadbalancer_id.is_empty() || r.resize_from.is_some() {
            None
        } else {
            binding::Entity::find_by_id(&r.loadbalancer_id)
                .one(&self.db)
                .await
                .map_err(SchedulerError::from)?
                .map(|b| b.device_id)
        };
        let unsupported = self.placer.unsupported(&plan.request, device.as_deref());
        Ok(Response::new(ValidatePlacementResponse { unsupported }))
    }

    type WatchHealthStream =
        Pin<Box<dyn Stream<Item = Result<lbaas::agent::v1::HealthReport, Status>> + Send>>;

    async fn watch_health(
        &self,
        _request: Request<lbaas::scheduler::v1::WatchHealthRequest>,
    ) -> Result<Response<Self::WatchHealthStream>, Status> {
        let (latest, mut reports) = self.health.subscribe();
        let health = self.health.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for report in latest {
                if tx.send(Ok((*report).clone())).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    next = reports.recv() => next,
                    () = tx.closed() => return,
                };
                let batch = match next {
                    Ok(report) => vec![report],
                    // Fell behind: the latest of each agent says all that matters.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        health.subscribe().0
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                for report in batch {
                    if tx.send(Ok((*report).clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchDisplacedStream =
        Pin<Box<dyn Stream<Item = Result<lbaas::scheduler::v1::Displaced, Status>> + Send>>;

    async fn watch_displaced(
        &self,
        _request: Request<lbaas::scheduler::v1::WatchDisplacedRequest>,
    ) -> Result<Response<Self::WatchDisplacedStream>, Status> {
        let mut later = self.failover.subscribe();
        let now = self.failover.displaced().await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for d in now {
                if tx.send(Ok(d)).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    next = later.recv() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(d) => {
                        if tx.send(Ok(d)).await.is_err() {
                            return;
                        }
                    }
                    // Displacements repeat every check while they last: skipping some loses nothing.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_networks(
        &self,
        _request: Request<lbaas::scheduler::v1::ListNetworksRequest>,
    ) -> Result<Response<lbaas::scheduler::v1::ListNetworksResponse>, Status> {
        Ok(Response::new(lbaas::scheduler::v1::ListNetworksResponse {
            networks: crate::devices::networks(&self.db).await?,
        }))
    }

    async fn list_service_types(
        &self,
        _request: Request<lbaas::scheduler::v1::ListServiceTypesRequest>,
    ) -> Result<Response<lbaas::scheduler::v1::ListServiceTypesResponse>, Status> {
        Ok(Response::new(
            lbaas::scheduler::v1::ListServiceTypesResponse {
                service_types: crate::devices::service_types(&self.db).await?,
            },
        ))
    }

    async fn list_availability_zones(
        &self,
        _request: Request<lbaas::scheduler::v1::ListAvailabilityZonesRequest>,
    ) -> Result<Response<lbaas::scheduler::v1::ListAvailabilityZonesResponse>, Status> {
        Ok(Response::new(
            lbaas::scheduler::v1::ListAvailabilityZonesResponse {
                availability_zones: crate::devices::availability_zones(&self.db).await?,
            },
        ))
    }
}

/// Best effort: takes a load balancer off a device it has left. A device that cannot be
/// reached (the usual reason for a failover) is skipped.
async fn remove_from(
    db: &DatabaseConnection,
    agents: &AgentClients,
    device_id: &str,
    loadbalancer_id: &str,
) {
    let Ok(Some(device)) = device::Entity::find_by_id(device_id).one(db).await else {
        return;
    };
    let Ok(Some(agent)) = agent::Entity::find_by_id(&device.agent_id).one(db).await else {
        return;
    };
    let Ok(mut client) = agents.client(&agent.address) else {
        return;
    };
    let request = RemoveRequest {
        device_id: device_id.to_owned(),
        loadbalancer_id: loadbalancer_id.to_owned(),
    };
    match tokio::time::timeout(Duration::from_secs(5), client.remove(request)).await {
        Ok(Ok(_)) => {
            tracing::info!(loadbalancer = %loadbalancer_id, device = %device_id, "removed from the device it left")
        }
        Ok(Err(e)) => {
            tracing::warn!(loadbalancer = %loadbalancer_id, device = %device_id, error = %e, "could not remove from the device it left")
        }
        Err(_) => {
            tracing::warn!(loadbalancer = %loadbalancer_id, device = %device_id, "removing from the device it left timed out")
        }
    }
}

/// Where a load balancer is placed: its binding, and its standby when it is ACTIVE_STANDBY.
pub async fn placement_of(db: &DatabaseConnection, id: &str) -> Result<Placement, SchedulerError> {
    let binding = binding::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| SchedulerError::NotFound(format!("placement of {id}")))?;
    let agent_id = device::Entity::find_by_id(&binding.device_id)
        .one(db)
        .await?
        .map(|d| d.agent_id)
        .unwrap_or_default();
    let mut found = placement(&binding, &agent_id);
    found.additional_vips = additional(&crate::placement::extra_vips_of(db, id).await?);
    if let Some(standby) = crate::entity::standby::Entity::find_by_id(id)
        .one(db)
        .await?
    {
        found.standby_agent_id = device::Entity::find_by_id(&standby.device_id)
            .one(db)
            .await?
            .map(|d| d.agent_id)
            .unwrap_or_default();
        found.standby_device_id = standby.device_id;
        found.topology = Topology::ActiveStandby as i32;
    }
    Ok(found)
}
