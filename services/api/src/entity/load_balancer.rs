//! A load balancer: the root of the tree, carrying the generation every change bumps.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "load_balancers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub vip_address: String,
    pub admin_state_up: bool,
    pub provisioning_status: String,
    pub operating_status: String,
    pub status_reason: String,
    /// Bumped in the same transaction as every change to the tree.
    pub generation: i64,
    /// The generation the device last confirmed.
    pub applied_generation: i64,
    /// When the current pending change started; its deadline counts from here.
    pub pending_since_ms: i64,
    pub flavor: String,
    /// The availability zone the load balancer's devices are in; empty for any.
    pub availability_zone: String,
    /// `udp://IP:PORT` or `tcp://IP:PORT` (canonical form); empty for no access logs.
    pub access_log_target: String,
    /// Empty for the device's own VIP range.
    pub vip_network_id: String,
    /// Additional VIPs, a line each: `network=address` (`network=` until one is allocated).
    pub additional_vips: String,
    pub device_id: String,
    /// A failover was asked for and is not done yet: the next deploy re-places the load balancer.
    pub failover_pending: bool,
    /// Newline-separated.
    pub tags: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
