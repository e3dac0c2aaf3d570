//! The api service's tables: one per object kind, each row carrying its project and load
//! balancer, plus certificates, idempotency keys and quotas.
pub mod certificate;
pub mod health_monitor;
pub mod idempotency_key;
pub mod l7_policy;
pub mod l7_rule;
pub mod listener;
pub mod load_balancer;
pub mod member;
pub mod pool;
pub mod quota;
