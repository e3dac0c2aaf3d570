//! The scheduler's schema migrations, run at start-up.
use sea_orm::Schema;
use sea_orm_migration::prelude::*;

use crate::entity::{agent, binding, device};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateTables)]
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
            schema.create_table_from_entity(device::Entity),
            schema.create_table_from_entity(agent::Entity),
            schema.create_table_from_entity(binding::Entity),
        ];
        for mut table in tables {
            manager
                .create_table(table.if_not_exists().to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_bindings_device")
                    .table(binding::Entity)
                    .col(binding::Column::DeviceId)
                    .to_owned(),
            )
            .await
    }
}
