//! `lbctl loadbalancer device list|show|set|drain|delete` (alias `amphora`, as Octavia's operators
//! know them): the devices load balancers are placed on, as their agents registered them.
use lbaas::scheduler::v1 as spb;

use crate::{
    client::CallExt as _,
    common::{Mask, OperatorCtx, SetLabels},
    enums, render,
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List devices.
    List {
        /// Only the devices of this agent.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Show a device.
    Show {
        /// Device (id).
        device: String,
    },
    /// Change a device's capacity, labels or state.
    Set(Set),
    /// Move every load balancer off a device (each keeps its VIP); it takes no new ones.
    Drain {
        /// Device (id).
        device: String,
    },
    /// Delete a device that hosts no load balancer.
    Delete {
        /// Device (id).
        device: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Device (id).
    pub device: String,
    /// How many load balancers it can host.
    #[arg(long)]
    pub capacity: Option<i32>,
    #[command(flatten)]
    pub labels: SetLabels,
    /// ACTIVE, DRAINING (takes no new load balancers) or DOWN.
    #[arg(long, value_parser = enums::parse::<spb::DeviceState>)]
    pub state: Option<spb::DeviceState>,
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    let provider = &ctx.provider;
    match command {
        Command::List { agent } => {
            let items: Vec<_> = provider
                .list_devices(&agent.unwrap_or_default())
                .await?
                .iter()
                .map(render::device)
                .collect();
            ctx.out.list(render::DEVICE_COLUMNS, &items);
        }
        Command::Show { device } => {
            ctx.out
                .show(&render::device(&provider.get_device(&device).await?));
        }
        Command::Set(args) => {
            let current = provider.get_device(&args.device).await?;
            let mut patch = spb::Device {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.set("capacity", &mut patch.capacity, args.capacity);
            mask.set(
                "labels",
                &mut patch.labels,
                args.labels.apply(&current.labels),
            );
            mask.set("state", &mut patch.state, args.state.map(Into::into));
            let updated = provider
                .devices
                .clone()
                .update_device(spb::UpdateDeviceRequest {
                    device: Some(patch),
                    update_mask: Some(mask.finish()?),
                })
                .await
                .api()?;
            if ctx.out.explicit {
                ctx.out.show(&render::device(&updated));
            }
        }
        Command::Drain { device } => {
            let drained = provider
                .devices
                .clone()
                .drain_device(spb::DrainDeviceRequest { id: device })
                .await
                .api()?;
            eprintln!(
                "device {} is {}: its {} load balancer(s) move to other devices",
                drained.id,
                enums::name::<spb::DeviceState>(drained.state),
                drained.load
            );
            if ctx.out.explicit {
                ctx.out.show(&render::device(&drained));
            }
        }
        Command::Delete { device } => {
            provider
                .devices
                .clone()
                .delete_device(spb::DeleteDeviceRequest { id: device })
                .await
                .api()?;
        }
    }
    Ok(())
}
