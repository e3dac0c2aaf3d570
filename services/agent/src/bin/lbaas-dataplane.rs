//! The `lbaas-dataplane` binary: the native data plane in a process of its own (see
//! `lbaas_agent::dataplane`). The agent starts it; operators run it with `--takeover` to upgrade.
use clap::Parser;

/// Requests allocate and free many small buffers (headers, futures, bodies): mimalloc's
/// thread-local free lists serve them with less work than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "lbaas native data plane: serves one device's load balancers")]
struct Cli {
    #[command(flatten)]
    args: lbaas_agent::dataplane::DataPlaneArgs,
    /// Log JSON lines.
    #[arg(long, env = "LBAAS_JSON_LOGS")]
    json_logs: bool,
    /// Worker threads serving traffic (0: one per CPU).
    #[arg(long, env = "LBAAS_DATAPLANE_THREADS", default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if cli.threads > 1 {
            builder.worker_threads(cli.threads);
        }
        builder
    };
    runtime.enable_all().build()?.block_on(async {
        let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
            service_name: "lbaas-dataplane".into(),
            otlp_endpoint: None,
            json_logs: cli.json_logs,
        })?;
        lbaas_agent::dataplane::run(cli.args).await
    })
}
