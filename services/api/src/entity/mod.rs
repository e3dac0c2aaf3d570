//! The api service's tables: one per object kind, each row carrying its project and load balancer.
pub mod health_monitor;
pub mod listener;
pub mod load_balancer;
pub mod member;
pub mod pool;
