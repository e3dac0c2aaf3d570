//! The admin device (provider) API and the registry agents report to.
use std::collections::HashMap;

use lbaas::scheduler::v1::{
    DeleteDeviceRequest, DeleteDeviceResponse, Device, DeviceState, GetDeviceRequest,
    HeartbeatRequest, HeartbeatResponse, ListDevicesRequest, ListDevicesResponse,
    RegisterAgentRequest, RegisterAgentResponse, RegisterDeviceRequest,
    agent_registry_service_server::AgentRegistryService, device_service_server::DeviceService,
};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, ModelTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
    sea_query::OnConflict,
};
use tonic::{Request, Response, Status};

use crate::{
    entity::{agent, binding, device},
    error::SchedulerError,
    now_ms,
    placement::device_loads,
};

pub struct DeviceApi {
    pub db: DatabaseConnection,
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
        labels: serde_labels(&model.labels),
    }
}

fn serde_labels(text: &str) -> HashMap<String, String> {
    // Labels are stored as "k=v" lines: simple, and readable in the database.
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn labels_text(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join("\n")
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
        labels: Set(labels_text(&device.labels)),
        created_ms: Set(existing.map_or_else(now_ms, |d| d.created_ms)),
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
        let model = device::Entity::find_by_id(&device.id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {}", device.id)))?;
        let load = load_of(&self.db, &model.id).await?;
        Ok(Response::new(to_proto(model, load)))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let id = request.into_inner().id;
        let model = device::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {id}")))?;
        let load = load_of(&self.db, &id).await?;
        Ok(Response::new(to_proto(model, load)))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let request = request.into_inner();
        let page_size = u64::try_from(request.page_size)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(100)
            .min(1000);
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
        let model = device::Entity::find_by_id(&patch.id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {}", patch.id)))?;
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
        active.labels = Set(labels_text(&merged.labels));
        active.state = Set(state_name(merged.state).to_owned());
        let updated = active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        let load = load_of(&self.db, &updated.id).await?;
        Ok(Response::new(to_proto(updated, load)))
    }

    async fn drain_device(
        &self,
        request: Request<lbaas::scheduler::v1::DrainDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let id = request.into_inner().id;
        let model = device::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {id}")))?;
        let mut active: device::ActiveModel = model.into();
        active.state = Set("DRAINING".to_owned());
        let updated = active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        tracing::info!(device = %id, "draining: its load balancers move to other devices");
        let load = load_of(&self.db, &id).await?;
        Ok(Response::new(to_proto(updated, load)))
    }

    async fn delete_device(
        &self,
        request: Request<DeleteDeviceRequest>,
    ) -> Result<Response<DeleteDeviceResponse>, Status> {
        let id = request.into_inner().id;
        let model = device::Entity::find_by_id(&id)
            .one(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .ok_or_else(|| SchedulerError::NotFound(format!("device {id}")))?;
        let load = load_of(&self.db, &id).await?;
        if load > 0 {
            return Err(SchedulerError::FailedPrecondition(format!(
                "device {id} still hosts {load} load balancer(s); move them first"
            ))
            .into());
        }
        model.delete(&self.db).await.map_err(SchedulerError::from)?;
        Ok(Response::new(DeleteDeviceResponse {}))
    }
}

pub struct AgentRegistryApi {
    pub db: DatabaseConnection,
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
        let model = agent::ActiveModel {
            id: Set(request.agent_id.clone()),
            address: Set(request.address.clone()),
            last_heartbeat_ms: Set(now_ms()),
        };
        agent::Entity::insert(model)
            .on_conflict(
                OnConflict::column(agent::Column::Id)
                    .update_columns([agent::Column::Address, agent::Column::LastHeartbeatMs])
                    .to_owned(),
            )
            .exec(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        for device in &request.devices {
            upsert_device(&self.db, device).await?;
        }
        self.health.follow(&request.agent_id, &request.address);
        tracing::info!(agent = %request.agent_id, address = %request.address, devices = request.devices.len(), "agent registered");
        let device_ids: Vec<String> = request.devices.iter().map(|d| d.id.clone()).collect();
        let moved = binding::Entity::find()
            .filter(binding::Column::LoadbalancerId.is_in(request.loadbalancer_ids.clone()))
            .filter(binding::Column::DeviceId.is_not_in(device_ids))
            .all(&self.db)
            .await
            .map_err(SchedulerError::from)?
            .into_iter()
            .map(|b| lbaas::scheduler::v1::Placement {
                loadbalancer_id: b.loadbalancer_id,
                device_id: b.device_id,
                agent_id: request.agent_id.clone(),
                vip_address: b.vip_address,
                strategy: b.strategy,
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
        let mut active: agent::ActiveModel = model.into();
        active.last_heartbeat_ms = Set(now_ms());
        active
            .update(&self.db)
            .await
            .map_err(SchedulerError::from)?;
        Ok(Response::new(HeartbeatResponse { known: true }))
    }
}
