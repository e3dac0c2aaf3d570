//! The tenant API's gRPC handlers: authenticate, validate at the edge, call the store, kick the
//! deployer. No business rules live here.
use std::{pin::Pin, sync::Arc};

use futures::Stream;
use lbaas::api::v1::{
    self as pb, certificate_service_server::CertificateService,
    load_balancer_service_server::LoadBalancerService, quota_service_server::QuotaService,
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
    /// Addresses no member may have.
    pub reserved_ips: Vec<std::net::IpAddr>,
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

    /// A listener as the API shows it, with its L7 policies in position order.
    async fn listener(&self, m: crate::entity::listener::Model) -> Result<pb::Listener, Status> {
        let policies = self.store.listener_policy_ids(&m.id).await?;
        let mut listener = convert::listener_to_proto(m);
        listener.l7policy_ids = policies;
        Ok(listener)
    }

    /// Checks that the device of load balancer `lb` (or, before it is placed, some device of its
    /// flavor) offers what a new child needs.
    async fn check_capabilities(
        &self,
        project: &str,
        lb: &str,
        needs: &crate::needs::Needs,
    ) -> Result<(), Status> {
        let view = self.store.get_load_balancer(project, lb).await?;
        self.deployer
            .validate_placement(
                crate::deployer::PlacementCheck {
                    flavor: &view.model.flavor,
                    availability_zone: &view.model.availability_zone,
                    loadbalancer_id: lb,
                    ..Default::default()
                },
                needs,
            )
            .await?;
        Ok(())
    }

    /// An access log target at an address the operator reserved is refused, as members there are.
    fn reserved_log_target(&self, target: &str) -> Result<(), Status> {
        if let Ok(t) = convert::parse_log_target(target)
            && self.reserved_ips.contains(&t.addr.ip())
        {
            return Err(ApiError::invalid(
                "load_balancer.access_log_target",
                format!("{} is reserved by the operator", t.addr.ip()),
            )
            .into());
        }
        Ok(())
    }

    /// A flavor update (resize): the new flavor exists, keeps the topology, and one of its
    /// devices offers everything the load balancer uses and can take it now. Nothing is stored
    /// when it fails.
    async fn check_resize(&self, project: &str, patch: &pb::LoadBalancer) -> Result<(), Status> {
        let view = self.store.get_load_balancer(project, &patch.id).await?;
        let lb = &view.model;
        if patch.flavor == lb.flavor {
            return Ok(());
        }
        let config = self.store.desired_config(lb).await?;
        let needs: crate::needs::Needs = lbaas::capability::required(&config)
            .into_iter()
            .map(|c| (c, "load_balancer.flavor".to_owned()))
            .collect();
        self.deployer
            .validate_placement(
                crate::deployer::PlacementCheck {
                    flavor: &patch.flavor,
                    availability_zone: &lb.availability_zone,
                    vip_network: &lb.vip_network_id,
                    loadbalancer_id: &lb.id,
                    resize_from: Some(&lb.flavor),
                    ..Default::default()
                },
                &needs,
            )
            .await?;
        Ok(())
    }

    /// Kicks the deployer for the load balancer the object `id` hangs under.
    fn kick(&self, loadbalancer_id: &str) {
        self.deployer.kick(loadbalancer_id);
    }
}

/// One page of a child list: the store's own page when no filter is asked for; otherwise every
/// page of it (`page(size, token)`), filtered, ordered and paged by `crate::filter`.
async fn listed<T, F, Fut>(
    message: &str,
    filter: Option<pb::ListFilter>,
    size: i32,
    token: &str,
    mut page: F,
) -> Result<(Vec<T>, String), Status>
where
    T: prost::Message,
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), Status>>,
{
    let Some(filter) = filter.filter(|f| !crate::filter::is_empty(f)) else {
        return page(size, token.to_owned()).await;
    };
    let mut all = Vec::new();
    let mut next = String::new();
    loop {
        let (items, after) = page(1000, next).await?;
        all.extend(items);
        if after.is_empty() {
            break;
        }
        next = after;
    }
    let page = crate::filter::apply(message, all, &filter, size, token)?;
    Ok((page.items, page.next_page_token))
}

