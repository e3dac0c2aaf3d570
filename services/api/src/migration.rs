//! The api service's schema migrations, run at start-up.
use sea_orm::Schema;
use sea_orm_migration::prelude::*;

use crate::entity::{
    health_monitor, idempotency_key, listener, load_balancer, member, pool, quota,
};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTables), Box::new(VipNetwork)]
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
        if manager
            .has_column("load_balancers", "vip_network_id")
            .await?
        {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(load_balancer::Entity)
                    .add_column(
                        ColumnDef::new(load_balancer::Column::VipNetworkId)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }
}
