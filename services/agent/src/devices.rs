//! The devices an agent hosts: those its flags configure and those the scheduler asked it to create
//! on demand. Each keeps a `device.pb` record in its state directory (networks it is attached to,
//! whether it was created on demand), so a restarted agent brings back every device as it was.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context as _;
use lbaas::{
    agent::v1::HostedDevice,
    scheduler::v1::{Device, DeviceState},
};
use prost::Message as _;

use crate::{
    driver::{DriverOptions, build_driver},
    reconciler::DeviceReconciler,
};

const RECORD: &str = "device.pb";

/// One hosted device: its reconciler and what is known of it.
pub struct Hosted {
    pub reconciler: Arc<DeviceReconciler>,
    pub record: HostedDevice,
    pub dir: PathBuf,
}

/// How new devices are built.
#[derive(Clone)]
pub struct DeviceFactory {
    /// The host's VIPs, shared by its devices.
    pub vips: Arc<crate::network::Vips>,
    pub agent_id: String,
    pub state_dir: PathBuf,
    pub haproxy_bin: PathBuf,
    /// The native data plane's command (`AgentConfig::dataplane_command`).
    pub dataplane: Vec<std::ffi::OsString>,
    pub noop_apply_delay: std::time::Duration,
    pub vip_cidr: String,
}

impl DeviceFactory {
    /// Builds the device `record` describes (not started yet), with its saved networks.
    pub fn open(&self, mut record: HostedDevice) -> anyhow::Result<Hosted> {
        let dir = self.state_dir.join(&record.id);
        // A device's folder holds its applied state, TLS keys included: 0700, as is the root.
        crate::private_files::private_dir(&self.state_dir)
            .and_then(|()| crate::private_files::private_dir(&dir))
            .with_context(|| format!("creating {}", dir.display()))?;
        if let Some(saved) = read_record(&dir) {
            record.networks = saved.networks;
        }
        let options = DriverOptions {
            device_id: record.id.clone(),
            state_dir: dir.clone(),
            haproxy_bin: self.haproxy_bin.clone(),
            noop_apply_delay: self.noop_apply_delay,
            dataplane: self.dataplane.clone(),
        };
        let driver = build_driver(&record.driver, &options)
            .with_context(|| format!("unknown driver {:?}", record.driver))?;
        write_record(&dir, &record)?;
        Ok(Hosted {
            reconciler: Arc::new(DeviceReconciler::new(
                record.id.clone(),
                driver,
                dir.join("applied.pb"),
                self.vips.clone(),
            )),
            record,
            dir,
        })
    }

    /// Records of devices created on demand before a restart.
    pub fn saved_on_demand(&self) -> Vec<HostedDevice> {
        let Ok(entries) = std::fs::read_dir(&self.state_dir) else {
            return Vec::new();
        };
        let mut found: Vec<HostedDevice> = entries
            .flatten()
            .filter_map(|e| read_record(&e.path()))
            .filter(|r| r.on_demand)
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }
}

fn read_record(dir: &Path) -> Option<HostedDevice> {
    let bytes = std::fs::read(dir.join(RECORD)).ok()?;
    HostedDevice::decode(bytes.as_slice()).ok()
}

fn write_record(dir: &Path, record: &HostedDevice) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, record.encode_to_vec())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(RECORD)).with_context(|| format!("saving {RECORD}"))?;
    Ok(())
}

/// The devices of one agent, by id.
#[derive(Default)]
pub struct DeviceSet {
    inner: RwLock<BTreeMap<String, Hosted>>,
}

impl DeviceSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Hosted>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<DeviceReconciler>> {
        self.read().get(id).map(|h| h.reconciler.clone())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    /// Every device's reconciler, in id order.
    pub fn values(&self) -> Vec<Arc<DeviceReconciler>> {
        self.read().values().map(|h| h.reconciler.clone()).collect()
    }

    pub fn insert(&self, hosted: Hosted) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hosted.record.id.clone(), hosted);
    }

    /// Adds a network to a device's record (saved); returns its networks now.
    pub fn attach(&self, id: &str, network: &str) -> anyhow::Result<Vec<String>> {
        let mut devices = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let hosted = devices
            .get_mut(id)
            .with_context(|| format!("device {id:?} is not hosted here"))?;
        if !hosted.record.networks.iter().any(|n| n == network) {
            let mut record = hosted.record.clone();
            record.networks.push(network.to_owned());
            record.networks.sort();
            write_record(&hosted.dir, &record)?;
            hosted.record = record;
        }
        Ok(hosted.record.networks.clone())
    }

    /// Every device's record, in id order.
    pub fn records(&self) -> Vec<HostedDevice> {
        self.read().values().map(|h| h.record.clone()).collect()
    }

    pub fn record(&self, id: &str) -> Option<HostedDevice> {
        self.read().get(id).map(|h| h.record.clone())
    }

    /// Every device as the scheduler registers it.
    pub fn advertised(&self, agent_id: &str) -> Vec<Device> {
        self.read()
            .values()
            .map(|h| advertise(agent_id, &h.record))
            .collect()
    }
}

/// A device record in the scheduler's terms.
pub fn advertise(agent_id: &str, r: &HostedDevice) -> Device {
    Device {
        id: r.id.clone(),
        driver: r.driver.clone(),
        agent_id: agent_id.to_owned(),
        capacity: r.capacity,
        load: 0,
        vip_cidr: r.vip_cidr.clone(),
        r#virtual: true,
        state: DeviceState::Active as i32,
        labels: r.labels.clone(),
        networks: r.networks.clone(),
        ports: Default::default(),
        on_demand: r.on_demand,
        capabilities: crate::driver::capabilities_of(&r.driver),
    }
}
