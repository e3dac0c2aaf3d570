//! Member health from the devices, and the operating statuses derived from it.
use std::collections::{BTreeSet, HashMap};

use lbaas::agent::v1::{HealthReport, MemberHealth};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QuerySelect as _,
    sea_query::Expr,
};

use super::{ACTIVE, Store};
use crate::{
    entity::{listener, load_balancer, member, pool},
    error::ApiError,
    status,
};

impl Store {
    /// Records what a health report says of members this api knows, and re-derives the statuses
    /// of the load balancers they belong to. Agents resend the whole truth every second, so a
    /// status another write overtook is put right by the next report; a report that changes
    /// nothing costs one read and no write lock.
    pub async fn apply_health(&self, report: &HealthReport) -> Result<usize, ApiError> {
        let health: HashMap<&str, MemberHealth> = report
            .members
            .iter()
            .map(|m| (m.member_id.as_str(), m.health()))
            .collect();
        let ids: Vec<String> = health.keys().map(|id| (*id).to_owned()).collect();
        let mut differs = false;
        for chunk in ids.chunks(500) {
            let members = member::Entity::find()
                .filter(member::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?;
            differs |= members.iter().any(|m| {
                health.get(m.id.as_str()).is_some_and(|h| {
                    m.operating_status != status::member_status(m.admin_state_up, *h)
                })
            });
        }
        if !differs {
            return Ok(0);
        }
        let mut changed_lbs = BTreeSet::new();
        let txn = self.write().await?;
        let mut updates: Vec<(String, &'static str)> = Vec::new();
        for chunk in ids.chunks(500) {
            let members = member::Entity::find()
                .filter(member::Column::Id.is_in(chunk.to_vec()))
                .all(&txn)
                .await?;
            for m in members {
                let Some(h) = health.get(m.id.as_str()) else {
                    continue;
                };
                let now = status::member_status(m.admin_state_up, *h);
                if m.operating_status != now {
                    updates.push((m.id.clone(), now));
                    changed_lbs.insert((m.project_id.clone(), m.loadbalancer_id.clone()));
                }
            }
        }
        // Locks in the order every other writer takes them: the load balancer's row first, then
        // what is under it (recording an apply locks the load balancer and then updates its
        // members; taking the members first deadlocked against it on PostgreSQL). Sorted, so two
        // replicas applying reports never cross either.
        let lb_ids: BTreeSet<&str> = changed_lbs.iter().map(|(_, lb)| lb.as_str()).collect();
        for lb in lb_ids {
            load_balancer::Entity::find_by_id(lb)
                .lock_exclusive()
                .one(&txn)
                .await?;
        }
        for (id, now) in &updates {
            member::Entity::update_many()
                .col_expr(member::Column::OperatingStatus, Expr::value(*now))
                .filter(member::Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await?;
        }
        for (_, lb) in &changed_lbs {
            recompute_operating(&txn, lb).await?;
        }
        txn.commit().await?;
        for (project, lb) in &changed_lbs {
            self.announce(project, lb).await;
        }
        Ok(changed_lbs.len())
    }
}

/// Derives pool, listener and load balancer operating statuses from their members'.
pub(super) async fn recompute_operating<C: ConnectionTrait>(
    db: &C,
    lb_id: &str,
) -> Result<(), ApiError> {
    let Some(lb) = load_balancer::Entity::find_by_id(lb_id).one(db).await? else {
        return Ok(());
    };
    let pools = pool::Entity::find()
        .filter(pool::Column::LoadbalancerId.eq(lb_id))
        .all(db)
        .await?;
    let members = member::Entity::find()
        .filter(member::Column::LoadbalancerId.eq(lb_id))
        .all(db)
        .await?;
    let listeners = listener::Entity::find()
        .filter(listener::Column::LoadbalancerId.eq(lb_id))
        .all(db)
        .await?;
    let mut pool_statuses: HashMap<&str, &'static str> = HashMap::new();
    for p in &pools {
        let statuses: Vec<&str> = members
            .iter()
            .filter(|m| m.pool_id == p.id)
            .map(|m| m.operating_status.as_str())
            .collect();
        let now = status::pool_status(p.admin_state_up, &statuses);
        pool_statuses.insert(p.id.as_str(), now);
        if p.operating_status != now && p.provisioning_status == ACTIVE {
            pool::Entity::update_many()
                .col_expr(pool::Column::OperatingStatus, Expr::value(now))
                .filter(pool::Column::Id.eq(p.id.as_str()))
                .exec(db)
                .await?;
        }
    }
    let mut children: Vec<&str> = pool_statuses.values().copied().collect();
    for l in &listeners {
        let now = status::listener_status(
            l.admin_state_up,
            l.default_pool_id
                .as_deref()
                .and_then(|p| pool_statuses.get(p).copied()),
        );
        children.push(now);
        if l.operating_status != now && l.provisioning_status == ACTIVE {
            listener::Entity::update_many()
                .col_expr(listener::Column::OperatingStatus, Expr::value(now))
                .filter(listener::Column::Id.eq(l.id.as_str()))
                .exec(db)
                .await?;
        }
    }
    // A load balancer in ERROR (provisioning) keeps operating ERROR until it is applied again.
    if lb.provisioning_status != super::ERROR {
        let now = status::load_balancer_status(lb.admin_state_up, &children);
        if lb.operating_status != now {
            load_balancer::Entity::update_many()
                .col_expr(load_balancer::Column::OperatingStatus, Expr::value(now))
                .filter(load_balancer::Column::Id.eq(lb_id))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}
