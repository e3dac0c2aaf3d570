//! A network: a CIDR with a gateway and an allocation range that VIPs and device ports come from.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "networks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub cidr: String,
    /// Empty for none.
    pub gateway: String,
    /// Empty for the CIDR's first (last) host address.
    pub allocation_start: String,
    pub allocation_end: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
