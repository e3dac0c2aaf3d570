//! Load balancers: create (with their whole tree), read, list, update, delete, failover, status tree.
use lbaas::api::v1 as pb;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, EntityTrait as _, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set, sea_query::LikeExpr,
};

use super::{Kind, PENDING_CREATE, PENDING_DELETE, Page, Store, new_id, page_size};
use crate::{
    convert::{self, NewLoadBalancer, join_tags},
    entity::{health_monitor, listener, load_balancer, member, pool},
    error::ApiError,
    now_ms, update,
};

/// A load balancer with the ids of what hangs under it.
pub struct LoadBalancerView {
    pub model: load_balancer::Model,
    pub listener_ids: Vec<String>,
    pub pool_ids: Vec<String>,
}

impl LoadBalancerView {
    pub fn into_proto(self) -> pb::LoadBalancer {
        convert::load_balancer_to_proto(self.model, self.listener_ids, self.pool_ids)
    }
}

/// Filters and order of ListLoadBalancers.
#[derive(Default)]
pub struct LoadBalancerFilter {
    pub name: String,
    pub provisioning_status: String,
    pub vip_address: String,
    pub tags: Vec<String>,
    pub order_by: String,
    pub description: String,
    pub operating_status: String,
    pub flavor: String,
    pub availability_zone: String,
    pub vip_network_id: String,
    pub tags_any: Vec<String>,
    pub not_tags: Vec<String>,
    pub not_tags_any: Vec<String>,
}

/// Whether a stored tag list (`\nTAG\n...`) holds `tag`.
fn has_tag(tag: &str) -> sea_orm::sea_query::SimpleExpr {
    let escaped = tag
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    load_balancer::Column::Tags.like(LikeExpr::new(format!("%\n{escaped}\n%")).escape('\\'))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OrderField {
    Id,
    Name,
    CreateTime,
}

struct Order {
    field: OrderField,
    descending: bool,
}

impl Order {
    fn parse(s: &str) -> Result<Self, ApiError> {
        let mut words = s.split_whitespace();
        let field = match words.next() {
            None | Some("id") => OrderField::Id,
            Some("name") => OrderField::Name,
            Some("create_time") => OrderField::CreateTime,
            Some(_) => {
                return Err(ApiError::invalid(
                    "order_by",
                    "must be id, name or create_time, optionally followed by desc",
                ));
            }
        };
        let descending = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => {
                return Err(ApiError::invalid(
                    "order_by",
                    "the direction is asc or desc",
                ));
            }
        };
        if words.next().is_some() {
            return Err(ApiError::invalid(
                "order_by",
                "one field, optionally followed by asc or desc",
            ));
        }
        Ok(Self { field, descending })
    }

    fn key(&self, m: &load_balancer::Model) -> String {
        match self.field {
            OrderField::Id => String::new(),
            OrderField::Name => m.name.clone(),
            OrderField::CreateTime => m.created_ms.to_string(),
        }
    }

    /// Page tokens name the order they belong to, the sort key and the id of the last row, as hex.
    fn token(&self, m: &load_balancer::Model, order_by: &str) -> String {
        let raw = format!("{order_by}\u{1f}{}\u{1f}{}", self.key(m), m.id);
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn parse_token(token: &str, order_by: &str) -> Result<(String, String), ApiError> {
        let bad = || ApiError::invalid("page_token", "is not a token this list returned");
        if !token.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes: Result<Vec<u8>, _> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
            .collect();
        let raw = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
        let mut parts = raw.split('\u{1f}');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(order), Some(key), Some(id), None) if order == order_by => {
                Ok((key.to_owned(), id.to_owned()))
            }
            (Some(_), Some(_), Some(_), None) => Err(ApiError::invalid(
                "page_token",
                "was made for another order_by",
            )),
            _ => Err(bad()),
        }
    }
}

