//! The api service's configuration: flags, each with an environment variable and a documented default.
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address the tenant API listens on.
    #[arg(
        long = "listen",
        env = "LBAAS_API_LISTEN",
        default_value = "127.0.0.1:9001"
    )]
    pub listen: SocketAddr,
    /// Where Octavia's v2 REST API listens (the openstack CLI, openstacksdk, Terraform); off when
    /// unset. Octavia's own port is 9876.
    #[arg(long, env = "LBAAS_API_REST_LISTEN")]
    pub rest_listen: Option<SocketAddr>,
    /// Also serve a minimal Keystone v3 token endpoint on the REST port (`POST /v3/auth/tokens`),
    /// for clients that insist on password auth: the password is a token the api accepts, the
    /// user name its project.
    #[arg(long, env = "LBAAS_API_REST_KEYSTONE", default_value_t = false, action = clap::ArgAction::Set)]
    pub rest_keystone: bool,
    /// The api database: sqlite://FILE or postgres://...
    #[arg(
        long,
        env = "LBAAS_API_DATABASE_URL",
        default_value = "sqlite://data/api.db"
    )]
    pub database_url: String,
    /// The scheduler to deploy through.
    #[arg(
        long,
        env = "LBAAS_SCHEDULER_URL",
        default_value = "http://127.0.0.1:9002"
    )]
    pub scheduler_url: String,
    /// Token file: one `TOKEN PROJECT [ROLE]` per line.
    #[arg(long, env = "LBAAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (GET /metrics); off when unset.
    #[arg(long, env = "LBAAS_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS to and from the other services (CA, certificate, key), or plaintext when chosen.
    #[command(flatten)]
    pub tls: lbaas::server::tls::TlsConfig,
    /// JWT verification (keys, issuer, audience).
    #[command(flatten)]
    pub jwt: lbaas::server::jwt::JwtConfig,
    /// Accept `x-project-id` metadata without a token (local use only: anyone may then claim any
    /// project). Off unless chosen; `lbctl stack` chooses it.
    #[arg(long, env = "LBAAS_ALLOW_PROJECT_HEADER", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_project_header: bool,
    /// How long a change may stay PENDING_* before it goes to ERROR.
    #[arg(long, env = "LBAAS_DEPLOY_DEADLINE_MS", default_value_t = 60_000)]
    pub deploy_deadline_ms: u64,
    /// Default quotas per project (-1: unlimited); admins set others with QuotaService.
    #[arg(long, env = "LBAAS_QUOTA_LOAD_BALANCERS", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_load_balancers: i32,
    #[arg(long, env = "LBAAS_QUOTA_LISTENERS", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_listeners: i32,
    #[arg(long, env = "LBAAS_QUOTA_POOLS", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_pools: i32,
    #[arg(long, env = "LBAAS_QUOTA_MEMBERS", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_members: i32,
    #[arg(long, env = "LBAAS_QUOTA_HEALTH_MONITORS", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_health_monitors: i32,
    #[arg(long, env = "LBAAS_QUOTA_L7_POLICIES", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_l7_policies: i32,
    #[arg(long, env = "LBAAS_QUOTA_L7_RULES", default_value_t = -1, allow_hyphen_values = true)]
    pub quota_l7_rules: i32,
    /// The key certificates' private keys are sealed with at rest: a file holding 64 hex digits
    /// (32 bytes; e.g. `openssl rand -hex 32`). Without it, certificates cannot be created.
    #[arg(long, env = "LBAAS_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// How often pending load balancers are re-driven.
    #[arg(long, env = "LBAAS_RECONCILE_INTERVAL_MS", default_value_t = 2_000)]
    pub reconcile_interval_ms: u64,
    /// Addresses no member may have (Octavia's `reserved_ips`), comma separated: the cloud's
    /// metadata service by default.
    #[arg(
        long,
        env = "LBAAS_RESERVED_IPS",
        value_delimiter = ',',
        default_value = "169.254.169.254"
    )]
    pub reserved_ips: Vec<std::net::IpAddr>,
    /// The line load balancers' access logs carry (those with an `access_log_target`), in
    /// HAProxy's log-format syntax with `{{ project_id }}` and `{{ lb_id }}` filled in: Octavia's
    /// tenant log format by default.
    #[arg(
        long,
        env = "LBAAS_ACCESS_LOG_FORMAT",
        default_value = crate::store::OCTAVIA_TENANT_LOG_FORMAT
    )]
    pub access_log_format: String,
}

impl ApiConfig {
    pub fn quota_defaults(&self) -> crate::store::QuotaLimits {
        crate::store::QuotaLimits {
            load_balancers: self.quota_load_balancers,
            listeners: self.quota_listeners,
            pools: self.quota_pools,
            members: self.quota_members,
            health_monitors: self.quota_health_monitors,
            l7_policies: self.quota_l7_policies,
            l7_rules: self.quota_l7_rules,
        }
    }

    /// Checks everything at once and reports every problem together.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            problems.push("database_url must start with sqlite:// or postgres://".to_owned());
        }
        if !(self.scheduler_url.starts_with("http://")
            || self.scheduler_url.starts_with("https://"))
        {
            problems.push(format!(
                "scheduler_url {:?} must be an http:// or https:// URL",
                self.scheduler_url
            ));
        }
        if let Some(file) = self.token_file.as_ref().filter(|f| !f.is_file()) {
            problems.push(format!("token_file {} does not exist", file.display()));
        }
        if self.token_file.is_none() && self.jwt.keys.is_none() && !self.allow_project_header {
            problems.push(
                "no way to authenticate callers: give --jwt-keys or --token-file, or choose --allow-project-header true for local use"
                    .to_owned(),
            );
        }
        if let Some(file) = &self.secret_key_file
            && let Err(e) = crate::certs::SecretKey::read(file)
        {
            problems.push(format!("secret_key_file: {e}"));
        }
        problems.extend(self.tls.problems());
        if self.deploy_deadline_ms < 100 {
            problems.push("deploy_deadline_ms must be at least 100".to_owned());
        }
        if self.reconcile_interval_ms < 10 {
            problems.push("reconcile_interval_ms must be at least 10".to_owned());
        }
        let q = self.quota_defaults();
        for (name, v) in [
            ("load_balancers", q.load_balancers),
            ("listeners", q.listeners),
            ("pools", q.pools),
            ("members", q.members),
            ("health_monitors", q.health_monitors),
            ("l7_policies", q.l7_policies),
            ("l7_rules", q.l7_rules),
        ] {
            if v < -1 {
                problems.push(format!("quota_{name} must be -1 (unlimited) or more"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid api configuration:\n  {}", problems.join("\n  "))
        }
    }
}
