//! `lbctl loadbalancer flavor create|list|show|delete`: the scheduler's service types, which the
//! openstack CLI calls flavors (a driver, a placement strategy and constraints on devices); a load
//! balancer names one with `loadbalancer create --flavor NAME`.
use lbaas::scheduler::v1 as spb;

use crate::{
    client::CallExt as _,
    common::{OperatorCtx, key_value},
    enums, render,
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a flavor.
    Create(Create),
    /// List flavors.
    List,
    /// Show a flavor.
    Show {
        /// Flavor (name).
        flavor: String,
    },
    /// Delete a flavor.
    Delete {
        /// Flavor (name).
        flavor: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// New flavor name (1-64 letters, digits, '-' or '_').
    #[arg(long)]
    pub name: String,
    /// Set flavor description.
    #[arg(long)]
    pub description: Option<String>,
    /// The driver (provider) its devices run, e.g. haproxy; any when not given.
    #[arg(long, visible_alias = "provider")]
    pub driver: Option<String>,
    /// The placement strategy: a preset (least-loaded, tenant-affinity, tenant-anti-affinity,
    /// network-affinity, random) or weighers such as affinity*10+load; the scheduler's default
    /// when not given.
    #[arg(long)]
    pub strategy: Option<String>,
    /// A label KEY=VALUE its devices must carry; repeat for more.
    #[arg(long = "required-label", value_name = "KEY=VALUE", value_parser = key_value)]
    pub required_labels: Vec<(String, String)>,
    /// The devices it accepts: ANY (the default), PHYSICAL or VIRTUAL.
    #[arg(long, value_name = "KIND", value_parser = enums::parse::<spb::DeviceKind>)]
    pub device_kind: Option<spb::DeviceKind>,
    /// When no device fits, have an agent create a virtual device for it (needs --driver).
    #[arg(long)]
    pub on_demand: bool,
    /// The capacity of the devices created on demand (default 100).
    #[arg(long, requires = "on_demand")]
    pub on_demand_capacity: Option<i32>,
    /// SINGLE (the default) or ACTIVE_STANDBY (two devices on two hosts, the VIP held by VRRP).
    #[arg(long, value_name = "TOPOLOGY", value_parser = enums::parse::<spb::Topology>)]
    pub topology: Option<spb::Topology>,
}

impl Create {
    fn to_proto(&self) -> spb::ServiceType {
        spb::ServiceType {
            name: self.name.clone(),
            description: self.description.clone().unwrap_or_default(),
            driver: self.driver.clone().unwrap_or_default(),
            strategy: self.strategy.clone().unwrap_or_default(),
            required_labels: self.required_labels.iter().cloned().collect(),
            device_kind: self.device_kind.unwrap_or(spb::DeviceKind::Any).into(),
            on_demand: self.on_demand,
            on_demand_capacity: self.on_demand_capacity.unwrap_or_default(),
            topology: self.topology.unwrap_or(spb::Topology::Single).into(),
        }
    }
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    let mut devices = ctx.provider.devices.clone();
    match command {
        Command::Create(args) => {
            let created = devices
                .create_service_type(spb::CreateServiceTypeRequest {
                    service_type: Some(args.to_proto()),
                })
                .await
                .api()?;
            ctx.out.show(&render::flavor(&created));
        }
        Command::List => {
            let items: Vec<_> = devices
                .list_service_types(spb::ListServiceTypesRequest {})
                .await
                .api()?
                .service_types
                .iter()
                .map(render::flavor)
                .collect();
            ctx.out.list(render::FLAVOR_COLUMNS, &items);
        }
        Command::Show { flavor } => {
            let found = devices
                .get_service_type(spb::GetServiceTypeRequest { name: flavor })
                .await
                .api()?;
            ctx.out.show(&render::flavor(&found));
        }
        Command::Delete { flavor } => {
            devices
                .delete_service_type(spb::DeleteServiceTypeRequest { name: flavor })
                .await
                .api()?;
        }
    }
    Ok(())
}
