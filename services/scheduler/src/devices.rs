//! The admin (provider) API (devices, service types, networks, availability zones, agents,
//! placement explained) and the registry agents report to.
use std::sync::Arc;

use lbaas::scheduler::v1::{
    AgentInfo, AvailabilityZone, CandidateScore, CreateAvailabilityZoneRequest,
    CreateNetworkRequest, CreateServiceTypeRequest, DeleteAvailabilityZoneRequest,
    DeleteAvailabilityZoneResponse, DeleteDeviceRequest, DeleteDeviceResponse,
    DeleteNetworkRequest, DeleteNetworkResponse, DeleteServiceTypeRequest,
    DeleteServiceTypeResponse, Device, DeviceKind, DeviceState, ExplainPlacementRequest,
    Explanation, GetAvailabilityZoneRequest, GetDeviceRequest, GetServiceTypeRequest,
    HeartbeatRequest, HeartbeatResponse, ListAgentsRequest, ListAgentsResponse,
    ListAvailabilityZonesRequest, ListAvailabilityZonesResponse, ListDevicesRequest,
    ListDevicesResponse, ListNetworksRequest, ListNetworksResponse, ListServiceTypesRequest,
    ListServiceTypesResponse, Network, RegisterAgentRequest, RegisterAgentResponse,
    RegisterDeviceRequest, ServiceType, UpdateAvailabilityZoneRequest, WeigherValue,
    agent_registry_service_server::AgentRegistryService, device_service_server::DeviceService,
};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, ModelTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
    sea_query::OnConflict,
};
use tonic::{Request, Response, Status};

use crate::{
    entity::{agent, availability_zone, binding, device, network, port, service_type, text},
    error::SchedulerError,
    now_ms,
    placement::{PlacementAsk, Placer, device_loads},
    strategy::{PPM, build_strategy},
};

pub struct DeviceApi {
    pub db: DatabaseConnection,
    pub placer: Arc<Placer>,
    pub agent_timeout_ms: i64,
    pub failover: Arc<crate::failover::FailoverMonitor>,
}

fn state_name(state: i32) -> &'static str {
    match DeviceState::try_from(state) {
        Ok(DeviceState::Draining) => "DRAINING",
        Ok(DeviceState::Down) => "DOWN",
        _ => "ACTIVE",
    }
}

fn to_proto(model: device::Model, load: i64) -> Device {
    let state = match model.state.as_str() {
        "DRAINING" => DeviceState::Draining,
        "DOWN" => DeviceState::Down,
        _ => DeviceState::Active,
    };
    Device {
        id: model.id,
        driver: model.driver,
        agent_id: model.agent_id,
        capacity: model.capacity,
        load: i32::try_from(load).unwrap_or(i32::MAX),
        vip_cidr: model.vip_cidr,
        r#virtual: model.is_virtual,
        state: state as i32,
        labels: text::labels(&model.labels),
        networks: text::names(&model.networks),
        on_demand: model.on_demand,
        capabilities: text::names(&model.capabilities),
        ports: Default::default(),
    }
}

/// Fills in each device's ports (network -> address).
async fn with_ports(
    db: &DatabaseConnection,
    mut devices: Vec<Device>,
) -> Result<Vec<Device>, SchedulerError> {
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let ports = port::Entity::find()
        .filter(port::Column::DeviceId.is_in(ids))
        .all(db)
        .await?;
    for p in ports {
        if let Some(d) = devices.iter_mut().find(|d| d.id == p.device_id) {
            d.ports.insert(p.network, p.address);
        }
    }
    Ok(devices)
}

async fn one_with_ports(db: &DatabaseConnection, device: Device) -> Result<Device, Status> {
    Ok(with_ports(db, vec![device])
        .await?
        .pop()
        .unwrap_or_default())
}

