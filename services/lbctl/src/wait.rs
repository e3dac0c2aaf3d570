//! `--wait`: follows the owning load balancer's watch stream (`WatchLoadBalancer`), printing each
//! status change with the time since the wait began to stderr, until the change is live (ACTIVE
//! with the latest generation applied), the load balancer is gone (deletes), or it fails (ERROR).
use std::time::Duration;

use lbaas::api::v1 as pb;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;

use crate::{
    client::{Api, ApiError},
    enums,
};

/// The wait options of every command that changes something.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Wait for the change to be live on the data plane (or, for a delete, for the load balancer
    /// to be gone), printing each status change to stderr.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up (a non-zero exit).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub wait_timeout: u64,
}

/// What the wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// ACTIVE, with the latest generation applied.
    Active,
    /// The load balancer is gone.
    Deleted,
}

/// Waits (when asked) for load balancer `lb_id`.
pub async fn maybe(api: &Api, args: &WaitArgs, lb_id: &str, until: Until) -> anyhow::Result<()> {
    if args.wait {
        wait(api, lb_id, until, Duration::from_secs(args.wait_timeout)).await?;
    }
    Ok(())
}

struct Progress {
    started: Instant,
    last: Option<(i32, i32, String)>,
    status: String,
}

impl Progress {
    fn report(&mut self, lb: &pb::LoadBalancer) {
        let now = (
            lb.provisioning_status,
            lb.operating_status,
            lb.status_reason.clone(),
        );
        self.status = enums::name::<pb::ProvisioningStatus>(lb.provisioning_status);
        if self.last.as_ref() == Some(&now) {
            return;
        }
        let reason = if lb.status_reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", lb.status_reason)
        };
        eprintln!(
            "{:>7.2}s  {:<15} {}{reason}",
            self.started.elapsed().as_secs_f64(),
            self.status,
            enums::name::<pb::OperatingStatus>(lb.operating_status),
        );
        self.last = Some(now);
    }
}

/// Whether an error just means "watch again".
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
    )
}

pub async fn wait(api: &Api, lb_id: &str, until: Until, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    let goal = match until {
        Until::Active => "ACTIVE",
        Until::Deleted => "deleted",
    };
    eprintln!("waiting for load balancer {lb_id} to be {goal}");
    let mut progress = Progress {
        started,
        last: None,
        status: "unknown".into(),
    };
    let timed_out = |progress: &Progress| {
        anyhow::anyhow!(
            "timed out after {}s waiting for load balancer {lb_id} to be {goal} (it is {})",
            timeout.as_secs(),
            progress.status
        )
    };
    let done = |progress: &Progress| {
        eprintln!(
            "load balancer {lb_id} is {goal} after {:.2}s",
            progress.started.elapsed().as_secs_f64()
        );
        Ok(())
    };
    loop {
        let mut client = api.lb.clone();
        let watch = client.watch_load_balancer(pb::WatchLoadBalancerRequest {
            id: lb_id.to_owned(),
        });
        let mut events = match tokio::time::timeout_at(deadline, watch).await {
            Err(_) => return Err(timed_out(&progress)),
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status))
                if status.code() == tonic::Code::NotFound && until == Until::Deleted =>
            {
                return done(&progress);
            }
            Ok(Err(status)) if transient(&status) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Err(status)) => return Err(ApiError::from(status).into()),
        };
        loop {
            let next = match tokio::time::timeout_at(deadline, events.next()).await {
                Err(_) => return Err(timed_out(&progress)),
                Ok(next) => next,
            };
            let event = match next {
                // The stream ended (the api restarting, say): watch again.
                None => break,
                Some(Err(status)) if transient(&status) => break,
                Some(Err(status)) => return Err(ApiError::from(status).into()),
                Some(Ok(event)) => event,
            };
            let kind = event.kind();
            let Some(lb) = event.load_balancer else {
                continue;
            };
            progress.report(&lb);
            let status = lb.provisioning_status();
            if kind == pb::ChangeKind::Deleted || status == pb::ProvisioningStatus::Deleted {
                if until == Until::Deleted {
                    return done(&progress);
                }
                anyhow::bail!("load balancer {lb_id} was deleted");
            }
            if status == pb::ProvisioningStatus::Error {
                let reason = if lb.status_reason.is_empty() {
                    "no reason given".to_owned()
                } else {
                    lb.status_reason
                };
                anyhow::bail!("load balancer {lb_id} went into ERROR: {reason}");
            }
            if until == Until::Active
                && status == pb::ProvisioningStatus::Active
                && lb.applied_generation >= lb.generation
            {
                return done(&progress);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
