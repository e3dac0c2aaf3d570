//! `lbctl loadbalancer availabilityzone create|list|show|set|delete`: the scheduler's availability
//! zones (a name mapped to the device labels that say where a device is); a load balancer names
//! one with `loadbalancer create --availability-zone NAME`.
use lbaas::scheduler::v1 as spb;

use crate::{
    client::CallExt as _,
    common::{OperatorCtx, key_value},
    render,
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create an availability zone.
    Create(Create),
    /// List availability zones.
    List,
    /// Show an availability zone.
    Show {
        /// Availability zone (name).
        zone: String,
    },
    /// Change an availability zone's description, or enable or disable it.
    Set(Set),
    /// Delete an availability zone (refused while a load balancer is placed in it).
    Delete {
        /// Availability zone (name).
        zone: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// New availability zone name (1-64 letters, digits, '-' or '_').
    #[arg(long)]
    pub name: String,
    /// Set the description.
    #[arg(long)]
    pub description: Option<String>,
    /// A label KEY=VALUE the zone's devices carry; at least one, repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value, required = true)]
    pub labels: Vec<(String, String)>,
    /// Create it disabled (it takes no new load balancers).
    #[arg(long)]
    pub disable: bool,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Availability zone (name).
    pub zone: String,
    /// Set the description.
    #[arg(long)]
    pub description: Option<String>,
    /// Take new load balancers.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Take no new load balancers (those in it stay).
    #[arg(long)]
    pub disable: bool,
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    let mut devices = ctx.provider.devices.clone();
    match command {
        Command::Create(args) => {
            let created = devices
                .create_availability_zone(spb::CreateAvailabilityZoneRequest {
                    availability_zone: Some(spb::AvailabilityZone {
                        name: args.name,
                        description: args.description.unwrap_or_default(),
                        labels: args.labels.into_iter().collect(),
                        enabled: Some(!args.disable),
                    }),
                })
                .await
                .api()?;
            ctx.out.show(&render::zone(&created));
        }
        Command::List => {
            let items: Vec<_> = devices
                .list_availability_zones(spb::ListAvailabilityZonesRequest {})
                .await
                .api()?
                .availability_zones
                .iter()
                .map(render::zone)
                .collect();
            ctx.out.list(render::ZONE_COLUMNS, &items);
        }
        Command::Show { zone } => {
            let found = devices
                .get_availability_zone(spb::GetAvailabilityZoneRequest { name: zone })
                .await
                .api()?;
            ctx.out.show(&render::zone(&found));
        }
        Command::Set(args) => {
            let mut paths = Vec::new();
            if args.description.is_some() {
                paths.push("description".to_owned());
            }
            if args.enable || args.disable {
                paths.push("enabled".to_owned());
            }
            if paths.is_empty() {
                anyhow::bail!("nothing to change: give --description, --enable or --disable");
            }
            let updated = devices
                .update_availability_zone(spb::UpdateAvailabilityZoneRequest {
                    availability_zone: Some(spb::AvailabilityZone {
                        name: args.zone,
                        description: args.description.unwrap_or_default(),
                        enabled: Some(!args.disable),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })
                .await
                .api()?;
            ctx.out.show(&render::zone(&updated));
        }
        Command::Delete { zone } => {
            devices
                .delete_availability_zone(spb::DeleteAvailabilityZoneRequest { name: zone })
                .await
                .api()?;
        }
    }
    Ok(())
}
