//! The scheduler's configuration: flags, each with an environment variable and a documented default.
use std::net::SocketAddr;

use crate::strategy::known_strategy_names;

#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerConfig {
    /// Address the scheduler's gRPC API listens on.
    #[arg(
        long = "listen",
        env = "LBAAS_SCHEDULER_LISTEN",
        default_value = "127.0.0.1:9002"
    )]
    pub listen: SocketAddr,
    /// The scheduler's own database: sqlite://FILE or postgres://...
    #[arg(
        long,
        env = "LBAAS_SCHEDULER_DATABASE_URL",
        default_value = "sqlite://data/scheduler.db"
    )]
    pub database_url: String,
    /// The placement strategy (least-loaded).
    #[arg(long, env = "LBAAS_SCHEDULER_STRATEGY", default_value = "least-loaded")]
    pub strategy: String,
    /// How often agents send heartbeats.
    #[arg(long, env = "LBAAS_HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    pub heartbeat_interval_ms: i64,
    /// Agents silent for longer are not placed on.
    #[arg(long, env = "LBAAS_AGENT_TIMEOUT_MS", default_value_t = 5000)]
    pub agent_timeout_ms: i64,
    /// Automatic failover holds when more than this share of devices is DOWN at once.
    #[arg(long, env = "LBAAS_FAILOVER_MAX_DOWN_SHARE", default_value_t = 0.5)]
    pub failover_max_down_share: f64,
}

impl SchedulerConfig {
    /// Checks everything at once and reports every problem together.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !known_strategy_names().contains(&self.strategy.as_str()) {
            problems.push(format!(
                "strategy {:?} is unknown (known: {})",
                self.strategy,
                known_strategy_names().join(", ")
            ));
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "database_url {:?} must start with sqlite:// or postgres://",
                crate::redact(&self.database_url)
            ));
        }
        if self.heartbeat_interval_ms < 10 {
            problems.push("heartbeat_interval_ms must be at least 10".into());
        }
        if self.agent_timeout_ms <= self.heartbeat_interval_ms {
            problems.push("agent_timeout_ms must exceed heartbeat_interval_ms".into());
        }
        if !(0.0..=1.0).contains(&self.failover_max_down_share) {
            problems.push("failover_max_down_share must be between 0 and 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "invalid scheduler configuration:\n  {}",
                problems.join("\n  ")
            )
        }
    }
}
