//! The deployer: one worker per load balancer with a change to apply. Changes that arrive while a
//! deploy is in flight are coalesced into the next deploy, which always carries the latest
//! generation; a sweep re-drives anything still pending (after a restart or a lost stream), and a
//! change that cannot be applied before its deadline goes to ERROR with the reason.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt as _;
use lbaas::{
    agent::v1::ApplyPhase,
    scheduler::v1::{
        DeployRequest, UndeployRequest, deploy_event::Event,
        scheduler_service_client::SchedulerServiceClient,
    },
};
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::{
    error::ApiError,
    now_ms,
    store::{ACTIVE, ERROR, PENDING_DELETE, Store},
};

const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// The shortest attempt a deploy gets, even past its deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

struct Worker {
    dirty: AtomicBool,
    wake: Notify,
}

/// What one convergence attempt ended with.
enum Attempt {
    /// Nothing left to do for now.
    Settled,
    /// A transient failure: try again after a pause, unless the deadline passed.
    Retry(String),
}

/// What a load balancer asks of its placement, checked with the scheduler before anything is
/// stored (`Deployer::validate_placement`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlacementCheck<'a> {
    pub flavor: &'a str,
    pub availability_zone: &'a str,
    pub vip_network: &'a str,
    pub vip_address: &'a str,
    /// (network, address asked for or empty).
    pub additional_vips: &'a [(String, String)],
    /// The load balancer, once it exists (its own device is checked).
    pub loadbalancer_id: &'a str,
    /// A resize of `loadbalancer_id` from this flavor to `flavor` (the new flavor's devices are
    /// checked instead of its own).
    pub resize_from: Option<&'a str>,
}

pub struct Deployer {
    store: Store,
    scheduler: SchedulerServiceClient<Channel>,
    deadline: Duration,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    /// Deploys in flight at once: a burst of changes queues here instead of opening thousands of
    /// streams to the scheduler.
    in_flight: tokio::sync::Semaphore,
}

/// The most deploys (and undeploys) one api replica runs at once.
pub const MAX_DEPLOYS_IN_FLIGHT: usize = 64;

/// How long a deploy takes, from reading the desired tree to the device's answer.
static DEPLOY_DURATION: std::sync::LazyLock<Option<prometheus::HistogramVec>> =
    std::sync::LazyLock::new(|| {
        lbaas::server::metrics::histogram_vec(
            "lbaas_deploy_duration_seconds",
            "Deploys from the desired tree to ACTIVE or ERROR (settled) or a retry",
            &["result"],
        )
    });

