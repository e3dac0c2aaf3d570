//! Network drivers, beside the device drivers and chosen per agent (`--network-driver`): how the
//! agent's host holds the VIPs of the load balancers it serves and joins tenant networks.
//!
//! - `loopback`: one machine. Every VIP is an address of 127.0.0.0/8, which Linux routes to the
//!   loopback interface whole, so there is nothing to plug; attaching a network checks that this
//!   host can bind an address of it.
//! - `linux`: a real host (in the lab, a network namespace). A VIP is added to the interface that
//!   is on the VIP's network before the data plane binds it, announced with gratuitous ARP (IPv4)
//!   or unsolicited neighbour advertisements (IPv6, `ndp.rs`) once the data plane serves it, and
//!   removed when no device of the host serves it any more. Attaching a network gives the host's
//!   interface on that network's segment the port address the scheduler allocated, so members on
//!   the network are reached through it. The VIPs of ACTIVE_STANDBY pairs are left to keepalived
//!   (`vrrp.rs`), which the driver configures.
pub mod linux;
pub mod loopback;
pub mod ndp;
pub mod vrrp;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// What went wrong on the host's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The request cannot be met on this host (no interface on that network, say).
    #[error("{0}")]
    Unusable(String),
    /// A command that should have worked did not.
    #[error("{0}")]
    Failed(String),
}

/// A network driver: one per agent, shared by its devices.
#[async_trait::async_trait]
pub trait NetworkDriver: Send + Sync {
    fn name(&self) -> &'static str;

    /// Makes the host hold `vip` (idempotent). The data plane binds it next.
    async fn plug_vip(&self, vip: IpAddr) -> Result<(), NetworkError>;

    /// Tells the VIP's segment that this host holds `vip` now (gratuitous ARP for IPv4,
    /// unsolicited neighbour advertisements for IPv6).
    async fn announce_vip(&self, vip: IpAddr) -> Result<(), NetworkError>;

    /// Makes the host stop holding `vip` (succeeds when it does not).
    async fn unplug_vip(&self, vip: IpAddr) -> Result<(), NetworkError>;

    /// Joins the network `name` (`cidr`), with `address` (`a.b.c.d/prefix`, from the scheduler)
    /// as this host's port on it when given.
    async fn attach(
        &self,
        name: &str,
        cidr: ipnet::IpNet,
        address: Option<ipnet::IpNet>,
    ) -> Result<(), NetworkError>;

    /// Holds exactly these ACTIVE_STANDBY VIPs by VRRP (every device of the host together).
    async fn set_vrrp(&self, instances: Vec<vrrp::VrrpInstance>) -> Result<(), NetworkError> {
        if instances.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::Unusable(format!(
                "ACTIVE_STANDBY needs VRRP between hosts, which the {} network driver does not do (run the agent with --network-driver linux)",
                self.name()
            )))
        }
    }

    /// Stops what the driver runs beside the data plane (keepalived), on an explicit stop.
    async fn stop(&self) {}
}

/// The network drivers `--network-driver` accepts.
pub const KNOWN: &[&str] = &["loopback", "linux"];

/// Builds the named network driver; `interfaces` maps network names to this host's interfaces,
/// `state_dir` is where it keeps files (keepalived's), `host` names the host (VRRP's router id).
pub fn build(
    name: &str,
    interfaces: &HashMap<String, String>,
    state_dir: &std::path::Path,
    host: &str,
) -> Option<Arc<dyn NetworkDriver>> {
    match name {
        "loopback" => Some(Arc::new(loopback::Loopback)),
        "linux" => Some(Arc::new(linux::Linux::new(
            interfaces.clone(),
            vrrp::Keepalived::new(state_dir.join("keepalived"), host.to_owned()),
        ))),
        _ => None,
    }
}

/// The VIPs the host holds and which of its devices serve each: a VIP is plugged while at least
/// one device serves it (a drain or failover between two devices of one host must not unplug the
/// address the other device just took).
pub struct Vips {
    pub driver: Arc<dyn NetworkDriver>,
    holders: Mutex<HashMap<IpAddr, HashSet<String>>>,
    /// Each device's ACTIVE_STANDBY instances; the driver gets them all together.
    paired: tokio::sync::Mutex<HashMap<String, Vec<vrrp::VrrpInstance>>>,
}

