//! A health monitor: how a pool's members are checked.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "health_monitors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    #[sea_orm(unique)]
    pub pool_id: String,
    pub name: String,
    pub monitor_type: String,
    pub delay_s: i32,
    pub timeout_s: i32,
    pub max_retries: i32,
    pub max_retries_down: i32,
    pub http_method: String,
    pub url_path: String,
    pub expected_codes: String,
    /// "1.0" or "1.1"; empty for the default (1.0).
    pub http_version: String,
    /// The Host header of HTTP(S) checks; empty for none.
    pub domain_name: String,
    pub admin_state_up: bool,
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
