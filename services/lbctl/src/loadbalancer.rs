//! `lbctl loadbalancer ...` (alias `lb`): load balancers themselves, their status tree and stats,
//! and the nouns under them (listener, pool, member, healthmonitor, l7policy, l7rule, quota), as
//! `openstack loadbalancer ...` has them.
use anyhow::Context as _;
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::{AdminState, CreateTags, Ctx, Mask, SetTags, UnsetTags, host_port},
    enums, healthmonitor, l7policy, l7rule, listener, member,
    output::Format,
    pool, quota, render,
    wait::{self, Until, WaitArgs},
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create a load balancer.
    Create(Create),
    /// List load balancers.
    List(List),
    /// Show a load balancer.
    Show {
        /// Load balancer (name or id).
        loadbalancer: String,
    },
    /// Change a load balancer.
    Set(Set),
    /// Clear settings of a load balancer.
    Unset(Unset),
    /// Delete a load balancer.
    Delete(Delete),
    /// Re-place a load balancer and redeploy it.
    Failover {
        /// Load balancer (name or id).
        loadbalancer: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The status tree of a load balancer.
    #[command(subcommand)]
    Status(StatusCommand),
    /// Traffic counters of a load balancer.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Listeners.
    #[command(subcommand)]
    Listener(listener::Command),
    /// Pools.
    #[command(subcommand)]
    Pool(pool::Command),
    /// Members of a pool.
    #[command(subcommand)]
    Member(member::Command),
    /// Health monitors.
    #[command(subcommand)]
    Healthmonitor(healthmonitor::Command),
    /// Layer 7 policies.
    #[command(subcommand)]
    L7policy(l7policy::Command),
    /// Layer 7 rules.
    #[command(subcommand)]
    L7rule(l7rule::Command),
    /// Quotas.
    #[command(subcommand)]
    Quota(quota::Command),
}

