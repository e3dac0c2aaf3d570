//! Structured logs and OpenTelemetry tracing: logs always, an OTLP exporter only when an endpoint
//! is configured.
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// How a service reports what it does.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// The name traces carry (`service.name`).
    pub service_name: String,
    /// An OTLP/gRPC endpoint such as `http://127.0.0.1:4317`; `None` keeps the exporter off.
    pub otlp_endpoint: Option<String>,
    /// JSON lines instead of human-readable logs.
    pub json_logs: bool,
}

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

impl Telemetry {
    /// Installs the global subscriber. A second call in the same process (tests run several
    /// services in one) keeps the first subscriber and is not an error.
    pub fn init(config: &TelemetryConfig) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn"));
        let provider = match &config.otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .build()?;
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build();
                Some(
                    opentelemetry_sdk::trace::SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource)
                        .build(),
                )
            }
            None => None,
        };
        let otel_layer = provider.as_ref().map(|p| {
            tracing_opentelemetry::layer().with_tracer(p.tracer(config.service_name.clone()))
        });
        let (json, plain) = if config.json_logs {
            (Some(tracing_subscriber::fmt::layer().json()), None)
        } else {
            (
                None,
                Some(tracing_subscriber::fmt::layer().with_target(false)),
            )
        };
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(otel_layer)
            .with(json)
            .with(plain)
            .try_init();
        Ok(Self { provider })
    }
}
