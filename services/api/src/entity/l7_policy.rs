//! An L7 policy: an action for requests to a listener that match all of its rules.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "l7_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    pub listener_id: String,
    pub name: String,
    pub description: String,
    /// REJECT, REDIRECT_TO_URL, REDIRECT_PREFIX or REDIRECT_TO_POOL.
    pub action: String,
    pub redirect_pool_id: Option<String>,
    pub redirect_url: String,
    pub redirect_prefix: String,
    pub redirect_http_code: i32,
    /// 1-based, dense within the listener.
    pub position: i32,
    pub admin_state_up: bool,
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