impl Store {
    pub async fn create_load_balancer(
        &self,
        project: &str,
        new: NewLoadBalancer,
        request_id: &str,
    ) -> Result<LoadBalancerView, ApiError> {
        // The row as committed: the response shows PENDING_CREATE even if the deploy finishes
        // before the caller hears back.
        let mut created: Option<load_balancer::Model> = None;
        let id = self
            .once(project, Kind::LoadBalancer, request_id, || async {
                let now = now_ms();
                let id = new_id();
                let txn = self.write().await?;
                let listeners = new.listeners.len() as u64;
                let pools = new.pools.len() as u64
                    + new
                        .listeners
                        .iter()
                        .filter(|l| l.default_pool.is_some())
                        .count() as u64;
                let all_pools = new
                    .pools
                    .iter()
                    .chain(new.listeners.iter().filter_map(|l| l.default_pool.as_ref()));
                let (members, monitors) = all_pools.fold((0u64, 0u64), |(m, h), p| {
                    (
                        m + p.members.len() as u64,
                        h + u64::from(p.monitor.is_some()),
                    )
                });
                self.check_quota(&txn, project, Kind::LoadBalancer, 1)
                    .await?;
                self.check_quota(&txn, project, Kind::Listener, listeners)
                    .await?;
                self.check_quota(&txn, project, Kind::Pool, pools).await?;
                self.check_quota(&txn, project, Kind::Member, members)
                    .await?;
                self.check_quota(&txn, project, Kind::HealthMonitor, monitors)
                    .await?;
                let model = load_balancer::ActiveModel {
                    id: Set(id.clone()),
                    project_id: Set(project.to_owned()),
                    name: Set(new.name.clone()),
                    description: Set(new.description.clone()),
                    vip_address: Set(new.vip_address.map(|ip| ip.to_string()).unwrap_or_default()),
                    admin_state_up: Set(new.admin_state_up),
                    provisioning_status: Set(PENDING_CREATE.into()),
                    operating_status: Set("OFFLINE".into()),
                    status_reason: Set(String::new()),
                    generation: Set(1),
                    applied_generation: Set(0),
                    pending_since_ms: Set(now),
                    flavor: Set(new.flavor.clone()),
                    availability_zone: Set(new.availability_zone.clone()),
                    access_log_target: Set(new.access_log_target.clone()),
                    vip_network_id: Set(new.vip_network_id.clone()),
                    additional_vips: Set(crate::convert::join_additional_vips(
                        &new.additional_vips
                            .iter()
                            .map(|(n, a)| {
                                (n.clone(), a.map(|ip| ip.to_string()).unwrap_or_default())
                            })
                            .collect::<Vec<_>>(),
                    )),
                    device_id: Set(String::new()),
                    failover_pending: Set(false),
                    tags: Set(join_tags(&new.tags)),
                    created_ms: Set(now),
                    updated_ms: Set(now),
                }
                .insert(&txn)
                .await?;
                created = Some(model);
                for (i, l) in new.listeners.clone().into_iter().enumerate() {
                    let default_pool = l.default_pool.clone();
                    let field = format!("load_balancer.listeners[{i}]");
                    let listener =
                        super::children::insert_listener(&txn, project, &id, l, &field).await?;
                    if let Some(p) = default_pool {
                        let pool = super::children::insert_pool(
                            &txn,
                            project,
                            &id,
                            Some(listener.id.clone()),
                            p,
                        )
                        .await?;
                        super::children::set_default_pool(&txn, &listener.id, &pool.id).await?;
                    }
                }
                for p in new.pools.clone() {
                    super::children::insert_pool(&txn, project, &id, None, p).await?;
                }
                Self::remember(&txn, project, Kind::LoadBalancer, request_id, &id).await?;
                txn.commit().await?;
                Ok(id)
            })
            .await?;
        self.announce(project, &id).await;
        match created {
            Some(model) if model.id == id => self.view(model).await,
            _ => self.get_load_balancer(project, &id).await,
        }
    }

