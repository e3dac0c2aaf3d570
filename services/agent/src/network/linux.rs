//! The linux network driver: VIPs on the host's real interfaces (with iproute2), announced with
//! gratuitous ARP (iputils' `arping -U`) or, for IPv6, unsolicited neighbour advertisements
//! (`ndp.rs`), and ports on tenant networks configured on the
//! interfaces `--network-interface NET=IFACE` names.
use std::{collections::HashMap, net::IpAddr};

use super::{NetworkDriver, NetworkError, run};

pub struct Linux {
    /// Network name -> this host's interface on its segment.
    interfaces: HashMap<String, String>,
    keepalived: super::vrrp::Keepalived,
}

/// One address of an interface, as `ip -o addr show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assigned {
    interface: String,
    net: ipnet::IpNet,
}

impl Linux {
    pub fn new(interfaces: HashMap<String, String>, keepalived: super::vrrp::Keepalived) -> Self {
        Self {
            interfaces,
            keepalived,
        }
    }

    async fn addresses() -> Result<Vec<Assigned>, NetworkError> {
        Ok(parse_addresses(&run("ip", &["-o", "addr", "show"]).await?))
    }

    /// The interface whose own (non-host-route) address is on the VIP's segment.
    async fn interface_for(vip: IpAddr) -> Result<String, NetworkError> {
        let assigned = Self::addresses().await?;
        assigned
            .iter()
            .filter(|a| a.net.addr() != vip && a.net.prefix_len() < a.net.max_prefix_len())
            .find(|a| a.net.contains(&vip))
            .map(|a| a.interface.clone())
            .ok_or_else(|| {
                NetworkError::Unusable(format!(
                    "no interface of this host is on a network holding {vip}: attach the device to the VIP's network first"
                ))
            })
    }
}

fn host_prefix(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(_) => format!("{vip}/32"),
        IpAddr::V6(_) => format!("{vip}/128"),
    }
}

/// `3: vip    inet 10.101.1.10/24 brd 10.101.1.255 scope global vip\ ...` -> (vip, 10.101.1.10/24).
fn parse_addresses(text: &str) -> Vec<Assigned> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _index = fields.next()?;
            let interface = fields.next()?.split('@').next()?.to_owned();
            let family = fields.next()?;
            if family != "inet" && family != "inet6" {
                return None;
            }
            let net = fields.next()?.parse().ok()?;
            Some(Assigned { interface, net })
        })
        .collect()
}

#[async_trait::async_trait]
impl NetworkDriver for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    async fn plug_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
        if Self::addresses().await?.iter().any(|a| a.net.addr() == vip) {
            return Ok(());
        }
        let interface = Self::interface_for(vip).await?;
        let address = host_prefix(vip);
        let mut args = vec!["addr", "replace", &address, "dev", &interface];
        if vip.is_ipv6() {
            // The VIP moves between hosts: duplicate address detection would hold it back.
            args.push("nodad");
        }
        run("ip", &args).await?;
        tracing::info!(%vip, %interface, "VIP plugged");
        Ok(())
    }

    async fn announce_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
        let interface = Self::interface_for(vip).await?;
        match vip {
            IpAddr::V4(_) => {
                let target = vip.to_string();
                // Unsolicited ARPs: neighbours (the clients, the gateway) point the VIP at this
                // host's MAC address at once, without waiting for their cache to expire. The
                // first goes out at once, a second a second later in case the first was lost.
                run("arping", &["-U", "-c", "2", "-I", &interface, &target]).await?;
                tracing::info!(%vip, %interface, "VIP announced (gratuitous ARP)");
            }
            IpAddr::V6(v6) => {
                // Unsolicited neighbour advertisements with the override flag, the same two.
                for round in 0..2 {
                    if round > 0 {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    let on = interface.clone();
                    tokio::task::spawn_blocking(move || super::ndp::advertise(&on, v6))
                        .await
                        .map_err(|e| NetworkError::Failed(e.to_string()))??;
                }
                tracing::info!(%vip, %interface, "VIP announced (unsolicited neighbour advertisement)");
            }
        }
        Ok(())
    }

    async fn unplug_vip(&self, vip: IpAddr) -> Result<(), NetworkError> {
        let held: Vec<Assigned> = Self::addresses()
            .await?
            .into_iter()
            .filter(|a| a.net.addr() == vip && a.net.prefix_len() == a.net.max_prefix_len())
            .collect();
        for a in held {
            let address = host_prefix(vip);
            run("ip", &["addr", "del", &address, "dev", &a.interface]).await?;
            tracing::info!(%vip, interface = %a.interface, "VIP unplugged");
        }
        Ok(())
    }

    async fn attach(
        &self,
        name: &str,
        cidr: ipnet::IpNet,
        address: Option<ipnet::IpNet>,
    ) -> Result<(), NetworkError> {
        let interface = self.interfaces.get(name).ok_or_else(|| {
            NetworkError::Unusable(format!(
                "this host has no interface on network {name} (give the agent --network-interface {name}=IFACE)"
            ))
        })?;
        let address = address.ok_or_else(|| {
            NetworkError::Unusable(format!(
                "attaching to network {name} ({cidr}) needs a port address from the scheduler"
            ))
        })?;
        if !cidr.contains(&address.addr()) {
            return Err(NetworkError::Unusable(format!(
                "the port address {address} is outside network {name} ({cidr})"
            )));
        }
        run("ip", &["link", "set", interface, "up"]).await?;
        let text = address.to_string();
        let mut args = vec!["addr", "replace", &text, "dev", interface];
        if address.addr().is_ipv6() {
            // The scheduler gives each port its own address: no duplicate to detect, and the
            // port is usable at once instead of after DAD's second or two.
            args.push("nodad");
        }
        run("ip", &args).await?;
        tracing::info!(network = %name, %interface, %address, "port configured");
        Ok(())
    }

    async fn set_vrrp(
        &self,
        instances: Vec<super::vrrp::VrrpInstance>,
    ) -> Result<(), NetworkError> {
        let assigned = Self::addresses().await?;
        let interface_of = move |ip: IpAddr| {
            assigned
                .iter()
                .find(|a| a.net.addr() == ip)
                .map(|a| a.interface.clone())
        };
        self.keepalived.set(instances, &interface_of).await
    }

    async fn stop(&self) {
        self.keepalived.stop().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ip_addr_lines_are_read() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                    1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n\
                    5: vip@if6    inet 10.101.1.10/24 scope global vip\\       valid_lft forever\n\
                    5: vip@if6    inet 10.101.1.20/32 scope global vip\\       valid_lft forever\n";
        let found = parse_addresses(text);
        assert_eq!(found.len(), 4);
        assert_eq!(found[2].interface, "vip");
        assert_eq!(
            found[2].net,
            "10.101.1.10/24".parse::<ipnet::IpNet>().unwrap()
        );
        assert_eq!(found[3].net.prefix_len(), 32);
    }
}
