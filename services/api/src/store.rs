//! The application store: every rule that touches the database, one transaction per change. Each
//! change to a load balancer's tree bumps its generation in the same transaction.
use lbaas::agent::v1 as agent;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, DatabaseConnection, DatabaseTransaction,
    EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
    Set, TransactionTrait as _,
    sea_query::{Expr, ExprTrait as _},
};

use crate::{
    convert::{
        NewListener, NewLoadBalancer, NewMember, NewMonitor, NewPool, Protocol,
        monitor_type_to_agent,
    },
    entity::{health_monitor, listener, load_balancer, member, pool},
    error::ApiError,
    now_ms,
};

pub const PENDING_CREATE: &str = "PENDING_CREATE";
pub const PENDING_UPDATE: &str = "PENDING_UPDATE";
pub const PENDING_DELETE: &str = "PENDING_DELETE";
pub const ACTIVE: &str = "ACTIVE";
pub const ERROR: &str = "ERROR";

/// A page of rows and the token of the next one.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// Filters of ListLoadBalancers.
#[derive(Default)]
pub struct LoadBalancerFilter {
    pub name: String,
    pub provisioning_status: String,
    pub vip_address: String,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn tags(t: &[String]) -> String {
    t.join("\n")
}

fn page_size(requested: i32) -> u64 {
    u64::try_from(requested)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(100)
        .clamp(1, 1000)
}

/// Keyset pagination on id: a page token is the last id of the previous page, so objects created
/// or deleted between pages never shift what comes next.
fn paginate<T>(mut items: Vec<T>, size: u64, id: impl Fn(&T) -> String) -> Page<T> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let next_page_token = if items.len() > size {
        items.truncate(size);
        items.last().map(&id).unwrap_or_default()
    } else {
        String::new()
    };
    Page {
        items,
        next_page_token,
    }
}

