//! Addressing: a network's CIDR, gateway and allocation range, their validation, and the choice
//! of a free address in them for a VIP or a device port, so that the two never collide.
use std::{collections::HashSet, net::IpAddr};

use ipnet::IpNet;
use lbaas::scheduler::v1::Network;
use sea_orm::{EntityTrait as _, QuerySelect as _};

use crate::{
    entity::{binding, extra_vip, network, port},
    error::SchedulerError,
};

/// Where addresses of one network (or one device's VIP range) may be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub net: IpNet,
    pub gateway: Option<IpAddr>,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Range {
    /// Every host address of a CIDR, with no gateway: a device's own VIP range.
    pub fn of_cidr(cidr: &str) -> Result<Self, String> {
        let net: IpNet = cidr
            .parse()
            .map_err(|_| format!("{cidr:?} is not a CIDR"))?;
        let (start, end) = host_bounds(net).ok_or_else(|| format!("{net} has no host address"))?;
        Ok(Self {
            net,
            gateway: None,
            start,
            end,
        })
    }

    /// A stored network's range (it was validated when created).
    pub fn of_network(n: &network::Model) -> Result<Self, String> {
        let mut range = Self::of_cidr(&n.cidr)?;
        let ip = |s: &str| -> Result<Option<IpAddr>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("{s:?} is not an IP address"))
            }
        };
        range.gateway = ip(&n.gateway)?;
        if let Some(start) = ip(&n.allocation_start)? {
            range.start = start;
        }
        if let Some(end) = ip(&n.allocation_end)? {
            range.end = end;
        }
        Ok(range)
    }

    /// The prefix length, for a port's `address/prefix`.
    pub fn prefix_len(&self) -> u8 {
        self.net.prefix_len()
    }

    /// Why `ip` cannot be held from this range at all (a VIP a tenant asks for may lie outside the
    /// allocation range but inside the CIDR): outside the CIDR, its network or broadcast address,
    /// or the gateway.
    pub fn refuses(&self, ip: IpAddr) -> Option<String> {
        if let Some(why) = crate::placement::vip_outside(ip, &self.net.to_string()) {
            return Some(why);
        }
        if self.gateway == Some(ip) {
            return Some(format!("{ip} is the gateway of {}", self.net));
        }
        None
    }

    /// The first address of the allocation range that is neither the gateway nor in `held`.
    pub fn first_free(&self, held: &HashSet<IpAddr>) -> Option<IpAddr> {
        let range: ipnet::IpAddrRange = match (self.start, self.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => ipnet::Ipv4AddrRange::new(s, e).into(),
            (IpAddr::V6(s), IpAddr::V6(e)) => ipnet::Ipv6AddrRange::new(s, e).into(),
            _ => return None,
        };
        range
            .filter(|ip| self.refuses(*ip).is_none())
            .find(|ip| !held.contains(ip))
    }
}

/// The first and last host address of `net` (for IPv4 below /31, without the network and
/// broadcast addresses; for IPv6 below /127, without the subnet-router anycast address).
fn host_bounds(net: IpNet) -> Option<(IpAddr, IpAddr)> {
    let first = match net {
        IpNet::V6(n) if n.prefix_len() < 127 => IpAddr::V6(
            u128::from(n.network())
                .checked_add(1)
                .map(std::net::Ipv6Addr::from)?,
        ),
        _ => net.hosts().next()?,
    };
    let last = match net {
        IpNet::V4(n) if n.prefix_len() < 31 => IpAddr::V4(
            u32::from(n.broadcast())
                .checked_sub(1)
                .map(std::net::Ipv4Addr::from)?,
        ),
        _ => net.broadcast(),
    };
    Some((first, last))
}

/// Checks a network as an admin asked for it and fills in what it left empty; every problem is a
/// field violation. `existing` are the networks already defined: CIDRs never overlap.
pub fn validate_network(
    n: &Network,
    existing: &[network::Model],
) -> Result<Network, Vec<(String, String)>> {
    let mut violations = Vec::new();
    let mut bad = |field: &str, why: String| violations.push((format!("network.{field}"), why));
    let Ok(net) = n.cidr.parse::<IpNet>().map(|n| n.trunc()) else {
        bad("cidr", "must be a CIDR such as 10.101.1.0/24".into());
        return Err(violations);
    };
    let Some((first, last)) = host_bounds(net) else {
        bad("cidr", format!("{net} has no host address"));
        return Err(violations);
    };
    for other in existing {
        if let Ok(theirs) = other.cidr.parse::<IpNet>()
            && (theirs.contains(&net.network()) || net.contains(&theirs.network()))
        {
            bad(
                "cidr",
                format!("{net} overlaps network {} ({theirs})", other.name),
            );
        }
    }
    let mut address = |field: &str, text: &str| -> Option<IpAddr> {
        if text.is_empty() {
            return None;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(why) = crate::placement::vip_outside(ip, &net.to_string()) {
                    bad(field, why);
                }
                Some(ip)
            }
            Err(_) => {
                bad(field, format!("{text:?} is not an IP address"));
                None
            }
        }
    };
    let gateway = address("gateway", &n.gateway);
    let start = address("allocation_start", &n.allocation_start).unwrap_or(first);
    let end = address("allocation_end", &n.allocation_end).unwrap_or(last);
    if violations.is_empty() && start > end {
        violations.push((
            "network.allocation_end".into(),
            format!("{end} comes before the allocation start {start}"),
        ));
    }
    if let Some(gw) = gateway
        && start == end
        && gw == start
    {
        violations.push((
            "network.gateway".into(),
            "is the only address of the allocation range".into(),
        ));
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(Network {
        name: n.name.clone(),
        cidr: net.to_string(),
        gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
        allocation_start: start.to_string(),
        allocation_end: end.to_string(),
    })
}

