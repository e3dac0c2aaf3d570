//! The scheduler's tables: devices, agents, the binding of each load balancer to a device, service
//! types, networks and the devices' ports on them, the standbys of ACTIVE_STANDBY pairs, and the
//! additional VIPs of load balancers, and availability zones.
pub mod agent;
pub mod availability_zone;
pub mod binding;
pub mod device;
pub mod extra_vip;
pub mod network;
pub mod port;
pub mod service_type;
pub mod standby;
pub mod text;
