//! The tenant API's gRPC handlers: authenticate, validate at the edge, call the store, kick the
//! deployer. No business rules live here.
use std::{pin::Pin, sync::Arc};

use futures::Stream;
use lbaas::api::v1::{
    self as pb, load_balancer_service_server::LoadBalancerService,
    quota_service_server::QuotaService,
};
use tonic::{Request, Response, Status};

use crate::{
    auth::{Authenticator, Caller, Role},
    convert,
    deployer::Deployer,
    error::ApiError,
    store::{LoadBalancerFilter, QuotaLimits, Store},
    update, watch,
};

pub struct TenantApi {
    pub store: Store,
    pub deployer: Arc<Deployer>,
    pub auth: Authenticator,
    pub stats: crate::stats::StatsBook,
}

impl TenantApi {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(self.auth.caller(request.metadata())?)
    }

    fn writer<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = self.caller(request)?;
        caller.require_write()?;
        Ok(caller)
    }

    async fn load_balancer(
        &self,
        project: &str,
        id: &str,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        Ok(Response::new(
            self.store
                .get_load_balancer(project, id)
                .await?
                .into_proto(),
        ))
    }

    async fn pool(&self, project: &str, id: &str) -> Result<Response<pb::Pool>, Status> {
        let (pool, monitor) = self.store.get_pool(project, id).await?;
        Ok(Response::new(convert::pool_to_proto(pool, monitor)))
    }

    /// Kicks the deployer for the load balancer the object `id` hangs under.
    fn kick(&self, loadbalancer_id: &str) {
        self.deployer.kick(loadbalancer_id);
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| ApiError::invalid(field, "is required").into())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::LoadBalancerEvent, Status>> + Send>>;

