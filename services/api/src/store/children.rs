//! Listeners, pools, members and health monitors: each change bumps its load balancer's generation
//! in the same transaction.
use std::collections::HashMap;

use lbaas::api::v1 as pb;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Set, sea_query::Expr,
};

use super::{Kind, PENDING_CREATE, PENDING_UPDATE, Page, Store, new_id, page_size, paginate};
use crate::{
    convert::{self, NewListener, NewMember, NewMonitor, NewPool, Protocol, join_tags},
    entity::{health_monitor, listener, member, pool},
    error::ApiError,
    now_ms, update,
};

/// Children start OFFLINE and PENDING_CREATE; the deploy that carries them makes them ACTIVE.
const OFFLINE: &str = "OFFLINE";

/// `field` is where the request holds the listener (`listener`, or
/// `load_balancer.listeners[i]` within a whole tree), so violations name the caller's own path.
pub(super) async fn insert_listener(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    new: NewListener,
    field: &str,
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
    Store::check_certificates(
        txn,
        project,
        field,
        new.default_tls_container_ref.as_deref(),
        &new.sni_container_refs,
    )
    .await?;
    let now = now_ms();
    let (alpn_protocols, tls_versions, tls_ciphers) = new.tls.columns();
    Ok(listener::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        name: Set(new.name),
        description: Set(new.description),
        protocol: Set(new.protocol.as_str().to_owned()),
        protocol_port: Set(i32::from(new.port)),
        connection_limit: Set(new.connection_limit),
        default_pool_id: Set(None),
        admin_state_up: Set(new.admin_state_up),
        tags: Set(join_tags(&new.tags)),
        timeout_client_data_ms: Set(new.timeout_client_data_ms),
        timeout_member_connect_ms: Set(new.timeout_member_connect_ms),
        timeout_member_data_ms: Set(new.timeout_member_data_ms),
        allowed_cidrs: Set(join_tags(&new.allowed_cidrs)),
        insert_headers: Set(join_tags(&new.insert_headers)),
        default_tls_container_ref: Set(new.default_tls_container_ref),
        sni_container_refs: Set(join_tags(&new.sni_container_refs)),
        alpn_protocols: Set(alpn_protocols),
        tls_versions: Set(tls_versions),
        tls_ciphers: Set(tls_ciphers),
        hsts_max_age: Set(new.hsts.max_age),
        hsts_include_subdomains: Set(new.hsts.include_subdomains),
        hsts_preload: Set(new.hsts.preload),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set(OFFLINE.into()),
        revision: Set(1),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?)
}

pub(super) async fn set_default_pool(
    txn: &DatabaseTransaction,
    listener_id: &str,
    pool_id: &str,
) -> Result<(), ApiError> {
    listener::Entity::update_many()
        .col_expr(listener::Column::DefaultPoolId, Expr::value(pool_id))
        .filter(listener::Column::Id.eq(listener_id))
        .exec(txn)
        .await?;
    pool::Entity::update_many()
        .col_expr(pool::Column::ListenerId, Expr::value(listener_id))
        .filter(pool::Column::Id.eq(pool_id))
        .exec(txn)
        .await?;
    Ok(())
}

