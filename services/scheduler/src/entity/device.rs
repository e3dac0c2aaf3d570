//! A device: one load-balancing appliance (for HAProxy, one instance) hosted by an agent.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub driver: String,
    pub agent_id: String,
    pub capacity: i32,
    pub vip_cidr: String,
    pub is_virtual: bool,
    /// ACTIVE, DRAINING or DOWN.
    pub state: String,
    /// JSON object of labels.
    pub labels: String,
    pub created_ms: i64,
    /// Attached networks, one name per line.
    pub networks: String,
    /// Created by the scheduler on demand for a service type.
    pub on_demand: bool,
    /// What the device's driver can do, one `lbaas::capability` name per line, as its agent
    /// reported.
    pub capabilities: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