/// Whose objects a list shows: the caller's own, or (admins only) every project's
/// (`all_projects`) or another's (`project_id`); PERMISSION_DENIED for anyone else asking.
fn list_scope<'a>(
    caller: &'a crate::auth::Caller,
    all_projects: bool,
    asked: &'a str,
) -> Result<Option<&'a str>, Status> {
    match (all_projects, asked) {
        (false, "") => Ok(Some(caller.project_id.as_str())),
        (false, asked) if asked == caller.project_id => Ok(Some(asked)),
        _ if caller.role != Role::Admin => Err(ApiError::PermissionDenied(
            "only admins list other projects' objects".into(),
        )
        .into()),
        (true, "") => Ok(None),
        (_, asked) => Ok(Some(asked)),
    }
}

/// The id a request names: INVALID_ARGUMENT when it names none.
fn required_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(ApiError::invalid("id", "is required").into());
    }
    Ok(id)
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
        convert::reserved_member_addresses(convert::tree_members(&new), &self.reserved_ips)?;
        self.reserved_log_target(&new.access_log_target)?;
        let vip = new.vip_address.map(|ip| ip.to_string()).unwrap_or_default();
        if !vip.is_empty() && self.store.vip_held(&vip).await? {
            return Err(ApiError::AlreadyExists(format!(
                "VIP {vip} is held by another load balancer"
            ))
            .into());
        }
        self.deployer
            .validate_placement(
                crate::deployer::PlacementCheck {
                    flavor: &new.flavor,
                    availability_zone: &new.availability_zone,
                    vip_network: &new.vip_network_id,
                    vip_address: &vip,
                    additional_vips: &new
                        .additional_vips
                        .iter()
                        .map(|(n, a)| (n.clone(), a.map(|ip| ip.to_string()).unwrap_or_default()))
                        .collect::<Vec<_>>(),
                    loadbalancer_id: "",
                    resize_from: None,
                },
                &crate::needs::load_balancer(&new),
            )
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
        self.load_balancer(&caller.project_id, required_id(&request.get_ref().id)?)
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
        let operating_status = match pb::OperatingStatus::try_from(r.operating_status) {
            Ok(pb::OperatingStatus::Unspecified) => String::new(),
            Ok(s) => s
                .as_str_name()
                .trim_start_matches("OPERATING_STATUS_")
                .to_owned(),
            Err(_) => return Err(ApiError::invalid("operating_status", "unknown status").into()),
        };
        // Admins may look across projects; everyone else sees their own.
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let mut filter = LoadBalancerFilter {
            name: r.name,
            provisioning_status: status,
            vip_address: r.vip_address,
            tags: r.tags,
            order_by: r.order_by,
            description: r.description,
            operating_status,
            flavor: r.flavor,
            availability_zone: r.availability_zone,
            vip_network_id: r.vip_network_id,
            tags_any: r.tags_any,
            not_tags: r.not_tags,
            not_tags_any: r.not_tags_any,
        };
        // id, name and create_time are ordered (and paged) by the database; any other attribute,
        // and a `filter`, over the whole list, as the child lists are.
        let mut extra = r.filter.unwrap_or_default();
        if filter.order_by.is_empty() {
            filter.order_by = std::mem::take(&mut extra.order_by);
        }
        if crate::filter::is_empty(&extra)
            && matches!(
                filter.order_by.split_whitespace().next(),
                None | Some("id" | "name" | "create_time")
            )
        {
            let page = self
                .store
                .list_load_balancers(project, &filter, r.page_size, &r.page_token)
                .await?;
            return Ok(Response::new(pb::ListLoadBalancersResponse {
                load_balancers: page.items.into_iter().map(|v| v.into_proto()).collect(),
                next_page_token: page.next_page_token,
            }));
        }
        let order = pb::ListFilter {
            order_by: std::mem::take(&mut filter.order_by),
            ..extra
        };
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .store
                .list_load_balancers(project, &filter, 1000, &token)
                .await?;
            all.extend(page.items.into_iter().map(|v| v.into_proto()));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let page = crate::filter::apply(
            "lbaas.api.v1.LoadBalancer",
            all,
            &order,
            r.page_size,
            &r.page_token,
        )
        .map_err(|e| match e {
            ApiError::Invalid(v) => ApiError::Invalid(
                v.into_iter()
                    .map(|(f, d)| {
                        if f == "filter.order_by" {
                            ("order_by".to_owned(), d)
                        } else {
                            (f, d)
                        }
                    })
                    .collect(),
            ),
            other => other,
        })?;
        Ok(Response::new(pb::ListLoadBalancersResponse {
            load_balancers: page.items,
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
        if paths.iter().any(|p| p == "access_log_target") {
            self.reserved_log_target(&patch.access_log_target)?;
        }
        if paths.iter().any(|p| p == "flavor") {
            self.check_resize(&caller.project_id, &patch).await?;
        }
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
            .delete_load_balancer(&caller.project_id, required_id(&r.id)?, r.cascade, &r.etag)
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
        let mut tree = self
            .store
            .status_tree(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        if let Some(lb) = &tree.load_balancer {
            tree.devices = self.deployer.device_roles(&lb.id).await;
        }
        Ok(Response::new(tree))
    }

    async fn get_load_balancer_stats(
        &self,
        request: Request<pb::GetLoadBalancerStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let caller = self.caller(&request)?;
        let view = self
            .store
            .get_load_balancer(&caller.project_id, required_id(&request.get_ref().id)?)
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
            .get_listener(&caller.project_id, required_id(&request.get_ref().id)?)
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
            .failover_load_balancer(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        self.kick(&view.model.id);
        Ok(Response::new(view.into_proto()))
    }

    async fn list_flavors(
        &self,
        request: Request<pb::ListFlavorsRequest>,
    ) -> Result<Response<pb::ListFlavorsResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(pb::ListFlavorsResponse {
            flavors: self.deployer.flavors().await?,
        }))
    }

    async fn list_availability_zones(
        &self,
        request: Request<pb::ListAvailabilityZonesRequest>,
    ) -> Result<Response<pb::ListAvailabilityZonesResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(pb::ListAvailabilityZonesResponse {
            availability_zones: self.deployer.availability_zones().await?,
        }))
    }

    type WatchLoadBalancerStream = EventStream;

    async fn watch_load_balancer(
        &self,
        request: Request<pb::WatchLoadBalancerRequest>,
    ) -> Result<Response<Self::WatchLoadBalancerStream>, Status> {
        let caller = self.caller(&request)?;
        required_id(&request.get_ref().id)?;
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
        let mut needs = Vec::new();
        crate::needs::listener(&new, "listener", &mut needs);
        self.check_capabilities(&caller.project_id, &new.loadbalancer_id, &needs)
            .await?;
        let id = self
            .store
            .create_listener(&caller.project_id, new, &r.request_id)
            .await?;
        let listener = self.store.get_listener(&caller.project_id, &id).await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(self.listener(listener).await?))
    }

    async fn get_listener(
        &self,
        request: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let caller = self.caller(&request)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(self.listener(listener).await?))
    }

    async fn list_listeners(
        &self,
        request: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let lb = r.loadbalancer_id.as_str();
        let (listeners, next_page_token) = listed(
            "lbaas.api.v1.Listener",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self.store.list_listeners(project, lb, size, &token).await?;
                let mut listeners = Vec::with_capacity(page.items.len());
                for l in page.items {
                    listeners.push(self.listener(l).await?);
                }
                Ok((listeners, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListListenersResponse {
            listeners,
            next_page_token,
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
        if paths
            .iter()
            .any(|p| update::TLS_PATHS.contains(&p.as_str()))
        {
            // TLS options a device's driver may lack: checked before anything is stored.
            let found = self
                .store
                .get_listener(&caller.project_id, required_id(&patch.id)?)
                .await?;
            let mut merged = convert::listener_to_proto(found);
            update::overlay_listener(&mut merged, &patch, &paths);
            let checked = convert::validate_listener(&merged)?;
            let mut needs = Vec::new();
            crate::needs::listener(&checked, "listener", &mut needs);
            self.check_capabilities(&caller.project_id, &checked.loadbalancer_id, &needs)
                .await?;
        }
        self.store
            .update_listener(&caller.project_id, &patch, &paths)
            .await?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &patch.id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(self.listener(listener).await?))
    }

    async fn delete_listener(
        &self,
        request: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        let caller = self.writer(&request)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, required_id(&request.get_ref().id)?)
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
        let mut input = required(r.pool, "pool")?;
        // Octavia's reading: a pool created for a listener belongs to the listener's load balancer.
        if input.loadbalancer_id.is_empty() && !input.listener_id.is_empty() {
            let listener = self
                .store
                .get_listener(&caller.project_id, &input.listener_id)
                .await?;
            input.loadbalancer_id = listener.loadbalancer_id;
        }
        let new = convert::validate_pool(&input)?;
        convert::reserved_member_addresses(
            new.members
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("pool.members[{i}]"), m)),
            &self.reserved_ips,
        )?;
        let mut needs = Vec::new();
        crate::needs::pool(&new, "pool", &mut needs);
        self.check_capabilities(&caller.project_id, &new.loadbalancer_id, &needs)
            .await?;
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
        self.pool(&caller.project_id, required_id(&request.get_ref().id)?)
            .await
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let lb = r.loadbalancer_id.as_str();
        let (pools, next_page_token) = listed(
            "lbaas.api.v1.Pool",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self.store.list_pools(project, lb, size, &token).await?;
                let pools = page
                    .items
                    .into_iter()
                    .map(|(p, m)| convert::pool_to_proto(p, m))
                    .collect();
                Ok((pools, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools,
            next_page_token,
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
        if paths
            .iter()
            .any(|p| p == "tls_enabled" || update::TLS_PATHS.contains(&p.as_str()))
        {
            // Re-encryption and TLS options a device's driver may lack: checked before anything
            // is stored.
            let (found, _) = self
                .store
                .get_pool(&caller.project_id, required_id(&patch.id)?)
                .await?;
            let mut merged = convert::pool_to_proto(found, None);
            merged.listener_id.clear();
            update::overlay_pool(&mut merged, &patch, &paths);
            let checked = convert::validate_pool(&merged)?;
            let mut needs = Vec::new();
            crate::needs::pool(&checked, "pool", &mut needs);
            self.check_capabilities(&caller.project_id, &checked.loadbalancer_id, &needs)
                .await?;
        }
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
            .get_pool(&caller.project_id, required_id(&request.get_ref().id)?)
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
        convert::reserved_member_addresses([("member".to_owned(), &new)], &self.reserved_ips)?;
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
            .get_member(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(convert::member_to_proto(member)))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let pool = r.pool_id.as_str();
        let (members, next_page_token) = listed(
            "lbaas.api.v1.Member",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self.store.list_members(project, pool, size, &token).await?;
                let members = page
                    .items
                    .into_iter()
                    .map(convert::member_to_proto)
                    .collect();
                Ok((members, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListMembersResponse {
            members,
            next_page_token,
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
        // The one updatable address: the operator's reserved addresses stay out of it too.
        if paths.iter().any(|p| p == "monitor_address")
            && let Ok(ip) = patch.monitor_address.parse::<std::net::IpAddr>()
            && self.reserved_ips.contains(&ip)
        {
            return Err(ApiError::invalid(
                "member.monitor_address",
                format!("{ip} is reserved by the operator"),
            )
            .into());
        }
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
            .get_member(&caller.project_id, required_id(&request.get_ref().id)?)
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
        if let Err(ApiError::Invalid(reserved)) = convert::reserved_member_addresses(
            members
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("members[{i}]"), m)),
            &self.reserved_ips,
        ) {
            violations.extend(reserved);
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
            .get_health_monitor(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(convert::health_monitor_to_proto(monitor)))
    }

    async fn list_health_monitors(
        &self,
        request: Request<pb::ListHealthMonitorsRequest>,
    ) -> Result<Response<pb::ListHealthMonitorsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let pool = r.pool_id.as_str();
        let (health_monitors, next_page_token) = listed(
            "lbaas.api.v1.HealthMonitor",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self
                    .store
                    .list_health_monitors(project, pool, size, &token)
                    .await?;
                let monitors = page
                    .items
                    .into_iter()
                    .map(convert::health_monitor_to_proto)
                    .collect();
                Ok((monitors, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListHealthMonitorsResponse {
            health_monitors,
            next_page_token,
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
            .get_health_monitor(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        self.store
            .delete_health_monitor(&caller.project_id, &monitor.id)
            .await?;
        self.kick(&monitor.loadbalancer_id);
        Ok(Response::new(pb::DeleteHealthMonitorResponse {}))
    }

    async fn create_l7_policy(
        &self,
        request: Request<pb::CreateL7PolicyRequest>,
    ) -> Result<Response<pb::L7Policy>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.l7policy, "l7policy")?;
        let new = crate::l7::validate_l7policy(&input)?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &new.listener_id)
            .await?;
        self.check_capabilities(
            &caller.project_id,
            &listener.loadbalancer_id,
            &crate::needs::l7policy(),
        )
        .await?;
        let id = self
            .store
            .create_l7policy(&caller.project_id, new, &r.request_id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(
            self.store.get_l7policy(&caller.project_id, &id).await?,
        ))
    }

    async fn get_l7_policy(
        &self,
        request: Request<pb::GetL7PolicyRequest>,
    ) -> Result<Response<pb::L7Policy>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.store
                .get_l7policy(&caller.project_id, required_id(&request.get_ref().id)?)
                .await?,
        ))
    }

    async fn list_l7_policies(
        &self,
        request: Request<pb::ListL7PoliciesRequest>,
    ) -> Result<Response<pb::ListL7PoliciesResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let listener = r.listener_id.as_str();
        let (l7policies, next_page_token) = listed(
            "lbaas.api.v1.L7Policy",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self
                    .store
                    .list_l7policies(project, listener, size, &token)
                    .await?;
                let mut l7policies = Vec::with_capacity(page.items.len());
                for p in page.items {
                    l7policies.push(self.store.get_l7policy(&p.project_id, &p.id).await?);
                }
                Ok((l7policies, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListL7PoliciesResponse {
            l7policies,
            next_page_token,
        }))
    }

    async fn update_l7_policy(
        &self,
        request: Request<pb::UpdateL7PolicyRequest>,
    ) -> Result<Response<pb::L7Policy>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.l7policy, "l7policy")?;
        let paths = update::L7POLICY.paths(r.update_mask.as_ref())?;
        self.store
            .update_l7policy(&caller.project_id, &patch, &paths)
            .await?;
        let policy = self
            .store
            .get_l7policy(&caller.project_id, &patch.id)
            .await?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &policy.listener_id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(policy))
    }

    async fn delete_l7_policy(
        &self,
        request: Request<pb::DeleteL7PolicyRequest>,
    ) -> Result<Response<pb::DeleteL7PolicyResponse>, Status> {
        let caller = self.writer(&request)?;
        let policy = self
            .store
            .get_l7policy(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        let listener = self
            .store
            .get_listener(&caller.project_id, &policy.listener_id)
            .await?;
        self.store
            .delete_l7policy(&caller.project_id, &policy.id)
            .await?;
        self.kick(&listener.loadbalancer_id);
        Ok(Response::new(pb::DeleteL7PolicyResponse {}))
    }

    async fn create_l7_rule(
        &self,
        request: Request<pb::CreateL7RuleRequest>,
    ) -> Result<Response<pb::L7Rule>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let input = required(r.rule, "rule")?;
        let new = crate::l7::validate_l7rule(&input)?;
        let id = self
            .store
            .create_l7rule(&caller.project_id, new, &r.request_id)
            .await?;
        let rule = self.store.get_l7rule(&caller.project_id, &id).await?;
        self.kick(&rule.loadbalancer_id);
        Ok(Response::new(crate::l7::l7rule_to_proto(rule)))
    }

    async fn get_l7_rule(
        &self,
        request: Request<pb::GetL7RuleRequest>,
    ) -> Result<Response<pb::L7Rule>, Status> {
        let caller = self.caller(&request)?;
        let rule = self
            .store
            .get_l7rule(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(crate::l7::l7rule_to_proto(rule)))
    }

    async fn list_l7_rules(
        &self,
        request: Request<pb::ListL7RulesRequest>,
    ) -> Result<Response<pb::ListL7RulesResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let project = list_scope(&caller, r.all_projects, &r.project_id)?;
        let policy = r.l7policy_id.as_str();
        let (rules, next_page_token) = listed(
            "lbaas.api.v1.L7Rule",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self
                    .store
                    .list_l7rules(project, policy, size, &token)
                    .await?;
                let rules = page
                    .items
                    .into_iter()
                    .map(crate::l7::l7rule_to_proto)
                    .collect();
                Ok((rules, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListL7RulesResponse {
            rules,
            next_page_token,
        }))
    }

    async fn update_l7_rule(
        &self,
        request: Request<pb::UpdateL7RuleRequest>,
    ) -> Result<Response<pb::L7Rule>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let patch = required(r.rule, "rule")?;
        let paths = update::L7RULE.paths(r.update_mask.as_ref())?;
        self.store
            .update_l7rule(&caller.project_id, &patch, &paths)
            .await?;
        let rule = self.store.get_l7rule(&caller.project_id, &patch.id).await?;
        self.kick(&rule.loadbalancer_id);
        Ok(Response::new(crate::l7::l7rule_to_proto(rule)))
    }

    async fn delete_l7_rule(
        &self,
        request: Request<pb::DeleteL7RuleRequest>,
    ) -> Result<Response<pb::DeleteL7RuleResponse>, Status> {
        let caller = self.writer(&request)?;
        let rule = self
            .store
            .get_l7rule(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        self.store
            .delete_l7rule(&caller.project_id, &rule.id)
            .await?;
        self.kick(&rule.loadbalancer_id);
        Ok(Response::new(pb::DeleteL7RuleResponse {}))
    }
}

