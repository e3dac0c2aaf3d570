//! `lbctl loadbalancer network create|list|delete`: the named address ranges VIPs are allocated
//! from (`loadbalancer create --vip-network-id NAME`) and members live on.
use lbaas::scheduler::v1 as spb;

use crate::{client::CallExt as _, common::OperatorCtx, render};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a network.
    Create {
        /// New network name (1-64 letters, digits, '-' or '_').
        name: String,
        /// Its address range, e.g. 127.0.20.0/24.
        #[arg(long)]
        cidr: String,
        /// Its gateway (never allocated); none by default.
        #[arg(long, default_value = "")]
        gateway: String,
        /// The first address VIPs and device ports are allocated from (default: the first host).
        #[arg(long, default_value = "")]
        allocation_start: String,
        /// The last one (default: the last host).
        #[arg(long, default_value = "")]
        allocation_end: String,
    },
    /// List networks.
    List,
    /// Delete a network no device is attached to.
    Delete {
        /// Network (name).
        network: String,
    },
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    let mut devices = ctx.provider.devices.clone();
    match command {
        Command::Create {
            name,
            cidr,
            gateway,
            allocation_start,
            allocation_end,
        } => {
            let created = devices
                .create_network(spb::CreateNetworkRequest {
                    network: Some(spb::Network {
                        name,
                        cidr,
                        gateway,
                        allocation_start,
                        allocation_end,
                    }),
                })
                .await
                .api()?;
            ctx.out.show(&render::network(&created));
        }
        Command::List => {
            let items: Vec<_> = devices
                .list_networks(spb::ListNetworksRequest {})
                .await
                .api()?
                .networks
                .iter()
                .map(render::network)
                .collect();
            ctx.out.list(render::NETWORK_COLUMNS, &items);
        }
        Command::Delete { network } => {
            devices
                .delete_network(spb::DeleteNetworkRequest { name: network })
                .await
                .api()?;
        }
    }
    Ok(())
}
