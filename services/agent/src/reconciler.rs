//! The agent's reconciler: per device, the desired and applied config of every load balancer it
//! hosts. Applies are coalesced: whoever holds the device lock applies everything desired so far,
//! so a burst of changes costs one driver apply, and a generation already applied is a no-op.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use lbaas::agent::v1::{AppliedState, ApplyRequest, LoadBalancerConfig};
use prost::Message as _;

use crate::driver::{Driver, DriverError};

/// What became of one apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The device now runs this generation (or a batch that included it).
    Applied,
    /// This generation (or a newer one) was already applied: nothing was done.
    AlreadyApplied,
    /// A newer generation arrived before this one was applied; it carries on.
    Superseded { by: i64 },
}

#[derive(Default)]
struct Slots {
    desired: BTreeMap<String, (i64, LoadBalancerConfig)>,
    applied: HashMap<String, (i64, LoadBalancerConfig)>,
}

/// One device and the load balancers on it.
pub struct DeviceReconciler {
    pub id: String,
    pub driver: Arc<dyn Driver>,
    slots: Mutex<Slots>,
    /// Held while the driver applies, so applies on one device never interleave.
    apply_lock: tokio::sync::Mutex<()>,
    state_file: PathBuf,
    /// The host's VIPs: those of the desired load balancers are plugged before the driver binds
    /// them and announced once it serves them; those of removed ones are unplugged.
    vips: Arc<crate::network::Vips>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("agent state lock poisoned")]
    Poisoned,
    #[error("host network: {0}")]
    Network(#[from] crate::network::NetworkError),
}

impl DeviceReconciler {
    pub fn new(
        id: String,
        driver: Arc<dyn Driver>,
        state_file: PathBuf,
        vips: Arc<crate::network::Vips>,
    ) -> Self {
        Self {
            id,
            driver,
            slots: Mutex::new(Slots::default()),
            apply_lock: tokio::sync::Mutex::new(()),
            state_file,
            vips,
        }
    }

    /// Starts the device and restores every load balancer recorded as applied, before the agent
    /// reports ready.
    pub async fn restore(&self) -> Result<usize, ReconcileError> {
        let saved = std::fs::read(&self.state_file)
            .ok()
            .and_then(|bytes| AppliedState::decode(bytes.as_slice()).ok())
            .unwrap_or_default();
        {
            let mut slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            for request in saved.load_balancers {
                if let Some(config) = request.config {
                    slots
                        .desired
                        .insert(config.id.clone(), (request.generation, config));
                }
            }
        }
        self.driver.start().await?;
        let _guard = self.apply_lock.lock().await;
        self.apply_desired().await?;
        let slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
        Ok(slots.applied.len())
    }

