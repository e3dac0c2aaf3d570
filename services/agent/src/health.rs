//! Member health: polls every device's checks and publishes a whole report whenever anything
//! changed, so the scheduler and the api hear of a member going down within one poll.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use lbaas::agent::v1::{HealthReport, MemberHealthStatus};
use tokio::sync::watch;

use crate::service::Devices;

/// The latest report; `None` until the first poll.
pub type HealthFeed = watch::Receiver<Option<Arc<HealthReport>>>;

/// Polls the devices every `interval` until the returned task is aborted.
pub fn spawn(
    agent_id: String,
    devices: Devices,
    interval: Duration,
) -> (HealthFeed, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut last: Option<BTreeMap<String, (String, i32)>> = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut now = BTreeMap::new();
            for device in devices.values() {
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
                observed_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0),
            };
            last = Some(now);
            let _ = tx.send(Some(Arc::new(report)));
        }
    });
    (rx, task)
}
