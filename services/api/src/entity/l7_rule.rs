//! An L7 rule: one comparison a request must pass for its policy to apply.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "l7_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    pub l7policy_id: String,
    /// HOST_NAME, PATH, FILE_TYPE, HEADER or COOKIE.
    pub rule_type: String,
    /// EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS or REGEX.
    pub compare_type: String,
    pub key: String,
    pub value: String,
    pub invert: bool,
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
