//! `lbctl loadbalancer flavor|availabilityzone|device|network|agent|provider|explain`: the
//! operator side, as `openstack loadbalancer flavor|availabilityzone|amphora|provider ...` has it, over the scheduler's provider API
//! (`--scheduler`; it takes an admin `--token` when the scheduler has credentials).
use crate::{
    agent, client::CallExt as _, common::OperatorCtx, device, explain, flavor, network, provider,
    zone,
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Flavors (the scheduler's service types), which `loadbalancer create --flavor` names.
    #[command(subcommand)]
    Flavor(flavor::Command),
    /// Availability zones (device labels), which `loadbalancer create --availability-zone` names.
    #[command(subcommand, name = "availabilityzone", visible_alias = "zone")]
    Zone(zone::Command),
    /// Devices (amphorae): where load balancers are placed.
    #[command(subcommand, visible_alias = "amphora")]
    Device(device::Command),
    /// Networks VIPs are allocated from.
    #[command(subcommand)]
    Network(network::Command),
    /// Agents: the processes that run devices.
    #[command(subcommand)]
    Agent(agent::Command),
    /// Providers: the drivers live agents run.
    #[command(subcommand)]
    Provider(provider::Command),
    /// Where a load balancer would be placed, and why (a dry run: nothing is bound).
    Explain(explain::Explain),
    /// Where a load balancer is placed: its devices and their roles (MASTER, and BACKUP for an
    /// ACTIVE_STANDBY pair).
    Placement {
        /// Load balancer (ID).
        loadbalancer: String,
    },
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Flavor(command) => flavor::run(ctx, command).await,
        Command::Zone(command) => zone::run(ctx, command).await,
        Command::Device(command) => device::run(ctx, command).await,
        Command::Network(command) => network::run(ctx, command).await,
        Command::Agent(command) => agent::run(ctx, command).await,
        Command::Provider(command) => provider::run(ctx, command).await,
        Command::Explain(args) => explain::run(ctx, args).await,
        Command::Placement { loadbalancer } => {
            let found = ctx
                .provider
                .devices
                .clone()
                .get_placement(lbaas::scheduler::v1::GetPlacementRequest {
                    loadbalancer_id: loadbalancer,
                })
                .await
                .api()?;
            ctx.out.show(&crate::render::placement(&found));
            Ok(())
        }
    }
}
