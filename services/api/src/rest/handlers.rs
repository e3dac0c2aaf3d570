//! The REST handlers: each reads Octavia's JSON, calls the gRPC service method that does the
//! work (with the caller's token as its bearer) and answers in Octavia's JSON and codes.
use std::future::Future;

use axum::{
    Json,
    body::Bytes,
    extract::{OriginalUri, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use lbaas::api::v1::{
    self as pb, load_balancer_service_server::LoadBalancerService as _,
    quota_service_server::QuotaService as _,
};
use serde_json::Value;

use super::{Rest, RestError, input, json, listing, origin, request};

type Q = Query<Vec<(String, String)>>;
type Reply = Result<Response, RestError>;

fn body(bytes: &Bytes) -> Result<Value, RestError> {
    serde_json::from_slice(bytes)
        .map_err(|e| RestError::bad_request(format!("the body is not JSON: {e}")))
}

fn reply(code: StatusCode, wrapper: &str, value: impl serde::Serialize) -> Reply {
    let value = serde_json::to_value(value)
        .map_err(|e| RestError::bad_request(format!("cannot encode the answer: {e}")))?;
    let mut wrapped = serde_json::Map::new();
    wrapped.insert(wrapper.to_owned(), value);
    Ok((code, Json(Value::Object(wrapped))).into_response())
}

fn to_values<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

fn list_reply(
    headers: &HeaderMap,
    uri: &OriginalUri,
    query: &[(String, String)],
    plural: &str,
    items: Vec<Value>,
) -> Reply {
    let base = format!("{}{}", origin(headers), uri.path());
    Ok(Json(listing::respond(items, query, plural, &base)?).into_response())
}

/// Every page of a gRPC list, for filters and sorts on the whole set.
async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, RestError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

/// The value of a query parameter, if given.
fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A body may name its project only as the caller's own (admins act in their own project here).
fn own_project(
    rest: &Rest,
    headers: &HeaderMap,
    inner: &serde_json::Map<String, Value>,
) -> Result<(), RestError> {
    let named: Vec<&str> = ["project_id", "tenant_id"]
        .iter()
        .filter_map(|k| inner.get(*k).and_then(Value::as_str))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let caller = rest
        .api
        .auth
        .caller(&super::metadata(headers)?)
        .map_err(tonic::Status::from)?;
    if named.iter().any(|p| *p != caller.project_id) {
        return Err(RestError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "objects are created in the caller's project ({}); project_id names another",
                caller.project_id
            ),
        });
    }
    Ok(())
}

const PAGE: i32 = 1000;

// ---- load balancers

pub async fn list_load_balancers(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let name = param(&q, "name").unwrap_or_default().to_owned();
    // An admin may name another project (Octavia's project_id filter).
    let project_id = param(&q, "project_id").unwrap_or_default().to_owned();
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListLoadBalancersRequest {
                page_size: PAGE,
                page_token,
                name: name.clone(),
                project_id: project_id.clone(),
                ..Default::default()
            },
        );
        async move {
            let r = rest
                .api
                .list_load_balancers(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.load_balancers, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "loadbalancers",
        to_values(items.iter().map(json::LoadBalancer::from)),
    )
}

