//! A project's quota: how many objects of each kind it may hold (-1: unlimited). Projects without
//! a row get the configured defaults; the row also serialises creates of one project on PostgreSQL.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quotas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: String,
    /// False while the project uses the defaults (the row exists only to be locked).
    pub custom: bool,
    pub load_balancers: i32,
    pub listeners: i32,
    pub pools: i32,
    pub members: i32,
    pub health_monitors: i32,
    pub l7_policies: i32,
    pub l7_rules: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
