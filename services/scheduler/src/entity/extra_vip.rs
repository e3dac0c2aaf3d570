//! An additional VIP of a load balancer (Octavia's `additional_vips`): an address of another
//! network, of the other address family than the binding's VIP, held as long as the binding.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "additional_vips")]
pub struct Model {
    /// Unique, like a binding's VIP and a port's address: no two holders share an address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub address: String,
    #[sea_orm(indexed)]
    pub loadbalancer_id: String,
    pub network: String,
    /// The order the load balancer asked for them in.
    pub position: i32,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
