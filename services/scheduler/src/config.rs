//! The scheduler's configuration: flags, each with an environment variable and a documented default.
use std::net::SocketAddr;

use crate::strategy::build_strategy;

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
    /// The default placement strategy: a preset (least-loaded, tenant-affinity,
    /// tenant-anti-affinity, network-affinity, random) or a spec such as `network*10+load`.
    /// Service types may choose their own.
    #[arg(long, env = "LBAAS_SCHEDULER_STRATEGY", default_value = "least-loaded")]
    pub strategy: String,
    /// The seed of the random strategy and the jitter weigher: the same seed, fleet and request
    /// give the same placement.
    #[arg(long, env = "LBAAS_PLACEMENT_SEED", default_value_t = 0)]
    pub placement_seed: u64,
    /// How often the in-memory fleet is re-read from the database (what other replicas did).
    #[arg(long, env = "LBAAS_FLEET_REFRESH_MS", default_value_t = 1000)]
    pub fleet_refresh_ms: u64,
    /// Tokens (`TOKEN PROJECT ROLE` lines) admitted to the provider API: only admin tokens pass.
    /// Without a file the provider API is open (local use only; logged at start).
    #[arg(long, env = "LBAAS_SCHEDULER_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Where to serve Prometheus metrics (GET /metrics); off when unset.
    #[arg(long, env = "LBAAS_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS to and from the other services (CA, certificate, key), or plaintext when chosen.
    #[command(flatten)]
    pub tls: lbaas::server::tls::TlsConfig,
    /// JWT verification for the provider API (admin role required).
    #[command(flatten)]
    pub jwt: lbaas::server::jwt::JwtConfig,
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
        let mut problems = self.tls.problems();
        if let Err(why) = build_strategy(&self.strategy, self.placement_seed) {
            problems.push(format!("strategy {:?}: {why}", self.strategy));
        }
        if self.fleet_refresh_ms < 10 {
            problems.push("fleet_refresh_ms must be at least 10".into());
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
