//! The `lbaas-agent` binary.
use clap::Parser;

#[derive(Parser)]
#[command(about = "lbaas agent: applies load balancer configs to devices")]
struct Cli {
    #[command(flatten)]
    agent: lbaas_agent::AgentConfig,
    /// OTLP/gRPC endpoint for traces; off when unset.
    #[arg(long, env = "LBAAS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log JSON lines.
    #[arg(long, env = "LBAAS_JSON_LOGS")]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-agent".into(),
        otlp_endpoint: cli.otlp_endpoint,
        json_logs: cli.json_logs,
    })?;
    cli.agent.validate()?;
    let listener = tokio::net::TcpListener::bind(cli.agent.listen).await?;
    lbaas_agent::run(cli.agent, listener, lbaas::server::shutdown_signal()).await
}