/// The certificate API: a project's TLS certificates, keys write-only.
pub struct CertificateApi {
    pub store: Store,
    pub auth: Authenticator,
}

#[tonic::async_trait]
impl CertificateService for CertificateApi {
    async fn create_certificate(
        &self,
        request: Request<pb::CreateCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        caller.require_write()?;
        let input = required(request.into_inner().certificate, "certificate")?;
        let new = crate::certs::validate_certificate(&input)?;
        let created = self
            .store
            .create_certificate(&caller.project_id, new)
            .await?;
        Ok(Response::new(crate::certs::certificate_to_proto(created)))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let found = self
            .store
            .get_certificate(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(crate::certs::certificate_to_proto(found)))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let r = request.into_inner();
        let project = caller.project_id.as_str();
        let (certificates, next_page_token) = listed(
            "lbaas.api.v1.Certificate",
            r.filter,
            r.page_size,
            &r.page_token,
            |size, token| async move {
                let page = self.store.list_certificates(project, size, &token).await?;
                let certificates = page
                    .items
                    .into_iter()
                    .map(crate::certs::certificate_to_proto)
                    .collect();
                Ok((certificates, page.next_page_token))
            },
        )
        .await?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates,
            next_page_token,
        }))
    }

    async fn delete_certificate(
        &self,
        request: Request<pb::DeleteCertificateRequest>,
    ) -> Result<Response<pb::DeleteCertificateResponse>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        caller.require_write()?;
        self.store
            .delete_certificate(&caller.project_id, required_id(&request.get_ref().id)?)
            .await?;
        Ok(Response::new(pb::DeleteCertificateResponse {}))
    }
}

