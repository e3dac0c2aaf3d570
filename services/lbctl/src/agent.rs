//! `lbctl loadbalancer agent list`: the agents that registered with the scheduler, whether they
//! still report, their devices and drivers, and the failover circuit breaker.
use crate::{common::OperatorCtx, output::Format, render};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List agents (JSON and YAML: the agents and the failover breaker's state, as one object).
    List,
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List => {
            let found = ctx.provider.list_agents().await?;
            match ctx.out.format {
                Format::Table | Format::Value => {
                    let items: Vec<_> = found.agents.iter().map(render::agent).collect();
                    ctx.out.list(render::AGENT_COLUMNS, &items);
                    if ctx.out.format == Format::Table {
                        // The status says whether failover is armed or held, and why.
                        match found.failover_status.as_str() {
                            "" if found.failover_held => println!("failover: held"),
                            "" => println!("failover: armed"),
                            status => println!("failover: {status}"),
                        }
                    }
                }
                Format::Json | Format::Yaml => ctx.out.show(&render::agents(&found)),
            }
        }
    }
    Ok(())
}
