//! The application store: every rule that touches the database, one transaction per change. Each
//! change to a load balancer's tree bumps its generation in the same transaction, and is announced
//! on the change hub once committed.

mod certificates;
mod children;
mod deploy;
mod health;
mod l7;
mod load_balancers;

use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QuerySelect as _,
    Set,
    sea_query::{Expr, ExprTrait as _, OnConflict},
};

pub use load_balancers::{LoadBalancerFilter, LoadBalancerView};

use crate::{
    entity::{health_monitor, idempotency_key, listener, load_balancer, member, pool, quota},
    error::ApiError,
    now_ms,
    watch::{Change, ChangeHub},
};

pub const PENDING_CREATE: &str = "PENDING_CREATE";
pub const PENDING_UPDATE: &str = "PENDING_UPDATE";
pub const PENDING_DELETE: &str = "PENDING_DELETE";
pub const ACTIVE: &str = "ACTIVE";
pub const ERROR: &str = "ERROR";

/// How many objects of each kind a project may hold; -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub load_balancers: i32,
    pub listeners: i32,
    pub pools: i32,
    pub members: i32,
    pub health_monitors: i32,
    pub l7_policies: i32,
    pub l7_rules: i32,
}

impl QuotaLimits {
    pub const UNLIMITED: Self = Self {
        load_balancers: -1,
        listeners: -1,
        pools: -1,
        members: -1,
        health_monitors: -1,
        l7_policies: -1,
        l7_rules: -1,
    };
}