pub async fn create_load_balancer(
    State(rest): State<Rest>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    let (lb, inner) = input::unwrap::<input::LoadBalancerBody>(&body(&bytes)?, "loadbalancer")?;
    own_project(&rest, &headers, &inner)?;
    let load_balancer = Some(lb.into_proto()?);
    let created = rest
        .api
        .create_load_balancer(request(
            &headers,
            pb::CreateLoadBalancerRequest {
                load_balancer,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::CREATED,
        "loadbalancer",
        json::LoadBalancer::from(&created),
    )
}

pub async fn get_load_balancer(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let lb = rest
        .api
        .get_load_balancer(request(&headers, pb::GetLoadBalancerRequest { id })?)
        .await?
        .into_inner();
    reply(
        StatusCode::OK,
        "loadbalancer",
        json::LoadBalancer::from(&lb),
    )
}

pub async fn update_load_balancer(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (lb, inner) = input::unwrap::<input::LoadBalancerBody>(&body(&bytes)?, "loadbalancer")?;
    let mut load_balancer = lb.into_proto()?;
    load_balancer.id = id;
    let updated = rest
        .api
        .update_load_balancer(request(
            &headers,
            pb::UpdateLoadBalancerRequest {
                load_balancer: Some(load_balancer),
                update_mask: Some(input::LoadBalancerBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::OK,
        "loadbalancer",
        json::LoadBalancer::from(&updated),
    )
}

pub async fn delete_load_balancer(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Reply {
    let cascade = param(&q, "cascade").is_some_and(|c| c.eq_ignore_ascii_case("true"));
    rest.api
        .delete_load_balancer(request(
            &headers,
            pb::DeleteLoadBalancerRequest {
                id,
                cascade,
                etag: String::new(),
            },
        )?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn load_balancer_status(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let tree = rest
        .api
        .get_load_balancer_status_tree(request(
            &headers,
            pb::GetLoadBalancerStatusTreeRequest { id },
        )?)
        .await?
        .into_inner();
    Ok(Json(json::status_tree(&tree)).into_response())
}

pub async fn load_balancer_stats(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let stats = rest
        .api
        .get_load_balancer_stats(request(&headers, pb::GetLoadBalancerStatsRequest { id })?)
        .await?
        .into_inner();
    Ok(Json(json::stats(&stats)).into_response())
}

pub async fn failover_load_balancer(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    rest.api
        .failover_load_balancer(request(&headers, pb::FailoverLoadBalancerRequest { id })?)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---- listeners

pub async fn list_listeners(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let lb = param(&q, "loadbalancer_id").unwrap_or_default().to_owned();
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListListenersRequest {
                loadbalancer_id: lb.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_listeners(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.listeners, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "listeners",
        to_values(items.iter().map(json::Listener::from)),
    )
}

pub async fn create_listener(State(rest): State<Rest>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let (l, inner) = input::unwrap::<input::ListenerBody>(&body(&bytes)?, "listener")?;
    own_project(&rest, &headers, &inner)?;
    let listener = Some(l.into_proto()?);
    let created = rest
        .api
        .create_listener(request(
            &headers,
            pb::CreateListenerRequest {
                listener,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::CREATED,
        "listener",
        json::Listener::from(&created),
    )
}

pub async fn get_listener(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let l = rest
        .api
        .get_listener(request(&headers, pb::GetListenerRequest { id })?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "listener", json::Listener::from(&l))
}

pub async fn update_listener(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (l, inner) = input::unwrap::<input::ListenerBody>(&body(&bytes)?, "listener")?;
    let mut listener = l.into_proto()?;
    listener.id = id;
    let updated = rest
        .api
        .update_listener(request(
            &headers,
            pb::UpdateListenerRequest {
                listener: Some(listener),
                update_mask: Some(input::ListenerBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "listener", json::Listener::from(&updated))
}

pub async fn delete_listener(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    rest.api
        .delete_listener(request(&headers, pb::DeleteListenerRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn listener_stats(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let stats = rest
        .api
        .get_listener_stats(request(&headers, pb::GetListenerStatsRequest { id })?)
        .await?
        .into_inner();
    Ok(Json(json::stats(&stats)).into_response())
}

// ---- pools

pub async fn list_pools(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let lb = param(&q, "loadbalancer_id").unwrap_or_default().to_owned();
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListPoolsRequest {
                loadbalancer_id: lb.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_pools(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.pools, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "pools",
        to_values(items.iter().map(json::Pool::from)),
    )
}

pub async fn create_pool(State(rest): State<Rest>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let (p, inner) = input::unwrap::<input::PoolBody>(&body(&bytes)?, "pool")?;
    own_project(&rest, &headers, &inner)?;
    let pool = Some(p.into_proto()?);
    let created = rest
        .api
        .create_pool(request(
            &headers,
            pb::CreatePoolRequest {
                pool,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::CREATED, "pool", json::Pool::from(&created))
}

pub async fn get_pool(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let p = rest
        .api
        .get_pool(request(&headers, pb::GetPoolRequest { id })?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "pool", json::Pool::from(&p))
}

pub async fn update_pool(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (p, inner) = input::unwrap::<input::PoolBody>(&body(&bytes)?, "pool")?;
    let mut pool = p.into_proto()?;
    pool.id = id;
    let updated = rest
        .api
        .update_pool(request(
            &headers,
            pb::UpdatePoolRequest {
                pool: Some(pool),
                update_mask: Some(input::PoolBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "pool", json::Pool::from(&updated))
}

pub async fn delete_pool(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    rest.api
        .delete_pool(request(&headers, pb::DeletePoolRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- members

pub async fn list_members(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(pool_id): Path<String>,
    Query(q): Q,
) -> Reply {
    // The pool must be the caller's: an unknown pool is 404, not an empty list.
    rest.api
        .get_pool(request(
            &headers,
            pb::GetPoolRequest {
                id: pool_id.clone(),
            },
        )?)
        .await?;
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListMembersRequest {
                pool_id: pool_id.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_members(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.members, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "members",
        to_values(items.iter().map(json::Member::from)),
    )
}

pub async fn create_member(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(pool_id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (m, inner) = input::unwrap::<input::MemberBody>(&body(&bytes)?, "member")?;
    own_project(&rest, &headers, &inner)?;
    check_subnet(&rest, inner.get("subnet_id"), inner.get("address")).await?;
    let mut member = m.into_proto()?;
    member.pool_id = pool_id;
    let created = rest
        .api
        .create_member(request(
            &headers,
            pb::CreateMemberRequest {
                member: Some(member),
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::CREATED, "member", json::Member::from(&created))
}

/// A member's `subnet_id` must name a network whose range holds its address (lbaas finds a
/// member's network from its address; the subnet is checked, not stored).
async fn check_subnet(
    rest: &Rest,
    subnet: Option<&Value>,
    address: Option<&Value>,
) -> Result<(), RestError> {
    let Some(subnet) = subnet.and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let networks = networks(rest).await?;
    let Some(network) = networks.iter().find(|n| n.name == subnet) else {
        return Err(RestError::bad_request(format!(
            "subnet_id: no subnet {subnet:?}"
        )));
    };
    let address = address.and_then(Value::as_str).unwrap_or_default();
    let inside = match (
        network.cidr.parse::<ipnet::IpNet>(),
        address.parse::<std::net::IpAddr>(),
    ) {
        (Ok(net), Ok(ip)) => net.contains(&ip),
        _ => true, // the member's own validation names a bad address
    };
    if !inside {
        return Err(RestError::bad_request(format!(
            "subnet_id: address {address} is not in subnet {subnet} ({})",
            network.cidr
        )));
    }
    Ok(())
}

pub async fn batch_members(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(pool_id): Path<String>,
    Query(q): Q,
    bytes: Bytes,
) -> Reply {
    let value = body(&bytes)?;
    let list = value
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| RestError::bad_request("the body must be {\"members\": [...]}".into()))?;
    let mut members = Vec::with_capacity(list.len());
    for m in list {
        let wrapped = serde_json::json!({ "member": m });
        let (m, inner) = input::unwrap::<input::MemberBody>(&wrapped, "member")?;
        check_subnet(&rest, inner.get("subnet_id"), inner.get("address")).await?;
        members.push(m.into_proto()?);
    }
    let additive_only = param(&q, "additive_only").is_some_and(|a| a.eq_ignore_ascii_case("true"));
    rest.api
        .batch_update_members(request(
            &headers,
            pb::BatchUpdateMembersRequest {
                pool_id,
                members,
                additive_only,
            },
        )?)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A member of the pool in the path (another pool's member is not found).
async fn member_of(
    rest: &Rest,
    headers: &HeaderMap,
    pool_id: &str,
    id: String,
) -> Result<pb::Member, RestError> {
    let m = rest
        .api
        .get_member(request(headers, pb::GetMemberRequest { id })?)
        .await?
        .into_inner();
    if m.pool_id != pool_id {
        return Err(RestError::not_found(format!(
            "member {} not found in pool {pool_id}",
            m.id
        )));
    }
    Ok(m)
}

pub async fn get_member(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((pool_id, id)): Path<(String, String)>,
) -> Reply {
    let m = member_of(&rest, &headers, &pool_id, id).await?;
    reply(StatusCode::OK, "member", json::Member::from(&m))
}

pub async fn update_member(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((pool_id, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Reply {
    member_of(&rest, &headers, &pool_id, id.clone()).await?;
    let (m, inner) = input::unwrap::<input::MemberBody>(&body(&bytes)?, "member")?;
    let mut member = m.into_proto()?;
    member.id = id;
    let updated = rest
        .api
        .update_member(request(
            &headers,
            pb::UpdateMemberRequest {
                member: Some(member),
                update_mask: Some(input::MemberBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "member", json::Member::from(&updated))
}

pub async fn delete_member(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((pool_id, id)): Path<(String, String)>,
) -> Reply {
    member_of(&rest, &headers, &pool_id, id.clone()).await?;
    rest.api
        .delete_member(request(&headers, pb::DeleteMemberRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- health monitors

pub async fn list_health_monitors(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let pool_id = param(&q, "pool_id").unwrap_or_default().to_owned();
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListHealthMonitorsRequest {
                pool_id: pool_id.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_health_monitors(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.health_monitors, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "healthmonitors",
        to_values(items.iter().map(json::HealthMonitor::from)),
    )
}

pub async fn create_health_monitor(
    State(rest): State<Rest>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Reply {
    let (h, inner) = input::unwrap::<input::HealthMonitorBody>(&body(&bytes)?, "healthmonitor")?;
    own_project(&rest, &headers, &inner)?;
    let health_monitor = Some(h.into_proto()?);
    let created = rest
        .api
        .create_health_monitor(request(
            &headers,
            pb::CreateHealthMonitorRequest {
                health_monitor,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::CREATED,
        "healthmonitor",
        json::HealthMonitor::from(&created),
    )
}

pub async fn get_health_monitor(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let h = rest
        .api
        .get_health_monitor(request(&headers, pb::GetHealthMonitorRequest { id })?)
        .await?
        .into_inner();
    reply(
        StatusCode::OK,
        "healthmonitor",
        json::HealthMonitor::from(&h),
    )
}

pub async fn update_health_monitor(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (h, inner) = input::unwrap::<input::HealthMonitorBody>(&body(&bytes)?, "healthmonitor")?;
    let mut health_monitor = h.into_proto()?;
    health_monitor.id = id;
    let updated = rest
        .api
        .update_health_monitor(request(
            &headers,
            pb::UpdateHealthMonitorRequest {
                health_monitor: Some(health_monitor),
                update_mask: Some(input::HealthMonitorBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::OK,
        "healthmonitor",
        json::HealthMonitor::from(&updated),
    )
}

pub async fn delete_health_monitor(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    rest.api
        .delete_health_monitor(request(&headers, pb::DeleteHealthMonitorRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- L7 policies and rules

pub async fn list_l7_policies(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let listener_id = param(&q, "listener_id").unwrap_or_default().to_owned();
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListL7PoliciesRequest {
                listener_id: listener_id.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_l7_policies(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.l7policies, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "l7policies",
        to_values(items.iter().map(json::L7Policy::from)),
    )
}

pub async fn create_l7_policy(State(rest): State<Rest>, headers: HeaderMap, bytes: Bytes) -> Reply {
    let (p, inner) = input::unwrap::<input::L7PolicyBody>(&body(&bytes)?, "l7policy")?;
    own_project(&rest, &headers, &inner)?;
    let l7policy = Some(p.into_proto()?);
    let created = rest
        .api
        .create_l7_policy(request(
            &headers,
            pb::CreateL7PolicyRequest {
                l7policy,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(
        StatusCode::CREATED,
        "l7policy",
        json::L7Policy::from(&created),
    )
}

pub async fn get_l7_policy(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let p = rest
        .api
        .get_l7_policy(request(&headers, pb::GetL7PolicyRequest { id })?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "l7policy", json::L7Policy::from(&p))
}

pub async fn update_l7_policy(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (p, inner) = input::unwrap::<input::L7PolicyBody>(&body(&bytes)?, "l7policy")?;
    let mut l7policy = p.into_proto()?;
    l7policy.id = id;
    let updated = rest
        .api
        .update_l7_policy(request(
            &headers,
            pb::UpdateL7PolicyRequest {
                l7policy: Some(l7policy),
                update_mask: Some(input::L7PolicyBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "l7policy", json::L7Policy::from(&updated))
}

pub async fn delete_l7_policy(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    rest.api
        .delete_l7_policy(request(&headers, pb::DeleteL7PolicyRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_l7_rules(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(policy): Path<String>,
    Query(q): Q,
) -> Reply {
    rest.api
        .get_l7_policy(request(
            &headers,
            pb::GetL7PolicyRequest { id: policy.clone() },
        )?)
        .await?;
    let items = all_pages(|page_token| {
        let rest = rest.clone();
        let req = request(
            &headers,
            pb::ListL7RulesRequest {
                l7policy_id: policy.clone(),
                page_size: PAGE,
                page_token,
                filter: None,
                all_projects: false,
                project_id: String::new(),
            },
        );
        async move {
            let r = rest
                .api
                .list_l7_rules(req.map_err(|e| tonic::Status::unauthenticated(e.message))?)
                .await?
                .into_inner();
            Ok((r.rules, r.next_page_token))
        }
    })
    .await?;
    list_reply(
        &headers,
        &uri,
        &q,
        "rules",
        to_values(items.iter().map(json::L7Rule::from)),
    )
}

pub async fn create_l7_rule(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(policy): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (r, inner) = input::unwrap::<input::L7RuleBody>(&body(&bytes)?, "rule")?;
    own_project(&rest, &headers, &inner)?;
    let rule = Some(r.into_proto(&policy)?);
    let created = rest
        .api
        .create_l7_rule(request(
            &headers,
            pb::CreateL7RuleRequest {
                rule,
                request_id: String::new(),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::CREATED, "rule", json::L7Rule::from(&created))
}

async fn rule_of(
    rest: &Rest,
    headers: &HeaderMap,
    policy: &str,
    id: String,
) -> Result<pb::L7Rule, RestError> {
    let r = rest
        .api
        .get_l7_rule(request(headers, pb::GetL7RuleRequest { id })?)
        .await?
        .into_inner();
    if r.l7policy_id != policy {
        return Err(RestError::not_found(format!(
            "rule {} not found in L7 policy {policy}",
            r.id
        )));
    }
    Ok(r)
}

pub async fn get_l7_rule(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((policy, id)): Path<(String, String)>,
) -> Reply {
    let r = rule_of(&rest, &headers, &policy, id).await?;
    reply(StatusCode::OK, "rule", json::L7Rule::from(&r))
}

pub async fn update_l7_rule(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((policy, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Reply {
    rule_of(&rest, &headers, &policy, id.clone()).await?;
    let (r, inner) = input::unwrap::<input::L7RuleBody>(&body(&bytes)?, "rule")?;
    let mut rule = r.into_proto(&policy)?;
    rule.id = id;
    let updated = rest
        .api
        .update_l7_rule(request(
            &headers,
            pb::UpdateL7RuleRequest {
                rule: Some(rule),
                update_mask: Some(input::L7RuleBody::mask(&inner)),
            },
        )?)
        .await?
        .into_inner();
    reply(StatusCode::OK, "rule", json::L7Rule::from(&updated))
}

pub async fn delete_l7_rule(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path((policy, id)): Path<(String, String)>,
) -> Reply {
    rule_of(&rest, &headers, &policy, id.clone()).await?;
    rest.api
        .delete_l7_rule(request(&headers, pb::DeleteL7RuleRequest { id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- quotas

async fn quota_of(
    rest: &Rest,
    headers: &HeaderMap,
    project_id: String,
) -> Result<pb::Quota, RestError> {
    let usage = rest
        .quotas
        .get_quota(request(headers, pb::GetQuotaRequest { project_id })?)
        .await?
        .into_inner();
    usage
        .limits
        .ok_or_else(|| RestError::not_found("no quota".into()))
}

pub async fn list_quotas(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    // The caller's project, or the one an admin names.
    let project = param(&q, "project_id").unwrap_or_default().to_owned();
    let quota = quota_of(&rest, &headers, project).await?;
    list_reply(&headers, &uri, &q, "quotas", vec![json::quota(&quota)])
}

pub async fn quota_defaults(State(rest): State<Rest>, headers: HeaderMap) -> Reply {
    // Any caller the api admits may read them.
    rest.api
        .auth
        .caller(&super::metadata(&headers)?)
        .map_err(tonic::Status::from)?;
    let mut quota = json::quota(&crate::service::quota_to_proto("", rest.quota_defaults));
    if let Some(o) = quota.as_object_mut() {
        o.remove("project_id");
    }
    Ok(Json(serde_json::json!({ "quota": quota })).into_response())
}

pub async fn get_quota(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Reply {
    let quota = quota_of(&rest, &headers, project).await?;
    Ok(Json(serde_json::json!({ "quota": json::quota(&quota) })).into_response())
}

pub async fn set_quota(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(project): Path<String>,
    bytes: Bytes,
) -> Reply {
    let (q, _) = input::unwrap::<input::QuotaBody>(&body(&bytes)?, "quota")?;
    let current = quota_of(&rest, &headers, project.clone()).await?;
    let mut quota = q.apply(current)?;
    quota.project_id = project;
    let set = rest
        .quotas
        .set_quota(request(
            &headers,
            pb::SetQuotaRequest { quota: Some(quota) },
        )?)
        .await?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "quota": json::quota(&set) })),
    )
        .into_response())
}

pub async fn reset_quota(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(project_id): Path<String>,
) -> Reply {
    rest.quotas
        .reset_quota(request(&headers, pb::ResetQuotaRequest { project_id })?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- providers, flavors, availability zones

/// Any caller the api admits (these lists are open to every tenant, as in Octavia).
fn admitted(rest: &Rest, headers: &HeaderMap) -> Result<(), RestError> {
    rest.api
        .auth
        .caller(&super::metadata(headers)?)
        .map_err(tonic::Status::from)?;
    Ok(())
}

pub async fn list_providers(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    admitted(&rest, &headers)?;
    let providers = vec![serde_json::json!({
        "name": json::PROVIDER,
        "description": "lbaas: the scheduler places each load balancer on a device of its flavor (HAProxy, the native data plane, or noop)",
    })];
    let mut out = listing::respond(
        providers,
        &q,
        "providers",
        &format!("{}{}", origin(&headers), uri.path()),
    )?;
    if let Some(o) = out.as_object_mut() {
        o.remove("providers_links");
    }
    Ok(Json(out).into_response())
}

fn known_provider(provider: &str) -> Result<(), RestError> {
    if provider == json::PROVIDER {
        Ok(())
    } else {
        Err(RestError::not_found(format!(
            "provider {provider} not found"
        )))
    }
}

pub async fn provider_flavor_capabilities(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Reply {
    admitted(&rest, &headers)?;
    known_provider(&provider)?;
    Ok(Json(serde_json::json!({ "flavor_capabilities": [
        {"name": "driver", "description": "The data plane of the flavor's devices: haproxy, native or noop."},
        {"name": "topology", "description": "SINGLE or ACTIVE_STANDBY (two devices on two hosts, the VIP moved by VRRP)."},
        {"name": "strategy", "description": "The placement strategy: least-loaded, tenant-affinity, tenant-anti-affinity, network-affinity or a scoring spec."},
        {"name": "required_labels", "description": "Device labels a device must carry to take the flavor's load balancers."},
    ]}))
    .into_response())
}

pub async fn provider_zone_capabilities(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Reply {
    admitted(&rest, &headers)?;
    known_provider(&provider)?;
    Ok(Json(serde_json::json!({ "availability_zone_capabilities": [] })).into_response())
}

async fn flavors(rest: &Rest, headers: &HeaderMap) -> Result<Vec<Value>, RestError> {
    admitted(rest, headers)?;
    let types = rest
        .scheduler
        .clone()
        .list_service_types(lbaas::scheduler::v1::ListServiceTypesRequest {})
        .await?
        .into_inner()
        .service_types;
    Ok(types
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.name,
                "name": t.name,
                "description": t.description,
                "enabled": true,
                "flavor_profile_id": t.name,
            })
        })
        .collect())
}

pub async fn list_flavors(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let items = flavors(&rest, &headers).await?;
    list_reply(&headers, &uri, &q, "flavors", items)
}

pub async fn get_flavor(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let flavor = flavors(&rest, &headers)
        .await?
        .into_iter()
        .find(|f| f["id"] == id.as_str())
        .ok_or_else(|| RestError::not_found(format!("flavor {id} not found")))?;
    Ok(Json(serde_json::json!({ "flavor": flavor })).into_response())
}

/// The scheduler's availability zones as Octavia shows them to tenants (the labels stay with the
/// operator; the profile is the zone itself).
async fn availability_zones(rest: &Rest, headers: &HeaderMap) -> Result<Vec<Value>, RestError> {
    admitted(rest, headers)?;
    let zones = rest
        .scheduler
        .clone()
        .list_availability_zones(lbaas::scheduler::v1::ListAvailabilityZonesRequest {})
        .await?
        .into_inner()
        .availability_zones;
    Ok(zones
        .into_iter()
        .map(|z| {
            serde_json::json!({
                "name": z.name,
                "description": z.description,
                "enabled": z.enabled.unwrap_or(true),
                "availability_zone_profile_id": z.name,
            })
        })
        .collect())
}

pub async fn list_availability_zones(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let items = availability_zones(&rest, &headers).await?;
    list_reply(&headers, &uri, &q, "availability_zones", items)
}

pub async fn get_availability_zone(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply {
    let zone = availability_zones(&rest, &headers)
        .await?
        .into_iter()
        .find(|z| z["name"] == name.as_str())
        .ok_or_else(|| RestError::not_found(format!("availability zone {name} not found")))?;
    Ok(Json(serde_json::json!({ "availability_zone": zone })).into_response())
}

// ---- Neutron lookups

async fn networks(rest: &Rest) -> Result<Vec<lbaas::scheduler::v1::Network>, RestError> {
    Ok(rest
        .scheduler
        .clone()
        .list_networks(lbaas::scheduler::v1::ListNetworksRequest {})
        .await?
        .into_inner()
        .networks)
}

/// A network as Neutron shows a subnet: the network's name is the subnet's id and name.
fn subnet_json(n: &lbaas::scheduler::v1::Network) -> Value {
    let v6 = n.cidr.contains(':');
    let pools = if n.allocation_start.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::json!({"start": n.allocation_start, "end": n.allocation_end})]
    };
    serde_json::json!({
        "id": n.name,
        "name": n.name,
        "network_id": n.name,
        "cidr": n.cidr,
        "ip_version": if v6 { 6 } else { 4 },
        "gateway_ip": (!n.gateway.is_empty()).then(|| n.gateway.clone()),
        "allocation_pools": pools,
        "enable_dhcp": false,
        "description": "",
        "project_id": "",
        "tenant_id": "",
        "tags": [],
    })
}

fn network_json(n: &lbaas::scheduler::v1::Network) -> Value {
    serde_json::json!({
        "id": n.name,
        "name": n.name,
        "subnets": [n.name],
        "status": "ACTIVE",
        "admin_state_up": true,
        "shared": true,
        "router:external": false,
        "description": "",
        "project_id": "",
        "tenant_id": "",
        "tags": [],
    })
}

pub async fn list_subnets(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    admitted(&rest, &headers)?;
    let items = networks(&rest).await?.iter().map(subnet_json).collect();
    list_reply(&headers, &uri, &q, "subnets", items)
}

pub async fn get_subnet(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    admitted(&rest, &headers)?;
    let n = networks(&rest)
        .await?
        .into_iter()
        .find(|n| n.name == id)
        .ok_or_else(|| RestError::not_found(format!("subnet {id} could not be found")))?;
    Ok(Json(serde_json::json!({ "subnet": subnet_json(&n) })).into_response())
}

pub async fn list_networks(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    admitted(&rest, &headers)?;
    let items = networks(&rest).await?.iter().map(network_json).collect();
    list_reply(&headers, &uri, &q, "networks", items)
}

pub async fn get_network(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    admitted(&rest, &headers)?;
    let n = networks(&rest)
        .await?
        .into_iter()
        .find(|n| n.name == id)
        .ok_or_else(|| RestError::not_found(format!("network {id} could not be found")))?;
    Ok(Json(serde_json::json!({ "network": network_json(&n) })).into_response())
}

// ---- amphorae: lbaas's devices, for admins

fn caller(rest: &Rest, headers: &HeaderMap) -> Result<crate::auth::Caller, RestError> {
    Ok(rest
        .api
        .auth
        .caller(&super::metadata(headers)?)
        .map_err(tonic::Status::from)?)
}

fn require_admin(rest: &Rest, headers: &HeaderMap) -> Result<crate::auth::Caller, RestError> {
    let caller = caller(rest, headers)?;
    if caller.role != crate::auth::Role::Admin {
        return Err(RestError {
            status: StatusCode::FORBIDDEN,
            message: "only admins see amphorae (devices)".into(),
        });
    }
    Ok(caller)
}

/// A device as Octavia shows an amphora. A device serves many load balancers: `loadbalancer_id`
/// and `role` are filled in when the list is asked for one load balancer's.
fn amphora_json(d: &lbaas::scheduler::v1::Device, lb: Option<(&str, &str)>) -> Value {
    use lbaas::scheduler::v1::DeviceState;
    let status = match DeviceState::try_from(d.state).unwrap_or_default() {
        DeviceState::Active if d.load > 0 => "ALLOCATED",
        DeviceState::Active => "READY",
        DeviceState::Draining => "PENDING_DELETE",
        DeviceState::Down => "ERROR",
        DeviceState::Unspecified => "BOOTING",
    };
    serde_json::json!({
        "id": d.id,
        "loadbalancer_id": lb.map(|(id, _)| id),
        "role": lb.map(|(_, role)| role),
        "status": status,
        "compute_id": d.agent_id,
        "compute_flavor": d.driver,
        "lb_network_ip": d.ports.values().next(),
        "vrrp_ip": null,
        "ha_ip": null,
        "vrrp_port_id": null,
        "ha_port_id": null,
        "cert_expiration": null,
        "cert_busy": false,
        "vrrp_interface": null,
        "vrrp_id": null,
        "vrrp_priority": null,
        "cached_zone": d.labels.get("zone"),
        "image_id": null,
        "created_at": null,
        "updated_at": null,
    })
}

async fn devices(
    rest: &Rest,
    headers: &HeaderMap,
) -> Result<Vec<lbaas::scheduler::v1::Device>, RestError> {
    require_admin(rest, headers)?;
    let client = rest.devices.clone();
    all_pages(|page_token| {
        let req = request(
            headers,
            lbaas::scheduler::v1::ListDevicesRequest {
                page_size: PAGE,
                page_token,
                agent_id: String::new(),
            },
        );
        let mut client = client.clone();
        async move {
            let req = req.map_err(|e| tonic::Status::unauthenticated(e.message))?;
            let r = client.list_devices(req).await?.into_inner();
            Ok((r.devices, r.next_page_token))
        }
    })
    .await
}

pub async fn list_amphorae(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: OriginalUri,
    Query(q): Q,
) -> Reply {
    let devices = devices(&rest, &headers).await?;
    let items = match param(&q, "loadbalancer_id").filter(|l| !l.is_empty()) {
        None => devices.iter().map(|d| amphora_json(d, None)).collect(),
        Some(lb) => {
            // The tenant API first: an unknown load balancer is 404.
            rest.api
                .get_load_balancer(request(
                    &headers,
                    pb::GetLoadBalancerRequest { id: lb.to_owned() },
                )?)
                .await?;
            let placement = rest
                .scheduler
                .clone()
                .get_placement(lbaas::scheduler::v1::GetPlacementRequest {
                    loadbalancer_id: lb.to_owned(),
                })
                .await?
                .into_inner();
            let roles = [
                (
                    placement.device_id.as_str(),
                    if placement.standby_device_id.is_empty() {
                        "STANDALONE"
                    } else {
                        "MASTER"
                    },
                ),
                (placement.standby_device_id.as_str(), "BACKUP"),
            ];
            devices
                .iter()
                .filter_map(|d| {
                    roles
                        .iter()
                        .find(|(id, _)| !id.is_empty() && *id == d.id)
                        .map(|(_, role)| amphora_json(d, Some((lb, role))))
                })
                .collect()
        }
    };
    list_reply(&headers, &uri, &q, "amphorae", items)
}

pub async fn get_amphora(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let device = devices(&rest, &headers)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| RestError::not_found(format!("amphora {id} not found")))?;
    Ok(Json(serde_json::json!({ "amphora": amphora_json(&device, None) })).into_response())
}

// ---- Keystone's project lookups: a project is a name in lbaas; admins may name any, others
// see their own.

fn project_json(id: &str) -> Value {
    serde_json::json!({
        "id": id,
        "name": id,
        "domain_id": "default",
        "enabled": true,
        "is_domain": false,
        "description": "",
        "parent_id": "default",
        "tags": [],
    })
}

fn visible_project(caller: &crate::auth::Caller, id: &str) -> bool {
    caller.role == crate::auth::Role::Admin || caller.project_id == id
}

pub async fn list_projects(State(rest): State<Rest>, headers: HeaderMap, Query(q): Q) -> Reply {
    let caller = caller(&rest, &headers)?;
    let projects: Vec<Value> = match param(&q, "name").or(param(&q, "id")) {
        Some(name)
            if visible_project(&caller, name) && crate::service::check_project_id(name).is_ok() =>
        {
            vec![project_json(name)]
        }
        Some(_) => Vec::new(),
        None => vec![project_json(&caller.project_id)],
    };
    Ok(Json(serde_json::json!({
        "projects": projects,
        "links": {"self": null, "next": null, "previous": null},
    }))
    .into_response())
}

pub async fn get_project(
    State(rest): State<Rest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = caller(&rest, &headers)?;
    if !visible_project(&caller, &id) || crate::service::check_project_id(&id).is_err() {
        return Err(RestError::not_found(format!(
            "could not find project: {id}"
        )));
    }
    Ok(Json(serde_json::json!({ "project": project_json(&id) })).into_response())
}
