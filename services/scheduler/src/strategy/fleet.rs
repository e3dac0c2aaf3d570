//! The fleet: an in-memory index of every registered device, kept in step with the database by the
//! scheduler. Open devices (ACTIVE, with room) are ordered by relative load, overall, per driver
//! and per attached network, so a strategy finds its winner in logarithmic time instead of scoring
//! every device.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

/// A device's administrative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Active,
    Draining,
    Down,
}

impl DeviceState {
    pub fn parse(text: &str) -> Self {
        match text {
            "DRAINING" => Self::Draining,
            "DOWN" => Self::Down,
            _ => Self::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Down => "DOWN",
        }
    }
}

/// What placement knows of one device.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub id: Arc<str>,
    pub driver: String,
    pub agent_id: String,
    pub capacity: i64,
    /// Load balancers bound to it.
    pub load: i64,
    pub state: DeviceState,
    pub is_virtual: bool,
    pub labels: BTreeMap<String, String>,
    pub networks: BTreeSet<String>,
    /// What the device's driver can do (`lbaas::capability` names).
    pub capabilities: BTreeSet<String>,
    /// The range the device's own VIPs come from (when no network is named).
    pub vip_cidr: Option<ipnet::IpNet>,
}

/// Parts per million: scores are integers so that every comparison is exact.
pub const PPM: i64 = 1_000_000;

impl DeviceView {
    /// Load relative to capacity, in parts per million.
    pub fn load_ppm(&self) -> i64 {
        (self.load.max(0).saturating_mul(PPM) / self.capacity.max(1)).min(PPM)
    }

    /// The order of open devices: lowest relative load, then lowest load, then id.
    pub fn load_key(&self) -> LoadKey {
        LoadKey {
            ppm: self.load_ppm(),
            load: self.load,
            id: self.id.clone(),
        }
    }

    /// Takes new load balancers: ACTIVE with room. Agent liveness is checked at choice time.
    pub fn is_open(&self) -> bool {
        self.state == DeviceState::Active && self.load < self.capacity
    }
}

/// Orders devices best first for least-loaded placement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LoadKey {
    pub ppm: i64,
    pub load: i64,
    pub id: Arc<str>,
}

#[derive(Debug, Default, Clone)]
pub struct Fleet {
    devices: HashMap<Arc<str>, DeviceView>,
    /// Every device id, sorted: the random strategy draws from it.
    ids: Vec<Arc<str>>,
    open: BTreeSet<LoadKey>,
    open_by_driver: HashMap<String, BTreeSet<LoadKey>>,
    open_by_network: HashMap<String, BTreeSet<LoadKey>>,
    /// For each project, how many of its load balancers each device hosts.
    projects: HashMap<String, HashMap<Arc<str>, u32>>,
    /// Last heartbeat of each agent (Unix ms).
    heartbeats: HashMap<String, i64>,
    /// The drivers each agent can create devices for.
    agent_drivers: HashMap<String, Vec<String>>,
    /// What each driver can do, as agents last reported.
    driver_capabilities: HashMap<String, BTreeSet<String>>,
}

static EMPTY: BTreeSet<LoadKey> = BTreeSet::new();

impl Fleet {
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&DeviceView> {
        self.devices.get(id)
    }

    /// Every device, in id order.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }

    /// Open devices, best first: all of them, or those of one driver.
    pub fn open(&self, driver: Option<&str>) -> &BTreeSet<LoadKey> {
        match driver {
            None => &self.open,
            Some(d) => self.open_by_driver.get(d).unwrap_or(&EMPTY),
        }
    }

    /// Open devices attached to `network`, best first.
    pub fn open_on(&self, network: &str) -> &BTreeSet<LoadKey> {
        self.open_by_network.get(network).unwrap_or(&EMPTY)
    }

    /// The devices hosting load balancers of `project`, with how many each hosts.
    pub fn project_devices(&self, project: &str) -> impl Iterator<Item = (&Arc<str>, u32)> {
        self.projects
            .get(project)
            .into_iter()
            .flat_map(|m| m.iter().map(|(id, n)| (id, *n)))
    }

    /// How many of `project`'s load balancers `device` hosts.
    pub fn project_load(&self, project: &str, device: &str) -> u32 {
        self.projects
            .get(project)
            .and_then(|m| m.get(device))
            .copied()
            .unwrap_or(0)
    }

    pub fn heartbeat(&mut self, agent: &str, at_ms: i64) {
        let last = self.heartbeats.entry(agent.to_owned()).or_insert(at_ms);
        *last = (*last).max(at_ms);
    }

    /// Every agent heard from.
    pub fn agents(&self) -> Vec<String> {
        self.heartbeats.keys().cloned().collect()
    }