impl Store {
    /// A load balancer of the project, or NOT_FOUND (also for another project's).
    async fn lb_in<C: sea_orm::ConnectionTrait>(
        db: &C,
        project: &str,
        id: &str,
    ) -> Result<load_balancer::Model, ApiError> {
        load_balancer::Entity::find_by_id(id)
            .filter(load_balancer::Column::ProjectId.eq(project))
            .one(db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("load balancer {id}")))
    }

    /// Bumps the generation and marks the load balancer pending, unless it is being deleted.
    async fn bump(txn: &DatabaseTransaction, lb: &load_balancer::Model) -> Result<(), ApiError> {
        if lb.provisioning_status == PENDING_DELETE {
            return Err(ApiError::FailedPrecondition(format!(
                "load balancer {} is being deleted",
                lb.id
            )));
        }
        let now = now_ms();
        let settled = [ACTIVE, ERROR];
        load_balancer::Entity::update_many()
            .col_expr(load_balancer::Column::PendingSinceMs, Expr::value(now))
            .col_expr(
                load_balancer::Column::ProvisioningStatus,
                Expr::value(PENDING_UPDATE),
            )
            .filter(load_balancer::Column::Id.eq(&lb.id))
            .filter(load_balancer::Column::ProvisioningStatus.is_in(settled))
            .exec(txn)
            .await?;
        load_balancer::Entity::update_many()
            .col_expr(
                load_balancer::Column::Generation,
                Expr::col(load_balancer::Column::Generation).add(1),
            )
            .col_expr(load_balancer::Column::UpdatedMs, Expr::value(now))
            .filter(load_balancer::Column::Id.eq(&lb.id))
            .exec(txn)
            .await?;
        Ok(())
    }

    pub async fn create_load_balancer(
        &self,
        project: &str,
        new: NewLoadBalancer,
    ) -> Result<load_balancer::Model, ApiError> {
        let now = now_ms();
        let id = new_id();
        let txn = self.db.begin().await?;
        let lb = load_balancer::ActiveModel {
            id: Set(id.clone()),
            project_id: Set(project.to_owned()),
            name: Set(new.name),
            description: Set(new.description),
            vip_address: Set(new.vip_address.map(|ip| ip.to_string()).unwrap_or_default()),
            admin_state_up: Set(new.admin_state_up),
            provisioning_status: Set(PENDING_CREATE.into()),
            operating_status: Set("OFFLINE".into()),
            status_reason: Set(String::new()),
            generation: Set(1),
            applied_generation: Set(0),
            pending_since_ms: Set(now),
            flavor: Set(new.flavor),
            device_id: Set(String::new()),
            tags: Set(tags(&new.tags)),
            created_ms: Set(now),
            updated_ms: Set(now),
        }
        .insert(&txn)
        .await?;
        for l in new.listeners {
            let pool = l.default_pool.clone();
            let listener = insert_listener(&txn, project, &id, l, None).await?;
            if let Some(p) = pool {
                let pool = insert_pool(&txn, project, &id, Some(listener.id.clone()), p).await?;
                set_default_pool(&txn, &listener.id, &pool.id).await?;
            }
        }
        for p in new.pools {
            insert_pool(&txn, project, &id, None, p).await?;
        }
        txn.commit().await?;
        Ok(lb)
    }

    pub async fn get_load_balancer(
        &self,
        project: &str,
        id: &str,
    ) -> Result<(load_balancer::Model, Vec<String>, Vec<String>), ApiError> {
        let lb = Self::lb_in(&self.db, project, id).await?;
        let (listeners, pools) = self.children_ids(id).await?;
        Ok((lb, listeners, pools))
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

    pub async fn list_load_balancers(
        &self,
        project: &str,
        filter: &LoadBalancerFilter,
        requested_size: i32,
        token: &str,
    ) -> Result<Page<load_balancer::Model>, ApiError> {
        let size = page_size(requested_size);
        let mut query = load_balancer::Entity::find()
            .filter(load_balancer::Column::ProjectId.eq(project))
            .order_by_asc(load_balancer::Column::Id);
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
        if !token.is_empty() {
            query = query.filter(load_balancer::Column::Id.gt(token));
        }
        let items = query.limit(size + 1).all(&self.db).await?;
        Ok(paginate(items, size, |m| m.id.clone()))
    }

    /// Marks the load balancer PENDING_DELETE; the deployer undeploys it and removes the rows.
    pub async fn delete_load_balancer(
        &self,
        project: &str,
        id: &str,
        cascade: bool,
    ) -> Result<load_balancer::Model, ApiError> {
        let txn = self.db.begin().await?;
        let lb = Self::lb_in(&txn, project, id).await?;
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
        let mut active: load_balancer::ActiveModel = lb.into();
        if active.provisioning_status.as_ref() != PENDING_DELETE {
            active.pending_since_ms = Set(now_ms());
        }
        active.provisioning_status = Set(PENDING_DELETE.into());
        active.updated_ms = Set(now_ms());
        let lb = active.update(&txn).await?;
        txn.commit().await?;
        Ok(lb)
    }

    pub async fn create_listener(
        &self,
        project: &str,
        new: NewListener,
    ) -> Result<listener::Model, ApiError> {
        let txn = self.db.begin().await?;
        let lb = Self::lb_in(&txn, project, &new.loadbalancer_id)
            .await
            .map_err(|_| {
                ApiError::invalid(
                    "listener.loadbalancer_id",
                    "names no load balancer of this project",
                )
            })?;
        if let Some(pool_id) = &new.default_pool_id {
            let pool = pool::Entity::find_by_id(pool_id.as_str()).one(&txn).await?;
            match pool {
                Some(p) if p.loadbalancer_id == lb.id => {
                    let pool_protocol = Protocol::parse(&p.protocol).unwrap_or(Protocol::Tcp);
                    if !Protocol::pool_fits_listener(pool_protocol, new.protocol) {
                        return Err(ApiError::invalid(
                            "listener.default_pool_id",
                            format!(
                                "a {} pool cannot serve a {} listener",
                                p.protocol,
                                new.protocol.as_str()
                            ),
                        ));
                    }
                }
                _ => {
                    return Err(ApiError::invalid(
                        "listener.default_pool_id",
                        "names no pool of this load balancer",
                    ));
                }
            }
        }
        let lb_id = lb.id.clone();
        Self::bump(&txn, &lb).await?;
        let default_pool_id = new.default_pool_id.clone();
        let created = insert_listener(&txn, project, &lb_id, new, default_pool_id).await?;
        txn.commit().await?;
        Ok(created)
    }

    pub async fn get_listener(&self, project: &str, id: &str) -> Result<listener::Model, ApiError> {
        listener::Entity::find_by_id(id)
            .filter(listener::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("listener {id}")))
    }

    pub async fn list_listeners(
        &self,
        project: &str,
        lb: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<listener::Model>, ApiError> {
        let size = page_size(size);
        let mut query = listener::Entity::find()
            .filter(listener::Column::ProjectId.eq(project))
            .order_by_asc(listener::Column::Id);
        if !lb.is_empty() {
            query = query.filter(listener::Column::LoadbalancerId.eq(lb));
        }
        if !token.is_empty() {
            query = query.filter(listener::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    /// Removes the listener from the desired state; its pool stays.
    pub async fn delete_listener(&self, project: &str, id: &str) -> Result<String, ApiError> {
        let txn = self.db.begin().await?;
        let found = listener::Entity::find_by_id(id)
            .filter(listener::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("listener {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        pool::Entity::update_many()
            .col_expr(
                pool::Column::ListenerId,
                Expr::value(Option::<String>::None),
            )
            .filter(pool::Column::ListenerId.eq(id))
            .exec(&txn)
            .await?;
        listener::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(lb.id)
    }

    pub async fn create_pool(&self, project: &str, new: NewPool) -> Result<pool::Model, ApiError> {
        let txn = self.db.begin().await?;
        let lb = Self::lb_in(&txn, project, &new.loadbalancer_id)
            .await
            .map_err(|_| {
                ApiError::invalid(
                    "pool.loadbalancer_id",
                    "names no load balancer of this project",
                )
            })?;
        let listener_id = new.listener_id.clone();
        if let Some(listener_id) = &listener_id {
            let found = listener::Entity::find_by_id(listener_id.as_str())
                .filter(listener::Column::ProjectId.eq(project))
                .one(&txn)
                .await?;
            match found {
                None => {
                    return Err(ApiError::invalid(
                        "pool.listener_id",
                        "names no listener of this project",
                    ));
                }
                Some(l) if l.loadbalancer_id != lb.id => {
                    return Err(ApiError::invalid(
                        "pool.listener_id",
                        "belongs to another load balancer",
                    ));
                }
                Some(l) if l.default_pool_id.is_some() => {
                    return Err(ApiError::AlreadyExists(format!(
                        "listener {} already has a default pool",
                        l.id
                    )));
                }
                Some(l) => {
                    let listener_protocol = Protocol::parse(&l.protocol).unwrap_or(Protocol::Tcp);
                    if !Protocol::pool_fits_listener(new.protocol, listener_protocol) {
                        return Err(ApiError::invalid(
                            "pool.protocol",
                            format!(
                                "a {} pool cannot serve a {} listener",
                                new.protocol.as_str(),
                                l.protocol
                            ),
                        ));
                    }
                }
            }
        }
        let lb_id = lb.id.clone();
        Self::bump(&txn, &lb).await?;
        let created = insert_pool(&txn, project, &lb_id, listener_id.clone(), new).await?;
        if let Some(listener_id) = listener_id {
            set_default_pool(&txn, &listener_id, &created.id).await?;
        }
        txn.commit().await?;
        Ok(created)
    }

    pub async fn get_pool(
        &self,
        project: &str,
        id: &str,
    ) -> Result<(pool::Model, Option<String>), ApiError> {
        let found = pool::Entity::find_by_id(id)
            .filter(pool::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pool {id}")))?;
        let monitor = health_monitor::Entity::find()
            .filter(health_monitor::Column::PoolId.eq(id))
            .one(&self.db)
            .await?
            .map(|m| m.id);
        Ok((found, monitor))
    }

    pub async fn list_pools(
        &self,
        project: &str,
        lb: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<pool::Model>, ApiError> {
        let size = page_size(size);
        let mut query = pool::Entity::find()
            .filter(pool::Column::ProjectId.eq(project))
            .order_by_asc(pool::Column::Id);
        if !lb.is_empty() {
            query = query.filter(pool::Column::LoadbalancerId.eq(lb));
        }
        if !token.is_empty() {
            query = query.filter(pool::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    /// Removes the pool, its members and monitor; listeners that used it lose their default pool.
    pub async fn delete_pool(&self, project: &str, id: &str) -> Result<String, ApiError> {
        let txn = self.db.begin().await?;
        let found = pool::Entity::find_by_id(id)
            .filter(pool::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pool {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        listener::Entity::update_many()
            .col_expr(
                listener::Column::DefaultPoolId,
                Expr::value(Option::<String>::None),
            )
            .filter(listener::Column::DefaultPoolId.eq(id))
            .exec(&txn)
            .await?;
        member::Entity::delete_many()
            .filter(member::Column::PoolId.eq(id))
            .exec(&txn)
            .await?;
        health_monitor::Entity::delete_many()
            .filter(health_monitor::Column::PoolId.eq(id))
            .exec(&txn)
            .await?;
        pool::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(lb.id)
    }

    pub async fn create_member(
        &self,
        project: &str,
        new: NewMember,
    ) -> Result<member::Model, ApiError> {
        let txn = self.db.begin().await?;
        let found = pool::Entity::find_by_id(new.pool_id.as_str())
            .filter(pool::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::invalid("member.pool_id", "names no pool of this project"))?;
        let duplicate = member::Entity::find()
            .filter(member::Column::PoolId.eq(found.id.as_str()))
            .filter(member::Column::Address.eq(new.address.to_string()))
            .filter(member::Column::ProtocolPort.eq(i32::from(new.port)))
            .count(&txn)
            .await?;
        if duplicate > 0 {
            return Err(ApiError::AlreadyExists(format!(
                "pool {} already has a member at {}:{}",
                found.id, new.address, new.port
            )));
        }
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        let created = insert_member(&txn, project, &lb.id, &found.id, new).await?;
        txn.commit().await?;
        Ok(created)
    }

    pub async fn get_member(&self, project: &str, id: &str) -> Result<member::Model, ApiError> {
        member::Entity::find_by_id(id)
            .filter(member::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("member {id}")))
    }

    pub async fn list_members(
        &self,
        project: &str,
        pool_id: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<member::Model>, ApiError> {
        let size = page_size(size);
        let mut query = member::Entity::find()
            .filter(member::Column::ProjectId.eq(project))
            .order_by_asc(member::Column::Id);
        if !pool_id.is_empty() {
            query = query.filter(member::Column::PoolId.eq(pool_id));
        }
        if !token.is_empty() {
            query = query.filter(member::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    pub async fn delete_member(&self, project: &str, id: &str) -> Result<String, ApiError> {
        let txn = self.db.begin().await?;
        let found = member::Entity::find_by_id(id)
            .filter(member::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("member {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        member::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(lb.id)
    }

    // ---- used by the deployer, across projects ----

    pub async fn find_load_balancer(
        &self,
        id: &str,
    ) -> Result<Option<load_balancer::Model>, ApiError> {
        Ok(load_balancer::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Ids of every load balancer with a change still to apply.
    pub async fn pending_load_balancers(&self) -> Result<Vec<String>, ApiError> {
        Ok(load_balancer::Entity::find()
            .select_only()
            .column(load_balancer::Column::Id)
            .filter(
                Condition::any().add(load_balancer::Column::ProvisioningStatus.is_in([
                    PENDING_CREATE,
                    PENDING_UPDATE,
                    PENDING_DELETE,
                ])),
            )
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// The desired config of the whole tree, as the agent's driver needs it.
    pub async fn desired_config(
        &self,
        lb: &load_balancer::Model,
    ) -> Result<agent::LoadBalancerConfig, ApiError> {
        let listeners = listener::Entity::find()
            .filter(listener::Column::LoadbalancerId.eq(lb.id.as_str()))
            .order_by_asc(listener::Column::Id)
            .all(&self.db)
            .await?;
        let pools = pool::Entity::find()
            .filter(pool::Column::LoadbalancerId.eq(lb.id.as_str()))
            .order_by_asc(pool::Column::Id)
            .all(&self.db)
            .await?;
        let members = member::Entity::find()
            .filter(member::Column::LoadbalancerId.eq(lb.id.as_str()))
            .order_by_asc(member::Column::Id)
            .all(&self.db)
            .await?;
        let monitors = health_monitor::Entity::find()
            .filter(health_monitor::Column::LoadbalancerId.eq(lb.id.as_str()))
            .all(&self.db)
            .await?;
        let protocol = |p: &str| {
            agent::ListenerProtocol::from_str_name(&format!("LISTENER_PROTOCOL_{p}"))
                .map_or(0, |v| v as i32)
        };
        let nonneg = |v: i32| u32::try_from(v).unwrap_or(0);
        Ok(agent::LoadBalancerConfig {
            id: lb.id.clone(),
            project_id: lb.project_id.clone(),
            vip_address: lb.vip_address.clone(),
            admin_state_up: lb.admin_state_up,
            listeners: listeners
                .iter()
                .map(|l| agent::ListenerConfig {
                    id: l.id.clone(),
                    protocol: protocol(&l.protocol),
                    port: nonneg(l.protocol_port),
                    connection_limit: nonneg(l.connection_limit),
                    default_pool_id: l.default_pool_id.clone().unwrap_or_default(),
                    admin_state_up: l.admin_state_up,
                    timeout_client_data_ms: nonneg(l.timeout_client_data_ms),
                    timeout_member_connect_ms: nonneg(l.timeout_member_connect_ms),
                    timeout_member_data_ms: nonneg(l.timeout_member_data_ms),
                })
                .collect(),
            pools: pools
                .iter()
                .map(|p| agent::PoolConfig {
                    id: p.id.clone(),
                    protocol: protocol(&p.protocol),
                    algorithm: agent::Algorithm::from_str_name(&format!(
                        "ALGORITHM_{}",
                        p.lb_algorithm
                    ))
                    .map_or(0, |a| a as i32),
                    admin_state_up: p.admin_state_up,
                    members: members
                        .iter()
                        .filter(|m| m.pool_id == p.id)
                        .map(|m| agent::MemberConfig {
                            id: m.id.clone(),
                            address: m.address.clone(),
                            port: nonneg(m.protocol_port),
                            weight: nonneg(m.weight),
                            admin_state_up: m.admin_state_up,
                            backup: m.backup,
                        })
                        .collect(),
                    monitor: monitors
                        .iter()
                        .find(|h| h.pool_id == p.id && h.admin_state_up)
                        .map(|h| agent::MonitorConfig {
                            r#type: monitor_type_to_agent(&h.monitor_type) as i32,
                            delay_s: nonneg(h.delay_s),
                            timeout_s: nonneg(h.timeout_s),
                            max_retries: nonneg(h.max_retries),
                            max_retries_down: nonneg(h.max_retries_down),
                            http_method: h.http_method.clone(),
                            url_path: h.url_path.clone(),
                            expected_codes: h.expected_codes.clone(),
                        }),
                })
                .collect(),
        })
    }

    /// Records where the scheduler placed the load balancer and the VIP it got.
    pub async fn record_placement(
        &self,
        id: &str,
        vip: &str,
        device: &str,
    ) -> Result<(), ApiError> {
        load_balancer::Entity::update_many()
            .col_expr(load_balancer::Column::VipAddress, Expr::value(vip))
            .col_expr(load_balancer::Column::DeviceId, Expr::value(device))
            .filter(load_balancer::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The device confirmed `generation`. If it is still the latest, everything goes ACTIVE;
    /// returns whether it was the latest.
    pub async fn record_applied(&self, id: &str, generation: i64) -> Result<bool, ApiError> {
        let txn = self.db.begin().await?;
        let Some(lb) = load_balancer::Entity::find_by_id(id).one(&txn).await? else {
            return Ok(true);
        };
        let latest = lb.generation == generation
            && matches!(
                lb.provisioning_status.as_str(),
                PENDING_CREATE | PENDING_UPDATE
            );
        let mut active: load_balancer::ActiveModel = lb.clone().into();
        active.applied_generation = Set(Ord::max(lb.applied_generation, generation));
        if latest {
            active.provisioning_status = Set(ACTIVE.into());
            active.operating_status = Set(if lb.admin_state_up {
                "ONLINE"
            } else {
                "OFFLINE"
            }
            .into());
            active.status_reason = Set(String::new());
            active.pending_since_ms = Set(0);
            active.updated_ms = Set(now_ms());
            let pending = [PENDING_CREATE, PENDING_UPDATE];
            listener::Entity::update_many()
                .col_expr(listener::Column::ProvisioningStatus, Expr::value(ACTIVE))
                .col_expr(listener::Column::OperatingStatus, Expr::value("ONLINE"))
                .filter(listener::Column::LoadbalancerId.eq(id))
                .filter(listener::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
            pool::Entity::update_many()
                .col_expr(pool::Column::ProvisioningStatus, Expr::value(ACTIVE))
                .col_expr(pool::Column::OperatingStatus, Expr::value("ONLINE"))
                .filter(pool::Column::LoadbalancerId.eq(id))
                .filter(pool::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
            // Member health arrives from the agents' health stream (a later change); until then a
            // member's operating status says honestly that nothing has checked it.
            member::Entity::update_many()
                .col_expr(member::Column::ProvisioningStatus, Expr::value(ACTIVE))
                .col_expr(member::Column::OperatingStatus, Expr::value("NO_MONITOR"))
                .filter(member::Column::LoadbalancerId.eq(id))
                .filter(member::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
            health_monitor::Entity::update_many()
                .col_expr(
                    health_monitor::Column::ProvisioningStatus,
                    Expr::value(ACTIVE),
                )
                .col_expr(
                    health_monitor::Column::OperatingStatus,
                    Expr::value("ONLINE"),
                )
                .filter(health_monitor::Column::LoadbalancerId.eq(id))
                .filter(health_monitor::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
        }
        active.update(&txn).await?;
        txn.commit().await?;
        Ok(latest)
    }

    /// Puts the load balancer (and its pending children) in ERROR with a reason a person can act on.
    pub async fn record_error(&self, id: &str, reason: &str) -> Result<(), ApiError> {
        let txn = self.db.begin().await?;
        load_balancer::Entity::update_many()
            .col_expr(
                load_balancer::Column::ProvisioningStatus,
                Expr::value(ERROR),
            )
            .col_expr(load_balancer::Column::OperatingStatus, Expr::value("ERROR"))
            .col_expr(load_balancer::Column::StatusReason, Expr::value(reason))
            .col_expr(load_balancer::Column::PendingSinceMs, Expr::value(0))
            .col_expr(load_balancer::Column::UpdatedMs, Expr::value(now_ms()))
            .filter(load_balancer::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let pending = [PENDING_CREATE, PENDING_UPDATE];
        listener::Entity::update_many()
            .col_expr(listener::Column::ProvisioningStatus, Expr::value(ERROR))
            .filter(listener::Column::LoadbalancerId.eq(id))
            .filter(listener::Column::ProvisioningStatus.is_in(pending))
            .exec(&txn)
            .await?;
        pool::Entity::update_many()
            .col_expr(pool::Column::ProvisioningStatus, Expr::value(ERROR))
            .filter(pool::Column::LoadbalancerId.eq(id))
            .filter(pool::Column::ProvisioningStatus.is_in(pending))
            .exec(&txn)
            .await?;
        member::Entity::update_many()
            .col_expr(member::Column::ProvisioningStatus, Expr::value(ERROR))
            .filter(member::Column::LoadbalancerId.eq(id))
            .filter(member::Column::ProvisioningStatus.is_in(pending))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Removes the whole tree once the device no longer serves it.
    pub async fn purge_load_balancer(&self, id: &str) -> Result<(), ApiError> {
        let txn = self.db.begin().await?;
        health_monitor::Entity::delete_many()
            .filter(health_monitor::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
        member::Entity::delete_many()
            .filter(member::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
        pool::Entity::delete_many()
            .filter(pool::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
        listener::Entity::delete_many()
            .filter(listener::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
        load_balancer::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn insert_listener(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    new: NewListener,
    default_pool_id: Option<String>,
) -> Result<listener::Model, ApiError> {
    let taken = listener::Entity::find()
        .filter(listener::Column::LoadbalancerId.eq(lb))
        .filter(listener::Column::ProtocolPort.eq(i32::from(new.port)))
        .count(txn)
        .await?;
    if taken > 0 {
        return Err(ApiError::AlreadyExists(format!(
            "another listener of load balancer {lb} uses port {}",
            new.port
        )));
    }
    let now = now_ms();
    Ok(listener::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        name: Set(new.name),
        description: Set(new.description),
        protocol: Set(new.protocol.as_str().to_owned()),
        protocol_port: Set(i32::from(new.port)),
        connection_limit: Set(new.connection_limit),
        default_pool_id: Set(default_pool_id),
        admin_state_up: Set(new.admin_state_up),
        tags: Set(tags(&new.tags)),
        timeout_client_data_ms: Set(new.timeout_client_data_ms),
        timeout_member_connect_ms: Set(new.timeout_member_connect_ms),
        timeout_member_data_ms: Set(new.timeout_member_data_ms),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set("OFFLINE".into()),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?)
}

async fn set_default_pool(
    txn: &DatabaseTransaction,
    listener_id: &str,
    pool_id: &str,
) -> Result<(), ApiError> {
    listener::Entity::update_many()
        .col_expr(listener::Column::DefaultPoolId, Expr::value(pool_id))
        .filter(listener::Column::Id.eq(listener_id))
        .exec(txn)
        .await?;
    Ok(())
}

async fn insert_pool(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    listener_id: Option<String>,
    new: NewPool,
) -> Result<pool::Model, ApiError> {
    let now = now_ms();
    let created = pool::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        listener_id: Set(listener_id),
        name: Set(new.name),
        description: Set(new.description),
        protocol: Set(new.protocol.as_str().to_owned()),
        lb_algorithm: Set(new.algorithm.to_owned()),
        admin_state_up: Set(new.admin_state_up),
        tags: Set(tags(&new.tags)),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set("OFFLINE".into()),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?;
    for m in new.members {
        insert_member(txn, project, lb, &created.id, m).await?;
    }
    if let Some(monitor) = new.monitor {
        insert_monitor(txn, project, lb, &created.id, monitor).await?;
    }
    Ok(created)
}

async fn insert_member(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    pool_id: &str,
    new: NewMember,
) -> Result<member::Model, ApiError> {
    let now = now_ms();
    Ok(member::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        pool_id: Set(pool_id.to_owned()),
        name: Set(new.name),
        address: Set(new.address.to_string()),
        protocol_port: Set(i32::from(new.port)),
        weight: Set(new.weight),
        admin_state_up: Set(new.admin_state_up),
        backup: Set(new.backup),
        tags: Set(tags(&new.tags)),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set("OFFLINE".into()),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?)
}

async fn insert_monitor(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    pool_id: &str,
    new: NewMonitor,
) -> Result<(), ApiError> {
    let now = now_ms();
    health_monitor::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        pool_id: Set(pool_id.to_owned()),
        name: Set(new.name),
        monitor_type: Set(new.monitor_type.to_owned()),
        delay_s: Set(new.delay_s),
        timeout_s: Set(new.timeout_s),
        max_retries: Set(new.max_retries),
        max_retries_down: Set(new.max_retries_down),
        http_method: Set(new.http_method),
        url_path: Set(new.url_path),
        expected_codes: Set(new.expected_codes),
        admin_state_up: Set(new.admin_state_up),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set("OFFLINE".into()),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?;
    Ok(())
}