#[tonic::async_trait]
impl LoadBalancerService for TenantApi {
    async fn create_load_balancer(
        &self,
        request: Request<pb::CreateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.load_balancer, "load_balancer")?;
        let new = convert::validate_load_balancer(&input)?;
        self.deployer
            .validate_placement(&new.flavor, &new.vip_network_id)
            .await?;
        let view = self
            .store
            .create_load_balancer(&caller.project_id, new, &r.request_id)
            .await?;
        self.kick(&view.model.id);
        Ok(Response::new(view.into_proto()))
    }

    async fn get_load_balancer(
        &self,
        request: Request<pb::GetLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.caller(&request)?;
        self.load_balancer(&caller.project_id, &request.get_ref().id)
            .await
    }

    async fn list_load_balancers(
        &self,
        request: Request<pb::ListLoadBalancersRequest>,
    ) -> Result<Response<pb::ListLoadBalancersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let status = match pb::ProvisioningStatus::try_from(r.provisioning_status) {
            Ok(pb::ProvisioningStatus::Unspecified) => String::new(),
            Ok(s) => s
                .as_str_name()
                .trim_start_matches("PROVISIONING_STATUS_")
                .to_owned(),
            Err(_) => return Err(ApiError::invalid("provisioning_status", "unknown status").into()),
        };
        let filter = LoadBalancerFilter {
            name: r.name,
            provisioning_status: status,
            vip_address: r.vip_address,
            tags: r.tags,
            order_by: r.order_by,
        };
        let page = self
            .store
            .list_load_balancers(&caller.project_id, &filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListLoadBalancersResponse {
            load_balancers: page.items.into_iter().map(|v| v.into_proto()).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_load_balancer(
        &self,
        request: Request<pb::UpdateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.load_balancer, "load_balancer")?;
        let paths = update::LOAD_BALANCER.paths(r.update_mask.as_ref())?;
        let view = self
            .store
            .update_load_balancer(&caller.project_id, &patch, &paths)
            .await?;
        self.kick(&view.model.id);
        Ok(Response::new(view.into_proto()))
    }

    async fn delete_load_balancer(
        &self,
        request: Request<pb::DeleteLoadBalancerRequest>,
    ) -> Result<Response<pb::DeleteLoadBalancerResponse>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let view = self
            .store
            .delete_load_balancer(&caller.project_id, &r.id, r.cascade, &r.etag)
            .await?;
        self.kick(&r.id);
        Ok(Response::new(pb::DeleteLoadBalancerResponse {
            load_balancer: Some(view.into_proto()),
        }))
    }

    async fn get_load_balancer_status_tree(
        &self,
        request: Request<pb::GetLoadBalancerStatusTreeRequest>,
    ) -> Result<Response<pb::LoadBalancerStatusTree>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.store
                .status_tree(&caller.project_id, &request.get_ref().id)
                .await?,
        ))
    }

    async fn get_load_balancer_stats(
        &self,
        request: Request<pb::GetLoadBalancerStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let caller = self.caller(&request)?;
        let view = self
            .store
            .get_load_balancer(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(self.stats.sum(&view.listener_ids)))
    }

    async fn get_listener_stats(
        &self,
        request: Request<pb::GetListenerStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let caller = self.caller(&request)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(self.stats.sum([&listener.id])))
    }

    async fn failover_load_balancer(
        &self,
        request: Request<pb::FailoverLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.writer(&request)?;
        let view = self
            .store
            .failover_load_balancer(&caller.project_id, &request.get_ref().id)
            .await?;
        self.kick(&view.model.id);
        Ok(Response::new(view.into_proto()))
    }

    type WatchLoadBalancerStream = EventStream;

    async fn watch_load_balancer(
        &self,
        request: Request<pb::WatchLoadBalancerRequest>,
    ) -> Result<Response<Self::WatchLoadBalancerStream>, Status> {
        let caller = self.caller(&request)?;
        let stream = watch::watch_load_balancer(
            self.store.clone(),
            caller.project_id,
            request.into_inner().id,
        )
        .await?;
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchProjectStream = EventStream;

    async fn watch_project(
        &self,
        request: Request<pb::WatchProjectRequest>,
    ) -> Result<Response<Self::WatchProjectStream>, Status> {
        let caller = self.caller(&request)?;
        let stream = watch::watch_project(self.store.clone(), caller.project_id).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_listener(
        &self,
        request: Request<pb::CreateListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.listener, "listener")?;
        let new = convert::validate_listener(&input)?;
        let id = self
            .store
            .create_listener(&caller.project_id, new, &r.request_id)
            .await?;
        let listener = self.store.get_listener(&caller.project_id, &id).await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(convert::listener_to_proto(listener)))
    }

    async fn get_listener(
        &self,
        request: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let caller = self.caller(&request)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::listener_to_proto(listener)))
    }

    async fn list_listeners(
        &self,
        request: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let page = self
            .store
            .list_listeners(
                &caller.project_id,
                &r.loadbalancer_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListListenersResponse {
            listeners: page
                .items
                .into_iter()
                .map(convert::listener_to_proto)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_listener(
        &self,
        request: Request<pb::UpdateListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.listener, "listener")?;
        let paths = update::LISTENER.paths(r.update_mask.as_ref())?;
        self.store
            .update_listener(&caller.project_id, &patch, &paths)
            .await?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &patch.id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(convert::listener_to_proto(listener)))
    }

    async fn delete_listener(
        &self,
        request: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        let caller = self.writer(&request)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &request.get_ref().id)
            .await?;
        self.store
            .delete_listener(&caller.project_id, &listener.id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(pb::DeleteListenerResponse {}))
    }

    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.pool, "pool")?;
        let new = convert::validate_pool(&input)?;
        let id = self
            .store
            .create_pool(&caller.project_id, new, &r.request_id)
            .await?;
        let response = self.pool(&caller.project_id, &id).await?;
        self.kick(&response.get_ref().loadbalancer_id);
        Ok(response)
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let caller = self.caller(&request)?;
        self.pool(&caller.project_id, &request.get_ref().id).await
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let page = self
            .store
            .list_pools(
                &caller.project_id,
                &r.loadbalancer_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: page
                .items
                .into_iter()
                .map(|(p, m)| convert::pool_to_proto(p, m))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_pool(
        &self,
        request: Request<pb::UpdatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.pool, "pool")?;
        let paths = update::POOL.paths(r.update_mask.as_ref())?;
        self.store
            .update_pool(&caller.project_id, &patch, &paths)
            .await?;
        let response = self.pool(&caller.project_id, &patch.id).await?;
        self.kick(&response.get_ref().loadbalancer_id);
        Ok(response)
    }

    async fn delete_pool(
        &self,
        request: Request<pb::DeletePoolRequest>,
    ) -> Result<Response<pb::DeletePoolResponse>, Status> {
        let caller = self.writer(&request)?;
        let (pool, _) = self
            .store
            .get_pool(&caller.project_id, &request.get_ref().id)
            .await?;
        self.store.delete_pool(&caller.project_id, &pool.id).await?;
        self.kick(&pool.loadbalancer_id);
        Ok(Response::new(pb::DeletePoolResponse {}))
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.member, "member")?;
        let new = convert::validate_member(&input)?;
        let id = self
            .store
            .create_member(&caller.project_id, new, &r.request_id)
            .await?;
        let member = self.store.get_member(&caller.project_id, &id).await?;
        self.kick(&member.loadbalancer_id);
        Ok(Response::new(convert::member_to_proto(member)))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = self.caller(&request)?;
        let member = self
            .store
            .get_member(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::member_to_proto(member)))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let page = self
            .store
            .list_members(&caller.project_id, &r.pool_id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: page
                .items
                .into_iter()
                .map(convert::member_to_proto)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.member, "member")?;
        let paths = update::MEMBER.paths(r.update_mask.as_ref())?;
        self.store
            .update_member(&caller.project_id, &patch, &paths)
            .await?;
        let member = self.store.get_member(&caller.project_id, &patch.id).await?;
        self.kick(&member.loadbalancer_id);
        Ok(Response::new(convert::member_to_proto(member)))
    }

    async fn delete_member(
        &self,
        request: Request<pb::DeleteMemberRequest>,
    ) -> Result<Response<pb::DeleteMemberResponse>, Status> {
        let caller = self.writer(&request)?;
        let member = self
            .store
            .get_member(&caller.project_id, &request.get_ref().id)
            .await?;
        self.store
            .delete_member(&caller.project_id, &member.id)
            .await?;
        self.kick(&member.loadbalancer_id);
        Ok(Response::new(pb::DeleteMemberResponse {}))
    }

    async fn batch_update_members(
        &self,
        request: Request<pb::BatchUpdateMembersRequest>,
    ) -> Result<Response<pb::BatchUpdateMembersResponse>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let mut members = Vec::with_capacity(r.members.len());
        let mut violations = Vec::new();
        for (i, m) in r.members.iter().enumerate() {
            let with_pool = pb::Member {
                pool_id: r.pool_id.clone(),
                ..m.clone()
            };
            match convert::validate_member(&with_pool) {
                Ok(valid) => members.push(valid),
                Err(ApiError::Invalid(v)) => {
                    violations.extend(
                        v.into_iter()
                            .map(|(f, d)| (f.replacen("member", &format!("members[{i}]"), 1), d)),
                    );
                }
                Err(other) => return Err(other.into()),
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations).into());
        }
        let updated = self
            .store
            .batch_update_members(&caller.project_id, &r.pool_id, members, r.additive_only)
            .await?;
        if let Some(first) = updated.first() {
            self.kick(&first.loadbalancer_id);
        } else {
            let (pool, _) = self.store.get_pool(&caller.project_id, &r.pool_id).await?;
            self.kick(&pool.loadbalancer_id);
        }
        Ok(Response::new(pb::BatchUpdateMembersResponse {
            members: updated.into_iter().map(convert::member_to_proto).collect(),
        }))
    }

    async fn create_health_monitor(
        &self,
        request: Request<pb::CreateHealthMonitorRequest>,
    ) -> Result<Response<pb::HealthMonitor>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.health_monitor, "health_monitor")?;
        let new = convert::validate_health_monitor(&input)?;
        let id = self
            .store
            .create_health_monitor(&caller.project_id, new, &r.request_id)
            .await?;
        let monitor = self
            .store
            .get_health_monitor(&caller.project_id, &id)
            .await?;
        self.kick(&monitor.loadbalancer_id);
        Ok(Response::new(convert::health_monitor_to_proto(monitor)))
    }

    async fn get_health_monitor(
        &self,
        request: Request<pb::GetHealthMonitorRequest>,
    ) -> Result<Response<pb::HealthMonitor>, Status> {
        let caller = self.caller(&request)?;
        let monitor = self
            .store
            .get_health_monitor(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::health_monitor_to_proto(monitor)))
    }

    async fn list_health_monitors(
        &self,
        request: Request<pb::ListHealthMonitorsRequest>,
    ) -> Result<Response<pb::ListHealthMonitorsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let page = self
            .store
            .list_health_monitors(&caller.project_id, &r.pool_id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListHealthMonitorsResponse {
            health_monitors: page
                .items
                .into_iter()
                .map(convert::health_monitor_to_proto)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_health_monitor(
        &self,
        request: Request<pb::UpdateHealthMonitorRequest>,
    ) -> Result<Response<pb::HealthMonitor>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.health_monitor, "health_monitor")?;
        let paths = update::HEALTH_MONITOR.paths(r.update_mask.as_ref())?;
        self.store
            .update_health_monitor(&caller.project_id, &patch, &paths)
            .await?;
        let monitor = self
            .store
            .get_health_monitor(&caller.project_id, &patch.id)
            .await?;
        self.kick(&monitor.loadbalancer_id);
        Ok(Response::new(convert::health_monitor_to_proto(monitor)))
    }

    async fn delete_health_monitor(
        &self,
        request: Request<pb::DeleteHealthMonitorRequest>,
    ) -> Result<Response<pb::DeleteHealthMonitorResponse>, Status> {
        let caller = self.writer(&request)?;
        let monitor = self
            .store
            .get_health_monitor(&caller.project_id, &request.get_ref().id)
            .await?;
        self.store
            .delete_health_monitor(&caller.project_id, &monitor.id)
            .await?;
        self.kick(&monitor.loadbalancer_id);
        Ok(Response::new(pb::DeleteHealthMonitorResponse {}))
    }
}

