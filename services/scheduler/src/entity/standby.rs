//! The standby of an ACTIVE_STANDBY load balancer: the BACKUP device (on another host than the
//! binding's device) and the VRRP virtual router id the pair shares.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "standbys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub loadbalancer_id: String,
    pub device_id: String,
    /// 1-255, unique: two pairs never share a virtual router id.
    #[sea_orm(unique)]
    pub vrid: i32,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
