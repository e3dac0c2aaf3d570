//! A pool: the members traffic is balanced over, and how.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pools")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    pub listener_id: Option<String>,
    pub name: String,
    pub description: String,
    pub protocol: String,
    pub lb_algorithm: String,
    pub admin_state_up: bool,
    /// SOURCE_IP, HTTP_COOKIE, APP_COOKIE or empty for none.
    pub session_persistence: String,
    /// The application cookie (APP_COOKIE).
    pub persistence_cookie_name: String,
    /// Re-encrypt to members.
    pub tls_enabled: bool,
    /// Newline-separated ALPN ids as given; empty: the default (or HTTP/1.1 in clear text).
    pub alpn_protocols: String,
    /// Newline-separated TLS versions as given; empty: the default.
    pub tls_versions: String,
    /// Colon-separated OpenSSL cipher names as given; empty: the default.
    pub tls_ciphers: String,
    /// Newline-separated.
    pub tags: String,
    pub provisioning_status: String,
    pub operating_status: String,
    /// Bumped by every update of this object: its etag.
    pub revision: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
