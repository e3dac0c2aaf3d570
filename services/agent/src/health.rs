//! Member health, traffic counters and data plane supervision: polls every device (restarting a
//! data plane that died) and publishes a whole report whenever a member's health changed, so the
//! scheduler and the api hear of a member going down within one poll, and every stats interval
//! in any case (fresh counters; and a receiver that lost an update is put right). Counters are kept rising: when a data plane's counter goes back
//! (a reload started a new HAProxy worker, a native listener was rebuilt), what it had counted is
//! carried over.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use lbaas::agent::v1::{HealthReport, ListenerStats, MemberHealthStatus};
use tokio::sync::watch;

use crate::service::Devices;

/// The latest report; `None` until the first poll.
pub type HealthFeed = watch::Receiver<Option<Arc<HealthReport>>>;

/// Counters that never go back, per (device, listener).
#[derive(Default)]
struct Rising {
    /// The last raw reading and what earlier runs of the data plane had counted.
    seen: HashMap<(String, String), (ListenerStats, ListenerStats)>,
}

impl Rising {
    fn add(total: &ListenerStats, more: &ListenerStats) -> ListenerStats {
        ListenerStats {
            listener_id: more.listener_id.clone(),
            bytes_in: total.bytes_in + more.bytes_in,
            bytes_out: total.bytes_out + more.bytes_out,
            active_connections: more.active_connections,
            total_connections: total.total_connections + more.total_connections,
            request_errors: total.request_errors + more.request_errors,
        }
    }

    /// One device's raw reading, as counters that only rise.
    fn read(&mut self, device: &str, raw: Vec<ListenerStats>) -> Vec<ListenerStats> {
        let present: std::collections::HashSet<String> =
            raw.iter().map(|r| r.listener_id.clone()).collect();
        self.seen
            .retain(|(d, l), _| d != device || present.contains(l));
        raw.into_iter()
            .map(|r| {
                let key = (device.to_owned(), r.listener_id.clone());
                let (last, carried) = self.seen.entry(key).or_default();
                let went_back = r.bytes_in < last.bytes_in
                    || r.bytes_out < last.bytes_out
                    || r.total_connections < last.total_connections
                    || r.request_errors < last.request_errors;
                if went_back {
                    *carried = Self::add(carried, last);
                }
                *last = r.clone();
                Self::add(carried, &r)
            })
            .collect()
    }
}

/// Polls the devices every `interval`, once `ready` fires (the devices are restored), until the
/// returned task is aborted; counters go out at least every `stats_interval` while they move.
pub fn spawn(
    agent_id: String,
    devices: Devices,
    interval: Duration,
    stats_interval: Duration,
    ready: tokio::sync::oneshot::Receiver<()>,
) -> (HealthFeed, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        if ready.await.is_err() {
            return;
        }
        let mut last: Option<BTreeMap<String, (String, i32)>> = None;
        let mut rising = Rising::default();
        let mut traffic = crate::metrics::Traffic::default();
        let mut stats_sent = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut now = BTreeMap::new();
            let mut listeners = Vec::new();
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
                        crate::metrics::export_members(&device.id, &members);
                        for m in members {
                            now.insert(m.member_id, (m.pool_id, m.health));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(device = %device.id, error = %e, "cannot read member health")
                    }
                }
                match device.driver.stats().await {
                    Ok(raw) => {
                        let totals = rising.read(&device.id, raw);
                        traffic.export(&device.listener_owners(), &totals);
                        listeners.extend(totals);
                    }
                    Err(e) => {
                        tracing::debug!(device = %device.id, error = %e, "cannot read counters")
                    }
                }
            }
            listeners.sort_by(|a, b| a.listener_id.cmp(&b.listener_id));
            // The whole truth goes out every stats interval even when nothing moved: a receiver
            // that lost an update is put right within one interval.
            let stats_due = stats_sent.elapsed() >= stats_interval;
            if last.as_ref() == Some(&now) && !stats_due {
                continue;
            }
            stats_sent = Instant::now();
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
                listeners,
            };
            last = Some(now);
            let _ = tx.send(Some(Arc::new(report)));
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bytes: u64, total: u64, active: u64) -> ListenerStats {
        ListenerStats {
            listener_id: "l".into(),
            bytes_in: bytes,
            bytes_out: bytes * 2,
            active_connections: active,
            total_connections: total,
            request_errors: 0,
        }
    }

    #[test]
    fn counters_keep_rising_across_a_reload() {
        let mut rising = Rising::default();
        assert_eq!(
            rising.read("d", vec![raw(100, 10, 2)]),
            vec![raw(100, 10, 2)]
        );
        assert_eq!(
            rising.read("d", vec![raw(150, 12, 1)]),
            vec![raw(150, 12, 1)]
        );
        // A new worker starts from zero: what the old one counted is carried over.
        assert_eq!(rising.read("d", vec![raw(20, 1, 1)]), vec![raw(170, 13, 1)]);
        assert_eq!(rising.read("d", vec![raw(30, 2, 0)]), vec![raw(180, 14, 0)]);
        // Another device's listener of the same id counts apart.
        assert_eq!(rising.read("e", vec![raw(5, 1, 0)]), vec![raw(5, 1, 0)]);
    }
}