    pub async fn children_ids(&self, id: &str) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let listeners = listener::Entity::find()
            .select_only()
            .column(listener::Column::Id)
            .filter(listener::Column::LoadbalancerId.eq(id))
            .order_by_asc(listener::Column::Id)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        let pools = pool::Entity::find()
            .select_only()
            .column(pool::Column::Id)
            .filter(pool::Column::LoadbalancerId.eq(id))
            .order_by_asc(pool::Column::Id)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        Ok((listeners, pools))
    }

    /// Every load balancer row of every project (the watch re-reader's one query).
    pub async fn every_load_balancer_row(&self) -> Result<Vec<load_balancer::Model>, ApiError> {
        Ok(load_balancer::Entity::find().all(&self.db).await?)
    }

    pub(crate) async fn view(
        &self,
        model: load_balancer::Model,
    ) -> Result<LoadBalancerView, ApiError> {
        let (listener_ids, pool_ids) = self.children_ids(&model.id).await?;
        Ok(LoadBalancerView {
            model,
            listener_ids,
            pool_ids,
        })
    }

    /// Whether any load balancer (of any project) holds `vip`: VIPs are one address space.
    pub async fn vip_held(&self, vip: &str) -> Result<bool, ApiError> {
        Ok(load_balancer::Entity::find()
            .filter(load_balancer::Column::VipAddress.eq(vip))
            .count(&self.db)
            .await?
            > 0)
    }

    pub async fn get_load_balancer(
        &self,
        project: &str,
        id: &str,
    ) -> Result<LoadBalancerView, ApiError> {
        let model = Self::lb_in(&self.db, project, id).await?;
        self.view(model).await
    }

    /// A page of the load balancers of `project` (every project's for `None`: admins only).
    pub async fn list_load_balancers(
        &self,
        project: Option<&str>,
        filter: &LoadBalancerFilter,
        requested_size: i32,
        token: &str,
    ) -> Result<Page<LoadBalancerView>, ApiError> {
        let size = page_size(requested_size)?;
        let order = Order::parse(&filter.order_by)?;
        let mut query = load_balancer::Entity::find();
        if let Some(project) = project {
            query = query.filter(load_balancer::Column::ProjectId.eq(project));
        }
        for (column, value) in [
            (load_balancer::Column::Description, &filter.description),
            (
                load_balancer::Column::OperatingStatus,
                &filter.operating_status,
            ),
            (load_balancer::Column::Flavor, &filter.flavor),
            (
                load_balancer::Column::AvailabilityZone,
                &filter.availability_zone,
            ),
            (load_balancer::Column::VipNetworkId, &filter.vip_network_id),
        ] {
            if !value.is_empty() {
                query = query.filter(column.eq(value.as_str()));
            }
        }
        if !filter.name.is_empty() {
            query = query.filter(load_balancer::Column::Name.eq(filter.name.as_str()));
        }
        if !filter.provisioning_status.is_empty() {
            query = query.filter(
                load_balancer::Column::ProvisioningStatus.eq(filter.provisioning_status.as_str()),
            );
        }
        if !filter.vip_address.is_empty() {
            query = query.filter(load_balancer::Column::VipAddress.eq(filter.vip_address.as_str()));
        }
        let mut violations = convert::Violations::default();
        convert::check_tags(&mut violations, "tags", &filter.tags);
        convert::check_tags(&mut violations, "tags_any", &filter.tags_any);
        convert::check_tags(&mut violations, "not_tags", &filter.not_tags);
        convert::check_tags(&mut violations, "not_tags_any", &filter.not_tags_any);
        violations.finish(())?;
        for tag in &filter.tags {
            query = query.filter(has_tag(tag));
        }
        if !filter.tags_any.is_empty() {
            query = query.filter(
                filter
                    .tags_any
                    .iter()
                    .fold(Condition::any(), |c, t| c.add(has_tag(t))),
            );
        }
        if !filter.not_tags.is_empty() {
            query = query.filter(
                filter
                    .not_tags
                    .iter()
                    .fold(Condition::all(), |c, t| c.add(has_tag(t)))
                    .not(),
            );
        }
        for tag in &filter.not_tags_any {
            query = query.filter(Condition::all().add(has_tag(tag)).not());
        }
        let column = match order.field {
            OrderField::Id => None,
            OrderField::Name => Some(load_balancer::Column::Name),
            OrderField::CreateTime => Some(load_balancer::Column::CreatedMs),
        };
        if !token.is_empty() {
            let (key, last_id) = Order::parse_token(token, &filter.order_by)?;
            let after = |c: load_balancer::Column, v: sea_orm::Value| {
                if order.descending { c.lt(v) } else { c.gt(v) }
            };
            let id_after = after(load_balancer::Column::Id, last_id.clone().into());
            let condition = match order.field {
                OrderField::Id => Condition::all().add(id_after),
                OrderField::Name => Condition::any()
                    .add(after(load_balancer::Column::Name, key.clone().into()))
                    .add(
                        Condition::all()
                            .add(load_balancer::Column::Name.eq(key))
                            .add(id_after),
                    ),
                OrderField::CreateTime => {
                    let ms: i64 = key.parse().map_err(|_| {
                        ApiError::invalid("page_token", "is not a token this list returned")
                    })?;
                    Condition::any()
                        .add(after(load_balancer::Column::CreatedMs, ms.into()))
                        .add(
                            Condition::all()
                                .add(load_balancer::Column::CreatedMs.eq(ms))
                                .add(id_after),
                        )
                }
            };
            query = query.filter(condition);
        }
        if let Some(column) = column {
            query = if order.descending {
                query.order_by_desc(column)
            } else {
                query.order_by_asc(column)
            };
        }
        query = if order.descending {
            query.order_by_desc(load_balancer::Column::Id)
        } else {
            query.order_by_asc(load_balancer::Column::Id)
        };
        let mut rows = query.limit(size + 1).all(&self.db).await?;
        let limit = usize::try_from(size).unwrap_or(usize::MAX);
        let next_page_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|m| order.token(m, &filter.order_by))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut items = Vec::with_capacity(rows.len());
        for m in rows {
            items.push(self.view(m).await?);
        }
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Every load balancer of a project (for watch streams).
    pub async fn all_load_balancers(
        &self,
        project: &str,
    ) -> Result<Vec<LoadBalancerView>, ApiError> {
        let rows = load_balancer::Entity::find()
            .filter(load_balancer::Column::ProjectId.eq(project))
            .order_by_asc(load_balancer::Column::Id)
            .all(&self.db)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for m in rows {
            items.push(self.view(m).await?);
        }
        Ok(items)
    }

    pub async fn update_load_balancer(
        &self,
        project: &str,
        patch: &pb::LoadBalancer,
        paths: &[String],
    ) -> Result<LoadBalancerView, ApiError> {
        let txn = self.write().await?;
        let lb = Self::lb_in(&txn, project, &patch.id).await?;
        update::check_etag(&patch.etag, &convert::load_balancer_etag(&lb))?;
        let mut merged = convert::load_balancer_to_proto(lb.clone(), Vec::new(), Vec::new());
        update::overlay_load_balancer(&mut merged, patch, paths);
        let checked = convert::validate_load_balancer(&merged)?;
        Self::bump(&txn, &lb).await?;
        let old_flavor = lb.flavor.clone();
        let mut active: load_balancer::ActiveModel = lb.into();
        active.name = Set(checked.name);
        active.description = Set(checked.description);
        active.admin_state_up = Set(checked.admin_state_up);
        active.tags = Set(join_tags(&checked.tags));
        active.access_log_target = Set(checked.access_log_target);
        if checked.flavor != old_flavor {
            // A resize: the deploy re-places it on a device of the new flavor, VIP kept (the
            // failover path; the old device lets go once the new one serves).
            active.flavor = Set(checked.flavor);
            active.failover_pending = Set(true);
            active.status_reason = Set(format!(
                "resize from flavor {} requested",
                if old_flavor.is_empty() {
                    "(default)"
                } else {
                    &old_flavor
                }
            ));
        }
        let model = active.update(&txn).await?;
        txn.commit().await?;
        self.announce(project, &patch.id).await;
        self.view(model).await
    }

    /// Marks the load balancer PENDING_DELETE; the deployer undeploys it and removes the rows.
    pub async fn delete_load_balancer(
        &self,
        project: &str,
        id: &str,
        cascade: bool,
        etag: &str,
    ) -> Result<LoadBalancerView, ApiError> {
        let txn = self.write().await?;
        let lb = Self::lb_in(&txn, project, id).await?;
        update::check_etag(etag, &convert::load_balancer_etag(&lb))?;
        if !cascade {
            let children = listener::Entity::find()
                .filter(listener::Column::LoadbalancerId.eq(id))
                .count(&txn)
                .await?
                + pool::Entity::find()
                    .filter(pool::Column::LoadbalancerId.eq(id))
                    .count(&txn)
                    .await?;
            if children > 0 {
                return Err(ApiError::FailedPrecondition(format!(
                    "load balancer {id} still has {children} listener(s) and pool(s); delete them first or set cascade"
                )));
            }
        }
        let already = lb.provisioning_status == PENDING_DELETE;
        let mut active: load_balancer::ActiveModel = lb.into();
        if !already {
            active.pending_since_ms = Set(now_ms());
        }
        active.provisioning_status = Set(PENDING_DELETE.into());
        active.updated_ms = Set(now_ms());
        let model = active.update(&txn).await?;
        txn.commit().await?;
        self.announce(project, id).await;
        self.view(model).await
    }

    /// Asks for the load balancer to be re-placed and redeployed.
    pub async fn failover_load_balancer(
        &self,
        project: &str,
        id: &str,
    ) -> Result<LoadBalancerView, ApiError> {
        let txn = self.write().await?;
        let lb = Self::lb_in(&txn, project, id).await?;
        Self::bump(&txn, &lb).await?;
        let mut active: load_balancer::ActiveModel = lb.into();
        active.failover_pending = Set(true);
        active.status_reason = Set("failover requested".into());
        let model = active.update(&txn).await?;
        txn.commit().await?;
        self.announce(project, id).await;
        self.view(model).await
    }

    pub async fn status_tree(
        &self,
        project: &str,
        id: &str,
    ) -> Result<pb::LoadBalancerStatusTree, ApiError> {
        let lb = Self::lb_in(&self.db, project, id).await?;
        let listeners = listener::Entity::find()
            .filter(listener::Column::LoadbalancerId.eq(id))
            .order_by_asc(listener::Column::Id)
            .all(&self.db)
            .await?;
        let pools = pool::Entity::find()
            .filter(pool::Column::LoadbalancerId.eq(id))
            .order_by_asc(pool::Column::Id)
            .all(&self.db)
            .await?;
        let members = member::Entity::find()
            .filter(member::Column::LoadbalancerId.eq(id))
            .order_by_asc(member::Column::Id)
            .all(&self.db)
            .await?;
        let monitors = health_monitor::Entity::find()
            .filter(health_monitor::Column::LoadbalancerId.eq(id))
            .all(&self.db)
            .await?;
        let policies = crate::entity::l7_policy::Entity::find()
            .filter(crate::entity::l7_policy::Column::LoadbalancerId.eq(id))
            .order_by_asc(crate::entity::l7_policy::Column::Position)
            .all(&self.db)
            .await?;
        let rules = crate::entity::l7_rule::Entity::find()
            .filter(crate::entity::l7_rule::Column::LoadbalancerId.eq(id))
            .order_by_asc(crate::entity::l7_rule::Column::Id)
            .all(&self.db)
            .await?;
        let node = |id: &str, name: &str, prov: &str, oper: &str| pb::StatusNode {
            id: id.to_owned(),
            name: name.to_owned(),
            provisioning_status: convert::provisioning_status(prov) as i32,
            operating_status: convert::operating_status(oper) as i32,
        };
        let pool_status = |p: &pool::Model| pb::PoolStatus {
            status: Some(node(
                &p.id,
                &p.name,
                &p.provisioning_status,
                &p.operating_status,
            )),
            members: members
                .iter()
                .filter(|m| m.pool_id == p.id)
                .map(|m| pb::MemberStatus {
                    status: Some(node(
                        &m.id,
                        &m.name,
                        &m.provisioning_status,
                        &m.operating_status,
                    )),
                    address: m.address.clone(),
                    protocol_port: m.protocol_port,
                })
                .collect(),
            health_monitor: monitors
                .iter()
                .find(|h| h.pool_id == p.id)
                .map(|h| node(&h.id, &h.name, &h.provisioning_status, &h.operating_status)),
        };
        Ok(pb::LoadBalancerStatusTree {
            load_balancer: Some(node(
                &lb.id,
                &lb.name,
                &lb.provisioning_status,
                &lb.operating_status,
            )),
            listeners: listeners
                .iter()
                .map(|l| pb::ListenerStatus {
                    status: Some(node(
                        &l.id,
                        &l.name,
                        &l.provisioning_status,
                        &l.operating_status,
                    )),
                    pools: pools
                        .iter()
                        .filter(|p| l.default_pool_id.as_deref() == Some(p.id.as_str()))
                        .map(pool_status)
                        .collect(),
                    l7policies: policies
                        .iter()
                        .filter(|p| p.listener_id == l.id)
                        .map(|p| pb::L7PolicyStatus {
                            status: Some(node(
                                &p.id,
                                &p.name,
                                &p.provisioning_status,
                                &p.operating_status,
                            )),
                            rules: rules
                                .iter()
                                .filter(|r| r.l7policy_id == p.id)
                                .map(|r| {
                                    node(&r.id, "", &r.provisioning_status, &r.operating_status)
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
            unattached_pools: pools
                .iter()
                .filter(|p| {
                    !listeners
                        .iter()
                        .any(|l| l.default_pool_id.as_deref() == Some(p.id.as_str()))
                })
                .map(pool_status)
                .collect(),
            // The scheduler knows; the service fills them in.
            devices: Vec::new(),
        })
    }
}

impl Store {
    /// Starts a failover the scheduler asked for (the device went DOWN). Returns false when there is
    /// nothing to do: gone, being deleted, or already failing over.
    pub async fn fail_over_displaced(&self, id: &str, reason: &str) -> Result<bool, ApiError> {
        let txn = self.write().await?;
        let Some(lb) = load_balancer::Entity::find_by_id(id)
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(false);
        };
        if lb.failover_pending || lb.provisioning_status == PENDING_DELETE {
            return Ok(false);
        }
        Self::bump(&txn, &lb).await?;
        let project = lb.project_id.clone();
        let mut active: load_balancer::ActiveModel = lb.into();
        active.failover_pending = Set(true);
        active.status_reason = Set(format!("failing over: {reason}"));
        active.update(&txn).await?;
        txn.commit().await?;
        self.announce(&project, id).await;
        Ok(true)
    }
}
