//! Member health and data plane supervision: polls every device (restarting a data plane that
//! died) and publishes a whole health report whenever anything changed, so the scheduler and the
//! api hear of a member going down within one poll.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lbaas::agent::v1::{HealthReport, MemberHealthStatus};
use tokio::sync::watch;

use crate::service::Devices;

/// The latest report; `None` until the first poll.
pub type HealthFeed = watch::Receiver<Option<Arc<HealthReport>>>;

/// Polls the devices every `interval`, once `ready` fires (the devices are restored), until the
/// returned task is aborted.
pub fn spawn(
    agent_id: String,
    devices: Devices,
    interval: Duration,
    ready: tokio::sync::oneshot::Receiver<()>,
) -> (HealthFeed, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        if ready.await.is_err() {
            return;
        }
        let mut last: Option<BTreeMap<String, (String, i32)>> = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut now = BTreeMap::new();
            for device in devices.values() {
                // A data plane that died is brought back before its health is read.
                match device.driver.recover().await {
                    Ok(true) => {
                        tracing::warn!(device = %device.id, "the data plane had died; restarted it with every load balancer")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(device = %device.id, error = %e, "the data plane is down and could not be restarted")
                    }
                }
                match device.driver.member_health().await {
                    Ok(members) => {
                        for m in members {
                            now.insert(m.member_id, (m.pool_id, m.health));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(device = %device.id, error = %e, "cannot read member health")
                    }
                }
            }
            if last.as_ref() == Some(&now) {
                continue;
            }
            let report = HealthReport {
                agent_id: agent_id.clone(),
                members: now
                    .iter()
                    .map(|(member_id, (pool_id, health))| MemberHealthStatus {
                        pool_id: pool_id.clone(),
                        member_id: member_id.clone(),
                        health: *health,
                    })
                    .collect(),
                observed_ms: lbaas::server::now_ms(),
            };
            last = Some(now);
            let _ = tx.send(Some(Arc::new(report)));
        }
    });
    (rx, task)
}