impl Deployer {
    pub fn new(
        store: Store,
        scheduler: SchedulerServiceClient<Channel>,
        deadline: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            scheduler,
            deadline,
            workers: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_DEPLOYS_IN_FLIGHT),
        })
    }

    /// Asks for the load balancer to be converged to its latest desired state.
    pub fn kick(self: &Arc<Self>, id: &str) {
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        if let Some(worker) = workers.get(id) {
            worker.dirty.store(true, Ordering::SeqCst);
            worker.wake.notify_one();
            return;
        }
        let worker = Arc::new(Worker {
            dirty: AtomicBool::new(true),
            wake: Notify::new(),
        });
        workers.insert(id.to_owned(), worker.clone());
        let this = self.clone();
        let id = id.to_owned();
        // The worker's span is a child of the request that kicked it (when one did), so a create
        // is one trace from the tenant's call through the scheduler to the agent.
        let span = tracing::info_span!("deploy", loadbalancer = %id);
        tokio::spawn(tracing::Instrument::instrument(
            async move { this.work(id, worker).await },
            span,
        ));
    }

    /// Re-drives every pending load balancer now, then every `interval`.
    pub async fn sweep_forever(self: Arc<Self>, interval: Duration) {
        loop {
            match self.store.pending_load_balancers().await {
                Ok(ids) => {
                    for id in ids {
                        self.kick(&id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reconcile sweep failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn work(self: Arc<Self>, id: String, worker: Arc<Worker>) {
        let mut retry = lbaas::server::Backoff::new(MIN_RETRY, MAX_RETRY);
        loop {
            worker.dirty.store(false, Ordering::SeqCst);
            let attempt = match self.in_flight.acquire().await {
                Ok(_permit) => self.converge(&id).await,
                // Never closed; should it be, deploy without the bound rather than stall.
                Err(_) => self.converge(&id).await,
            };
            match attempt {
                Attempt::Settled => retry.reset(),
                Attempt::Retry(why) => {
                    tracing::debug!(loadbalancer = %id, reason = %why, "deploy will be retried");
                    // Wait for the pause or for a new change, whichever comes first.
                    let _ = tokio::time::timeout(retry.next_pause(), worker.wake.notified()).await;
                    continue;
                }
            }
            let Ok(mut workers) = self.workers.lock() else {
                return;
            };
            if !worker.dirty.load(Ordering::SeqCst) {
                workers.remove(&id);
                return;
            }
        }
    }

    fn past_deadline(&self, pending_since_ms: i64) -> bool {
        let deadline_ms = i64::try_from(self.deadline.as_millis()).unwrap_or(i64::MAX);
        pending_since_ms > 0 && now_ms() - pending_since_ms > deadline_ms
    }

    async fn give_up(&self, lb: &crate::entity::load_balancer::Model, why: &str) -> Attempt {
        let reason = format!("not applied within {}s: {why}", self.deadline.as_secs());
        tracing::warn!(loadbalancer = %lb.id, %reason, "deploy deadline passed");
        match self.store.record_error(lb, &reason).await {
            Ok(()) => Attempt::Settled,
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    async fn converge(&self, id: &str) -> Attempt {
        let lb = match self.store.find_load_balancer(id).await {
            Ok(Some(lb)) => lb,
            Ok(None) => return Attempt::Settled,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let attempt = if lb.provisioning_status == PENDING_DELETE {
            self.undeploy(&lb).await
        } else if lb.provisioning_status == ERROR
            || (lb.provisioning_status == ACTIVE && lb.applied_generation >= lb.generation)
        {
            return Attempt::Settled;
        } else {
            self.deploy(&lb).await
        };
        match attempt {
            Attempt::Retry(why) if self.past_deadline(lb.pending_since_ms) => {
                self.give_up(&lb, &why).await
            }
            other => other,
        }
    }

    async fn undeploy(&self, lb: &crate::entity::load_balancer::Model) -> Attempt {
        let mut scheduler = self.scheduler.clone();
        let mut request = lbaas::server::traced(UndeployRequest {
            loadbalancer_id: lb.id.clone(),
        });
        let budget = self.budget(lb.pending_since_ms);
        request.set_timeout(budget);
        match tokio::time::timeout(budget, scheduler.undeploy(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => return Attempt::Retry(format!("scheduler: {}", status.message())),
            Err(_) => {
                return Attempt::Retry(format!(
                    "no answer from the scheduler within {:.1}s",
                    budget.as_secs_f64()
                ));
            }
        }
        match self.store.purge_load_balancer(lb).await {
            Ok(()) => {
                tracing::info!(loadbalancer = %lb.id, "deleted");
                Attempt::Settled
            }
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    /// What is left of the deadline of a change pending since `pending_since_ms` (at least a
    /// moment, so a change past its deadline still gets one quick try).
    fn budget(&self, pending_since_ms: i64) -> Duration {
        let deadline_ms = i64::try_from(self.deadline.as_millis()).unwrap_or(i64::MAX);
        let left = if pending_since_ms > 0 {
            deadline_ms.saturating_sub(now_ms() - pending_since_ms)
        } else {
            deadline_ms
        };
        Duration::from_millis(u64::try_from(left).unwrap_or(0)).max(MIN_ATTEMPT)
    }

    async fn deploy(&self, lb: &crate::entity::load_balancer::Model) -> Attempt {
        let started = std::time::Instant::now();
        // The deadline holds whatever the scheduler or the device does: a peer that stops
        // answering without closing its connection (a frozen process, a vanished host) ends the
        // attempt here, and the change goes to ERROR once past its deadline.
        let budget = self.budget(lb.pending_since_ms);
        let attempt = match tokio::time::timeout(budget, self.deploy_once(lb, budget)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Retry(format!(
                "no answer from the scheduler or the device within {:.1}s",
                budget.as_secs_f64()
            )),
        };
        let result = match &attempt {
            Attempt::Settled => "settled",
            Attempt::Retry(_) => "retry",
        };
        if let Some(h) = &*DEPLOY_DURATION {
            h.with_label_values(&[result])
                .observe(started.elapsed().as_secs_f64());
        }
        attempt
    }

    async fn deploy_once(
        &self,
        lb: &crate::entity::load_balancer::Model,
        budget: Duration,
    ) -> Attempt {
        let config = match self.store.desired_config(lb).await {
            Ok(c) => c,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let generation = lb.generation;
        let mut scheduler = self.scheduler.clone();
        let request = DeployRequest {
            generation,
            config: Some(config),
            flavor: lb.flavor.clone(),
            availability_zone: lb.availability_zone.clone(),
            failover: lb.failover_pending,
            vip_network: lb.vip_network_id.clone(),
            additional_vips: crate::convert::split_additional_vips(&lb.additional_vips)
                .into_iter()
                .map(|(network, address)| lbaas::scheduler::v1::AdditionalVip { network, address })
                .collect(),
        };
        let mut request = lbaas::server::traced(request);
        // The scheduler bounds its own wait on the device by this (grpc-timeout).
        request.set_timeout(budget);
        let mut stream = match scheduler.deploy(request).await {
            Ok(s) => s.into_inner(),
            // What the load balancer asks for does not exist (a service type or network deleted
            // since it was created): waiting will not help.
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                let reason = format!("the scheduler refused it: {}", describe(&status));
                tracing::warn!(loadbalancer = %lb.id, %reason, "deploy failed");
                return match self.store.record_error(lb, &reason).await {
                    Ok(()) => Attempt::Settled,
                    Err(e) => Attempt::Retry(e.to_string()),
                };
            }
            Err(status) => return Attempt::Retry(format!("scheduler: {}", status.message())),
        };
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(e) => e.event,
                Err(status) => return Attempt::Retry(status.message().to_owned()),
            };
            match event {
                Some(Event::Placed(placed))
                    if placed.vip_address != lb.vip_address
                        || placed.device_id != lb.device_id
                        || placed_extras(&placed) != lb.additional_vips =>
                {
                    if let Err(e) = self
                        .store
                        .record_placement(
                            lb,
                            &placed.vip_address,
                            &placed.device_id,
                            &placed_extras(&placed),
                        )
                        .await
                    {
                        return Attempt::Retry(e.to_string());
                    }
                }
                Some(Event::Placed(_)) => {}
                Some(Event::Apply(applied)) => match applied.phase() {
                    ApplyPhase::Active => {
                        return match self.store.record_applied(&lb.id, applied.generation).await {
                            Ok(true) => {
                                tracing::info!(loadbalancer = %lb.id, generation, agent_ms = applied.elapsed_ms, "active");
                                Attempt::Settled
                            }
                            // A newer change arrived meanwhile: go again with it.
                            Ok(false) => Attempt::Retry("a newer generation is waiting".into()),
                            Err(e) => Attempt::Retry(e.to_string()),
                        };
                    }
                    ApplyPhase::Error if !applied.retryable => {
                        let reason = format!(
                            "the device rejected generation {generation}: {}",
                            applied.message
                        );
                        tracing::warn!(loadbalancer = %lb.id, %reason, "deploy failed");
                        return match self.store.record_error(lb, &reason).await {
                            Ok(()) => Attempt::Settled,
                            Err(e) => Attempt::Retry(e.to_string()),
                        };
                    }
                    ApplyPhase::Error => return Attempt::Retry(applied.message),
                    ApplyPhase::Superseded => return Attempt::Retry(applied.message),
                    ApplyPhase::Accepted | ApplyPhase::Applying | ApplyPhase::Unspecified => {}
                },
                None => {}
            }
        }
        Attempt::Retry("the deploy stream ended before the device confirmed".into())
    }
}

/// A status with its field violations, in one line.
fn describe(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    match details.bad_request() {
        Some(bad) if !bad.field_violations.is_empty() => bad
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; "),
        _ => status.message().to_owned(),
    }
}

impl Deployer {
    /// Asks the scheduler whether the service type and VIP network exist, whether a requested VIP
    /// is inside its range and free (ALREADY_EXISTS when another load balancer holds it), and
    /// whether some device
    /// (with `loadbalancer_id`: the load balancer's own device, once placed) offers every
    /// capability in `needs`. INVALID_ARGUMENT with the api's field names when not; when the
    /// scheduler cannot say (unreachable), the request goes ahead and the deploy will tell.
    /// The operator's flavors, as tenants see them.
    pub async fn flavors(&self) -> Result<Vec<lbaas::api::v1::Flavor>, tonic::Status> {
        let types = self
            .scheduler
            .clone()
            .list_service_types(lbaas::server::traced(
                lbaas::scheduler::v1::ListServiceTypesRequest {},
            ))
            .await?
            .into_inner()
            .service_types;
        Ok(types
            .into_iter()
            .map(|t| lbaas::api::v1::Flavor {
                topology: t
                    .topology()
                    .as_str_name()
                    .trim_start_matches("TOPOLOGY_")
                    .to_owned(),
                name: t.name,
                description: t.description,
            })
            .collect())
    }

    /// The operator's availability zones, as tenants see them.
    pub async fn availability_zones(
        &self,
    ) -> Result<Vec<lbaas::api::v1::AvailabilityZone>, tonic::Status> {
        let zones = self
            .scheduler
            .clone()
            .list_availability_zones(lbaas::server::traced(
                lbaas::scheduler::v1::ListAvailabilityZonesRequest {},
            ))
            .await?
            .into_inner()
            .availability_zones;
        Ok(zones
            .into_iter()
            .map(|z| lbaas::api::v1::AvailabilityZone {
                enabled: z.enabled.unwrap_or(true),
                name: z.name,
                description: z.description,
            })
            .collect())
    }

    /// The devices serving a load balancer and their roles, as the scheduler placed them; empty
    /// when it is not placed or the scheduler does not answer within a second.
    pub async fn device_roles(&self, loadbalancer_id: &str) -> Vec<lbaas::api::v1::DeviceRole> {
        let mut scheduler = self.scheduler.clone();
        let request = lbaas::scheduler::v1::GetPlacementRequest {
            loadbalancer_id: loadbalancer_id.to_owned(),
        };
        let Ok(Ok(placement)) = tokio::time::timeout(
            Duration::from_secs(1),
            scheduler.get_placement(lbaas::server::traced(request)),
        )
        .await
        else {
            return Vec::new();
        };
        let p = placement.into_inner();
        let role = |r: &str| lbaas::api::v1::DeviceRole {
            device_id: String::new(),
            role: r.to_owned(),
        };
        if p.standby_device_id.is_empty() {
            vec![lbaas::api::v1::DeviceRole {
                device_id: p.device_id,
                ..role("STANDALONE")
            }]
        } else {
            vec![
                lbaas::api::v1::DeviceRole {
                    device_id: p.device_id,
                    ..role("MASTER")
                },
                lbaas::api::v1::DeviceRole {
                    device_id: p.standby_device_id,
                    ..role("BACKUP")
                },
            ]
        }
    }

    pub async fn validate_placement(
        &self,
        check: PlacementCheck<'_>,
        needs: &crate::needs::Needs,
    ) -> Result<(), ApiError> {
        use tonic_types::StatusExt as _;
        let PlacementCheck {
            flavor,
            availability_zone,
            vip_network,
            vip_address,
            additional_vips,
            loadbalancer_id,
            resize_from,
        } = check;
        if resize_from.is_none()
            && flavor.is_empty()
            && availability_zone.is_empty()
            && vip_network.is_empty()
            && vip_address.is_empty()
            && additional_vips.is_empty()
            && needs.is_empty()
        {
            return Ok(());
        }
        let mut capabilities: Vec<String> = needs.iter().map(|(c, _)| c.clone()).collect();
        capabilities.sort();
        capabilities.dedup();
        let mut scheduler = self.scheduler.clone();
        let request = lbaas::scheduler::v1::ValidatePlacementRequest {
            flavor: flavor.to_owned(),
            vip_network: vip_network.to_owned(),
            capabilities,
            loadbalancer_id: loadbalancer_id.to_owned(),
            vip_address: vip_address.to_owned(),
            availability_zone: availability_zone.to_owned(),
            resize_from: resize_from.map(str::to_owned),
            additional_vips: additional_vips
                .iter()
                .map(|(network, address)| lbaas::scheduler::v1::AdditionalVip {
                    network: network.clone(),
                    address: address.clone(),
                })
                .collect(),
        };
        match tokio::time::timeout(
            Duration::from_secs(2),
            scheduler.validate_placement(lbaas::server::traced(request)),
        )
        .await
        {
            Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                let violations = status
                    .get_error_details()
                    .bad_request()
                    .map(|b| {
                        b.field_violations
                            .iter()
                            .map(|v| {
                                let field = match v.field.as_str() {
                                    "vip_network" => "load_balancer.vip_network_id".to_owned(),
                                    other if other.starts_with("additional_vips[") => {
                                        format!(
                                            "load_balancer.{}",
                                            other
                                                .replace(".network", ".network_id")
                                                .replace(".address", ".ip_address")
                                        )
                                    }
                                    other => format!("load_balancer.{other}"),
                                };
                                (field, v.description.clone())
                            })
                            .collect::<Vec<_>>()
                    })
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| vec![("load_balancer".into(), status.message().to_owned())]);
                Err(ApiError::Invalid(violations))
            }
            Ok(Err(status)) if status.code() == tonic::Code::AlreadyExists => {
                Err(ApiError::AlreadyExists(status.message().to_owned()))
            }
            // The flavor cannot be met as it stands (ACTIVE_STANDBY without two hosts).
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                Err(ApiError::FailedPrecondition(status.message().to_owned()))
            }
            Ok(Err(status)) => {
                tracing::warn!(error = %status, "could not validate the placement with the scheduler; the deploy will");
                Ok(())
            }
            Ok(Ok(response)) => {
                let unsupported = response.into_inner().unsupported;
                let violations: Vec<(String, String)> = needs
                    .iter()
                    .filter(|(c, _)| unsupported.contains(c))
                    .map(|(c, field)| {
                        (
                            field.clone(),
                            format!(
                                "needs capability {c}, which no device available to this load balancer offers"
                            ),
                        )
                    })
                    .collect();
                if violations.is_empty() {
                    Ok(())
                } else {
                    Err(ApiError::Invalid(violations))
                }
            }
            Err(_) => {
                tracing::warn!(
                    "the scheduler did not answer in time; the deploy will validate the placement"
                );
                Ok(())
            }
        }
    }
}

/// The additional VIPs of a placement, as the load balancer stores them.
fn placed_extras(placed: &lbaas::scheduler::v1::Placement) -> String {
    crate::convert::join_additional_vips(
        &placed
            .additional_vips
            .iter()
            .map(|v| (v.network.clone(), v.address.clone()))
            .collect::<Vec<_>>(),
    )
}
