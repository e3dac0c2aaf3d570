//! A TLS certificate of a project: the PEM chain in clear, the private key sealed with the api's
//! secret key (AES-256-GCM).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "certificates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub certificate_pem: String,
    /// base64(nonce || ciphertext) of the PEM private key.
    pub sealed_key: String,
    /// Newline-separated DNS names (CN and SANs), lower case.
    pub subject_names: String,
    pub expire_ms: i64,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
