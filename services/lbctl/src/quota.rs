//! `lbctl loadbalancer quota show|set|reset|defaults`. Anyone reads their own project's quota;
//! setting and resetting, and reading other projects' or the defaults, take an admin token.
use lbaas::api::v1 as pb;

use crate::{
    client::CallExt as _,
    common::Ctx,
    output::{Format, Val, render_table},
    render,
};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show a project's quota (the caller's own by default).
    Show {
        /// The project.
        project: Option<String>,
        /// Also show what is in use.
        #[arg(long)]
        usage: bool,
    },
    /// Set a project's quota (-1: unlimited); the limits not given stay as they are.
    Set(Set),
    /// Put a project's quota back to the defaults.
    Reset {
        /// The project.
        project: String,
    },
    /// Show the defaults projects without their own quota get.
    Defaults,
}

#[derive(clap::Args, Debug)]
pub struct Set {
    /// The project.
    pub project: String,
    /// Load balancers.
    #[arg(long, allow_negative_numbers = true)]
    pub loadbalancer: Option<i32>,
    /// Listeners.
    #[arg(long, allow_negative_numbers = true)]
    pub listener: Option<i32>,
    /// Pools.
    #[arg(long, allow_negative_numbers = true)]
    pub pool: Option<i32>,
    /// Members.
    #[arg(long, allow_negative_numbers = true)]
    pub member: Option<i32>,
    /// Health monitors.
    #[arg(long, allow_negative_numbers = true)]
    pub healthmonitor: Option<i32>,
    /// L7 policies.
    #[arg(long, allow_negative_numbers = true)]
    pub l7policy: Option<i32>,
    /// L7 rules.
    #[arg(long, allow_negative_numbers = true)]
    pub l7rule: Option<i32>,
}

pub async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    let mut quotas = ctx.api.quotas.clone();
    match command {
        Command::Show { project, usage } => {
            let got = quotas
                .get_quota(pb::GetQuotaRequest {
                    project_id: project.unwrap_or_default(),
                })
                .await
                .api()?;
            let limits = got.limits.clone().unwrap_or_default();
            if !usage {
                ctx.out.show(&render::quota(&limits));
            } else if ctx.out.format == Format::Table {
                let in_use = got.in_use.clone().unwrap_or_default();
                let (Val::Obj(l), Val::Obj(u)) = (render::quota(&limits), render::quota(&in_use))
                else {
                    return Ok(());
                };
                let rows: Vec<Vec<String>> = l
                    .iter()
                    .zip(&u)
                    .skip(1)
                    .map(|((k, l), (_, u))| {
                        vec![k.clone(), crate::output::cell(l), crate::output::cell(u)]
                    })
                    .collect();
                println!("project {}", limits.project_id);
                print!("{}", render_table(&["resource", "limit", "in_use"], &rows));
            } else {
                ctx.out.show(&render::quota_usage(&got));
            }
        }
        Command::Set(args) => {
            let current = quotas
                .get_quota(pb::GetQuotaRequest {
                    project_id: args.project.clone(),
                })
                .await
                .api()?
                .limits
                .unwrap_or_default();
            anyhow::ensure!(
                args.loadbalancer.is_some()
                    || args.listener.is_some()
                    || args.pool.is_some()
                    || args.member.is_some()
                    || args.healthmonitor.is_some()
                    || args.l7policy.is_some()
                    || args.l7rule.is_some(),
                "nothing to change: give at least one option"
            );
            let quota = pb::Quota {
                project_id: args.project,
                load_balancers: args.loadbalancer.unwrap_or(current.load_balancers),
                listeners: args.listener.unwrap_or(current.listeners),
                pools: args.pool.unwrap_or(current.pools),
                members: args.member.unwrap_or(current.members),
                health_monitors: args.healthmonitor.unwrap_or(current.health_monitors),
                l7_policies: args.l7policy.or(current.l7_policies),
                l7_rules: args.l7rule.or(current.l7_rules),
            };
            let set = quotas
                .set_quota(pb::SetQuotaRequest { quota: Some(quota) })
                .await
                .api()?;
            ctx.out.show(&render::quota(&set));
        }
        Command::Reset { project } => {
            let reset = quotas
                .reset_quota(pb::ResetQuotaRequest {
                    project_id: project,
                })
                .await
                .api()?;
            if ctx.out.explicit {
                ctx.out.show(&render::quota(&reset));
            }
        }
        Command::Defaults => {
            let defaults = quotas
                .get_quota_defaults(pb::GetQuotaDefaultsRequest {})
                .await
                .api()?;
            ctx.out.show(&render::quota(&defaults));
        }
    }
    Ok(())
}
