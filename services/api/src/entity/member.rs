//! A member: one backend server of a pool.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    pub pool_id: String,
    pub name: String,
    pub address: String,
    pub protocol_port: i32,
    pub weight: i32,
    pub admin_state_up: bool,
    pub backup: bool,
    /// Where health checks go: empty and 0 for the member's address and port.
    pub monitor_address: String,
    pub monitor_port: i32,
    /// Newline-separated.
    pub tags: String,
    pub provisioning_status: String,
    pub operating_status: String,
    /// Bumped by every update of this object: its etag.
    pub revision: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
