//! A port: a device's own address on a network it is attached to, allocated from the network's
//! range like a VIP and never the same as one.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ports")]
pub struct Model {
    /// `<device id>/<network name>`: a device has one port per network.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub device_id: String,
    pub network: String,
    /// Unique: networks never overlap, so no two ports share an address.
    #[sea_orm(unique)]
    pub address: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The id of `device_id`'s port on `network`.
pub fn id_of(device_id: &str, network: &str) -> String {
    format!("{device_id}/{network}")
}
