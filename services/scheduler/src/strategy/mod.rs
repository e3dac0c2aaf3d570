//! Placement strategies behind one trait, with a registry keyed by name (`--strategy least-loaded`).
//!
//! A strategy sees candidates the scheduler has already filtered for liveness and capacity, and
//! ranks them; the first is chosen. Selection only: discovery and health live elsewhere.

mod least_loaded;

pub use least_loaded::LeastLoaded;

use std::sync::Arc;

/// One device the load balancer could go to, with what the scheduler knows of it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub device_id: String,
    pub driver: String,
    pub capacity: i64,
    /// Load balancers placed on it now.
    pub load: i64,
}

/// What is being placed.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    pub loadbalancer_id: String,
    pub project_id: String,
}

/// Ranks candidate devices for a load balancer, best first.
pub trait PlacementStrategy: Send + Sync {
    fn name(&self) -> &'static str;
    /// Indices into `candidates`, best first. Deterministic for the same inputs.
    fn rank(&self, request: &PlacementRequest, candidates: &[Candidate]) -> Vec<usize>;
}

type StrategyFactory = fn() -> Arc<dyn PlacementStrategy>;

const KNOWN_STRATEGIES: &[(&str, StrategyFactory)] = &[("least-loaded", || Arc::new(LeastLoaded))];

/// The names `--strategy` accepts.
pub fn known_strategy_names() -> Vec<&'static str> {
    KNOWN_STRATEGIES.iter().map(|(n, _)| *n).collect()
}

/// Builds the named strategy, or `None` if no strategy has that name.
pub fn build_strategy(name: &str) -> Option<Arc<dyn PlacementStrategy>> {
    KNOWN_STRATEGIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f())
}
