//! What the deployer reads and records, across projects: desired configs, placements, applied
//! generations, errors, and the final removal of deleted trees.
use lbaas::agent::v1 as agent;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set, sea_query::Expr,
};

use super::{ACTIVE, ERROR, PENDING_CREATE, PENDING_DELETE, PENDING_UPDATE, Store};
use crate::{
    convert::{monitor_type_to_agent, split_tags},
    entity::{health_monitor, l7_policy, l7_rule, listener, load_balancer, member, pool},
    error::ApiError,
    now_ms, status,
    tls_fields::TlsFields,
};

impl Store {
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
                Condition::any()
                    .add(load_balancer::Column::ProvisioningStatus.is_in([
                        PENDING_CREATE,
                        PENDING_UPDATE,
                        PENDING_DELETE,
                    ]))
                    .add(
                        Condition::all()
                            .add(load_balancer::Column::ProvisioningStatus.eq(ACTIVE))
                            .add(sea_orm::sea_query::ExprTrait::lt(
                                Expr::col(load_balancer::Column::AppliedGeneration),
                                Expr::col(load_balancer::Column::Generation),
                            )),
                    ),
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
        let policies = l7_policy::Entity::find()
            .filter(l7_policy::Column::LoadbalancerId.eq(lb.id.as_str()))
            .filter(l7_policy::Column::AdminStateUp.eq(true))
            .order_by_asc(l7_policy::Column::Position)
            .all(&self.db)
            .await?;
        let rules = l7_rule::Entity::find()
            .filter(l7_rule::Column::LoadbalancerId.eq(lb.id.as_str()))
            .filter(l7_rule::Column::AdminStateUp.eq(true))
            .order_by_asc(l7_rule::Column::Id)
            .all(&self.db)
            .await?;
        let mut certificates = std::collections::HashMap::new();
        for l in &listeners {
            let refs = l
                .default_tls_container_ref
                .iter()
                .cloned()
                .chain(split_tags(&l.sni_container_refs));
            for id in refs {
                if let std::collections::hash_map::Entry::Vacant(slot) = certificates.entry(id) {
                    let cert = self.tls_certificate(slot.key()).await?;
                    slot.insert(cert);
                }
            }
        }
        let protocol = |p: &str| {
            agent::ListenerProtocol::from_str_name(&format!("LISTENER_PROTOCOL_{p}"))
                .map_or(0, |v| v as i32)
        };
        let nonneg = |v: i32| u32::try_from(v).unwrap_or(0);
        // A PROXY pool speaks the mode of the listeners it serves: HTTP behind HTTP and
        // TERMINATED_HTTPS listeners (by default or through an L7 policy), TCP otherwise.
        let serves_http = |pool: &str| {
            listeners.iter().any(|l| {
                matches!(l.protocol.as_str(), "HTTP" | "TERMINATED_HTTPS")
                    && (l.default_pool_id.as_deref() == Some(pool)
                        || policies.iter().any(|p| {
                            p.listener_id == l.id && p.redirect_pool_id.as_deref() == Some(pool)
                        }))
            })
        };
        let pool_protocol = |p: &crate::entity::pool::Model| match p.protocol.as_str() {
            "PROXY" | "PROXYV2" if serves_http(&p.id) => agent::ListenerProtocol::Http as i32,
            "PROXY" | "PROXYV2" => agent::ListenerProtocol::Tcp as i32,
            other => protocol(other),
        };
        let proxy_protocol = |p: &str| match p {
            "PROXY" => agent::ProxyProtocol::V1 as i32,
            "PROXYV2" => agent::ProxyProtocol::V2 as i32,
            _ => agent::ProxyProtocol::None as i32,
        };
        Ok(agent::LoadBalancerConfig {
            id: lb.id.clone(),
            project_id: lb.project_id.clone(),
            vip_address: lb.vip_address.clone(),
            additional_vip_addresses: crate::convert::split_additional_vips(&lb.additional_vips)
                .into_iter()
                .map(|(_, a)| a)
                .filter(|a| !a.is_empty())
                .collect(),
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
                    allowed_cidrs: split_tags(&l.allowed_cidrs),
                    hsts: l.hsts_max_age.map(|age| agent::Hsts {
                        max_age_s: nonneg(age),
                        include_subdomains: l.hsts_include_subdomains,
                        preload: l.hsts_preload,
                    }),
                    insert_headers: l
                        .insert_headers
                        .lines()
                        .filter_map(|h| {
                            agent::InsertHeader::from_str_name(&format!(
                                "INSERT_HEADER_{}",
                                h.to_ascii_uppercase().replace('-', "_")
                            ))
                        })
                        .map(|h| h as i32)
                        .collect(),
                    default_certificate: l
                        .default_tls_container_ref
                        .as_ref()
                        .and_then(|id| certificates.get(id).cloned()),
                    sni_certificates: split_tags(&l.sni_container_refs)
                        .iter()
                        .filter_map(|id| certificates.get(id).cloned())
                        .collect(),
                    l7_policies: policies
                        .iter()
                        .filter(|p| p.listener_id == l.id)
                        .map(|p| l7_config(p, &rules))
                        .collect(),
                    tls: crate::convert::Protocol::parse(&l.protocol)
                        .filter(|p| *p == crate::convert::Protocol::TerminatedHttps)
                        .map(|p| {
                            TlsFields::from_columns(
                                &l.alpn_protocols,
                                &l.tls_versions,
                                &l.tls_ciphers,
                            )
                            .listener_effective(p)
                            .to_agent()
                        }),
                })
                .collect(),
            pools: pools
                .iter()
                .map(|p| agent::PoolConfig {
                    id: p.id.clone(),
                    protocol: pool_protocol(p),
                    proxy_protocol: proxy_protocol(&p.protocol),
                    algorithm: agent::Algorithm::from_str_name(&format!(
                        "ALGORITHM_{}",
                        p.lb_algorithm
                    ))
                    .map_or(0, |a| a as i32),
                    admin_state_up: p.admin_state_up,
                    persistence: (!p.session_persistence.is_empty()).then(|| {
                        agent::SessionPersistence {
                            r#type: agent::PersistenceType::from_str_name(&format!(
                                "PERSISTENCE_TYPE_{}",
                                p.session_persistence
                            ))
                            .map_or(0, |t| t as i32),
                            cookie_name: p.persistence_cookie_name.clone(),
                        }
                    }),
                    tls_enabled: p.tls_enabled,
                    tls: {
                        let tls = TlsFields::from_columns(
                            &p.alpn_protocols,
                            &p.tls_versions,
                            &p.tls_ciphers,
                        )
                        .pool_effective(p.tls_enabled);
                        (p.tls_enabled || tls.is_h2c()).then(|| tls.to_agent())
                    },
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
                            monitor_address: m.monitor_address.clone(),
                            monitor_port: nonneg(m.monitor_port),
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
                            http_version: h.http_version.clone(),
                            domain_name: h.domain_name.clone(),
                        }),
                })
                .collect(),
            // The scheduler fills in each device's VRRP side for ACTIVE_STANDBY.
            vrrp: None,
            access_log: crate::convert::parse_log_target(&lb.access_log_target)
                .ok()
                .map(|target| agent::AccessLog {
                    transport: if target.tcp { "tcp" } else { "udp" }.to_owned(),
                    address: target.addr.ip().to_string(),
                    port: u32::from(target.addr.port()),
                    format: self
                        .access_log_format
                        .replace("{{ project_id }}", &lb.project_id)
                        .replace("{{ lb_id }}", &lb.id),
                }),
        })
    }

    /// Records where the scheduler placed the load balancer and the VIP it got.
    pub async fn record_placement(
        &self,
        lb: &load_balancer::Model,
        vip: &str,
        device: &str,
        additional_vips: &str,
    ) -> Result<(), ApiError> {
        let id = lb.id.as_str();
        load_balancer::Entity::update_many()
            .col_expr(load_balancer::Column::VipAddress, Expr::value(vip))
            .col_expr(load_balancer::Column::DeviceId, Expr::value(device))
            .col_expr(
                load_balancer::Column::AdditionalVips,
                Expr::value(additional_vips),
            )
            .filter(load_balancer::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        self.announce(&lb.project_id, id).await;
        Ok(())
    }

    /// The device confirmed `generation`. If it is still the latest, everything goes ACTIVE;
    /// returns whether it was the latest.
    pub async fn record_applied(&self, id: &str, generation: i64) -> Result<bool, ApiError> {
        let txn = self.write().await?;
        // Locked, so a change committed meanwhile is either seen here (not the latest) or waits
        // and then finds the load balancer ACTIVE and marks it pending again.
        let Some(lb) = load_balancer::Entity::find_by_id(id)
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
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
            active.failover_pending = Set(false);
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
            member::Entity::update_many()
                .col_expr(member::Column::ProvisioningStatus, Expr::value(ACTIVE))
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
            l7_policy::Entity::update_many()
                .col_expr(l7_policy::Column::ProvisioningStatus, Expr::value(ACTIVE))
                .col_expr(l7_policy::Column::OperatingStatus, Expr::value("ONLINE"))
                .filter(l7_policy::Column::LoadbalancerId.eq(id))
                .filter(l7_policy::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
            l7_rule::Entity::update_many()
                .col_expr(l7_rule::Column::ProvisioningStatus, Expr::value(ACTIVE))
                .col_expr(l7_rule::Column::OperatingStatus, Expr::value("ONLINE"))
                .filter(l7_rule::Column::LoadbalancerId.eq(id))
                .filter(l7_rule::Column::ProvisioningStatus.is_in(pending))
                .exec(&txn)
                .await?;
        }
        active.update(&txn).await?;
        if latest {
            settle_member_statuses(&txn, id).await?;
            super::health::recompute_operating(&txn, id).await?;
        }
        txn.commit().await?;
        self.announce(&lb.project_id, id).await;
        Ok(latest)
    }

    /// Puts the load balancer (and its pending children) in ERROR with a reason a person can act on.
    pub async fn record_error(
        &self,
        lb: &load_balancer::Model,
        reason: &str,
    ) -> Result<(), ApiError> {
        let id = lb.id.as_str();
        let txn = self.write().await?;
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
        l7_policy::Entity::update_many()
            .col_expr(l7_policy::Column::ProvisioningStatus, Expr::value(ERROR))
            .filter(l7_policy::Column::LoadbalancerId.eq(id))
            .filter(l7_policy::Column::ProvisioningStatus.is_in(pending))
            .exec(&txn)
            .await?;
        l7_rule::Entity::update_many()
            .col_expr(l7_rule::Column::ProvisioningStatus, Expr::value(ERROR))
            .filter(l7_rule::Column::LoadbalancerId.eq(id))
            .filter(l7_rule::Column::ProvisioningStatus.is_in(pending))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.announce(&lb.project_id, id).await;
        Ok(())
    }

    /// Removes the whole tree once the device no longer serves it.
    pub async fn purge_load_balancer(&self, lb: &load_balancer::Model) -> Result<(), ApiError> {
        let id = lb.id.as_str();
        let txn = self.write().await?;
        l7_rule::Entity::delete_many()
            .filter(l7_rule::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
        l7_policy::Entity::delete_many()
            .filter(l7_policy::Column::LoadbalancerId.eq(id))
            .exec(&txn)
            .await?;
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
        self.announce(&lb.project_id, id).await;
        Ok(())
    }
}

/// After a deploy: members nothing checks are NO_MONITOR, disabled ones OFFLINE, and checked ones
/// keep what the health stream said (OFFLINE until their first check).
async fn settle_member_statuses(
    txn: &sea_orm::DatabaseTransaction,
    lb_id: &str,
) -> Result<(), ApiError> {
    let monitored: std::collections::HashSet<String> = health_monitor::Entity::find()
        .filter(health_monitor::Column::LoadbalancerId.eq(lb_id))
        .filter(health_monitor::Column::AdminStateUp.eq(true))
        .all(txn)
        .await?
        .into_iter()
        .map(|h| h.pool_id)
        .collect();
    let members = member::Entity::find()
        .filter(member::Column::LoadbalancerId.eq(lb_id))
        .all(txn)
        .await?;
    for m in members {
        let target = if !m.admin_state_up {
            status::OFFLINE
        } else if !monitored.contains(&m.pool_id) {
            status::NO_MONITOR
        } else if m.operating_status == status::NO_MONITOR {
            status::OFFLINE
        } else {
            continue;
        };
        if m.operating_status != target {
            member::Entity::update_many()
                .col_expr(member::Column::OperatingStatus, Expr::value(target))
                .filter(member::Column::Id.eq(m.id.as_str()))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

/// A policy with its enabled rules, as a driver needs it.
fn l7_config(p: &l7_policy::Model, rules: &[l7_rule::Model]) -> agent::L7PolicyConfig {
    agent::L7PolicyConfig {
        id: p.id.clone(),
        action: agent::L7Action::from_str_name(&format!("L7_ACTION_{}", p.action))
            .map_or(0, |a| a as i32),
        redirect_pool_id: p.redirect_pool_id.clone().unwrap_or_default(),
        redirect_url: p.redirect_url.clone(),
        redirect_prefix: p.redirect_prefix.clone(),
        redirect_http_code: u32::try_from(p.redirect_http_code).unwrap_or(0),
        rules: rules
            .iter()
            .filter(|r| r.l7policy_id == p.id)
            .map(|r| agent::L7RuleConfig {
                id: r.id.clone(),
                r#type: agent::L7RuleType::from_str_name(&format!("L7_RULE_TYPE_{}", r.rule_type))
                    .map_or(0, |t| t as i32),
                compare_type: agent::L7CompareType::from_str_name(&format!(
                    "L7_COMPARE_TYPE_{}",
                    r.compare_type
                ))
                .map_or(0, |t| t as i32),
                key: r.key.clone(),
                value: r.value.clone(),
                invert: r.invert,
            })
            .collect(),
    }
}
