//! A binding: the device a load balancer is placed on and the VIP it was given there.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bindings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub loadbalancer_id: String,
    pub device_id: String,
    pub project_id: String,
    /// Unique: two load balancers never share a VIP.
    #[sea_orm(unique)]
    pub vip_address: String,
    pub strategy: String,
    pub created_ms: i64,
    /// The availability zone the load balancer was placed in; empty for none.
    pub availability_zone: String,
    /// The flavor (service type) the load balancer was placed for; empty for the default (and
    /// for bindings made before the column existed). A failover asking for another flavor is a
    /// resize: the load balancer must leave a device the new flavor does not allow.
    pub flavor: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
