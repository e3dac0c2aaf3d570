//! `lbctl loadbalancer provider list` and `provider capability list PROVIDER`: the drivers
//! (Octavia's providers) load balancers can be placed on now, those live agents create devices
//! for and those their working devices run, and what each can do.
use std::collections::BTreeMap;

use lbaas::scheduler::v1 as spb;

use crate::{common::OperatorCtx, render};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the drivers of live agents: the agents offering each on demand and the devices (not
    /// DOWN) running it (JSON and YAML add their capabilities).
    List,
    /// What a provider can do.
    #[command(subcommand)]
    Capability(CapabilityCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum CapabilityCommand {
    /// List what a provider's devices offer (e.g. protocol:UDP, l7), and which devices do.
    List {
        /// Provider (driver name).
        provider: String,
    },
}

/// What is known of one driver.
#[derive(Default)]
struct Driver {
    agents: Vec<String>,
    devices: Vec<String>,
    /// Each capability and the devices offering it.
    capabilities: BTreeMap<String, Vec<String>>,
}

/// The drivers of live agents, by name.
fn drivers(agents: &[spb::AgentInfo], devices: &[spb::Device]) -> BTreeMap<String, Driver> {
    let mut out: BTreeMap<String, Driver> = BTreeMap::new();
    let live: Vec<&spb::AgentInfo> = agents.iter().filter(|a| a.alive).collect();
    for agent in &live {
        for driver in &agent.drivers {
            out.entry(driver.clone())
                .or_default()
                .agents
                .push(agent.id.clone());
        }
    }
    for device in devices {
        if device.state == i32::from(spb::DeviceState::Down)
            || !live.iter().any(|a| a.id == device.agent_id)
        {
            continue;
        }
        let driver = out.entry(device.driver.clone()).or_default();
        driver.devices.push(device.id.clone());
        for capability in &device.capabilities {
            driver
                .capabilities
                .entry(capability.clone())
                .or_default()
                .push(device.id.clone());
        }
    }
    out
}

pub async fn run(ctx: &OperatorCtx, command: Command) -> anyhow::Result<()> {
    let agents = ctx.provider.list_agents().await?.agents;
    let devices = ctx.provider.list_devices("").await?;
    let found = drivers(&agents, &devices);
    match command {
        Command::List => {
            let items: Vec<_> = found
                .iter()
                .map(|(name, d)| {
                    let capabilities: Vec<String> = d.capabilities.keys().cloned().collect();
                    render::provider(name, &d.agents, &d.devices, &capabilities)
                })
                .collect();
            ctx.out.list(render::PROVIDER_COLUMNS, &items);
        }
        Command::Capability(CapabilityCommand::List { provider }) => {
            let Some(driver) = found.get(&provider) else {
                anyhow::bail!(
                    "no live agent runs the provider {provider:?} (providers: {})",
                    found.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            };
            let items: Vec<_> = driver
                .capabilities
                .iter()
                .map(|(name, devices)| render::capability(name, devices))
                .collect();
            ctx.out.list(render::CAPABILITY_COLUMNS, &items);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_come_from_live_agents_and_their_working_devices() {
        let agent = |id: &str, alive: bool, drivers: &[&str]| spb::AgentInfo {
            id: id.into(),
            alive,
            drivers: drivers.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        };
        let device = |id: &str, agent: &str, driver: &str, state: spb::DeviceState| spb::Device {
            id: id.into(),
            agent_id: agent.into(),
            driver: driver.into(),
            state: state.into(),
            capabilities: vec!["l7".into(), format!("driver:{driver}")],
            ..Default::default()
        };
        let found = drivers(
            &[
                agent("a1", true, &["haproxy"]),
                agent("a2", false, &["nginx"]),
            ],
            &[
                device("d1", "a1", "haproxy", spb::DeviceState::Active),
                device("d2", "a1", "noop", spb::DeviceState::Draining),
                device("d3", "a1", "f5", spb::DeviceState::Down),
                device("d4", "a2", "nginx", spb::DeviceState::Active),
                device("d5", "a1", "noop", spb::DeviceState::Active),
            ],
        );
        assert_eq!(
            found.keys().map(String::as_str).collect::<Vec<_>>(),
            ["haproxy", "noop"]
        );
        assert_eq!(found["haproxy"].agents, ["a1"]);
        assert_eq!(found["haproxy"].devices, ["d1"]);
        assert!(found["noop"].agents.is_empty());
        assert_eq!(found["noop"].devices, ["d2", "d5"]);
        assert_eq!(
            found["noop"].capabilities.keys().collect::<Vec<_>>(),
            ["driver:noop", "l7"]
        );
        assert_eq!(found["noop"].capabilities["l7"], ["d2", "d5"]);
    }
}