fn quota_to_proto(project_id: &str, l: QuotaLimits) -> pb::Quota {
    pb::Quota {
        project_id: project_id.to_owned(),
        load_balancers: l.load_balancers,
        listeners: l.listeners,
        pools: l.pools,
        members: l.members,
        health_monitors: l.health_monitors,
    }
}

/// The quota API: a project reads its own; admins read any and set them.
pub struct QuotaApi {
    pub store: Store,
    pub auth: Authenticator,
}

impl QuotaApi {
    fn admin<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = self.auth.caller(request.metadata())?;
        if caller.role != Role::Admin {
            return Err(ApiError::PermissionDenied("only admins manage quotas".into()).into());
        }
        Ok(caller)
    }
}

fn check_project_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "project_id",
            "must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl QuotaService for QuotaApi {
    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::QuotaUsage>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let asked = &request.get_ref().project_id;
        let project = if asked.is_empty() {
            caller.project_id.clone()
        } else {
            asked.clone()
        };
        if project != caller.project_id && caller.role != Role::Admin {
            return Err(ApiError::PermissionDenied(
                "only admins read other projects' quotas".into(),
            )
            .into());
        }
        let limits = self.store.quota_limits(&self.store.db, &project).await?;
        let in_use = self.store.usage(&project).await?;
        Ok(Response::new(pb::QuotaUsage {
            limits: Some(quota_to_proto(&project, limits)),
            in_use: Some(quota_to_proto(&project, in_use)),
        }))
    }

    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        self.admin(&request)?;
        let quota = required(request.into_inner().quota, "quota")?;
        let mut violations = convert::Violations::default();
        if let Err(ApiError::Invalid(v)) = check_project_id(&quota.project_id) {
            for (_, d) in v {
                violations.add("quota.project_id", d);
            }
        }
        for (field, value) in [
            ("load_balancers", quota.load_balancers),
            ("listeners", quota.listeners),
            ("pools", quota.pools),
            ("members", quota.members),
            ("health_monitors", quota.health_monitors),
        ] {
            if value < -1 {
                violations.add(format!("quota.{field}"), "must be -1 (unlimited) or more");
            }
        }
        violations.finish(())?;
        let limits = QuotaLimits {
            load_balancers: quota.load_balancers,
            listeners: quota.listeners,
            pools: quota.pools,
            members: quota.members,
            health_monitors: quota.health_monitors,
        };
        let set = self
            .store
            .set_quota(&quota.project_id, Some(limits))
            .await?;
        Ok(Response::new(quota_to_proto(&quota.project_id, set)))
    }

    async fn reset_quota(
        &self,
        request: Request<pb::ResetQuotaRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        self.admin(&request)?;
        let project = request.into_inner().project_id;
        check_project_id(&project)?;
        let limits = self.store.set_quota(&project, None).await?;
        Ok(Response::new(quota_to_proto(&project, limits)))
    }
}