impl Vips {
    pub fn new(driver: Arc<dyn NetworkDriver>) -> Self {
        Self {
            driver,
            holders: Mutex::new(HashMap::new()),
            paired: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Makes `device`'s ACTIVE_STANDBY instances exactly `instances`.
    pub async fn pair(
        &self,
        device: &str,
        instances: Vec<vrrp::VrrpInstance>,
    ) -> Result<(), NetworkError> {
        let mut paired = self.paired.lock().await;
        let before = paired.get(device).cloned().unwrap_or_default();
        if before == instances {
            return Ok(());
        }
        paired.insert(device.to_owned(), instances);
        let all: Vec<vrrp::VrrpInstance> = paired.values().flatten().cloned().collect();
        if let Err(e) = self.driver.set_vrrp(all).await {
            paired.insert(device.to_owned(), before);
            return Err(e);
        }
        Ok(())
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, HashSet<String>>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plugs every VIP of `vips` that `device` does not hold yet; returns those that were not
    /// held by `device` before (to announce once the data plane serves them).
    pub async fn hold(&self, device: &str, vips: &[IpAddr]) -> Result<Vec<IpAddr>, NetworkError> {
        let mut fresh = Vec::new();
        for vip in vips {
            let known = self.holders().get(vip).is_some_and(|h| h.contains(device));
            if known {
                continue;
            }
            self.driver.plug_vip(*vip).await?;
            self.holders()
                .entry(*vip)
                .or_default()
                .insert(device.to_owned());
            fresh.push(*vip);
        }
        Ok(fresh)
    }

    /// Announces VIPs the data plane serves now; failures are logged (the VIP still works for
    /// clients whose ARP cache is fresh, and the next apply announces again).
    pub async fn announce(&self, vips: &[IpAddr]) {
        for vip in vips {
            if let Err(e) = self.driver.announce_vip(*vip).await {
                tracing::warn!(%vip, error = %e, "cannot announce VIP");
            }
        }
    }

    /// Forgets every VIP `device` holds outside `keep`, unplugging those no device holds any
    /// more. Failures are logged: a stale address is harmless next to a working apply.
    pub async fn release_except(&self, device: &str, keep: &HashSet<IpAddr>) {
        let gone: Vec<IpAddr> = {
            let mut holders = self.holders();
            let mut gone = Vec::new();
            holders.retain(|vip, devices| {
                if !keep.contains(vip) {
                    devices.remove(device);
                }
                if devices.is_empty() {
                    gone.push(*vip);
                    false
                } else {
                    true
                }
            });
            gone
        };
        for vip in gone {
            match self.driver.unplug_vip(vip).await {
                Ok(()) => tracing::info!(%vip, "VIP released"),
                Err(e) => tracing::warn!(%vip, error = %e, "cannot release VIP"),
            }
        }
    }
}

/// Runs a command (an `ip` or `arping`), failing with its stderr.
pub(crate) async fn run(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| NetworkError::Failed(format!("{program} {} timed out", args.join(" "))))?
    .map_err(|e| NetworkError::Failed(format!("cannot run {program}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetworkError::Failed(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Records what it was asked to do.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl NetworkDriver for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn plug_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
            self.0.lock().unwrap().push(format!("plug {vip}"));
            Ok(())
        }
        async fn announce_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
            self.0.lock().unwrap().push(format!("announce {vip}"));
            Ok(())
        }
        async fn unplug_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
            self.0.lock().unwrap().push(format!("unplug {vip}"));
            Ok(())
        }
        async fn attach(
            &self,
            _: &str,
            _: ipnet::IpNet,
            _: Option<ipnet::IpNet>,
        ) -> Result<(), NetworkError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_vip_two_devices_hold_stays_until_both_let_go() {
        let recorder = Arc::new(Recorder::default());
        let vips = Vips::new(recorder.clone());
        let vip: IpAddr = "10.1.1.10".parse().unwrap();
        assert_eq!(vips.hold("a", &[vip]).await.unwrap(), vec![vip]);
        assert!(vips.hold("a", &[vip]).await.unwrap().is_empty());
        assert_eq!(vips.hold("b", &[vip]).await.unwrap(), vec![vip]);
        vips.release_except("a", &HashSet::new()).await;
        assert!(
            !recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.starts_with("unplug"))
        );
        vips.release_except("b", &HashSet::new()).await;
        assert_eq!(
            recorder.0.lock().unwrap().last().map(String::as_str),
            Some("unplug 10.1.1.10")
        );
    }
}
