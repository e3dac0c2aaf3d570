//! An idempotency key: the object a create with a given `request_id` made, so a retry returns it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// `{project}/{kind}/{request_id}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub object_id: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
