//! Follows member health (and traffic counters) from the scheduler's health stream for as long as
//! the api runs, and records health as operating status (reconnecting with backoff when the scheduler is away).
use std::time::Duration;

use futures::StreamExt as _;
use lbaas::scheduler::v1::{WatchHealthRequest, scheduler_service_client::SchedulerServiceClient};
use tonic::transport::Channel;

use crate::store::Store;

pub async fn follow(
    store: Store,
    stats: crate::stats::StatsBook,
    scheduler: SchedulerServiceClient<Channel>,
) {
    let mut backoff =
        lbaas::server::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let mut client = scheduler.clone();
        match client.watch_health(WatchHealthRequest {}).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Some(report) = next_or_log(&mut stream, "health").await {
                    backoff.reset();
                    stats.record(&report);
                    match store.apply_health(&report).await {
                        Ok(0) => {}
                        Ok(changed) => {
                            tracing::info!(agent = %report.agent_id, load_balancers = changed, "member health changed")
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record member health"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler health stream unavailable; reconnecting")
            }
        }
        backoff.wait().await;
    }
}

/// Follows the scheduler's displaced load balancers (their device went DOWN) and fails each over,
/// once: a load balancer already failing over is left to finish.
pub async fn follow_displaced(
    store: Store,
    deployer: std::sync::Arc<crate::deployer::Deployer>,
    scheduler: SchedulerServiceClient<Channel>,
) {
    let mut backoff =
        lbaas::server::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let mut client = scheduler.clone();
        match client
            .watch_displaced(lbaas::scheduler::v1::WatchDisplacedRequest {})
            .await
        {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Some(displaced) = next_or_log(&mut stream, "displacement").await {
                    backoff.reset();
                    match store
                        .fail_over_displaced(&displaced.loadbalancer_id, &displaced.reason)
                        .await
                    {
                        Ok(true) => {
                            tracing::warn!(loadbalancer = %displaced.loadbalancer_id, reason = %displaced.reason, "failing over");
                            deployer.kick(&displaced.loadbalancer_id);
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot start a failover"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler displacement stream unavailable; reconnecting")
            }
        }
        backoff.wait().await;
    }
}

/// The next item of a followed stream; `None` when it ends or fails (the error is logged), and the
/// caller reconnects.
async fn next_or_log<T>(stream: &mut tonic::Streaming<T>, what: &str) -> Option<T> {
    match stream.next().await {
        Some(Ok(item)) => Some(item),
        Some(Err(status)) => {
            tracing::warn!(stream = what, error = %status, "scheduler stream failed; reconnecting");
            None
        }
        None => {
            tracing::info!(stream = what, "scheduler stream ended; reconnecting");
            None
        }
    }
}