/// A project's limits (or usage) as the API shows them.
pub(crate) fn quota_to_proto(project_id: &str, l: QuotaLimits) -> pb::Quota {
    pb::Quota {
        project_id: project_id.to_owned(),
        load_balancers: l.load_balancers,
        listeners: l.listeners,
        pools: l.pools,
        members: l.members,
        health_monitors: l.health_monitors,
        l7_policies: Some(l.l7_policies),
        l7_rules: Some(l.l7_rules),
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

pub(crate) fn check_project_id(id: &str) -> Result<(), ApiError> {
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
            ("l7_policies", quota.l7_policies.unwrap_or(-1)),
            ("l7_rules", quota.l7_rules.unwrap_or(-1)),
        ] {
            if value < -1 {
                violations.add(format!("quota.{field}"), "must be -1 (unlimited) or more");
            }
        }
        violations.finish(())?;
        // The L7 limits a caller leaves out stay as they are.
        let current = self
            .store
            .quota_limits(&self.store.db, &quota.project_id)
            .await?;
        let limits = QuotaLimits {
            load_balancers: quota.load_balancers,
            listeners: quota.listeners,
            pools: quota.pools,
            members: quota.members,
            health_monitors: quota.health_monitors,
            l7_policies: quota.l7_policies.unwrap_or(current.l7_policies),
            l7_rules: quota.l7_rules.unwrap_or(current.l7_rules),
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

    async fn get_quota_defaults(
        &self,
        request: Request<pb::GetQuotaDefaultsRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        self.admin(&request)?;
        Ok(Response::new(quota_to_proto("", self.store.quota_defaults)))
    }
}