/// Names of service types and networks: 1-64 letters, digits, '-' or '_'.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn validate_device(device: &Device) -> Result<(), SchedulerError> {
    let mut violations = Vec::new();
    if device.id.is_empty()
        || device.id.len() > 64
        || !device
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        violations.push((
            "device.id".into(),
            "must be 1-64 letters, digits or '-'".into(),
        ));
    }
    if device.driver.is_empty() {
        violations.push(("device.driver".into(), "is required".into()));
    }
    if device.agent_id.is_empty() {
        violations.push(("device.agent_id".into(), "is required".into()));
    }
    if device.capacity < 1 {
        violations.push(("device.capacity".into(), "must be at least 1".into()));
    }
    if device.vip_cidr.parse::<ipnet::IpNet>().is_err() {
        violations.push((
            "device.vip_cidr".into(),
            "must be a CIDR such as 127.0.10.0/24".into(),
        ));
    }
    for (k, v) in &device.labels {
        if k.contains('=') || k.contains('\n') || v.contains('\n') {
            violations.push((
                format!("device.labels[{k}]"),
                "keys hold no '=' and neither holds a newline".into(),
            ));
        }
    }
    for (i, n) in device.networks.iter().enumerate() {
        if !valid_name(n) {
            violations.push((
                format!("device.networks[{i}]"),
                "must be 1-64 letters, digits, '-' or '_'".into(),
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SchedulerError::Invalid(violations))
    }
}

/// Inserts or updates a device; a device coming back keeps its DRAINING state but leaves DOWN.
pub async fn upsert_device(db: &DatabaseConnection, device: &Device) -> Result<(), SchedulerError> {
    validate_device(device)?;
    let existing = device::Entity::find_by_id(&device.id).one(db).await?;
    let state = match existing.as_ref().map(|d| d.state.as_str()) {
        Some("DRAINING") => "DRAINING",
        _ => state_name(device.state),
    };
    let model = device::ActiveModel {
        id: Set(device.id.clone()),
        driver: Set(device.driver.clone()),
        agent_id: Set(device.agent_id.clone()),
        capacity: Set(device.capacity),
        vip_cidr: Set(device.vip_cidr.clone()),
        is_virtual: Set(device.r#virtual),
        state: Set(state.to_owned()),
        labels: Set(text::labels_text(&device.labels)),
        created_ms: Set(existing.as_ref().map_or_else(now_ms, |d| d.created_ms)),
        // Attachments only grow here: the scheduler records wiring as it happens.
        networks: Set({
            let known: Vec<String> = existing
                .as_ref()
                .map(|d| text::names(&d.networks))
                .unwrap_or_default();
            text::names_text(known.iter().chain(&device.networks))
        }),
        on_demand: Set(device.on_demand || existing.as_ref().is_some_and(|d| d.on_demand)),
        // A device registered without them (by hand, or before its agent said) keeps what is known.
        capabilities: Set(if device.capabilities.is_empty() {
            existing
                .as_ref()
                .map(|d| d.capabilities.clone())
                .unwrap_or_default()
        } else {
            device.capabilities.join("\n")
        }),
    };
    device::Entity::insert(model)
        .on_conflict(
            OnConflict::column(device::Column::Id)
                .update_columns([
                    device::Column::Driver,
                    device::Column::AgentId,
                    device::Column::Capacity,
                    device::Column::VipCidr,
                    device::Column::IsVirtual,
                    device::Column::State,
                    device::Column::Labels,
                    device::Column::Networks,
                    device::Column::OnDemand,
                    device::Column::Capabilities,
                ])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

async fn load_of(db: &DatabaseConnection, id: &str) -> Result<i64, SchedulerError> {
    Ok(binding::Entity::find()
        .filter(binding::Column::DeviceId.eq(id))
        .count(db)
        .await
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))?)
}

impl DeviceApi {
    /// The device with this id, or NOT_FOUND.
    async fn device(&self, id: &str) -> Result<device::Model, SchedulerError> {
        device::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {id}")))
    }

    /// The availability zone with this name, or NOT_FOUND.
    async fn zone_named(&self, name: &str) -> Result<availability_zone::Model, SchedulerError> {
        availability_zone::Entity::find_by_id(name)
            .one(&self.db)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(format!("availability zone {name}")))
    }
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn register_device(
        &self,
        request: Request<RegisterDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let device = request.into_inner().device.ok_or_else(|| {
            SchedulerError::Invalid(vec![("device".into(), "is required".into())])
        })?;
        upsert_device(&self.db, &device).await?;
        self.placer.refresh_device(&device.id).await?;
        let model = self.device(&device.id).await?;
        let load = load_of(&self.db, &model.id).await?;
        Ok(Response::new(
            one_with_ports(&self.db, to_proto(model, load)).await?,
        ))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let id = request.into_inner().id;
        let model = self.device(&id).await?;
        let load = load_of(&self.db, &id).await?;
        Ok(Response::new(
            one_with_ports(&self.db, to_proto(model, load)).await?,
        ))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let request = request.into_inner();
        let page_size = match u64::try_from(request.page_size) {
            Ok(0) => 100,
            Ok(n) => n.min(1000),
            Err(_) => {
                return Err(SchedulerError::Invalid(vec![(
                    "page_size".into(),
                    "must not be negative".into(),
                )])
                .into());
            }
        };
        let mut query = device::Entity::find().order_by_asc(device::Column::Id);
        if !request.agent_id.is_empty() {
            query = query.filter(device::Column::AgentId.eq(request.agent_id));
        }
        if !request.page_token.is_empty() {
            query = query.filter(device::Column::Id.gt(request.page_token));
        }
        let mut models = query
            .limit(page_size + 1)
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        let next_page_token = if models.len() as u64 > page_size {
            models.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            models.last().map(|m| m.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let loads = device_loads(&self.db).await?;
        let devices = models
            .into_iter()
            .map(|m| {
                let load = loads
                    .iter()
                    .find(|(id, _)| *id == m.id)
                    .map_or(0, |(_, n)| *n);
                to_proto(m, load)
            })
            .collect();
        let devices = with_ports(&self.db, devices).await?;
        Ok(Response::new(ListDevicesResponse {
            devices,
            next_page_token,
        }))
    }

    async fn update_device(
        &self,
        request: Request<lbaas::scheduler::v1::UpdateDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let request = request.into_inner();
        let patch = request.device.ok_or_else(|| {
            SchedulerError::Invalid(vec![("device".into(), "is required".into())])
        })?;
        let paths: Vec<String> = request
            .update_mask
            .map(|m| m.paths)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec!["capacity".into(), "labels".into(), "state".into()]);
        let model = self.device(&patch.id).await?;
        let mut merged = to_proto(model.clone(), 0);
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "capacity" => merged.capacity = patch.capacity,
                "labels" => merged.labels = patch.labels.clone(),
                "state" => merged.state = patch.state,
                other => violations.push((
                    "update_mask".to_owned(),
                    format!("device.{other} cannot be updated"),
                )),
            }
        }
        if DeviceState::try_from(merged.state).is_err()
            || merged.state == DeviceState::Unspecified as i32
        {
            violations.push((
                "device.state".to_owned(),
                "must be ACTIVE, DRAINING or DOWN".to_owned(),
            ));
        }
        if !violations.is_empty() {
            return Err(SchedulerError::Invalid(violations).into());
        }
        validate_device(&merged)?;
        let mut active: device::ActiveModel = model.into();
        active.capacity = Set(merged.capacity);
        active.labels = Set(text::labels_text(&merged.labels));
        active.state = Set(state_name(merged.state).to_owned());
        let updated = active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        self.placer.refresh_device(&updated.id).await?;
        let load = load_of(&self.db, &updated.id).await?;
        Ok(Response::new(to_proto(updated, load)))
    }

    async fn drain_device(
        &self,
        request: Request<lbaas::scheduler::v1::DrainDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let id = request.into_inner().id;
        let model = self.device(&id).await?;
        let mut active: device::ActiveModel = model.into();
        active.state = Set("DRAINING".to_owned());
        let updated = active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        self.placer.refresh_device(&id).await?;
        tracing::info!(device = %id, "draining: its load balancers move to other devices");
        let load = load_of(&self.db, &id).await?;
        Ok(Response::new(to_proto(updated, load)))
    }

    async fn delete_device(
        &self,
        request: Request<DeleteDeviceRequest>,
    ) -> Result<Response<DeleteDeviceResponse>, Status> {
        let id = request.into_inner().id;
        let model = self.device(&id).await?;
        let load = load_of(&self.db, &id).await?;
        if load > 0 {
            return Err(SchedulerError::FailedPrecondition(format!(
                "device {id} still hosts {load} load balancer(s); move them first"
            ))
            .into());
        }
        model.delete(&self.db).await.map_err(SchedulerError::from)?;
        // Its ports go with it: their addresses are free again.
        port::Entity::delete_many()
            .filter(port::Column::DeviceId.eq(&id))
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        self.placer.refresh_device(&id).await?;
        Ok(Response::new(DeleteDeviceResponse {}))
    }

    async fn create_service_type(
        &self,
        request: Request<CreateServiceTypeRequest>,
    ) -> Result<Response<ServiceType>, Status> {
        let mut t = request.into_inner().service_type.ok_or_else(|| {
            SchedulerError::Invalid(vec![("service_type".into(), "is required".into())])
        })?;
        if t.on_demand && t.on_demand_capacity == 0 {
            t.on_demand_capacity = 100;
        }
        validate_service_type(&t)?;
        let kind = match DeviceKind::try_from(t.device_kind) {
            Ok(DeviceKind::Physical) => "PHYSICAL",
            Ok(DeviceKind::Virtual) => "VIRTUAL",
            _ => "ANY",
        };
        let model = service_type::ActiveModel {
            name: Set(t.name.clone()),
            description: Set(t.description.clone()),
            driver: Set(t.driver.clone()),
            strategy: Set(t.strategy.clone()),
            required_labels: Set(text::labels_text(&t.required_labels)),
            device_kind: Set(kind.to_owned()),
            on_demand: Set(t.on_demand),
            on_demand_capacity: Set(t.on_demand_capacity),
            topology: Set(topology_name(t.topology).to_owned()),
            created_ms: Set(now_ms()),
        };
        created(
            service_type::Entity::insert(model).exec(&self.db).await,
            || format!("a service type named {:?} exists", t.name),
        )?;
        tracing::info!(service_type = %t.name, driver = %t.driver, strategy = %t.strategy, "service type created");
        Ok(Response::new(t))
    }

    async fn get_service_type(
        &self,
        request: Request<GetServiceTypeRequest>,
    ) -> Result<Response<ServiceType>, Status> {
        let name = request.into_inner().name;
        let model = service_type::Entity::find_by_id(&name)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("service type {name}")))?;
        Ok(Response::new(service_type_proto(model)))
    }

    async fn list_service_types(
        &self,
        _request: Request<ListServiceTypesRequest>,
    ) -> Result<Response<ListServiceTypesResponse>, Status> {
        let service_types = service_types(&self.db).await?;
        Ok(Response::new(ListServiceTypesResponse { service_types }))
    }

    async fn delete_service_type(
        &self,
        request: Request<DeleteServiceTypeRequest>,
    ) -> Result<Response<DeleteServiceTypeResponse>, Status> {
        let name = request.into_inner().name;
        if service_type::Entity::find_by_id(&name)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .is_none()
        {
            return Err(SchedulerError::NotFound(format!("service type {name}")).into());
        }
        // Load balancers placed for it would fail over (or resize) into a flavor that is gone.
        let in_use = binding::Entity::find()
            .filter(binding::Column::Flavor.eq(&name))
            .count(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        if in_use > 0 {
            return Err(SchedulerError::FailedPrecondition(format!(
                "service type {name} serves {in_use} load balancer(s); delete or resize them first"
            ))
            .into());
        }
        let deleted = service_type::Entity::delete_by_id(&name)
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        found(deleted, || format!("service type {name}"))?;
        Ok(Response::new(DeleteServiceTypeResponse {}))
    }

    async fn create_availability_zone(
        &self,
        request: Request<CreateAvailabilityZoneRequest>,
    ) -> Result<Response<AvailabilityZone>, Status> {
        let mut z = request.into_inner().availability_zone.ok_or_else(|| {
            SchedulerError::Invalid(vec![("availability_zone".into(), "is required".into())])
        })?;
        z.enabled = Some(z.enabled.unwrap_or(true));
        validate_zone(&z)?;
        let model = availability_zone::ActiveModel {
            name: Set(z.name.clone()),
            description: Set(z.description.clone()),
            labels: Set(text::labels_text(&z.labels)),
            enabled: Set(z.enabled.unwrap_or(true)),
            created_ms: Set(now_ms()),
        };
        created(
            availability_zone::Entity::insert(model)
                .exec(&self.db)
                .await,
            || format!("an availability zone named {:?} exists", z.name),
        )?;
        tracing::info!(zone = %z.name, labels = ?z.labels, "availability zone created");
        Ok(Response::new(z))
    }

    async fn get_availability_zone(
        &self,
        request: Request<GetAvailabilityZoneRequest>,
    ) -> Result<Response<AvailabilityZone>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(zone_proto(self.zone_named(&name).await?)))
    }

    async fn list_availability_zones(
        &self,
        _request: Request<ListAvailabilityZonesRequest>,
    ) -> Result<Response<ListAvailabilityZonesResponse>, Status> {
        Ok(Response::new(ListAvailabilityZonesResponse {
            availability_zones: availability_zones(&self.db).await?,
        }))
    }

    async fn update_availability_zone(
        &self,
        request: Request<UpdateAvailabilityZoneRequest>,
    ) -> Result<Response<AvailabilityZone>, Status> {
        let r = request.into_inner();
        let z = r.availability_zone.ok_or_else(|| {
            SchedulerError::Invalid(vec![("availability_zone".into(), "is required".into())])
        })?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut violations = Vec::new();
        if paths.is_empty() {
            violations.push((
                "update_mask".to_owned(),
                "name the fields to change: description, enabled".to_owned(),
            ));
        }
        for p in &paths {
            if !matches!(p.as_str(), "description" | "enabled") {
                violations.push((
                    format!("update_mask.paths[{p}]"),
                    "only description and enabled change; labels are fixed".to_owned(),
                ));
            }
        }
        if z.description.len() > 255 {
            violations.push((
                "availability_zone.description".to_owned(),
                "at most 255 bytes".to_owned(),
            ));
        }
        if !violations.is_empty() {
            return Err(SchedulerError::Invalid(violations).into());
        }
        let current = self.zone_named(&z.name).await?;
        let mut active: availability_zone::ActiveModel = current.into();
        for p in &paths {
            match p.as_str() {
                "description" => active.description = Set(z.description.clone()),
                _ => active.enabled = Set(z.enabled.unwrap_or(true)),
            }
        }
        let updated = active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        tracing::info!(zone = %updated.name, enabled = updated.enabled, "availability zone updated");
        Ok(Response::new(zone_proto(updated)))
    }

    async fn delete_availability_zone(
        &self,
        request: Request<DeleteAvailabilityZoneRequest>,
    ) -> Result<Response<DeleteAvailabilityZoneResponse>, Status> {
        let name = request.into_inner().name;
        self.zone_named(&name).await?;
        let in_use = binding::Entity::find()
            .filter(binding::Column::AvailabilityZone.eq(&name))
            .count(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        if in_use > 0 {
            return Err(SchedulerError::FailedPrecondition(format!(
                "availability zone {name} holds {in_use} load balancer(s); delete or move them first"
            ))
            .into());
        }
        let deleted = availability_zone::Entity::delete_by_id(&name)
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        found(deleted, || format!("availability zone {name}"))?;
        Ok(Response::new(DeleteAvailabilityZoneResponse {}))
    }

    async fn create_network(
        &self,
        request: Request<CreateNetworkRequest>,
    ) -> Result<Response<Network>, Status> {
        let n = request.into_inner().network.ok_or_else(|| {
            SchedulerError::Invalid(vec![("network".into(), "is required".into())])
        })?;
        let existing = network::Entity::find()
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        let checked = crate::addressing::validate_network(&n, &existing);
        let mut violations = match &checked {
            Ok(_) => Vec::new(),
            Err(v) => v.clone(),
        };
        if !valid_name(&n.name) {
            violations.insert(
                0,
                (
                    "network.name".to_owned(),
                    "must be 1-64 letters, digits, '-' or '_'".to_owned(),
                ),
            );
        }
        let (Ok(net), true) = (checked, violations.is_empty()) else {
            return Err(SchedulerError::Invalid(violations).into());
        };
        let model = network::ActiveModel {
            name: Set(net.name.clone()),
            cidr: Set(net.cidr.clone()),
            gateway: Set(net.gateway.clone()),
            allocation_start: Set(net.allocation_start.clone()),
            allocation_end: Set(net.allocation_end.clone()),
            created_ms: Set(now_ms()),
        };
        created(network::Entity::insert(model).exec(&self.db).await, || {
            format!("a network named {:?} exists", n.name)
        })?;
        Ok(Response::new(net))
    }

    async fn list_networks(
        &self,
        _request: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        let networks = networks(&self.db).await?;
        Ok(Response::new(ListNetworksResponse { networks }))
    }

    async fn delete_network(
        &self,
        request: Request<DeleteNetworkRequest>,
    ) -> Result<Response<DeleteNetworkResponse>, Status> {
        let name = request.into_inner().name;
        let attached: Vec<String> = device::Entity::find()
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .into_iter()
            .filter(|d| d.networks.lines().any(|n| n == name))
            .map(|d| d.id)
            .collect();
        if !attached.is_empty() {
            return Err(SchedulerError::FailedPrecondition(format!(
                "network {name} is attached to {}",
                attached.join(", ")
            ))
            .into());
        }
        let deleted = network::Entity::delete_by_id(&name)
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        found(deleted, || format!("network {name}"))?;
        Ok(Response::new(DeleteNetworkResponse {}))
    }

    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let now = now_ms();
        let devices = device::Entity::find()
            .order_by_asc(device::Column::Id)
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        let agents = agent::Entity::find()
            .order_by_asc(agent::Column::Id)
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .into_iter()
            .map(|a| AgentInfo {
                alive: a.last_heartbeat_ms >= now - self.agent_timeout_ms,
                silent_for_ms: (now - a.last_heartbeat_ms).max(0),
                device_ids: devices
                    .iter()
                    .filter(|d| d.agent_id == a.id)
                    .map(|d| d.id.clone())
                    .collect(),
                drivers: text::names(&a.drivers),
                last_heartbeat_ms: a.last_heartbeat_ms,
                address: a.address,
                id: a.id,
            })
            .collect();
        let (failover_held, failover_status) = self.failover.status();
        Ok(Response::new(ListAgentsResponse {
            agents,
            failover_held,
            failover_status,
        }))
    }

    async fn get_placement(
        &self,
        request: Request<lbaas::scheduler::v1::GetPlacementRequest>,
    ) -> Result<Response<lbaas::scheduler::v1::Placement>, Status> {
        Ok(Response::new(
            crate::deploy::placement_of(&self.db, &request.into_inner().loadbalancer_id).await?,
        ))
    }

    async fn explain_placement(
        &self,
        request: Request<ExplainPlacementRequest>,
    ) -> Result<Response<Explanation>, Status> {
        let r = request.into_inner();
        let ask = PlacementAsk {
            loadbalancer_id: if r.loadbalancer_id.is_empty() {
                "explain".into()
            } else {
                r.loadbalancer_id
            },
            project_id: r.project_id,
            vip_address: String::new(),
            flavor: r.flavor,
            vip_network: r.vip_network,
            member_addresses: r.member_addresses,
            strategy_override: r.strategy,
            capabilities: Vec::new(),
            additional_vips: Vec::new(),
            availability_zone: r.availability_zone,
        };
        let (explained, plan) = self.placer.explain(&ask).await?;
        Ok(Response::new(Explanation {
            strategy: explained.strategy,
            seed: i64::from_ne_bytes(self.placer.seed().to_ne_bytes()),
            candidates: explained
                .candidates
                .into_iter()
                .map(|c| CandidateScore {
                    device_id: c.device_id,
                    eligible: c.eligible,
                    rejected_by: c.rejected_by.to_owned(),
                    reason: c.reason,
                    score: c.score as f64 / PPM as f64,
                    weights: c
                        .terms
                        .into_iter()
                        .map(|(w, v, m)| WeigherValue {
                            weigher: w.to_owned(),
                            value: v as f64 / PPM as f64,
                            multiplier: m as f64,
                        })
                        .collect(),
                })
                .collect(),
            chosen_device_id: explained.chosen,
            why: explained.why,
            networks: plan.request.networks,
            availability_zone: plan
                .request
                .zone
                .as_ref()
                .map(|(name, _)| name.clone())
                .unwrap_or_default(),
            zone_labels: plan
                .request
                .zone
                .map(|(_, labels)| labels.into_iter().collect())
                .unwrap_or_default(),
        }))
    }
}

