//! Unsolicited IPv6 neighbour advertisements (RFC 4861 section 7.2.6), the IPv6 counterpart of a
//! gratuitous ARP: when a VIP arrives on a host, its neighbours learn the host's MAC address for it
//! at once. Debian has no tool that sends one (ndisc6 only solicits), so the agent sends it itself
//! on a raw ICMPv6 socket; the kernel fills in the checksum.
use std::net::{Ipv6Addr, SocketAddrV6};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::NetworkError;

/// ICMPv6 type of a neighbour advertisement.
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The override flag: the receiver replaces the link-layer address it has for the target.
const OVERRIDE: u8 = 0x20;
/// The option carrying the sender's link-layer address for the target.
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// Every node of the link.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The advertisement for `target` at `mac`: ICMPv6 header with the checksum left to the kernel,
/// flags (override, neither router nor solicited), the target, and its link-layer address option.
pub fn advertisement(target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(32);
    packet.extend_from_slice(&[NEIGHBOR_ADVERTISEMENT, 0, 0, 0]);
    packet.extend_from_slice(&[OVERRIDE, 0, 0, 0]);
    packet.extend_from_slice(&target.octets());
    // Option length is in units of 8 octets: type, length and the 6-octet MAC make one.
    packet.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 1]);
    packet.extend_from_slice(&mac);
    packet
}

/// `aa:bb:cc:dd:ee:ff` -> its six octets.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let octets: Vec<u8> = text
        .trim()
        .split(':')
        .map(|o| u8::from_str_radix(o, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    octets.try_into().ok()
}

/// Sends one unsolicited advertisement of `target` (an address of `interface`) to all nodes on
/// the interface's link. Blocking: call it off the async runtime.
pub fn advertise(interface: &str, target: Ipv6Addr) -> Result<(), NetworkError> {
    let sys = |what: &str| format!("/sys/class/net/{interface}/{what}");
    let read = |what: &str| {
        std::fs::read_to_string(sys(what))
            .map_err(|e| NetworkError::Failed(format!("reading {}: {e}", sys(what))))
    };
    let mac = parse_mac(&read("address")?).ok_or_else(|| {
        NetworkError::Failed(format!("{interface} has no Ethernet address to advertise"))
    })?;
    let index: u32 = read("ifindex")?
        .trim()
        .parse()
        .map_err(|e| NetworkError::Failed(format!("the index of {interface}: {e}")))?;
    let failed = |what: &str, e: std::io::Error| {
        NetworkError::Failed(format!("advertising {target} on {interface}: {what}: {e}"))
    };
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| failed("raw ICMPv6 socket", e))?;
    // Neighbour discovery messages are only believed with a hop limit of 255 (never routed).
    socket
        .set_multicast_hops_v6(255)
        .map_err(|e| failed("hop limit", e))?;
    socket
        .set_multicast_if_v6(index)
        .map_err(|e| failed("interface", e))?;
    // From the VIP itself (plugged without duplicate address detection, so usable at once).
    socket
        .bind(&SockAddr::from(SocketAddrV6::new(target, 0, 0, 0)))
        .map_err(|e| failed("source address", e))?;
    let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, index));
    socket
        .send_to(&advertisement(target, mac), &to)
        .map_err(|e| failed("send", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn an_advertisement_is_laid_out_as_rfc_4861_says() {
        let target: Ipv6Addr = "fd00:101:1::10".parse().unwrap();
        let mac = parse_mac("02:00:5e:10:00:01\n").unwrap();
        let packet = advertisement(target, mac);
        assert_eq!(packet.len(), 32);
        assert_eq!(packet[0], 136);
        assert_eq!(packet[1], 0, "code");
        assert_eq!(&packet[2..4], &[0, 0], "checksum, filled in by the kernel");
        assert_eq!(packet[4], 0x20, "override, not router, not solicited");
        assert_eq!(&packet[8..24], &target.octets());
        assert_eq!(
            &packet[24..26],
            &[2, 1],
            "target link-layer address, 8 octets"
        );
        assert_eq!(&packet[26..32], &[0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    }

    #[test]
    fn macs_are_read() {
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
        assert_eq!(parse_mac("00:11:22:33:44"), None);
        assert_eq!(
            parse_mac("00:11:22:33:44:ff"),
            Some([0, 0x11, 0x22, 0x33, 0x44, 0xff])
        );
    }
}
