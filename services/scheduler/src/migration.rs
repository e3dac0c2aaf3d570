//! The scheduler's schema migrations, run at start-up.
use sea_orm::Schema;
use sea_orm_migration::prelude::*;

use crate::entity::{
    agent, availability_zone, binding, device, extra_vip, network, port, service_type, standby,
};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables),
            Box::new(ServiceTypesAndNetworks),
            Box::new(Capabilities),
            Box::new(NetworkRanges),
            Box::new(AdditionalVips),
            Box::new(AvailabilityZones),
            Box::new(BindingFlavors),
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

/// Service types, networks, device attachments and on-demand devices, agents' drivers.
struct ServiceTypesAndNetworks;

impl MigrationName for ServiceTypesAndNetworks {
    fn name(&self) -> &str {
        "m0002_service_types_and_networks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ServiceTypesAndNetworks {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        for mut table in [
            schema.create_table_from_entity(service_type::Entity),
            schema.create_table_from_entity(network::Entity),
        ] {
            manager
                .create_table(table.if_not_exists().to_owned())
                .await?;
        }
        // Databases made by the first migration before these columns existed get them here; new
        // ones already have them (the first migration derives from the current entities).
        let added: [(&str, &str, ColumnDef); 3] = [
            (
                "devices",
                "networks",
                ColumnDef::new(Alias::new("networks"))
                    .text()
                    .not_null()
                    .default("")
                    .to_owned(),
            ),
            (
                "devices",
                "on_demand",
                ColumnDef::new(Alias::new("on_demand"))
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
            ),
            (
                "agents",
                "drivers",
                ColumnDef::new(Alias::new("drivers"))
                    .text()
                    .not_null()
                    .default("")
                    .to_owned(),
            ),
        ];
        for (table, column, mut def) in added {
            if !manager.has_column(table, column).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Alias::new(table))
                            .add_column(&mut def)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

/// Devices carry their driver's capabilities; databases made before the column get it here.
struct Capabilities;

impl MigrationName for Capabilities {
    fn name(&self) -> &str {
        "m0003_capabilities"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Capabilities {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("devices", "capabilities").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("devices"))
                    .add_column(
                        ColumnDef::new(Alias::new("capabilities"))
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// Networks gain a gateway and an allocation range, devices their ports on them, service types a
/// topology, and ACTIVE_STANDBY load balancers their standby.
struct NetworkRanges;

impl MigrationName for NetworkRanges {
    fn name(&self) -> &str {
        "m0004_network_ranges_and_ports"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for NetworkRanges {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["gateway", "allocation_start", "allocation_end"] {
            if !manager.has_column("networks", column).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Alias::new("networks"))
                            .add_column(
                                ColumnDef::new(Alias::new(column))
                                    .text()
                                    .not_null()
                                    .default(""),
                            )
                            .to_owned(),
                    )
                    .await?;
            }
        }
        if !manager.has_column("service_types", "topology").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("service_types"))
                        .add_column(
                            ColumnDef::new(Alias::new("topology"))
                                .text()
                                .not_null()
                                .default("SINGLE"),
                        )
                        .to_owned(),
                )
                .await?;
        }
        let schema = Schema::new(manager.get_database_backend());
        for mut table in [
            schema.create_table_from_entity(port::Entity),
            schema.create_table_from_entity(standby::Entity),
        ] {
            manager
                .create_table(table.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Load balancers gain additional VIPs (Octavia's `additional_vips`).
struct AdditionalVips;

impl MigrationName for AdditionalVips {
    fn name(&self) -> &str {
        "m0005_additional_vips"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AdditionalVips {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(extra_vip::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        for mut index in schema.create_index_from_entity(extra_vip::Entity) {
            manager
                .create_index(index.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Availability zones, and the zone each binding was placed in.
struct AvailabilityZones;

impl MigrationName for AvailabilityZones {
    fn name(&self) -> &str {
        "m0006_availability_zones"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AvailabilityZones {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(availability_zone::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        if !manager.has_column("bindings", "availability_zone").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("bindings"))
                        .add_column(
                            ColumnDef::new(Alias::new("availability_zone"))
                                .text()
                                .not_null()
                                .default(""),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// The flavor each binding was placed for (resize, and service types in use).
struct BindingFlavors;

impl MigrationName for BindingFlavors {
    fn name(&self) -> &str {
        "m0007_binding_flavors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for BindingFlavors {
    #[allow(elided_lifetimes_in_paths)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("bindings", "flavor").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("bindings"))
                        .add_column(
                            ColumnDef::new(Alias::new("flavor"))
                                .text()
                                .not_null()
                                .default(""),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
