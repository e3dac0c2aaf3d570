//! Failover: devices whose agent stops heartbeating are marked DOWN after the timeout, and the load
//! balancers on them are announced as displaced, for the api to fail over onto healthy devices. A
//! circuit breaker holds automatic failover when more than a configured share of devices is DOWN at
//! once (a network partition or a scheduler problem is likelier than that many dead hosts).
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lbaas::scheduler::v1::Displaced;
use sea_orm::{
    ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _, sea_query::Expr,
};
use tokio::sync::broadcast;

use crate::{
    entity::{agent, binding, device},
    error::SchedulerError,
    now_ms,
};

const ARMED: &str = "armed: no device is DOWN";

pub struct FailoverMonitor {
    db: DatabaseConnection,
    agent_timeout_ms: i64,
    /// Above this share of devices DOWN, automatic failover holds.
    max_down_share: f64,
    sender: broadcast::Sender<Displaced>,
    breaker_open: AtomicBool,
    /// The breaker's state in words, for the provider API.
    status: std::sync::Mutex<String>,
}

impl FailoverMonitor {
    pub fn new(db: DatabaseConnection, agent_timeout_ms: i64, max_down_share: f64) -> Arc<Self> {
        let (sender, _) = broadcast::channel(1024);
        Arc::new(Self {
            db,
            agent_timeout_ms,
            max_down_share,
            sender,
            breaker_open: AtomicBool::new(false),
            status: std::sync::Mutex::new(ARMED.to_owned()),
        })
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker_open.load(Ordering::Relaxed)
    }

    /// Whether automatic failover holds, and why (or that it is armed).
    pub fn status(&self) -> (bool, String) {
        let text = self
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        (self.breaker_open(), text)
    }

    fn set_status(&self, text: String) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    /// Checks every `interval` until aborted.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "failover check failed");
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Marks the devices of silent agents DOWN and announces what they hosted.
    pub async fn check(&self) -> Result<(), SchedulerError> {
        let silent_since = now_ms() - self.agent_timeout_ms;
        let silent: Vec<String> = agent::Entity::find()
            .filter(agent::Column::LastHeartbeatMs.lt(silent_since))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect();
        if !silent.is_empty() {
            let newly_down = device::Entity::find()
                .filter(device::Column::AgentId.is_in(silent.clone()))
                .filter(device::Column::State.ne("DOWN"))
                .all(&self.db)
                .await?;
            if !newly_down.is_empty() {
                device::Entity::update_many()
                    .col_expr(device::Column::State, Expr::value("DOWN"))
                    .filter(device::Column::Id.is_in(newly_down.iter().map(|d| d.id.clone())))
                    .exec(&self.db)
                    .await?;
                for d in &newly_down {
                    tracing::warn!(device = %d.id, agent = %d.agent_id, timeout_ms = self.agent_timeout_ms, "device DOWN: its agent stopped heartbeating");
                }
            }
        }
        let displaced = self.displaced().await?;
        for d in displaced {
            let _ = self.sender.send(d);
        }
        Ok(())
    }

    /// Every load balancer on a DRAINING device, and on a DOWN one unless the breaker is open.
    pub async fn displaced(&self) -> Result<Vec<Displaced>, SchedulerError> {
        let devices = device::Entity::find().all(&self.db).await?;
        let draining: HashSet<String> = devices
            .iter()
            .filter(|d| d.state == "DRAINING")
            .map(|d| d.id.clone())
            .collect();
        let mut moving = if draining.is_empty() {
            Vec::new()
        } else {
            self.bound_to(draining, "is draining").await?
        };
        let down: HashSet<String> = devices
            .iter()
            .filter(|d| d.state == "DOWN")
            .map(|d| d.id.clone())
            .collect();
        if down.is_empty() {
            self.breaker_open.store(false, Ordering::Relaxed);
            self.set_status(ARMED.to_owned());
            return Ok(moving);
        }
        let share = down.len() as f64 / devices.len().max(1) as f64;
        let open = share > self.max_down_share;
        self.set_status(if open {
            format!(
                "automatic failover held: {} of {} devices DOWN ({:.0}%, over the {:.0}% limit)",
                down.len(),
                devices.len(),
                share * 100.0,
                self.max_down_share * 100.0
            )
        } else {
            format!(
                "armed: {} of {} devices DOWN, their load balancers fail over",
                down.len(),
                devices.len()
            )
        });
        if open != self.breaker_open.swap(open, Ordering::Relaxed) {
            if open {
                tracing::error!(
                    down = down.len(),
                    devices = devices.len(),
                    max_share = self.max_down_share,
                    "failover circuit breaker OPEN: too many devices DOWN at once, automatic failover holds"
                );
            } else {
                tracing::info!("failover circuit breaker closed: automatic failover resumes");
            }
        }
        if !open {
            moving.extend(self.bound_to(down, "is DOWN").await?);
        }
        Ok(moving)
    }

