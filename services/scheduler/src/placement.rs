//! Placement: resolves the service type, asks its strategy for a device over the in-memory fleet,
//! wires the device to the networks the load balancer needs, creates a device on demand when the
//! service type allows it and nothing fits, and commits the binding with a VIP.
//!
//! The fleet is a cache. The commit is the truth: it locks the chosen device's row (SELECT ... FOR
//! UPDATE on PostgreSQL; SQLite transactions take the write lock up front), counts its bindings
//! and refuses when the device is full, so neither concurrent placements nor several scheduler
//! replicas on one database ever over-commit a device. A refused commit refreshes the device and
//! chooses again.
use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use lbaas::{
    agent::v1::{AttachNetworkRequest, CreateDeviceRequest},
    scheduler::v1::Topology,
};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, ModelTrait as _,
    PaginatorTrait as _, QueryFilter as _, QuerySelect as _, Set, TransactionTrait as _,
};

use crate::{
    addressing::Range,
    deploy::AgentClients,
    entity::{
        agent, availability_zone, binding, device, extra_vip, network, port, service_type, standby,
        text,
    },
    error::SchedulerError,
    now_ms,
    strategy::{
        DeviceKind, DeviceState, DeviceView, Explained, Fleet, PlacementRequest, PlacementStrategy,
        build_strategy, nothing_fits,
    },
};

/// How many times a placement chooses again after losing a race for a device.
const ATTEMPTS: usize = 8;

pub struct Placer {
    db: DatabaseConnection,
    default_strategy: String,
    seed: u64,
    /// Agents silent for longer than this are not placed on.
    agent_timeout_ms: i64,
    fleet: RwLock<Fleet>,
    /// Bumped by every change this process makes to the fleet.
    changes: std::sync::atomic::AtomicU64,
    agents: Arc<AgentClients>,
    /// One on-demand device creation at a time in this process.
    creating: tokio::sync::Mutex<()>,
    /// SQLite takes one writer at a time anyway: queueing here is cheaper than its busy retries.
    sqlite_writer: Option<tokio::sync::Mutex<()>>,
}

/// What a load balancer asks of its placement.
#[derive(Debug, Clone, Default)]
pub struct PlacementAsk {
    pub loadbalancer_id: String,
    pub project_id: String,
    /// A VIP the tenant chose; empty to allocate one.
    pub vip_address: String,
    /// The service type; empty for the default.
    pub flavor: String,
    /// The network to allocate the VIP from; empty for the device's range.
    pub vip_network: String,
    /// Where the members are: the networks holding them count for network affinity and wiring.
    pub member_addresses: Vec<String>,
    /// Try this strategy instead of the service type's (explain only).
    pub strategy_override: String,
    /// What the load balancer uses (`lbaas::capability` names): only devices offering all of it.
    pub capabilities: Vec<String>,
    /// Additional VIPs: (network, the address asked for or empty), each from its own network.
    pub additional_vips: Vec<(String, String)>,
    /// The availability zone; empty for any device.
    pub availability_zone: String,
}

/// A service type resolved for one placement.
pub struct Plan {
    pub strategy: Arc<dyn PlacementStrategy>,
    pub request: PlacementRequest,
    /// Every network the load balancer uses, by name.
    pub networks: BTreeMap<String, network::Model>,
    /// The VIP network's range; `None` for the chosen device's own VIP range.
    pub vip_range: Option<Range>,
    /// The range of each additional VIP's network, in the order asked for.
    pub extra_ranges: Vec<Range>,
    pub on_demand: Option<OnDemand>,
}

/// How to create a device when nothing fits.
pub struct OnDemand {
    pub service_type: String,
    pub driver: String,
    pub capacity: i32,
    pub labels: BTreeMap<String, String>,
    /// The availability zone asked for: the device is created on an agent that already hosts a
    /// device of the zone (the agent's host is in it).
    pub zone: Option<(String, BTreeMap<String, String>)>,
}

enum Commit {
    Done(binding::Model),
    /// The device filled up (or left ACTIVE) since the fleet last saw it.
    Lost,
}

static PLACEMENTS: std::sync::LazyLock<Option<prometheus::IntCounterVec>> =
    std::sync::LazyLock::new(|| {
        lbaas::server::metrics::counter_vec(
            "lbaas_placements_total",
            "Placement requests: a new binding, the existing one, or a failure",
            &["result"],
        )
    });
static PLACEMENT_DURATION: std::sync::LazyLock<Option<prometheus::HistogramVec>> =
    std::sync::LazyLock::new(|| {
        lbaas::server::metrics::histogram_vec(
            "lbaas_placement_duration_seconds",
            "Time to bind a load balancer to a device (choice, wiring and commit)",
            &["result"],
        )
    });
static DEVICE_LOAD: std::sync::LazyLock<Option<prometheus::IntGaugeVec>> =
    std::sync::LazyLock::new(|| {
        lbaas::server::metrics::gauge_vec(
            "lbaas_device_load",
            "Load balancers bound to each device",
            &["device", "driver"],
        )
    });
static DEVICE_CAPACITY: std::sync::LazyLock<Option<prometheus::IntGaugeVec>> =
    std::sync::LazyLock::new(|| {
        lbaas::server::metrics::gauge_vec(
            "lbaas_device_capacity",
            "Load balancers each device can host",
            &["device", "driver"],
        )
    });

pub fn view_of(d: &device::Model, load: i64) -> DeviceView {
    DeviceView {
        id: Arc::from(d.id.as_str()),
        driver: d.driver.clone(),
        agent_id: d.agent_id.clone(),
        capacity: i64::from(d.capacity),
        load,
        state: DeviceState::parse(&d.state),
        is_virtual: d.is_virtual,
        labels: text::labels(&d.labels),
        networks: text::names(&d.networks),
        capabilities: d
            .capabilities
            .lines()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        vip_cidr: d.vip_cidr.parse().ok(),
    }
}

