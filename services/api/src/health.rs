//! Follows member health from the scheduler's health stream for as long as the api runs, and
//! records it as operating status (reconnecting with backoff when the scheduler is away).
use std::time::Duration;

use futures::StreamExt as _;
use lbaas::scheduler::v1::{WatchHealthRequest, scheduler_service_client::SchedulerServiceClient};
use tonic::transport::Channel;

use crate::store::Store;

pub async fn follow(store: Store, scheduler: SchedulerServiceClient<Channel>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut client = scheduler.clone();
        match client.watch_health(WatchHealthRequest {}).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Some(Ok(report)) = stream.next().await {
                    backoff = Duration::from_millis(50);
                    match store.apply_health(&report).await {
                        Ok(0) => {}
                        Ok(changed) => {
                            tracing::info!(agent = %report.agent_id, load_balancers = changed, "member health changed")
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record member health"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler health stream unavailable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
