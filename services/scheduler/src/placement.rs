//! Placement: binds a load balancer to a device chosen by the configured strategy among live
//! devices with room, and gives it a VIP from the device's range.
use std::{collections::HashSet, net::IpAddr, sync::Arc};

use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _,
    QueryFilter as _, QuerySelect as _, Set,
};

use crate::{
    entity::{agent, binding, device},
    error::SchedulerError,
    now_ms,
    strategy::{Candidate, PlacementRequest, PlacementStrategy},
};

pub struct Placer {
    db: DatabaseConnection,
    strategy: Arc<dyn PlacementStrategy>,
    /// Agents silent for longer than this are not placed on.
    agent_timeout_ms: i64,
    /// One placement at a time in this process, so two never take the last slot of a device.
    lock: tokio::sync::Mutex<()>,
}

/// What a load balancer asks of its placement.
pub struct PlacementAsk<'a> {
    pub loadbalancer_id: &'a str,
    pub project_id: &'a str,
    /// A VIP the tenant chose; empty to allocate one.
    pub vip_address: &'a str,
    /// Empty for any driver; otherwise the driver the flavor needs.
    pub flavor: &'a str,
}

impl Placer {
    pub fn new(
        db: DatabaseConnection,
        strategy: Arc<dyn PlacementStrategy>,
        agent_timeout_ms: i64,
    ) -> Self {
        Self {
            db,
            strategy,
            agent_timeout_ms,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The existing binding of the load balancer, or a new one.
    pub async fn place(&self, ask: &PlacementAsk<'_>) -> Result<binding::Model, SchedulerError> {
        if let Some(existing) = binding::Entity::find_by_id(ask.loadbalancer_id)
            .one(&self.db)
            .await?
        {
            return Ok(existing);
        }
        let _guard = self.lock.lock().await;
        if let Some(existing) = binding::Entity::find_by_id(ask.loadbalancer_id)
            .one(&self.db)
            .await?
        {
            return Ok(existing);
        }
        let device = self.choose(ask, None).await?;
        let vip = self.allocate_vip(&device, ask.vip_address).await?;
        let model = binding::ActiveModel {
            loadbalancer_id: Set(ask.loadbalancer_id.to_owned()),
            device_id: Set(device.id.clone()),
            project_id: Set(ask.project_id.to_owned()),
            vip_address: Set(vip),
            strategy: Set(self.strategy.name().to_owned()),
            created_ms: Set(now_ms()),
        };
        let bound = model.insert(&self.db).await?;
        tracing::info!(loadbalancer = %bound.loadbalancer_id, device = %bound.device_id, vip = %bound.vip_address, strategy = self.strategy.name(), "placed");
        Ok(bound)
    }

    /// Failover: moves the load balancer to another device that can take it, keeping its VIP, and
    /// returns the device it left. With no other device it stays where it is (and is redeployed).
    pub async fn replace(
        &self,
        ask: &PlacementAsk<'_>,
    ) -> Result<(binding::Model, Option<String>), SchedulerError> {
        let _guard = self.lock.lock().await;
        let Some(existing) = binding::Entity::find_by_id(ask.loadbalancer_id)
            .one(&self.db)
            .await?
        else {
            drop(_guard);
            return Ok((self.place(ask).await?, None));
        };
        let device = match self.choose(ask, Some(&existing.device_id)).await {
            Ok(d) => d,
            // Leaving a DOWN or draining device needs somewhere else to go; staying is only a
            // choice when the device still takes load.
            Err(SchedulerError::NoCapacity(why))
                if !self.takes_load(&existing.device_id).await? =>
            {
                return Err(SchedulerError::NoCapacity(why));
            }
            Err(SchedulerError::NoCapacity(why)) => {
                tracing::info!(loadbalancer = %existing.loadbalancer_id, device = %existing.device_id, %why, "failover: no other device, redeploying in place");
                return Ok((existing, None));
            }
            Err(e) => return Err(e),
        };
        let old = existing.device_id.clone();
        let mut active: binding::ActiveModel = existing.into();
        active.device_id = Set(device.id.clone());
        active.strategy = Set(self.strategy.name().to_owned());
        let moved = active.update(&self.db).await?;
        tracing::info!(loadbalancer = %moved.loadbalancer_id, from = %old, to = %moved.device_id, "failover: re-placed");
        Ok((moved, Some(old)))
    }

    async fn takes_load(&self, device_id: &str) -> Result<bool, SchedulerError> {
        Ok(device::Entity::find_by_id(device_id)
            .one(&self.db)
            .await?
            .is_some_and(|d| d.state == "ACTIVE"))
    }

    /// The device the strategy prefers among live devices with room, leaving out `exclude`.
    async fn choose(
        &self,
        ask: &PlacementAsk<'_>,
        exclude: Option<&str>,
    ) -> Result<device::Model, SchedulerError> {
        let live_after = now_ms() - self.agent_timeout_ms;
        let live_agents: HashSet<String> = agent::Entity::find()
            .filter(agent::Column::LastHeartbeatMs.gte(live_after))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        let devices = device::Entity::find()
            .filter(device::Column::State.eq("ACTIVE"))
            .all(&self.db)
            .await?;
        let loads = device_loads(&self.db).await?;
        let mut candidates = Vec::new();
        let mut rejected = Vec::new();
        for d in &devices {
            let load = loads
                .iter()
                .find(|(id, _)| *id == d.id)
                .map_or(0, |(_, n)| *n);
            if Some(d.id.as_str()) == exclude {
                rejected.push(format!("{}: the device being left", d.id));
            } else if !live_agents.contains(&d.agent_id) {
                rejected.push(format!("{}: agent {} not heard from", d.id, d.agent_id));
            } else if !ask.flavor.is_empty() && d.driver != ask.flavor {
                rejected.push(format!(
                    "{}: driver {} is not {}",
                    d.id, d.driver, ask.flavor
                ));
            } else if load >= i64::from(d.capacity) {
                rejected.push(format!("{}: full ({load}/{})", d.id, d.capacity));
            } else {
                candidates.push(Candidate {
                    device_id: d.id.clone(),
                    driver: d.driver.clone(),
                    capacity: i64::from(d.capacity),
                    load,
                });
            }
        }
        let request = PlacementRequest {
            loadbalancer_id: ask.loadbalancer_id.to_owned(),
            project_id: ask.project_id.to_owned(),
        };
        let ranked = self.strategy.rank(&request, &candidates);
        let chosen = ranked
            .first()
            .and_then(|&i| candidates.get(i))
            .ok_or_else(|| {
                SchedulerError::NoCapacity(if rejected.is_empty() {
                    "no devices are registered".into()
                } else {
                    rejected.join("; ")
                })
            })?;
        devices
            .into_iter()
            .find(|d| d.id == chosen.device_id)
            .ok_or_else(|| SchedulerError::NoCapacity("chosen device vanished".into()))
    }

    async fn allocate_vip(
        &self,
        device: &device::Model,
        requested: &str,
    ) -> Result<String, SchedulerError> {
        let used: HashSet<String> = binding::Entity::find()
            .select_only()
            .column(binding::Column::VipAddress)
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        if !requested.is_empty() {
            let ip: IpAddr = requested.parse().map_err(|_| {
                SchedulerError::Invalid(vec![(
                    "config.vip_address".into(),
                    "not an IP address".into(),
                )])
            })?;
            let ip = ip.to_string();
            if used.contains(&ip) {
                return Err(SchedulerError::FailedPrecondition(format!(
                    "VIP {ip} is already in use"
                )));
            }
            return Ok(ip);
        }
        let net: ipnet::IpNet = device.vip_cidr.parse().map_err(|_| {
            SchedulerError::NoCapacity(format!("device {} has no valid VIP range", device.id))
        })?;
        net.hosts()
            .map(|ip| ip.to_string())
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| {
                SchedulerError::NoCapacity(format!(
                    "VIP range {} of {} is exhausted",
                    device.vip_cidr, device.id
                ))
            })
    }
}

/// How many load balancers each device hosts.
pub async fn device_loads(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, SchedulerError> {
    Ok(binding::Entity::find()
        .select_only()
        .column(binding::Column::DeviceId)
        .column_as(binding::Column::LoadbalancerId.count(), "load")
        .group_by(binding::Column::DeviceId)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?)
}
