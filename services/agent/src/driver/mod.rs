//! The driver API and the registry of known drivers, selected by name (`--driver haproxy`), as
//! Libra's worker does with `known_drivers`.
//!
//! A driver turns the desired configs of every load balancer on one device into that device's
//! configuration. It knows nothing of tenants, databases or the scheduler.

pub mod haproxy;
pub mod native;
pub mod noop;

use std::{path::PathBuf, sync::Arc};

use lbaas::agent::v1::{
    DiagnosticCheck, DriverInfo, ListenerStats, LoadBalancerConfig, MemberHealthStatus,
};

/// What went wrong in a driver, in words the tenant can act on.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The device refused the configuration (e.g. `haproxy -c` failed); nothing was changed.
    #[error("device rejected the configuration: {0}")]
    Rejected(String),
    /// The device could not be reached or started.
    #[error("device unavailable: {0}")]
    Unavailable(String),
    /// The driver cannot do what was asked.
    #[error("driver {driver} does not support {operation}")]
    Unsupported {
        driver: &'static str,
        operation: &'static str,
    },
}

/// Health of one device as the driver sees it.
#[derive(Debug, Clone)]
pub struct DeviceHealth {
    pub healthy: bool,
    pub detail: String,
}

/// Drives one device.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// The name the registry knows the driver by.
    fn name(&self) -> &'static str;

    /// What the driver can do (`lbaas::capability` names). The agent reports them with its
    /// devices; the scheduler places a load balancer only where everything it uses is offered.
    fn capabilities(&self) -> Vec<String>;

    /// Brings the device up, adopting a device that is already running (the data plane outlives
    /// agent restarts).
    async fn start(&self) -> Result<(), DriverError>;

    /// Converges the device to exactly these load balancers: those absent are removed.
    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError>;

    /// How the device is doing.
    async fn health(&self) -> DeviceHealth;

    /// What the device's health checks say of each member it serves. Drivers without checks
    /// report nothing.
    async fn member_health(&self) -> Result<Vec<MemberHealthStatus>, DriverError> {
        Ok(Vec::new())
    }

    /// Each listener's traffic counters as the data plane counts them now (they may restart from
    /// zero after a reload; the agent keeps what it reports rising). Drivers without traffic
    /// report nothing.
    async fn stats(&self) -> Result<Vec<ListenerStats>, DriverError> {
        Ok(Vec::new())
    }

    /// Brings the data plane back if it died, serving what it served before; returns whether it
    /// had to. Drivers whose data plane cannot die on its own do nothing.
    async fn recover(&self) -> Result<bool, DriverError> {
        Ok(false)
    }

    /// Checks the device and reports each finding (Libra's DIAGNOSTICS).
    async fn diagnostics(&self) -> Result<Vec<DiagnosticCheck>, DriverError> {
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "diagnostics",
        })
    }

    /// Stops the device's data plane (only on an explicit request: agent exit leaves it serving).
    async fn stop(&self) -> Result<(), DriverError>;
}

/// What a driver is built from.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    pub device_id: String,
    /// Where the driver keeps its files (config, sockets, pid file).
    pub state_dir: PathBuf,
    /// The HAProxy binary, for the haproxy driver.
    pub haproxy_bin: PathBuf,
    /// How long the noop driver takes to apply: lets tests catch a deploy in flight.
    pub noop_apply_delay: std::time::Duration,
    /// The native data plane's command: a program and the arguments that come before
    /// `--state-dir` (`AgentConfig::dataplane_command`).
    pub dataplane: Vec<std::ffi::OsString>,
}

type DriverFactory = fn(&DriverOptions) -> Arc<dyn Driver>;

/// The known drivers. Adding one is a module plus one line here.
const KNOWN_DRIVERS: &[(&str, DriverFactory)] = &[
    ("haproxy", |o| Arc::new(haproxy::HaproxyDriver::new(o))),
    ("native", |o| {
        Arc::new(native::process::NativeDriver::new(o))
    }),
    ("noop", |o| Arc::new(noop::NoopDriver::new(o))),
];

/// The names `--driver` accepts.
pub fn known_driver_names() -> Vec<&'static str> {
    KNOWN_DRIVERS.iter().map(|(name, _)| *name).collect()
}

/// Builds the named driver, or `None` if no driver has that name.
pub fn build_driver(name: &str, options: &DriverOptions) -> Option<Arc<dyn Driver>> {
    KNOWN_DRIVERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, factory)| factory(options))
}

/// What the named driver can do, or nothing for an unknown name.
pub fn capabilities_of(name: &str) -> Vec<String> {
    let options = DriverOptions {
        device_id: String::new(),
        state_dir: std::env::temp_dir(),
        haproxy_bin: PathBuf::from("haproxy"),
        noop_apply_delay: std::time::Duration::ZERO,
        dataplane: Vec::new(),
    };
    build_driver(name, &options).map_or_else(Vec::new, |d| d.capabilities())
}

/// Every known driver, whether it can run here and its version (Libra's DISCOVER).
pub async fn discover(haproxy_bin: &std::path::Path) -> Vec<DriverInfo> {
    let built_in = |name: &str, detail: &str| DriverInfo {
        name: name.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        available: true,
        detail: detail.into(),
    };
    let haproxy = match haproxy::version(haproxy_bin).await {
        Ok(version) => DriverInfo {
            name: "haproxy".into(),
            version,
            available: true,
            detail: haproxy_bin.display().to_string(),
        },
        Err(e) => DriverInfo {
            name: "haproxy".into(),
            version: String::new(),
            available: false,
            detail: e,
        },
    };
    vec![
        haproxy,
        built_in("native", "data plane process (lbaas-dataplane)"),
        built_in("noop", "accepts configs, carries no traffic"),
    ]
}