    pub fn last_heartbeat(&self, agent: &str) -> Option<i64> {
        self.heartbeats.get(agent).copied()
    }

    pub fn set_agent_drivers(&mut self, agent: &str, drivers: Vec<String>) {
        self.agent_drivers.insert(agent.to_owned(), drivers);
    }

    pub fn set_driver_capabilities(&mut self, driver: &str, capabilities: BTreeSet<String>) {
        self.driver_capabilities
            .insert(driver.to_owned(), capabilities);
    }

    /// Keeps what agents reported of their drivers (it is not in the database).
    pub fn driver_capabilities_from(&mut self, other: &Self) {
        self.driver_capabilities
            .clone_from(&other.driver_capabilities);
    }

    /// What `driver` can do: as an agent reported it, else as a device running it says.
    pub fn driver_capabilities(&self, driver: &str) -> BTreeSet<String> {
        self.driver_capabilities
            .get(driver)
            .cloned()
            .or_else(|| {
                self.devices
                    .values()
                    .find(|d| d.driver == driver && !d.capabilities.is_empty())
                    .map(|d| d.capabilities.clone())
            })
            .unwrap_or_default()
    }

    /// Agents heard from since `live_after` that can create devices for `driver`, fewest devices
    /// first (then by id).
    pub fn agents_for(&self, driver: &str, live_after: i64) -> Vec<String> {
        let mut agents: Vec<(usize, String)> = self
            .agent_drivers
            .iter()
            .filter(|(agent, drivers)| {
                drivers.iter().any(|d| d == driver)
                    && self
                        .heartbeats
                        .get(*agent)
                        .is_some_and(|t| *t >= live_after)
            })
            .map(|(agent, _)| {
                let hosted = self
                    .devices
                    .values()
                    .filter(|d| d.agent_id == *agent)
                    .count();
                (hosted, agent.clone())
            })
            .collect();
        agents.sort();
        agents.into_iter().map(|(_, a)| a).collect()
    }

    /// Adds or replaces a device.
    pub fn upsert(&mut self, device: DeviceView) {
        let id = device.id.clone();
        if let Some(old) = self.devices.remove(&id) {
            self.unindex(&old);
        } else if let Err(at) = self.ids.binary_search(&id) {
            self.ids.insert(at, id.clone());
        }
        self.index(&device);
        self.devices.insert(id, device);
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.devices.remove(id) {
            self.unindex(&old);
            if let Ok(at) = self.ids.binary_search_by(|probe| (**probe).cmp(id)) {
                self.ids.remove(at);
            }
        }
    }

    /// Changes a device in place (load, state, networks...), keeping the indexes right.
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut DeviceView)) {
        if let Some(mut device) = self.devices.remove(id) {
            self.unindex(&device);
            change(&mut device);
            self.index(&device);
            self.devices.insert(device.id.clone(), device);
        }
    }

    /// A load balancer of `project` was bound to `device`.
    pub fn bind(&mut self, device: &str, project: &str) {
        self.update(device, |d| d.load += 1);
        if let Some(id) = self.devices.get(device).map(|d| d.id.clone()) {
            *self
                .projects
                .entry(project.to_owned())
                .or_default()
                .entry(id)
                .or_default() += 1;
        }
    }

    /// A load balancer of `project` left `device`.
    pub fn unbind(&mut self, device: &str, project: &str) {
        self.update(device, |d| d.load = (d.load - 1).max(0));
        if let Some(per_device) = self.projects.get_mut(project) {
            if let Some(n) = per_device.get_mut(device) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_device.remove(device);
                }
            }
            if per_device.is_empty() {
                self.projects.remove(project);
            }
        }
    }

    /// Replaces what is known of projects' load balancers: (project, device, count).
    pub fn set_projects(&mut self, rows: impl IntoIterator<Item = (String, String, u32)>) {
        self.projects.clear();
        for (project, device, n) in rows {
            if let Some(id) = self.devices.get(device.as_str()).map(|d| d.id.clone()) {
                self.projects.entry(project).or_default().insert(id, n);
            }
        }
    }

    fn index(&mut self, d: &DeviceView) {
        if !d.is_open() {
            return;
        }
        let key = d.load_key();
        self.open.insert(key.clone());
        self.open_by_driver
            .entry(d.driver.clone())
            .or_default()
            .insert(key.clone());
        for n in &d.networks {
            self.open_by_network
                .entry(n.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    fn unindex(&mut self, d: &DeviceView) {
        let key = d.load_key();
        self.open.remove(&key);
        if let Some(set) = self.open_by_driver.get_mut(&d.driver) {
            set.remove(&key);
        }
        for n in &d.networks {
            if let Some(set) = self.open_by_network.get_mut(n) {
                set.remove(&key);
            }
        }
    }
}