/// Every address held anywhere: the VIPs (and additional VIPs) of all load balancers and the
/// ports of all devices.
pub async fn held(txn: &impl sea_orm::ConnectionTrait) -> Result<HashSet<IpAddr>, SchedulerError> {
    let vips = binding::Entity::find()
        .select_only()
        .column(binding::Column::VipAddress)
        .into_tuple::<String>()
        .all(txn)
        .await?;
    let ports = port::Entity::find()
        .select_only()
        .column(port::Column::Address)
        .into_tuple::<String>()
        .all(txn)
        .await?;
    let extra = extra_vip::Entity::find()
        .select_only()
        .column(extra_vip::Column::Address)
        .into_tuple::<String>()
        .all(txn)
        .await?;
    Ok(vips
        .iter()
        .chain(&ports)
        .chain(&extra)
        .filter_map(|a| a.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn net(name: &str, cidr: &str) -> network::Model {
        network::Model {
            name: name.into(),
            cidr: cidr.into(),
            gateway: String::new(),
            allocation_start: String::new(),
            allocation_end: String::new(),
            created_ms: 0,
        }
    }

    fn ask(cidr: &str, gateway: &str, start: &str, end: &str) -> Network {
        Network {
            name: "n".into(),
            cidr: cidr.into(),
            gateway: gateway.into(),
            allocation_start: start.into(),
            allocation_end: end.into(),
        }
    }

    #[test]
    fn defaults_fill_the_whole_cidr() {
        let n = validate_network(&ask("10.1.2.3/24", "", "", ""), &[]).unwrap();
        assert_eq!(n.cidr, "10.1.2.0/24");
        assert_eq!(n.allocation_start, "10.1.2.1");
        assert_eq!(n.allocation_end, "10.1.2.254");
        let n = validate_network(&ask("fd10:1::/64", "fd10:1::1", "", ""), &[]).unwrap();
        assert_eq!(n.allocation_start, "fd10:1::1");
    }

    #[test]
    fn bad_ranges_are_field_violations() {
        let fields = |n: Network, existing: &[network::Model]| -> Vec<String> {
            validate_network(&n, existing)
                .unwrap_err()
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        };
        assert_eq!(fields(ask("nope", "", "", ""), &[]), ["network.cidr"]);
        assert_eq!(
            fields(ask("10.1.0.0/16", "", "", ""), &[net("a", "10.1.2.0/24")]),
            ["network.cidr"]
        );
        assert_eq!(
            fields(ask("10.1.2.0/25", "", "", ""), &[net("a", "10.1.2.0/24")]),
            ["network.cidr"]
        );
        assert_eq!(
            fields(ask("10.1.2.0/24", "10.1.3.1", "", ""), &[]),
            ["network.gateway"]
        );
        assert_eq!(
            fields(ask("10.1.2.0/24", "", "10.1.2.255", ""), &[]),
            ["network.allocation_start"]
        );
        assert_eq!(
            fields(ask("10.1.2.0/24", "", "10.1.2.50", "10.1.2.10"), &[]),
            ["network.allocation_end"]
        );
        // Neighbours do not overlap.
        validate_network(&ask("10.1.3.0/24", "", "", ""), &[net("a", "10.1.2.0/24")]).unwrap();
    }

    #[test]
    fn allocation_skips_the_gateway_and_what_is_held() {
        let mut n = net("a", "10.1.2.0/24");
        n.gateway = "10.1.2.10".into();
        n.allocation_start = "10.1.2.10".into();
        n.allocation_end = "10.1.2.12".into();
        let range = Range::of_network(&n).unwrap();
        let mut held = HashSet::new();
        assert_eq!(range.first_free(&held), Some("10.1.2.11".parse().unwrap()));
        held.insert("10.1.2.11".parse().unwrap());
        assert_eq!(range.first_free(&held), Some("10.1.2.12".parse().unwrap()));
        held.insert("10.1.2.12".parse().unwrap());
        assert_eq!(range.first_free(&held), None);
        assert!(range.refuses("10.1.2.10".parse().unwrap()).is_some());
        assert!(range.refuses("10.1.2.200".parse().unwrap()).is_none());
    }
}
