//! The health relay: follows every agent's health stream and fans the reports out to the api
//! replicas that watch, each of which first gets the latest report of every agent.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt as _;
use lbaas::agent::v1::{HealthReport, WatchHealthRequest};
use tokio::{sync::broadcast, task::JoinHandle};

use crate::deploy::AgentClients;

type Latest = Arc<Mutex<HashMap<String, Arc<HealthReport>>>>;

pub struct HealthRelay {
    latest: Latest,
    sender: broadcast::Sender<Arc<HealthReport>>,
    agents: Arc<AgentClients>,
    followers: Mutex<HashMap<String, (String, JoinHandle<()>)>>,
}

impl Drop for HealthRelay {
    fn drop(&mut self) {
        if let Ok(followers) = self.followers.lock() {
            for (_, task) in followers.values() {
                task.abort();
            }
        }
    }
}

impl HealthRelay {
    pub fn new(agents: Arc<AgentClients>) -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self {
            latest: Arc::default(),
            sender,
            agents,
            followers: Mutex::new(HashMap::new()),
        }
    }

    /// Follows an agent's health stream (again, if its address changed).
    pub fn follow(&self, agent_id: &str, address: &str) {
        let Ok(mut followers) = self.followers.lock() else {
            return;
        };
        if followers
            .get(agent_id)
            .is_some_and(|(known, task)| known == address && !task.is_finished())
        {
            return;
        }
        let Ok(client) = self.agents.client(address) else {
            tracing::warn!(agent = %agent_id, %address, "cannot follow the health of an agent with a bad address");
            return;
        };
        let (latest, sender, id) = (
            self.latest.clone(),
            self.sender.clone(),
            agent_id.to_owned(),
        );
        let task = tokio::spawn(async move {
            let mut backoff =
                lbaas::server::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
            loop {
                let mut client = client.clone();
                match client.watch_health(WatchHealthRequest {}).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            let report = match stream.next().await {
                                Some(Ok(report)) => report,
                                Some(Err(status)) => {
                                    tracing::warn!(agent = %id, error = %status, "health stream failed; reconnecting");
                                    break;
                                }
                                None => {
                                    tracing::info!(agent = %id, "health stream ended; reconnecting");
                                    break;
                                }
                            };
                            backoff.reset();
                            let report = Arc::new(report);
                            if let Ok(mut latest) = latest.lock() {
                                latest.insert(id.clone(), report.clone());
                            }
                            let _ = sender.send(report);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(agent = %id, error = %e, "health stream unavailable; reconnecting")
                    }
                }
                backoff.wait().await;
            }
        });
        if let Some((_, old)) = followers.insert(agent_id.to_owned(), (address.to_owned(), task)) {
            old.abort();
        }
    }

    /// The latest report of every agent, and the reports to come.
    pub fn subscribe(
        &self,
    ) -> (
        Vec<Arc<HealthReport>>,
        broadcast::Receiver<Arc<HealthReport>>,
    ) {
        let receiver = self.sender.subscribe();
        let latest = self
            .latest
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        (latest, receiver)
    }
}
