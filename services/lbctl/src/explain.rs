//! `lbctl loadbalancer explain`: a dry run of placement for the global --project (nothing is
//! bound): every device with its score or the filter that refused it and why, and the winner.
use lbaas::scheduler::v1 as spb;

use crate::{client::CallExt as _, common::OperatorCtx, output::Format, render};

#[derive(clap::Args, Debug)]
pub struct Explain {
    /// The flavor (service type); the scheduler's default when not given.
    #[arg(long)]
    pub flavor: Option<String>,
    /// A strategy to try instead of the flavor's (a preset or weighers, e.g. affinity*10+load).
    #[arg(long)]
    pub strategy: Option<String>,
    /// The availability zone: only its devices are eligible.
    #[arg(long)]
    pub availability_zone: Option<String>,
    /// The network the VIP would be allocated from.
    #[arg(long)]
    pub vip_network_id: Option<String>,
    /// A member address: the networks holding members count for network affinity; repeat for
    /// more.
    #[arg(long = "member", value_name = "ADDRESS")]
    pub members: Vec<String>,
    /// The load balancer id the random and jitter weighers draw for (to repeat a real placement).
    #[arg(long, value_name = "ID")]
    pub loadbalancer: Option<String>,
}

pub async fn run(ctx: &OperatorCtx, args: Explain) -> anyhow::Result<()> {
    let explained = ctx
        .provider
        .devices
        .clone()
        .explain_placement(spb::ExplainPlacementRequest {
            loadbalancer_id: args.loadbalancer.unwrap_or_default(),
            project_id: ctx.project.clone(),
            flavor: args.flavor.unwrap_or_default(),
            strategy: args.strategy.unwrap_or_default(),
            vip_network: args.vip_network_id.unwrap_or_default(),
            member_addresses: args.members,
            availability_zone: args.availability_zone.unwrap_or_default(),
        })
        .await
        .api()?;
    if ctx.out.format != Format::Table {
        ctx.out.show(&render::explanation(&explained));
        return Ok(());
    }
    println!(
        "project {} strategy {} (seed {})",
        ctx.project, explained.strategy, explained.seed
    );
    if !explained.availability_zone.is_empty() {
        let mut labels: Vec<String> = explained
            .zone_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        println!(
            "availability zone {} ({})",
            explained.availability_zone,
            labels.join(", ")
        );
    }
    if !explained.networks.is_empty() {
        println!("networks {}", explained.networks.join(", "));
    }
    let rows: Vec<_> = explained
        .candidates
        .iter()
        .map(|c| render::candidate_row(c, &explained.chosen_device_id))
        .collect();
    ctx.out.list(render::CANDIDATE_COLUMNS, &rows);
    if explained.chosen_device_id.is_empty() {
        println!("no device fits: {}", explained.why);
    } else {
        println!("chosen {}: {}", explained.chosen_device_id, explained.why);
    }
    Ok(())
}