/// A delete by id; NOT_FOUND (naming `what`) when no row had that id.
fn found(
    deleted: sea_orm::DeleteResult,
    what: impl FnOnce() -> String,
) -> Result<(), SchedulerError> {
    if deleted.rows_affected == 0 {
        return Err(SchedulerError::NotFound(what()));
    }
    Ok(())
}

/// An insert's outcome; a clash on the primary key is ALREADY_EXISTS in the caller's words.
fn created<T>(
    result: Result<T, sea_orm::DbErr>,
    exists: impl FnOnce() -> String,
) -> Result<(), Status> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if text::is_unique_violation(&e) => Err(Status::already_exists(exists())),
        Err(e) => Err(SchedulerError::from(e).into()),
    }
}

fn validate_service_type(t: &ServiceType) -> Result<(), SchedulerError> {
    let mut violations = Vec::new();
    if !valid_name(&t.name) {
        violations.push((
            "service_type.name".to_owned(),
            "must be 1-64 letters, digits, '-' or '_'".to_owned(),
        ));
    }
    if t.description.len() > 255 {
        violations.push((
            "service_type.description".to_owned(),
            "at most 255 bytes".to_owned(),
        ));
    }
    if !t.driver.is_empty() && !valid_name(&t.driver) {
        violations.push((
            "service_type.driver".to_owned(),
            "must be a driver name such as haproxy".to_owned(),
        ));
    }
    if !t.strategy.is_empty()
        && let Err(why) = build_strategy(&t.strategy, 0)
    {
        violations.push(("service_type.strategy".to_owned(), why));
    }
    for (k, v) in &t.required_labels {
        if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
            violations.push((
                format!("service_type.required_labels[{k}]"),
                "keys are non-empty and hold no '='; neither holds a newline".to_owned(),
            ));
        }
    }
    if DeviceKind::try_from(t.device_kind).is_err() {
        violations.push((
            "service_type.device_kind".to_owned(),
            "must be ANY, PHYSICAL or VIRTUAL".to_owned(),
        ));
    }
    if lbaas::scheduler::v1::Topology::try_from(t.topology).is_err() {
        violations.push((
            "service_type.topology".to_owned(),
            "must be SINGLE or ACTIVE_STANDBY".to_owned(),
        ));
    }
    if t.on_demand {
        if t.driver.is_empty() {
            violations.push((
                "service_type.driver".to_owned(),
                "is required for on-demand devices".to_owned(),
            ));
        }
        if t.device_kind == DeviceKind::Physical as i32 {
            violations.push((
                "service_type.on_demand".to_owned(),
                "devices created on demand are virtual".to_owned(),
            ));
        }
        if !(1..=100_000).contains(&t.on_demand_capacity) {
            violations.push((
                "service_type.on_demand_capacity".to_owned(),
                "must be between 1 and 100000".to_owned(),
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SchedulerError::Invalid(violations))
    }
}

fn validate_zone(z: &AvailabilityZone) -> Result<(), SchedulerError> {
    let mut violations = Vec::new();
    if !valid_name(&z.name) {
        violations.push((
            "availability_zone.name".to_owned(),
            "must be 1-64 letters, digits, '-' or '_'".to_owned(),
        ));
    }
    if z.description.len() > 255 {
        violations.push((
            "availability_zone.description".to_owned(),
            "at most 255 bytes".to_owned(),
        ));
    }
    if z.labels.is_empty() {
        violations.push((
            "availability_zone.labels".to_owned(),
            "at least one label says which devices are in the zone".to_owned(),
        ));
    }
    for (k, v) in &z.labels {
        if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
            violations.push((
                format!("availability_zone.labels[{k}]"),
                "keys are non-empty and hold no '='; neither holds a newline".to_owned(),
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(SchedulerError::Invalid(violations))
    }
}

fn zone_proto(m: availability_zone::Model) -> AvailabilityZone {
    AvailabilityZone {
        labels: text::labels(&m.labels),
        name: m.name,
        description: m.description,
        enabled: Some(m.enabled),
    }
}

/// Every availability zone, by name.
pub(crate) async fn availability_zones(
    db: &DatabaseConnection,
) -> Result<Vec<AvailabilityZone>, SchedulerError> {
    Ok(availability_zone::Entity::find()
        .order_by_asc(availability_zone::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(zone_proto)
        .collect())
}

fn service_type_proto(m: service_type::Model) -> ServiceType {
    ServiceType {
        required_labels: text::labels(&m.required_labels),
        device_kind: match m.device_kind.as_str() {
            "PHYSICAL" => DeviceKind::Physical as i32,
            "VIRTUAL" => DeviceKind::Virtual as i32,
            _ => DeviceKind::Any as i32,
        },
        name: m.name,
        description: m.description,
        driver: m.driver,
        strategy: m.strategy,
        on_demand: m.on_demand,
        on_demand_capacity: m.on_demand_capacity,
        topology: topology_of(&m.topology) as i32,
    }
}

pub fn topology_name(t: i32) -> &'static str {
    match lbaas::scheduler::v1::Topology::try_from(t) {
        Ok(lbaas::scheduler::v1::Topology::ActiveStandby) => "ACTIVE_STANDBY",
        _ => "SINGLE",
    }
}

pub fn topology_of(name: &str) -> lbaas::scheduler::v1::Topology {
    if name == "ACTIVE_STANDBY" {
        lbaas::scheduler::v1::Topology::ActiveStandby
    } else {
        lbaas::scheduler::v1::Topology::Single
    }
}

pub struct AgentRegistryApi {
    pub db: DatabaseConnection,
    pub placer: Arc<Placer>,
    pub heartbeat_interval_ms: i64,
    pub health: std::sync::Arc<crate::health::HealthRelay>,
}

#[tonic::async_trait]
impl AgentRegistryService for AgentRegistryApi {
    async fn register_agent(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Vec::new();
        if request.agent_id.is_empty() {
            violations.push(("agent_id".to_owned(), "is required".to_owned()));
        }
        if !(request.address.starts_with("http://") || request.address.starts_with("https://")) {
            violations.push((
                "address".to_owned(),
                "must be an http:// or https:// URL".to_owned(),
            ));
        }
        for (i, d) in request.devices.iter().enumerate() {
            if d.agent_id != request.agent_id {
                violations.push((
                    format!("devices[{i}].agent_id"),
                    "must be the registering agent".to_owned(),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(SchedulerError::Invalid(violations).into());
        }
        let heard = now_ms();
        let model = agent::ActiveModel {
            id: Set(request.agent_id.clone()),
            address: Set(request.address.clone()),
            last_heartbeat_ms: Set(heard),
            drivers: Set(request.drivers.join("\n")),
        };
        agent::Entity::insert(model)
            .on_conflict(
                OnConflict::column(agent::Column::Id)
                    .update_columns([
                        agent::Column::Address,
                        agent::Column::LastHeartbeatMs,
                        agent::Column::Drivers,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        for device in &request.devices {
            upsert_device(&self.db, device).await?;
            self.placer.refresh_device(&device.id).await?;
        }
        self.placer.heartbeat(&request.agent_id, heard);
        self.placer
            .set_agent_drivers(&request.agent_id, request.drivers.clone());
        for d in &request.driver_capabilities {
            self.placer
                .set_driver_capabilities(&d.driver, d.capabilities.iter().cloned().collect());
        }
        self.health.follow(&request.agent_id, &request.address);
        tracing::info!(agent = %request.agent_id, address = %request.address, devices = request.devices.len(), "agent registered");
        let device_ids: Vec<String> = request.devices.iter().map(|d| d.id.clone()).collect();
        // A load balancer whose ACTIVE_STANDBY standby is one of these devices stays.
        let standing_by: std::collections::HashSet<String> = crate::entity::standby::Entity::find()
            .filter(crate::entity::standby::Column::DeviceId.is_in(device_ids.clone()))
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .into_iter()
            .map(|s| s.loadbalancer_id)
            .collect();
        let moved = binding::Entity::find()
            .filter(binding::Column::LoadbalancerId.is_in(request.loadbalancer_ids.clone()))
            .filter(binding::Column::DeviceId.is_not_in(device_ids))
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .into_iter()
            .filter(|b| !standing_by.contains(&b.loadbalancer_id))
            .map(|b| lbaas::scheduler::v1::Placement {
                loadbalancer_id: b.loadbalancer_id,
                device_id: b.device_id,
                agent_id: request.agent_id.clone(),
                vip_address: b.vip_address,
                strategy: b.strategy,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(RegisterAgentResponse {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            moved,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let id = request.into_inner().agent_id;
        let Some(model) = agent::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
        else {
            return Ok(Response::new(HeartbeatResponse { known: false }));
        };
        let heard = now_ms();
        self.placer.heartbeat(&id, heard);
        let mut active: agent::ActiveModel = model.into();
        active.last_heartbeat_ms = Set(heard);
        active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        Ok(Response::new(HeartbeatResponse { known: true }))
    }
}

/// Every network, by name.
pub(crate) async fn networks(db: &DatabaseConnection) -> Result<Vec<Network>, SchedulerError> {
    Ok(network::Entity::find()
        .order_by_asc(network::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|n| Network {
            name: n.name,
            cidr: n.cidr,
            gateway: n.gateway,
            allocation_start: n.allocation_start,
            allocation_end: n.allocation_end,
        })
        .collect())
}

/// Every service type, by name.
pub(crate) async fn service_types(
    db: &DatabaseConnection,
) -> Result<Vec<lbaas::scheduler::v1::ServiceType>, SchedulerError> {
    Ok(service_type::Entity::find()
        .order_by_asc(service_type::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(service_type_proto)
        .collect())
}
