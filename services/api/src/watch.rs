//! Watch streams. After each committed change the store publishes the load balancer's new state on
//! the change hub; watchers forward the states they care about, starting with the current one.
//! Changes made by other api replicas are caught by one re-reader per replica (not one per
//! watcher): while anyone watches, it reads the load balancer rows every second and publishes
//! those that changed or went. A watcher that falls behind the hub re-reads what it watches.
use std::{collections::HashMap, time::Duration};

use lbaas::api::v1::{self as pb, ChangeKind, LoadBalancerEvent};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::{error::ApiError, store::Store};

/// One changed load balancer: its state after the change, or `None` once it is gone.
#[derive(Debug, Clone)]
pub struct Change {
    pub project_id: String,
    pub loadbalancer_id: String,
    pub snapshot: Option<pb::LoadBalancer>,
}

#[derive(Clone)]
pub struct ChangeHub {
    sender: broadcast::Sender<Change>,
    /// Set at shutdown: watch streams end so the server can drain.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        // A watcher that falls this far behind re-reads what it watches.
        let (sender, _) = broadcast::channel(4096);
        let (closing, _) = tokio::sync::watch::channel(false);
        Self { sender, closing }
    }
}

impl ChangeHub {
    /// Ends every watch stream (at shutdown; clients reconnect to another replica).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Resolves when the hub closes.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    pub fn has_watchers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn publish(&self, change: Change) {
        // No receivers is normal: nobody is watching.
        let _ = self.sender.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

/// How often the replica's re-reader reads, to see changes made by other replicas.
pub const REREAD: Duration = Duration::from_secs(1);

/// The replica's one re-reader: while anyone watches, reads every load balancer row each `every`
/// and publishes on the hub those that changed or are gone since its last read (all of them on
/// its first read after nobody watched, since watchers ignore states they already sent).
pub async fn reread_forever(store: Store, every: Duration) {
    let mut known: Option<HashMap<String, crate::entity::load_balancer::Model>> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !store.hub.has_watchers() {
            known = None;
            continue;
        }
        let rows = match store.every_load_balancer_row().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "watch re-read failed");
                continue;
            }
        };
        let mut previous = known.take().unwrap_or_default();
        let mut now = HashMap::with_capacity(rows.len());
        for row in rows {
            let seen = previous.remove(&row.id);
            if seen.as_ref() != Some(&row)
                && let Ok(view) = store.view(row.clone()).await
            {
                store.hub.publish(Change {
                    project_id: row.project_id.clone(),
                    loadbalancer_id: row.id.clone(),
                    snapshot: Some(view.into_proto()),
                });
            }
            now.insert(row.id.clone(), row);
        }
        for (id, gone) in previous {
            store.hub.publish(Change {
                project_id: gone.project_id,
                loadbalancer_id: id,
                snapshot: None,
            });
        }
        known = Some(now);
    }
}

fn event(kind: ChangeKind, load_balancer: pb::LoadBalancer) -> LoadBalancerEvent {
    LoadBalancerEvent {
        kind: kind as i32,
        load_balancer: Some(load_balancer),
    }
}

fn deleted(mut last: pb::LoadBalancer) -> LoadBalancerEvent {
    last.provisioning_status = pb::ProvisioningStatus::Deleted as i32;
    event(ChangeKind::Deleted, last)
}

pub type EventStream = tokio_stream::wrappers::ReceiverStream<Result<LoadBalancerEvent, Status>>;

/// Every change of one load balancer, starting with its current state; ends after DELETED.
pub async fn watch_load_balancer(
    store: Store,
    project: String,
    id: String,
) -> Result<EventStream, ApiError> {
    let mut changes = store.hub.subscribe();
    let initial = store.get_load_balancer(&project, &id).await?.into_proto();
    let (tx, rx) = mpsc::channel(64);
    let closed = store.hub.closed();
    tokio::spawn(async move {
        tokio::pin!(closed);
        let mut last = initial.clone();
        if tx
            .send(Ok(event(ChangeKind::Initial, initial)))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let next: Option<Option<pb::LoadBalancer>> = tokio::select! {
                change = changes.recv() => match change {
                    Ok(c) if c.loadbalancer_id == id => Some(c.snapshot),
                    Ok(_) => None,
                    Err(broadcast::error::RecvError::Lagged(_)) => Some(reread(&store, &project, &id).await),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tx.closed() => return,
                () = &mut closed => return,
            };
            match next {
                None => {}
                Some(Some(now)) if now != last => {
                    last = now.clone();
                    if tx.send(Ok(event(ChangeKind::Updated, now))).await.is_err() {
                        return;
                    }
                }
                Some(Some(_)) => {}
                Some(None) => {
                    let _ = tx.send(Ok(deleted(last))).await;
                    return;
                }
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn reread(store: &Store, project: &str, id: &str) -> Option<pb::LoadBalancer> {
    store
        .get_load_balancer(project, id)
        .await
        .ok()
        .map(|v| v.into_proto())
}

/// Every change of every load balancer of a project, starting with their current states.
pub async fn watch_project(store: Store, project: String) -> Result<EventStream, ApiError> {
    let mut changes = store.hub.subscribe();
    let initial = store.all_load_balancers(&project).await?;
    let (tx, rx) = mpsc::channel(256);
    let closed = store.hub.closed();
    tokio::spawn(async move {
        tokio::pin!(closed);
        let mut last: HashMap<String, pb::LoadBalancer> = HashMap::new();
        for view in initial {
            let lb = view.into_proto();
            last.insert(lb.id.clone(), lb.clone());
            if tx.send(Ok(event(ChangeKind::Initial, lb))).await.is_err() {
                return;
            }
        }
        loop {
            let updates: Vec<(String, Option<pb::LoadBalancer>)> = tokio::select! {
                change = changes.recv() => match change {
                    Ok(c) if c.project_id == project => vec![(c.loadbalancer_id, c.snapshot)],
                    Ok(_) => Vec::new(),
                    Err(broadcast::error::RecvError::Lagged(_)) => reread_all(&store, &project, &last).await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tx.closed() => return,
                () = &mut closed => return,
            };
            for (id, snapshot) in updates {
                let message = match snapshot {
                    Some(now) if last.get(&id) != Some(&now) => {
                        last.insert(id, now.clone());
                        event(ChangeKind::Updated, now)
                    }
                    Some(_) => continue,
                    None => match last.remove(&id) {
                        Some(previous) => deleted(previous),
                        None => continue,
                    },
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn reread_all(
    store: &Store,
    project: &str,
    known: &HashMap<String, pb::LoadBalancer>,
) -> Vec<(String, Option<pb::LoadBalancer>)> {
    let Ok(current) = store.all_load_balancers(project).await else {
        return Vec::new();
    };
    let mut updates: Vec<(String, Option<pb::LoadBalancer>)> = Vec::new();
    let mut present = std::collections::HashSet::new();
    for view in current {
        let lb = view.into_proto();
        present.insert(lb.id.clone());
        updates.push((lb.id.clone(), Some(lb)));
    }
    for id in known.keys().filter(|id| !present.contains(*id)) {
        updates.push((id.clone(), None));
    }
    updates
}
