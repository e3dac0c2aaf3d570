//! The scheduler's tables: devices, agents, and the binding of each load balancer to a device.
pub mod agent;
pub mod binding;
pub mod device;