pub(super) async fn insert_pool(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    listener_id: Option<String>,
    new: NewPool,
) -> Result<pool::Model, ApiError> {
    let now = now_ms();
    let (alpn_protocols, tls_versions, tls_ciphers) = new.tls.columns();
    let created = pool::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        listener_id: Set(listener_id),
        name: Set(new.name),
        description: Set(new.description),
        protocol: Set(new.protocol.as_str().to_owned()),
        lb_algorithm: Set(new.algorithm.to_owned()),
        session_persistence: Set(new.session_persistence.to_owned()),
        persistence_cookie_name: Set(new.persistence_cookie_name),
        tls_enabled: Set(new.tls_enabled),
        alpn_protocols: Set(alpn_protocols),
        tls_versions: Set(tls_versions),
        tls_ciphers: Set(tls_ciphers),
        admin_state_up: Set(new.admin_state_up),
        tags: Set(join_tags(&new.tags)),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set(OFFLINE.into()),
        revision: Set(1),
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
        monitor_address: Set(new
            .monitor_address
            .map(|ip| ip.to_string())
            .unwrap_or_default()),
        monitor_port: Set(new.monitor_port.map(i32::from).unwrap_or_default()),
        tags: Set(join_tags(&new.tags)),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set(OFFLINE.into()),
        revision: Set(1),
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
) -> Result<health_monitor::Model, ApiError> {
    let now = now_ms();
    Ok(health_monitor::ActiveModel {
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
        http_version: Set(new.http_version),
        domain_name: Set(new.domain_name),
        admin_state_up: Set(new.admin_state_up),
        provisioning_status: Set(PENDING_CREATE.into()),
        operating_status: Set(OFFLINE.into()),
        revision: Set(1),
        created_ms: Set(now),
        updated_ms: Set(now),
    }
    .insert(txn)
    .await?)
}

/// A changed child goes PENDING_UPDATE (unless still PENDING_CREATE) with a new revision.
fn child_pending(status: &str) -> &'static str {
    if status == PENDING_CREATE {
        PENDING_CREATE
    } else {
        PENDING_UPDATE
    }
}

impl Store {
    async fn pool_in(
        txn: &DatabaseTransaction,
        project: &str,
        id: &str,
    ) -> Result<Option<pool::Model>, ApiError> {
        Ok(pool::Entity::find_by_id(id)
            .filter(pool::Column::ProjectId.eq(project))
            .one(txn)
            .await?)
    }

