//! Structured logs and OpenTelemetry tracing: logs always, an OTLP exporter only when an endpoint
//! is configured. Trace context travels between the services in gRPC metadata (W3C
//! `traceparent`): `traced` puts the current span's into an outgoing request, `rpc_span` continues
//! it on the server, and every log line inside a request carries its `trace_id`.
use opentelemetry::{
    propagation::{Extractor, Injector},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
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
    /// Exports every span that has ended so far (tests; shutdown does it too).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }

    /// Installs the global subscriber, logging to standard output. A second call in the same
    /// process (tests run several services in one) keeps the first subscriber and is not an error.
    pub fn init(config: &TelemetryConfig) -> anyhow::Result<Self> {
        Self::init_with_writer(config, std::io::stdout)
    }

    /// Like `init`, with logs written to `writer` (tests read what the services log).
    pub fn init_with_writer<W>(config: &TelemetryConfig, writer: W) -> anyhow::Result<Self>
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn"));
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        // Spans always get trace ids (so logs and peers can follow a request); they leave the
        // process only when an OTLP endpoint is configured.
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let mut builder =
            opentelemetry_sdk::trace::SdkTracerProvider::builder().with_resource(resource);
        if let Some(endpoint) = &config.otlp_endpoint {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = Some(builder.build());
        let otel_layer = provider.as_ref().map(|p| {
            tracing_opentelemetry::layer().with_tracer(p.tracer(config.service_name.clone()))
        });
        let (json, plain) = if config.json_logs {
            (
                Some(tracing_subscriber::fmt::layer().json().with_writer(writer)),
                None,
            )
        } else {
            (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_target(false)
                        .with_writer(writer),
                ),
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

/// Writes W3C trace context into gRPC metadata.
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Reads W3C trace context from HTTP/2 headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Puts the current span's trace context into `metadata` (an outgoing request's).
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// A request carrying the current span's trace context, for calls to another service.
pub fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    inject_context(request.metadata_mut());
    request
}

/// The span of one incoming RPC of `service`: it continues the caller's trace when the request
/// carries W3C trace context, and records the trace id so every log line inside shows it.
pub fn rpc_span(service: &'static str) -> impl Fn(&http::Request<()>) -> tracing::Span + Clone {
    move |request: &http::Request<()>| {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let span = tracing::info_span!(
            "rpc",
            "lbaas.service" = service,
            method = %request.uri().path(),
            trace_id = tracing::field::Empty,
        );
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        let trace_id = span.context().span().span_context().trace_id();
        if trace_id != opentelemetry::trace::TraceId::INVALID {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        span
    }
}
