//! The api service's schema migrations, run at start-up.
use sea_orm::Schema;
use sea_orm_migration::prelude::*;

use crate::entity::{
    certificate, health_monitor, idempotency_key, l7_policy, l7_rule, listener, load_balancer,
    member, pool, quota,
};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables),
            Box::new(VipNetwork),
            Box::new(Features),
            Box::new(AdditionalVips),
            Box::new(MonitorHttpFields),
            Box::new(TlsOptions),
            Box::new(AvailabilityZones),
            Box::new(MemberMonitorTarget),
            Box::new(L7Quotas),
            Box::new(AccessLogTargets),
            Box::new(ListenerHsts),
        ]
    }
}

/// The first schema. Later changes are new migrations with explicit statements; this one derives
/// its tables from the entities as they were when it was written.
#[derive(DeriveMigrationName)]
struct CreateTables;

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    // async_trait's desugaring rejects `SchemaManager<'_>`, so the lifetime stays elided.
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        let tables = [
            schema.create_table_from_entity(load_balancer::Entity),
            schema.create_table_from_entity(listener::Entity),
            schema.create_table_from_entity(pool::Entity),
            schema.create_table_from_entity(member::Entity),
            schema.create_table_from_entity(health_monitor::Entity),
            schema.create_table_from_entity(idempotency_key::Entity),
            schema.create_table_from_entity(quota::Entity),
        ];
        for mut table in tables {
            manager
                .create_table(table.if_not_exists().to_owned())
                .await?;
        }
        let indexes = [
            Index::create()
                .name("idx_lb_project_created")
                .table(load_balancer::Entity)
                .col(load_balancer::Column::ProjectId)
                .col(load_balancer::Column::CreatedMs)
                .col(load_balancer::Column::Id)
                .to_owned(),
            // Two listeners of one load balancer never share a port.
            Index::create()
                .name("uq_listener_lb_port")
                .unique()
                .table(listener::Entity)
                .col(listener::Column::LoadbalancerId)
                .col(listener::Column::ProtocolPort)
                .to_owned(),
            Index::create()
                .name("idx_pool_lb")
                .table(pool::Entity)
                .col(pool::Column::LoadbalancerId)
                .to_owned(),
            Index::create()
                .name("idx_member_pool")
                .table(member::Entity)
                .col(member::Column::PoolId)
                .to_owned(),
            Index::create()
                .name("idx_member_lb")
                .table(member::Entity)
                .col(member::Column::LoadbalancerId)
                .to_owned(),
        ];
        for mut index in indexes {
            manager
                .create_index(index.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Load balancers name the network their VIP comes from. Databases made before the column existed
/// get it here; new ones already have it (the first migration derives from the current entities).
struct VipNetwork;

impl MigrationName for VipNetwork {
    fn name(&self) -> &str {
        "m0002_vip_network"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for VipNetwork {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_load_balancer_text_column(manager, load_balancer::Column::VipNetworkId).await
    }
}

/// Listener access control, headers and TLS; pool persistence and re-encryption; L7 policies and
/// rules; certificates. Columns are added where missing (databases made before them), tables
/// created where absent.
struct Features;

impl MigrationName for Features {
    fn name(&self) -> &str {
        "m0003_features"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Features {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |c: &str| {
            ColumnDef::new(Alias::new(c))
                .text()
                .not_null()
                .default("")
                .to_owned()
        };
        let columns = [
            ("listeners", text("allowed_cidrs")),
            ("listeners", text("insert_headers")),
            (
                "listeners",
                ColumnDef::new(Alias::new("default_tls_container_ref"))
                    .text()
                    .null()
                    .to_owned(),
            ),
            ("listeners", text("sni_container_refs")),
            ("pools", text("session_persistence")),
            ("pools", text("persistence_cookie_name")),
            (
                "pools",
                ColumnDef::new(Alias::new("tls_enabled"))
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
            ),
        ];
        for (table, mut column) in columns {
            let name = column.get_column_name();
            if manager.has_column(table, &name).await? {
                continue;
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let schema = Schema::new(manager.get_database_backend());
        for mut table in [
            schema.create_table_from_entity(l7_policy::Entity),
            schema.create_table_from_entity(l7_rule::Entity),
            schema.create_table_from_entity(certificate::Entity),
        ] {
            manager
                .create_table(table.if_not_exists().to_owned())
                .await?;
        }
        for mut index in [
            Index::create()
                .name("idx_l7policy_listener")
                .table(l7_policy::Entity)
                .col(l7_policy::Column::ListenerId)
                .to_owned(),
            Index::create()
                .name("idx_l7rule_policy")
                .table(l7_rule::Entity)
                .col(l7_rule::Column::L7policyId)
                .to_owned(),
            Index::create()
                .name("idx_certificate_project")
                .table(certificate::Entity)
                .col(certificate::Column::ProjectId)
                .to_owned(),
        ] {
            manager
                .create_index(index.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Load balancers gain additional VIPs (Octavia's `additional_vips`), where the column is missing.
struct AdditionalVips;

impl MigrationName for AdditionalVips {
    fn name(&self) -> &str {
        "m0004_additional_vips"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AdditionalVips {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_load_balancer_text_column(manager, load_balancer::Column::AdditionalVips).await
    }
}

/// Adds a text column (empty by default) to load_balancers, unless the table has it already.
async fn add_load_balancer_text_column(
    manager: &SchemaManager<'_>,
    column: load_balancer::Column,
) -> Result<(), DbErr> {
    add_text_column(manager, load_balancer::Entity, column).await
}

/// Adds a text column (empty by default) to `table`, unless the table has it already.
async fn add_text_column<E: sea_orm::EntityTrait>(
    manager: &SchemaManager<'_>,
    table: E,
    column: E::Column,
) -> Result<(), DbErr> {
    add_column(manager, table, column, |c| {
        c.text().not_null().default("");
    })
    .await
}

/// Adds a column shaped by `shape` to `table`, unless the table has it already.
async fn add_column<E: sea_orm::EntityTrait>(
    manager: &SchemaManager<'_>,
    table: E,
    column: E::Column,
    shape: impl FnOnce(&mut ColumnDef),
) -> Result<(), DbErr> {
    use sea_orm::IdenStatic as _;
    if manager
        .has_column(table.table_name(), column.as_str())
        .await?
    {
        return Ok(());
    }
    let mut def = ColumnDef::new(column);
    shape(&mut def);
    manager
        .alter_table(Table::alter().table(table).add_column(def).to_owned())
        .await
}

/// HTTP(S) monitors gain Octavia's http_version and domain_name, where the columns are missing.
struct MonitorHttpFields;

impl MigrationName for MonitorHttpFields {
    fn name(&self) -> &str {
        "m0005_monitor_http_fields"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MonitorHttpFields {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            health_monitor::Column::HttpVersion,
            health_monitor::Column::DomainName,
        ] {
            add_text_column(manager, health_monitor::Entity, column).await?;
        }
        Ok(())
    }
}

/// Listeners and pools gain Octavia's alpn_protocols, tls_versions and tls_ciphers, where the
/// columns are missing.
struct TlsOptions;

impl MigrationName for TlsOptions {
    fn name(&self) -> &str {
        "m0006_tls_options"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TlsOptions {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            listener::Column::AlpnProtocols,
            listener::Column::TlsVersions,
            listener::Column::TlsCiphers,
        ] {
            add_text_column(manager, listener::Entity, column).await?;
        }
        for column in [
            pool::Column::AlpnProtocols,
            pool::Column::TlsVersions,
            pool::Column::TlsCiphers,
        ] {
            add_text_column(manager, pool::Entity, column).await?;
        }
        Ok(())
    }
}

/// Load balancers gain Octavia's availability_zone, where the column is missing.
struct AvailabilityZones;

impl MigrationName for AvailabilityZones {
    fn name(&self) -> &str {
        "m0007_availability_zones"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AvailabilityZones {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_text_column(
            manager,
            load_balancer::Entity,
            load_balancer::Column::AvailabilityZone,
        )
        .await
    }
}

/// Members gain Octavia's monitor_address and monitor_port, where the columns are missing.
struct MemberMonitorTarget;

impl MigrationName for MemberMonitorTarget {
    fn name(&self) -> &str {
        "m0008_member_monitor_target"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for MemberMonitorTarget {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_text_column(manager, member::Entity, member::Column::MonitorAddress).await?;
        add_column(manager, member::Entity, member::Column::MonitorPort, |c| {
            c.integer().not_null().default(0);
        })
        .await
    }
}

/// Quotas gain L7 policies and rules (unlimited where a row predates them).
struct L7Quotas;

impl MigrationName for L7Quotas {
    fn name(&self) -> &str {
        "m0009_l7_quotas"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for L7Quotas {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [quota::Column::L7Policies, quota::Column::L7Rules] {
            add_column(manager, quota::Entity, column, |c| {
                c.integer().not_null().default(-1);
            })
            .await?;
        }
        Ok(())
    }
}

/// Load balancers gain an access log target, where the column is missing.
struct AccessLogTargets;

impl MigrationName for AccessLogTargets {
    fn name(&self) -> &str {
        "m0010_access_log_targets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AccessLogTargets {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_text_column(
            manager,
            load_balancer::Entity,
            load_balancer::Column::AccessLogTarget,
        )
        .await
    }
}

/// Listeners gain Octavia's HSTS fields, where the columns are missing.
struct ListenerHsts;

impl MigrationName for ListenerHsts {
    fn name(&self) -> &str {
        "m0011_listener_hsts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ListenerHsts {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_column(
            manager,
            listener::Entity,
            listener::Column::HstsMaxAge,
            |c| {
                c.integer().null();
            },
        )
        .await?;
        for column in [
            listener::Column::HstsIncludeSubdomains,
            listener::Column::HstsPreload,
        ] {
            add_column(manager, listener::Entity, column, |c| {
                c.boolean().not_null().default(false);
            })
            .await?;
        }
        Ok(())
    }
}
