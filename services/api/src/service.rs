//! The tenant API's gRPC handlers: authenticate, validate at the edge, call the store, kick the
//! deployer. No business rules live here.
use std::sync::Arc;

use lbaas::api::v1::{self as pb, load_balancer_service_server::LoadBalancerService};
use tonic::{Request, Response, Status};

use crate::{
    auth::{Authenticator, Caller},
    convert,
    deployer::Deployer,
    store::{LoadBalancerFilter, Store},
};

pub struct TenantApi {
    pub store: Store,
    pub deployer: Arc<Deployer>,
    pub auth: Authenticator,
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
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| crate::error::ApiError::invalid(field, "is required").into())
}

#[tonic::async_trait]
impl LoadBalancerService for TenantApi {
    async fn create_load_balancer(
        &self,
        request: Request<pb::CreateLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.writer(&request)?;
        let input = required(request.into_inner().load_balancer, "load_balancer")?;
        let new = convert::validate_load_balancer(&input)?;
        let lb = self
            .store
            .create_load_balancer(&caller.project_id, new)
            .await?;
        self.deployer.kick(&lb.id);
        let (listeners, pools) = self.store.children_ids(&lb.id).await?;
        Ok(Response::new(convert::load_balancer_to_proto(
            lb, listeners, pools,
        )))
    }

    async fn get_load_balancer(
        &self,
        request: Request<pb::GetLoadBalancerRequest>,
    ) -> Result<Response<pb::LoadBalancer>, Status> {
        let caller = self.caller(&request)?;
        let (lb, listeners, pools) = self
            .store
            .get_load_balancer(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::load_balancer_to_proto(
            lb, listeners, pools,
        )))
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
            Err(_) => {
                return Err(crate::error::ApiError::invalid(
                    "provisioning_status",
                    "unknown status",
                )
                .into());
            }
        };
        let filter = LoadBalancerFilter {
            name: r.name,
            provisioning_status: status,
            vip_address: r.vip_address,
        };
        let page = self
            .store
            .list_load_balancers(&caller.project_id, &filter, r.page_size, &r.page_token)
            .await?;
        let mut load_balancers = Vec::with_capacity(page.items.len());
        for lb in page.items {
            let (listeners, pools) = self.store.children_ids(&lb.id).await?;
            load_balancers.push(convert::load_balancer_to_proto(lb, listeners, pools));
        }
        Ok(Response::new(pb::ListLoadBalancersResponse {
            load_balancers,
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_load_balancer(
        &self,
        request: Request<pb::DeleteLoadBalancerRequest>,
    ) -> Result<Response<pb::DeleteLoadBalancerResponse>, Status> {
        let caller = self.writer(&request)?;
        let r = request.into_inner();
        let lb = self
            .store
            .delete_load_balancer(&caller.project_id, &r.id, r.cascade)
            .await?;
        self.deployer.kick(&lb.id);
        let (listeners, pools) = self.store.children_ids(&lb.id).await?;
        Ok(Response::new(pb::DeleteLoadBalancerResponse {
            load_balancer: Some(convert::load_balancer_to_proto(lb, listeners, pools)),
        }))
    }

    async fn create_listener(
        &self,
        request: Request<pb::CreateListenerRequest>,
    ) -> Result<Response<pb::Listener>, Status> {
        let caller = self.writer(&request)?;
        let input = required(request.into_inner().listener, "listener")?;
        let new = convert::validate_listener(&input)?;
        let listener = self.store.create_listener(&caller.project_id, new).await?;
        self.deployer.kick(&listener.loadbalancer_id);
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

    async fn delete_listener(
        &self,
        request: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        let caller = self.writer(&request)?;
        let lb = self
            .store
            .delete_listener(&caller.project_id, &request.get_ref().id)
            .await?;
        self.deployer.kick(&lb);
        Ok(Response::new(pb::DeleteListenerResponse {}))
    }

    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let caller = self.writer(&request)?;
        let input = required(request.into_inner().pool, "pool")?;
        let new = convert::validate_pool(&input)?;
        let pool = self.store.create_pool(&caller.project_id, new).await?;
        self.deployer.kick(&pool.loadbalancer_id);
        let (pool, monitor) = self.store.get_pool(&caller.project_id, &pool.id).await?;
        Ok(Response::new(convert::pool_to_proto(pool, monitor)))
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let caller = self.caller(&request)?;
        let (pool, monitor) = self
            .store
            .get_pool(&caller.project_id, &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::pool_to_proto(pool, monitor)))
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
                .map(|p| convert::pool_to_proto(p, None))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_pool(
        &self,
        request: Request<pb::DeletePoolRequest>,
    ) -> Result<Response<pb::DeletePoolResponse>, Status> {
        let caller = self.writer(&request)?;
        let lb = self
            .store
            .delete_pool(&caller.project_id, &request.get_ref().id)
            .await?;
        self.deployer.kick(&lb);
        Ok(Response::new(pb::DeletePoolResponse {}))
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = self.writer(&request)?;
        let input = required(request.into_inner().member, "member")?;
        let new = convert::validate_member(&input)?;
        let member = self.store.create_member(&caller.project_id, new).await?;
        self.deployer.kick(&member.loadbalancer_id);
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

    async fn delete_member(
        &self,
        request: Request<pb::DeleteMemberRequest>,
    ) -> Result<Response<pb::DeleteMemberResponse>, Status> {
        let caller = self.writer(&request)?;
        let lb = self
            .store
            .delete_member(&caller.project_id, &request.get_ref().id)
            .await?;
        self.deployer.kick(&lb);
        Ok(Response::new(pb::DeleteMemberResponse {}))
    }
}