#[derive(clap::Subcommand, Debug)]
pub enum StatusCommand {
    /// Show the status tree: the load balancer, its listeners, pools, members and monitors.
    Show {
        /// Load balancer (name or id).
        loadbalancer: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum StatsCommand {
    /// Show the traffic counters (the sum over the listeners).
    Show {
        /// Load balancer (name or id).
        loadbalancer: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Create {
    /// The name (the same as --name).
    #[arg(value_name = "NAME", conflicts_with = "name")]
    pub positional_name: Option<String>,
    /// New load balancer name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set load balancer description.
    #[arg(long)]
    pub description: Option<String>,
    /// The VIP; allocated from the network (or the device's range) when not given.
    #[arg(long)]
    pub vip_address: Option<String>,
    /// The network to allocate the VIP from (one the operator defined).
    #[arg(long)]
    pub vip_network_id: Option<String>,
    /// An additional VIP from another network (e.g. IPv6 beside an IPv4 VIP), as NETWORK or
    /// NETWORK=ADDRESS; repeat for more (Octavia's --additional-vip subnet-id=...,ip-address=...).
    #[arg(long = "additional-vip", value_name = "NETWORK[=ADDRESS]")]
    pub additional_vips: Vec<String>,
    /// The flavor (service type).
    #[arg(long)]
    pub flavor: Option<String>,
    /// The availability zone whose devices serve it (one the operator defined).
    #[arg(long)]
    pub availability_zone: Option<String>,
    /// Send access logs (RFC 5424 syslog, the operator's format) to udp://IP:PORT or
    /// tcp://IP:PORT.
    #[arg(long, value_name = "URL")]
    pub access_log_target: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: CreateTags,
    /// lbaas: also create a listener PROTOCOL:PORT with its default pool, in the same call.
    #[arg(long, value_name = "PROTOCOL:PORT")]
    pub listener: Option<String>,
    /// lbaas: the algorithm of that pool: ROUND_ROBIN (default), LEAST_CONNECTIONS or SOURCE_IP.
    #[arg(long, value_name = "ALGORITHM", requires = "listener", value_parser = enums::parse::<pb::LbAlgorithm>)]
    pub algorithm: Option<pb::LbAlgorithm>,
    /// lbaas: a member ADDRESS:PORT of that pool; repeat for more.
    #[arg(long = "member", value_name = "ADDRESS:PORT", requires = "listener")]
    pub members: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct List {
    /// Only load balancers with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only load balancers in this provisioning status.
    #[arg(long, value_parser = enums::parse::<pb::ProvisioningStatus>)]
    pub provisioning_status: Option<pb::ProvisioningStatus>,
    /// Only load balancers with this VIP.
    #[arg(long)]
    pub vip_address: Option<String>,
    /// Only load balancers with all these tags (TAG,TAG,...).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// Load balancer (name or id).
    pub loadbalancer: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// Resize: move the load balancer, VIP kept, to a device of this flavor (service type).
    /// Both flavors must be SINGLE; the old device serves until the new one does.
    #[arg(long)]
    pub flavor: Option<String>,
    /// Send access logs to udp://IP:PORT or tcp://IP:PORT instead.
    #[arg(long, value_name = "URL")]
    pub access_log_target: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: SetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Unset {
    /// Load balancer (name or id).
    pub loadbalancer: String,
    /// Clear the name.
    #[arg(long)]
    pub name: bool,
    /// Clear the description.
    #[arg(long)]
    pub description: bool,
    /// Stop sending access logs.
    #[arg(long)]
    pub access_log_target: bool,
    #[command(flatten)]
    pub tags: UnsetTags,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(clap::Args, Debug)]
pub struct Delete {
    /// Load balancer (name or id).
    pub loadbalancer: String,
    /// Delete everything under it too.
    #[arg(long)]
    pub cascade: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The pool protocol that serves a listener protocol.
fn pool_protocol(listener: pb::Protocol) -> pb::Protocol {
    match listener {
        pb::Protocol::TerminatedHttps => pb::Protocol::Http,
        other => other,
    }
}

impl Create {
    fn to_proto(&self) -> anyhow::Result<pb::LoadBalancer> {
        let mut lb = pb::LoadBalancer {
            name: self
                .name
                .clone()
                .or_else(|| self.positional_name.clone())
                .unwrap_or_default(),
            description: self.description.clone().unwrap_or_default(),
            vip_address: self.vip_address.clone().unwrap_or_default(),
            vip_network_id: self.vip_network_id.clone().unwrap_or_default(),
            additional_vips: self
                .additional_vips
                .iter()
                .map(|v| {
                    let (network_id, ip_address) = v.split_once('=').unwrap_or((v, ""));
                    pb::AdditionalVip {
                        network_id: network_id.to_owned(),
                        ip_address: ip_address.to_owned(),
                    }
                })
                .collect(),
            flavor: self.flavor.clone().unwrap_or_default(),
            availability_zone: self.availability_zone.clone().unwrap_or_default(),
            access_log_target: self.access_log_target.clone().unwrap_or_default(),
            admin_state_up: self.admin.value(),
            tags: self.tags.tags.clone(),
            ..Default::default()
        };
        if let Some(listener) = &self.listener {
            let (protocol, port) = listener
                .split_once(':')
                .context("--listener is PROTOCOL:PORT, e.g. HTTP:80")?;
            let protocol = enums::parse::<pb::Protocol>(protocol).map_err(anyhow::Error::msg)?;
            let members = self
                .members
                .iter()
                .map(|m| {
                    let (address, protocol_port) = host_port(m)?;
                    Ok(pb::Member {
                        address,
                        protocol_port,
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            lb.listeners.push(pb::Listener {
                protocol: protocol.into(),
                protocol_port: port
                    .parse()
                    .with_context(|| format!("bad port in --listener {listener}"))?,
                default_pool: Some(pb::Pool {
                    protocol: pool_protocol(protocol).into(),
                    lb_algorithm: self.algorithm.unwrap_or(pb::LbAlgorithm::RoundRobin).into(),
                    members,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        Ok(lb)
    }
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let api = &ctx.api;
    match command {
        Command::Create(args) => {
            let created = api
                .lb
                .clone()
                .create_load_balancer(pb::CreateLoadBalancerRequest {
                    load_balancer: Some(args.to_proto()?),
                    request_id: String::new(),
                })
                .await
                .api()?;
            let shown = if args.wait.wait {
                wait::maybe(api, &args.wait, &created.id, Until::Active).await?;
                api.get_lb(&created.id).await?
            } else {
                created
            };
            ctx.out.show(&render::load_balancer(&shown));
        }
        Command::List(args) => {
            let found = api
                .load_balancers(pb::ListLoadBalancersRequest {
                    name: args.name.unwrap_or_default(),
                    provisioning_status: args.provisioning_status.map_or(0, Into::into),
                    vip_address: args.vip_address.unwrap_or_default(),
                    tags: args.tags,
                    ..Default::default()
                })
                .await?;
            let items: Vec<_> = found.iter().map(render::load_balancer).collect();
            ctx.out.list(render::LOAD_BALANCER_COLUMNS, &items);
        }
        Command::Show { loadbalancer } => {
            let id = api.lb_id(&loadbalancer).await?;
            ctx.out
                .show(&render::load_balancer(&api.get_lb(&id).await?));
        }
        Command::Set(args) => {
            let current = api.get_lb(&api.lb_id(&args.loadbalancer).await?).await?;
            let mut patch = pb::LoadBalancer {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.set("name", &mut patch.name, args.name);
            mask.set("description", &mut patch.description, args.description);
            mask.set("flavor", &mut patch.flavor, args.flavor);
            mask.set(
                "access_log_target",
                &mut patch.access_log_target,
                args.access_log_target,
            );
            mask.set(
                "admin_state_up",
                &mut patch.admin_state_up,
                args.admin.value().map(Some),
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, patch, mask, &args.wait).await?;
        }
        Command::Unset(args) => {
            let current = api.get_lb(&api.lb_id(&args.loadbalancer).await?).await?;
            let mut patch = pb::LoadBalancer {
                id: current.id.clone(),
                ..Default::default()
            };
            let mut mask = Mask::default();
            mask.clear("name", &mut patch.name, args.name);
            mask.clear("description", &mut patch.description, args.description);
            mask.clear(
                "access_log_target",
                &mut patch.access_log_target,
                args.access_log_target,
            );
            mask.set("tags", &mut patch.tags, args.tags.apply(&current.tags));
            update(ctx, patch, mask, &args.wait).await?;
        }
        Command::Delete(args) => {
            let id = api.lb_id(&args.loadbalancer).await?;
            let deleted = api
                .lb
                .clone()
                .delete_load_balancer(pb::DeleteLoadBalancerRequest {
                    id: id.clone(),
                    etag: String::new(),
                    cascade: args.cascade,
                })
                .await
                .api();
            match deleted {
                Err(e) if e.code == tonic::Code::FailedPrecondition && !args.cascade => {
                    anyhow::bail!("{e}\nhint: add --cascade to delete everything under it too");
                }
                other => other?,
            };
            wait::maybe(api, &args.wait, &id, Until::Deleted).await?;
        }
        Command::Failover { loadbalancer, wait } => {
            let id = api.lb_id(&loadbalancer).await?;
            api.lb
                .clone()
                .failover_load_balancer(pb::FailoverLoadBalancerRequest { id: id.clone() })
                .await
                .api()?;
            wait::maybe(api, &wait, &id, Until::Active).await?;
        }
        Command::Status(StatusCommand::Show { loadbalancer }) => {
            let id = api.lb_id(&loadbalancer).await?;
            let tree = api
                .lb
                .clone()
                .get_load_balancer_status_tree(pb::GetLoadBalancerStatusTreeRequest { id })
                .await
                .api()?;
            if ctx.out.format == Format::Table {
                print!("{}", render::status_outline(&tree));
            } else {
                ctx.out.show(&render::status_tree(&tree));
            }
        }
        Command::Stats(StatsCommand::Show { loadbalancer }) => {
            let id = api.lb_id(&loadbalancer).await?;
            let stats = api
                .lb
                .clone()
                .get_load_balancer_stats(pb::GetLoadBalancerStatsRequest { id })
                .await
                .api()?;
            ctx.out.show(&render::stats(&stats));
        }
        Command::Listener(command) => listener::run(ctx, command).await?,
        Command::Pool(command) => pool::run(ctx, command).await?,
        Command::Member(command) => member::run(ctx, command).await?,
        Command::Healthmonitor(command) => healthmonitor::run(ctx, command).await?,
        Command::L7policy(command) => l7policy::run(ctx, command).await?,
        Command::L7rule(command) => l7rule::run(ctx, command).await?,
        Command::Quota(command) => quota::run(ctx, command).await?,
    }
    Ok(())
}

async fn update(
    ctx: &Ctx,
    patch: pb::LoadBalancer,
    mask: Mask,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let id = patch.id.clone();
    let updated = ctx
        .api
        .lb
        .clone()
        .update_load_balancer(pb::UpdateLoadBalancerRequest {
            load_balancer: Some(patch),
            update_mask: Some(mask.finish()?),
        })
        .await
        .api()?;
    wait::maybe(&ctx.api, wait, &id, Until::Active).await?;
    if ctx.out.explicit {
        let shown = if wait.wait {
            ctx.api.get_lb(&id).await?
        } else {
            updated
        };
        ctx.out.show(&render::load_balancer(&shown));
    }
    Ok(())
}