impl Placer {
    pub fn new(
        db: DatabaseConnection,
        default_strategy: String,
        seed: u64,
        agent_timeout_ms: i64,
        agents: Arc<AgentClients>,
    ) -> Self {
        let sqlite_writer = (db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite)
            .then(|| tokio::sync::Mutex::new(()));
        Self {
            sqlite_writer,
            db,
            default_strategy,
            seed,
            agent_timeout_ms,
            fleet: RwLock::new(Fleet::default()),
            changes: std::sync::atomic::AtomicU64::new(0),
            agents,
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// SQLite's one writer, taken here (nothing on PostgreSQL).
    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A read of the fleet; a poisoned lock (a panic elsewhere) is still a consistent fleet.
    fn fleet(&self) -> std::sync::RwLockReadGuard<'_, Fleet> {
        self.fleet.read().unwrap_or_else(|p| p.into_inner())
    }

    fn fleet_mut(&self) -> std::sync::RwLockWriteGuard<'_, Fleet> {
        self.fleet.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The fleet, to change what this process just wrote to the database. A refresh that read the
    /// database before this change will not overwrite it.
    fn fleet_change(&self) -> std::sync::RwLockWriteGuard<'_, Fleet> {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.fleet_mut()
    }

    /// Rebuilds the fleet from the database: every device with its load, every agent's last
    /// heartbeat, every project's load balancers per device. Run at start and periodically, so
    /// that what other replicas did shows up.
    pub async fn refresh(&self) -> Result<(), SchedulerError> {
        // A change made here while the database was read would be lost by the swap: read again
        // (a few times; then swap anyway, the next refresh catches up).
        for _ in 0..3 {
            let before = self.changes.load(std::sync::atomic::Ordering::SeqCst);
            let fleet = self.read_fleet().await?;
            let mut current = self.fleet_mut();
            if self.changes.load(std::sync::atomic::Ordering::SeqCst) == before {
                Self::swap(&mut current, fleet);
                drop(current);
                self.export_devices();
                return Ok(());
            }
        }
        let fleet = self.read_fleet().await?;
        Self::swap(&mut self.fleet_mut(), fleet);
        self.export_devices();
        Ok(())
    }

    /// Installs a fleet read from the database, keeping heartbeats this process saw since.
    fn swap(current: &mut Fleet, mut fleet: Fleet) {
        fleet.driver_capabilities_from(current);
        for agent in fleet.agents() {
            if let Some(t) = current.last_heartbeat(&agent) {
                fleet.heartbeat(&agent, t);
            }
        }
        *current = fleet;
    }

    async fn read_fleet(&self) -> Result<Fleet, SchedulerError> {
        let devices = device::Entity::find().all(&self.db).await?;
        let agents = agent::Entity::find().all(&self.db).await?;
        let per_project: Vec<(String, String, i64)> = binding::Entity::find()
            .select_only()
            .column(binding::Column::ProjectId)
            .column(binding::Column::DeviceId)
            .column_as(binding::Column::LoadbalancerId.count(), "n")
            .group_by(binding::Column::ProjectId)
            .group_by(binding::Column::DeviceId)
            .into_tuple()
            .all(&self.db)
            .await?;
        let standbys = standby_loads(&self.db).await?;
        let mut loads: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (_, d, n) in &per_project {
            *loads.entry(d.as_str()).or_default() += n;
        }
        // A standby takes a device's room as its primary does.
        for (d, n) in &standbys {
            *loads.entry(d.as_str()).or_default() += n;
        }
        let mut fleet = Fleet::default();
        for a in &agents {
            fleet.heartbeat(&a.id, a.last_heartbeat_ms);
            fleet.set_agent_drivers(&a.id, text::names(&a.drivers));
        }
        for d in &devices {
            fleet.upsert(view_of(d, loads.get(d.id.as_str()).copied().unwrap_or(0)));
        }
        fleet.set_projects(
            per_project
                .iter()
                .map(|(p, d, n)| (p.clone(), d.clone(), u32::try_from(*n).unwrap_or(u32::MAX))),
        );
        Ok(fleet)
    }

    /// Re-reads one device (after a change to it or a lost commit).
    pub async fn refresh_device(&self, id: &str) -> Result<(), SchedulerError> {
        let model = device::Entity::find_by_id(id).one(&self.db).await?;
        match model {
            None => self.fleet_change().remove(id),
            Some(d) => {
                let load = device_load(&self.db, id).await?;
                let view = view_of(&d, i64::try_from(load).unwrap_or(i64::MAX));
                self.fleet_change().upsert(view);
            }
        }
        Ok(())
    }

    /// An agent was heard from.
    pub fn heartbeat(&self, agent: &str, at_ms: i64) {
        self.fleet_mut().heartbeat(agent, at_ms);
    }

    pub fn set_agent_drivers(&self, agent: &str, drivers: Vec<String>) {
        self.fleet_change().set_agent_drivers(agent, drivers);
    }

    pub fn set_driver_capabilities(
        &self,
        driver: &str,
        capabilities: std::collections::BTreeSet<String>,
    ) {
        self.fleet_change()
            .set_driver_capabilities(driver, capabilities);
    }