/// The object kinds, for quotas and idempotency keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LoadBalancer,
    Listener,
    Pool,
    Member,
    HealthMonitor,
    L7Policy,
    L7Rule,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::LoadBalancer => "load_balancer",
            Self::Listener => "listener",
            Self::Pool => "pool",
            Self::Member => "member",
            Self::HealthMonitor => "health_monitor",
            Self::L7Policy => "l7policy",
            Self::L7Rule => "l7rule",
        }
    }

    fn limit(self, limits: &QuotaLimits) -> i32 {
        match self {
            Self::LoadBalancer => limits.load_balancers,
            Self::Listener => limits.listeners,
            Self::Pool => limits.pools,
            Self::Member => limits.members,
            Self::HealthMonitor => limits.health_monitors,
            Self::L7Policy => limits.l7_policies,
            Self::L7Rule => limits.l7_rules,
        }
    }

    async fn count<C: ConnectionTrait>(self, db: &C, project: &str) -> Result<u64, ApiError> {
        Ok(match self {
            Self::LoadBalancer => {
                load_balancer::Entity::find()
                    .filter(load_balancer::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::Listener => {
                listener::Entity::find()
                    .filter(listener::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::Pool => {
                pool::Entity::find()
                    .filter(pool::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::Member => {
                member::Entity::find()
                    .filter(member::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::HealthMonitor => {
                health_monitor::Entity::find()
                    .filter(health_monitor::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::L7Policy => {
                crate::entity::l7_policy::Entity::find()
                    .filter(crate::entity::l7_policy::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
            Self::L7Rule => {
                crate::entity::l7_rule::Entity::find()
                    .filter(crate::entity::l7_rule::Column::ProjectId.eq(project))
                    .count(db)
                    .await?
            }
        })
    }
}

/// A page of rows and the token of the next one.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    pub hub: ChangeHub,
    pub quota_defaults: QuotaLimits,
    /// Seals certificate keys; `None` when no secret key is configured.
    pub secret: Option<crate::certs::SecretKey>,
    /// The operator's access log line (see `ApiConfig::access_log_format`).
    pub access_log_format: String,
}

/// Octavia's default tenant access log format (its `user_log_format`).
pub const OCTAVIA_TENANT_LOG_FORMAT: &str = "{{ project_id }} {{ lb_id }} %f %ci %cp %t %{+Q}r %ST %B %U %[ssl_c_verify] %{+Q}[ssl_c_s_dn] %b %s %Tt %tsc";

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The page size asked for: 0 (unset) means 100, more than 1000 means 1000, below 0 is refused.
pub(crate) fn page_size(requested: i32) -> Result<u64, ApiError> {
    match u64::try_from(requested) {
        Ok(0) => Ok(100),
        Ok(n) => Ok(std::cmp::min(n, 1000)),
        Err(_) => Err(ApiError::invalid("page_size", "must not be negative")),
    }
}

/// Keyset pagination on id: the page token is the last id of the previous page, so objects created
/// or deleted between pages never shift what comes next.
pub(crate) fn paginate<T>(mut items: Vec<T>, size: u64, id: impl Fn(&T) -> String) -> Page<T> {
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

fn check_request_id(request_id: &str) -> Result<(), ApiError> {
    if request_id.len() > 128 || request_id.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "request_id",
            "must be at most 128 printable characters",
        ));
    }
    Ok(())
}

impl Store {
    pub fn new(
        db: DatabaseConnection,
        hub: ChangeHub,
        quota_defaults: QuotaLimits,
        secret: Option<crate::certs::SecretKey>,
    ) -> Self {
        Self {
            db,
            hub,
            quota_defaults,
            secret,
            access_log_format: OCTAVIA_TENANT_LOG_FORMAT.to_owned(),
        }
    }

    pub(crate) async fn write(&self) -> Result<DatabaseTransaction, ApiError> {
        Ok(lbaas::server::begin_write(&self.db).await?)
    }

    /// Publishes the load balancer's state after a committed change, for watch streams.
    pub(crate) async fn announce(&self, project: &str, loadbalancer: &str) {
        if !self.hub.has_watchers() {
            return;
        }
        let snapshot = match self.get_load_balancer(project, loadbalancer).await {
            Ok(view) => Some(view.into_proto()),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a changed load balancer for watchers");
                return;
            }
        };
        self.hub.publish(Change {
            project_id: project.to_owned(),
            loadbalancer_id: loadbalancer.to_owned(),
            snapshot,
        });
    }

    /// A load balancer of the project, or NOT_FOUND (also for another project's).
    pub(crate) async fn lb_in<C: ConnectionTrait>(
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
    /// Changes are accepted whatever the load balancer is doing: the deployer coalesces them.
    pub(crate) async fn bump(
        txn: &DatabaseTransaction,
        lb: &load_balancer::Model,
    ) -> Result<(), ApiError> {
        if lb.provisioning_status == PENDING_DELETE {
            return Err(ApiError::FailedPrecondition(format!(
                "load balancer {} is being deleted",
                lb.id
            )));
        }
        let now = now_ms();
        // One statement, so the status it sets is decided on the row it bumps. As two (set
        // PENDING_UPDATE where ACTIVE or ERROR, then bump), the first could find the row still
        // PENDING_* and match nothing (taking no lock) while the deployer's `record_applied`
        // held the row and made it ACTIVE; the bump then waited and landed on an ACTIVE row:
        // ACTIVE with a generation never applied (seen once on PostgreSQL in project_isolation).
        // A single UPDATE waits for the row and re-evaluates on the committed version.
        let settled = || load_balancer::Column::ProvisioningStatus.is_in([ACTIVE, ERROR]);
        load_balancer::Entity::update_many()
            .col_expr(
                load_balancer::Column::Generation,
                Expr::col(load_balancer::Column::Generation).add(1),
            )
            .col_expr(load_balancer::Column::UpdatedMs, Expr::value(now))
            .col_expr(
                load_balancer::Column::ProvisioningStatus,
                Expr::case(settled(), PENDING_UPDATE)
                    .finally(Expr::col(load_balancer::Column::ProvisioningStatus))
                    .into(),
            )
            .col_expr(
                load_balancer::Column::PendingSinceMs,
                Expr::case(settled(), now)
                    .finally(Expr::col(load_balancer::Column::PendingSinceMs))
                    .into(),
            )
            .filter(load_balancer::Column::Id.eq(&lb.id))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// The limits that apply to a project: its own, or the defaults.
    pub async fn quota_limits<C: ConnectionTrait>(
        &self,
        db: &C,
        project: &str,
    ) -> Result<QuotaLimits, ApiError> {
        let row = quota::Entity::find_by_id(project).one(db).await?;
        Ok(match row {
            Some(q) if q.custom => QuotaLimits {
                load_balancers: q.load_balancers,
                listeners: q.listeners,
                pools: q.pools,
                members: q.members,
                health_monitors: q.health_monitors,
                l7_policies: q.l7_policies,
                l7_rules: q.l7_rules,
            },
            _ => self.quota_defaults,
        })
    }

    /// Refuses `adding` more objects of `kind` when the project's quota would be exceeded. The
    /// project's quota row is locked first, so concurrent creates of one project queue on
    /// PostgreSQL (SQLite's write transactions already do).
    pub(crate) async fn check_quota(
        &self,
        txn: &DatabaseTransaction,
        project: &str,
        kind: Kind,
        adding: u64,
    ) -> Result<(), ApiError> {
        if adding == 0 {
            return Ok(());
        }
        let d = self.quota_defaults;
        quota::Entity::insert(quota::ActiveModel {
            project_id: Set(project.to_owned()),
            custom: Set(false),
            load_balancers: Set(d.load_balancers),
            listeners: Set(d.listeners),
            pools: Set(d.pools),
            members: Set(d.members),
            health_monitors: Set(d.health_monitors),
            l7_policies: Set(d.l7_policies),
            l7_rules: Set(d.l7_rules),
        })
        .on_conflict(
            OnConflict::column(quota::Column::ProjectId)
                .do_nothing()
                .to_owned(),
        )
        .try_insert()
        .exec(txn)
        .await?;
        quota::Entity::find_by_id(project)
            .lock_exclusive()
            .one(txn)
            .await?;
        let limits = self.quota_limits(txn, project).await?;
        let limit = kind.limit(&limits);
        if limit < 0 {
            return Ok(());
        }
        let in_use = kind.count(txn, project).await?;
        if in_use + adding > u64::try_from(limit).unwrap_or(0) {
            return Err(ApiError::ResourceExhausted(format!(
                "quota exceeded: project {project} may have {limit} {}(s) and has {in_use}; this request adds {adding}",
                kind.name()
            )));
        }
        Ok(())
    }

    /// Usage of every kind in a project.
    pub async fn usage(&self, project: &str) -> Result<QuotaLimits, ApiError> {
        let n = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        Ok(QuotaLimits {
            load_balancers: n(Kind::LoadBalancer.count(&self.db, project).await?),
            listeners: n(Kind::Listener.count(&self.db, project).await?),
            pools: n(Kind::Pool.count(&self.db, project).await?),
            members: n(Kind::Member.count(&self.db, project).await?),
            health_monitors: n(Kind::HealthMonitor.count(&self.db, project).await?),
            l7_policies: n(Kind::L7Policy.count(&self.db, project).await?),
            l7_rules: n(Kind::L7Rule.count(&self.db, project).await?),
        })
    }

    /// Sets a project's own limits, or (`None`) returns it to the defaults.
    pub async fn set_quota(
        &self,
        project: &str,
        limits: Option<QuotaLimits>,
    ) -> Result<QuotaLimits, ApiError> {
        let l = limits.unwrap_or(self.quota_defaults);
        let model = quota::ActiveModel {
            project_id: Set(project.to_owned()),
            custom: Set(limits.is_some()),
            load_balancers: Set(l.load_balancers),
            listeners: Set(l.listeners),
            pools: Set(l.pools),
            members: Set(l.members),
            health_monitors: Set(l.health_monitors),
            l7_policies: Set(l.l7_policies),
            l7_rules: Set(l.l7_rules),
        };
        quota::Entity::insert(model)
            .on_conflict(
                OnConflict::column(quota::Column::ProjectId)
                    .update_columns([
                        quota::Column::Custom,
                        quota::Column::LoadBalancers,
                        quota::Column::Listeners,
                        quota::Column::Pools,
                        quota::Column::Members,
                        quota::Column::HealthMonitors,
                        quota::Column::L7Policies,
                        quota::Column::L7Rules,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(l)
    }

    /// The object an earlier create with this request id made, if any.
    pub(crate) async fn earlier<C: ConnectionTrait>(
        db: &C,
        project: &str,
        kind: Kind,
        request_id: &str,
    ) -> Result<Option<String>, ApiError> {
        if request_id.is_empty() {
            return Ok(None);
        }
        check_request_id(request_id)?;
        let key = format!("{project}/{}/{request_id}", kind.name());
        Ok(idempotency_key::Entity::find_by_id(key)
            .one(db)
            .await?
            .map(|k| k.object_id))
    }

    /// Records that this request id made this object, in the create's transaction.
    pub(crate) async fn remember(
        txn: &DatabaseTransaction,
        project: &str,
        kind: Kind,
        request_id: &str,
        object_id: &str,
    ) -> Result<(), ApiError> {
        if request_id.is_empty() {
            return Ok(());
        }
        idempotency_key::ActiveModel {
            key: Set(format!("{project}/{}/{request_id}", kind.name())),
            object_id: Set(object_id.to_owned()),
            created_ms: Set(now_ms()),
        }
        .insert(txn)
        .await?;
        Ok(())
    }

    /// Runs a create at most once per request id: a retry (even one racing the first) gets the id of
    /// the object the first one made.
    pub(crate) async fn once<F, Fut>(
        &self,
        project: &str,
        kind: Kind,
        request_id: &str,
        create: F,
    ) -> Result<String, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, ApiError>>,
    {
        if let Some(id) = Self::earlier(&self.db, project, kind, request_id).await? {
            return Ok(id);
        }
        match create().await {
            Err(ApiError::AlreadyExists(why)) if !request_id.is_empty() => {
                match Self::earlier(&self.db, project, kind, request_id).await? {
                    Some(id) => Ok(id),
                    None => Err(ApiError::AlreadyExists(why)),
                }
            }
            other => other,
        }
    }
}
