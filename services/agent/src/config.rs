//! The agent's configuration: flags, each with an environment variable and a documented default.
use std::{net::SocketAddr, path::PathBuf};

use crate::driver::known_driver_names;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentConfig {
    /// This agent's id, unique among the scheduler's agents.
    #[arg(long, env = "LBAAS_AGENT_ID", default_value = "agent-1")]
    pub agent_id: String,
    /// Address the agent's gRPC API listens on.
    #[arg(
        long = "listen",
        env = "LBAAS_AGENT_LISTEN",
        default_value = "127.0.0.1:9003"
    )]
    pub listen: SocketAddr,
    /// The scheduler to register with.
    #[arg(
        long,
        env = "LBAAS_SCHEDULER_URL",
        default_value = "http://127.0.0.1:9002"
    )]
    pub scheduler_url: String,
    /// URL the scheduler uses to reach this agent (default: http://<listen address>).
    #[arg(long, env = "LBAAS_AGENT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The driver of this agent's devices (haproxy, noop).
    #[arg(long, env = "LBAAS_AGENT_DRIVER", default_value = "haproxy")]
    pub driver: String,
    /// How many devices (for haproxy: HAProxy instances) this agent hosts.
    #[arg(long, env = "LBAAS_AGENT_DEVICES", default_value_t = 1)]
    pub devices: u32,
    /// How many load balancers each device can host.
    #[arg(long, env = "LBAAS_AGENT_CAPACITY", default_value_t = 100)]
    pub capacity: i32,
    /// The range VIPs are allocated from. On one machine, a range of 127.0.0.0/8.
    #[arg(long, env = "LBAAS_AGENT_VIP_CIDR", default_value = "127.0.10.0/24")]
    pub vip_cidr: String,
    /// Where devices keep their files.
    #[arg(long, env = "LBAAS_AGENT_STATE_DIR", default_value = "data/agent")]
    pub state_dir: PathBuf,
    /// The HAProxy binary.
    #[arg(long, env = "LBAAS_HAPROXY_BIN", default_value = "haproxy")]
    pub haproxy_bin: PathBuf,
    /// The native data plane binary (`lbaas-dataplane`); by default the one beside this agent's
    /// binary.
    #[arg(long, env = "LBAAS_DATAPLANE_BIN")]
    pub dataplane_bin: Option<PathBuf>,
    /// The native data plane's command when `dataplane_bin` is unset, for binaries that carry the
    /// data plane themselves (`lbctl` runs it as `lbctl dataplane`).
    #[arg(skip)]
    pub dataplane_command: Vec<std::ffi::OsString>,
    /// How often member health is read from the devices.
    #[arg(long, env = "LBAAS_AGENT_HEALTH_INTERVAL_MS", default_value_t = 100)]
    pub health_interval_ms: u64,
    /// How often traffic counters are sent while they move (member health goes out at once).
    #[arg(long, env = "LBAAS_AGENT_STATS_INTERVAL_MS", default_value_t = 1000)]
    pub stats_interval_ms: u64,
    /// How long each apply of the noop driver takes (for tests that need a deploy in flight).
    #[arg(long, env = "LBAAS_NOOP_APPLY_DELAY_MS", default_value_t = 0)]
    pub noop_apply_delay_ms: u64,
    /// Stop the devices' data plane when the agent exits (by default it keeps serving).
    #[arg(long, env = "LBAAS_AGENT_STOP_DATA_PLANE_ON_EXIT")]
    pub stop_data_plane_on_exit: bool,
    /// Where to serve Prometheus metrics (GET /metrics); off when unset.
    #[arg(long, env = "LBAAS_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How this agent's host holds VIPs and joins networks.
    #[command(flatten)]
    pub network: NetworkConfig,
    /// TLS to and from the other services (CA, certificate, key), or plaintext when chosen.
    #[command(flatten)]
    pub tls: lbaas::server::tls::TlsConfig,
}

/// The agent's network driver and the interfaces it may configure.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkConfig {
    /// The network driver: loopback (one machine: VIPs are addresses of 127.0.0.0/8) or linux
    /// (VIPs on this host's interfaces, announced with gratuitous ARP; ports on tenant networks).
    #[arg(long, env = "LBAAS_AGENT_NETWORK_DRIVER", default_value = "loopback")]
    pub network_driver: String,
    /// This host's interface on a network's segment, as NETWORK=INTERFACE (repeat, or separate
    /// with commas); the linux driver configures the device's port on it.
    #[arg(
        long = "network-interface",
        env = "LBAAS_AGENT_NETWORK_INTERFACES",
        value_delimiter = ','
    )]
    pub network_interfaces: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            network_driver: "loopback".into(),
            network_interfaces: Vec::new(),
        }
    }
}

impl NetworkConfig {
    /// Network name -> interface, from `--network-interface`.
    pub fn interfaces(&self) -> Result<std::collections::HashMap<String, String>, Vec<String>> {
        let mut map = std::collections::HashMap::new();
        let mut problems = Vec::new();
        for entry in &self.network_interfaces {
            match entry.split_once('=') {
                Some((net, iface)) if !net.is_empty() && !iface.is_empty() && iface.len() <= 15 => {
                    map.insert(net.to_owned(), iface.to_owned());
                }
                _ => problems.push(format!(
                    "network interface {entry:?} must be NETWORK=INTERFACE (an interface name has at most 15 characters)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(map)
        } else {
            Err(problems)
        }
    }
}

impl AgentConfig {
    /// The native data plane's command: `--dataplane-bin`, else the command a hosting binary set,
    /// else `lbaas-dataplane` beside this binary (else on the PATH).
    pub fn dataplane_command(&self) -> Vec<std::ffi::OsString> {
        if let Some(bin) = &self.dataplane_bin {
            return vec![bin.clone().into_os_string()];
        }
        if !self.dataplane_command.is_empty() {
            return self.dataplane_command.clone();
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("lbaas-dataplane")))
            .filter(|p| p.is_file());
        vec![beside.map_or_else(|| "lbaas-dataplane".into(), PathBuf::into_os_string)]
    }

    /// Checks everything at once, before any port is bound, and reports every problem together.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = self.tls.problems();
        if !known_driver_names().contains(&self.driver.as_str()) {
            problems.push(format!(
                "driver {:?} is unknown (known: {})",
                self.driver,
                known_driver_names().join(", ")
            ));
        }
        if self.vip_cidr.parse::<ipnet::IpNet>().is_err() {
            problems.push(format!("vip_cidr {:?} is not a CIDR", self.vip_cidr));
        }
        if !crate::network::KNOWN.contains(&self.network.network_driver.as_str()) {
            problems.push(format!(
                "network driver {:?} is unknown (known: {})",
                self.network.network_driver,
                crate::network::KNOWN.join(", ")
            ));
        }
        if let Err(more) = self.network.interfaces() {
            problems.extend(more);
        }
        if self.capacity < 1 {
            problems.push("capacity must be at least 1".into());
        }
        if self.stats_interval_ms < 10 {
            problems.push("stats_interval_ms must be at least 10".into());
        }
        if self.health_interval_ms < 10 {
            problems.push("health_interval_ms must be at least 10".into());
        }
        if self.devices < 1 {
            problems.push("devices must be at least 1".into());
        }
        if self.agent_id.is_empty()
            || !self
                .agent_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            problems.push(format!(
                "agent_id {:?} must be letters, digits and '-'",
                self.agent_id
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid agent configuration:\n  {}", problems.join("\n  "))
        }
    }
}