    /// Resolves the service type and the networks of an ask.
    pub async fn plan(
        &self,
        ask: &PlacementAsk,
        exclude: Option<String>,
    ) -> Result<Plan, SchedulerError> {
        let service_type = if ask.flavor.is_empty() {
            None
        } else {
            Some(
                service_type::Entity::find_by_id(&ask.flavor)
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| {
                        SchedulerError::Invalid(vec![(
                            "flavor".into(),
                            format!("no service type is named {:?}", ask.flavor),
                        )])
                    })?,
            )
        };
        let spec = match (&ask.strategy_override, &service_type) {
            (o, _) if !o.is_empty() => o.clone(),
            (_, Some(t)) if !t.strategy.is_empty() => t.strategy.clone(),
            _ => self.default_strategy.clone(),
        };
        let strategy = build_strategy(&spec, self.seed)
            .map_err(|why| SchedulerError::Invalid(vec![("strategy".into(), why)]))?;
        let known: Vec<network::Model> = network::Entity::find().all(&self.db).await?;
        let mut names = Vec::new();
        let mut networks = BTreeMap::new();
        let mut vip_range = None;
        if !ask.vip_network.is_empty() {
            let n = known
                .iter()
                .find(|n| n.name == ask.vip_network)
                .ok_or_else(|| {
                    SchedulerError::Invalid(vec![(
                        "vip_network".into(),
                        format!("no network is named {:?}", ask.vip_network),
                    )])
                })?;
            names.push(n.name.clone());
            networks.insert(n.name.clone(), n.clone());
            vip_range = Some(Range::of_network(n).map_err(SchedulerError::NoCapacity)?);
        }
        let mut extra_ranges = Vec::new();
        for (i, (name, _)) in ask.additional_vips.iter().enumerate() {
            let field = format!("additional_vips[{i}].network");
            if ask.vip_network.is_empty() {
                return Err(SchedulerError::Invalid(vec![(
                    field,
                    "additional VIPs need a VIP network (vip_network) as well".into(),
                )]));
            }
            if *name == ask.vip_network || ask.additional_vips[..i].iter().any(|(n, _)| n == name) {
                return Err(SchedulerError::Invalid(vec![(
                    field,
                    format!("the load balancer has a VIP on network {name:?} already"),
                )]));
            }
            let n = known.iter().find(|n| n.name == *name).ok_or_else(|| {
                SchedulerError::Invalid(vec![(
                    field.clone(),
                    format!("no network is named {name:?}"),
                )])
            })?;
            names.push(n.name.clone());
            networks.insert(n.name.clone(), n.clone());
            extra_ranges.push(Range::of_network(n).map_err(SchedulerError::NoCapacity)?);
        }
        for address in &ask.member_addresses {
            let Ok(ip) = address.parse::<IpAddr>() else {
                continue;
            };
            for n in &known {
                if n.cidr
                    .parse::<ipnet::IpNet>()
                    .is_ok_and(|net| net.contains(&ip))
                    && !networks.contains_key(&n.name)
                {
                    names.push(n.name.clone());
                    networks.insert(n.name.clone(), n.clone());
                }
            }
        }
        let zone = self.zone(ask, service_type.as_ref()).await?;
        let request = PlacementRequest {
            zone: zone.clone(),
            loadbalancer_id: ask.loadbalancer_id.clone(),
            project_id: ask.project_id.clone(),
            driver: service_type
                .as_ref()
                .map(|t| t.driver.clone())
                .filter(|d| !d.is_empty()),
            required_labels: service_type
                .as_ref()
                .map(|t| text::labels(&t.required_labels))
                .unwrap_or_default(),
            kind: match service_type.as_ref().map(|t| t.device_kind.as_str()) {
                Some("PHYSICAL") => DeviceKind::Physical,
                Some("VIRTUAL") => DeviceKind::Virtual,
                _ => DeviceKind::Any,
            },
            networks: names,
            exclude,
            exclude_agent: None,
            live_after_ms: now_ms() - self.agent_timeout_ms,
            capabilities: ask.capabilities.clone(),
            vip_address: if vip_range.is_none() {
                ask.vip_address.parse().ok()
            } else {
                None
            },
        };
        let on_demand = service_type.filter(|t| t.on_demand).map(|t| OnDemand {
            labels: {
                let mut labels: BTreeMap<String, String> = text::labels(&t.required_labels);
                if let Some((_, zone_labels)) = &zone {
                    labels.extend(zone_labels.clone());
                }
                labels
            },
            zone: zone
                .as_ref()
                .map(|(name, labels)| (name.clone(), labels.clone())),
            service_type: t.name,
            driver: t.driver,
            capacity: t.on_demand_capacity,
        });
        Ok(Plan {
            strategy,
            request,
            networks,
            vip_range,
            extra_ranges,
            on_demand,
        })
    }

    /// The availability zone an ask names, with its labels: INVALID_ARGUMENT (`availability_zone`)
    /// when no zone has that name or its labels contradict the service type's.
    async fn zone(
        &self,
        ask: &PlacementAsk,
        service_type: Option<&service_type::Model>,
    ) -> Result<Option<(String, BTreeMap<String, String>)>, SchedulerError> {
        if ask.availability_zone.is_empty() {
            return Ok(None);
        }
        let zone = availability_zone::Entity::find_by_id(&ask.availability_zone)
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                SchedulerError::Invalid(vec![(
                    "availability_zone".into(),
                    format!("no availability zone is named {:?}", ask.availability_zone),
                )])
            })?;
        let labels: BTreeMap<String, String> = text::labels(&zone.labels);
        if let Some(t) = service_type {
            let required: BTreeMap<String, String> = text::labels(&t.required_labels);
            for (k, v) in &labels {
                if let Some(want) = required.get(k)
                    && want != v
                {
                    return Err(SchedulerError::Invalid(vec![(
                        "availability_zone".into(),
                        format!(
                            "zone {} holds devices labelled {k}={v}; flavor {} needs {k}={want}",
                            zone.name, t.name
                        ),
                    )]));
                }
            }
        }
        Ok(Some((zone.name, labels)))
    }

    /// A dry run: every device scored, nothing bound.
    pub async fn explain(&self, ask: &PlacementAsk) -> Result<(Explained, Plan), SchedulerError> {
        let plan = self.plan(ask, None).await?;
        let explained = plan.strategy.explain(&self.fleet(), &plan.request);
        Ok((explained, plan))
    }

    fn choose(&self, plan: &Plan) -> Option<String> {
        plan.strategy
            .choose(&self.fleet(), &plan.request)
            .map(|id| id.to_string())
    }

    fn why_nothing_fits(&self, plan: &Plan) -> String {
        let explained = plan.strategy.explain(&self.fleet(), &plan.request);
        let refused: Vec<_> = explained
            .candidates
            .into_iter()
            .filter(|c| !c.eligible)
            .collect();
        nothing_fits(&refused)
    }

    /// The capabilities in `request` that the device (`Some`) or, for `None`, every device the
    /// service type allows (whatever its load) lacks: for `None`, those of the device closest to
    /// offering everything; empty when some device offers all, or when there are no devices.
    pub fn unsupported(&self, request: &PlacementRequest, device: Option<&str>) -> Vec<String> {
        let fleet = self.fleet();
        let lacks = |d: &crate::strategy::fleet::DeviceView| -> Vec<String> {
            request
                .capabilities
                .iter()
                .filter(|c| !d.capabilities.contains(*c))
                .cloned()
                .collect()
        };
        if let Some(id) = device {
            return fleet.get(id).map(lacks).unwrap_or_default();
        }
        fleet
            .ids()
            .iter()
            .filter_map(|id| fleet.get(id))
            .filter(|d| {
                request
                    .driver
                    .as_ref()
                    .is_none_or(|driver| d.driver == *driver)
            })
            .filter(|d| {
                request
                    .required_labels
                    .iter()
                    .chain(request.zone.iter().flat_map(|(_, labels)| labels.iter()))
                    .all(|(k, v)| d.labels.get(k) == Some(v))
            })
            .map(lacks)
            .min_by_key(Vec::len)
            .unwrap_or_default()
    }

    /// The existing binding of the load balancer, or a new one (counted and timed).
    pub async fn place(&self, ask: &PlacementAsk) -> Result<binding::Model, SchedulerError> {
        let started = std::time::Instant::now();
        let existing = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?
            .is_some();
        let placed = self.place_once(ask).await;
        let result = match (&placed, existing) {
            (Err(_), _) => "failed",
            (Ok(_), true) => "existing",
            (Ok(_), false) => "placed",
        };
        if let Some(c) = &*PLACEMENTS {
            c.with_label_values(&[result]).inc();
        }
        if let Some(h) = &*PLACEMENT_DURATION {
            h.with_label_values(&[result])
                .observe(started.elapsed().as_secs_f64());
        }
        self.export_devices();
        placed
    }

    /// Sets the device gauges from the fleet.
    fn export_devices(&self) {
        let fleet = self.fleet();
        for id in fleet.ids() {
            if let Some(d) = fleet.get(id) {
                let labels = [&*d.id, d.driver.as_str()];
                if let Some(g) = &*DEVICE_LOAD {
                    g.with_label_values(&labels).set(d.load);
                }
                if let Some(g) = &*DEVICE_CAPACITY {
                    g.with_label_values(&labels).set(d.capacity);
                }
            }
        }
    }

    async fn place_once(&self, ask: &PlacementAsk) -> Result<binding::Model, SchedulerError> {
        if let Some(existing) = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?
        {
            return Ok(existing);
        }
        let plan = self.plan(ask, None).await?;
        let unsupported = self.unsupported(&plan.request, None);
        if !unsupported.is_empty() {
            return Err(SchedulerError::NoCapacity(format!(
                "no device of this flavor supports {}",
                unsupported.join(", ")
            )));
        }
        let mut reread = false;
        for _ in 0..ATTEMPTS {
            let Some(device_id) = self.choose(&plan) else {
                // The cached fleet may lag what another replica (or a registration in flight)
                // wrote: read the database once before refusing.
                if !reread {
                    reread = true;
                    self.refresh().await?;
                    continue;
                }
                if plan.on_demand.is_some() {
                    self.create_on_demand(&plan).await?;
                    continue;
                }
                return Err(SchedulerError::NoCapacity(self.why_nothing_fits(&plan)));
            };
            self.wire(&device_id, &plan.networks).await?;
            match self.commit_new(ask, &plan, &device_id).await? {
                Commit::Done(bound) => {
                    if bound.device_id == device_id {
                        self.fleet_change().bind(&device_id, &ask.project_id);
                    }
                    tracing::info!(loadbalancer = %bound.loadbalancer_id, device = %bound.device_id, vip = %bound.vip_address, strategy = %bound.strategy, "placed");
                    return Ok(bound);
                }
                Commit::Lost => self.refresh_device(&device_id).await?,
            }
        }
        Err(SchedulerError::Unavailable(
            "placement lost every race for a device; try again".into(),
        ))
    }

    /// Binds the load balancer to `device_id` if the device still has room.
    async fn commit_new(
        &self,
        ask: &PlacementAsk,
        plan: &Plan,
        device_id: &str,
    ) -> Result<Commit, SchedulerError> {
        let _writer = self.writer().await;
        let txn = lbaas::server::begin_write(&self.db).await?;
        if let Some(existing) = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&txn)
            .await?
        {
            return Ok(Commit::Done(existing));
        }
        let Some(device) = lock_room(&txn, device_id).await? else {
            return Ok(Commit::Lost);
        };
        let range = match &plan.vip_range {
            Some(range) => range.clone(),
            None => Range::of_cidr(&device.vip_cidr).map_err(SchedulerError::NoCapacity)?,
        };
        lock_range(&txn, &range).await?;
        let vip = allocate_vip(&txn, &range, &ask.vip_address, "config.vip_address").await?;
        let model = binding::ActiveModel {
            loadbalancer_id: Set(ask.loadbalancer_id.clone()),
            device_id: Set(device.id.clone()),
            project_id: Set(ask.project_id.clone()),
            vip_address: Set(vip.clone()),
            strategy: Set(plan.strategy.name()),
            created_ms: Set(now_ms()),
            availability_zone: Set(ask.availability_zone.clone()),
            flavor: Set(ask.flavor.clone()),
        };
        let inserted = match model.insert(&txn).await {
            // The additional VIPs, in the same transaction: the binding and all its VIPs, or none.
            Ok(bound) => match allocate_extra_vips(&txn, ask, plan).await {
                Ok(()) => Ok(bound),
                Err(ExtraVip::Taken(e)) => Err(e),
                Err(ExtraVip::Refused(e)) => return Err(e),
            },
            Err(e) => Err(e),
        };
        match inserted {
            Ok(bound) => {
                txn.commit().await?;
                Ok(Commit::Done(bound))
            }
            Err(e) if text::is_unique_violation(&e) => {
                drop(txn);
                // Either the load balancer was placed meanwhile (keep that) or the VIP was taken.
                if let Some(existing) = binding::Entity::find_by_id(&ask.loadbalancer_id)
                    .one(&self.db)
                    .await?
                {
                    return Ok(Commit::Done(existing));
                }
                if !ask.vip_address.is_empty()
                    || ask.additional_vips.iter().any(|(_, a)| !a.is_empty())
                {
                    return Err(SchedulerError::AlreadyExists(format!(
                        "VIP {vip} (or an additional VIP asked for) is held by another load balancer"
                    )));
                }
                Ok(Commit::Lost)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Failover: moves the load balancer to another device that can take it, keeping its VIP, and
    /// returns the device it left. With no other device it stays where it is (and is redeployed)
    /// if its device still takes load.
    pub async fn replace(
        &self,
        ask: &PlacementAsk,
    ) -> Result<(binding::Model, Option<String>), SchedulerError> {
        let Some(existing) = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?
        else {
            return Ok((self.place(ask).await?, None));
        };
        // A resize (another flavor than the one it was placed for): a device the new flavor also
        // allows keeps it; otherwise it must move, never stay behind on a device of the old one.
        let resize = existing.flavor != ask.flavor;
        if resize && self.fits_where_it_is(ask, &existing.device_id).await? {
            let mut active: binding::ActiveModel = existing.into();
            active.flavor = Set(ask.flavor.clone());
            let kept = active.update(&self.db).await?;
            tracing::info!(loadbalancer = %kept.loadbalancer_id, device = %kept.device_id, flavor = %ask.flavor, "resize: the device also serves the new flavor");
            return Ok((kept, None));
        }
        let mut plan = self.plan(ask, Some(existing.device_id.clone())).await?;
        // The load balancer keeps its VIP wherever it goes: the new device's own range need not
        // hold it (that check is for a VIP a tenant asks for on create).
        plan.request.vip_address = None;
        for _ in 0..ATTEMPTS {
            let Some(device_id) = self.choose(&plan) else {
                if !resize && self.takes_load(&existing.device_id).await? {
                    tracing::info!(loadbalancer = %existing.loadbalancer_id, device = %existing.device_id, "failover: no other device, redeploying in place");
                    return Ok((existing, None));
                }
                if plan.on_demand.is_some() {
                    self.create_on_demand(&plan).await?;
                    continue;
                }
                return Err(SchedulerError::NoCapacity(self.why_nothing_fits(&plan)));
            };
            self.wire(&device_id, &plan.networks).await?;
            let txn = lbaas::server::begin_write(&self.db).await?;
            let Some(current) = binding::Entity::find_by_id(&ask.loadbalancer_id)
                .one(&txn)
                .await?
            else {
                return Err(SchedulerError::NotFound(format!(
                    "placement of {}",
                    ask.loadbalancer_id
                )));
            };
            if current.device_id != existing.device_id {
                // Another failover moved it meanwhile: that move stands.
                return Ok((current, None));
            }
            if lock_room(&txn, &device_id).await?.is_none() {
                drop(txn);
                self.refresh_device(&device_id).await?;
                continue;
            }
            let old = current.device_id.clone();
            let mut active: binding::ActiveModel = current.into();
            active.device_id = Set(device_id.clone());
            active.strategy = Set(plan.strategy.name());
            active.flavor = Set(ask.flavor.clone());
            let moved = active.update(&txn).await?;
            txn.commit().await?;
            {
                let mut fleet = self.fleet_change();
                fleet.unbind(&old, &ask.project_id);
                fleet.bind(&device_id, &ask.project_id);
            }
            tracing::info!(loadbalancer = %moved.loadbalancer_id, from = %old, to = %moved.device_id, "failover: re-placed");
            return Ok((moved, Some(old)));
        }
        Err(SchedulerError::Unavailable(
            "failover lost every race for a device; try again".into(),
        ))
    }

    /// Whether a placed load balancer's device serves what `ask` asks for (flavor, zone,
    /// capabilities, a live agent). Its own share of the device's load counts as room.
    pub async fn fits_where_it_is(
        &self,
        ask: &PlacementAsk,
        device_id: &str,
    ) -> Result<bool, SchedulerError> {
        let mut plan = self.plan(ask, None).await?;
        plan.request.vip_address = None;
        let explained = plan.strategy.explain(&self.fleet(), &plan.request);
        Ok(explained
            .candidates
            .iter()
            .any(|c| c.device_id == device_id && (c.eligible || c.rejected_by == "capacity")))
    }

    /// Whether some device can take the load balancer `ask` describes now (or one would be
    /// created on demand); the reason nothing can otherwise.
    pub async fn can_take(&self, ask: &PlacementAsk) -> Result<Result<(), String>, SchedulerError> {
        let mut plan = self.plan(ask, None).await?;
        plan.request.vip_address = None;
        if plan.on_demand.is_some() || self.choose(&plan).is_some() {
            return Ok(Ok(()));
        }
        self.refresh().await?;
        if self.choose(&plan).is_some() {
            return Ok(Ok(()));
        }
        Ok(Err(self.why_nothing_fits(&plan)))
    }

    /// The topology the flavor asks for (SINGLE without a flavor).
    pub async fn topology(&self, flavor: &str) -> Result<Topology, SchedulerError> {
        if flavor.is_empty() {
            return Ok(Topology::Single);
        }
        Ok(service_type::Entity::find_by_id(flavor)
            .one(&self.db)
            .await?
            .map_or(Topology::Single, |t| {
                crate::devices::topology_of(&t.topology)
            }))
    }

    /// ACTIVE_STANDBY, before anything is placed: a VIP network (the pair's VRRP adverts and
    /// ports live there) and devices of the flavor on at least two live hosts. FAILED_PRECONDITION
    /// with the reason otherwise, so a pair is never half built.
    pub async fn check_pair_possible(&self, ask: &PlacementAsk) -> Result<(), SchedulerError> {
        if self.topology(&ask.flavor).await? != Topology::ActiveStandby {
            return Ok(());
        }
        if ask.vip_network.is_empty() {
            return Err(SchedulerError::FailedPrecondition(format!(
                "flavor {} is ACTIVE_STANDBY: the load balancer needs a VIP network (vip_network_id) for VRRP between its two devices",
                ask.flavor
            )));
        }
        let plan = self.plan(ask, None).await?;
        let explained = plan.strategy.explain(&self.fleet(), &plan.request);
        let fleet = self.fleet();
        let hosts: HashSet<String> = explained
            .candidates
            .iter()
            .filter(|c| c.eligible)
            .filter_map(|c| fleet.get(&c.device_id).map(|d| d.agent_id.clone()))
            .collect();
        if hosts.len() < 2 {
            return Err(SchedulerError::FailedPrecondition(format!(
                "flavor {} is ACTIVE_STANDBY and needs devices on two different hosts; {} host(s) can take it now",
                ask.flavor,
                hosts.len()
            )));
        }
        Ok(())
    }

    /// ACTIVE_STANDBY failover: when the primary's device is lost and the standby's is ACTIVE,
    /// the standby becomes the primary (it already serves: keepalived moved the VIP to it) and
    /// the lost device is left as the standby, which `standby` then replaces. Otherwise a normal
    /// failover, or nothing when the primary is fine (only the standby needs replacing).
    pub async fn promote(
        &self,
        ask: &PlacementAsk,
    ) -> Result<(binding::Model, Option<String>), SchedulerError> {
        let Some(existing) = binding::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?
        else {
            return Ok((self.place(ask).await?, None));
        };
        if self.takes_load(&existing.device_id).await? {
            return Ok((existing, None));
        }
        let Some(backup) = standby::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?
            .filter(|s| s.device_id != existing.device_id)
        else {
            return self.replace(ask).await;
        };
        if !self.takes_load(&backup.device_id).await? {
            return self.replace(ask).await;
        }
        let txn = lbaas::server::begin_write(&self.db).await?;
        let old = existing.device_id.clone();
        let new = backup.device_id.clone();
        let mut primary: binding::ActiveModel = existing.into();
        primary.device_id = Set(new.clone());
        let promoted = primary.update(&txn).await?;
        let mut standby: standby::ActiveModel = backup.into();
        standby.device_id = Set(old.clone());
        standby.update(&txn).await?;
        txn.commit().await?;
        {
            let mut fleet = self.fleet_change();
            fleet.unbind(&old, &ask.project_id);
            fleet.bind(&new, &ask.project_id);
        }
        // The swap leaves each device's load as it was (a primary for a standby): read it back.
        self.refresh_device(&old).await?;
        self.refresh_device(&new).await?;
        tracing::info!(loadbalancer = %ask.loadbalancer_id, from = %old, to = %new, "failover: the standby is the primary now");
        Ok((promoted, Some(old)))
    }

    /// ACTIVE_STANDBY: the standby of a placed load balancer. The one it has while its device is
    /// ACTIVE and on another host than the primary's; otherwise a new device chosen by the
    /// flavor's strategy among the devices of other hosts (anti-affinity), wired to the load
    /// balancer's networks. The pair keeps its VRRP virtual router id (the lowest free one, 1-255,
    /// when it is new). FAILED_PRECONDITION when no other host can take it.
    pub async fn standby(
        &self,
        ask: &PlacementAsk,
        primary: &binding::Model,
    ) -> Result<(standby::Model, Option<String>), SchedulerError> {
        let primary_agent = device::Entity::find_by_id(&primary.device_id)
            .one(&self.db)
            .await?
            .map(|d| d.agent_id)
            .unwrap_or_default();
        let existing = standby::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&self.db)
            .await?;
        if let Some(s) = &existing
            && s.device_id != primary.device_id
            && let Some(d) = device::Entity::find_by_id(&s.device_id)
                .one(&self.db)
                .await?
            && d.state == "ACTIVE"
            && d.agent_id != primary_agent
        {
            return Ok((s.clone(), None));
        }
        let mut plan = self.plan(ask, Some(primary.device_id.clone())).await?;
        plan.request.exclude_agent = Some(primary_agent.clone());
        plan.request.vip_address = None;
        let mut chosen = self.choose(&plan);
        if chosen.is_none() {
            self.refresh().await?;
            chosen = self.choose(&plan);
        }
        let Some(device_id) = chosen else {
            return Err(SchedulerError::FailedPrecondition(format!(
                "ACTIVE_STANDBY needs a second device on another host than {primary_agent}: {}",
                self.why_nothing_fits(&plan)
            )));
        };
        self.wire(&device_id, &plan.networks).await?;
        let _writer = self.writer().await;
        let txn = lbaas::server::begin_write(&self.db).await?;
        // The standby takes room on its device like a primary: refused when the device filled
        // up (or left ACTIVE) since the fleet last saw it.
        if lock_room(&txn, &device_id).await?.is_none() {
            drop(txn);
            self.refresh_device(&device_id).await?;
            return Err(SchedulerError::Unavailable(format!(
                "device {device_id} filled up before the standby was placed; try again"
            )));
        }
        let mut replaced = None;
        let saved = match standby::Entity::find_by_id(&ask.loadbalancer_id)
            .one(&txn)
            .await?
        {
            Some(s) => {
                if s.device_id != primary.device_id {
                    replaced = Some(s.device_id.clone());
                }
                let mut active: standby::ActiveModel = s.into();
                active.device_id = Set(device_id.clone());
                active.update(&txn).await?
            }
            None => {
                let used: HashSet<i32> = standby::Entity::find()
                    .select_only()
                    .column(standby::Column::Vrid)
                    .into_tuple::<i32>()
                    .all(&txn)
                    .await?
                    .into_iter()
                    .collect();
                let vrid = (1..=255).find(|v| !used.contains(v)).ok_or_else(|| {
                    SchedulerError::FailedPrecondition(
                        "every VRRP virtual router id (1-255) is taken by an ACTIVE_STANDBY pair"
                            .into(),
                    )
                })?;
                standby::ActiveModel {
                    loadbalancer_id: Set(ask.loadbalancer_id.clone()),
                    device_id: Set(device_id.clone()),
                    vrid: Set(vrid),
                    created_ms: Set(now_ms()),
                }
                .insert(&txn)
                .await?
            }
        };
        txn.commit().await?;
        self.refresh_device(&device_id).await?;
        if let Some(old) = &replaced {
            self.refresh_device(old).await?;
        }
        self.export_devices();
        tracing::info!(loadbalancer = %ask.loadbalancer_id, standby = %device_id, vrid = saved.vrid, "standby placed");
        Ok((saved, replaced))
    }

    /// A device's port address on a network (without its prefix), if it has one.
    pub async fn port_address(
        &self,
        device_id: &str,
        network: &str,
    ) -> Result<Option<String>, SchedulerError> {
        Ok(port::Entity::find_by_id(port::id_of(device_id, network))
            .one(&self.db)
            .await?
            .map(|p| p.address))
    }

    /// The additional VIPs of a load balancer, in the order it asked for them.
    pub async fn extra_vips(&self, id: &str) -> Result<Vec<extra_vip::Model>, SchedulerError> {
        extra_vips_of(&self.db, id).await
    }

    /// Forgets a load balancer's binding (and its standby and additional VIPs).
    pub async fn release(&self, bound: binding::Model) -> Result<(), SchedulerError> {
        let (device, project) = (bound.device_id.clone(), bound.project_id.clone());
        let standing_by = standby::Entity::find_by_id(&bound.loadbalancer_id)
            .one(&self.db)
            .await?
            .map(|s| s.device_id);
        standby::Entity::delete_by_id(&bound.loadbalancer_id)
            .exec(&self.db)
            .await?;
        extra_vip::Entity::delete_many()
            .filter(extra_vip::Column::LoadbalancerId.eq(&bound.loadbalancer_id))
            .exec(&self.db)
            .await?;
        bound.delete(&self.db).await?;
        self.fleet_change().unbind(&device, &project);
        if let Some(standby_device) = standing_by {
            self.refresh_device(&standby_device).await?;
        }
        self.export_devices();
        Ok(())
    }

    async fn takes_load(&self, device_id: &str) -> Result<bool, SchedulerError> {
        Ok(device::Entity::find_by_id(device_id)
            .one(&self.db)
            .await?
            .is_some_and(|d| d.state == "ACTIVE"))
    }

    async fn agent_address(&self, agent_id: &str) -> Result<String, SchedulerError> {
        agent::Entity::find_by_id(agent_id)
            .one(&self.db)
            .await?
            .map(|a| a.address)
            .ok_or_else(|| {
                SchedulerError::Unavailable(format!("agent {agent_id} is not registered"))
            })
    }

    /// Attaches the device to every network it needs and is not on yet, through its agent.
    async fn wire(
        &self,
        device_id: &str,
        networks: &BTreeMap<String, network::Model>,
    ) -> Result<(), SchedulerError> {
        let (missing, agent_id): (Vec<(String, network::Model)>, String) = {
            let fleet = self.fleet();
            let Some(d) = fleet.get(device_id) else {
                return Ok(());
            };
            (
                networks
                    .iter()
                    .filter(|(name, _)| !d.networks.contains(*name))
                    .map(|(n, c)| (n.clone(), c.clone()))
                    .collect(),
                d.agent_id.clone(),
            )
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut client = self.agents.client(&self.agent_address(&agent_id).await?)?;
        let mut attached = Vec::new();
        for (name, net) in &missing {
            let cidr = &net.cidr;
            let address = self.port(device_id, net).await?;
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                client.attach_network(AttachNetworkRequest {
                    device_id: device_id.to_owned(),
                    network: name.clone(),
                    cidr: cidr.clone(),
                    address,
                    gateway: net.gateway.clone(),
                }),
            )
            .await
            .map_err(|_| {
                SchedulerError::Unavailable(format!(
                    "attaching {device_id} to network {name} timed out"
                ))
            })?
            .map_err(|s| {
                SchedulerError::Unavailable(format!(
                    "agent {agent_id} could not attach {device_id} to network {name}: {}",
                    s.message()
                ))
            })?;
            attached = answer.into_inner().networks;
            tracing::info!(device = %device_id, network = %name, %cidr, "wired: device attached to network");
        }
        self.record_attached(device_id, &attached).await
    }

    /// The device's port on the network, `address/prefix`: the one it has, or the first free
    /// address of the network's range (never a VIP, never another port, never the gateway).
    async fn port(&self, device_id: &str, net: &network::Model) -> Result<String, SchedulerError> {
        let range = Range::of_network(net).map_err(SchedulerError::NoCapacity)?;
        let _writer = self.writer().await;
        let txn = lbaas::server::begin_write(&self.db).await?;
        let id = port::id_of(device_id, &net.name);
        if let Some(existing) = port::Entity::find_by_id(&id).one(&txn).await? {
            return Ok(format!("{}/{}", existing.address, range.prefix_len()));
        }
        lock_range(&txn, &range).await?;
        let held = crate::addressing::held(&txn).await?;
        let address = range.first_free(&held).ok_or_else(|| {
            SchedulerError::NoCapacity(format!(
                "network {} has no free address left for a port of {device_id}",
                net.name
            ))
        })?;
        port::ActiveModel {
            id: Set(id),
            device_id: Set(device_id.to_owned()),
            network: Set(net.name.clone()),
            address: Set(address.to_string()),
            created_ms: Set(now_ms()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(format!("{address}/{}", range.prefix_len()))
    }

    /// Records what the agent says the device is attached to now.
    async fn record_attached(
        &self,
        device_id: &str,
        attached: &[String],
    ) -> Result<(), SchedulerError> {
        let txn = self.db.begin().await?;
        if let Some(model) = device::Entity::find_by_id(device_id).one(&txn).await? {
            let known: Vec<String> = text::names(&model.networks);
            let mut active: device::ActiveModel = model.into();
            active.networks = Set(text::names_text(known.iter().chain(attached)));
            active.update(&txn).await?;
        }
        txn.commit().await?;
        self.refresh_device(device_id).await
    }

    /// Asks a live agent that can run the service type's driver for a new device, and registers
    /// it. Serialised, and skipped when a device fits by the time it runs.
    async fn create_on_demand(&self, plan: &Plan) -> Result<(), SchedulerError> {
        let Some(spec) = &plan.on_demand else {
            return Ok(());
        };
        let _one_at_a_time = self.creating.lock().await;
        if self.choose(plan).is_some() {
            return Ok(());
        }
        let live_after = now_ms() - self.agent_timeout_ms;
        let mut candidates = self.fleet().agents_for(&spec.driver, live_after);
        if let Some((_, labels)) = &spec.zone {
            let fleet = self.fleet();
            let in_zone: std::collections::BTreeSet<String> = fleet
                .ids()
                .iter()
                .filter_map(|id| fleet.get(id))
                .filter(|d| labels.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
                .map(|d| d.agent_id.clone())
                .collect();
            candidates.retain(|a| in_zone.contains(a));
        }
        let Some(agent_id) = candidates.first().cloned() else {
            return Err(SchedulerError::NoCapacity(format!(
                "{}; and no live agent{} can create a {} device on demand",
                self.why_nothing_fits(plan),
                match &spec.zone {
                    Some((zone, _)) => format!(" in availability zone {zone}"),
                    None => String::new(),
                },
                spec.driver
            )));
        };
        let mut client = self.agents.client(&self.agent_address(&agent_id).await?)?;
        let mut labels: std::collections::HashMap<String, String> =
            spec.labels.clone().into_iter().collect();
        labels.insert("service-type".into(), spec.service_type.clone());
        let created = tokio::time::timeout(
            Duration::from_secs(30),
            client.create_device(CreateDeviceRequest {
                driver: spec.driver.clone(),
                capacity: spec.capacity,
                labels: labels.clone(),
            }),
        )
        .await
        .map_err(|_| {
            SchedulerError::Unavailable(format!(
                "agent {agent_id} took too long to create a device"
            ))
        })?
        .map_err(|s| {
            SchedulerError::Unavailable(format!(
                "agent {agent_id} could not create a {} device: {}",
                spec.driver,
                s.message()
            ))
        })?
        .into_inner();
        let device = lbaas::scheduler::v1::Device {
            id: created.id.clone(),
            driver: created.driver,
            agent_id: agent_id.clone(),
            capacity: created.capacity,
            load: 0,
            vip_cidr: created.vip_cidr,
            r#virtual: true,
            state: lbaas::scheduler::v1::DeviceState::Active as i32,
            labels: created.labels,
            networks: created.networks,
            ports: Default::default(),
            on_demand: true,
            capabilities: self
                .fleet()
                .driver_capabilities(&spec.driver)
                .into_iter()
                .collect(),
        };
        crate::devices::upsert_device(&self.db, &device).await?;
        self.refresh_device(&created.id).await?;
        tracing::info!(device = %created.id, agent = %agent_id, service_type = %spec.service_type, "created a device on demand");
        Ok(())
    }
}

/// Locks `device_id`'s row for the rest of the transaction and returns it if it is ACTIVE and has
/// room, counting its bindings inside the same transaction.
async fn lock_room(
    txn: &sea_orm::DatabaseTransaction,
    device_id: &str,
) -> Result<Option<device::Model>, SchedulerError> {
    let Some(device) = device::Entity::find_by_id(device_id)
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    if device.state != "ACTIVE" {
        return Ok(None);
    }
    let load = device_load(txn, device_id).await?;
    if load >= u64::try_from(device.capacity).unwrap_or(0) {
        return Ok(None);
    }
    Ok(Some(device))
}

/// Serialises VIP allocation within one range for the rest of the transaction, so concurrent
/// placements (in any replica) never pick the same first free address. PostgreSQL: a
/// transaction-scoped advisory lock keyed by the range; SQLite write transactions are serial
/// already.
async fn lock_range(
    txn: &sea_orm::DatabaseTransaction,
    range: &Range,
) -> Result<(), SchedulerError> {
    use sea_orm::ConnectionTrait as _;
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        let net = range.net.to_string();
        let key = i64::from_ne_bytes(
            crate::strategy::seeded_hash(0x5649_5052, &[net.as_bytes()]).to_ne_bytes(),
        );
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await?;
    }
    Ok(())
}

/// Why `ip` cannot be a VIP from `range`: outside it, or its network (or, for IPv4, broadcast)
/// address, which no host may hold.
pub fn vip_outside(ip: IpAddr, range: &str) -> Option<String> {
    let Ok(net) = range.parse::<ipnet::IpNet>() else {
        return Some(format!("the range {range:?} is not a CIDR"));
    };
    if !net.contains(&ip) {
        return Some(format!("{ip} is outside {net}"));
    }
    let point_to_point = match net {
        ipnet::IpNet::V4(n) => n.prefix_len() >= 31,
        ipnet::IpNet::V6(n) => n.prefix_len() >= 127,
    };
    if point_to_point {
        return None;
    }
    if ip == net.network() {
        return Some(format!("{ip} is the network address of {net}"));
    }
    if matches!(net, ipnet::IpNet::V4(_)) && ip == net.broadcast() {
        return Some(format!("{ip} is the broadcast address of {net}"));
    }
    None
}

/// The additional VIPs of a load balancer, in the order it asked for them.
pub async fn extra_vips_of(
    db: &impl sea_orm::ConnectionTrait,
    id: &str,
) -> Result<Vec<extra_vip::Model>, SchedulerError> {
    use sea_orm::QueryOrder as _;
    Ok(extra_vip::Entity::find()
        .filter(extra_vip::Column::LoadbalancerId.eq(id))
        .order_by_asc(extra_vip::Column::Position)
        .all(db)
        .await?)
}

/// Why an additional VIP was not allocated.
enum ExtraVip {
    /// Its address was taken by a concurrent placement (a unique violation): choose again.
    Taken(sea_orm::DbErr),
    /// The request cannot be met.
    Refused(SchedulerError),
}

/// Allocates (and records) every additional VIP the load balancer asks for, within `txn`.
async fn allocate_extra_vips(
    txn: &sea_orm::DatabaseTransaction,
    ask: &PlacementAsk,
    plan: &Plan,
) -> Result<(), ExtraVip> {
    for (i, ((network, requested), range)) in ask
        .additional_vips
        .iter()
        .zip(&plan.extra_ranges)
        .enumerate()
    {
        lock_range(txn, range).await.map_err(ExtraVip::Refused)?;
        let field = format!("additional_vips[{i}].address");
        let address = allocate_vip(txn, range, requested, &field)
            .await
            .map_err(ExtraVip::Refused)?;
        extra_vip::ActiveModel {
            address: Set(address),
            loadbalancer_id: Set(ask.loadbalancer_id.clone()),
            network: Set(network.clone()),
            position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
            created_ms: Set(now_ms()),
        }
        .insert(txn)
        .await
        .map_err(ExtraVip::Taken)?;
    }
    Ok(())
}

/// The requested VIP if `range` may hold it and it is free, or the first free address of the
/// range's allocation range. Free: no load balancer's VIP and no device's port. `field` names the
/// request's field in a refusal.
async fn allocate_vip(
    txn: &sea_orm::DatabaseTransaction,
    range: &Range,
    requested: &str,
    field: &str,
) -> Result<String, SchedulerError> {
    let used = crate::addressing::held(txn).await?;
    if !requested.is_empty() {
        let ip: IpAddr = requested.parse().map_err(|_| {
            SchedulerError::Invalid(vec![(field.to_owned(), "not an IP address".into())])
        })?;
        if let Some(why) = range.refuses(ip) {
            return Err(SchedulerError::Invalid(vec![(field.to_owned(), why)]));
        }
        if used.contains(&ip) {
            return Err(SchedulerError::AlreadyExists(format!(
                "VIP {ip} is held by another load balancer or a device's port"
            )));
        }
        return Ok(ip.to_string());
    }
    range
        .first_free(&used)
        .map(|ip| ip.to_string())
        .ok_or_else(|| SchedulerError::NoCapacity(format!("VIP range {} is exhausted", range.net)))
}

/// How many load balancers each device hosts, as primary or as ACTIVE_STANDBY standby.
pub async fn device_loads(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, SchedulerError> {
    let mut loads: BTreeMap<String, i64> = binding::Entity::find()
        .select_only()
        .column(binding::Column::DeviceId)
        .column_as(binding::Column::LoadbalancerId.count(), "load")
        .group_by(binding::Column::DeviceId)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for (device, n) in standby_loads(db).await? {
        *loads.entry(device).or_default() += n;
    }
    Ok(loads.into_iter().collect())
}

/// How many standbys each device holds.
async fn standby_loads(
    db: &impl sea_orm::ConnectionTrait,
) -> Result<Vec<(String, i64)>, SchedulerError> {
    Ok(standby::Entity::find()
        .select_only()
        .column(standby::Column::DeviceId)
        .column_as(standby::Column::LoadbalancerId.count(), "load")
        .group_by(standby::Column::DeviceId)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?)
}

/// A device's load: the load balancers bound to it plus the standbys it holds.
async fn device_load(
    db: &impl sea_orm::ConnectionTrait,
    device_id: &str,
) -> Result<u64, SchedulerError> {
    let bound = binding::Entity::find()
        .filter(binding::Column::DeviceId.eq(device_id))
        .count(db)
        .await?;
    let standing_by = standby::Entity::find()
        .filter(standby::Column::DeviceId.eq(device_id))
        .count(db)
        .await?;
    Ok(bound + standing_by)
}