    /// Checks that `pool_id` may be the default pool of a listener of `lb` speaking `protocol`.
    async fn check_default_pool(
        txn: &DatabaseTransaction,
        project: &str,
        lb: &str,
        pool_id: &str,
        protocol: Protocol,
        listener: Option<&str>,
        field: &str,
    ) -> Result<(), ApiError> {
        let Some(p) = Self::pool_in(txn, project, pool_id).await? else {
            return Err(ApiError::NotFound(format!("pool {pool_id}")));
        };
        if p.loadbalancer_id != lb {
            return Err(ApiError::invalid(
                field,
                "names a pool of another load balancer",
            ));
        }
        let pool_protocol = Protocol::parse(&p.protocol).unwrap_or(Protocol::Tcp);
        if !Protocol::pool_fits_listener(pool_protocol, protocol) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "a {} pool cannot serve a {} listener",
                    p.protocol,
                    protocol.as_str()
                ),
            ));
        }
        if p.listener_id.is_some() && p.listener_id.as_deref() != listener {
            return Err(ApiError::AlreadyExists(format!(
                "pool {pool_id} is already the default pool of another listener"
            )));
        }
        Ok(())
    }

    // ---- listeners ----

    pub async fn create_listener(
        &self,
        project: &str,
        new: NewListener,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::Listener, request_id, || async {
                let txn = self.write().await?;
                let lb = Self::lb_in(&txn, project, &new.loadbalancer_id).await?;
                if let Some(pool_id) = &new.default_pool_id {
                    Self::check_default_pool(
                        &txn,
                        project,
                        &lb.id,
                        pool_id,
                        new.protocol,
                        None,
                        "listener.default_pool_id",
                    )
                    .await?;
                }
                self.check_quota(&txn, project, Kind::Listener, 1).await?;
                Self::bump(&txn, &lb).await?;
                let created =
                    insert_listener(&txn, project, &lb.id, new.clone(), "listener").await?;
                if let Some(pool_id) = &new.default_pool_id {
                    set_default_pool(&txn, &created.id, pool_id).await?;
                }
                Self::remember(&txn, project, Kind::Listener, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
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
        project: Option<&str>,
        lb: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<listener::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = listener::Entity::find().order_by_asc(listener::Column::Id);
        if let Some(project) = project {
            query = query.filter(listener::Column::ProjectId.eq(project));
        }
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

    pub async fn update_listener(
        &self,
        project: &str,
        patch: &pb::Listener,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = listener::Entity::find_by_id(patch.id.as_str())
            .filter(listener::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("listener {}", patch.id)))?;
        update::check_etag(&patch.etag, &convert::revision_etag(found.revision))?;
        let mut merged = convert::listener_to_proto(found.clone());
        update::overlay_listener(&mut merged, patch, paths);
        let checked = convert::validate_listener(&merged)?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::check_certificates(
            &txn,
            project,
            "listener",
            checked.default_tls_container_ref.as_deref(),
            &checked.sni_container_refs,
        )
        .await?;
        if checked.default_pool_id != found.default_pool_id {
            if let Some(pool_id) = &checked.default_pool_id {
                Self::check_default_pool(
                    &txn,
                    project,
                    &lb.id,
                    pool_id,
                    checked.protocol,
                    Some(&found.id),
                    "listener.default_pool_id",
                )
                .await?;
            }
            pool::Entity::update_many()
                .col_expr(
                    pool::Column::ListenerId,
                    Expr::value(Option::<String>::None),
                )
                .filter(pool::Column::ListenerId.eq(found.id.as_str()))
                .exec(&txn)
                .await?;
        }
        Self::bump(&txn, &lb).await?;
        let status = child_pending(&found.provisioning_status);
        let mut active: listener::ActiveModel = found.clone().into();
        active.name = Set(checked.name);
        active.description = Set(checked.description);
        active.connection_limit = Set(checked.connection_limit);
        active.default_pool_id = Set(checked.default_pool_id.clone());
        active.admin_state_up = Set(checked.admin_state_up);
        active.tags = Set(join_tags(&checked.tags));
        active.timeout_client_data_ms = Set(checked.timeout_client_data_ms);
        active.timeout_member_connect_ms = Set(checked.timeout_member_connect_ms);
        active.timeout_member_data_ms = Set(checked.timeout_member_data_ms);
        active.allowed_cidrs = Set(join_tags(&checked.allowed_cidrs));
        active.insert_headers = Set(join_tags(&checked.insert_headers));
        active.default_tls_container_ref = Set(checked.default_tls_container_ref.clone());
        active.sni_container_refs = Set(join_tags(&checked.sni_container_refs));
        let (alpn_protocols, tls_versions, tls_ciphers) = checked.tls.columns();
        active.alpn_protocols = Set(alpn_protocols);
        active.tls_versions = Set(tls_versions);
        active.tls_ciphers = Set(tls_ciphers);
        active.hsts_max_age = Set(checked.hsts.max_age);
        active.hsts_include_subdomains = Set(checked.hsts.include_subdomains);
        active.hsts_preload = Set(checked.hsts.preload);
        active.provisioning_status = Set(status.into());
        active.revision = Set(found.revision + 1);
        active.updated_ms = Set(now_ms());
        active.update(&txn).await?;
        if let Some(pool_id) = &checked.default_pool_id {
            set_default_pool(&txn, &found.id, pool_id).await?;
        }
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    /// Removes the listener from the desired state; its pool stays.
    pub async fn delete_listener(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = self.get_listener_in(&txn, project, id).await?;
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
        Self::delete_listener_policies(&txn, id).await?;
        listener::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    async fn get_listener_in(
        &self,
        txn: &DatabaseTransaction,
        project: &str,
        id: &str,
    ) -> Result<listener::Model, ApiError> {
        listener::Entity::find_by_id(id)
            .filter(listener::Column::ProjectId.eq(project))
            .one(txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("listener {id}")))
    }

    // ---- pools ----

    pub async fn create_pool(
        &self,
        project: &str,
        new: NewPool,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::Pool, request_id, || async {
                let txn = self.write().await?;
                let lb = Self::lb_in(&txn, project, &new.loadbalancer_id).await?;
                if let Some(listener_id) = &new.listener_id {
                    let found = listener::Entity::find_by_id(listener_id.as_str())
                        .filter(listener::Column::ProjectId.eq(project))
                        .one(&txn)
                        .await?;
                    match found {
                        None => return Err(ApiError::NotFound(format!("listener {listener_id}"))),
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
                            let listener_protocol =
                                Protocol::parse(&l.protocol).unwrap_or(Protocol::Tcp);
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
                self.check_quota(&txn, project, Kind::Pool, 1).await?;
                self.check_quota(&txn, project, Kind::Member, new.members.len() as u64)
                    .await?;
                self.check_quota(
                    &txn,
                    project,
                    Kind::HealthMonitor,
                    u64::from(new.monitor.is_some()),
                )
                .await?;
                Self::bump(&txn, &lb).await?;
                let created =
                    insert_pool(&txn, project, &lb.id, new.listener_id.clone(), new.clone())
                        .await?;
                if let Some(listener_id) = &new.listener_id {
                    set_default_pool(&txn, listener_id, &created.id).await?;
                }
                Self::remember(&txn, project, Kind::Pool, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
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
        project: Option<&str>,
        lb: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<(pool::Model, Option<String>)>, ApiError> {
        let size = page_size(size)?;
        let mut query = pool::Entity::find().order_by_asc(pool::Column::Id);
        if let Some(project) = project {
            query = query.filter(pool::Column::ProjectId.eq(project));
        }
        if !lb.is_empty() {
            query = query.filter(pool::Column::LoadbalancerId.eq(lb));
        }
        if !token.is_empty() {
            query = query.filter(pool::Column::Id.gt(token));
        }
        let page = paginate(query.limit(size + 1).all(&self.db).await?, size, |m| {
            m.id.clone()
        });
        let ids: Vec<String> = page.items.iter().map(|p| p.id.clone()).collect();
        let monitors: HashMap<String, String> = health_monitor::Entity::find()
            .filter(health_monitor::Column::PoolId.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.pool_id, m.id))
            .collect();
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|p| {
                    let monitor = monitors.get(&p.id).cloned();
                    (p, monitor)
                })
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    pub async fn update_pool(
        &self,
        project: &str,
        patch: &pb::Pool,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = Self::pool_in(&txn, project, &patch.id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pool {}", patch.id)))?;
        update::check_etag(&patch.etag, &convert::revision_etag(found.revision))?;
        let mut merged = convert::pool_to_proto(found.clone(), None);
        // The stored listener link is the listener's business; the pool update leaves it alone.
        merged.listener_id.clear();
        update::overlay_pool(&mut merged, patch, paths);
        let checked = convert::validate_pool(&merged)?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        let status = child_pending(&found.provisioning_status);
        let mut active: pool::ActiveModel = found.clone().into();
        active.name = Set(checked.name);
        active.description = Set(checked.description);
        active.lb_algorithm = Set(checked.algorithm.to_owned());
        active.session_persistence = Set(checked.session_persistence.to_owned());
        active.persistence_cookie_name = Set(checked.persistence_cookie_name);
        active.tls_enabled = Set(checked.tls_enabled);
        let (alpn_protocols, tls_versions, tls_ciphers) = checked.tls.columns();
        active.alpn_protocols = Set(alpn_protocols);
        active.tls_versions = Set(tls_versions);
        active.tls_ciphers = Set(tls_ciphers);
        active.admin_state_up = Set(checked.admin_state_up);
        active.tags = Set(join_tags(&checked.tags));
        active.provisioning_status = Set(status.into());
        active.revision = Set(found.revision + 1);
        active.updated_ms = Set(now_ms());
        active.update(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    /// Removes the pool, its members and monitor; listeners that used it lose their default pool.
    pub async fn delete_pool(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = Self::pool_in(&txn, project, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pool {id}")))?;
        Self::check_pool_unreferenced(&txn, id).await?;
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
        self.announce(project, &lb.id).await;
        Ok(())
    }

    // ---- members ----

    pub async fn create_member(
        &self,
        project: &str,
        new: NewMember,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::Member, request_id, || async {
                let txn = self.write().await?;
                let found = Self::pool_in(&txn, project, &new.pool_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!("pool {}", new.pool_id)))?;
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
                self.check_quota(&txn, project, Kind::Member, 1).await?;
                let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
                Self::bump(&txn, &lb).await?;
                let created = insert_member(&txn, project, &lb.id, &found.id, new.clone()).await?;
                Self::remember(&txn, project, Kind::Member, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
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
        project: Option<&str>,
        pool_id: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<member::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = member::Entity::find().order_by_asc(member::Column::Id);
        if let Some(project) = project {
            query = query.filter(member::Column::ProjectId.eq(project));
        }
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

    pub async fn update_member(
        &self,
        project: &str,
        patch: &pb::Member,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = member::Entity::find_by_id(patch.id.as_str())
            .filter(member::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("member {}", patch.id)))?;
        update::check_etag(&patch.etag, &convert::revision_etag(found.revision))?;
        let mut merged = convert::member_to_proto(found.clone());
        update::overlay_member(&mut merged, patch, paths);
        let checked = convert::validate_member(&merged)?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        apply_member(&txn, found, &checked).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    pub async fn delete_member(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = member::Entity::find_by_id(id)
            .filter(member::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("member {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        member::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    /// Octavia's member batch update: one change, one generation.
    pub async fn batch_update_members(
        &self,
        project: &str,
        pool_id: &str,
        members: Vec<NewMember>,
        additive_only: bool,
    ) -> Result<Vec<member::Model>, ApiError> {
        let txn = self.write().await?;
        let found = Self::pool_in(&txn, project, pool_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("pool {pool_id}")))?;
        let existing = member::Entity::find()
            .filter(member::Column::PoolId.eq(pool_id))
            .all(&txn)
            .await?;
        let key = |address: &str, port: i32| format!("{address}:{port}");
        let mut by_key: HashMap<String, member::Model> = existing
            .into_iter()
            .map(|m| (key(&m.address, m.protocol_port), m))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut violations = convert::Violations::default();
        for (i, m) in members.iter().enumerate() {
            if !seen.insert(key(&m.address.to_string(), i32::from(m.port))) {
                violations.add(
                    format!("members[{i}]"),
                    "lists the same address and port twice",
                );
            }
        }
        violations.finish(())?;
        let new_count = members
            .iter()
            .filter(|m| !by_key.contains_key(&key(&m.address.to_string(), i32::from(m.port))))
            .count() as u64;
        let removed = if additive_only {
            0
        } else {
            by_key.len() as u64 - (members.len() as u64 - new_count)
        };
        self.check_quota(
            &txn,
            project,
            Kind::Member,
            new_count.saturating_sub(removed),
        )
        .await?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        for m in members {
            match by_key.remove(&key(&m.address.to_string(), i32::from(m.port))) {
                Some(current) => {
                    apply_member(&txn, current, &m).await?;
                }
                None => {
                    insert_member(&txn, project, &lb.id, pool_id, m).await?;
                }
            }
        }
        if !additive_only {
            let gone: Vec<String> = by_key.into_values().map(|m| m.id).collect();
            if !gone.is_empty() {
                member::Entity::delete_many()
                    .filter(member::Column::Id.is_in(gone))
                    .exec(&txn)
                    .await?;
            }
        }
        let result = member::Entity::find()
            .filter(member::Column::PoolId.eq(pool_id))
            .order_by_asc(member::Column::Id)
            .all(&txn)
            .await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(result)
    }

    // ---- health monitors ----

    pub async fn create_health_monitor(
        &self,
        project: &str,
        new: NewMonitor,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::HealthMonitor, request_id, || async {
                let txn = self.write().await?;
                let found = Self::pool_in(&txn, project, &new.pool_id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!("pool {}", new.pool_id)))?;
                let taken = health_monitor::Entity::find()
                    .filter(health_monitor::Column::PoolId.eq(found.id.as_str()))
                    .count(&txn)
                    .await?;
                if taken > 0 {
                    return Err(ApiError::AlreadyExists(format!(
                        "pool {} already has a health monitor",
                        found.id
                    )));
                }
                if let Err(why) =
                    crate::convert::monitor_fits_pool(new.monitor_type, &found.protocol)
                {
                    return Err(ApiError::invalid("health_monitor.type", why));
                }
                self.check_quota(&txn, project, Kind::HealthMonitor, 1)
                    .await?;
                let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
                Self::bump(&txn, &lb).await?;
                let created = insert_monitor(&txn, project, &lb.id, &found.id, new.clone()).await?;
                Self::remember(&txn, project, Kind::HealthMonitor, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
    }

    pub async fn get_health_monitor(
        &self,
        project: &str,
        id: &str,
    ) -> Result<health_monitor::Model, ApiError> {
        health_monitor::Entity::find_by_id(id)
            .filter(health_monitor::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("health monitor {id}")))
    }

    pub async fn list_health_monitors(
        &self,
        project: Option<&str>,
        pool_id: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<health_monitor::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = health_monitor::Entity::find().order_by_asc(health_monitor::Column::Id);
        if let Some(project) = project {
            query = query.filter(health_monitor::Column::ProjectId.eq(project));
        }
        if !pool_id.is_empty() {
            query = query.filter(health_monitor::Column::PoolId.eq(pool_id));
        }
        if !token.is_empty() {
            query = query.filter(health_monitor::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    pub async fn update_health_monitor(
        &self,
        project: &str,
        patch: &pb::HealthMonitor,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = health_monitor::Entity::find_by_id(patch.id.as_str())
            .filter(health_monitor::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("health monitor {}", patch.id)))?;
        update::check_etag(&patch.etag, &convert::revision_etag(found.revision))?;
        let mut merged = convert::health_monitor_to_proto(found.clone());
        update::overlay_health_monitor(&mut merged, patch, paths);
        let checked = convert::validate_health_monitor(&merged)?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        let status = child_pending(&found.provisioning_status);
        let mut active: health_monitor::ActiveModel = found.clone().into();
        active.name = Set(checked.name);
        active.delay_s = Set(checked.delay_s);
        active.timeout_s = Set(checked.timeout_s);
        active.max_retries = Set(checked.max_retries);
        active.max_retries_down = Set(checked.max_retries_down);
        active.http_method = Set(checked.http_method);
        active.url_path = Set(checked.url_path);
        active.expected_codes = Set(checked.expected_codes);
        active.http_version = Set(checked.http_version);
        active.domain_name = Set(checked.domain_name);
        active.admin_state_up = Set(checked.admin_state_up);
        active.provisioning_status = Set(status.into());
        active.revision = Set(found.revision + 1);
        active.updated_ms = Set(now_ms());
        active.update(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    pub async fn delete_health_monitor(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = health_monitor::Entity::find_by_id(id)
            .filter(health_monitor::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("health monitor {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        health_monitor::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }
}

/// Writes a member's updatable fields.
async fn apply_member(
    txn: &DatabaseTransaction,
    current: member::Model,
    checked: &NewMember,
) -> Result<(), ApiError> {
    let status = child_pending(&current.provisioning_status);
    let revision = current.revision + 1;
    let mut active: member::ActiveModel = current.into();
    active.name = Set(checked.name.clone());
    active.weight = Set(checked.weight);
    active.admin_state_up = Set(checked.admin_state_up);
    active.backup = Set(checked.backup);
    active.monitor_address = Set(checked
        .monitor_address
        .map(|ip| ip.to_string())
        .unwrap_or_default());
    active.monitor_port = Set(checked.monitor_port.map(i32::from).unwrap_or_default());
    active.tags = Set(join_tags(&checked.tags));
    active.provisioning_status = Set(status.into());
    active.revision = Set(revision);
    active.updated_ms = Set(now_ms());
    active.update(txn).await?;
    Ok(())
}
