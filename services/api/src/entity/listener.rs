//! A listener: a protocol and port on the load balancer's VIP.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "listeners")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub loadbalancer_id: String,
    pub name: String,
    pub description: String,
    pub protocol: String,
    pub protocol_port: i32,
    pub connection_limit: i32,
    pub default_pool_id: Option<String>,
    pub admin_state_up: bool,
    /// Newline-separated.
    pub tags: String,
    pub timeout_client_data_ms: i32,
    pub timeout_member_connect_ms: i32,
    pub timeout_member_data_ms: i32,
    /// Newline-separated CIDRs; empty allows everyone.
    pub allowed_cidrs: String,
    /// Newline-separated names of the headers inserted (X-Forwarded-For, ...).
    pub insert_headers: String,
    /// The certificate served by default (TERMINATED_HTTPS).
    pub default_tls_container_ref: Option<String>,
    /// Newline-separated certificate ids chosen by SNI.
    pub sni_container_refs: String,
    /// Newline-separated ALPN ids as given; empty: the default (TERMINATED_HTTPS).
    pub alpn_protocols: String,
    /// Newline-separated TLS versions as given; empty: the default.
    pub tls_versions: String,
    /// Colon-separated OpenSSL cipher names as given; empty: the default.
    pub tls_ciphers: String,
    /// TERMINATED_HTTPS: HSTS max-age in seconds; `None` for no HSTS.
    pub hsts_max_age: Option<i32>,
    pub hsts_include_subdomains: bool,
    pub hsts_preload: bool,
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
