//! The `lbaas-api` binary.
use clap::Parser;

#[derive(Parser)]
#[command(about = "lbaas api: the tenant API")]
struct Cli {
    #[command(flatten)]
    api: lbaas_api::ApiConfig,
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
        service_name: "lbaas-api".into(),
        otlp_endpoint: cli.otlp_endpoint,
        json_logs: cli.json_logs,
    })?;
    // A migration job needs only the database: no TLS, tokens or scheduler.
    if cli.migrate_only {
        return lbaas_api::migrate(&cli.api.database_url).await;
    }
    cli.api.validate()?;
    let listener = tokio::net::TcpListener::bind(cli.api.listen).await?;
    lbaas_api::run(cli.api, listener, lbaas::server::shutdown_signal()).await
}