    /// Applies one load balancer's desired config at `generation`.
    pub async fn apply(
        &self,
        generation: i64,
        config: LoadBalancerConfig,
    ) -> Result<ApplyOutcome, ReconcileError> {
        let id = config.id.clone();
        let config_for_retry = config.clone();
        {
            let mut slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            if slots
                .applied
                .get(&id)
                .is_some_and(|(g, _)| *g >= generation)
            {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            match slots.desired.get(&id) {
                Some((g, _)) if *g > generation => return Ok(ApplyOutcome::Superseded { by: *g }),
                _ => {
                    slots.desired.insert(id.clone(), (generation, config));
                }
            }
        }
        let _guard = self.apply_lock.lock().await;
        {
            let mut slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            // Another apply took the lock first and applied everything desired, ours included.
            if slots
                .applied
                .get(&id)
                .is_some_and(|(g, _)| *g >= generation)
            {
                return Ok(ApplyOutcome::Applied);
            }
            if let Some((g, _)) = slots.desired.get(&id).filter(|(g, _)| *g > generation) {
                return Ok(ApplyOutcome::Superseded { by: *g });
            }
            // An apply that failed while we waited rewound the desired set, ours with it: this
            // apply is still asked for, so it goes in again. Without this, the apply below ran
            // without our config and reported it applied (a load balancer the device refused
            // went ACTIVE when a retry overlapped the failing attempt).
            if slots.desired.get(&id).is_none_or(|(g, _)| *g < generation) {
                slots
                    .desired
                    .insert(id.clone(), (generation, config_for_retry));
            }
        }
        self.apply_desired().await?;
        Ok(ApplyOutcome::Applied)
    }

    /// Removes a load balancer from the device. Removing one that is not there succeeds.
    pub async fn remove(&self, id: &str) -> Result<bool, ReconcileError> {
        let existed = {
            let mut slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            slots.desired.remove(id).is_some() | slots.applied.contains_key(id)
        };
        let _guard = self.apply_lock.lock().await;
        self.apply_desired().await?;
        Ok(existed)
    }

    /// Listener id -> load balancer id, for what is applied.
    pub fn listener_owners(&self) -> std::collections::HashMap<String, String> {
        self.slots
            .lock()
            .map(|s| {
                s.applied
                    .iter()
                    .flat_map(|(lb, (_, c))| {
                        c.listeners.iter().map(move |l| (l.id.clone(), lb.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The applied generation of every load balancer on the device.
    pub fn applied_generations(&self) -> Vec<(String, i64)> {
        self.slots
            .lock()
            .map(|s| {
                s.applied
                    .iter()
                    .map(|(id, (g, _))| (id.clone(), *g))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies everything desired. On failure the load balancers whose change failed go back to
    /// their last applied config, so one bad change does not block the next apply.
    async fn apply_desired(&self) -> Result<(), ReconcileError> {
        let snapshot: Vec<(String, i64, LoadBalancerConfig)> = {
            let slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            slots
                .desired
                .iter()
                .map(|(id, (g, c))| (id.clone(), *g, c.clone()))
                .collect()
        };
        let configs: Vec<LoadBalancerConfig> = snapshot.iter().map(|(_, _, c)| c.clone()).collect();
        // ACTIVE_STANDBY VIPs are held by VRRP (keepalived); the others the agent plugs.
        let wanted: Vec<std::net::IpAddr> = configs
            .iter()
            .filter(|c| c.vrrp.is_none())
            .flat_map(vips_of)
            .collect();
        let started = std::time::Instant::now();
        // The VIPs go on the host before the data plane binds them.
        let held = match self.vips.hold(&self.id, &wanted).await {
            Ok(fresh) => self
                .vips
                .pair(&self.id, paired(&configs))
                .await
                .map(|()| fresh),
            Err(e) => Err(e),
        };
        let result = match held {
            Ok(fresh) => self
                .driver
                .apply(&configs)
                .await
                .map(|()| fresh)
                .map_err(ReconcileError::Driver),
            Err(e) => Err(ReconcileError::Network(e)),
        };
        crate::metrics::record_apply(&self.id, result.is_ok(), started.elapsed().as_secs_f64());
        let outcome = {
            let mut slots = self.slots.lock().map_err(|_| ReconcileError::Poisoned)?;
            match result {
                Ok(fresh) => {
                    slots.applied = snapshot
                        .into_iter()
                        .map(|(id, g, c)| (id, (g, c)))
                        .collect();
                    Ok((
                        fresh,
                        AppliedState {
                            load_balancers: slots
                                .applied
                                .values()
                                .map(|(g, c)| ApplyRequest {
                                    device_id: self.id.clone(),
                                    generation: *g,
                                    config: Some(c.clone()),
                                })
                                .collect(),
                        },
                    ))
                }
                Err(e) => {
                    rewind(&mut slots, &snapshot);
                    let still: std::collections::HashSet<std::net::IpAddr> = slots
                        .applied
                        .values()
                        .filter(|(_, c)| c.vrrp.is_none())
                        .flat_map(|(_, c)| vips_of(c))
                        .collect();
                    let applied: Vec<LoadBalancerConfig> =
                        slots.applied.values().map(|(_, c)| c.clone()).collect();
                    Err((e, still, paired(&applied)))
                }
            }
        };
        let saved = match outcome {
            Ok((fresh, saved)) => {
                // The data plane serves the new VIPs now: tell their segment, and let go of the
                // VIPs of load balancers that left.
                if !fresh.is_empty() {
                    let vips = self.vips.clone();
                    tokio::spawn(async move { vips.announce(&fresh).await });
                }
                self.vips
                    .release_except(&self.id, &wanted.iter().copied().collect())
                    .await;
                saved
            }
            Err((e, still, pairs)) => {
                // VIPs plugged for changes that failed go again; those still served stay.
                self.vips.release_except(&self.id, &still).await;
                if let Err(again) = self.vips.pair(&self.id, pairs).await {
                    tracing::warn!(device = %self.id, error = %again, "cannot restore VRRP");
                }
                return Err(e);
            }
        };
        // The state holds TLS private keys: 0600 in a 0700 folder, durably, off the runtime.
        // Applies hold the apply lock, so saves never overtake one another.
        if let Err(e) = crate::private_files::write_private_async(
            self.state_file.clone(),
            saved.encode_to_vec(),
        )
        .await
        {
            tracing::warn!(device = %self.id, error = %e, "cannot persist applied state");
        }
        Ok(())
    }
}

/// Every address a load balancer serves on: its VIP and its additional VIPs.
fn vips_of(config: &LoadBalancerConfig) -> Vec<std::net::IpAddr> {
    std::iter::once(&config.vip_address)
        .chain(&config.additional_vip_addresses)
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The ACTIVE_STANDBY side of every config that has one.
fn paired(configs: &[LoadBalancerConfig]) -> Vec<crate::network::vrrp::VrrpInstance> {
    configs
        .iter()
        .filter_map(|c| {
            Some(crate::network::vrrp::VrrpInstance {
                loadbalancer_id: c.id.clone(),
                vip: c.vip_address.parse().ok()?,
                config: c.vrrp.clone()?,
            })
        })
        .collect()
}

/// After a failed apply, the load balancers whose change failed go back to their last applied
/// config (or away, if they were never applied).
fn rewind(slots: &mut Slots, snapshot: &[(String, i64, LoadBalancerConfig)]) {
    for (id, generation, _) in snapshot {
        let previous = slots.applied.get(id).cloned();
        if previous.as_ref().map(|(g, _)| g) != Some(generation) {
            match previous {
                Some(p) => {
                    slots.desired.insert(id.clone(), p);
                }
                None => {
                    slots.desired.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn loopback() -> Arc<crate::network::Vips> {
        Arc::new(crate::network::Vips::new(Arc::new(
            crate::network::loopback::Loopback,
        )))
    }
    use crate::driver::{DriverOptions, noop::NoopDriver};

    fn config(id: &str) -> LoadBalancerConfig {
        LoadBalancerConfig {
            id: id.into(),
            ..Default::default()
        }
    }

    fn reconciler(dir: &std::path::Path) -> DeviceReconciler {
        let options = DriverOptions {
            device_id: "d".into(),
            state_dir: dir.into(),
            haproxy_bin: "haproxy".into(),
            noop_apply_delay: std::time::Duration::ZERO,
            dataplane: Vec::new(),
        };
        DeviceReconciler::new(
            "d".into(),
            Arc::new(NoopDriver::new(&options)),
            dir.join("state.pb"),
            loopback(),
        )
    }

    #[tokio::test]
    async fn same_generation_twice_is_a_no_op_and_state_survives_restart() {
        let dir = std::env::temp_dir().join(format!("lbaas-reconciler-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = reconciler(&dir);
        assert_eq!(
            r.apply(1, config("a")).await.unwrap(),
            ApplyOutcome::Applied
        );
        assert_eq!(
            r.apply(1, config("a")).await.unwrap(),
            ApplyOutcome::AlreadyApplied
        );
        assert_eq!(
            r.apply(2, config("b")).await.unwrap(),
            ApplyOutcome::Applied
        );
        let restarted = reconciler(&dir);
        assert_eq!(restarted.restore().await.unwrap(), 2);
        assert!(restarted.remove("a").await.unwrap());
        assert_eq!(restarted.applied_generations(), vec![("b".to_string(), 2)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Refuses, after a moment, every apply that holds a load balancer named "doomed".
    struct Refusing;

    #[async_trait::async_trait]
    impl crate::driver::Driver for Refusing {
        fn name(&self) -> &'static str {
            "refusing"
        }
        fn capabilities(&self) -> Vec<String> {
            Vec::new()
        }
        async fn start(&self) -> Result<(), DriverError> {
            Ok(())
        }
        async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if desired.iter().any(|c| c.id == "doomed") {
                return Err(DriverError::Unavailable("port in use".into()));
            }
            Ok(())
        }
        async fn health(&self) -> crate::driver::DeviceHealth {
            crate::driver::DeviceHealth {
                healthy: true,
                detail: String::new(),
            }
        }
        async fn stop(&self) -> Result<(), DriverError> {
            Ok(())
        }
    }

    /// A retry that waits for the lock while the same apply fails must fail too: the failure
    /// rewinds the desired set, and the retry used to apply what was left and report success.
    #[tokio::test]
    async fn a_retry_overlapping_a_failing_apply_is_not_reported_applied() {
        let dir = std::env::temp_dir().join(format!("lbaas-reconciler-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = Arc::new(DeviceReconciler::new(
            "d".into(),
            Arc::new(Refusing),
            dir.join("state.pb"),
            loopback(),
        ));
        let first = tokio::spawn({
            let r = r.clone();
            async move { r.apply(1, config("doomed")).await }
        });
        // The retry arrives while the first apply holds the device.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let retry = r.apply(1, config("doomed")).await;
        assert!(first.await.unwrap().is_err());
        assert!(retry.is_err(), "the retry was reported {retry:?}");
        assert!(r.applied_generations().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