    /// The load balancers bound to `devices`, and those whose ACTIVE_STANDBY standby is there
    /// (the failover replaces the standby).
    async fn bound_to(
        &self,
        devices: HashSet<String>,
        why: &str,
    ) -> Result<Vec<Displaced>, SchedulerError> {
        let mut displaced: Vec<Displaced> = binding::Entity::find()
            .filter(binding::Column::DeviceId.is_in(devices.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|b| Displaced {
                loadbalancer_id: b.loadbalancer_id,
                device_id: b.device_id.clone(),
                reason: format!("device {} {why}", b.device_id),
            })
            .collect();
        for s in crate::entity::standby::Entity::find()
            .filter(crate::entity::standby::Column::DeviceId.is_in(devices))
            .all(&self.db)
            .await?
        {
            if !displaced
                .iter()
                .any(|d| d.loadbalancer_id == s.loadbalancer_id)
            {
                displaced.push(Displaced {
                    loadbalancer_id: s.loadbalancer_id,
                    reason: format!("its standby device {} {why}", s.device_id),
                    device_id: s.device_id,
                });
            }
        }
        Ok(displaced)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Displaced> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sea_orm::{ActiveModelTrait as _, Set};
    use sea_orm_migration::MigratorTrait as _;

    use super::*;

    async fn registry(devices: &[(&str, &str, i64)]) -> DatabaseConnection {
        // A file, not :memory: (each pooled connection would get a database of its own).
        let path = std::env::temp_dir().join(format!("lbaas-failover-{}.db", uuid::Uuid::new_v4()));
        let db = lbaas::server::connect_database(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        crate::migration::Migrator::up(&db, None).await.unwrap();
        for (id, agent_id, heard_ms_ago) in devices {
            agent::ActiveModel {
                id: Set((*agent_id).into()),
                address: Set("http://127.0.0.1:1".into()),
                last_heartbeat_ms: Set(now_ms() - heard_ms_ago),
                drivers: Set(String::new()),
            }
            .insert(&db)
            .await
            .unwrap();
            device::ActiveModel {
                id: Set((*id).into()),
                driver: Set("noop".into()),
                agent_id: Set((*agent_id).into()),
                capacity: Set(10),
                vip_cidr: Set("127.0.10.0/24".into()),
                is_virtual: Set(true),
                state: Set("ACTIVE".into()),
                labels: Set(String::new()),
                created_ms: Set(0),
                networks: Set(String::new()),
                on_demand: Set(false),
                capabilities: Set(String::new()),
            }
            .insert(&db)
            .await
            .unwrap();
            binding::ActiveModel {
                loadbalancer_id: Set(format!("lb-on-{id}")),
                device_id: Set((*id).into()),
                project_id: Set("p".into()),
                vip_address: Set(format!("127.0.10.{}", id.len())),
                strategy: Set("least-loaded".into()),
                created_ms: Set(0),
                availability_zone: Set(String::new()),
                flavor: Set(String::new()),
            }
            .insert(&db)
            .await
            .unwrap();
        }
        db
    }

    #[tokio::test]
    async fn silent_agents_devices_go_down_and_their_load_balancers_are_displaced() {
        let db = registry(&[("d1", "a1", 60_000), ("d22", "a2", 0), ("d333", "a3", 0)]).await;
        let monitor = FailoverMonitor::new(db.clone(), 5_000, 0.5);
        monitor.check().await.unwrap();
        let d1 = device::Entity::find_by_id("d1")
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d1.state, "DOWN");
        let displaced = monitor.displaced().await.unwrap();
        assert_eq!(
            displaced
                .iter()
                .map(|d| d.loadbalancer_id.as_str())
                .collect::<Vec<_>>(),
            vec!["lb-on-d1"]
        );
        assert!(!monitor.breaker_open());
        assert_eq!(
            monitor.status(),
            (
                false,
                "armed: 1 of 3 devices DOWN, their load balancers fail over".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn the_breaker_holds_failover_when_too_many_devices_are_down() {
        let db = registry(&[
            ("d1", "a1", 60_000),
            ("d22", "a2", 60_000),
            ("d333", "a3", 0),
        ])
        .await;
        let monitor = FailoverMonitor::new(db.clone(), 5_000, 0.5);
        monitor.check().await.unwrap();
        assert!(monitor.breaker_open(), "2 of 3 devices down is over half");
        assert!(monitor.displaced().await.unwrap().is_empty());
        let (held, why) = monitor.status();
        assert!(held);
        assert_eq!(
            why,
            "automatic failover held: 2 of 3 devices DOWN (67%, over the 50% limit)"
        );
    }
}
