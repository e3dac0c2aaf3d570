//! The loopback network driver: one machine, where every VIP is an address of 127.0.0.0/8 and
//! a network is an address range this host can bind.
use std::net::{IpAddr, SocketAddr};

use super::{NetworkDriver, NetworkError};

pub struct Loopback;

#[async_trait::async_trait]
impl NetworkDriver for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    async fn plug_vip(&self, _vip: IpAddr) -> Result<(), NetworkError> {
        Ok(())
    }

    async fn announce_vip(&self, _vip: IpAddr) -> Result<(), NetworkError> {
        Ok(())
    }

    async fn unplug_vip(&self, _vip: IpAddr) -> Result<(), NetworkError> {
        Ok(())
    }

    /// Checks with the port address (or the first address of the network) that this host can
    /// bind it, as plugging an interface would on a real host.
    async fn attach(
        &self,
        name: &str,
        cidr: ipnet::IpNet,
        address: Option<ipnet::IpNet>,
    ) -> Result<(), NetworkError> {
        let probe = match address {
            Some(a) => a.addr(),
            None => cidr
                .hosts()
                .next()
                .ok_or_else(|| NetworkError::Unusable(format!("{cidr} has no host addresses")))?,
        };
        std::net::TcpListener::bind(SocketAddr::new(probe, 0)).map_err(|e| {
            NetworkError::Unusable(format!(
                "this host cannot serve network {name} ({cidr}): binding {probe} failed: {e}"
            ))
        })?;
        Ok(())
    }
}
