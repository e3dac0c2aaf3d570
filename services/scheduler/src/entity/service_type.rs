//! A service type (flavor): a name tenants choose, mapped to a driver, a strategy and constraints.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_types")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub description: String,
    /// Empty for any driver.
    pub driver: String,
    /// Empty for the scheduler's default strategy.
    pub strategy: String,
    /// Required labels, "k=v" per line.
    pub required_labels: String,
    /// ANY, PHYSICAL or VIRTUAL.
    pub device_kind: String,
    pub on_demand: bool,
    pub on_demand_capacity: i32,
    /// SINGLE or ACTIVE_STANDBY.
    pub topology: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
