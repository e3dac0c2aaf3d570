//! The `lbaas-dataplane` binary: the native data plane in a process of its own (see
//! `lbaas_agent::dataplane`). The agent starts it; operators run it with `--takeover` to upgrade.
use clap::Parser;

#[derive(Parser)]
#[command(about = "lbaas native data plane: serves one device's load balancers")]
struct Cli {
    #[command(flatten)]
    args: lbaas_agent::dataplane::DataPlaneArgs,
    /// Log JSON lines.
    #[arg(long, env = "LBAAS_JSON_LOGS")]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-dataplane".into(),
        otlp_endpoint: None,
        json_logs: cli.json_logs,
    })?;
    lbaas_agent::dataplane::run(cli.args).await
}
