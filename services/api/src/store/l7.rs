//! L7 policies and rules: each change bumps the load balancer's generation in the same
//! transaction; policy positions stay dense (1..=n) within a listener.
use lbaas::api::v1 as pb;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
    sea_query::{Expr, ExprTrait as _},
};

use super::{Kind, PENDING_CREATE, PENDING_UPDATE, Page, Store, new_id, page_size, paginate};
use crate::{
    convert::{Protocol, join_tags},
    entity::{l7_policy, l7_rule, listener, pool},
    error::ApiError,
    l7::{self, NewL7Policy, NewL7Rule},
    now_ms, update,
};

const OFFLINE: &str = "OFFLINE";

fn pending(status: &str) -> &'static str {
    if status == PENDING_CREATE {
        PENDING_CREATE
    } else {
        PENDING_UPDATE
    }
}

async fn insert_rule(
    txn: &DatabaseTransaction,
    project: &str,
    lb: &str,
    policy: &str,
    new: NewL7Rule,
) -> Result<l7_rule::Model, ApiError> {
    let now = now_ms();
    Ok(l7_rule::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project.to_owned()),
        loadbalancer_id: Set(lb.to_owned()),
        l7policy_id: Set(policy.to_owned()),
        rule_type: Set(new.rule_type.to_owned()),
        compare_type: Set(new.compare_type.to_owned()),
        key: Set(new.key),
        value: Set(new.value),
        invert: Set(new.invert),
        admin_state_up: Set(new.admin_state_up),
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

/// Where a policy asked to be at `wanted` (0: the end) lands among `count` others.
fn clamp_position(wanted: i32, count: i32) -> i32 {
    if wanted <= 0 || wanted > count + 1 {
        count + 1
    } else {
        wanted
    }
}

/// Moves the policies of `listener` with positions in `from..=to` by `delta`.
async fn shift(
    txn: &DatabaseTransaction,
    listener: &str,
    from: i32,
    to: i32,
    delta: i32,
) -> Result<(), ApiError> {
    l7_policy::Entity::update_many()
        .col_expr(
            l7_policy::Column::Position,
            Expr::col(l7_policy::Column::Position).add(delta),
        )
        .filter(l7_policy::Column::ListenerId.eq(listener))
        .filter(l7_policy::Column::Position.gte(from))
        .filter(l7_policy::Column::Position.lte(to))
        .exec(txn)
        .await?;
    Ok(())
}

impl Store {
    /// The listener a policy hangs off: in the project and speaking HTTP.
    async fn policy_listener(
        txn: &DatabaseTransaction,
        project: &str,
        id: &str,
    ) -> Result<listener::Model, ApiError> {
        let found = listener::Entity::find_by_id(id)
            .filter(listener::Column::ProjectId.eq(project))
            .one(txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("listener {id}")))?;
        if !Protocol::parse(&found.protocol).is_some_and(Protocol::is_http) {
            return Err(ApiError::invalid(
                "l7policy.listener_id",
                format!(
                    "L7 policies need an HTTP or TERMINATED_HTTPS listener, not {}",
                    found.protocol
                ),
            ));
        }
        Ok(found)
    }

    /// A REDIRECT_TO_POOL target: a pool of the same load balancer that can serve the listener.
    async fn check_redirect_pool(
        txn: &DatabaseTransaction,
        project: &str,
        listener: &listener::Model,
        pool_id: &str,
    ) -> Result<(), ApiError> {
        let field = "l7policy.redirect_pool_id";
        let Some(p) = pool::Entity::find_by_id(pool_id)
            .filter(pool::Column::ProjectId.eq(project))
            .one(txn)
            .await?
        else {
            return Err(ApiError::invalid(field, "names no pool of this project"));
        };
        if p.loadbalancer_id != listener.loadbalancer_id {
            return Err(ApiError::invalid(
                field,
                "names a pool of another load balancer",
            ));
        }
        let fits = match (
            Protocol::parse(&p.protocol),
            Protocol::parse(&listener.protocol),
        ) {
            (Some(pool), Some(l)) => Protocol::pool_fits_listener(pool, l),
            _ => false,
        };
        if !fits {
            return Err(ApiError::invalid(
                field,
                format!(
                    "a {} pool cannot serve a {} listener",
                    p.protocol, listener.protocol
                ),
            ));
        }
        Ok(())
    }

    pub async fn create_l7policy(
        &self,
        project: &str,
        new: NewL7Policy,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::L7Policy, request_id, || async {
                let txn = self.write().await?;
                let listener = Self::policy_listener(&txn, project, &new.listener_id).await?;
                if let Some(pool_id) = &new.redirect_pool_id {
                    Self::check_redirect_pool(&txn, project, &listener, pool_id).await?;
                }
                let lb = Self::lb_in(&txn, project, &listener.loadbalancer_id).await?;
                self.check_quota(&txn, project, Kind::L7Policy, 1).await?;
                self.check_quota(&txn, project, Kind::L7Rule, new.rules.len() as u64)
                    .await?;
                Self::bump(&txn, &lb).await?;
                let count = i32::try_from(
                    l7_policy::Entity::find()
                        .filter(l7_policy::Column::ListenerId.eq(listener.id.as_str()))
                        .count(&txn)
                        .await?,
                )
                .unwrap_or(i32::MAX);
                let position = clamp_position(new.position, count);
                shift(&txn, &listener.id, position, i32::MAX, 1).await?;
                let now = now_ms();
                let created = l7_policy::ActiveModel {
                    id: Set(new_id()),
                    project_id: Set(project.to_owned()),
                    loadbalancer_id: Set(lb.id.clone()),
                    listener_id: Set(listener.id.clone()),
                    name: Set(new.name.clone()),
                    description: Set(new.description.clone()),
                    action: Set(new.action.to_owned()),
                    redirect_pool_id: Set(new.redirect_pool_id.clone()),
                    redirect_url: Set(new.redirect_url.clone()),
                    redirect_prefix: Set(new.redirect_prefix.clone()),
                    redirect_http_code: Set(new.redirect_http_code),
                    position: Set(position),
                    admin_state_up: Set(new.admin_state_up),
                    tags: Set(join_tags(&new.tags)),
                    provisioning_status: Set(PENDING_CREATE.into()),
                    operating_status: Set(OFFLINE.into()),
                    revision: Set(1),
                    created_ms: Set(now),
                    updated_ms: Set(now),
                }
                .insert(&txn)
                .await?;
                for rule in new.rules.clone() {
                    insert_rule(&txn, project, &lb.id, &created.id, rule).await?;
                }
                Self::remember(&txn, project, Kind::L7Policy, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
    }

    pub async fn get_l7policy(&self, project: &str, id: &str) -> Result<pb::L7Policy, ApiError> {
        let found = l7_policy::Entity::find_by_id(id)
            .filter(l7_policy::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 policy {id}")))?;
        let rule_ids = l7_rule::Entity::find()
            .select_only()
            .column(l7_rule::Column::Id)
            .filter(l7_rule::Column::L7policyId.eq(id))
            .order_by_asc(l7_rule::Column::Id)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        Ok(l7::l7policy_to_proto(found, rule_ids))
    }

    /// Policies in position order per listener (then id), paged by id.
    pub async fn list_l7policies(
        &self,
        project: Option<&str>,
        listener_id: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<l7_policy::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = l7_policy::Entity::find().order_by_asc(l7_policy::Column::Id);
        if let Some(project) = project {
            query = query.filter(l7_policy::Column::ProjectId.eq(project));
        }
        if !listener_id.is_empty() {
            query = query.filter(l7_policy::Column::ListenerId.eq(listener_id));
        }
        if !token.is_empty() {
            query = query.filter(l7_policy::Column::Id.gt(token));
        }
        let mut page = paginate(query.limit(size + 1).all(&self.db).await?, size, |m| {
            m.id.clone()
        });
        page.items
            .sort_by(|a, b| (&a.listener_id, a.position).cmp(&(&b.listener_id, b.position)));
        Ok(page)
    }

    /// The ids of a listener's policies, in position order.
    pub async fn listener_policy_ids(&self, listener_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(l7_policy::Entity::find()
            .select_only()
            .column(l7_policy::Column::Id)
            .filter(l7_policy::Column::ListenerId.eq(listener_id))
            .order_by_asc(l7_policy::Column::Position)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    pub async fn update_l7policy(
        &self,
        project: &str,
        patch: &pb::L7Policy,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = l7_policy::Entity::find_by_id(patch.id.as_str())
            .filter(l7_policy::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 policy {}", patch.id)))?;
        update::check_etag(&patch.etag, &crate::convert::revision_etag(found.revision))?;
        let mut merged = l7::l7policy_to_proto(found.clone(), Vec::new());
        update::overlay_l7policy(&mut merged, patch, paths);
        let checked = l7::validate_l7policy(&merged)?;
        let listener = Self::policy_listener(&txn, project, &found.listener_id).await?;
        if let Some(pool_id) = &checked.redirect_pool_id {
            Self::check_redirect_pool(&txn, project, &listener, pool_id).await?;
        }
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        let count = i32::try_from(
            l7_policy::Entity::find()
                .filter(l7_policy::Column::ListenerId.eq(listener.id.as_str()))
                .count(&txn)
                .await?,
        )
        .unwrap_or(i32::MAX);
        // Out of the order, then back in where asked.
        let position = clamp_position(checked.position, count - 1);
        shift(&txn, &listener.id, found.position + 1, i32::MAX, -1).await?;
        shift(&txn, &listener.id, position, i32::MAX, 1).await?;
        let status = pending(&found.provisioning_status);
        let mut active: l7_policy::ActiveModel = found.clone().into();
        active.name = Set(checked.name);
        active.description = Set(checked.description);
        active.action = Set(checked.action.to_owned());
        active.redirect_pool_id = Set(checked.redirect_pool_id);
        active.redirect_url = Set(checked.redirect_url);
        active.redirect_prefix = Set(checked.redirect_prefix);
        active.redirect_http_code = Set(checked.redirect_http_code);
        active.position = Set(position);
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

    pub async fn delete_l7policy(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = l7_policy::Entity::find_by_id(id)
            .filter(l7_policy::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 policy {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        l7_rule::Entity::delete_many()
            .filter(l7_rule::Column::L7policyId.eq(id))
            .exec(&txn)
            .await?;
        l7_policy::Entity::delete_by_id(id).exec(&txn).await?;
        shift(&txn, &found.listener_id, found.position + 1, i32::MAX, -1).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }

    /// Removes a listener's policies and their rules (the listener is going away).
    pub(crate) async fn delete_listener_policies(
        txn: &DatabaseTransaction,
        listener_id: &str,
    ) -> Result<(), ApiError> {
        let ids = l7_policy::Entity::find()
            .select_only()
            .column(l7_policy::Column::Id)
            .filter(l7_policy::Column::ListenerId.eq(listener_id))
            .into_tuple::<String>()
            .all(txn)
            .await?;
        l7_rule::Entity::delete_many()
            .filter(l7_rule::Column::L7policyId.is_in(ids))
            .exec(txn)
            .await?;
        l7_policy::Entity::delete_many()
            .filter(l7_policy::Column::ListenerId.eq(listener_id))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// Refuses to remove a pool an L7 policy sends requests to.
    pub(crate) async fn check_pool_unreferenced(
        txn: &DatabaseTransaction,
        pool_id: &str,
    ) -> Result<(), ApiError> {
        if let Some(policy) = l7_policy::Entity::find()
            .filter(l7_policy::Column::RedirectPoolId.eq(pool_id))
            .one(txn)
            .await?
        {
            return Err(ApiError::FailedPrecondition(format!(
                "pool {pool_id} is the target of L7 policy {}; change or delete the policy first",
                policy.id
            )));
        }
        Ok(())
    }

    // ---- rules ----

    async fn rule_policy(
        txn: &DatabaseTransaction,
        project: &str,
        id: &str,
    ) -> Result<l7_policy::Model, ApiError> {
        l7_policy::Entity::find_by_id(id)
            .filter(l7_policy::Column::ProjectId.eq(project))
            .one(txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 policy {id}")))
    }

    pub async fn create_l7rule(
        &self,
        project: &str,
        new: NewL7Rule,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let mut lb_id = String::new();
        let id = self
            .once(project, Kind::L7Rule, request_id, || async {
                let txn = self.write().await?;
                let policy = Self::rule_policy(&txn, project, &new.l7policy_id).await?;
                let lb = Self::lb_in(&txn, project, &policy.loadbalancer_id).await?;
                self.check_quota(&txn, project, Kind::L7Rule, 1).await?;
                Self::bump(&txn, &lb).await?;
                let created = insert_rule(&txn, project, &lb.id, &policy.id, new.clone()).await?;
                Self::remember(&txn, project, Kind::L7Rule, request_id, &created.id).await?;
                txn.commit().await?;
                lb_id = lb.id;
                Ok(created.id)
            })
            .await?;
        self.announce(project, &lb_id).await;
        Ok(id)
    }

    pub async fn get_l7rule(&self, project: &str, id: &str) -> Result<l7_rule::Model, ApiError> {
        l7_rule::Entity::find_by_id(id)
            .filter(l7_rule::Column::ProjectId.eq(project))
            .one(&self.db)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 rule {id}")))
    }

    pub async fn list_l7rules(
        &self,
        project: Option<&str>,
        policy_id: &str,
        size: i32,
        token: &str,
    ) -> Result<Page<l7_rule::Model>, ApiError> {
        let size = page_size(size)?;
        let mut query = l7_rule::Entity::find().order_by_asc(l7_rule::Column::Id);
        if let Some(project) = project {
            query = query.filter(l7_rule::Column::ProjectId.eq(project));
        }
        if !policy_id.is_empty() {
            query = query.filter(l7_rule::Column::L7policyId.eq(policy_id));
        }
        if !token.is_empty() {
            query = query.filter(l7_rule::Column::Id.gt(token));
        }
        Ok(paginate(
            query.limit(size + 1).all(&self.db).await?,
            size,
            |m| m.id.clone(),
        ))
    }

    pub async fn update_l7rule(
        &self,
        project: &str,
        patch: &pb::L7Rule,
        paths: &[String],
    ) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = l7_rule::Entity::find_by_id(patch.id.as_str())
            .filter(l7_rule::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 rule {}", patch.id)))?;
        update::check_etag(&patch.etag, &crate::convert::revision_etag(found.revision))?;
        let mut merged = l7::l7rule_to_proto(found.clone());
        update::overlay_l7rule(&mut merged, patch, paths);
        let checked = l7::validate_l7rule(&merged)?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        let status = pending(&found.provisioning_status);
        let mut active: l7_rule::ActiveModel = found.clone().into();
        active.rule_type = Set(checked.rule_type.to_owned());
        active.compare_type = Set(checked.compare_type.to_owned());
        active.key = Set(checked.key);
        active.value = Set(checked.value);
        active.invert = Set(checked.invert);
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

    pub async fn delete_l7rule(&self, project: &str, id: &str) -> Result<(), ApiError> {
        let txn = self.write().await?;
        let found = l7_rule::Entity::find_by_id(id)
            .filter(l7_rule::Column::ProjectId.eq(project))
            .one(&txn)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("L7 rule {id}")))?;
        let lb = Self::lb_in(&txn, project, &found.loadbalancer_id).await?;
        Self::bump(&txn, &lb).await?;
        l7_rule::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        self.announce(project, &lb.id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::clamp_position;

    #[test]
    fn positions_clamp_to_the_end() {
        assert_eq!(clamp_position(0, 3), 4);
        assert_eq!(clamp_position(9, 3), 4);
        assert_eq!(clamp_position(1, 3), 1);
        assert_eq!(clamp_position(4, 3), 4);
    }
}
