//! The `lbaas-scheduler` binary.
use clap::Parser;

#[derive(Parser)]
#[command(about = "lbaas scheduler: device registry and placement")]
struct Cli {
    #[command(flatten)]
    scheduler: lbaas_scheduler::SchedulerConfig,
    /// OTLP/gRPC endpoint for traces; off when unset.
    #[arg(long, env = "LBAAS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log JSON lines.
    #[arg(long, env = "LBAAS_JSON_LOGS")]
    json_logs: bool,
    /// Migrate the database to this version's schema, then exit (a deploy's migration job).
    #[arg(long)]
    migrate_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-scheduler".into(),
        otlp_endpoint: cli.otlp_endpoint,
        json_logs: cli.json_logs,
    })?;
    // A migration job needs only the database: no TLS, tokens or scheduler.
    if cli.migrate_only {
        return lbaas_scheduler::migrate(&cli.scheduler.database_url).await;
    }
    cli.scheduler.validate()?;
    let listener = tokio::net::TcpListener::bind(cli.scheduler.listen).await?;
    lbaas_scheduler::run(cli.scheduler, listener, lbaas::server::shutdown_signal()).await
}
