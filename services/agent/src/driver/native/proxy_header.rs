//! The PROXY protocol header (HAProxy's specification, versions 1 and 2) that PROXY and PROXYV2
//! pools put in front of every connection to a member, so the member learns the client's address
//! and the address (VIP and port) the client connected to.
use std::net::{IpAddr, SocketAddr};

use lbaas::agent::v1::ProxyProtocol;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The header announcing a connection from `client` to `local` (the listener's address), or
/// nothing for `ProxyProtocol::None`. Both ends are of one family: an IPv4-mapped IPv6 address
/// counts as IPv4, and a mixed pair is written as IPv6.
pub fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (source, destination) = (client.ip().to_canonical(), local.ip().to_canonical());
    let (source, destination) = match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
    };
    match version {
        ProxyProtocol::None => Vec::new(),
        ProxyProtocol::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {source} {destination} {} {}\r\n",
                client.port(),
                local.port()
            )
            .into_bytes()
        }
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            // Version 2, command PROXY.
            out.push(0x21);
            let addresses: Vec<u8> = match (source, destination) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    // TCP over IPv4.
                    out.push(0x11);
                    [s.octets().as_slice(), d.octets().as_slice()].concat()
                }
                (s, d) => {
                    // TCP over IPv6.
                    out.push(0x21);
                    [v6(s).octets().as_slice(), v6(d).octets().as_slice()].concat()
                }
            };
            let length = u16::try_from(addresses.len() + 4).unwrap_or(u16::MAX);
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&addresses);
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&local.port().to_be_bytes());
            out
        }
    }
}

/// The header of a connection the load balancer opens on its own behalf (a health check): v1's
/// `PROXY UNKNOWN`, v2's LOCAL command with no addresses; nothing for `ProxyProtocol::None`.
pub fn local(version: ProxyProtocol) -> Vec<u8> {
    match version {
        ProxyProtocol::None => Vec::new(),
        ProxyProtocol::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            // Version 2, command LOCAL; family unspecified; no address block.
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn version_1_is_one_text_line() {
        let client: SocketAddr = "10.0.0.9:51000".parse().unwrap();
        let vip: SocketAddr = "[::ffff:127.0.0.5]:80".parse().unwrap();
        assert_eq!(
            header(ProxyProtocol::V1, client, vip),
            b"PROXY TCP4 10.0.0.9 127.0.0.5 51000 80\r\n"
        );
        let client6: SocketAddr = "[fd00::9]:51000".parse().unwrap();
        let vip6: SocketAddr = "[fd00::10]:443".parse().unwrap();
        assert_eq!(
            header(ProxyProtocol::V1, client6, vip6),
            b"PROXY TCP6 fd00::9 fd00::10 51000 443\r\n"
        );
        assert!(header(ProxyProtocol::None, client, vip).is_empty());
    }

    #[test]
    fn version_2_is_the_binary_header() {
        let client: SocketAddr = "10.0.0.9:51000".parse().unwrap();
        let vip: SocketAddr = "127.0.0.5:80".parse().unwrap();
        let h = header(ProxyProtocol::V2, client, vip);
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(h[12], 0x21, "version 2, PROXY");
        assert_eq!(h[13], 0x11, "TCP over IPv4");
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[10, 0, 0, 9]);
        assert_eq!(&h[20..24], &[127, 0, 0, 5]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 51000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 80);
        assert_eq!(h.len(), 28);
        let v6 = header(
            ProxyProtocol::V2,
            "[fd00::9]:1".parse().unwrap(),
            "[fd00::10]:2".parse().unwrap(),
        );
        assert_eq!(v6[13], 0x21, "TCP over IPv6");
        assert_eq!(u16::from_be_bytes([v6[14], v6[15]]), 36);
        assert_eq!(v6.len(), 16 + 36);
    }

    #[test]
    fn checks_send_the_local_forms() {
        assert_eq!(local(ProxyProtocol::V1), b"PROXY UNKNOWN\r\n");
        let v2 = local(ProxyProtocol::V2);
        assert_eq!(&v2[..12], &V2_SIGNATURE);
        assert_eq!(&v2[12..], &[0x20, 0, 0, 0]);
        assert!(local(ProxyProtocol::None).is_empty());
    }
}
